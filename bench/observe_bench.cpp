// The observe area: events through the bus to the event log (JSONL) and the
// metrics sink, and, for reference in the same run, the bus alone (events
// turned into JSON and handed to a subscriber that does nothing).
#include "bench.hpp"
#include "harness.hpp"

#include <agentcore/agent/loop.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/observe/events.hpp>
#include <agentcore/observe/jsonl_sink.hpp>
#include <agentcore/observe/metrics.hpp>
#include <agentcore/roles/worker.hpp>

#include <fmt/format.h>

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
  return out;
}

}  // namespace agentcore::bench
