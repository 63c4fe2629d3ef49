// agentcore/store/store.hpp: the optimistic-lock store every agentcore
// component coordinates through. No lock is held across a task: writers read,
// then commit with compares on the versions they read, and retry on conflict.
//
//   auto r = s.get("task/a");                        // result<std::optional<key_value>>
//   store::txn t;
//   t.if_version("task/a", (*r)->version).put("task/a", updated);
//   auto c = s.commit(t);                            // result<commit_result>
//   co_await s.async_commit(t, asio::use_awaitable); // the same, asynchronously
//
// Backends: memory_store (in-process), file_store (durable, write-ahead log);
// a host adds its own by deriving from `store` and overriding the do_* hooks.
// Every member function is safe to call from any thread.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/store/types.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::store {

namespace asio = boost::asio;

/// A stream of changes under a key prefix, from a given revision on, in
/// revision order. Obtain one from store::watch.
class watcher {
public:
  using next_signature = void(result<std::vector<watch_event>>);

  virtual ~watcher() = default;

  /// The events available now (possibly none). An error `compacted` means the
  /// watcher fell behind the store's retained history: read the state again
  /// with range() and watch from its revision.
  result<std::vector<watch_event>> poll() { return do_poll(); }

  /// Completes when at least one event is available, or with an error
  /// (`compacted`, `canceled` after cancel(), `closed` when the store closes).
  template <class CompletionToken>
  auto async_next(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, next_signature>(
        [this](auto handler) { do_async_next(::agentcore::detail::never_inline(std::move(handler))); }, token);
  }

  /// Completes a pending async_next with `canceled`; later calls fail the same way.
  void cancel() { do_cancel(); }

  /// The next revision this watcher will deliver.
  virtual revision next_revision() const = 0;

private:
  virtual result<std::vector<watch_event>> do_poll() = 0;
  virtual void do_async_next(asio::any_completion_handler<next_signature> handler) = 0;
  virtual void do_cancel() = 0;
};

class store {
public:
  using commit_signature = void(result<commit_result>);
  using range_signature = void(result<range_result>);
  using lease_signature = void(result<lease_id>);

  virtual ~store() = default;

  /// One key, or nullopt if absent.
  result<std::optional<key_value>> get(std::string_view key) { return do_get(key); }
  /// Every key starting with `prefix`, in key order, and the revision read at.
  result<range_result> range(std::string_view prefix, range_options options = {}) { return do_range(prefix, options); }
  /// Applies `t` if all its compares hold. Returns once the commit is durable
  /// (for durable backends). A failed compare is `succeeded == false`.
  result<commit_result> commit(const txn& t) { return do_commit(t); }
  /// The store's current revision.
  result<revision> current_revision() { return do_current_revision(); }

  /// Grants a lease; keys attached to it are deleted when it expires, which is
  /// `ttl` after the grant or the last keep_alive, on the store's clock.
  result<lease_id> grant(std::chrono::seconds ttl) { return do_grant(ttl); }
  /// Restarts the lease's TTL. Error `lease_not_found` once it expired.
  result<lease_status> keep_alive(lease_id id) { return do_keep_alive(id); }
  /// Ends the lease now and deletes its keys (one revision).
  result<void> revoke(lease_id id) { return do_revoke(id); }
  result<lease_status> lease_info(lease_id id) { return do_lease_info(id); }

  /// Watches keys under `prefix`, delivering every change with revision >= `from`.
  /// `from` = current_revision() + 1 watches only what comes next.
  result<std::unique_ptr<watcher>> watch(std::string prefix, revision from) { return do_watch(std::move(prefix), from); }

  /// Stops the store: pending and later operations fail with `closed`.
  void close() { do_close(); }

  template <class CompletionToken>
  auto async_commit(txn t, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, commit_signature>(
        [this](auto handler, txn t) { do_async_commit(std::move(t), ::agentcore::detail::never_inline(std::move(handler))); }, token, std::move(t));
  }

  template <class CompletionToken>
  auto async_range(std::string prefix, range_options options, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, range_signature>(
        [this](auto handler, std::string p, range_options o) { do_async_range(std::move(p), o, ::agentcore::detail::never_inline(std::move(handler))); },
        token, std::move(prefix), options);
  }

  template <class CompletionToken>
  auto async_grant(std::chrono::seconds ttl, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, lease_signature>(
        [this](auto handler, std::chrono::seconds ttl) { do_async_grant(ttl, ::agentcore::detail::never_inline(std::move(handler))); }, token, ttl);
  }

protected:
  virtual result<std::optional<key_value>> do_get(std::string_view key) = 0;
  virtual result<range_result> do_range(std::string_view prefix, range_options options) = 0;
  virtual result<commit_result> do_commit(const txn& t) = 0;
  virtual result<revision> do_current_revision() = 0;
  virtual result<lease_id> do_grant(std::chrono::seconds ttl) = 0;
  virtual result<lease_status> do_keep_alive(lease_id id) = 0;
  virtual result<void> do_revoke(lease_id id) = 0;
  virtual result<lease_status> do_lease_info(lease_id id) = 0;
  virtual result<std::unique_ptr<watcher>> do_watch(std::string prefix, revision from) = 0;
  virtual void do_close() = 0;

  // Asynchronous hooks. The defaults run the synchronous hook on the calling
  // thread and complete through the handler's associated executor; a backend
  // whose operations wait (on disk, on the network) overrides them.
  virtual void do_async_commit(txn t, asio::any_completion_handler<commit_signature> handler);
  virtual void do_async_range(std::string prefix, range_options options,
                              asio::any_completion_handler<range_signature> handler);
  virtual void do_async_grant(std::chrono::seconds ttl, asio::any_completion_handler<lease_signature> handler);
};

}  // namespace agentcore::store
