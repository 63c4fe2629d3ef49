#include <agentcore/observe/dashboard.hpp>


#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <thread>

namespace agentcore::observe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

namespace {

struct kept_event {
  std::uint64_t seq = 0;
  std::string task;
  std::string json;   // the event's JSON form
  std::string frame;  // as an SSE frame
};

struct worker_state {
  std::string task, phase;
  std::int64_t since_us = 0;
};

struct run_state {
  std::string run;
  std::int64_t started_us = 0, finished_us = 0;
  std::string reason;
  json::array cycles;
};

std::string_view str(const json::value* d, std::string_view key) {
  if (!d || !d->is_object()) return {};
  auto* m = d->get_object().if_contains(key);
  return m && m->is_string() ? std::string_view(m->get_string()) : std::string_view();
}

bool worker_result(std::string_view p) {
  return p == "merged" || p == "rejected" || p == "abandoned" || p == "released" || p == "claim_lost" ||
         p == "submitted" || p == "idle";
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto [p, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (ec == std::errc() && p == s.data() + i + 3) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto item = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    auto eq = item.find('=');
    out[percent_decode(item.substr(0, eq))] = eq == std::string_view::npos ? "" : percent_decode(item.substr(eq + 1));
  }
  return out;
}

bool same_secret(std::string_view given, std::string_view secret) {
  if (given.empty() || secret.empty()) return false;
  // Time depends on the secret's length only, not on where the first difference is.
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < secret.size(); ++i)
    diff |= static_cast<unsigned char>(given[i % given.size()] ^ secret[i]);
  return diff == 0;
}

bool parse_u64(std::string_view s, std::uint64_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && !s.empty();
}

