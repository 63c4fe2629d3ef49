// agentcore/gate/merge_gate.hpp: the merge gate. Agent output is untrusted
// code: every change is checked against its contract and its fast checks in
// its own worktree, then the merge queue lands it on the target branch, which
// only ever moves by compare-and-swap to a commit that passed the gate.
//
//   gate::merge_gate g(repo_path, *store, *pool, {.mode = gate::policy::batch,
//                                                 .deep_checks = {"make test"}});
//   auto v = g.submit({.id = "t12-1", .task = task_id{"t12"}, .base = base, .head = head,
//                      .contract = c, .checks = {"make lint"}});   // rejected now, or queued
//   g.run_until_empty();                                          // lands what passes
//
// From an event loop, the same without blocking a thread of it:
//   auto v = co_await g.async_submit(c, asio::use_awaitable);      // result<change_verdict>
//   auto final = co_await g.async_wait_verdict(c.id, asio::use_awaitable);  // a store watch, no polling
//   auto step = co_await g.async_run_once(asio::use_awaitable);
// Each completes with a result<T> (docs/conventions.md); the blocking work
// (git, the checks, the store) runs on gate_options::blocking.
//
// Policies:
//   serial      merge one change onto the branch, run the deep checks, advance.
//   batch       merge up to batch_size changes in order, run the deep checks once;
//               on failure bisect the batch, land the good ones, reject the culprits.
//   optimistic  land after the fast checks alone; every optimistic_every merges run
//               the deep checks on the branch, and when they fail, bisect the merges
//               since the last green commit and revert the culprit.
// These decisions are queue_policy.hpp's, a pure state machine the gate
// carries out with git and the checks (and a simulator with synthetic ones).
// A higher-priority change is never batched behind a lower one. The queue's
// state lives in the store: after a crash, the next gate to lead the queue
// finishes or re-runs what was in flight, and the branch is always at a gated
// commit. Many processes may submit; one at a time runs the queue (a leased
// leader key), so a second runner gets `in_use` naming the first.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/contract/ceiling.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/gate/checks.hpp>
#include <agentcore/gate/queue_policy.hpp>
#include <agentcore/git/types.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/store/store.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agentcore::gate {

namespace asio = boost::asio;

struct gate_options {
  std::string branch = "refs/heads/main";
  policy mode = policy::serial;
  std::size_t batch_size = 8;
  /// batch: a batch smaller than batch_size waits until its oldest change has
  /// been queued this long (seen by this gate), so that changes submitted
  /// close together land together. 0: take what is queued at once.
  std::chrono::milliseconds batch_wait{0};
  std::size_t optimistic_every = 10;      ///< deep checks after this many optimistic merges
  std::vector<std::string> deep_checks;   ///< run on the merged result (none: always pass)
  /// The host's own checks (checks.hpp), run after the commands: with every
  /// change's fast checks, and with the deep checks.
  std::vector<std::shared_ptr<gate::check>> host_fast_checks, host_deep_checks;
  check_options check;                    ///< limits for every check (working_directory is set per run)
  /// The host's bounds, checked on every change besides its own contract: a
  /// contract the board holds cannot take a change past them, however it got
  /// there. Its protected paths may be changed only under a contract with
  /// protected_allowed set (a grant only the host makes: planners' proposals
  /// never keep it). Empty: the change's contract alone.
  std::optional<contract::ceiling> ceiling;
  std::string prefix = "gate/";           ///< store key prefix
  git::signature committer{"agentcore gate", "gate@agentcore.invalid", 0, 0};
  event_bus* events = nullptr;
  board::task_board* board = nullptr;     ///< when set, verdicts are recorded on the tasks
  /// One process at a time runs a branch's queue: it holds the queue's leader
  /// key on a lease of this TTL, renewed at every step. A dead leader's queue
  /// passes to another gate once its lease expires.
  std::chrono::seconds leader_ttl{60};
  std::string instance;  ///< names this gate in the leader key; default "pid-<pid>-<random>"
  /// A shared repository (URL or path) when workers run in other processes
  /// or machines. The queue's leader fetches the branch and the submitted
  /// changes (refs/agentcore/changes/*) from it before each step, and moves
  /// the branch there first, by fast-forward push: a landing counts once the
  /// shared branch has it. Submitting (per-change checks) needs the change's
  /// commits in this gate's own repository; submit() publishes each change
  /// there (refs/agentcore/changes/<id>) for the queue's leader, and the
  /// gate removes the ref once the change is decided. tip() reads the shared
  /// branch.
  std::string remote;
  /// Where the async operations do their blocking work (git, the checks, the
  /// store's calls). Empty: a pool of the gate's own, made at the first
  /// async operation, of as many threads as the machine has cores (at least 2).
  asio::any_io_executor blocking;
};

