// The etcd backend's requests: one call, sent to the endpoints in turn on
// failures that allow it, and etcd's answers and errors as agentcore's.
#include "store/etcd/impl.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <map>
#include <set>

namespace agentcore::store {

using namespace etcd_detail;

// --- one request, with failover ---

net::limits etcd_store::impl::limits_for_call() const {
  net::limits l;
  l.connect = opt.connect_timeout;
  l.first_byte = opt.request_timeout;
  l.total = opt.request_timeout;
  l.max_body = opt.max_response;
  return l;
}

net::http_request etcd_store::impl::make_request(const std::string& path, std::string body) const {
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

awaitable<result<net::http_response>> etcd_store::impl::send(const net::url& to, net::http_request req, net::limits lim,
                                                             net::body_sink sink) {
  co_return co_await asio::async_initiate<decltype(use_awaitable), void(result<net::http_response>)>(
      [this, &to, &req, &lim, &sink](auto handler) {
        http->request(to, std::move(req), lim, std::move(sink), std::move(handler));
      },
      use_awaitable);
}

awaitable<error_info> etcd_store::impl::authenticate(const net::url& to) {
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
struct etcd_store::impl::call_state {
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
struct etcd_store::impl::attempt_end {
  enum kind { answer, next, reauthenticate } what = answer;
  reply r;
  std::string why;
};

etcd_store::impl::attempt_end etcd_store::impl::answer(reply r) { return {attempt_end::answer, std::move(r), {}}; }
etcd_store::impl::attempt_end etcd_store::impl::next(std::string why) {
  return {attempt_end::next, {}, std::move(why)};
}

/// Sends `body` to `path`, moving on to the next endpoint on failures that
/// allow it, until one answers or `request_timeout` passes.
awaitable<reply> etcd_store::impl::call(std::string path, std::string body, repeat how) {
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
etcd_store::impl::attempt_end etcd_store::impl::on_transport_failure(call_state& cs, const error_info& e) {
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
etcd_store::impl::attempt_end etcd_store::impl::on_answer(call_state& cs, const net::url& to, net::http_response& r) {
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
etcd_store::impl::attempt_end etcd_store::impl::on_grpc_status(call_state& cs, const net::url& to,
                                                               const json::object& o) {
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
reply etcd_store::impl::gave_up(const call_state& cs) {
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

}  // namespace agentcore::store
