// The dashboard's page in a real browser: headless Chromium, driven through
// the DevTools protocol over a pipe (--remote-debugging-pipe: JSON messages
// ending in NUL on fds 3 and 4), against a dashboard fed by a small run made
// here step by step. It checks that tasks appear, move between columns, the
// workers and queue follow, and the charts draw; it saves a screenshot to
// the test artifacts directory.
#include "support/temp_dir.hpp"

#include <agentcore/agent/loop.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/observe/dashboard.hpp>
#include <agentcore/runtime/dashboard_controls.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/store/memory_store.hpp>

#include <boost/json/serialize.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

extern char** environ;

using namespace agentcore;
using namespace agentcore::observe;
using namespace std::chrono_literals;

namespace {

std::string find_chromium() {
  if (const char* e = std::getenv("AGENTCORE_CHROMIUM"); e && *e) return e;
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (::access(p, X_OK) == 0) return p;
  return {};
}

std::string base64_decode(std::string_view in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  int bits = 0, acc = 0;
  for (char c : in) {
    int v = val(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

/// Headless Chromium with the DevTools protocol on a pipe.
class browser {
public:
  explicit browser(const std::filesystem::path& profile) {
    auto exe = find_chromium();
    REQUIRE_MESSAGE(!exe.empty(), "no Chromium (install Debian's chromium: scripts/install-deps.sh, or set AGENTCORE_CHROMIUM)");
    std::filesystem::create_directories(profile);
    int to_browser[2], from_browser[2];
    REQUIRE(::pipe2(to_browser, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(from_browser, O_CLOEXEC) == 0);
    std::vector<std::string> args = {exe,
                                     "--headless",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--disable-background-networking",
                                     "--disable-component-update",
                                     "--disable-sync",
                                     "--no-first-run",
                                     "--remote-debugging-pipe",
                                     "--window-size=1400,900",
                                     "--user-data-dir=" + profile.string(),
                                     "about:blank"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to_browser[0], 3);
    posix_spawn_file_actions_adddup2(&fa, from_browser[1], 4);
    auto log = (profile / "chromium.log").string();
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = ::posix_spawn(&pid_, exe.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(to_browser[0]);
    ::close(from_browser[1]);
    REQUIRE_MESSAGE(rc == 0, "cannot start " << exe);
    out_ = to_browser[1];
    in_ = from_browser[0];
  }
  ~browser() {
    if (pid_ > 0) {
      send("Browser.close", json::object{}, {});
      for (int i = 0; i < 50 && ::waitpid(pid_, nullptr, WNOHANG) == 0; ++i) std::this_thread::sleep_for(100ms);
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(in_);
  }

  /// Sends a command; returns its "result" (fails the test on an error or after 30 s).
  json::value call(std::string_view method, json::object params, const std::string& session = {}) {
    int id = send(method, std::move(params), session);
    auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      auto msg = next_message(deadline);
      REQUIRE_MESSAGE(msg, "no answer from Chromium to " << method);
      auto& o = msg->as_object();
      if (auto* mid = o.if_contains("id"); mid && mid->to_number<int>() == id) {
        if (auto* err = o.if_contains("error")) FAIL(method << ": " << json::serialize(*err));
        return o.contains("result") ? o.at("result") : json::value(json::object{});
      }
    }
  }

  /// Evaluates a JavaScript expression in the page; its value.
  json::value eval(const std::string& session, std::string expr) {
    auto r = call("Runtime.evaluate", {{"expression", std::move(expr)}, {"returnByValue", true}}, session);
    auto& o = r.as_object();
    if (o.contains("exceptionDetails")) FAIL("page script failed: " << json::serialize(o.at("exceptionDetails")));
    return o.at("result").as_object().contains("value") ? o.at("result").at("value") : json::value();
  }

  /// Polls an expression until it is true; false after `limit`.
  bool wait_for(const std::string& session, const std::string& expr, std::chrono::milliseconds limit = 15s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      // Not there yet (the document still loading) counts as false.
      auto v = eval(session, "(() => { try { return " + expr + "; } catch (e) { return false; } })()");
      if (v.is_bool() && v.as_bool()) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

private:
  int send(std::string_view method, json::object params, const std::string& session) {
    int id = ++last_id_;
    json::object msg{{"id", id}, {"method", method}, {"params", std::move(params)}};
    if (!session.empty()) msg["sessionId"] = session;
    std::string text = json::serialize(msg);
    text.push_back('\0');
    std::string_view rest = text;
    while (!rest.empty()) {
      auto n = ::write(out_, rest.data(), rest.size());
      if (n <= 0) break;
      rest.remove_prefix(static_cast<std::size_t>(n));
    }
    return id;
  }

  std::optional<json::value> next_message(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      if (auto nul = buf_.find('\0'); nul != std::string::npos) {
        std::string msg = buf_.substr(0, nul);
        buf_.erase(0, nul + 1);
        auto v = parse_json(msg);
        if (v && v->is_object()) return std::move(*v);
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{in_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      char tmp[65536];
      auto n = ::read(in_, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

  pid_t pid_ = -1;
  int out_ = -1, in_ = -1;
  int last_id_ = 0;
  std::string buf_;
};

std::string cards_in(const std::string& state) {
  return fmt::format("document.querySelectorAll('#board .col[data-state=\"{}\"] .card').length", state);
}

}  // namespace

TEST_CASE("dashboard.page_in_headless_chromium") {
  test::temp_dir dir("browser");
  event_bus bus;
  auto store = store::memory_store::create();
  board::task_board b(*store, {.events = &bus});
  auto metrics = std::make_shared<metrics_registry>();
  auto dash = dashboard::start({}, {.controls = runtime::make_dashboard_controls(&b, nullptr), .metrics = metrics}).value();
  hub h(bus, {.run = "browser-run"});
  h.add(std::make_shared<metrics_sink>(metrics));
  h.add(dash);

  // One task before the page opens: the first load shows it.
  REQUIRE(b.propose(board::task{.id = task_id{"parse-args"}, .title = "Parse the arguments"}));

  browser chrome(dir.path() / "profile");
  auto target = chrome.call("Target.createTarget", {{"url", dash->url()}});
  auto session = std::string(
      chrome.call("Target.attachToTarget", {{"targetId", target.at("targetId")}, {"flatten", true}})
          .at("sessionId")
          .as_string());
  chrome.call("Runtime.enable", {}, session);
  REQUIRE_MESSAGE(chrome.wait_for(session, "document.body.dataset.ready === '1'"),
                  "the page did not load the board");
  CHECK(chrome.eval(session, cards_in("ready")).to_number<int>() == 1);
  REQUIRE(chrome.wait_for(session, "document.getElementById('status').textContent === 'live'"));

  // The run, step by step; the page follows through the event stream.
  auto lease = store->grant(std::chrono::seconds(60)).value();
  REQUIRE(b.propose(board::task{.id = task_id{"print-help"}, .title = "Print the help"}));
  REQUIRE(b.propose(board::task{.id = task_id{"read-config"}, .title = "Read the configuration"}));
  REQUIRE_MESSAGE(chrome.wait_for(session, cards_in("ready") + " === 3"), "new tasks did not appear");
  std::vector<task_id> claimed;
  for (const char* w : {"w1", "w2"}) {
    auto t = b.claim(worker_id{w}, lease).value().value();
    bus.publish(roles::worker_phase{w, t.id.str(), "claimed", t.title});
    bus.publish(roles::worker_phase{w, t.id.str(), "working", ""});
    claimed.push_back(t.id);
  }
  REQUIRE_MESSAGE(chrome.wait_for(session, cards_in("claimed") + " === 2 && " + cards_in("ready") + " === 1"),
                  "claimed tasks did not move to their column");
  CHECK(chrome.wait_for(session, "[...document.querySelectorAll('#workers td')].some(td => td.textContent === 'working')"));
  for (int turn = 1; turn <= 3; ++turn) {
    bus.publish(agent::turn_event{"worker", claimed[0].str(), turn, {"write_file"}, model::usage{900, 60, 0, 0},
                                  "tool_use", "model-a", 0.01 * turn, 0.4});
    std::this_thread::sleep_for(150ms);
  }
  REQUIRE(b.submit(claimed[0], worker_id{"w1"}));
  gate::change_verdict v;
  v.change_id = claimed[0].str() + "-1";
  v.kind = gate::verdict_kind::queued;
  bus.publish(gate::gate_event{v, claimed[0]});
  REQUIRE(chrome.wait_for(session, "document.getElementById('depth').textContent === '1'"));
  std::this_thread::sleep_for(300ms);
  v.kind = gate::verdict_kind::merged;
  v.paths = {"src/args.c", "tests/test_args.c"};
  bus.publish(gate::gate_event{v, claimed[0]});
  REQUIRE(b.finish(claimed[0], board::task_state::merged));
  bus.publish(roles::worker_phase{"w1", claimed[0].str(), "merged", "landed"});
  REQUIRE(b.abandon(claimed[1], worker_id{"w2"}, nullptr));
  bus.publish(roles::worker_phase{"w2", claimed[1].str(), "abandoned", "stalled"});

  REQUIRE_MESSAGE(chrome.wait_for(session, cards_in("merged") + " === 1 && " + cards_in("abandoned") + " === 1"),
                  "finished tasks did not move to their columns");
  CHECK(chrome.eval(session, cards_in("claimed")).to_number<int>() == 0);
  CHECK(chrome.eval(session, "Number(document.body.dataset.moves)").to_number<int>() >= 4);
  CHECK(chrome.eval(session, "document.getElementById('merged').textContent").as_string() == "1");
  CHECK(chrome.eval(session, "document.getElementById('depth').textContent").as_string() == "0");
  // The charts drew their lines: points, and pixels in the lines' colours
  // (bright green or amber; the axis and labels are darker).
  const std::string painted =
      "(id => { const c = document.getElementById(id), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
      " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i + 1] > 155) n++; return n; })";
  REQUIRE(chrome.wait_for(session, "Number(document.getElementById('costchart').dataset.points) >= 3"));
  CHECK(chrome.eval(session, "Number(document.getElementById('throughput').dataset.points)").to_number<int>() >= 1);
  CHECK(chrome.eval(session, painted + "('costchart')").to_number<int>() > 50);
  CHECK(chrome.eval(session, painted + "('throughput')").to_number<int>() > 50);
  // A task's history: click its card.
  chrome.eval(session, "document.querySelector('#board .col[data-state=\"merged\"] .card').click(), true");
  REQUIRE(chrome.wait_for(session, "document.getElementById('detailbody').textContent.includes('files changed: 2')"));
  CHECK(chrome.eval(session, "document.getElementById('detailbody').textContent.includes('verdict merged')").as_bool());

  // The screenshot, kept as the test's artifact.
  auto shot = chrome.call("Page.captureScreenshot", {{"format", "png"}}, session);
  auto png = base64_decode(shot.at("data").as_string());
  REQUIRE(png.size() > 1000);
  CHECK(png.substr(1, 3) == "PNG");
  std::filesystem::path artifacts = AGENTCORE_TEST_ARTIFACTS;
  std::filesystem::create_directories(artifacts);
  std::ofstream(artifacts / "dashboard.png", std::ios::binary) << png;
  MESSAGE("screenshot: " << (artifacts / "dashboard.png").string());
}