/// The options of the gate's that are its queue's policy (queue_policy.hpp).
queue_policy_options policy_of(const gate_options& o);

/// A change a worker submits: its commit, the commit it started from, and its terms.
struct change {
  std::string id;                  ///< unique per submission ([A-Za-z0-9._-])
  std::optional<task_id> task;
  git::oid base;
  git::oid head;
  int priority = 0;
  contract::task_contract contract;
  std::vector<std::string> checks;  ///< fast checks, run in the change's worktree
  std::optional<git::oid> revert_of;  ///< set by rollback(): take this merged commit back out
};

enum class verdict_kind {
  queued,             ///< passed the per-change checks; waiting in the queue
  merged,             ///< landed on the branch (merged_as)
  contract_violated,  ///< the diff broke the contract (contract)
  checks_failed,      ///< a fast check failed (checks)
  conflict,           ///< does not merge onto the branch (paths): back to its worker
  deep_checks_failed, ///< the merged result failed the deep checks (checks)
  reverted,           ///< landed optimistically, then found to break the branch and reverted
  error,              ///< the change is malformed (missing commit, base not on the branch, ...)
};
std::string_view to_string(verdict_kind k) noexcept;

struct change_verdict {
  std::string change_id;
  verdict_kind kind = verdict_kind::queued;
  std::string detail;
  std::vector<std::string> paths;      ///< conflicting paths, for a conflict
  contract::verdict contract;          ///< for contract_violated
  std::vector<check_result> checks;    ///< the checks that ran (logs capped)
  std::optional<git::oid> merged_as;   ///< the commit the branch moved to
};

/// Published on the event bus for every verdict.
struct gate_event {
  static constexpr std::string_view event_type = "gate.verdict";
  change_verdict verdict;
  std::optional<task_id> task;  ///< the board task the change is for, when it has one
};
/// Published for each step the gate takes with one or more changes:
/// "contract_checked", "fast_checks", "merged_in_memory", "deep_checks",
/// "bisect", "landing", "recovered".
struct gate_step {
  static constexpr std::string_view event_type = "gate.step";
  std::string step;
  std::vector<std::string> changes;
  std::string detail;
};
/// Published whenever the branch moves.
struct branch_moved {
  static constexpr std::string_view event_type = "gate.branch_moved";
  std::string branch;
  git::oid from, to;
  std::vector<std::string> changes;
};

/// What merge_gate::prune forgot.
struct prune_report {
  std::size_t verdicts = 0;  ///< verdict records removed
  std::size_t landed = 0;    ///< landing records removed with them
};

class merge_gate {
public:
  using verdict_signature = void(result<change_verdict>);
  using step_signature = void(result<std::vector<change_verdict>>);
  using tip_signature = void(result<git::oid>);

  /// Opens the gate for `options.branch` of the repository. The store and the
  /// pool must outlive the gate, and the gate its async operations: destroy
  /// it when none is outstanding (a completion handler may: completions run
  /// on the handler's executor, or the system executor, never the gate's own
  /// pool).
  static result<std::unique_ptr<merge_gate>> open(const std::filesystem::path& repository, store::store& s,
                                                  git::worktree_pool& pool, gate_options options);
  ~merge_gate();

  /// Per-change checks: the contract on the diff from base, then the fast
  /// checks in the change's worktree. Returns `queued` or why not. Safe to
  /// call from several threads at once (each check run takes a pool slot).
  /// With gate_options::remote, the change's commit is published to the
  /// shared repository first (refs/agentcore/changes/<id>), and removed
  /// again when the change is refused here. Submitting an id again returns
  /// its verdict as it stands (idempotent).
  result<change_verdict> submit(change c);

