// agentcore/store/file_store.hpp: the durable embedded store. The memory
// store plus a write-ahead log in a directory: a commit is acknowledged only
// once it is on disk, concurrent commits share one fsync (group commit), and
// periodic snapshots keep disk use proportional to live data.
//
//   auto s = agentcore::store::file_store::open("/var/lib/swarm/board").value();
//   if (auto& r = s->recovery(); r.torn_tail) log(*r.torn_tail);
//
// On disk: `LOCK` (holds the pid of the process that has the store open),
// `wal-<16 hex>.log` segments of records (length, CRC32C, payload) and
// `snap-<16 hex>.snap` snapshots, and `MANIFEST`: the store's id, the
// segments it has (each closed one with its size and checksum) and how much
// of the newest is known to be on disk, rewritten atomically when a segment
// closes, a snapshot is taken, at most once a second as syncs go by, and on
// close. A record whose write was cut short by a crash (past what MANIFEST
// knows to be on disk) is truncated on open and reported; anything else, a
// segment missing, shortened, replaced or out of order, is an error naming
// the file, never a silent loss.
// Leases survive a reopen with their full TTL restarted (as etcd does after a
// leader change): a crash never makes a lease expire early.
// Reads and watches see a commit as soon as it is applied, which can be before
// its fsync finishes; only its committer waits for that. A crash can therefore
// take back a commit someone read but nobody was told had succeeded.
// After a failed write or fsync the store stops (every later call fails):
// the kernel may have dropped the pages, so nothing more is acknowledged.
// The store runs one background thread that writes and syncs the log.
#pragma once

#include <agentcore/core/clock.hpp>
#include <agentcore/store/store.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

namespace agentcore::store {

enum class fsync_policy {
  always,  ///< acknowledge a commit only after fdatasync (the default)
  batch,   ///< acknowledge after write(); fdatasync at most every batch_interval
  none,    ///< never sync; survives a process crash, not a power loss
};

struct file_store_options {
  std::shared_ptr<agentcore::clock> clock;  ///< lease clock; steady clock when null
  fsync_policy fsync = fsync_policy::always;
  std::chrono::milliseconds batch_interval{10};
  /// A segment is closed and a new one started past this size.
  std::size_t segment_bytes = 64u << 20;
  /// A snapshot is written at a segment boundary once the log since the last
  /// snapshot exceeds both this and twice the live data.
  std::size_t snapshot_min_bytes = 64u << 20;
  /// Watch events retained in memory (each holds its key and value): a
  /// watcher further behind gets `compacted` and reads the range again.
  /// Memory follows this, not the run's length.
  std::size_t history_limit = 10'000;
  /// Open an existing store to read it, changing nothing on disk: no lock
  /// (a process may be running it), no repair of a torn tail (it is left out
  /// in memory), no new files. Commits and leases fail with
  /// `permission_denied`. A directory without a store is `not_found`.
  bool read_only = false;
};

/// What opening the store found.
struct recovery_report {
  std::string snapshot;                  ///< snapshot file loaded, or empty
  std::size_t segments = 0;              ///< log segments replayed
  std::uint64_t records = 0;             ///< log records replayed
  revision rev = 0;                      ///< revision after recovery
  std::optional<std::string> torn_tail;  ///< set when a torn last record was cut off (or, read-only, left out)
  /// Set when the store had no MANIFEST (made by a version before it
  /// existed) and one was written; until then, missing segments could not be told.
  std::optional<std::string> manifest_created;
};

struct file_store_stats {
  std::uint64_t records_written = 0;
  std::uint64_t syncs = 0;
  std::uint64_t snapshots = 0;
  std::uint64_t log_bytes = 0;  ///< bytes in live segments
};

class file_store final : public store {
public:
  /// Opens or creates the store in `dir`. Errors: `in_use` (another process
  /// has it open, naming its pid), `corrupt` and `unsupported_format` (naming
  /// file and offset), `io_error`.
  static result<std::unique_ptr<file_store>> open(const std::filesystem::path& dir, file_store_options options = {});
  ~file_store() override;

  const recovery_report& recovery() const noexcept;
  const std::filesystem::path& directory() const noexcept;
  /// The store's identity (16 hex digits, from MANIFEST): a host that
  /// records it can tell "this store" from "a new, empty store in its place".
  const std::string& id() const noexcept;
  file_store_stats stats() const;

  /// Writes a snapshot at the next record boundary and drops the segments it
  /// covers; returns once done.
  result<void> snapshot_now();

  class impl;

private:
  explicit file_store(std::unique_ptr<impl> p);

  result<std::optional<key_value>> do_get(std::string_view key) override;
  result<range_result> do_range(std::string_view prefix, range_options options) override;
  result<commit_result> do_commit(const txn& t) override;
  result<revision> do_current_revision() override;
  result<lease_id> do_grant(std::chrono::seconds ttl) override;
  result<lease_status> do_keep_alive(lease_id id) override;
  result<void> do_revoke(lease_id id) override;
  result<lease_status> do_lease_info(lease_id id) override;
  result<std::unique_ptr<watcher>> do_watch(std::string prefix, revision from) override;
  void do_close() override;
  void do_async_commit(txn t, asio::any_completion_handler<commit_signature> handler) override;

  std::unique_ptr<impl> impl_;
};

}  // namespace agentcore::store
