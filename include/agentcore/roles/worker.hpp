// agentcore/roles/worker.hpp: a worker claims one task, works it in a
// worktree of its own under the task's contract, checks itself, submits to
// the merge gate and waits for the verdict; then it stops. A conflict comes
// back to it: it merges the branch's new tip in, the model resolves the
// conflict markers, and it submits again (a bounded number of times). A
// time box spent or a stall abandons the task with a report of what was done
// and where it stuck, for a planner to re-plan.
//
//   roles::worker w(board, *store, repo_path, *pool, *gate, *client,
//                   {.id = worker_id{"w1"}, .loop = {.executor = io.get_executor(), .blocking = pool_ex}});
//   w.async_run_one([](result<roles::work_report> r) { ... });   // one task, or idle when none is ready
//
// The worker holds its claim on a lease it renews every third of the TTL; if
// the lease is lost (the process stalled), the agent is stopped and nothing of
// its work is submitted.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/agent/loop.hpp>
#include <agentcore/agent/tools.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/model/client.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace agentcore::roles {

namespace asio = boost::asio;

struct worker_options {
  worker_id id;  ///< required: unique on the board
  std::string branch = "refs/heads/main";
  std::chrono::seconds lease_ttl{30};  ///< the claim's lease; renewed every third of it
  /// How long to wait for a free worktree slot before giving the task back.
  std::chrono::milliseconds slot_wait{std::chrono::minutes(10)};
  /// For tasks that carry no contract (and the time box when a contract has none).
  contract::task_contract default_contract;
  /// The agent loop's settings: executor (required), blocking pool, limits
  /// (the contract's time box overrides them), prompts, events.
  agent::loop_options loop;
  agent::tools_options tools;
  std::vector<std::shared_ptr<agent::tool>> extra_tools;  ///< the host's own tools
  int fix_rounds = 2;       ///< failed self-checks sent back to the model before giving up
  int conflict_rounds = 3;  ///< conflicts resolved and resubmitted before giving up
  /// A task claimed more often than this (released after failed model
  /// calls, lost with a dead worker, rejected) is abandoned with why, for
  /// the planner to split, instead of being claimed forever. 0: no limit.
  int max_attempts = 6;
  /// Asked when a model call was refused for a spent budget: true when it is
  /// the task's own budget (the task is abandoned with kind
  /// "budget_exhausted"); otherwise (the role's or the run's) the task is
  /// released untouched and the report says which budget ran out.
  std::function<bool(const task_id&)> task_budget_exhausted;
  git::signature author{"agentcore worker", "worker@agentcore.invalid", 0, 0};
  event_bus* events = nullptr;
  // A shared repository (the gate elsewhere) is the gate's setting
  // (gate_options::remote): the worker starts from gate.tip() and the gate
  // publishes what it submits.
};

enum class work_result {
  idle,        ///< nothing was ready
  merged,      ///< the change landed
  rejected,    ///< the gate rejected it (contract, checks) or conflicts outlasted conflict_rounds
  abandoned,   ///< time box spent, stalled, self-checks kept failing, or nothing changed: back to a planner
  released,    ///< handed back untouched: the model failed, the worker was stopped, no slot came free
  claim_lost,  ///< the lease expired under the worker; its work was dropped
  submitted,   ///< stopped while the gate had the change: its verdict comes later, from the gate
};
std::string_view to_string(work_result r) noexcept;

struct work_report {
  work_result result = work_result::idle;
  std::optional<task_id> task;
  std::string detail;                         ///< the verdict's or the loop's words
  std::vector<gate::change_verdict> verdicts; ///< every submission's final verdict
  int conflicts_resolved = 0;
  int fix_rounds_used = 0;
  int turns = 0;
  model::usage usage;
  double cost = 0;
  std::vector<std::string> files_written;
  /// Set when a model call was refused because a budget had nothing left
  /// (model::error::budget_exhausted; the message names the budget).
  error_info budget_exhausted;
};

/// Published as a worker moves through a task: "claimed", "preparing",
/// "working", "self_check", "submitting", "waiting", "resolving", and the
/// final result ("merged", "abandoned", ...).
struct worker_phase {
  static constexpr std::string_view event_type = "roles.worker_phase";
  std::string worker, task, phase, detail;
};
void tag_invoke(json::value_from_tag, json::value& v, const worker_phase& e);

class worker {
public:
  /// Everything passed by reference must outlive the worker.
  worker(board::task_board& board, store::store& s, std::filesystem::path repository, git::worktree_pool& pool,
         gate::merge_gate& gate, model::client& model, worker_options options);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  /// Where a completion handler that has no executor of its own runs (the
  /// options' executor), as with Asio's I/O objects.
  asio::any_io_executor get_executor() const;

  /// Claims and works one task; completes with what became of it (idle when
  /// nothing was ready). An error means the board, store or repository failed.
  template <class CompletionToken>
  auto async_run_one(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(result<work_report>)>(
        [this](auto handler) { start(::agentcore::detail::never_inline(std::move(handler), get_executor())); }, token);
  }

  /// Stops the task in hand: the agent is stopped and the task released.
  void stop();
  /// Ends the attempt in hand if an agent is working on it (its task is
  /// released with `why`); the worker goes on with the next task. A change
  /// already with the gate is left to the gate.
  void interrupt(std::string why);
  const worker_options& options() const noexcept;

  struct state;

private:
  void start(asio::any_completion_handler<void(result<work_report>)> handler);
  std::shared_ptr<state> state_;
};

/// The first message a worker's agent gets: the task, its notes, and what
/// earlier attempts reported.
std::string task_statement(const board::task& t);

}  // namespace agentcore::roles