  /// submit() without blocking the caller: completes with the same result.
  template <class CompletionToken>
  auto async_submit(change c, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, verdict_signature>(
        [this](auto handler, change c) { do_async_submit(std::move(c), ::agentcore::detail::never_inline(std::move(handler))); },
        token, std::move(c));
  }

  /// Completes with the change's final verdict (merged, or why not) once the
  /// gate decides it, in this process or another: at once when it is decided
  /// already, else on a watch of its verdict in the store (no polling).
  /// `not_found` when the change was never submitted (or its verdict was
  /// pruned); `canceled` when the handler's cancellation slot is emitted
  /// (the change stays queued; a later wait finds its verdict).
  template <class CompletionToken>
  auto async_wait_verdict(std::string change_id, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, verdict_signature>(
        [this](auto handler, std::string id) { do_async_wait_verdict(std::move(id), ::agentcore::detail::never_inline(std::move(handler))); },
        token, std::move(change_id));
  }

  /// run_once() without blocking the caller.
  template <class CompletionToken>
  auto async_run_once(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, step_signature>(
        [this](auto handler) { do_async_run_once(::agentcore::detail::never_inline(std::move(handler))); }, token);
  }

  /// The branch's tip as a submitter sees it: with gate_options::remote, the
  /// shared repository's branch, fetched into this repository first (a new
  /// change starts from there).
  result<git::oid> tip();
  template <class CompletionToken>
  auto async_tip(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, tip_signature>(
        [this](auto handler) { do_async_tip(::agentcore::detail::never_inline(std::move(handler))); }, token);
  }

  /// Lands queued changes until the queue is empty; returns the verdicts made.
  /// Error `in_use` when another live gate runs this branch's queue.
  result<std::vector<change_verdict>> run_until_empty();
  /// One step of the queue (one change, or one batch). Empty: nothing queued.
  result<std::vector<change_verdict>> run_once();

  /// Queues the revert of a merged commit (a rollback) ahead of normal work.
  result<change_verdict> rollback(const git::oid& merged, std::string reason);

  result<std::optional<change_verdict>> verdict(const std::string& change_id);
  result<std::size_t> queued() const;

  /// Forgets the records of changes decided long ago, so that the store stays
  /// the size of the work in flight over a long run: the final verdicts
  /// beyond the newest `keep` (by when they were decided), with the landing
  /// record of each merged one. Never a queued change's, one the board has
  /// not heard of yet, or one a submitted task waits on. Afterwards verdict()
  /// of a forgotten change is empty; submitting it again is an `error`
  /// verdict if its commit is on the branch (it never lands twice), else it
  /// is judged anew; a rollback of its merge still finds its change and task
  /// (the merge commit's message names them). The runtime calls this as it
  /// archives finished tasks (swarm_config::keep_finished).
  result<prune_report> prune(std::size_t keep);

  class impl;

private:
  explicit merge_gate(std::unique_ptr<impl> p);
  void do_async_submit(change c, asio::any_completion_handler<verdict_signature> handler);
  void do_async_wait_verdict(std::string id, asio::any_completion_handler<verdict_signature> handler);
  void do_async_run_once(asio::any_completion_handler<step_signature> handler);
  void do_async_tip(asio::any_completion_handler<tip_signature> handler);
  std::unique_ptr<impl> impl_;
};

void tag_invoke(json::value_from_tag, json::value& v, const change& c);
result<change> change_from_json(const json::value& v);
void tag_invoke(json::value_from_tag, json::value& v, const change_verdict& c);
result<change_verdict> verdict_from_json(const json::value& v);
/// What a verdict means for the next attempt, in words a model or a person
/// acts on: the verdict and its reason, the contract's findings, the
/// conflicting paths, and the failing check with the end of its output (the
/// part compilers and test runners say what failed in), `max_bytes` at most
/// (roughly).
std::string explain(const change_verdict& v, std::size_t max_bytes = 4096);
void tag_invoke(json::value_from_tag, json::value& v, const gate_event& e);
void tag_invoke(json::value_from_tag, json::value& v, const branch_moved& e);
void tag_invoke(json::value_from_tag, json::value& v, const gate_step& e);

}  // namespace agentcore::gate
