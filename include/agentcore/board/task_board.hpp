// agentcore/board/task_board.hpp: the task board, the typed layer over any
// store. Planners propose tasks; workers claim one at a time by compare-and-
// swap, under a lease they keep alive; the gate finishes them. No lock is
// held across a task: every operation is one optimistic transaction.
//
//   agentcore::board::task_board board(*store);
//   board.propose({.id = task_id{"a"}, .title = "Add a test"});
//   auto lease = store->grant(30s).value();
//   auto t = board.claim(worker_id{"w1"}, lease).value();   // std::optional<task>
//   if (t) board.submit(t->id, worker_id{"w1"});
//   board.finish(task_id{"a"}, task_state::merged);
//
// Keys under the prefix (default "board/"):
//   task/<id>                      the task's JSON (schema 1, see task.hpp)
//   ready/<prio>/<shard>/<age>/<id> the ready index: highest priority first, then oldest
//   claim/<id>                     the worker holding it, attached to the worker's lease
//   claimed/<id>                   claimed tasks, so reconcile() finds lost claims
//   waiting/<dep>/<id>, blocked/<id>/<dep>   unmet dependencies, both directions
//   dependents/<dep>               touched when a dependent is added, so merging or splitting dep races safely
//
// Finished tasks can be moved to an archive (board_options::archive,
// archive_finished()), which keeps the store the size of the work in flight.
#pragma once

#include <agentcore/board/archive.hpp>
#include <agentcore/board/task.hpp>
#include <agentcore/core/clock.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/store/store.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace agentcore::board {

/// Published on the event bus for every state change the board makes.
struct task_transition {
  static constexpr std::string_view event_type = "board.task_transition";
  task_id id;
  task_state from = task_state::proposed;
  task_state to = task_state::proposed;
  std::optional<worker_id> worker;
  store::revision rev = 0;
  bool created = false;  ///< the task is new on the board (`from` is then "proposed", which it never was)
};
void tag_invoke(json::value_from_tag, json::value& v, const task_transition& t);

struct board_options {
  std::string prefix = "board/";
  /// Claimers pick at random among this many of the oldest ready tasks of the
  /// top priority in one shard, so that concurrent claimers rarely collide.
  std::size_t claim_window = 64;
  /// Shards of the ready index (each claimer starts at a random one). Every
  /// process sharing a board must use the same prefix and shard count.
  unsigned shards = 16;
  /// Optimistic retries before an operation gives up with too_many_attempts.
  int max_attempts = 1000;
  /// Where transitions are published; none when null.
  event_bus* events = nullptr;
  /// Where archive_finished() moves finished tasks, and where get(),
  /// propose(), dependencies and revert() look for a task the store no
  /// longer has (see archive.hpp). None: nothing is archived.
  std::shared_ptr<task_archive> archive;
  /// Where ages (task::ready_since_us, which order the ready index) and
  /// note times come from: the system clock when null. A simulation passes
  /// its virtual clock (times then count from that clock's epoch).
  std::shared_ptr<agentcore::clock> clock;
  /// Seeds the claim window's random choice; std::random_device when unset.
  /// With one shard and a seed (and a virtual clock), claims are reproducible.
  std::optional<std::uint64_t> seed;
};

struct board_stats {
  std::uint64_t claims = 0;           ///< successful claims
  std::uint64_t claim_conflicts = 0;  ///< claim transactions that lost a race and retried
};

class task_board {
public:
  explicit task_board(store::store& s, board_options options = {});

  /// Adds a task. Idempotent by id: proposing the same task again returns the
  /// stored one; a different task under an existing id is `already_exists`.
  /// It starts `ready` when all its dependencies are merged, else `proposed`.
  result<task> propose(task t);

  /// Claims one ready task for `worker`, attaching the claim to `lease`.
  /// nullopt when nothing is ready.
  result<std::optional<task>> claim(const worker_id& worker, store::lease_id lease);

  /// Keeps the worker's lease (and so all its claims) alive.
  result<store::lease_status> heartbeat(store::lease_id lease);

  /// rejected -> claimed, by the worker whose submission was rejected (the
  /// task's claimed_by), on `lease`: to resolve a merge conflict and submit
  /// again. Does not count as a new attempt. `claim_lost` when another worker
  /// holds it or it has moved on.
  result<task> reclaim(const task_id& id, const worker_id& worker, store::lease_id lease);

