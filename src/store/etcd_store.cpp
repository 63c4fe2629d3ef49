// The etcd backend: etcd's v3 JSON gateway over the library's HTTP client.
// Every request runs as a coroutine on the store's own I/O thread; the
// synchronous calls wait for it, the asynchronous ones complete through the
// caller's handler.
#include <agentcore/store/etcd_store.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"
#include "net/http.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace agentcore::store {

namespace {

// An exception that escaped one of the store's coroutines, as an error.
error_info unexpected(const std::exception_ptr& e) {
  return fail(error::io_error, fmt::format("etcd store: unexpected exception: {}", agentcore::detail::what_of(e)));
}

}  // namespace

namespace {

using asio::awaitable;
using asio::use_awaitable;
using clock_type = std::chrono::steady_clock;

// --- encoding ---

constexpr char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string b64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t n = (std::uint8_t(in[i]) << 16) | (std::uint8_t(in[i + 1]) << 8) | std::uint8_t(in[i + 2]);
    out += b64_chars[n >> 18];
    out += b64_chars[(n >> 12) & 63];
    out += b64_chars[(n >> 6) & 63];
    out += b64_chars[n & 63];
  }
  if (i < in.size()) {
    std::uint32_t n = std::uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) n |= std::uint8_t(in[i + 1]) << 8;
    out += b64_chars[n >> 18];
    out += b64_chars[(n >> 12) & 63];
    out += i + 1 < in.size() ? b64_chars[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

result<std::string> unb64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) return fail(error::corrupt, "etcd: a key or value in the answer is not base64");
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

// proto3 JSON: 64-bit integers are strings, and zero values are left out.
std::int64_t i64(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end()) return 0;
  const json::value& v = it->value();
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) return static_cast<std::int64_t>(v.get_uint64());
  if (v.is_string()) {
    std::int64_t n = 0;
    auto s = v.get_string();
    std::from_chars(s.data(), s.data() + s.size(), n);
    return n;
  }
  return 0;
}

bool bool_at(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_bool() && it->value().get_bool();
}

/// The first key after every key starting with `key`; "\0" (all keys) when there is none.
std::string prefix_end(std::string key) {
  while (!key.empty() && static_cast<unsigned char>(key.back()) == 0xff) key.pop_back();
  if (key.empty()) return std::string(1, '\0');
  key.back() = static_cast<char>(static_cast<unsigned char>(key.back()) + 1);
  return key;
}

