// The observe area: events through the bus to the event log (JSONL) and the
// metrics sink, and, for reference in the same run, the bus alone (events
// turned into JSON and handed to a subscriber that does nothing).
#include "bench.hpp"
#include "harness.hpp"

#include <agentcore/agent/loop.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/observe/dashboard.hpp>
#include <agentcore/observe/events.hpp>
#include <agentcore/observe/jsonl_sink.hpp>
#include <agentcore/observe/metrics.hpp>
#include <agentcore/roles/worker.hpp>

#include <fmt/format.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

namespace agentcore::bench {

namespace {

namespace fs = std::filesystem;

/// A run's mix: per task, its claim and its submit, two worker phases, two
/// model turns; a task id from a set of 1,000 and ten workers.
void publish_mix(event_bus& bus, std::size_t n) {
  std::vector<task_id> tasks;
  for (int i = 0; i < 1000; ++i) tasks.emplace_back(fmt::format("task-{:04}", i));
  std::vector<worker_id> workers;
  for (int i = 0; i < 10; ++i) workers.emplace_back(fmt::format("w{}", i));
  for (std::size_t i = 0; i < n;) {
    const auto& t = tasks[(i / 6) % tasks.size()];
    const auto& w = workers[(i / 6) % workers.size()];
    bus.publish(board::task_transition{t, board::task_state::ready, board::task_state::claimed, w,
                                       static_cast<store::revision>(i)});
    bus.publish(roles::worker_phase{w.str(), t.str(), "working", ""});
    bus.publish(agent::turn_event{"worker", t.str(), 1, {"read_file"}, model::usage{1200, 80, 0, 0}, "tool_use",
                                  "model-a", 0.002, 0.8});
    bus.publish(agent::turn_event{"worker", t.str(), 2, {"write_file"}, model::usage{1400, 120, 0, 0}, "tool_use",
                                  "model-a", 0.003, 1.1});
    bus.publish(roles::worker_phase{w.str(), t.str(), "submitting", ""});
    bus.publish(board::task_transition{t, board::task_state::claimed, board::task_state::submitted, w,
                                       static_cast<store::revision>(i + 1)});
    i += 6;
  }
}

struct sink_run {
  double events_per_s = 0;
  double bytes_per_event = 0;
};

sink_run through_sinks(const fs::path& dir, std::size_t n) {
  event_bus bus;
  auto path = dir / "events.jsonl";
  fs::remove(path);
  // Rotation is measured by its cost when it happens (an fsync per 64 MiB), not here.
  auto log = check(observe::jsonl_sink::open({.path = path, .max_bytes = 0}), "event log");
  auto reg = std::make_shared<observe::metrics_registry>();
  auto start = steady::now();
  {
    observe::hub h(bus, {.run = "bench"});
    h.add(log);
    h.add(std::make_shared<observe::metrics_sink>(reg));
    publish_mix(bus, n);
  }  // the hub flushes: every line is in the file
  double s = seconds_since(start);
  if (auto e = log->last_error()) throw failure(fmt::format("event log: {}", e.message()));
  if (log->lines_written() != bus.published())
    throw failure(fmt::format("event log: {} lines for {} events", log->lines_written(), bus.published()));
  if (reg->value("agentcore_claims_total") * 6 != static_cast<double>(bus.published()))
    throw failure("metrics: the claims counted do not match the events published");
  double bytes = static_cast<double>(fs::file_size(path));
  fs::remove(path);
  return {static_cast<double>(bus.published()) / s, bytes / static_cast<double>(bus.published())};
}

double bus_only(std::size_t n) {
  event_bus bus;
  std::uint64_t seen = 0;
  auto sub = bus.subscribe_all([&](const event& e) { seen += e.seq != 0; });
  auto start = steady::now();
  publish_mix(bus, n);
  double s = seconds_since(start);
  if (seen != bus.published()) throw failure("bus: a subscriber missed events");
  return static_cast<double>(seen) / s;
}

struct sse_figures {
  double clients = 0;
  double lag_p50_ms = 0, lag_p99_ms = 0;
};

/// `clients` event-stream clients on one dashboard while events are published
/// at `rate` per second for `duration`; every client must get every event.
/// Lag: from an event's publication (its time) to a client reading it.
sse_figures stream_clients(int clients, int rate, std::chrono::milliseconds duration) {
  event_bus bus;
  auto dash = check(observe::dashboard::start({.max_connections = 4096}, {}), "dashboard");
  observe::hub h(bus, {.run = "bench"});
  h.add(dash);
  std::vector<int> fds;
  for (int i = 0; i < clients; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(dash->port());
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw failure(fmt::format("sse: client {} cannot connect", i));
    std::string req = fmt::format("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", dash->port());
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size()))
      throw failure("sse: cannot send a request");
    fds.push_back(fd);
  }
  for (int i = 0; i < 500 && dash->stream_clients() < static_cast<std::size_t>(clients); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (dash->stream_clients() != static_cast<std::size_t>(clients))
    throw failure(fmt::format("sse: {} of {} clients connected", dash->stream_clients(), clients));

  const auto total = static_cast<std::size_t>(rate * duration.count() / 1000);
  std::vector<std::string> bufs(fds.size());
  std::vector<std::size_t> got(fds.size(), 0);
  std::vector<double> lags;
  lags.reserve(total * fds.size());
  std::atomic<bool> publishing{true};
  std::thread reader([&] {
    std::vector<pollfd> p(fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) p[i] = {fds[i], POLLIN, 0};
    auto deadline = steady::now() + duration + std::chrono::seconds(10);
    auto all = [&] { return std::all_of(got.begin(), got.end(), [&](std::size_t n) { return n >= total; }); };
    char tmp[65536];
    while (!all() && steady::now() < deadline) {
      if (::poll(p.data(), p.size(), 100) <= 0) continue;
      for (std::size_t i = 0; i < p.size(); ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP))) continue;
        auto n = ::recv(fds[i], tmp, sizeof tmp, 0);
        if (n <= 0) continue;
        auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
        auto& b = bufs[i];
        b.append(tmp, static_cast<std::size_t>(n));
        std::size_t at;
        while ((at = b.find("\n\n")) != std::string::npos) {
          std::string_view frame(b.data(), at);
          if (frame.starts_with("id: ")) {
            auto t = frame.find("\"time\":\"");
            if (t != std::string_view::npos) {
              auto us = observe::parse_time(frame.substr(t + 8, 27));
              if (us) lags.push_back(static_cast<double>(now_us - *us) / 1000.0);
            }
            ++got[i];
          }
          b.erase(0, at + 2);
        }
      }
    }
  });
  auto start = steady::now();
  for (std::size_t k = 0; k < total; ++k) {
    auto due = start + std::chrono::microseconds(static_cast<long long>(k * 1'000'000 / static_cast<std::size_t>(rate)));
    std::this_thread::sleep_until(due);
    bus.publish(roles::worker_phase{fmt::format("w{}", k % 10), fmt::format("task-{:04}", k % 1000), "working", ""});
  }
  publishing = false;
  reader.join();
  for (int fd : fds) ::close(fd);
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] < total) throw failure(fmt::format("sse: client {} got {} of {} events", i, got[i], total));
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double q) { return lags.empty() ? 0.0 : lags[std::min(lags.size() - 1, static_cast<std::size_t>(q * static_cast<double>(lags.size())))]; };
  return {static_cast<double>(clients), pct(0.50), pct(0.99)};
}

}  // namespace

