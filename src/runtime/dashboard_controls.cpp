// The dashboard's controls over a board and a gate.
#include <agentcore/runtime/dashboard_controls.hpp>

#include <agentcore/board/task_board.hpp>
#include <agentcore/gate/merge_gate.hpp>

#include <boost/json/value_from.hpp>
#include <fmt/format.h>

namespace agentcore::runtime {

namespace {

class board_and_gate final : public observe::dashboard_controls {
public:
  board_and_gate(board::task_board* b, gate::merge_gate* g) : board_(b), gate_(g) {}

  result<json::array> tasks() override {
    if (!board_) return no_board();
    auto ts = board_->list();
    if (!ts) return ts.error();
    json::array a;
    a.reserve(ts->size());
    for (const auto& t : *ts) a.push_back(board::to_json_value(t));
    return a;
  }

  result<json::value> task(std::string_view id) override {
    if (!board_) return no_board();
    auto t = board_->get(task_id{std::string(id)});
    if (!t) return t.error();
    if (!*t) return json::value(nullptr);
    return board::to_json_value(**t);
  }

  result<json::value> requeue(std::string_view id, std::string_view reason) override {
    if (!board_) return no_board();
    auto t = board_->requeue(task_id{std::string(id)}, std::string(reason));
    if (!t) return t.error();
    return board::to_json_value(*t);
  }

  result<json::value> abandon(std::string_view id, std::string_view by) override {
    if (!board_) return no_board();
    auto t = board_->get(task_id{std::string(id)});
    if (!t) return t.error();
    if (!*t) return fail(error::not_found, fmt::format("no task '{}'", id));
    if ((*t)->state != board::task_state::claimed || !(*t)->claimed_by)
      return fail(error::illegal_transition, fmt::format("task '{}' is {}: only a claimed task can be abandoned", id,
                                                         board::to_string((*t)->state)));
    auto r = board_->abandon(task_id{std::string(id)}, *(*t)->claimed_by, json::object{{"abandoned_by", by}});
    if (!r) return r.error();
    return board::to_json_value(*r);
  }

  std::optional<std::size_t> queued() override {
    if (!gate_) return std::nullopt;
    auto n = gate_->queued();
    return n ? std::optional<std::size_t>(*n) : std::nullopt;
  }

  result<json::value> revert(std::string_view commit, std::string_view reason) override {
    if (!gate_) return fail(error::unavailable, "no gate behind this dashboard");
    auto oid = git::oid::from_hex(commit);
    if (!oid) return fail(error::invalid_argument, oid.error().message());
    auto v = gate_->rollback(*oid, std::string(reason));
    if (!v) return v.error();
    return json::value_from(*v);
  }

private:
  static error_info no_board() { return fail(error::unavailable, "no board behind this dashboard"); }

  board::task_board* board_;
  gate::merge_gate* gate_;
};

}  // namespace

std::shared_ptr<observe::dashboard_controls> make_dashboard_controls(board::task_board* board, gate::merge_gate* gate) {
  return std::make_shared<board_and_gate>(board, gate);
}

}  // namespace agentcore::runtime
