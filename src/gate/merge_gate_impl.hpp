// merge_gate's implementation (private, not installed), shared by its sources:
//   merge_gate.cpp  the JSON of changes, verdicts and events; the public API
//                   and its async operations
//   queue.cpp       submitting, the queue and verdicts in the store, waiting
//                   for a verdict, telling the board
//   leader.cpp      the queue's leadership and finishing a predecessor's work
//   landing.cpp     landing: merging in memory, deep checks and bisection,
//                   optimistic landing and its reverts, one step of the queue
//   remote.cpp      the change-ref protocol and the shared repository
#pragma once

#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/gate/queue_policy.hpp>

#include <agentcore/git/repository.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace agentcore::gate {

namespace gate_detail {

inline std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace gate_detail

class merge_gate::impl {
public:
  impl(store::store& s, git::worktree_pool& pool, gate_options o, git::repository queue_repo, git::repository submit_repo,
       git::repository tip_repo);
  ~impl();

  std::string queue_prefix() const { return root_ + "queue/"; }
  std::string verdict_key(const std::string& id) const { return root_ + "verdict/" + id; }
  std::string landing_key() const { return root_ + "landing"; }
  std::string leader_key() const { return root_ + "leader"; }
  std::string since_green_prefix() const { return root_ + "since_green/"; }
  /// landed/<commit>: the change and task a merge commit landed, so that a
  /// revert of it (rollback, optimistic auto-revert) reaches the task.
  std::string landed_key(const git::oid& commit) const { return root_ + "landed/" + commit.hex(); }
  std::string board_pending_key(const std::string& id) const { return root_ + "board_pending/" + id; }

  struct item {
    change c;
    std::string key;  // its queue key
  };

  // --- the queue's leadership (leader.cpp) ---

  result<void> ensure_leader();
  result<void> finish_predecessor();
  void resign();
  result<void> recover();
  result<void> redo_board_updates();

  // --- verdicts, events and the board (queue.cpp) ---

  void step(std::string name, std::vector<std::string> changes, std::string detail = {}) {
    if (options_.events) options_.events->publish(gate_step{std::move(name), std::move(changes), std::move(detail)});
  }
  template <class Items>
  static std::vector<std::string> ids(const Items& items) {
    std::vector<std::string> out;
    for (const auto& x : items) out.push_back(x.it.c.id);
    return out;
  }

  bool for_board(const change_verdict& v, const std::optional<task_id>& task) const {
    return options_.board && task && v.kind != verdict_kind::queued;
  }

  void note_for_board(store::txn& x, const change_verdict& v, const std::optional<task_id>& task) const;
  void tell_board(const task_id& task, const change_verdict& v);
  void announce(const change_verdict& v, const std::optional<task_id>& task);
  result<void> tell_board_if_pending(const std::string& id);
  result<change_verdict> decide(const change& c, change_verdict v, const std::string& queue_key = {});
  result<std::vector<check_result>> run_checks(const std::vector<std::string>& commands, const git::oid& at, bool& passed,
                                               const std::vector<std::shared_ptr<check>>& host = {});
  result<contract::task_contract> ceiling_contract(const contract::task_contract& own) const;

  // --- submitting and the queue (queue.cpp) ---

  result<change_verdict> submit(change c);
  result<change_verdict> enqueue(change c, change_verdict v);
  result<std::optional<change_verdict>> verdict(const std::string& id);
  result<std::vector<item>> read_queue(std::size_t limit);
  result<prune_report> prune(std::size_t keep);

  /// What a wait's cancellation reaches: the watcher it waits on.
  struct wait_state {
    std::mutex m;
    std::atomic<bool> canceled{false};
    store::watcher* watcher = nullptr;  // m
    void cancel() {
      std::lock_guard lk(m);
      canceled = true;
      if (watcher) watcher->cancel();
    }
  };

  static error_info wait_canceled(const std::string& id);
  static result<std::optional<change_verdict>> final_in(const store::key_value& kv);
  asio::awaitable<result<void>> wait_for_key(const std::string& key, wait_state& ws, const std::string& id,
                                             std::function<result<bool>(const store::key_value*)> done);
  asio::awaitable<result<change_verdict>> wait_op(std::string id, std::shared_ptr<wait_state> ws);

  // --- landing (landing.cpp) ---

  struct built {
    item it;
    git::oid commit;
  };

  result<std::vector<built>> build_chain(git::oid tip, std::vector<item>& items, std::vector<change_verdict>& out);
  // (Not result<bool>: bool is constructible from error_info, which makes
  // boost::system::result<bool, error_info> unable to take an error implicitly.)
  enum class landed { yes, branch_moved };
  result<landed> advance(const git::oid& from, const std::vector<built>& chain, std::vector<change_verdict>& out,
                         bool optimistic);
  result<void> finish_landing(const json::object& landing, std::vector<change_verdict>& out);
  result<void> finish_landing_checked(const json::object& landing, std::vector<change_verdict>& out);
  std::pair<std::string, std::optional<task_id>> landed_by(const git::oid& commit);
  result<git::oid> branch_tip();
  result<void> land(std::vector<item> items, std::vector<change_verdict>& out);
  result<void> land_optimistic(item it, std::vector<change_verdict>& out);
  result<void> check_branch(std::vector<change_verdict>& out);
  result<std::vector<change_verdict>> run_once();

  // --- the change-ref protocol and the shared repository, options_.remote (remote.cpp) ---

  static std::string change_ref(const std::string& id) { return "refs/agentcore/changes/" + id; }

  std::string remote_tracking_ref() const { return "refs/agentcore/remote/" + options_.branch.substr(5); }

  result<void> publish_change(const change& c);
  result<git::oid> tip();
  result<void> sync_from_remote();
  result<git::advance_result> move_branch(const git::oid& from, const git::oid& to, std::string_view log);
  void forget_changes(const std::vector<change_verdict>& decided);

  // --- the async operations (merge_gate.cpp) ---

  asio::any_io_executor blocking_executor();
  asio::awaitable<result<change_verdict>> submit_op(change c);
  asio::awaitable<result<std::vector<change_verdict>>> run_once_op();
  asio::awaitable<result<git::oid>> tip_op();

  store::store& store_;
  git::worktree_pool& pool_;
  gate_options options_;
  queue_policy policy_;  // the decisions (queue_policy.hpp); the rest of this class carries them out
  git::repository repo_;         // the queue's (run_mutex_)
  git::repository submit_repo_;  // submit()'s (submit_mutex_)
  git::repository tip_repo_;     // tip()'s (tip_mutex_)
  std::mutex run_mutex_, submit_mutex_, tip_mutex_;
  std::string root_;
  std::string instance_;
  store::lease_id lease_ = 0;  // run_mutex_
  bool recovered_ = false;     // run_mutex_: the previous leader's work is finished
  std::map<std::string, std::chrono::steady_clock::time_point> first_seen_;  // run_mutex_: for batch_wait
  std::mutex pool_mutex_;
  std::unique_ptr<asio::thread_pool> own_pool_;  // last: joined before the rest goes
};

}  // namespace agentcore::gate