  /// claimed -> ready, by the worker that holds it.
  result<task> release(const task_id& id, const worker_id& worker, std::string note = {});
  /// claimed -> submitted, by the worker that holds it; `report` goes to task.result.
  result<task> submit(const task_id& id, const worker_id& worker, json::value report = nullptr);
  /// claimed -> abandoned, by the worker that holds it, with a structured report.
  result<task> abandon(const task_id& id, const worker_id& worker, json::value report);
  /// submitted -> merged | rejected | failed (the gate's verdict). Merging
  /// makes dependents whose dependencies are now all merged ready.
  result<task> finish(const task_id& id, task_state outcome, json::value report = nullptr);
  /// merged -> reverted: its merge was taken back out of the branch; `report`
  /// (the gate's, with the revert commit and the reason) goes to task.result.
  /// Tasks that depended on it keep their state: their work may still stand.
  result<task> revert(const task_id& id, json::value report);
  /// rejected | failed | abandoned | reverted | submitted -> ready (or
  /// proposed while dependencies are unmet).
  result<task> requeue(const task_id& id, std::string note = {});
  /// Replaces `parent` by `children` in one transaction: the parent becomes
  /// superseded, the children are proposed with parent set, and tasks that
  /// depended on the parent now depend on every child.
  result<std::vector<task>> split(const task_id& parent, std::vector<task> children);

  /// The task, from the board or else from the archive.
  result<std::optional<task>> get(const task_id& id);
  /// Every task on the board (not the archived ones), or those in `state`, in id order.
  result<std::vector<task>> list(std::optional<task_state> state = std::nullopt);
  /// An archived merged task whose title has the same title_key, if any (the
  /// board's own merged tasks are in list()).
  result<std::optional<task>> archived_merge_titled(std::string_view title);

  /// Moves finished tasks (merged, superseded) from the board to the
  /// archive, all but the `keep` that finished last: each is in the archive
  /// (durably) before it leaves the store, and one that moved on meanwhile
  /// (reverted) stays. Returns how many moved; 0 without an archive.
  result<std::size_t> archive_finished(std::size_t keep);
  /// Checks that the archive is the one this board archived into (the board
  /// records its identity with the first task it moves): one deleted or
  /// replaced since is an error that names it, so its tasks are not silently
  /// forgotten and done again. Fine without an archive, or before the first move.
  result<void> verify_archive();
  /// Watches the task keys; decode events with task_from_json(kv.value).
  result<std::unique_ptr<store::watcher>> watch(store::revision from);

  /// Returns tasks whose claim was lost (the worker's lease expired) to ready.
  /// claim() runs it when it finds nothing ready. Returns how many moved.
  result<std::size_t> reconcile();

  board_stats stats() const noexcept;
  const board_options& options() const noexcept { return options_; }

private:
  struct loaded {
    task t;
    std::int64_t version = 0;
  };
  result<std::optional<loaded>> load(const task_id& id);
  result<std::optional<task>> try_claim_once(const worker_id& worker, store::lease_id lease, bool& conflict);
  void add_ready(store::txn& x, task& t);
  /// Adds to `x` the writes of `worker` holding `t` (already marked claimed) on `lease`.
  void stage_claim(store::txn& x, const task& t, const worker_id& worker, store::lease_id lease) const;
  /// Adds the writes that create `t` (and its dependency keys) to `x`.
  result<task> stage_new(store::txn& x, const task& t, const std::set<std::string>& siblings);
  std::string ready_key(const task& t) const;
  std::string task_key(const task_id& id) const { return options_.prefix + "task/" + id.str(); }
  std::string claim_key(const task_id& id) const { return options_.prefix + "claim/" + id.str(); }
  std::string claimed_key(const task_id& id) const { return options_.prefix + "claimed/" + id.str(); }
  std::string waiting_key(const task_id& dep, const task_id& id) const {
    return options_.prefix + "waiting/" + dep.str() + "/" + id.str();
  }
  std::string blocked_key(const task_id& id, const task_id& dep) const {
    return options_.prefix + "blocked/" + id.str() + "/" + dep.str();
  }
  /// Adds to `x` a compare on id's dependents marker (see stage_new).
  error_info compare_dependents(store::txn& x, const task_id& id);
  /// Rewritten whenever a dependent is added to `dep`: finish and split compare it.
  std::string dependents_key(const task_id& dep) const { return options_.prefix + "dependents/" + dep.str(); }
  std::string archive_key() const { return options_.prefix + "archive_identity"; }
  void publish(const task_id& id, task_state from, task_state to, const std::optional<worker_id>& w, store::revision rev,
               bool created = false);
  /// Shared by release/submit/abandon: the worker must still hold the claim.
  result<task> leave_claim(const task_id& id, const worker_id& worker, task_state to, json::value report, std::string note);
  std::uint64_t random(std::uint64_t bound);
  std::int64_t now_us() const;
  std::int64_t now_ms() const { return now_us() / 1000; }

  store::store& store_;
  board_options options_;
  std::atomic<std::uint64_t> claims_{0}, conflicts_{0};
  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
};

}  // namespace agentcore::board
