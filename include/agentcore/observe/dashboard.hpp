// agentcore/observe/dashboard.hpp: the live dashboard, an HTTP server (Beast,
// compiled in the library; no Beast type here) that is also a sink.
//
//   auto d = agentcore::observe::dashboard::start({.address = "127.0.0.1", .port = 8080},
//                                                 {.board = &board, .gate = &gate, .metrics = registry});
//   hub.add(*d);                   // events feed the page, the SSE stream and the APIs
//   // http://127.0.0.1:8080/
//
// Endpoints:
//   GET  /                         the page: one self-contained HTML document (no external assets)
//   GET  /api/tasks                {"seq": N, "tasks": [task...]}
//   GET  /api/tasks/ID             {"seq": N, "task": task, "events": [event...]} (its recent events)
//   GET  /api/workers              {"seq": N, "workers": [{"worker","task","phase","since"}]}
//   GET  /api/queue                {"seq": N, "depth": n, "queued": [{"change","since"}]}
//   GET  /api/runs                 {"seq": N, "runs": [{"run","started","finished","cycles":[judgement...]}]}
//   GET  /api/events               server-sent events: "id: SEQ", "event: TYPE", "data: EVENT-JSON";
//                                  resumes after the Last-Event-ID header (or ?since=SEQ); a client
//                                  that asks for events no longer kept gets "event: reset" first
//   GET  /metrics                  Prometheus text exposition
//   POST /api/tasks/ID/requeue     back to ready (rejected, failed, abandoned, submitted)
//   POST /api/tasks/ID/abandon     take a claimed task from its worker
//   POST /api/merges/COMMIT/revert queue the revert of a merged commit
//
// Access: bound to loopback by default. Any other address needs `token`, and
// then every request must carry it ("Authorization: Bearer TOKEN", or
// "?token=TOKEN" for the page and the event stream, which browsers open
// without headers). Mutating endpoints need the token always: without a
// configured token they are refused. Requests over the size cap get 413,
// malformed ones 400, slow ones are closed after `request_timeout`; nothing
// is served from the file system.
//
// The server runs on a thread of its own; board and gate calls run there too.
#pragma once

#include <agentcore/observe/events.hpp>
#include <agentcore/observe/metrics.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace agentcore::board {
class task_board;
}
namespace agentcore::gate {
class merge_gate;
}

namespace agentcore::observe {

struct dashboard_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: a free port (see dashboard::port())
  /// Required to bind anything but loopback, and for mutating endpoints.
  std::string token;
  std::size_t max_request_bytes = 64u << 10;
  std::chrono::seconds request_timeout{30};
  std::size_t max_connections = 1024;
  /// Events kept for SSE resumption and task histories.
  std::size_t kept_events = 20'000;
};

/// What the endpoints read and act on; each may be null (its endpoints then
/// answer 503 saying what is missing).
struct dashboard_sources {
  board::task_board* board = nullptr;
  gate::merge_gate* gate = nullptr;
  std::shared_ptr<metrics_registry> metrics;
};

class dashboard final : public sink {
public:
  /// Binds and starts serving. Errors: a non-loopback address without a
  /// token, an address that does not parse, a port in use.
  static result<std::shared_ptr<dashboard>> start(dashboard_options options, dashboard_sources sources);
  /// Stops serving and closes every connection.
  ~dashboard() override;

  void write(const event_view& e) override;

  std::uint16_t port() const;
  /// http://ADDRESS:PORT/
  std::string url() const;
  /// Event-stream clients connected now.
  std::size_t stream_clients() const;
  void stop();

  struct impl;

private:
  explicit dashboard(std::shared_ptr<impl> i);
  std::shared_ptr<impl> impl_;
};

/// "HOST:PORT", "[V6]:PORT" -> address and port; the error says what is wrong.
result<std::pair<std::string, std::uint16_t>> parse_listen_address(std::string_view text);

/// The page the dashboard serves at "/", for inspection and tests.
std::string_view dashboard_page();

}  // namespace agentcore::observe
