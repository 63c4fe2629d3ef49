// agentcore/runtime/swarm.hpp: the swarm: planners, workers, the merge gate
// and the judge composed over one store and one repository, converging on a
// goal. Built from a configuration (config.hpp) or from code; runs on the
// host's executor or on threads of its own.
//
//   auto s = runtime::swarm::create(cfg).value();      // models from the registry, by spec
//   auto report = s->run();                             // blocks; s->stop() from a signal handler
//   fmt::print("{} merged in {} cycles\n", report->merged, report->cycles);
//
// Resuming: with a file store, a swarm created after a crash finds the board
// as it was: claims of the dead process come back when their leases expire,
// the worktree slots are reset, the gate finishes or re-runs what was in
// flight. stop() (SIGINT) stops every agent; their tasks are released, and the
// gate ends its current step, so nothing is left half-merged.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/model/client.hpp>
#include <agentcore/roles/judge.hpp>
#include <agentcore/runtime/config.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace agentcore::runtime {

namespace asio = boost::asio;

/// What the host may provide instead of the defaults.
struct swarm_hooks {
  /// Where the swarm runs; empty: run() makes an io_context on its own threads.
  asio::any_io_executor executor;
  /// Model clients by role ("planner", "worker", "judge", or a subsystem's
  /// name for its sub-planner); return null to use the configured spec. The
  /// swarm prices their calls and charges them to the configured budgets
  /// like its own clients'.
  std::function<std::shared_ptr<model::client>(std::string_view role)> client_for;
  /// Events go here (else to a bus of the swarm's own).
  event_bus* events = nullptr;
  /// The host's judge rules: called at each cycle's end with the judgement
  /// the built-in rules made; may change its decision and reason
  /// (roles::judge_options::rules).
  std::function<void(roles::judgement&)> judge;
};

struct swarm_report {
  std::size_t cycles = 0;
  std::size_t merged = 0, rejected = 0, conflicts_resolved = 0, contract_violations = 0;
  std::size_t abandoned = 0, stalls = 0, split = 0, refused_writes = 0;
  std::size_t tasks_total = 0;
  std::map<std::string, std::size_t> tasks_by_state;
  model::usage usage;
  double cost = 0;
  std::chrono::milliseconds elapsed{0};
  bool goal_met = false;
  bool stopped = false;   ///< stop() was called
  std::string reason;     ///< why the run ended
  /// Set when a budget ended the run (the run's or the workers'): which, and how much of it was spent.
  std::string budget_exhausted;
  std::vector<roles::judgement> judgements;
};
void tag_invoke(json::value_from_tag, json::value& v, const swarm_report& r);

/// Published as the swarm changes course: "started", "cycle", "restart", "stopping", "finished".
struct swarm_event {
  static constexpr std::string_view event_type = "runtime.swarm";
  std::string what, detail;
};
void tag_invoke(json::value_from_tag, json::value& v, const swarm_event& e);

class swarm {
public:
  /// Opens the store, the repository, the worktree pool and the gate, and
  /// makes the model clients. Errors name what could not be opened.
  static result<std::unique_ptr<swarm>> create(swarm_config config, swarm_hooks hooks = {});
  ~swarm();

  /// Where a completion handler that has no executor of its own runs (the
  /// options' executor), as with Asio's I/O objects.
  asio::any_io_executor get_executor() const;

  /// Runs until the goal is met, nothing is left to do, max_cycles pass, or
  /// stop(). On hooks.executor.
  template <class CompletionToken>
  auto async_run(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(result<swarm_report>)>(
        [this](auto handler) { start(::agentcore::detail::never_inline(std::move(handler), get_executor())); }, token);
  }
  /// Blocks until the run ends, on hooks.executor or on threads of its own.
  result<swarm_report> run();
  /// Asks the run to end soon (thread-safe; from a signal handler's thread too).
  void stop();

  event_bus& events();
  board::task_board& board();
  /// The branch's merge gate (every process that may submit has one).
  gate::merge_gate& gate();
  const swarm_config& config() const;

  struct state;

private:
  explicit swarm(std::shared_ptr<state> s);
  void start(asio::any_completion_handler<void(result<swarm_report>)> handler);
  std::shared_ptr<state> state_;
};

struct store_open_options {
  /// For looking only (status, task show, serve): a file store is read as it
  /// is, changing nothing on disk (no lock, no repair), and must exist.
  bool read_only = false;
};
/// Opens the store a configuration names ("memory:", "file:DIR", "etcd://HOST:PORT[,...]/PREFIX").
result<std::unique_ptr<store::store>> open_store(const std::string& uri, store_open_options options = {});
/// The archive of finished tasks that goes with that store (board/archive.hpp):
/// for "file:DIR" the SQLite file DIR/archive.sqlite, for etcd the store
/// itself under "board/archive/", for "memory:" none (null: nothing to gain).
result<std::shared_ptr<board::task_archive>> open_archive(const std::string& uri, store::store& s,
                                                          store_open_options options = {});

}  // namespace agentcore::runtime
