// agentcore/roles/planner.hpp: a planner reads a snapshot of the project
// (its files summarised, the subsystems, open, merged and failed tasks,
// recent gate failures) and proposes tasks, each with a contract, as JSON
// the model writes and the planner validates. Duplicates of open tasks are
// dropped. Tasks that were abandoned or keep failing come back to it and are
// split into smaller ones (the parent superseded). A sub-planner is a planner
// scoped to one subsystem's paths: its tasks may only touch those. Every
// contract a model proposes is narrowed to the host's ceiling (and the
// subsystem's paths, and a split parent's paths), never widened.
//
//   roles::planner p(board, repo_path, *client, {.goal = "Add a JSON parser with tests",
//                                               .executor = io.get_executor()});
//   p.async_plan([](result<roles::plan_report> r) { ... });   // one round
//
// Planners never write code.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/contract/ceiling.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/model/client.hpp>
#include <agentcore/model/middleware.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agentcore::roles {

namespace asio = boost::asio;

/// A part of the project with its own paths (and, optionally, its own planner model).
struct subsystem {
  std::string name;
  std::vector<std::string> paths;  ///< globs: "src/parser/**"
  std::string description;
  std::string model;               ///< a model spec for its sub-planner; empty: the planner's
};

struct planner_options {
  std::string name = "planner";  ///< names the planner's tasks' author and its requests' role
  std::string goal;              ///< what the swarm is building
  std::string branch = "refs/heads/main";
  /// Set for a sub-planner: its tasks may touch only these paths.
  std::optional<subsystem> scope;
  std::vector<subsystem> subsystems;  ///< shown in the snapshot
  /// Fields a proposed contract leaves out come from here (time box, limits,
  /// checks, permissions: a model never sets binary, executable, link or
  /// submodule permissions). Its protected paths are not used: the ceiling's are.
  contract::task_contract default_contract;
  /// The host's bounds on every contract this planner makes, top-level tasks
  /// and split children alike (see contract/ceiling.hpp): paths are cut to it,
  /// protected paths stay closed, limits are capped. What was cut is noted on
  /// the task; a proposal of which nothing fits is dropped, with why.
  contract::ceiling ceiling;
  std::size_t max_new_tasks = 8;    ///< proposed per round, at most
  std::size_t max_open_tasks = 32;  ///< no new tasks while this many are open
  /// A task rejected or failed this many times, or abandoned once, is split.
  int split_after = 2;
  std::size_t max_children = 4;     ///< per split
  std::uint32_t max_tokens = 4096;
  /// What the judge found when it restarted planning (its reason and the
  /// cycle's figures): shown at the top of every prompt, so that the fresh
  /// plan answers it. Empty: nothing to report.
  std::string findings;
  /// Prices each call (see model::cost_of): the cost goes into the report and
  /// into the agent.turn event every call publishes.
  model::price_table prices;
  asio::any_io_executor executor;  ///< required
  asio::any_io_executor blocking;  ///< board and repository reads; default: inline
  event_bus* events = nullptr;
};

struct plan_report {
  std::vector<task_id> proposed;
  std::vector<task_id> split;              ///< parents superseded by smaller tasks
  std::vector<std::string> dropped;        ///< proposals refused, each with why
  model::usage usage;
  double cost = 0;  ///< by planner_options::prices
  int model_calls = 0;
};

/// Published after each round.
struct plan_event {
  static constexpr std::string_view event_type = "roles.plan";
  std::string planner;
  std::vector<std::string> proposed, split, dropped;
};
void tag_invoke(json::value_from_tag, json::value& v, const plan_event& e);

class planner {
public:
  planner(board::task_board& board, std::filesystem::path repository, model::client& model, planner_options options);
  ~planner();
  planner(const planner&) = delete;
  planner& operator=(const planner&) = delete;

  /// Where a completion handler that has no executor of its own runs (the
  /// options' executor), as with Asio's I/O objects.
  asio::any_io_executor get_executor() const;

  /// One round: split what needs splitting, then propose new tasks if the
  /// board has room. An error means the board, repository or model failed.
  template <class CompletionToken>
  auto async_plan(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(result<plan_report>)>(
        [this](auto handler) { start(::agentcore::detail::never_inline(std::move(handler), get_executor())); }, token);
  }

  const planner_options& options() const noexcept;

  /// The snapshot the model reads (also for hosts and tests).
  result<std::string> snapshot();

  struct state;

private:
  void start(asio::any_completion_handler<void(result<plan_report>)> handler);
  std::shared_ptr<state> state_;
};

/// The JSON Schema of a planner's answer: {"tasks":[{"id","title",
/// "description","priority","dependencies","contract":{...}}]}.
json::object proposal_schema();

/// Parses a planner's answer into tasks (contracts validated, defaults filled
/// in, narrowed to the scope and the ceiling, with a note on the task for
/// each narrowing). Tasks that fail are reported in `dropped` with why, not
/// returned.
std::vector<board::task> parse_proposals(std::string_view answer, const planner_options& o,
                                         std::vector<std::string>& dropped, error_info& parse_error);

}  // namespace agentcore::roles