std::vector<figure> run_observe(const run_options& o) {
  const std::size_t n = o.quick ? 60'000 : 1'200'000;
  std::vector<figure> out;
  auto phase = steady::now();
  auto progress = [&phase](std::string_view what, double v) {
    fmt::print(stderr, "  {:<34} {:>16.3f}   ({:.1f} s)\n", what, v, seconds_since(phase));
    phase = steady::now();
  };
  auto r = through_sinks(o.dir, n);
  progress("events_per_s", r.events_per_s);
  out.push_back({"events_per_s", r.events_per_s, 0, bound{true, 500'000}});
  progress("event_log_bytes_per_event", r.bytes_per_event);
  out.push_back({"event_log_bytes_per_event", r.bytes_per_event, 0, std::nullopt});
  double b = bus_only(n);
  progress("bus_only_events_per_s", b);
  out.push_back({"bus_only_events_per_s", b, 0, std::nullopt});
  // A run's events to 200 dashboards at once: 500 events per second (a busy
  // run's rate: a hundred workers each taking a turn every few seconds, with
  // their phases, tool calls and the board's transitions).
  auto sse = stream_clients(o.quick ? 20 : 200, 500, o.quick ? std::chrono::milliseconds(1000) : std::chrono::milliseconds(5000));
  progress("sse_clients", sse.clients);
  out.push_back({"sse_clients", sse.clients, 0, bound{true, 200}});
  progress("event_lag_ms_p50", sse.lag_p50_ms);
  out.push_back({"event_lag_ms_p50", sse.lag_p50_ms, 2, std::nullopt});
  progress("event_lag_ms_p99", sse.lag_p99_ms);
  out.push_back({"event_lag_ms_p99", sse.lag_p99_ms, 2, bound{false, 100}});
  return out;
}

}  // namespace agentcore::bench