asio::ip::address plain(asio::ip::address a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

/// A Host header's value, an Origin's authority or an allowed_hosts entry.
struct host_port {
  std::string name;  // lower case, without brackets or a trailing dot
  std::optional<asio::ip::address> ip;
  std::optional<std::uint16_t> port;
};

/// "name", "name:port", "1.2.3.4:port", "[v6]", "[v6]:port"; nothing for
/// anything else (a bare IPv6 address, user info, a path, odd characters).
std::optional<host_port> split_host(std::string_view s) {
  host_port h;
  std::string_view rest;
  boost::system::error_code ec;
  if (s.starts_with('[')) {
    auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    auto a = asio::ip::make_address_v6(std::string(s.substr(1, close - 1)), ec);
    if (ec) return std::nullopt;
    h.ip = plain(a);
    h.name = a.to_string();
    rest = s.substr(close + 1);
  } else {
    auto colon = s.find(':');
    auto name = s.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : s.substr(colon);
    if (name.ends_with('.')) name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return std::nullopt;
    for (char c : name) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') return std::nullopt;
      h.name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    auto a = asio::ip::make_address_v4(h.name, ec);
    if (!ec) h.ip = asio::ip::address(a);
  }
  if (!rest.empty()) {
    unsigned port = 0;
    auto digits = rest.substr(1);
    auto [p, pec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
    if (rest[0] != ':' || digits.empty() || digits.size() > 5 || pec != std::errc() ||
        p != digits.data() + digits.size() || port > 65535)
      return std::nullopt;
    h.port = static_cast<std::uint16_t>(port);
  }
  return h;
}

// Over max_connections: a fixed answer, written once, with no parsing.
const std::string& busy_reply() {
  static const std::string reply = [] {
    std::string_view body =
        R"({"error":"the dashboard has as many connections as it takes (max_connections); try again in a few seconds"})";
    return fmt::format(
        "HTTP/1.1 503 Service Unavailable\r\nServer: agentcore\r\nContent-Type: application/json\r\n"
        "Cache-Control: no-store\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        body.size(), body);
  }();
  return reply;
}
constexpr std::size_t max_turning_away = 64;

}  // namespace

struct dashboard::impl {
  dashboard_options options;
  dashboard_sources sources;
  bool loopback = true;
  asio::ip::address bound_address;
  std::vector<host_port> allowed;  // options.allowed_hosts, parsed

  mutable std::mutex mutex;  // everything the events update
  std::deque<kept_event> kept;
  std::uint64_t last_seq = 0;
  std::map<std::string, worker_state> workers;
  std::map<std::string, std::int64_t> queued;  // change -> since
  std::vector<run_state> runs;

  struct client {
    asio::steady_timer wake;
    explicit client(asio::any_io_executor ex) : wake(std::move(ex)) {}
  };
  std::list<client*> clients;  // on the io thread only
  std::atomic<std::size_t> stream_count{0}, connections{0};
  std::size_t turning_away = 0;  // on the io thread only
  std::atomic<bool> notify_pending{false};
  std::uint16_t bound_port = 0;
  std::thread thread;
  std::atomic<bool> stopped{false};

  // Declared last: destroyed first, with every coroutine frame it holds, while
  // what those frames use is still alive.
  asio::io_context io{1};
  std::optional<tcp::acceptor> acceptor;

  // --- events ---

  void on_event(const event_view& e) {
    kept_event k;
    k.seq = e.seq;
    k.task = std::string(e.task);
    append_json(k.json, e);
    k.frame = fmt::format("id: {}\nevent: {}\ndata: {}\n\n", e.seq, e.type, k.json);
    const json::value* d = e.data;
    {
      std::lock_guard lock(mutex);
      kept.push_back(std::move(k));
      while (kept.size() > options.kept_events) kept.pop_front();
      last_seq = e.seq;
      if (e.type == "roles.worker_phase") {
        auto& w = workers[std::string(str(d, "worker"))];
        auto phase = str(d, "phase");
        if (worker_result(phase)) {
          w = {"", "idle", e.time_us};
        } else if (w.phase != phase || w.task != str(d, "task")) {
          w = {std::string(str(d, "task")), std::string(phase), e.time_us};
        }
      } else if (e.type == "gate.verdict") {
        auto v = str(d, "verdict");
        if (v == "queued") queued.emplace(std::string(str(d, "change")), e.time_us);
        else if (!v.empty()) queued.erase(std::string(str(d, "change")));
      } else if (e.type == "runtime.swarm") {
        auto what = str(d, "what");
        if (what == "started") runs.push_back({std::string(e.run), e.time_us, 0, {}, {}});
        if (what == "finished") {
          if (runs.empty()) runs.push_back({std::string(e.run), e.time_us, 0, {}, {}});
          runs.back().finished_us = e.time_us;
          runs.back().reason = std::string(str(d, "detail"));
        }
      } else if (e.type == "roles.judgement") {
        if (runs.empty()) runs.push_back({std::string(e.run), e.time_us, 0, {}, {}});
        runs.back().cycles.push_back(*d);
      }
    }
    if (!notify_pending.exchange(true))
      asio::post(io, [self = this] {  // raw: the io_context is the impl's, and dies first
        self->notify_pending = false;
        for (auto* c : self->clients) c->wake.cancel();
      });
  }

  // --- HTTP ---

  using request = bhttp::request<bhttp::string_body>;
  using response = bhttp::response<bhttp::string_body>;

  response reply(const request& req, bhttp::status status, std::string body,
                 std::string_view type = "application/json") const {
    response res{status, req.version()};
    res.set(bhttp::field::server, "agentcore");
    res.set(bhttp::field::content_type, type);
    res.set(bhttp::field::cache_control, "no-store");
    res.set("X-Content-Type-Options", "nosniff");
    res.keep_alive(req.keep_alive());
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  response error(const request& req, bhttp::status status, std::string_view why) const {
    return reply(req, status, json::serialize(json::object{{"error", why}}));
  }

  // A dashboard_controls error as a response: its code picks the status
  // (see dashboard_controls); any other code gives `otherwise`.
  response failed(const request& req, const error_info& e,
                  bhttp::status otherwise = bhttp::status::service_unavailable) const {
    auto status = e == error::not_found          ? bhttp::status::not_found
                  : e == error::invalid_argument ? bhttp::status::bad_request
                  : e == error::unavailable      ? bhttp::status::service_unavailable
                                                 : otherwise;
    return error(req, status, e.message());
  }

  /// Whether HOST (a Host header, or an Origin's authority) names this
  /// dashboard as reached through `local`; see "Host" in the header.
  bool ours(const host_port& h, std::uint16_t default_port, const asio::ip::address& local) const {
    const std::uint16_t port = h.port.value_or(default_port);
    for (const auto& a : allowed) {
      if (a.port && *a.port != port) continue;
      if (a.ip ? h.ip == a.ip : (!h.ip && h.name == a.name)) return true;
    }
    if (port != bound_port) return false;
    if (h.ip) return *h.ip == local || *h.ip == bound_address;
    return h.name == "localhost" && local.is_loopback();
  }

  std::string served_names(const asio::ip::address& local) const {
    auto lit = [&](const asio::ip::address& a) {
      return a.is_v6() ? fmt::format("[{}]:{}", a.to_string(), bound_port)
                       : fmt::format("{}:{}", a.to_string(), bound_port);
    };
    std::string out = lit(local);
    if (bound_address != local) out += ", " + lit(bound_address);
    if (local.is_loopback()) out += fmt::format(", localhost:{}", bound_port);
    for (const auto& h : options.allowed_hosts) out += ", " + h;
    return out;
  }

  /// DNS rebinding and cross-site changes: empty when the request's Host
  /// (and, on a change, its Origin) are this dashboard's; else the refusal.
  std::optional<response> foreign(const request& req, const asio::ip::address& local) const {
    auto hosts = req.count(bhttp::field::host);
    if (hosts == 0 && req.version() < 11) {
      // HTTP/1.0 without Host: not a browser (browsers always send it).
    } else if (hosts != 1) {
      return error(req, bhttp::status::bad_request,
                   hosts == 0 ? "an HTTP/1.1 request needs a Host header naming this dashboard"
                              : "a request may carry one Host header, not several");
    } else {
      std::string_view given = req[bhttp::field::host];
      auto h = split_host(given);
      if (!h) return error(req, bhttp::status::bad_request, fmt::format("Host '{}' is not HOST or HOST:PORT", given));
      if (!ours(*h, 80, local))
        return error(req, bhttp::status::misdirected_request,
                     fmt::format("Host '{}' is not this dashboard, which answers to {}; refused so that a web page "
                                 "cannot reach it under its own name (DNS rebinding). To use that name (a reverse "
                                 "proxy, a DNS name, a forwarded port), add it to the dashboard's allowed_hosts "
                                 "(agentcore: --serve-allow-host)",
                                 given, served_names(local)));
    }
    if (req.method() == bhttp::verb::get || req.method() == bhttp::verb::head) return std::nullopt;
    if (auto it = req.find("Sec-Fetch-Site"); it != req.end()) {
      std::string_view site = it->value();
      if (site == "cross-site" || site == "same-site")
        return error(req, bhttp::status::forbidden,
                     fmt::format("this change comes from a page on another site (Sec-Fetch-Site: {}); make it from "
                                 "the dashboard's own page",
                                 site));
    }
    auto origins = req.count(bhttp::field::origin);
    if (origins == 0) return std::nullopt;
    std::string_view origin = "(several)";
    if (origins == 1) origin = req[bhttp::field::origin];
    bool good = false;
    std::uint16_t default_port = 0;
    std::string_view authority;
    if (origin.starts_with("http://")) {
      default_port = 80;
      authority = origin.substr(7);
    } else if (origin.starts_with("https://")) {
      default_port = 443;
      authority = origin.substr(8);
    }
    if (default_port)
      if (auto h = split_host(authority)) good = ours(*h, default_port, local);
    if (!good)
      return error(req, bhttp::status::forbidden,
                   fmt::format("this change comes from a page at Origin '{}', which is not this dashboard ({}); make "
                               "it from the dashboard's own page, or add that host to allowed_hosts",
                               origin, served_names(local)));
    return std::nullopt;
  }

  /// Empty when the request may proceed; else the refusal.
  std::optional<response> refuse(const request& req, const std::map<std::string, std::string>& query,
                                 bool mutating) const {
    std::string_view given;
    bool has = false;
    if (auto it = req.find(bhttp::field::authorization); it != req.end()) {
      std::string_view v = it->value();
      if (v.starts_with("Bearer ")) {
        given = v.substr(7);
        has = true;
      }
    }
    if (!has && !mutating)
      if (auto q = query.find("token"); q != query.end()) {
        given = q->second;
        has = true;
      }
    if (mutating && options.token.empty())
      return error(req, bhttp::status::forbidden,
                   "this endpoint changes the run and the dashboard has no token: start it with one");
    if (!mutating && loopback) return std::nullopt;
    if (!has)
      return error(req, bhttp::status::unauthorized,
                   "this dashboard needs its token: send 'Authorization: Bearer TOKEN'");
    if (!same_secret(given, options.token)) return error(req, bhttp::status::forbidden, "wrong token");
    return std::nullopt;
  }

  std::uint64_t seq_now() const {
    std::lock_guard lock(mutex);
    return last_seq;
  }

  response handle(const request& req) {
    std::string_view target = req.target();
    auto qpos = target.find('?');
    std::string_view path = target.substr(0, qpos);
    auto query = parse_query(qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1));
    const bool post = req.method() == bhttp::verb::post;
    if (req.method() != bhttp::verb::get && !post && req.method() != bhttp::verb::head)
      return error(req, bhttp::status::method_not_allowed, "only GET and POST");
    if (auto r = refuse(req, query, post)) return std::move(*r);

    auto need_get = [&]() -> std::optional<response> {
      if (post) return error(req, bhttp::status::method_not_allowed, "use GET here");
      return std::nullopt;
    };
    auto need_board = [&]() -> std::optional<response> {
      if (!sources.controls) return error(req, bhttp::status::service_unavailable, "no board behind this dashboard");
      return std::nullopt;
    };
    if (path == "/" || path == "/index.html") {
      if (auto r = need_get()) return std::move(*r);
      auto res = reply(req, bhttp::status::ok, std::string(dashboard_page()), "text/html; charset=utf-8");
      res.set("Content-Security-Policy",
              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
              "img-src data:");
      return res;
    }
    if (path == "/metrics") {
      if (auto r = need_get()) return std::move(*r);
      if (!sources.metrics) return error(req, bhttp::status::service_unavailable, "no metrics behind this dashboard");
      return reply(req, bhttp::status::ok, sources.metrics->prometheus(), "text/plain; version=0.0.4; charset=utf-8");
    }
    if (path == "/api/tasks") {
      if (auto r = need_get()) return std::move(*r);
      if (auto r = need_board()) return std::move(*r);
      auto seq = seq_now();
      auto ts = sources.controls->tasks();
      if (!ts) return failed(req, ts.error());
      return reply(req, bhttp::status::ok, json::serialize(json::object{{"seq", seq}, {"tasks", std::move(*ts)}}));
    }
    if (path == "/api/workers") {
      if (auto r = need_get()) return std::move(*r);
      json::array a;
      std::uint64_t seq;
      {
        std::lock_guard lock(mutex);
        seq = last_seq;
        for (const auto& [name, w] : workers)
          a.push_back(json::object{{"worker", name}, {"task", w.task}, {"phase", w.phase}, {"since", format_time(w.since_us)}});
      }
      return reply(req, bhttp::status::ok, json::serialize(json::object{{"seq", seq}, {"workers", std::move(a)}}));
    }
    if (path == "/api/queue") {
      if (auto r = need_get()) return std::move(*r);
      json::array a;
      std::uint64_t seq;
      {
        std::lock_guard lock(mutex);
        seq = last_seq;
        for (const auto& [change, since] : queued) a.push_back(json::object{{"change", change}, {"since", format_time(since)}});
      }
      json::object o{{"seq", seq}, {"depth", a.size()}, {"queued", std::move(a)}};
      if (sources.controls)
        if (auto n = sources.controls->queued()) o["store_depth"] = *n;
      return reply(req, bhttp::status::ok, json::serialize(o));
    }
    if (path == "/api/runs") {
      if (auto r = need_get()) return std::move(*r);
      json::array a;
      std::uint64_t seq;
      {
        std::lock_guard lock(mutex);
        seq = last_seq;
        for (const auto& r : runs)
          a.push_back(json::object{{"run", r.run},
                                   {"started", format_time(r.started_us)},
                                   {"finished", r.finished_us ? json::value(format_time(r.finished_us)) : nullptr},
                                   {"reason", r.reason},
                                   {"cycles", r.cycles}});
      }
      return reply(req, bhttp::status::ok, json::serialize(json::object{{"seq", seq}, {"runs", std::move(a)}}));
    }
    if (path.starts_with("/api/tasks/")) {
      std::string_view rest = path.substr(11);
      std::string_view action;
      if (auto slash = rest.find('/'); slash != std::string_view::npos) {
        action = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
      }
      std::string id = percent_decode(rest);
      if (auto why = validate_id(id); !why.empty())
        return error(req, bhttp::status::bad_request, fmt::format("task id: {}", why));
      if (auto r = need_board()) return std::move(*r);
      if (action.empty()) {
        if (auto r = need_get()) return std::move(*r);
        auto seq = seq_now();
        auto t = sources.controls->task(id);
        if (!t) return failed(req, t.error());
        if (t->is_null()) return error(req, bhttp::status::not_found, fmt::format("no task '{}'", id));
        std::string events = "[";
        {
          std::lock_guard lock(mutex);
          bool first = true;
          for (const auto& k : kept)
            if (k.task == id) {
              if (!first) events += ',';
              events += k.json;
              first = false;
            }
        }
        events += ']';
        std::string body = fmt::format("{{\"seq\":{},\"task\":{},\"events\":{}}}", seq, json::serialize(*t), events);
        return reply(req, bhttp::status::ok, std::move(body));
      }
      if (!post) return error(req, bhttp::status::method_not_allowed, "use POST to change a task");
      result<json::value> r = fail(error::invalid_argument, "");
      if (action == "requeue") r = sources.controls->requeue(id, "requeued from the dashboard");
      else if (action == "abandon") r = sources.controls->abandon(id, "dashboard");
      else return error(req, bhttp::status::not_found, fmt::format("no action '{}' on tasks", action));
      if (!r) return failed(req, r.error(), bhttp::status::conflict);
      return reply(req, bhttp::status::ok, json::serialize(json::object{{"task", std::move(*r)}}));
    }
    if (path.starts_with("/api/merges/")) {
      std::string_view rest = path.substr(12);
      auto slash = rest.find('/');
      if (slash == std::string_view::npos || rest.substr(slash + 1) != "revert")
        return error(req, bhttp::status::not_found, "write POST /api/merges/COMMIT/revert");
      if (!post) return error(req, bhttp::status::method_not_allowed, "use POST to revert a merge");
      if (!sources.controls) return error(req, bhttp::status::service_unavailable, "no gate behind this dashboard");
      auto v = sources.controls->revert(rest.substr(0, slash), "reverted from the dashboard");
      if (!v) return failed(req, v.error(), bhttp::status::conflict);
      return reply(req, bhttp::status::ok, json::serialize(json::object{{"verdict", std::move(*v)}}));
    }
    return error(req, bhttp::status::not_found, fmt::format("nothing at '{}'", path));
  }

  // --- the event stream ---

  awaitable<void> stream(beast::tcp_stream& s, const request& req, const std::map<std::string, std::string>& query) {
    std::uint64_t next = 0;  // the first seq to send
    bool resume = false;
    std::uint64_t v = 0;
    if (auto it = req.find("Last-Event-ID"); it != req.end() && parse_u64(it->value(), v)) {
      next = v + 1;
      resume = true;
    } else if (auto q = query.find("since"); q != query.end() && parse_u64(q->second, v)) {
      next = v + 1;
      resume = true;
    }
    if (!resume) next = seq_now() + 1;
    std::string head =
        "HTTP/1.1 200 OK\r\nServer: agentcore\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
        "Connection: close\r\nX-Accel-Buffering: no\r\n\r\nretry: 1000\n\n";
    boost::system::error_code ec;
    s.expires_after(options.request_timeout);
    co_await asio::async_write(s, asio::buffer(head), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    client c(io.get_executor());
    clients.push_back(&c);
    // A client that goes away should free its place now, not at the next
    // write (up to a ping's interval later): a read that ends (the close; a
    // stream client sends nothing more) wakes the loop, which then ends.
    struct watch {
      client* c;
      bool gone = false;
      char probe[64];
    };
    auto w = std::make_shared<watch>();
    w->c = &c;
    s.socket().async_read_some(asio::buffer(w->probe), [w](boost::system::error_code, std::size_t) {
      w->gone = true;
      if (w->c) w->c->wake.cancel();
    });
    struct unregister {
      impl* self;
      client* c;
      watch* w;
      ~unregister() {
        w->c = nullptr;  // the read's handler may run after this frame is gone
        self->clients.remove(c);
      }
    } guard{this, &c, w.get()};
    std::string out;
    for (;;) {
      if (w->gone || stopped) co_return;
      out.clear();
      {
        std::lock_guard lock(mutex);
        if (!kept.empty()) {
          if (next < kept.front().seq) {
            // Asked for events no longer kept: say so, then go on from the oldest kept.
            out += fmt::format("event: reset\ndata: {{\"from\":{},\"oldest\":{}}}\n\n", next, kept.front().seq);
            next = kept.front().seq;
          }
          auto it = std::lower_bound(kept.begin(), kept.end(), next,
                                     [](const kept_event& k, std::uint64_t n) { return k.seq < n; });
          for (; it != kept.end() && out.size() < (256u << 10); ++it) {
            out += it->frame;
            next = it->seq + 1;
          }
        }
      }
      if (out.empty()) {
        c.wake.expires_after(std::chrono::seconds(15));
        co_await c.wake.async_wait(asio::redirect_error(use_awaitable, ec));
        if (stopped) co_return;
        if (!ec) out = ": ping\n\n";  // the timer ran out: keep the connection (and its proxies) alive
        else continue;              // woken: there is something new
      }
      s.expires_after(options.request_timeout);
      co_await asio::async_write(s, asio::buffer(out), asio::redirect_error(use_awaitable, ec));
      if (ec) co_return;  // the client went away, or is too slow to keep
    }
  }

  awaitable<void> session(tcp::socket sock) {
    ++connections;
    struct count {
      impl* self;
      ~count() { --self->connections; }
    } guard{this};
    boost::system::error_code ec;
    const auto local = plain(sock.local_endpoint(ec).address());
    beast::tcp_stream s(std::move(sock));
    beast::flat_buffer buf;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> p;
      p.header_limit(16u << 10);
      p.body_limit(options.max_request_bytes);
      s.expires_after(options.request_timeout);
      co_await bhttp::async_read(s, buf, p, asio::redirect_error(use_awaitable, ec));
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
          ec == beast::error::timeout || stopped)
        break;
      if (ec) {
        auto status = ec == bhttp::error::body_limit     ? bhttp::status::payload_too_large
                      : ec == bhttp::error::header_limit ? bhttp::status::request_header_fields_too_large
                                                         : bhttp::status::bad_request;
        request none;
        none.version(11);
        auto res = error(none, status,
                         status == bhttp::status::payload_too_large
                             ? fmt::format("the request is over {} bytes", options.max_request_bytes)
                             : fmt::format("not a valid HTTP request: {}", ec.message()));
        res.keep_alive(false);
        co_await bhttp::async_write(s, res, asio::redirect_error(use_awaitable, ec));
        break;
      }
      request req = p.release();
      if (auto r = foreign(req, local)) {
        r->keep_alive(false);
        s.expires_after(options.request_timeout);
        co_await bhttp::async_write(s, *r, asio::redirect_error(use_awaitable, ec));
        break;
      }
      std::string_view target = req.target();
      auto qpos = target.find('?');
      if (target.substr(0, qpos) == "/api/events" && req.method() == bhttp::verb::get) {
        auto query = parse_query(qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1));
        auto r = refuse(req, query, false);
        // Checked and counted with no suspension between: one thread, so the
        // cap cannot be overrun by streams arriving together.
        if (!r && stream_count.load() >= options.max_streams) {
          r = error(req, bhttp::status::service_unavailable,
                    options.max_streams == 0
                        ? std::string("this dashboard serves no event streams (max_streams is 0)")
                        : fmt::format("{} event streams are open, as many as this dashboard takes (max_streams); "
                                      "try again in a few seconds, or raise max_streams",
                                      stream_count.load()));
          r->set(bhttp::field::retry_after, "5");
        }
        if (r) {
          r->keep_alive(false);
          s.expires_after(options.request_timeout);
          co_await bhttp::async_write(s, *r, asio::redirect_error(use_awaitable, ec));
          break;
        }
        ++stream_count;
        struct uncount {
          impl* self;
          ~uncount() { --self->stream_count; }
        } streaming{this};
        co_await stream(s, req, query);
        break;
      }
      response res;
      try {
        res = handle(req);
      } catch (const std::exception& e) {
        res = error(req, bhttp::status::internal_server_error, e.what());
      }
      if (req.method() == bhttp::verb::head) res.body().clear();
      s.expires_after(options.request_timeout);
      co_await bhttp::async_write(s, res, asio::redirect_error(use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    s.socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  awaitable<void> accept_loop() {
    for (;;) {
      boost::system::error_code ec;
      tcp::socket sock = co_await acceptor->async_accept(asio::redirect_error(use_awaitable, ec));
      if (stopped || ec == asio::error::operation_aborted) co_return;
      if (ec) {
        // A connection that failed while being accepted, or no descriptors
        // left (EMFILE): wait a little rather than spin on the error.
        asio::steady_timer pause(io, std::chrono::milliseconds(50));
        co_await pause.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      if (connections.load() >= options.max_connections) {
        // Say why rather than reset; past a few of these at once, a flood:
        // close without a word.
        if (turning_away < max_turning_away)
          asio::co_spawn(io, turn_away(std::move(sock)), asio::detached);
        else
          sock.close(ec);
        continue;
      }
      asio::co_spawn(io, session(std::move(sock)), asio::detached);
    }
  }

  /// 503 to a connection over max_connections, in at most about a second.
  awaitable<void> turn_away(tcp::socket sock) {
    ++turning_away;
    struct count {
      impl* self;
      ~count() { --self->turning_away; }
    } guard{this};
    beast::tcp_stream s(std::move(sock));
    boost::system::error_code ec;
    s.expires_after(std::chrono::seconds(1));
    co_await asio::async_write(s, asio::buffer(busy_reply()), asio::redirect_error(use_awaitable, ec));
    if (ec || stopped) co_return;
    // Closing with the request unread would reset the connection, and the
    // reset can discard the answer before the client reads it: end our side,
    // then read until the client closes (or the second is up).
    s.socket().shutdown(tcp::socket::shutdown_send, ec);
    char drain[1024];
    while (!ec && !stopped) co_await s.async_read_some(asio::buffer(drain), asio::redirect_error(use_awaitable, ec));
  }
};

result<std::shared_ptr<dashboard>> dashboard::start(dashboard_options options, dashboard_sources sources) {
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(options.address, ec);
  if (ec)
    return fail(error::invalid_argument,
                fmt::format("dashboard: '{}' is not an IP address (write 127.0.0.1 or ::1, or an interface's address)",
                            options.address));
  if (!addr.is_loopback() && options.token.empty())
    return fail(error::invalid_argument,
                fmt::format("dashboard: binding {} (not loopback) needs a token: anyone who can reach it would see "
                            "and steer the run; set one, or bind 127.0.0.1",
                            options.address));
  if (options.max_streams >= options.max_connections)
    return fail(error::invalid_argument,
                fmt::format("dashboard: max_streams ({}) must be below max_connections ({}): streams stay open, and "
                            "at the cap they would leave no connection for the API; lower max_streams or raise "
                            "max_connections",
                            options.max_streams, options.max_connections));
  std::vector<host_port> allowed;
  for (const auto& h : options.allowed_hosts) {
    auto p = split_host(h);
    if (!p)
      return fail(error::invalid_argument,
                  fmt::format("dashboard: allowed_hosts entry '{}' is not a host name: write NAME or NAME:PORT "
                              "(like dash.example.com or dash.example.com:8443), [V6] or [V6]:PORT; no scheme, "
                              "path or wildcard",
                              h));
    allowed.push_back(std::move(*p));
  }
  if (options.kept_events == 0) options.kept_events = 1;
  auto i = std::make_shared<impl>();
  i->options = std::move(options);
  i->sources = std::move(sources);
  i->loopback = addr.is_loopback();
  i->bound_address = plain(addr);
  i->allowed = std::move(allowed);
  tcp::endpoint ep(addr, i->options.port);
  i->acceptor.emplace(i->io);
  i->acceptor->open(ep.protocol(), ec);
  if (!ec) i->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) i->acceptor->bind(ep, ec);
  if (!ec) i->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return fail(error::io_error,
                fmt::format("dashboard: cannot listen on {}:{}: {}", i->options.address, i->options.port, ec.message()));
  i->bound_port = i->acceptor->local_endpoint().port();
  asio::co_spawn(i->io, i->accept_loop(), asio::detached);
  i->thread = std::thread([raw = i.get()] { raw->io.run(); });
  return std::shared_ptr<dashboard>(new dashboard(std::move(i)));
}

result<std::pair<std::string, std::uint16_t>> parse_listen_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(error::invalid_argument,
                fmt::format("'{}' is not an address to serve on: {}; write HOST:PORT, like 127.0.0.1:8080", text, why));
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string host(text.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) return bad("no host");
  unsigned port = 0;
  auto ps = text.substr(colon + 1);
  auto [p, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || p != ps.data() + ps.size() || ps.empty() || port > 65535) return bad("the port is not 0-65535");
  boost::system::error_code aec;
  asio::ip::make_address(host, aec);
  if (aec) return bad(fmt::format("'{}' is not an IP address", host));
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

dashboard::dashboard(std::shared_ptr<impl> i) : impl_(std::move(i)) {}

dashboard::~dashboard() { stop(); }

void dashboard::stop() {
  if (impl_->stopped.exchange(true)) return;
  asio::post(impl_->io, [i = impl_.get()] {
    boost::system::error_code ec;
    i->acceptor->close(ec);
    for (auto* c : i->clients) c->wake.cancel();
    i->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

void dashboard::write(const event_view& e) {
  if (!impl_->stopped) impl_->on_event(e);
}

std::uint16_t dashboard::port() const { return impl_->bound_port; }

std::string dashboard::url() const {
  bool v6 = impl_->options.address.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/", v6 ? "[" : "", impl_->options.address, v6 ? "]" : "", impl_->bound_port);
}

std::size_t dashboard::stream_clients() const { return impl_->stream_count.load(); }

}  // namespace agentcore::observe