std::string snippet(std::string_view body) {
  std::string s(body.substr(0, 80));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

std::string ms(std::chrono::milliseconds d) { return fmt::format("{} ms", d.count()); }

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

}  // namespace

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

  result<key_value> from_kv(const json::object& kv) const {
    auto k = unb64(string_at(kv, "key"));
    if (!k) return k.error();
    auto v = unb64(string_at(kv, "value"));
    if (!v) return v.error();
    key_value out;
    out.key = strip(*k);
    out.value = std::move(*v);
    out.create_revision = i64(kv, "create_revision") - 1;
    out.mod_revision = i64(kv, "mod_revision") - 1;
    out.version = i64(kv, "version");
    out.lease = i64(kv, "lease");
    return out;
  }

  // --- one request, with failover ---

  net::limits limits_for_call() const {
    net::limits l;
    l.connect = opt.connect_timeout;
    l.first_byte = opt.request_timeout;
    l.total = opt.request_timeout;
    l.max_body = opt.max_response;
    return l;
  }

  net::http_request make_request(const std::string& path, std::string body) const {
    net::http_request req;
    req.method = "POST";
    req.target = path;
    req.headers.push_back({"Content-Type", "application/json"});
    {
      std::lock_guard lock(mutex);
      if (!token.empty()) req.headers.push_back({"Authorization", token});
    }
    req.body = std::move(body);
    return req;
  }

  awaitable<result<net::http_response>> send(const net::url& to, net::http_request req, net::limits lim,
                                              net::body_sink sink = {}) {
    co_return co_await asio::async_initiate<decltype(use_awaitable), void(result<net::http_response>)>(
        [this, &to, &req, &lim, &sink](auto handler) {
          http->request(to, std::move(req), lim, std::move(sink), std::move(handler));
        },
        use_awaitable);
  }

  awaitable<error_info> authenticate(const net::url& to) {
    json::object body{{"name", opt.username}, {"password", opt.password}};
    net::http_request req;
    req.method = "POST";
    req.target = "/v3/auth/authenticate";
    req.headers.push_back({"Content-Type", "application/json"});
    req.body = json::serialize(body);
    auto r = co_await send(to, std::move(req), limits_for_call());
    if (!r) co_return r.error();
    auto v = parse_json(r->body);
    if (r->status / 100 != 2 || !v || !v->is_object() || string_at(v->get_object(), "token").empty())
      co_return fail(error::permission_denied,
                     fmt::format("etcd {}: authentication as '{}' failed ({}{}); check the user name and password",
                                 to.origin(), opt.username, r->status,
                                 v && v->is_object() ? ": " + string_at(v->get_object(), "message") : std::string()));
    std::lock_guard lock(mutex);
    token = string_at(v->get_object(), "token");
    co_return error_info{};
  }

  /// What one call() has seen so far, over its attempts.
  struct call_state {
    std::string path;
    repeat how;
    clock_type::time_point deadline;
    std::map<std::string, std::string> last_failure;  // endpoint -> why
    std::set<std::size_t> tls_refused;               // endpoints whose last failure was TLS
    bool reauthenticated = false, maybe_applied = false;
    std::size_t index = 0;  // the endpoint tried (modulo their number)
  };
  /// What one attempt came to: the caller's answer, the next endpoint (why
  /// this one failed), or the same one after authenticating again.
  struct attempt_end {
    enum kind { answer, next, reauthenticate } what = answer;
    reply r;
    std::string why;
  };
  static attempt_end answer(reply r) { return {attempt_end::answer, std::move(r), {}}; }
  static attempt_end next(std::string why) { return {attempt_end::next, {}, std::move(why)}; }

  /// Sends `body` to `path`, moving on to the next endpoint on failures that
  /// allow it, until one answers or `request_timeout` passes.
  awaitable<reply> call(std::string path, std::string body, repeat how) {
    call_state cs{.path = std::move(path), .how = how, .deadline = clock_type::now() + opt.request_timeout};
    std::chrono::milliseconds backoff{25};
    const std::size_t n = eps.size();
    cs.index = current.load();
    for (std::size_t attempt = 0;; ++attempt) {
      if (is_closed()) co_return reply{closed_error()};
      if (attempt > 0 && attempt % n == 0) {  // every endpoint failed once more: wait a little
        if (clock_type::now() + backoff >= cs.deadline) break;
        asio::steady_timer t(io, backoff);
        co_await t.async_wait(use_awaitable);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
      }
      if (clock_type::now() >= cs.deadline) break;
      const net::url& to = eps[cs.index % n];
      auto lim = limits_for_call();
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(cs.deadline - clock_type::now());
      lim.total = std::max(left, std::chrono::milliseconds(1));
      auto req = make_request(cs.path, body);
      req.resend_on_stale = how == repeat::anywhere;
      auto r = co_await send(to, std::move(req), lim);
      attempt_end end = r ? on_answer(cs, to, *r) : on_transport_failure(cs, r.error());
      if (end.what == attempt_end::answer) co_return std::move(end.r);
      if (end.what == attempt_end::reauthenticate) {
        cs.reauthenticated = true;
        if (auto e = co_await authenticate(to); e) co_return reply{e};
        --attempt;
        continue;
      }
      cs.last_failure[to.origin()] = std::move(end.why);
      ++cs.index;
      if (n > 1) failovers.fetch_add(1, std::memory_order_relaxed);
      // Certificates do not fix themselves: once every endpoint refused TLS, say so now.
      if (cs.tls_refused.size() == n) break;
    }
    co_return gave_up(cs);
  }

  /// The request did not get an HTTP answer.
  attempt_end on_transport_failure(call_state& cs, const error_info& e) {
    if (e == error::canceled) return answer(reply{e});
    if (e.code() == net::error::too_large) return answer(reply{e});
    bool unsent = e.code() == net::error::connect_failed || e.code() == net::error::resolve_failed ||
                  e.code() == net::error::tls_failed || e.code() == net::error::bad_url;
    if (!unsent && cs.how == repeat::if_unsent) return answer(reply{e, true, cs.maybe_applied});
    if (!unsent) cs.maybe_applied = true;
    const std::size_t at = cs.index % eps.size();
    if (e.code() == net::error::tls_failed) cs.tls_refused.insert(at);
    else cs.tls_refused.erase(at);
    return next(e.message());
  }

  /// An HTTP answer: etcd's JSON, its error (a gRPC status), or not etcd at all.
  attempt_end on_answer(call_state& cs, const net::url& to, net::http_response& r) {
    std::string_view text = r.body;
    auto parsed = parse_json(text);
    const json::object* o = parsed && parsed->is_object() ? &parsed->get_object() : nullptr;
    if (r.status / 100 == 2) {
      if (!o)  // not etcd (a proxy's page, another service): it did not apply here
        return next(fmt::format("POST {}{}: answered {} with a body that is not JSON ('{}'); is this an etcd client "
                                "URL?",
                                to.origin(), cs.path, r.status, snippet(text)));
      // A streamed answer (lease keep-alive) wraps its message in "result".
      if (auto* res = object_at(*o, "result")) {
        current.store(cs.index % eps.size());
        return answer(reply{*res, false, cs.maybe_applied});
      }
      if (auto* err = object_at(*o, "error")) o = err;
      else {
        current.store(cs.index % eps.size());
        return answer(reply{std::move(parsed->get_object()), false, cs.maybe_applied});
      }
    }
    if (!o) {
      auto why = fmt::format("POST {}{}: answered HTTP {} with a body that is not JSON ('{}'); is this an etcd "
                             "client URL?",
                             to.origin(), cs.path, r.status, snippet(text));
      if (cs.how == repeat::if_unsent && r.status >= 500) return answer(reply{net::fail(net::error::protocol, why), true});
      return next(std::move(why));
    }
    return on_grpc_status(cs, to, *o);
  }

  /// etcd's error: a gRPC status code and message, named as agentcore's errors.
  attempt_end on_grpc_status(call_state& cs, const net::url& to, const json::object& o) {
    enum grpc : std::int64_t {
      invalid_argument = 3, deadline_exceeded = 4, not_found = 5, permission_denied = 7, resource_exhausted = 8,
      out_of_range = 11, unavailable = 14, unauthenticated = 16
    };
    std::string message = string_at(o, "message");
    if (message.empty()) message = string_at(o, "error");
    auto named = fmt::format("etcd {}: {}", to.origin(), message);
    switch (i64(o, "code")) {
      case unauthenticated:  // the token expired
        if (!opt.username.empty() && !cs.reauthenticated) return {attempt_end::reauthenticate, {}, {}};
        return answer(reply{fail(error::permission_denied, named + "; check the credentials")});
      case permission_denied: return answer(reply{fail(error::permission_denied, named)});
      case not_found:
        return answer(reply{fail(message.find("lease") != std::string::npos ? error::lease_not_found : error::not_found,
                                 named),
                            false, cs.maybe_applied});
      case invalid_argument:
        if (message.find("user name is empty") != std::string::npos)
          return answer(reply{fail(error::permission_denied,
                                   named + "; the cluster has authentication on: set etcd_options username and password")});
        return answer(reply{fail(error::invalid_argument, named)});
      case out_of_range:
        return answer(reply{
            fail(message.find("compacted") != std::string::npos ? error::compacted : error::invalid_argument, named)});
      case resource_exhausted: return next(named);  // too many requests: not applied
      case unavailable:
      case deadline_exceeded:
      default: {
        bool not_proposed = message.find("no leader") != std::string::npos ||
                            message.find("not capable") != std::string::npos ||
                            message.find("too many requests") != std::string::npos;
        if (!not_proposed && cs.how == repeat::if_unsent) return answer(reply{fail(error::outcome_unknown, named), true});
        if (!not_proposed) cs.maybe_applied = true;
        return next(named);
      }
    }
  }

  /// No endpoint answered in time: why, per endpoint.
  reply gave_up(const call_state& cs) {
    std::string why;
    for (const auto& [ep, w] : cs.last_failure) why += fmt::format("{}{}", why.empty() ? "" : "; ", w);
    if (!cs.tls_refused.empty() && cs.tls_refused.size() == eps.size())
      return reply{fail(error::permission_denied,
                        fmt::format("etcd: every endpoint refused TLS for {} ({}); check ca_file (the CA that signed "
                                    "the cluster's certificates) and, if the cluster asks for one, the client "
                                    "certificate (cert_file, key_file)",
                                    cs.path, why)),
                   false, cs.maybe_applied};
    return reply{fail(error::unavailable,
                      fmt::format("etcd: no endpoint answered {} within {} ({}); check that the cluster is running "
                                  "and has a quorum",
                                  cs.path, ms(opt.request_timeout), why.empty() ? "no attempt" : why)),
                 cs.maybe_applied && cs.how == repeat::if_unsent, cs.maybe_applied};
  }

  // --- operations ---

  awaitable<result<range_result>> range(std::string prefix, range_options options) {
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

  awaitable<result<std::optional<key_value>>> get(std::string key) {
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

  awaitable<result<revision>> current_revision() {
    // A one-key read: its header carries the cluster's revision.
    json::object body{{"key", b64(opt.prefix.empty() ? std::string(1, '\0') : opt.prefix)}, {"count_only", true}};
    auto r = co_await call("/v3/kv/range", json::serialize(body), repeat::anywhere);
    if (!r.body) co_return r.body.error();
    auto* h = object_at(*r.body, "header");
    co_return h ? i64(*h, "revision") - 1 : 0;
  }

  /// Whether history at `etcd_rev` is still there (a future revision is).
  awaitable<result<void>> readable_at(std::int64_t etcd_rev) {
    json::object body{{"key", b64(opt.prefix.empty() ? std::string(1, '\0') : opt.prefix)},
                      {"count_only", true},
                      {"revision", std::to_string(etcd_rev)}};
    auto r = co_await call("/v3/kv/range", json::serialize(body), repeat::anywhere);
    if (r.body || r.body.error() == error::invalid_argument) co_return result<void>();  // future revision
    co_return r.body.error();
  }

  static json::object compare_json(const std::string& key, std::int64_t version) {
    return {{"key", b64(key)}, {"target", "VERSION"}, {"result", "EQUAL"}, {"version", std::to_string(version)}};
  }

  std::string txn_body(const txn& t) const {
    json::array cmp, ok, failure;
    for (const compare& c : t.compares) {
      auto key = full(c.key);
      cmp.push_back(compare_json(key, c.type == compare::kind::absent ? 0 : c.version));
      // On failure, read the compared keys in the same transaction: the
      // conflict then names the key and its version as of that revision.
      failure.push_back(json::object{{"request_range", json::object{{"key", b64(key)}, {"keys_only", true}}}});
    }
    for (const op& o : t.ops) {
      if (o.type == op::kind::put) {
        json::object put{{"key", b64(full(o.key))}, {"value", b64(o.value)}};
        if (o.lease) put["lease"] = std::to_string(o.lease);
        ok.push_back(json::object{{"request_put", std::move(put)}});
      } else {
        ok.push_back(json::object{{"request_delete_range", json::object{{"key", b64(full(o.key))}}}});
      }
    }
    json::object body;
    if (!cmp.empty()) body["compare"] = std::move(cmp);
    if (!ok.empty()) body["success"] = std::move(ok);
    if (!failure.empty()) body["failure"] = std::move(failure);
    return json::serialize(body);
  }

  awaitable<result<commit_result>> commit(txn t) {
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
  awaitable<result<std::optional<commit_result>>> recover(const txn& t, const error_info& why, int round) {
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
  awaitable<result<commit_result>> committed(const txn& t, const json::object& answer) {
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

  void note_commit(std::vector<std::string> keys, std::int64_t etcd_rev) {
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

  awaitable<void> maybe_compact(std::int64_t etcd_rev) {
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

  awaitable<result<lease_id>> grant(std::chrono::seconds ttl) {
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

  awaitable<result<lease_status>> keep_alive(lease_id id) {
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

  awaitable<result<void>> revoke(lease_id id) {
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

  awaitable<result<lease_status>> lease_info(lease_id id) {
    json::object body{{"ID", std::to_string(id)}};
    auto r = co_await call("/v3/lease/timetolive", json::serialize(body), repeat::anywhere);
    if (!r.body) co_return r.body.error();
    auto ttl = i64(*r.body, "TTL");
    if (ttl < 0)
      co_return fail(error::lease_not_found,
                     fmt::format("etcd store: lease {} has expired or was revoked", id));
    co_return lease_status{id, std::chrono::seconds(i64(*r.body, "grantedTTL")), std::chrono::seconds(ttl)};
  }

  // --- watches ---

  /// Parses the stream's bytes into the state; an error ends the stream.
  /// Takes a chunk of the watch's stream (newline-separated JSON messages);
  /// what ends the watch, if anything.
  error_info feed(etcd_watch_state& w, std::string_view chunk) {
    error_info ended;
    {
      std::lock_guard lock(w.mutex);
      w.partial.append(chunk);
      if (w.partial.size() > opt.max_response)
        ended = net::fail(net::error::too_large, fmt::format("etcd watch on '{}': one message is over the {} byte "
                                                             "size cap",
                                                             w.user_prefix, opt.max_response));
      std::size_t start = 0;
      for (std::size_t nl; !ended && (nl = w.partial.find('\n', start)) != std::string::npos; start = nl + 1)
        ended = take_message(w, std::string_view(w.partial.data() + start, nl - start));
      w.partial.erase(0, start);
      if (!ended && w.buffer.size() > opt.max_buffered_events)
        ended = fail(error::compacted,
                     fmt::format("etcd watch on '{}': more than {} events arrived and were not taken; the consumer is "
                                 "too slow: read the state with range() and watch from its revision",
                                 w.user_prefix, opt.max_buffered_events));
      if (ended && !w.failure) w.failure = ended;
      deliver(w);
    }
    w.cv.notify_all();
    return ended;
  }

  /// One message of the stream (w.mutex held): its events join the buffer.
  error_info take_message(etcd_watch_state& w, std::string_view line) {
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) return {};
    auto v = parse_json(line);
    if (!v || !v->is_object())
      return net::fail(net::error::protocol,
                       fmt::format("etcd watch on '{}': a message is not JSON ('{}')", w.user_prefix, snippet(line)));
    if (auto* err = object_at(v->get_object(), "error"))
      return fail(error::unavailable, fmt::format("etcd watch on '{}': {}", w.user_prefix, string_at(*err, "message")));
    auto* res = object_at(v->get_object(), "result");
    if (!res) return {};
    if (bool_at(*res, "created")) w.created = true;
    if (bool_at(*res, "canceled")) {
      auto compact = i64(*res, "compact_revision");
      if (compact > 0)
        return fail(error::compacted, fmt::format("etcd watch on '{}': history before revision {} was compacted and "
                                                  "the watch started at {}; read the state with range() and watch "
                                                  "from its revision",
                                                  w.user_prefix, compact - 1, w.start - 1));
      return fail(error::canceled, fmt::format("etcd watch on '{}' was canceled by the server: {}", w.user_prefix,
                                               string_at(*res, "cancel_reason")));
    }
    auto* evs = array_at(*res, "events");
    if (!evs) return {};
    for (const auto& e : *evs) {
      if (!e.is_object()) continue;
      auto* kv = object_at(e.get_object(), "kv");
      if (!kv) continue;
      auto x = from_kv(*kv);
      if (!x) return x.error();
      watch_event ev;
      if (string_at(e.get_object(), "type") == "DELETE") {
        ev.type = watch_event::kind::erase;
        ev.kv.key = std::move(x->key);
        ev.kv.mod_revision = x->mod_revision;
      } else {
        ev.kv = std::move(*x);
      }
      w.stream_through = std::max(w.stream_through, ev.kv.mod_revision + 1);
      w.start = std::max(w.start, ev.kv.mod_revision + 2);  // reconnect after it
      w.buffer.push_back(std::move(ev));
    }
    return {};
  }

  /// Completes a waiting async_next with what is buffered, or the failure (w.mutex held).
  void deliver(etcd_watch_state& w) {
    if (!w.pending || (w.buffer.empty() && !w.failure)) return;
    auto h = std::move(*w.pending);
    w.pending.reset();
    auto work = std::move(w.pending_work);  // released after the completion is posted
    if (w.buffer.empty()) {
      agentcore::detail::post_completion(std::move(h), result<std::vector<watch_event>>(w.failure));
      return;
    }
    std::vector<watch_event> arrived = std::move(w.buffer);
    w.buffer.clear();
    w.next = std::max(w.next, arrived.back().kv.mod_revision + 1);
    agentcore::detail::post_completion(std::move(h), result<std::vector<watch_event>>(std::move(arrived)));
  }

  void end_watch(etcd_watch_state& w, error_info why) {
    {
      std::lock_guard lock(w.mutex);
      if (!w.failure) w.failure = std::move(why);
      if (w.pending) {
        auto h = std::move(*w.pending);
        w.pending.reset();
        auto work = std::move(w.pending_work);  // released after the completion is posted
        agentcore::detail::post_completion(std::move(h), result<std::vector<watch_event>>(w.failure));
      }
    }
    w.cv.notify_all();
  }

  /// The watch stream, reconnecting (from after the last event) on another
  /// endpoint when the connection fails, until canceled or refused.
  awaitable<void> run_watch(std::shared_ptr<etcd_watch_state> w) {
    std::chrono::milliseconds backoff{50};
    std::size_t index = current.load();
    for (;;) {
      {
        std::lock_guard lock(w->mutex);
        if (w->failure) co_return;
      }
      if (is_closed()) co_return end_watch(*w, closed_error());
      json::object create{{"key", b64(w->key.empty() ? std::string(1, '\0') : w->key)},
                          {"range_end", b64(prefix_end(w->key))},
                          {"start_revision", std::to_string(w->start)}};
      json::object body{{"create_request", std::move(create)}};
      net::limits lim = limits_for_call();
      lim.total = std::chrono::hours(24 * 365 * 10);
      lim.max_body = std::numeric_limits<std::size_t>::max();
      const net::url& to = eps[index % eps.size()];
      auto sink = [this, w](std::string_view chunk) { return feed(*w, chunk); };
      auto r = co_await asio::async_initiate<decltype(use_awaitable), void(result<net::http_response>)>(
          [&](auto handler) {
            http->request(to, make_request("/v3/watch", json::serialize(body)), lim, sink,
                          asio::bind_cancellation_slot(w->signal.slot(), std::move(handler)));
          },
          use_awaitable);
      {
        std::lock_guard lock(w->mutex);
        if (w->failure) co_return;
      }
      if (!r && r.error() == error::canceled) co_return end_watch(*w, fail(error::canceled, "etcd watch: canceled"));
      if (r && r->status / 100 != 2) {
        auto v = parse_json(r->body);
        std::string message = v && v->is_object() ? string_at(v->get_object(), "message") : snippet(r->body);
        if (r->status == 401 || r->status == 403)
          co_return end_watch(*w, fail(error::permission_denied,
                                       fmt::format("etcd watch on '{}' at {}: {}", w->user_prefix, to.origin(), message)));
      }
      // The stream ended (the member went away, or answered with an error):
      // on, from after the last event, at the next endpoint.
      ++index;
      bool created;
      {
        std::lock_guard lock(w->mutex);
        created = w->created;
      }
      if (!created && r && r->status / 100 == 2) {
        // Ended before saying it was created: not etcd, or refused.
        co_return end_watch(*w, net::fail(net::error::protocol,
                                          fmt::format("etcd watch on '{}' at {}: the stream ended before the watch "
                                                      "was created",
                                                      w->user_prefix, to.origin())));
      }
      asio::steady_timer t(io, backoff);
      co_await t.async_wait(asio::redirect_error(use_awaitable, ignored_));
      backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
      if (!created && backoff >= std::chrono::milliseconds(1000) && index >= 2 * eps.size()) {
        co_return end_watch(*w, fail(error::unavailable,
                                     fmt::format("etcd watch on '{}': no endpoint accepted the watch (last: {}); check "
                                                 "that the cluster is running",
                                                 w->user_prefix, r ? fmt::format("HTTP {}", r->status)
                                                                   : r.error().message())));
      }
    }
  }
  boost::system::error_code ignored_;

  // --- running coroutines ---

  template <class T>
  result<T> wait(awaitable<result<T>> op) {
    if (is_closed()) return closed_error();
    if (io.get_executor().running_in_this_thread())
      return fail(error::invalid_argument,
                  "etcd store: a synchronous call from the store's own I/O thread would wait for itself; use the "
                  "async_ calls from completion handlers");
    std::promise<result<T>> p;
    auto f = p.get_future();
    asio::co_spawn(io, std::move(op), [&p](std::exception_ptr e, result<T> r) {
      if (e) r = unexpected(e);
      p.set_value(std::move(r));
    });
    return f.get();
  }

  template <class T, class Signature>
  void spawn(awaitable<result<T>> op, asio::any_completion_handler<Signature> handler) {
    if (is_closed())
      return agentcore::detail::post_completion(std::move(handler), result<T>(closed_error()));
    auto work = agentcore::detail::track_work(handler);  // the caller's run() waits for us
    asio::co_spawn(io, std::move(op), [h = std::move(handler), work](std::exception_ptr e, result<T> r) mutable {
      if (e) r = unexpected(e);
      agentcore::detail::post_completion(std::move(h), std::move(r));
    });
  }

  void shutdown() {
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
};

// --- the watcher ---

namespace {

class etcd_watcher final : public watcher {
public:
  etcd_watcher(std::shared_ptr<etcd_watch_state> s, std::chrono::milliseconds timeout,
               std::shared_ptr<std::atomic<std::int64_t>> compacted)
      : state_(std::move(s)), timeout_(timeout), compacted_(std::move(compacted)) {}
  ~etcd_watcher() override { do_cancel(); }

  revision next_revision() const override {
    std::lock_guard lock(state_->mutex);
    return state_->next;
  }

private:
  result<std::vector<watch_event>> do_poll() override {
    std::unique_lock lock(state_->mutex);
    auto& w = *state_;
    // This store's own commits with events here must have arrived.
    if (!w.cv.wait_for(lock, timeout_, [&] { return w.failure || w.stream_through >= w.expect_through; }))
      return net::fail(net::error::timed_out,
                       fmt::format("etcd watch on '{}': the events of this store's commit at revision {} did not "
                                   "arrive within {} ms",
                                   w.user_prefix, w.expect_through - 1, timeout_.count()));
    if (w.failure) return w.failure;
    if (auto c = compacted_ ? compacted_->load() : 0; c > 0 && !w.buffer.empty() && w.buffer.front().kv.mod_revision + 1 < c)
      return fail(error::compacted,
                  fmt::format("etcd watch on '{}': its next event (revision {}) is older than the compacted history "
                              "(revision {}); read the state with range() and watch from its revision",
                              w.user_prefix, w.buffer.front().kv.mod_revision, c - 1));
    auto out = std::move(w.buffer);
    w.buffer.clear();
    if (!out.empty()) w.next = std::max(w.next, out.back().kv.mod_revision + 1);
    return out;
  }

  void do_async_next(asio::any_completion_handler<next_signature> handler) override {
    std::lock_guard lock(state_->mutex);
    auto& w = *state_;
    if (w.pending) {
      return agentcore::detail::post_completion(
          std::move(handler), result<std::vector<watch_event>>(fail(
                                  error::invalid_argument, "etcd watch: an async_next is already pending; wait for it first")));
    }
    if (!w.buffer.empty()) {
      auto out = std::move(w.buffer);
      w.buffer.clear();
      w.next = std::max(w.next, out.back().kv.mod_revision + 1);
      return agentcore::detail::post_completion(std::move(handler), result<std::vector<watch_event>>(std::move(out)));
    }
    if (w.failure)
      return agentcore::detail::post_completion(std::move(handler), result<std::vector<watch_event>>(w.failure));
    w.pending_work = agentcore::detail::track_work(handler);
    w.pending.emplace(std::move(handler));
  }

  void do_cancel() override {
    std::function<void()> cancel;
    std::optional<asio::any_completion_handler<next_signature>> pending;
    asio::any_completion_executor work;  // released after the completion is posted
    {
      std::lock_guard lock(state_->mutex);
      work = std::move(state_->pending_work);
      cancel = std::move(state_->cancel_stream);
      state_->cancel_stream = nullptr;
      if (!state_->failure) state_->failure = fail(error::canceled, "etcd watch: canceled");
      pending = std::move(state_->pending);
      state_->pending.reset();
    }
    if (cancel) cancel();
    if (pending)
      agentcore::detail::post_completion(std::move(*pending),
                                         result<std::vector<watch_event>>(fail(error::canceled, "etcd watch: canceled")));
    state_->cv.notify_all();
  }

  std::shared_ptr<etcd_watch_state> state_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<std::atomic<std::int64_t>> compacted_;
};

}  // namespace

// --- etcd_store ---

result<etcd_options> parse_etcd_url(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(error::invalid_argument,
                fmt::format("'{}' is not an etcd store URL: {}; write etcd://HOST:PORT[,HOST:PORT...]/PREFIX "
                            "(etcds:// for TLS)",
                            text, why));
  };
  etcd_options o;
  std::string scheme;
  if (text.starts_with("etcd://")) scheme = "http";
  else if (text.starts_with("etcds://")) scheme = "https";
  else return bad("the scheme is neither etcd:// nor etcds://");
  auto rest = text.substr(text.find("://") + 3);
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto slash = rest.find('/');
  auto hosts = rest.substr(0, slash);
  if (hosts.empty()) return bad("no host");
  while (!hosts.empty()) {
    auto comma = hosts.find(',');
    auto h = hosts.substr(0, comma);
    if (h.empty()) return bad("an empty host in the list");
    std::string ep = fmt::format("{}://{}", scheme, h);
    if (h.find(':') == std::string_view::npos || (h.front() == '[' && h.back() == ']')) ep += ":2379";
    auto u = net::parse_url(ep);
    if (!u) return bad(u.error().message());
    o.endpoints.push_back(std::move(ep));
    hosts = comma == std::string_view::npos ? std::string_view() : hosts.substr(comma + 1);
  }
  if (slash != std::string_view::npos) {
    o.prefix = std::string(rest.substr(slash + 1));
    if (!o.prefix.empty() && o.prefix.back() != '/') o.prefix += '/';
  }
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    auto eq = item.find('=');
    auto name = item.substr(0, eq);
    auto value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (value.empty()) return bad(fmt::format("option '{}' has no value (write {}=VALUE)", name, name));
    auto number = [&](std::int64_t& out) -> bool {
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
      return ec == std::errc() && p == value.data() + value.size() && out >= 0;
    };
    if (name == "ca_file") o.ca_file = value;
    else if (name == "cert_file") o.cert_file = value;
    else if (name == "key_file") o.key_file = value;
    else if (name == "user") o.username = value;
    else if (name == "verify_tls") {
      if (value != "true" && value != "false") return bad("verify_tls is true or false");
      o.verify_tls = value == "true";
    } else if (name == "password_file") {
      std::ifstream in{std::string(value), std::ios::binary};
      if (!in) return bad(fmt::format("password_file '{}' cannot be read", value));
      std::getline(in, o.password);
      if (!o.password.empty() && o.password.back() == '\r') o.password.pop_back();
    } else if (name == "history_limit") {
      if (!number(o.history_limit)) return bad("history_limit is a count of revisions, like history_limit=100000");
    } else if (name == "request_timeout_ms") {
      std::int64_t ms = 0;
      if (!number(ms) || ms == 0) return bad("request_timeout_ms is a positive number of milliseconds");
      o.request_timeout = std::chrono::milliseconds(ms);
    } else {
      return bad(fmt::format("unknown option '{}' (known: ca_file, cert_file, key_file, verify_tls, user, "
                             "password_file, history_limit, request_timeout_ms)",
                             name));
    }
  }
  if (!o.username.empty() && o.password.empty())
    return bad("user needs password_file (a file holding the password)");
  return o;
}

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

result<std::unique_ptr<watcher>> etcd_store::do_watch(std::string prefix, revision from) {
  if (impl_->is_closed()) return impl_->closed_error();
  auto w = std::make_shared<etcd_watch_state>();
  w->user_prefix = prefix;
  w->key = impl_->full(prefix);
  w->start = std::max<revision>(from, 1) + 1;
  w->next = std::max<revision>(from, 1);
  w->stream_through = w->start - 1;
  // From compacted history? A read at the start revision says (etcd would
  // create the watch first and cancel it right after).
  auto check = impl_->wait(impl_->readable_at(w->start));
  if (!check) {
    if (check.error() != error::compacted) return check.error();
    return fail(error::compacted,
                fmt::format("etcd watch on '{}' from revision {}: that history was compacted; read the state with "
                            "range() and watch from its revision",
                            prefix, from));
  }
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->closed) return impl_->closed_error();
    impl_->watchers.push_back(w);
    for (const auto& [rev, keys] : impl_->recent)
      if (rev >= w->start)
        for (const auto& k : keys)
          if (k.starts_with(w->key)) w->expect_through = std::max(w->expect_through, rev);
  }
  impl* self = impl_.get();
  std::weak_ptr<etcd_watch_state> weak = w;
  w->cancel_stream = [self, weak] {
    asio::post(self->io, [weak] {
      if (auto s = weak.lock()) s->signal.emit(asio::cancellation_type::terminal);
    });
  };
  asio::co_spawn(impl_->io, impl_->run_watch(w), asio::detached);
  // Wait until etcd says the watch exists (or refuses it: compacted history).
  auto compacted = std::shared_ptr<std::atomic<std::int64_t>>(impl_, &impl_->compacted);
  auto watcher = std::make_unique<etcd_watcher>(w, impl_->opt.request_timeout, compacted);
  std::unique_lock lock(w->mutex);
  if (!w->cv.wait_for(lock, impl_->opt.request_timeout, [&] { return w->created || bool(w->failure); })) {
    lock.unlock();
    return net::fail(net::error::timed_out, fmt::format("etcd watch on '{}': not created within {} ms", prefix,
                                                        impl_->opt.request_timeout.count()));
  }
  if (w->failure) {
    error_info e = w->failure;
    lock.unlock();
    return e;
  }
  lock.unlock();
  return std::unique_ptr<agentcore::store::watcher>(std::move(watcher));
}

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
