// The dashboard's HTTP API over real sockets: each endpoint after a scripted
// run, the event stream and its resumption, the access rules (token, Host
// against DNS rebinding, Origin on changes), the caps on streams and
// connections, and bad requests answered with 4xx while the server keeps
// serving.
#include "agent/agent_fixture.hpp"
#include "gate/gate_fixture.hpp"
#include "support/io_thread.hpp"
#include "observe/scripted_run.hpp"

#include <agentcore/observe/dashboard.hpp>
#include <agentcore/runtime/dashboard_controls.hpp>
#include <agentcore/roles/planner.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

using namespace agentcore;
using namespace agentcore::observe;
using namespace std::chrono_literals;

namespace {

/// A connection to 127.0.0.1:PORT (or [::1]:PORT).
int connect_to(std::uint16_t port, bool v6 = false) {
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (v6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    a.sin6_port = htons(port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  return fd;
}

/// What curl and browsers send for http://127.0.0.1:PORT/.
std::string host_of(std::uint16_t port) { return fmt::format("127.0.0.1:{}", port); }

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early (a refused oversized request)
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

struct reply {
  int status = 0;
  std::string head, body;
  bool closed = false;  ///< the server closed the connection (rather than the read timing out)
  json::value json() const { return parse_json(body).value(); }
};

reply split_reply(const std::string& out) {
  reply r;
  auto end = out.find("\r\n\r\n");
  if (out.size() > 12) r.status = std::atoi(out.c_str() + 9);
  r.head = out.substr(0, end);
  r.body = end == std::string::npos ? "" : out.substr(end + 4);
  return r;
}

/// One request on a fresh connection (Connection: close); the whole answer.
reply exchange(std::uint16_t port, std::string raw, bool v6 = false) {
  int fd = connect_to(port, v6);
  send_all(fd, raw);
  std::string out;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  auto r = split_reply(out);
  r.closed = n == 0;
  return r;
}

/// GET with Host: HOST.
reply get_as(std::uint16_t port, std::string_view host, std::string_view target, std::string_view extra = {}) {
  return exchange(port, fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{}\r\n", target, host, extra));
}

reply get(std::uint16_t port, std::string_view target, std::string_view extra = {}) {
  return get_as(port, host_of(port), target, extra);
}

reply post(std::uint16_t port, std::string_view target, std::string_view extra = {}) {
  return exchange(port, fmt::format("POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n{}\r\n",
                                    target, host_of(port), extra));
}

/// One answer on a kept-alive connection: its head, then Content-Length bytes.
reply read_one(int fd) {
  std::string out;
  char c;
  while (out.find("\r\n\r\n") == std::string::npos && ::recv(fd, &c, 1, 0) == 1) out += c;
  auto r = split_reply(out);
  auto at = r.head.find("Content-Length: ");
  std::size_t want = at == std::string::npos ? 0 : std::stoul(r.head.substr(at + 16));
  char buf[8192];
  while (r.body.size() < want) {
    auto n = ::recv(fd, buf, std::min(sizeof buf, want - r.body.size()), 0);
    if (n <= 0) break;
    r.body.append(buf, static_cast<std::size_t>(n));
  }
  return r;
}

/// Waits (up to 5 s) for `pred`; its last value.
template <class F>
bool eventually(F pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

/// Reads an event stream until `want` events (or a reset) arrived.
struct sse_reader {
  int fd;
  std::string buf;
  explicit sse_reader(std::uint16_t port, std::string_view target, std::string_view extra = {}) : fd(connect_to(port)) {
    send_all(fd, fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\n{}\r\n", target, host_of(port), extra));
  }
  ~sse_reader() { ::close(fd); }
  /// Frames ("id: N\nevent: T\ndata: ...") until `want` of them have ids.
  std::vector<std::pair<std::uint64_t, std::string>> read(std::size_t want, std::vector<std::string>* others = nullptr) {
    std::vector<std::pair<std::uint64_t, std::string>> out;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
      auto at = buf.find("\n\n");
      if (at == std::string::npos) {
        char tmp[8192];
        auto n = ::recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0) break;
        buf.append(tmp, static_cast<std::size_t>(n));
        continue;
      }
      std::string frame = buf.substr(0, at);
      buf.erase(0, at + 2);
      if (auto h = frame.find("\r\n\r\n"); h != std::string::npos) frame = frame.substr(h + 4);  // the HTTP head
      if (frame.rfind("id: ", 0) == 0) {
        out.emplace_back(std::stoull(frame.substr(4)), frame);
      } else if (others && !frame.empty()) {
        others->push_back(frame);
      }
    }
    return out;
  }
};

struct fixture {
  event_bus bus;
  std::unique_ptr<store::memory_store> store = store::memory_store::create();
  board::task_board board{*store, {.events = &bus}};
  std::shared_ptr<metrics_registry> metrics = std::make_shared<metrics_registry>();
  std::shared_ptr<dashboard> dash;
  std::optional<hub> h;
  explicit fixture(dashboard_options o = {}) {
    dash = dashboard::start(std::move(o), {.controls = runtime::make_dashboard_controls(&board, nullptr), .metrics = metrics}).value();
    h.emplace(bus, hub_options{.run = "test-run"});
    h->add(std::make_shared<metrics_sink>(metrics));
    h->add(dash);
  }
  std::uint16_t port() const { return dash->port(); }
};

}  // namespace

TEST_CASE("dashboard.api_endpoints_after_a_scripted_run") {
  fixture f;
  test::scripted_run(f.bus, *f.store, f.board);
  const auto port = f.port();
  CHECK(f.dash->url() == fmt::format("http://127.0.0.1:{}/", port));

  auto tasks = get(port, "/api/tasks");
  REQUIRE(tasks.status == 200);
  CHECK(tasks.head.find("application/json") != std::string::npos);
  auto tj = tasks.json().as_object();
  CHECK(tj.at("seq").to_number<std::uint64_t>() == f.bus.published());
  REQUIRE(tj.at("tasks").as_array().size() == 2);
  std::string merged_id;
  for (const auto& t : tj.at("tasks").as_array())
    if (t.at("state").as_string() == "merged") merged_id = std::string(t.at("id").as_string());
  REQUIRE(!merged_id.empty());

  auto one = get(port, "/api/tasks/" + merged_id);
  REQUIRE(one.status == 200);
  auto oj = one.json().as_object();
  CHECK(oj.at("task").at("state").as_string() == "merged");
  auto& events = oj.at("events").as_array();
  REQUIRE(events.size() >= 5);  // its transitions, phases, the agent's turn and tool call
  for (const auto& e : events) CHECK(e.at("task").as_string() == merged_id);
  CHECK(event_from_json(events[0]).has_value());

  CHECK(get(port, "/api/tasks/nope").status == 404);
  CHECK(get(port, "/api/tasks/a%20b").status == 400);

  auto workers = get(port, "/api/workers").json().as_object();
  auto& ws = workers.at("workers").as_array();
  REQUIRE(ws.size() == 2);
  CHECK(ws[0].at("worker").as_string() == "w1");
  CHECK(ws[0].at("phase").as_string() == "idle");

  auto queue = get(port, "/api/queue").json().as_object();
  CHECK(queue.at("depth").to_number<std::uint64_t>() == 0);

  auto runs = get(port, "/api/runs").json().as_object();
  REQUIRE(runs.at("runs").as_array().size() == 1);
  CHECK(runs.at("runs").as_array()[0].at("run").as_string() == "test-run");
  CHECK(runs.at("runs").as_array()[0].at("cycles").as_array().size() == 1);

  auto metrics = get(port, "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK(metrics.head.find("text/plain; version=0.0.4") != std::string::npos);
  CHECK(metrics.body.find("agentcore_claims_total 2\n") != std::string::npos);

  auto page = get(port, "/");
  REQUIRE(page.status == 200);
  CHECK(page.head.find("text/html") != std::string::npos);
  CHECK(page.head.find("Content-Security-Policy: default-src 'none'") != std::string::npos);
  CHECK(page.body.starts_with("<!doctype html>"));
  // Self-contained: nothing is fetched from anywhere else.
  CHECK(page.body.find("http://") == std::string::npos);
  CHECK(page.body.find("https://") == std::string::npos);
  CHECK(page.body.find("<link") == std::string::npos);
  CHECK(page.body.find("src=") == std::string::npos);

  for (const char* path : {"/nothing", "/../../etc/passwd", "/api", "/api/tasks/../../x", "/static/app.js"})
    CHECK_MESSAGE(get(port, path).status >= 400, path);
  CHECK(get(port, "/etc/passwd").body.find("root:") == std::string::npos);
  CHECK(
      exchange(port, fmt::format("DELETE /api/tasks HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", host_of(port)))
          .status == 405);
}

TEST_CASE("dashboard.event_stream_resumes_after_last_event_id") {
  fixture f({.kept_events = 100});
  test::scripted_run(f.bus, *f.store, f.board);
  const auto port = f.port();
  const auto n = f.bus.published();

  sse_reader all(port, "/api/events?since=0");
  auto got = all.read(n);
  REQUIRE(got.size() == n);
  for (std::size_t i = 0; i < n; ++i) CHECK(got[i].first == i + 1);
  CHECK(got[0].second.find("event: runtime.swarm\ndata: {\"v\":1,") != std::string::npos);
  CHECK(f.dash->stream_clients() == 1);

  // Live: what is published now arrives on the open stream.
  f.bus.publish(roles::worker_phase{"w9", "t9", "working", ""});
  auto live = all.read(1);
  REQUIRE(live.size() == 1);
  CHECK(live[0].first == n + 1);
  CHECK(live[0].second.find("\"worker\":\"w9\"") != std::string::npos);

  // A browser reconnecting sends the last id it saw.
  sse_reader resumed(port, "/api/events", "Last-Event-ID: 5\r\n");
  auto rest = resumed.read(n + 1 - 5);
  REQUIRE(rest.size() == n + 1 - 5);
  CHECK(rest.front().first == 6);
  CHECK(rest.back().first == n + 1);

  // Without an id: only what comes next.
  sse_reader fresh(port, "/api/events");
  std::this_thread::sleep_for(100ms);
  f.bus.publish(roles::worker_phase{"w9", "t9", "submitting", ""});
  auto next = fresh.read(1);
  REQUIRE(next.size() == 1);
  CHECK(next[0].first == n + 2);

  // Asking for events no longer kept: a reset first, then the oldest kept.
  for (int i = 0; i < 150; ++i) f.bus.publish(roles::worker_phase{"w9", "t9", i % 2 ? "working" : "waiting", ""});
  std::vector<std::string> others;
  sse_reader old(port, "/api/events", "Last-Event-ID: 3\r\n");
  auto after = old.read(100, &others);
  REQUIRE(!others.empty());
  bool reset = false;
  for (const auto& o : others) reset |= o.find("event: reset") != std::string::npos;
  CHECK(reset);
  REQUIRE(after.size() == 100);
  CHECK(after.front().first == f.bus.published() - 99);
}

TEST_CASE("dashboard.access_rules") {
  SUBCASE("loopback without a token: reads are open, changes are refused") {
    fixture f;
    test::scripted_run(f.bus, *f.store, f.board);
    CHECK(get(f.port(), "/api/tasks").status == 200);
    auto r = post(f.port(), "/api/tasks/t1/requeue");
    CHECK(r.status == 403);
    CHECK(r.body.find("no token") != std::string::npos);
  }
  SUBCASE("loopback with a token: changes need it") {
    fixture f({.token = "s3cret"});
    test::scripted_run(f.bus, *f.store, f.board);
    std::string abandoned;
    for (const auto& t : f.board.list(board::task_state::abandoned).value()) abandoned = t.id.str();
    REQUIRE(!abandoned.empty());
    auto path = "/api/tasks/" + abandoned + "/requeue";
    CHECK(post(f.port(), path).status == 401);
    CHECK(post(f.port(), path, "Authorization: Bearer wrong\r\n").status == 403);
    CHECK(post(f.port(), path + "?token=s3cret").status == 401);  // a token in a URL does not change things
    auto ok = post(f.port(), path, "Authorization: Bearer s3cret\r\n");
    REQUIRE(ok.status == 200);
    CHECK(f.board.get(task_id{abandoned}).value()->state == board::task_state::ready);
    // What the board refuses is a conflict, with the board's words.
    auto again = post(f.port(), "/api/tasks/" + abandoned + "/abandon", "Authorization: Bearer s3cret\r\n");
    CHECK(again.status == 409);
    CHECK(again.body.find("only a claimed task") != std::string::npos);
    CHECK(post(f.port(), "/api/merges/zz/revert", "Authorization: Bearer s3cret\r\n").status == 503);  // no gate
    CHECK(get(f.port(), "/api/tasks").status == 200);  // reads stay open on loopback
  }
  SUBCASE("any other address needs a token to start, and for every request") {
    auto refused = dashboard::start({.address = "0.0.0.0"}, {});
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == error::invalid_argument);
    CHECK(refused.error().message().find("token") != std::string::npos);
    CHECK(dashboard::start({.address = "not an address"}, {}).error() == error::invalid_argument);

    fixture f({.address = "0.0.0.0", .token = "s3cret"});
    CHECK(get(f.port(), "/api/tasks").status == 401);
    CHECK(get(f.port(), "/").status == 401);
    CHECK(get(f.port(), "/api/tasks", "Authorization: Bearer nope\r\n").status == 403);
    CHECK(get(f.port(), "/api/tasks", "Authorization: Bearer s3cret\r\n").status == 200);
    // The address bound, as url() shows it, names it too; another name does not, token or not.
    CHECK(get_as(f.port(), fmt::format("0.0.0.0:{}", f.port()), "/api/tasks", "Authorization: Bearer s3cret\r\n")
              .status == 200);
    CHECK(get_as(f.port(), fmt::format("evil.example:{}", f.port()), "/api/tasks", "Authorization: Bearer s3cret\r\n")
              .status == 421);
    CHECK(get(f.port(), "/?token=s3cret").status == 200);
    CHECK(get(f.port(), "/metrics?token=s3cret").status == 200);
    CHECK(get(f.port(), "/api/events").status == 401);
  }
}

TEST_CASE("dashboard.bad_requests_get_4xx_and_the_server_keeps_serving") {
  fixture f({.max_request_bytes = 1024, .request_timeout = std::chrono::seconds(2)});
  const auto port = f.port();
  const auto host = host_of(port);
  auto big =
      exchange(port, fmt::format("POST /api/tasks/t1/requeue HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n{}",
                                 host, std::string(100000, 'x')));
  CHECK(big.status == 413);
  CHECK(exchange(port, "GARBAGE\r\n\r\n").status == 400);
  CHECK(exchange(port, fmt::format("GET / HTTP/1.1\r\nHost: {}\r\nContent-Length: nope\r\n\r\n", host)).status == 400);
  CHECK(exchange(port, fmt::format("GET / HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n", host, std::string(20000, 'a')))
            .status == 431);
  {  // a client that sends half a request and stalls is closed after the timeout
    int fd = connect_to(port);
    send_all(fd, "GET /api/tasks HTTP/1.1\r\nHo");
    char c;
    auto t0 = std::chrono::steady_clock::now();
    CHECK(::recv(fd, &c, 1, 0) <= 0);
    CHECK(std::chrono::steady_clock::now() - t0 < 4s);
    ::close(fd);
  }
  CHECK(get(port, "/api/tasks").status == 200);
  CHECK(get(port, "/api/workers").status == 200);
}

TEST_CASE("dashboard.changes_through_it_reach_the_board_and_the_gate") {
  test::gate_fixture fx;
  auto g = fx.open_gate();
  for (const char* id : {"keep", "oops"}) {
    auto v = g->submit(fx.make_change(id));
    REQUIRE(v);
    REQUIRE(v->kind == gate::verdict_kind::queued);
  }
  g->run_until_empty().value();
  REQUIRE(fx.main_has("changes/oops.txt"));
  auto merged = g->verdict("oops").value()->merged_as.value();

  event_bus bus;
  board::task_board b(*fx.store, {.prefix = "dash-board/", .events = &bus});
  auto dash = dashboard::start({.token = "s3cret"}, {.controls = runtime::make_dashboard_controls(&b, g.get())}).value();
  const std::string auth = "Authorization: Bearer s3cret\r\n";

  // Revert a merge: queued through the gate, landed by its next step.
  auto bad = post(dash->port(), "/api/merges/not-a-commit/revert", auth);
  CHECK(bad.status == 400);
  auto r = post(dash->port(), fmt::format("/api/merges/{}/revert", merged.hex()), auth);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(r.json().at("verdict").at("verdict").as_string() == "queued");
  CHECK(get(dash->port(), "/api/queue").json().at("store_depth").to_number<int>() == 1);
  auto landed = g->run_until_empty().value();
  REQUIRE(landed.size() == 1);
  CHECK(landed[0].kind == gate::verdict_kind::merged);
  CHECK_FALSE(fx.main_has("changes/oops.txt"));
  CHECK(fx.main_has("changes/keep.txt"));

  // Abandon a claimed task: its worker loses the claim.
  REQUIRE(b.propose(board::task{.id = task_id{"t1"}, .title = "one"}));
  auto lease = fx.store->grant(std::chrono::seconds(30)).value();
  REQUIRE(b.claim(worker_id{"w1"}, lease).value());
  auto ab = post(dash->port(), "/api/tasks/t1/abandon", auth);
  REQUIRE_MESSAGE(ab.status == 200, ab.body);
  CHECK(b.get(task_id{"t1"}).value()->state == board::task_state::abandoned);
  CHECK(b.submit(task_id{"t1"}, worker_id{"w1"}).error() == error::claim_lost);
  auto rq = post(dash->port(), "/api/tasks/t1/requeue", auth);
  REQUIRE(rq.status == 200);
  CHECK(b.get(task_id{"t1"}).value()->state == board::task_state::ready);
  CHECK(post(dash->port(), "/api/tasks/nope/requeue", auth).status == 404);
}

TEST_CASE("dashboard.host_must_name_the_dashboard") {
  fixture f({.token = "s3cret"});
  test::scripted_run(f.bus, *f.store, f.board);
  const auto port = f.port();
  const std::string auth = "Authorization: Bearer s3cret\r\n";

  // DNS rebinding: a page on evil.example, its name now resolving to
  // 127.0.0.1, is same-origin with the dashboard as far as the browser knows;
  // its requests carry its own name. Nothing is served to it, the token
  // (a page that learnt it) notwithstanding.
  const auto evil = fmt::format("evil.example:{}", port);
  for (const char* path : {"/api/tasks", "/api/events", "/", "/metrics", "/api/workers", "/api/tasks/t1"}) {
    CAPTURE(path);
    for (std::string extra : {std::string(), auth}) {
      auto r = get_as(port, evil, path, extra);
      CHECK(r.status == 421);
      CHECK(r.closed);
      CHECK(r.body.find("Host '" + evil + "'") != std::string::npos);
      CHECK(r.body.find("allowed_hosts") != std::string::npos);
      CHECK(r.body.find("\"tasks\"") == std::string::npos);
      CHECK(r.body.find("agentcore_") == std::string::npos);
    }
  }
  CHECK(f.dash->stream_clients() == 0);
  auto r = exchange(
      port, fmt::format("POST /api/tasks/t1/requeue HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n{}\r\n", evil, auth));
  CHECK(r.status == 421);

  // What curl and browsers send for the address served, and localhost.
  CHECK(get_as(port, host_of(port), "/api/tasks").status == 200);
  CHECK(get_as(port, fmt::format("localhost:{}", port), "/api/tasks").status == 200);
  CHECK(get_as(port, fmt::format("LocalHost:{}", port), "/metrics").status == 200);
  CHECK(get_as(port, fmt::format("127.0.0.1:{}", port), "/").status == 200);
  // The port counts: that origin is not this dashboard.
  const auto other = static_cast<std::uint16_t>(port == 65535 ? 1 : port + 1);
  CHECK(get_as(port, fmt::format("127.0.0.1:{}", other), "/api/tasks").status == 421);
  CHECK(get_as(port, fmt::format("localhost:{}", other), "/api/tasks").status == 421);
  CHECK(get_as(port, "localhost", "/api/tasks").status == 421);  // port 80
  // Another loopback address, or a name that is a number, is not ours either.
  CHECK(get_as(port, fmt::format("127.0.0.2:{}", port), "/api/tasks").status == 421);
  CHECK(get_as(port, fmt::format("2130706433:{}", port), "/api/tasks").status == 421);
  CHECK(get_as(port, fmt::format("localhost.evil.example:{}", port), "/api/tasks").status == 421);

  // Malformed: none in HTTP/1.1, two, or not a host at all.
  CHECK(exchange(port, "GET /api/tasks HTTP/1.1\r\nConnection: close\r\n\r\n").status == 400);
  CHECK(exchange(port, fmt::format("GET /api/tasks HTTP/1.1\r\nHost: {0}\r\nHost: {0}\r\nConnection: close\r\n\r\n",
                                   host_of(port)))
            .status == 400);
  CHECK(get_as(port, fmt::format("user@127.0.0.1:{}", port), "/api/tasks").status == 400);
  CHECK(get_as(port, fmt::format("127.0.0.1:{}/x", port), "/api/tasks").status == 400);
  // HTTP/1.0 needs no Host (no browser sends a request without one).
  CHECK(exchange(port, "GET /api/tasks HTTP/1.0\r\n\r\n").status == 200);
}

TEST_CASE("dashboard.host_over_ipv6_loopback") {
  auto d = dashboard::start({.address = "::1"}, {});
  REQUIRE(d);
  const auto port = (*d)->port();
  CHECK((*d)->url() == fmt::format("http://[::1]:{}/", port));
  auto ask = [&](std::string_view host) {
    return exchange(port, fmt::format("GET /api/workers HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", host), true)
        .status;
  };
  CHECK(ask(fmt::format("[::1]:{}", port)) == 200);
  CHECK(ask(fmt::format("[0:0:0:0:0:0:0:1]:{}", port)) == 200);
  CHECK(ask(fmt::format("localhost:{}", port)) == 200);
  CHECK(ask(fmt::format("evil.example:{}", port)) == 421);
  CHECK(ask(fmt::format("[::2]:{}", port)) == 421);
  CHECK(ask(fmt::format("127.0.0.1:{}", port)) == 421);  // not the address served
  CHECK(ask(fmt::format("::1:{}", port)) == 400);        // a bare IPv6 address needs brackets
}

TEST_CASE("dashboard.allowed_hosts_let_configured_names_in") {
  fixture f({.allowed_hosts = {"dash.example.com", "Tunnel.example:9000", "[fd00::2]"}});
  const auto port = f.port();
  CHECK(get_as(port, "dash.example.com", "/api/tasks").status == 200);  // a proxy on port 80
  CHECK(get_as(port, "dash.example.com:443", "/api/tasks").status == 200);
  CHECK(get_as(port, "DASH.Example.com.", "/").status == 200);
  CHECK(get_as(port, "tunnel.example:9000", "/metrics").status == 200);
  CHECK(get_as(port, "tunnel.example:9001", "/metrics").status == 421);
  CHECK(get_as(port, "tunnel.example", "/metrics").status == 421);
  CHECK(get_as(port, "[fd00::2]:8443", "/api/tasks").status == 200);
  CHECK(get_as(port, fmt::format("{}:{}", "127.0.0.1", port), "/api/tasks").status == 200);  // still
  auto r = get_as(port, fmt::format("sub.dash.example.com:{}", port), "/api/tasks");
  CHECK(r.status == 421);
  // The refusal names what is served and what is allowed.
  CHECK(r.body.find(fmt::format("127.0.0.1:{}", port)) != std::string::npos);
  CHECK(r.body.find("dash.example.com") != std::string::npos);
  {
    sse_reader s(port, "/api/events");  // the stream, with Host: 127.0.0.1:PORT
    CHECK(eventually([&] { return f.dash->stream_clients() == 1; }));
  }

  for (const char* bad :
       {"http://dash.example.com", "dash.example.com/", "*.example.com", "", "::1", "a b", "dash.example.com:99999"}) {
    CAPTURE(bad);
    auto d = dashboard::start({.allowed_hosts = {bad}}, {});
    REQUIRE_FALSE(d);
    CHECK(d.error() == error::invalid_argument);
    CHECK(d.error().message().find("allowed_hosts") != std::string::npos);
  }
}

TEST_CASE("dashboard.changes_from_another_origin_are_refused") {
  fixture f({.token = "s3cret", .allowed_hosts = {"dash.example.com"}});
  test::scripted_run(f.bus, *f.store, f.board);
  const auto port = f.port();
  std::string abandoned;
  for (const auto& t : f.board.list(board::task_state::abandoned).value()) abandoned = t.id.str();
  REQUIRE(!abandoned.empty());
  const auto path = "/api/tasks/" + abandoned + "/requeue";
  const std::string auth = "Authorization: Bearer s3cret\r\n";

  // The right token from the wrong page: refused, the task untouched.
  for (std::string origin :
       {fmt::format("http://evil.example:{}", port), std::string("null"),
        fmt::format("http://127.0.0.1:{}", port == 65535 ? 1 : port + 1), fmt::format("ftp://127.0.0.1:{}", port),
        std::string("http://dash.example.com.evil.example")}) {
    CAPTURE(origin);
    auto r = post(port, path, auth + "Origin: " + origin + "\r\n");
    CHECK(r.status == 403);
    CHECK(r.body.find("Origin '" + origin + "'") != std::string::npos);
  }
  for (const char* site : {"cross-site", "same-site"}) {
    auto r = post(port, path, auth + "Sec-Fetch-Site: " + site + "\r\n");
    CHECK(r.status == 403);
    CHECK(r.body.find(site) != std::string::npos);
  }
  CHECK(f.board.get(task_id{abandoned}).value()->state == board::task_state::abandoned);

  // Reads are not changes: a cross-origin page cannot read the answer anyway (no CORS headers).
  CHECK(get(port, "/api/tasks", "Origin: http://evil.example\r\n").status == 200);

  // The dashboard's own page: its origin (or an allowed one) and same-origin.
  auto ok =
      post(port, path, auth + fmt::format("Origin: http://127.0.0.1:{}\r\nSec-Fetch-Site: same-origin\r\n", port));
  REQUIRE_MESSAGE(ok.status == 200, ok.body);
  CHECK(f.board.get(task_id{abandoned}).value()->state == board::task_state::ready);
  // Through the allowed name (a proxy with TLS): past the origin check, to the board's answer.
  CHECK(post(port, path, auth + "Origin: https://dash.example.com\r\n").status == 409);
  // Without Origin (curl, scripts): as before.
  CHECK(post(port, path, auth).status == 409);
}

TEST_CASE("dashboard.event_streams_are_capped_and_the_api_stays_answered") {
  fixture f({.max_streams = 3});
  test::scripted_run(f.bus, *f.store, f.board);
  const auto port = f.port();

  std::vector<std::unique_ptr<sse_reader>> streams;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<sse_reader>(port, "/api/events?since=0"));
    REQUIRE(streams.back()->read(1).size() == 1);
  }
  CHECK(f.dash->stream_clients() == 3);

  // Beyond the cap: 503 with Retry-After at once, and the connection closed.
  for (int i = 0; i < 4; ++i) {
    auto r = get(port, "/api/events?since=0");
    CHECK(r.status == 503);
    CHECK(r.closed);
    CHECK(r.head.find("Retry-After: 5") != std::string::npos);
    CHECK(r.json().at("error").as_string().find("max_streams") != std::string_view::npos);
  }
  CHECK(f.dash->stream_clients() == 3);
  // Ordinary requests are answered while the streams are open.
  CHECK(get(port, "/api/tasks").status == 200);
  CHECK(get(port, "/api/workers").status == 200);
  CHECK(get(port, "/metrics").status == 200);
  // The open streams still get what is published.
  f.bus.publish(roles::worker_phase{"w9", "t9", "working", ""});
  for (auto& s : streams) {
    std::vector<std::pair<std::uint64_t, std::string>> got;
    while (got.empty() || got.back().first < f.bus.published()) {
      auto more = s->read(1);
      REQUIRE(more.size() == 1);
      got.push_back(more[0]);
    }
  }

  // A client that goes away frees its place as it goes, without waiting for
  // an event or a ping to find out.
  streams.pop_back();
  REQUIRE(eventually([&] { return f.dash->stream_clients() == 2; }));
  sse_reader again(port, "/api/events?since=0");
  CHECK(again.read(1).size() == 1);
  CHECK(f.dash->stream_clients() == 3);
  CHECK(get(port, "/api/events").status == 503);
  streams.clear();
  REQUIRE(eventually([&] { return f.dash->stream_clients() == 1; }));
}

TEST_CASE("dashboard.over_the_connection_cap_answers_503") {
  REQUIRE_FALSE(dashboard::start({.max_connections = 4, .max_streams = 4}, {}));
  auto equal = dashboard::start({.max_connections = 256}, {});  // max_streams 256 by default
  REQUIRE_FALSE(equal);
  CHECK(equal.error().message().find("max_streams (256) must be below max_connections (256)") != std::string::npos);

  fixture f({.max_connections = 3, .max_streams = 1});
  const auto port = f.port();
  sse_reader stream(port, "/api/events");
  REQUIRE(eventually([&] { return f.dash->stream_clients() == 1; }));
  // Two kept-alive connections, each known to be in a session: it answered.
  std::vector<int> kept;
  for (int i = 0; i < 2; ++i) {
    int fd = connect_to(port);
    send_all(fd, fmt::format("GET /api/workers HTTP/1.1\r\nHost: {}\r\n\r\n", host_of(port)));
    REQUIRE(read_one(fd).status == 200);
    kept.push_back(fd);
  }
  // The fourth: told why, not reset.
  auto r = get(port, "/api/tasks");
  CHECK(r.status == 503);
  CHECK(r.closed);
  CHECK(r.head.find("Retry-After: 5") != std::string::npos);
  CHECK(r.json().at("error").as_string().find("max_connections") != std::string_view::npos);
  // A kept connection goes: room again.
  ::close(kept.back());
  kept.pop_back();
  CHECK(eventually([&] { return get(port, "/api/tasks").status == 200; }));
  for (int fd : kept) ::close(fd);
}

// End to end: a merge reverted through the dashboard moves its task to
// `reverted` (the revert commit and the reason on it); the planner sees it
// and its re-proposal under the same title is taken, not dropped as a
// duplicate of merged work; the work lands again.
TEST_CASE("dashboard.a_revert_moves_the_task_and_a_re_plan_brings_the_work_back") {
  test::gate_fixture fx;
  event_bus bus;
  board::task_board b(*fx.store, {.events = &bus});
  auto g = fx.open_gate({.board = &b});
  auto lease = fx.store->grant(std::chrono::seconds(60)).value();
  auto work = [&](const std::string& id, const std::string& change_id) {
    auto t = b.claim(worker_id{"w"}, lease).value();
    REQUIRE(t);
    REQUIRE(t->id == task_id{id});
    REQUIRE(b.submit(t->id, worker_id{"w"}).has_value());
    auto c = fx.make_change(change_id);  // writes changes/<change_id>.txt
    c.task = t->id;
    REQUIRE(g->submit(c).value().kind == gate::verdict_kind::queued);
    g->run_until_empty().value();
  };
  REQUIRE(b.propose({.id = task_id{"feature"}, .title = "Add the feature"}).has_value());
  work("feature", "feature");
  auto merged_as = git::oid::from_hex(b.get(task_id{"feature"}).value()->result.as_object().at("merged_as").as_string());
  REQUIRE(merged_as);

  auto dash = dashboard::start({.token = "s3cret"}, {.controls = runtime::make_dashboard_controls(&b, g.get())}).value();
  auto r = post(dash->port(), fmt::format("/api/merges/{}/revert", merged_as->hex()), "Authorization: Bearer s3cret\r\n");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  g->run_until_empty().value();
  CHECK_FALSE(fx.main_has("changes/feature.txt"));
  auto t = b.get(task_id{"feature"}).value().value();
  REQUIRE(t.state == board::task_state::reverted);
  auto v = gate::verdict_from_json(t.result).value();
  CHECK(v.merged_as == fx.main_tip());
  CHECK(v.detail.find("reverted from the dashboard") != std::string::npos);
  auto task_json = get(dash->port(), "/api/tasks/feature", "Authorization: Bearer s3cret\r\n");
  CHECK(task_json.body.find("\"reverted\"") != std::string::npos);

  // The planner's next round: it is shown the revert, proposes the work
  // again under the same title, and the board takes it.
  test::io_thread io;
  std::string snapshot;
  test::scripted_client model([&](const model::request& req, int) -> std::optional<model::result_type> {
    snapshot = req.messages.at(0).text();
    return test::text_answer(R"({"tasks": [{"id": "feature-again", "title": "Add the feature",
                                            "description": "Add it back, without what broke production"}]})");
  });
  roles::planner p(b, fx.dir.path(), model, {.goal = "the feature", .executor = io.io.get_executor()});
  std::promise<result<roles::plan_report>> pr;
  auto fut = pr.get_future();
  p.async_plan([&](result<roles::plan_report> x) { pr.set_value(std::move(x)); });
  REQUIRE(fut.wait_for(60s) == std::future_status::ready);
  auto plan = fut.get();
  REQUIRE_MESSAGE(plan.has_value(), plan.error().message());
  INFO(snapshot);
  CHECK(snapshot.find("[reverted] feature: Add the feature") != std::string::npos);
  CHECK(snapshot.find("reverted from the dashboard") != std::string::npos);
  REQUIRE(plan->proposed.size() == 1);
  CHECK(plan->proposed[0] == task_id{"feature-again"});
  CHECK(b.get(task_id{"feature"}).value()->state == board::task_state::reverted);  // a person's revert stays
  work("feature-again", "feature-2");
  CHECK(fx.main_has("changes/feature-2.txt"));
  CHECK(b.get(task_id{"feature-again"}).value()->state == board::task_state::merged);
}
