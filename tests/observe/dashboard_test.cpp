// The dashboard's HTTP API over real sockets: each endpoint after a scripted
// run, the event stream and its resumption, the access rules, and bad
// requests answered with 4xx while the server keeps serving.
#include "gate/gate_fixture.hpp"
#include "observe/scripted_run.hpp"

#include <agentcore/observe/dashboard.hpp>

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

int connect_to(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

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
  json::value json() const { return parse_json(body).value(); }
};

/// One request on a fresh connection (Connection: close); the whole answer.
reply exchange(std::uint16_t port, std::string raw) {
  int fd = connect_to(port);
  send_all(fd, raw);
  std::string out;
  char buf[8192];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  reply r;
  auto end = out.find("\r\n\r\n");
  if (out.size() > 12) r.status = std::atoi(out.c_str() + 9);
  r.head = out.substr(0, end);
  r.body = end == std::string::npos ? "" : out.substr(end + 4);
  return r;
}

reply get(std::uint16_t port, std::string_view target, std::string_view extra = {}) {
  return exchange(port, fmt::format("GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n", target, extra));
}

reply post(std::uint16_t port, std::string_view target, std::string_view extra = {}) {
  return exchange(port, fmt::format("POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{}\r\n",
                                    target, extra));
}

/// Reads an event stream until `want` events (or a reset) arrived.
struct sse_reader {
  int fd;
  std::string buf;
  explicit sse_reader(std::uint16_t port, std::string_view target, std::string_view extra = {}) : fd(connect_to(port)) {
    send_all(fd, fmt::format("GET {} HTTP/1.1\r\nHost: x\r\n{}\r\n", target, extra));
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
    dash = dashboard::start(std::move(o), {.board = &board, .metrics = metrics}).value();
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
  CHECK(exchange(port, "DELETE /api/tasks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").status == 405);
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
    CHECK(get(f.port(), "/?token=s3cret").status == 200);
    CHECK(get(f.port(), "/metrics?token=s3cret").status == 200);
    CHECK(get(f.port(), "/api/events").status == 401);
  }
}

TEST_CASE("dashboard.bad_requests_get_4xx_and_the_server_keeps_serving") {
  fixture f({.max_request_bytes = 1024, .request_timeout = std::chrono::seconds(2)});
  const auto port = f.port();
  auto big = exchange(port, fmt::format("POST /api/tasks/t1/requeue HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{}",
                                        std::string(100000, 'x')));
  CHECK(big.status == 413);
  CHECK(exchange(port, "GARBAGE\r\n\r\n").status == 400);
  CHECK(exchange(port, "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n").status == 400);
  CHECK(exchange(port, fmt::format("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", std::string(20000, 'a'))).status ==
        431);
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
  auto dash = dashboard::start({.token = "s3cret"}, {.board = &b, .gate = g.get()}).value();
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
