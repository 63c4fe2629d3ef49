// The in-memory heart shared by memory_store and file_store: keys, leases,
// history and watchers under one mutex. A journal (the file store's write-
// ahead log) sees every mutation, in revision order, while the lock is held.
#pragma once

#include <agentcore/core/clock.hpp>
#include <agentcore/store/store.hpp>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

namespace agentcore::store::detail {

class engine;

/// Everything needed to rebuild an engine: what a snapshot holds.
struct engine_image {
  revision rev = 0;
  lease_id next_lease = 1;
  std::vector<std::pair<lease_id, std::int64_t>> leases;  // id, ttl seconds
  std::vector<key_value> kvs;
};

/// Receives every mutation while the engine's lock is held. Returns a ticket
/// the caller may wait on (the file store: until it is on disk).
class journal {
public:
  virtual ~journal() = default;
  virtual std::uint64_t append_txn(revision rev, const std::vector<op>& ops) = 0;
  virtual std::uint64_t append_grant(lease_id id, std::int64_t ttl_seconds) = 0;
  virtual std::uint64_t append_revoke(lease_id id, revision rev) = 0;
  /// Called after each append, still under the lock, so a journal can take a
  /// consistent image for a snapshot at a record boundary.
  virtual void after_append(const engine&) {}
};

struct engine_options {
  std::shared_ptr<agentcore::clock> clock;
  std::size_t history_limit = 100'000;  // watch events retained
};

class engine : public std::enable_shared_from_this<engine> {
public:
  struct ticketed_commit {
    commit_result result;
    std::uint64_t ticket = 0;  // 0: nothing journaled
  };

  explicit engine(engine_options options, journal* j = nullptr);

  result<std::optional<key_value>> get(std::string_view key);
  result<range_result> range(std::string_view prefix, range_options options);
  result<ticketed_commit> commit(const txn& t);
  result<revision> current_revision();
  result<std::pair<lease_id, std::uint64_t>> grant(std::chrono::seconds ttl);
  result<lease_status> keep_alive(lease_id id);
  result<std::uint64_t> revoke(lease_id id);
  result<lease_status> lease_info(lease_id id);
  result<std::unique_ptr<watcher>> watch(std::string prefix, revision from);

  /// Expires the leases whose deadline has passed. Every operation does this
  /// first; a store also calls it on a timer so watchers see expiries when
  /// nothing else happens.
  void expire();

  /// Fail-stop: every later call fails with `reason`; watchers are told.
  void close(error_info reason);

  // Recovery: rebuild without journaling. Leases restart their full TTL.
  void restore(engine_image image);
  error_info replay_txn(revision rev, const std::vector<op>& ops);
  void replay_grant(lease_id id, std::int64_t ttl_seconds);
  error_info replay_revoke(lease_id id, revision rev);
  /// Takes an image; call only from journal::after_append (lock held) or
  /// when no other thread uses the engine.
  engine_image image_locked() const;
  std::size_t key_count_locked() const { return kvs_.size(); }
  std::size_t live_bytes_locked() const { return live_bytes_; }

  /// Runs f(*this) under the engine's lock: a record boundary.
  template <class F>
  void with_lock(F&& f) {
    std::lock_guard lock(mutex_);
    f(*this);
  }

  struct watch_state;

private:
  // Values are immutable and shared between the live entry and the watch
  // history, so a put copies its value once.
  using shared_value = std::shared_ptr<const std::string>;
  struct entry {
    shared_value value;
    revision create_revision = 0;
    revision mod_revision = 0;
    std::int64_t version = 0;
    lease_id lease = 0;
  };
  struct lease {
    std::int64_t ttl_seconds = 0;
    clock::time_point deadline;
    std::set<std::string, std::less<>> keys;
  };

  error_info check_open_locked() const;
  void expire_locked();
  struct history_event {
    watch_event::kind type;
    std::string key;
    shared_value value;  // null for erase
    revision create_revision, mod_revision;
    std::int64_t version;
    lease_id lease;
  };
  using kv_map = std::map<std::string, struct entry, std::less<>>;
  void apply_put_locked(revision rev, const op& o, kv_map::iterator hint);
  void apply_erase_locked(revision rev, const std::string& key);
  std::size_t revoke_locked(lease_id id, revision rev);  // returns keys deleted
  void record_locked(history_event ev);
  void notify_locked();
  void trim_history_locked();
  result<std::vector<watch_event>> collect_locked(watch_state& w);

  friend class engine_watcher;

  engine_options options_;
  journal* journal_;
  mutable std::mutex mutex_;
  kv_map kvs_;
  std::size_t live_bytes_ = 0;
  std::unordered_map<lease_id, lease> leases_;
  std::multimap<clock::time_point, lease_id> deadlines_;
  lease_id next_lease_ = 1;
  revision rev_ = 0;
  std::deque<history_event> history_;
  revision compacted_ = 0;  // events with revision <= this are gone
  std::vector<std::weak_ptr<watch_state>> watchers_;
  error_info closed_;
};

}  // namespace agentcore::store::detail
