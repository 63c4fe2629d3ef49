// agentcore/store/etcd_store.hpp: the store on an etcd cluster, through etcd's
// v3 JSON API (the gateway etcd 3.4 and later serve under /v3/). Many
// processes on many machines share one board this way.
//
//   auto s = agentcore::store::etcd_store::connect({
//       .endpoints = {"http://10.0.0.1:2379", "http://10.0.0.2:2379"},
//       .prefix = "agentcore/board-a/"});      // result<std::unique_ptr<etcd_store>>
//   auto c = (*s)->commit(store::txn().if_absent("task/a").put("task/a", json));
//
// Semantics are those of every store (see store.hpp) with these additions:
// - Keys live under `prefix`, so several boards share one cluster. Revisions
//   are the cluster's (minus one, so an empty cluster reads 0): shared by every
//   prefix, increasing, not dense for one prefix.
// - Endpoints are tried in turn when one does not answer. A request whose
//   outcome cannot be unknown (reads, lease calls, a write that never reached
//   a server) is retried on the next endpoint; a transaction that may have
//   reached a server is re-read, never blindly sent again: if its effects are
//   visible it succeeded, if its compares still hold and it fences itself (it
//   compares a key it writes) it is sent once more, else `outcome_unknown`.
// - A watcher's poll() returns the events that have arrived, and always those
//   of commits this store object completed before the call. Events from other
//   processes arrive as etcd streams them.
// - Lease expiry is etcd's: real time on the cluster's clock.
//
// The store runs its own I/O thread; the synchronous calls may be made from
// any other thread (not from a completion handler running on that thread).
#pragma once

#include <agentcore/store/store.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::store {

struct etcd_options {
  /// Client URLs, http:// or https:// (e.g. "http://127.0.0.1:2379").
  std::vector<std::string> endpoints;
  /// Prepended to every key; "" uses the whole key space. End it with '/'.
  std::string prefix;
  /// etcd authentication (optional): a token is fetched and renewed.
  std::string username, password;
  /// TLS (https endpoints): extra trusted CA certificates (PEM), a client
  /// certificate and key (PEM) for clusters that ask for one.
  std::string ca_file, cert_file, key_file;
  bool verify_tls = true;
  /// Connecting to one endpoint; past it the next one is tried.
  std::chrono::milliseconds connect_timeout{2'000};
  /// One request (a commit without quorum waits for etcd's own timeout, ~7 s).
  std::chrono::milliseconds request_timeout{10'000};
  /// Responses over this size are refused (a range too large: use a limit).
  std::size_t max_response = 64u << 20;
  /// When > 0 the store compacts the cluster's history to its last
  /// `history_limit` revisions as it commits. Compaction is cluster-wide: set
  /// it only when agentcore owns the cluster; otherwise use etcd's own
  /// --auto-compaction-* flags. A watcher whose undelivered events fall behind
  /// the compacted revision reports `compacted`.
  std::int64_t history_limit = 0;
  /// A watcher holding more undelivered events than this reports `compacted`
  /// (its consumer is too slow): re-read with range() and watch again.
  std::size_t max_buffered_events = 100'000;
};

/// Parses "etcd://host:port[,host:port...]/prefix[?option=value&...]" (or
/// etcds:// for TLS) into endpoints and prefix; the prefix gets a trailing
/// '/'. Options, for what a store URL in a configuration or on a command line
/// must be able to say:
///   ca_file, cert_file, key_file   TLS files (PEM), as in etcd_options
///   verify_tls=false               do not check the server's certificate
///   user, password_file            credentials; the password is read from
///                                  the file (never written in the URL)
///   history_limit=N                compact history to the last N revisions
///   request_timeout_ms=N
/// An unknown option, an empty value or an unreadable password file is an
/// `invalid_argument` naming it.
result<etcd_options> parse_etcd_url(std::string_view text);

class etcd_store final : public store {
public:
  /// Connects and checks that the cluster answers (one read); the error
  /// names every endpoint tried and why it failed.
  static result<std::unique_ptr<etcd_store>> connect(etcd_options options);
  ~etcd_store() override;

  /// The cluster's member answering now, for messages and tests.
  std::string current_endpoint() const;
  /// Requests sent again on another endpoint after a failure, since connect.
  std::uint64_t failovers() const;

  struct impl;

private:
  explicit etcd_store(std::shared_ptr<impl> i);

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
  void do_async_range(std::string prefix, range_options options,
                      asio::any_completion_handler<range_signature> handler) override;
  void do_async_grant(std::chrono::seconds ttl, asio::any_completion_handler<lease_signature> handler) override;

  std::shared_ptr<impl> impl_;
};

}  // namespace agentcore::store
