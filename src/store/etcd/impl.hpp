// The etcd backend's private parts (not installed), shared by its sources:
//   etcd_store.cpp      the KV operations, commits and their recovery, leases,
//                       connecting and the public member functions
//   etcd/codec.cpp      base64, proto3 JSON fields, keys and transactions as JSON
//   etcd/transport.cpp  one request, with failover, and etcd's errors named
//   etcd/watch.cpp      the watch streams and the watcher
//   etcd/url.cpp        parse_etcd_url
#pragma once

#include <agentcore/store/etcd_store.hpp>

#include "detail/complete.hpp"
#include "net/http.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <thread>

namespace agentcore::store {

namespace etcd_detail {

using asio::awaitable;
using asio::use_awaitable;
using clock_type = std::chrono::steady_clock;

/// An exception that escaped one of the store's coroutines, as an error (etcd_store.cpp).
error_info unexpected(const std::exception_ptr& e);

// --- encoding (etcd/codec.cpp) ---

std::string b64(std::string_view in);
result<std::string> unb64(std::string_view in);
std::int64_t i64(const json::object& o, std::string_view k);
bool bool_at(const json::object& o, std::string_view k);
std::string prefix_end(std::string key);
std::string snippet(std::string_view body);
std::string ms(std::chrono::milliseconds d);

/// How a request may be repeated after a failure.
enum class repeat {
  anywhere,   ///< reads, lease calls: on any endpoint, until the deadline
  if_unsent,  ///< a transaction: only if it cannot have reached a server
};

/// A request's outcome as the caller needs it.
struct reply {
  result<json::object> body = json::object();
  bool maybe_applied = false;  ///< failed after the request may have been applied
  bool repeated_after_maybe = false;  ///< succeeded or failed on a repeat after an attempt that may have applied
};

}  // namespace etcd_detail

// --- watch state, shared by the watcher, the stream coroutine and the store ---

struct etcd_watch_state {
  std::string user_prefix;  // as the caller named it
  std::string key;          // the full etcd key prefix
  std::int64_t start = 0;   // the etcd revision to watch from (moves on reconnect)

  std::mutex mutex;
  std::condition_variable cv;
  bool created = false;
  error_info failure;                 // set once: the watcher is done
  std::vector<watch_event> buffer;    // arrived, not yet delivered
  std::int64_t stream_through = 0;    // etcd revision of the last event that arrived
  std::int64_t expect_through = 0;    // etcd revision of this store's last commit with an event here
  revision next = 1;                  // what next_revision() says
  std::optional<asio::any_completion_handler<watcher::next_signature>> pending;
  asio::any_completion_executor pending_work;  // keeps the pending handler's executor's run() going
  std::function<void()> cancel_stream;  // posts the cancellation to the I/O thread; empty once closed
  asio::cancellation_signal signal;     // used on the I/O thread only
  std::string partial;                  // an incomplete line of the stream
};

struct etcd_store::impl {
  etcd_options opt;
  std::vector<net::url> eps;
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::unique_ptr<net::http_client> http;
  std::thread thread;

  std::atomic<std::size_t> current{0};
  std::atomic<std::uint64_t> failovers{0};
  std::atomic<bool> compacting{false};
  std::atomic<std::int64_t> compacted{0};  // etcd revision this store last compacted to

  mutable std::mutex mutex;
  bool closed = false;
  std::string token;
  std::vector<std::weak_ptr<etcd_watch_state>> watchers;
  // This store's recent commits (etcd revision, keys that changed), so a
  // watcher created later from an earlier revision still waits for them.
  std::deque<std::pair<std::int64_t, std::vector<std::string>>> recent;
  static constexpr std::size_t recent_limit = 4096;

  explicit impl(etcd_options o) : opt(std::move(o)) {}

  error_info closed_error() const {
    return fail(error::closed, "etcd store: closed; open a new one with etcd_store::connect");
  }
  bool is_closed() const {
    std::lock_guard lock(mutex);
    return closed;
  }

  std::string full(std::string_view key) const { return opt.prefix + std::string(key); }
  std::string strip(std::string_view key) const {
    return std::string(key.substr(std::min(opt.prefix.size(), key.size())));
  }

