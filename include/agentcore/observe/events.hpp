// agentcore/observe/events.hpp: the stable JSON form of bus events, and the
// hub that gives each event its context and hands it to sinks.
//
//   agentcore::observe::hub hub(bus, {.run = "nightly-42"});
//   hub.add(agentcore::observe::jsonl_sink::open({.path = "run.jsonl"}).value());
//   hub.add(std::make_shared<agentcore::observe::callback_sink>(
//       [](const agentcore::observe::event_view& e) { ... }));
//
// The form is versioned (`event_schema_version`) and documented, with every
// event type's payload, in docs/events.md:
//   {"v":1,"seq":7,"time":"2026-11-28T13:12:07.123456Z","type":"board.task_transition",
//    "run":"nightly-42","cycle":1,"role":"board","worker":"w1","task":"t7","data":{...}}
// Every key is always present: run/role/worker/task are "" and cycle is 0
// when the event has no such context.
#pragma once

#include <agentcore/core/event_bus.hpp>
#include <agentcore/core/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::observe {

/// The "v" of every event written; bumped when a field changes meaning or
/// disappears (adding a field, or a payload key, does not bump it).
inline constexpr int event_schema_version = 1;

/// An event with its context, borrowing from the bus's event: what sinks see.
struct event_view {
  std::uint64_t seq = 0;
  std::int64_t time_us = 0;  ///< microseconds since the Unix epoch, UTC
  std::string_view type;
  std::string_view run;
  std::uint64_t cycle = 0;
  std::string_view role, worker, task;
  const json::value* data = nullptr;
};

/// An event with its context, owning its parts: for reading logs back.
struct event_record {
  std::uint64_t seq = 0;
  std::int64_t time_us = 0;
  std::string type, run;
  std::uint64_t cycle = 0;
  std::string role, worker, task;
  json::value data;

  event_view view() const noexcept { return {seq, time_us, type, run, cycle, role, worker, task, &data}; }
  static event_record from(const event_view& v);
  friend bool operator==(const event_record&, const event_record&) = default;
};

/// Appends the event's JSON form (one line, no newline) to `out`.
void append_json(std::string& out, const event_view& e);
json::value to_json(const event_view& e);
/// Reads an event's JSON form; the error names the field that is missing or
/// of the wrong type, or a version this library does not read.
result<event_record> event_from_json(const json::value& v);
result<event_record> parse_event_line(std::string_view line);

/// "2026-11-28T13:12:07.123456Z" and back.
std::string format_time(std::int64_t time_us);
result<std::int64_t> parse_time(std::string_view text);

/// Receives events from a hub, one at a time (never concurrently), in the
/// bus's order. write() must not throw and must not block for long: it runs
/// on the thread that published.
class sink {
public:
  virtual ~sink() = default;
  virtual void write(const event_view& e) = 0;
  /// Makes what was written visible (to a file, a scrape); called by
  /// hub::flush() and when the hub is destroyed.
  virtual void flush() {}
};

/// Hands every event to a host's function: the simplest sink.
class callback_sink final : public sink {
public:
  explicit callback_sink(std::function<void(const event_view&)> f) : f_(std::move(f)) {}
  void write(const event_view& e) override { f_(e); }

private:
  std::function<void(const event_view&)> f_;
};

struct hub_options {
  std::string run;  ///< the run's name, on every event
};

/// Subscribes to every event on a bus, gives it its context and hands it to
/// each sink. Context comes from the events themselves: the role from the
/// type (or the payload's "role"), the task and worker from the payload, the
/// worker of an event that names only a task from the board's last claim of
/// it, and the cycle from the run's "started" and each judgement.
class hub {
public:
  explicit hub(event_bus& bus, hub_options options = {});
  /// Unsubscribes, then flushes every sink.
  ~hub();
  hub(const hub&) = delete;
  hub& operator=(const hub&) = delete;

  void add(std::shared_ptr<sink> s);
  void flush();
  std::uint64_t events_seen() const;

private:
  void on_event(const event& e);

  hub_options options_;
  mutable std::mutex mutex_;  // sinks_, and the context below
  std::vector<std::shared_ptr<sink>> sinks_;
  std::map<std::string, std::string, std::less<>> worker_of_task_;
  std::uint64_t cycle_ = 0, seen_ = 0;
  event_bus::subscription sub_;
};

}  // namespace agentcore::observe
