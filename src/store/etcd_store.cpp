// The etcd backend: etcd's v3 JSON gateway over the library's HTTP client.
// Every request runs as a coroutine on the store's own I/O thread; the
// synchronous calls wait for it, the asynchronous ones complete through the
// caller's handler.
//
// This file: the KV operations, commits and their recovery, leases, shutting
// down, connecting and the public member functions. The rest is in etcd/
// (see etcd/impl.hpp).
#include <agentcore/store/etcd_store.hpp>

#include "detail/spawn.hpp"
#include "store/etcd/impl.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace agentcore::store {

namespace etcd_detail {

// An exception that escaped one of the store's coroutines, as an error.
error_info unexpected(const std::exception_ptr& e) {
  return fail(error::io_error, fmt::format("etcd store: unexpected exception: {}", agentcore::detail::what_of(e)));
}

}  // namespace etcd_detail

using namespace etcd_detail;

// --- operations ---

awaitable<result<range_result>> etcd_store::impl::range(std::string prefix, range_options options) {
  std::string key = full(prefix);
  json::object body;
  if (key.empty()) {
    body["key"] = b64(std::string(1, '\0'));
    body["range_end"] = b64(std::string(1, '\0'));
  } else {
    body["key"] = b64(key);
    body["range_end"] = b64(prefix_end(key));
  }
  if (options.limit) body["limit"] = std::to_string(options.limit);
  auto r = co_await call("/v3/kv/range", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return r.body.error();
  range_result out;
  if (auto* h = object_at(*r.body, "header")) out.rev = i64(*h, "revision") - 1;
  out.more = bool_at(*r.body, "more");
  if (auto* kvs = array_at(*r.body, "kvs")) {
    out.kvs.reserve(kvs->size());
    for (const auto& kv : *kvs) {
      if (!kv.is_object()) continue;
      auto x = from_kv(kv.get_object());
      if (!x) co_return x.error();
      out.kvs.push_back(std::move(*x));
    }
  }
  co_return out;
}

awaitable<result<std::optional<key_value>>> etcd_store::impl::get(std::string key) {
  json::object body{{"key", b64(full(key))}};
  auto r = co_await call("/v3/kv/range", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return r.body.error();
  if (auto* kvs = array_at(*r.body, "kvs"); kvs && !kvs->empty() && kvs->front().is_object()) {
    auto x = from_kv(kvs->front().get_object());
    if (!x) co_return x.error();
    co_return std::optional<key_value>(std::move(*x));
  }
  co_return std::optional<key_value>();
}

awaitable<result<revision>> etcd_store::impl::current_revision() {
  // A one-key read: its header carries the cluster's revision.
  json::object body{{"key", b64(opt.prefix.empty() ? std::string(1, '\0') : opt.prefix)}, {"count_only", true}};
  auto r = co_await call("/v3/kv/range", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return r.body.error();
  auto* h = object_at(*r.body, "header");
  co_return h ? i64(*h, "revision") - 1 : 0;
}

/// Whether history at `etcd_rev` is still there (a future revision is).
awaitable<result<void>> etcd_store::impl::readable_at(std::int64_t etcd_rev) {
  json::object body{{"key", b64(opt.prefix.empty() ? std::string(1, '\0') : opt.prefix)},
                    {"count_only", true},
                    {"revision", std::to_string(etcd_rev)}};
  auto r = co_await call("/v3/kv/range", json::serialize(body), repeat::anywhere);
  if (r.body || r.body.error() == error::invalid_argument) co_return result<void>();  // future revision
  co_return r.body.error();
}

awaitable<result<commit_result>> etcd_store::impl::commit(txn t) {
  if (auto e = validate(t)) co_return e;
  const std::string body = txn_body(t);
  for (int round = 0;; ++round) {
    auto r = co_await call("/v3/kv/txn", body, repeat::if_unsent);
    if (r.body) co_return co_await committed(t, *r.body);
    if (r.body.error() == error::lease_not_found) {
      std::string keys;
      for (const op& o : t.ops)
        if (o.lease) keys += fmt::format("{}'{}' (lease {})", keys.empty() ? "" : ", ", o.key, o.lease);
      co_return fail(error::lease_not_found,
                     fmt::format("etcd store: the lease of {} has expired or was revoked; grant a new lease",
                                 keys.empty() ? std::string("a key") : keys));
    }
    if (!r.maybe_applied) co_return r.body.error();
    // The transaction may have applied: read, never blindly send again.
    auto decided = co_await recover(t, r.body.error(), round);
    if (!decided) co_return decided.error();
    if (*decided) co_return std::move(**decided);
    // Not applied and fencing itself: send once more.
  }
}

/// After a transaction whose outcome is unknown: its result if its effects
/// are visible, nullopt when it is safe to send again, else an error.
awaitable<result<std::optional<commit_result>>> etcd_store::impl::recover(const txn& t, const error_info& why,
                                                                          int round) {
  auto unknown = [&](std::string_view detail) {
    return fail(error::outcome_unknown,
                fmt::format("etcd store: a transaction may or may not have applied ({}); {}; read the keys it "
                            "touches before deciding to retry",
                            why.message(), detail));
  };
  json::array reads;
  std::vector<std::string> keys;
  for (const op& o : t.ops) keys.push_back(o.key);
  for (const compare& c : t.compares)
    if (std::find(keys.begin(), keys.end(), c.key) == keys.end()) keys.push_back(c.key);
  for (const auto& k : keys)
    reads.push_back(json::object{{"request_range", json::object{{"key", b64(full(k))}}}});
  json::object body{{"success", std::move(reads)}};
  auto r = co_await call("/v3/kv/txn", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return unknown(fmt::format("re-reading failed too: {}", r.body.error().message()));
  std::map<std::string, key_value> now;
  if (auto* rs = array_at(*r.body, "responses")) {
    for (const auto& x : *rs) {
      if (!x.is_object()) continue;
      auto* rr = object_at(x.get_object(), "response_range");
      auto* kvs = rr ? array_at(*rr, "kvs") : nullptr;
      if (!kvs || kvs->empty() || !kvs->front().is_object()) continue;
      auto kv = from_kv(kvs->front().get_object());
      if (kv) now[kv->key] = std::move(*kv);
    }
  }
  std::int64_t header_rev = 0;
  if (auto* h = object_at(*r.body, "header")) header_rev = i64(*h, "revision") - 1;
  auto compared = [&](const std::string& key) -> const compare* {
    for (const compare& c : t.compares)
      if (c.key == key) return &c;
    return nullptr;
  };
  // Applied: every put's value is there, one version past what it compared;
  // every erased key is gone.
  bool applied = !t.ops.empty();
  revision applied_rev = 0;
  for (const op& o : t.ops) {
    auto it = now.find(o.key);
    if (o.type == op::kind::erase) {
      if (it != now.end()) applied = false;
      continue;
    }
    const compare* c = compared(o.key);
    if (it == now.end() || it->second.value != o.value || (c && it->second.version != c->version + 1)) {
      applied = false;
      continue;
    }
    applied_rev = std::max(applied_rev, it->second.mod_revision);
  }
  if (applied) co_return std::optional<commit_result>(commit_result{true, applied_rev ? applied_rev : header_rev});
  bool compares_hold = true;
  bool fences_itself = false;
  for (const compare& c : t.compares) {
    auto it = now.find(c.key);
    std::int64_t actual = it == now.end() ? 0 : it->second.version;
    if (actual != (c.type == compare::kind::absent ? 0 : c.version)) compares_hold = false;
    for (const op& o : t.ops)
      if (o.key == c.key) fences_itself = true;
  }
  if (compares_hold && fences_itself && round == 0) co_return std::optional<commit_result>();
  if (!compares_hold)
    co_return unknown("its compares no longer hold, so either it applied and was overwritten since, or another "
                      "writer got there first");
  co_return unknown(fences_itself ? "it was sent twice without an answer"
                                  : "it compares no key it writes, so sending it again could apply it twice");
}

/// A transaction's answer into a commit_result (success or conflict).
awaitable<result<commit_result>> etcd_store::impl::committed(const txn& t, const json::object& answer) {
  std::int64_t etcd_rev = 0;
  if (auto* h = object_at(answer, "header")) etcd_rev = i64(*h, "revision");
  // A failed transaction's answer leaves "succeeded" out.
  if (!bool_at(answer, "succeeded")) {
    commit_result out{false, etcd_rev - 1};
    auto* rs = array_at(answer, "responses");
    for (std::size_t i = 0; i < t.compares.size(); ++i) {
      const compare& c = t.compares[i];
      std::int64_t actual = 0;
      if (rs && i < rs->size() && (*rs)[i].is_object()) {
        if (auto* rr = object_at((*rs)[i].get_object(), "response_range"))
          if (auto* kvs = array_at(*rr, "kvs"); kvs && !kvs->empty() && kvs->front().is_object())
            actual = i64(kvs->front().get_object(), "version");
      }
      if (actual != (c.type == compare::kind::absent ? 0 : c.version)) {
        out.conflict_key = c.key;
        out.conflict_version = actual;
        break;
      }
    }
    if (out.conflict_key.empty() && !t.compares.empty()) out.conflict_key = t.compares.front().key;
    co_return out;
  }
  // Which watchers must see an event of this commit before poll() returns.
  auto* rs = array_at(answer, "responses");
  std::vector<std::string> changed;
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    const op& o = t.ops[i];
    bool changes = o.type == op::kind::put;
    if (!changes && rs && i < rs->size() && (*rs)[i].is_object())
      if (auto* d = object_at((*rs)[i].get_object(), "response_delete_range")) changes = i64(*d, "deleted") > 0;
    if (changes) changed.push_back(full(o.key));
  }
  if (!changed.empty()) note_commit(std::move(changed), etcd_rev);
  if (opt.history_limit > 0) co_await maybe_compact(etcd_rev);
  co_return commit_result{true, etcd_rev - 1};
}

void etcd_store::impl::note_commit(std::vector<std::string> keys, std::int64_t etcd_rev) {
  std::lock_guard lock(mutex);
  recent.emplace_back(etcd_rev, keys);
  if (recent.size() > recent_limit) recent.pop_front();
  std::erase_if(watchers, [](const auto& w) { return w.expired(); });
  for (const auto& weak : watchers) {
    auto w = weak.lock();
    if (!w) continue;
    for (const auto& k : keys)
      if (k.starts_with(w->key)) {
        std::lock_guard wl(w->mutex);
        w->expect_through = std::max(w->expect_through, etcd_rev);
        break;
      }
  }
}

awaitable<void> etcd_store::impl::maybe_compact(std::int64_t etcd_rev) {
  std::int64_t target = etcd_rev - opt.history_limit;
  std::int64_t step = std::max<std::int64_t>(1, opt.history_limit / 8);
  if (target <= compacted.load() + step - 1 || target < 1) co_return;
  if (compacting.exchange(true)) co_return;
  json::object body{{"revision", std::to_string(target)}};
  auto r = co_await call("/v3/kv/compaction", json::serialize(body), repeat::anywhere);
  if (r.body || r.body.error() == error::compacted) {
    std::int64_t seen = compacted.load();
    while (seen < target && !compacted.compare_exchange_weak(seen, target)) {
    }
  }
  compacting.store(false);
}

awaitable<result<lease_id>> etcd_store::impl::grant(std::chrono::seconds ttl) {
  if (ttl.count() <= 0)
    co_return fail(error::invalid_argument,
                   fmt::format("etcd store: lease TTL {} s; a lease lives at least one second", ttl.count()));
  json::object body{{"TTL", std::to_string(ttl.count())}};
  auto r = co_await call("/v3/lease/grant", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return r.body.error();
  if (auto e = string_at(*r.body, "error"); !e.empty())
    co_return fail(error::unavailable, fmt::format("etcd: granting a lease failed: {}", e));
  auto id = i64(*r.body, "ID");
  if (id == 0) co_return fail(error::corrupt, "etcd: the lease grant answer has no lease ID");
  co_return id;
}

awaitable<result<lease_status>> etcd_store::impl::keep_alive(lease_id id) {
  json::object body{{"ID", std::to_string(id)}};
  auto r = co_await call("/v3/lease/keepalive", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return r.body.error();
  // An expired lease answers with no TTL.
  auto ttl = i64(*r.body, "TTL");
  if (ttl <= 0)
    co_return fail(error::lease_not_found,
                   fmt::format("etcd store: lease {} has expired or was revoked; grant a new one", id));
  co_return lease_status{id, std::chrono::seconds(ttl), std::chrono::seconds(ttl)};
}

awaitable<result<void>> etcd_store::impl::revoke(lease_id id) {
  json::object body{{"ID", std::to_string(id)}};
  auto r = co_await call("/v3/lease/revoke", json::serialize(body), repeat::anywhere);
  if (r.body) co_return result<void>();
  // Revoked by an earlier attempt whose answer was lost: done.
  if (r.body.error() == error::lease_not_found && r.repeated_after_maybe) co_return result<void>();
  if (r.body.error() == error::lease_not_found)
    co_return fail(error::lease_not_found,
                   fmt::format("etcd store: lease {} has expired or was revoked already", id));
  co_return r.body.error();
}

awaitable<result<lease_status>> etcd_store::impl::lease_info(lease_id id) {
  json::object body{{"ID", std::to_string(id)}};
  auto r = co_await call("/v3/lease/timetolive", json::serialize(body), repeat::anywhere);
  if (!r.body) co_return r.body.error();
  auto ttl = i64(*r.body, "TTL");
  if (ttl < 0)
    co_return fail(error::lease_not_found,
                   fmt::format("etcd store: lease {} has expired or was revoked", id));
  co_return lease_status{id, std::chrono::seconds(i64(*r.body, "grantedTTL")), std::chrono::seconds(ttl)};
}

// --- shutting down ---

void etcd_store::impl::shutdown() {
  std::vector<std::shared_ptr<etcd_watch_state>> ws;
  {
    std::lock_guard lock(mutex);
    if (closed && !thread.joinable()) return;
    closed = true;
    for (auto& weak : watchers)
      if (auto w = weak.lock()) ws.push_back(std::move(w));
    watchers.clear();
  }
  for (auto& w : ws) {
    std::function<void()> cancel;
    {
      std::lock_guard lock(w->mutex);
      cancel = std::move(w->cancel_stream);
      w->cancel_stream = nullptr;
    }
    if (cancel) cancel();
    end_watch(*w, closed_error());
  }
}

// --- etcd_store ---

result<std::unique_ptr<etcd_store>> etcd_store::connect(etcd_options options) {
  if (options.endpoints.empty())
    return fail(error::invalid_argument, "etcd store: no endpoints; name at least one, like http://127.0.0.1:2379");
  auto i = std::make_shared<impl>(std::move(options));
  for (const auto& e : i->opt.endpoints) {
    auto u = net::parse_url(e);
    if (!u) return fail(error::invalid_argument, fmt::format("etcd store: endpoint {}", u.error().message()));
    i->eps.push_back(std::move(*u));
  }
  if (i->opt.history_limit < 0) return fail(error::invalid_argument, "etcd store: history_limit must be >= 0");
  net::http_options ho;
  ho.verify_tls = i->opt.verify_tls;
  ho.ca_file = i->opt.ca_file;
  ho.cert_file = i->opt.cert_file;
  ho.key_file = i->opt.key_file;
  ho.max_idle = 1024;
  ho.proxy_from_env = false;
  i->http = std::make_unique<net::http_client>(i->io.get_executor(), std::move(ho));
  if (const auto& e = i->http->setup_error();
      e && std::any_of(i->eps.begin(), i->eps.end(), [](const net::url& u) { return u.tls(); }))
    return fail(error::invalid_argument, fmt::format("etcd store: {}", e.message()));
  i->work.emplace(i->io.get_executor());
  i->thread = std::thread([io = &i->io] { io->run(); });
  std::unique_ptr<etcd_store> s(new etcd_store(i));
  if (!i->opt.username.empty()) {
    auto auth = i->wait([](impl* self) -> awaitable<result<void>> {
      error_info last;
      for (const auto& ep : self->eps) {
        last = co_await self->authenticate(ep);
        if (!last) co_return result<void>();
        if (last == error::permission_denied) break;
      }
      co_return last;
    }(i.get()));
    if (!auth) return auth.error();
  }
  auto rev = s->current_revision();
  if (!rev) {
    std::string eps;
    for (const auto& e : i->opt.endpoints) eps += (eps.empty() ? "" : ", ") + e;
    return error_info(rev.error().code(),
                      fmt::format("etcd store: the cluster at {} {}: {}", eps,
                                  rev.error() == error::unavailable ? "does not answer" : "refused the first read",
                                  rev.error().message()));
  }
  return s;
}

etcd_store::etcd_store(std::shared_ptr<impl> i) : impl_(std::move(i)) {}

etcd_store::~etcd_store() {
  impl_->shutdown();
  impl_->work.reset();
  if (impl_->thread.joinable()) impl_->thread.join();  // in-flight requests end within their timeout
  impl_->http.reset();
}

std::string etcd_store::current_endpoint() const {
  return impl_->eps[impl_->current.load() % impl_->eps.size()].origin();
}

std::uint64_t etcd_store::failovers() const { return impl_->failovers.load(); }

result<std::optional<key_value>> etcd_store::do_get(std::string_view key) {
  if (key.empty()) return fail(error::invalid_argument, "store: empty key; every key needs at least one byte");
  return impl_->wait(impl_->get(std::string(key)));
}

result<range_result> etcd_store::do_range(std::string_view prefix, range_options options) {
  return impl_->wait(impl_->range(std::string(prefix), options));
}

result<commit_result> etcd_store::do_commit(const txn& t) { return impl_->wait(impl_->commit(t)); }

result<revision> etcd_store::do_current_revision() { return impl_->wait(impl_->current_revision()); }

result<lease_id> etcd_store::do_grant(std::chrono::seconds ttl) { return impl_->wait(impl_->grant(ttl)); }

result<lease_status> etcd_store::do_keep_alive(lease_id id) { return impl_->wait(impl_->keep_alive(id)); }

result<void> etcd_store::do_revoke(lease_id id) { return impl_->wait(impl_->revoke(id)); }

result<lease_status> etcd_store::do_lease_info(lease_id id) { return impl_->wait(impl_->lease_info(id)); }


void etcd_store::do_close() { impl_->shutdown(); }

void etcd_store::do_async_commit(txn t, asio::any_completion_handler<commit_signature> handler) {
  impl_->spawn(impl_->commit(std::move(t)), std::move(handler));
}

void etcd_store::do_async_range(std::string prefix, range_options options,
                                asio::any_completion_handler<range_signature> handler) {
  impl_->spawn(impl_->range(std::move(prefix), options), std::move(handler));
}

void etcd_store::do_async_grant(std::chrono::seconds ttl, asio::any_completion_handler<lease_signature> handler) {
  impl_->spawn(impl_->grant(ttl), std::move(handler));
}

}  // namespace agentcore::store