  result<key_value> from_kv(const json::object& kv) const;  // etcd/codec.cpp

  // --- one request, with failover (etcd/transport.cpp) ---

  net::limits limits_for_call() const;
  net::http_request make_request(const std::string& path, std::string body) const;
  asio::awaitable<result<net::http_response>> send(const net::url& to, net::http_request req, net::limits lim,
                                                   net::body_sink sink = {});
  asio::awaitable<error_info> authenticate(const net::url& to);

  struct call_state;
  struct attempt_end;
  static attempt_end answer(etcd_detail::reply r);
  static attempt_end next(std::string why);

  asio::awaitable<etcd_detail::reply> call(std::string path, std::string body, etcd_detail::repeat how);
  attempt_end on_transport_failure(call_state& cs, const error_info& e);
  attempt_end on_answer(call_state& cs, const net::url& to, net::http_response& r);
  attempt_end on_grpc_status(call_state& cs, const net::url& to, const json::object& o);
  etcd_detail::reply gave_up(const call_state& cs);

  // --- operations (etcd_store.cpp; the JSON of transactions in etcd/codec.cpp) ---

  asio::awaitable<result<range_result>> range(std::string prefix, range_options options);
  asio::awaitable<result<std::optional<key_value>>> get(std::string key);
  asio::awaitable<result<revision>> current_revision();
  asio::awaitable<result<void>> readable_at(std::int64_t etcd_rev);
  static json::object compare_json(const std::string& key, std::int64_t version);
  std::string txn_body(const txn& t) const;
  asio::awaitable<result<commit_result>> commit(txn t);
  asio::awaitable<result<std::optional<commit_result>>> recover(const txn& t, const error_info& why, int round);
  asio::awaitable<result<commit_result>> committed(const txn& t, const json::object& answer);
  void note_commit(std::vector<std::string> keys, std::int64_t etcd_rev);
  asio::awaitable<void> maybe_compact(std::int64_t etcd_rev);
  asio::awaitable<result<lease_id>> grant(std::chrono::seconds ttl);
  asio::awaitable<result<lease_status>> keep_alive(lease_id id);
  asio::awaitable<result<void>> revoke(lease_id id);
  asio::awaitable<result<lease_status>> lease_info(lease_id id);

  // --- watches (etcd/watch.cpp) ---

  error_info feed(etcd_watch_state& w, std::string_view chunk);
  error_info take_message(etcd_watch_state& w, std::string_view line);
  void deliver(etcd_watch_state& w);
  void end_watch(etcd_watch_state& w, error_info why);
  asio::awaitable<void> run_watch(std::shared_ptr<etcd_watch_state> w);
  boost::system::error_code ignored_;

  // --- running coroutines ---

  template <class T>
  result<T> wait(asio::awaitable<result<T>> op) {
    if (is_closed()) return closed_error();
    if (io.get_executor().running_in_this_thread())
      return fail(error::invalid_argument,
                  "etcd store: a synchronous call from the store's own I/O thread would wait for itself; use the "
                  "async_ calls from completion handlers");
    std::promise<result<T>> p;
    auto f = p.get_future();
    asio::co_spawn(io, std::move(op), [&p](std::exception_ptr e, result<T> r) {
      if (e) r = etcd_detail::unexpected(e);
      p.set_value(std::move(r));
    });
    return f.get();
  }

  template <class T, class Signature>
  void spawn(asio::awaitable<result<T>> op, asio::any_completion_handler<Signature> handler) {
    if (is_closed())
      return agentcore::detail::post_completion(std::move(handler), result<T>(closed_error()));
    auto work = agentcore::detail::track_work(handler);  // the caller's run() waits for us
    asio::co_spawn(io, std::move(op), [h = std::move(handler), work](std::exception_ptr e, result<T> r) mutable {
      if (e) r = etcd_detail::unexpected(e);
      agentcore::detail::post_completion(std::move(h), std::move(r));
    });
  }

  void shutdown();  // etcd_store.cpp
};

}  // namespace agentcore::store
