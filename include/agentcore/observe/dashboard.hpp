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
// Host: a loopback port is no protection from a web page. A page on
// evil.example whose name is made to resolve to 127.0.0.1 (DNS rebinding)
// is, to the browser, same-origin with it, and could read the board. The
// browser cannot put our name in Host, though, only the attacker's, so
// every request's Host must name this dashboard, or it gets 421 before
// anything else is looked at:
//   - the address served, as an IP literal: the address bound or the one the
//     connection reached ("127.0.0.1:PORT", "[::1]:PORT", an interface's
//     address when bound to 0.0.0.0), with the served port;
//   - "localhost:PORT" when the connection came over loopback;
//   - a name in `allowed_hosts` ("dash.example.com", any port, or
//     "dash.example.com:8443", that port only): for a reverse proxy that
//     passes its own Host, a DNS name, or a forwarded port.
// The name is what stops rebinding; the port is checked too so that only
// the origin actually served is taken as ours (a page on 127.0.0.1:3000 is
// not this dashboard). A Host with no port means 80. A request without Host
// (HTTP/1.1), or with two, is malformed: 400. An SSH or other port forward
// to another local port needs that name and port in `allowed_hosts`.
//
// Origin: a POST with an Origin header must come from one of the origins
// above (http or https; "Origin: null" is refused), and one marked
// "Sec-Fetch-Site: cross-site" or "same-site" is refused: 403, before the
// token is checked, so a page that learnt the token still cannot use it
// from elsewhere. Clients that are not browsers send neither header.
//
// Capacity: at most `max_streams` event streams at once; the next one is
// answered 503 with "Retry-After" at once and closed, so the connection costs
// nothing after. A stream whose client goes away frees its place as soon as
// the close arrives. Streams stay below `max_connections` (checked at start),
// so ordinary requests always find room; a connection over that cap is
// answered 503 as well, not reset. Each connection is a file descriptor:
// keep `max_connections` below the process's descriptor limit (ulimit -n).
//
// The server runs on a thread of its own; board and gate calls run there too.
#pragma once

#include <agentcore/observe/events.hpp>
#include <agentcore/observe/metrics.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace agentcore::observe {

struct dashboard_options {
  std::string address = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0: a free port (see dashboard::port())
  /// Required to bind anything but loopback, and for mutating endpoints.
  std::string token;
  std::size_t max_request_bytes = 64u << 10;
  std::chrono::seconds request_timeout{30};
  /// Connections at once, streams included; the next gets 503.
  std::size_t max_connections = 1024;
  /// Event streams (/api/events) at once; the next gets 503 with Retry-After.
  /// Must be below max_connections. 0: no event streams.
  std::size_t max_streams = 256;
  /// Further names the dashboard answers to in Host (and Origin), besides
  /// the address served and localhost: "NAME" (any port) or "NAME:PORT",
  /// "[V6]" or "[V6]:PORT". Case does not matter; no wildcards.
  std::vector<std::string> allowed_hosts;
  /// Events kept for SSE resumption and task histories.
  std::size_t kept_events = 20'000;
};

/// What the dashboard reads and does beyond the events: the tasks, and the
/// actions on tasks and merges. The runtime implements it over a board and a
/// gate (runtime::make_dashboard_controls); a host may implement it over
/// anything else. Called on the dashboard's thread. Tasks and verdicts are
/// JSON as the board and the gate write them. An error's code says how the
/// request fails: not_found 404, invalid_argument 400, unavailable 503 (say
/// what is missing), anything else 409 with the message.
class dashboard_controls {
public:
  virtual ~dashboard_controls() = default;
  /// Every task on the board.
  virtual result<json::array> tasks() = 0;
  /// One task; null when there is none.
  virtual result<json::value> task(std::string_view id) = 0;
  /// Puts a task back to be claimed again; the task afterwards.
  virtual result<json::value> requeue(std::string_view id, std::string_view reason) = 0;
  /// Ends a claimed task's attempt (its worker's claim goes); the task afterwards.
  virtual result<json::value> abandon(std::string_view id, std::string_view by) = 0;
  /// Changes waiting in the merge queue, when known.
  virtual std::optional<std::size_t> queued() = 0;
  /// Reverts a merge (COMMIT in hex) through the queue; the verdict.
  virtual result<json::value> revert(std::string_view commit, std::string_view reason) = 0;
};

/// What the endpoints read and act on; each may be null (its endpoints then
/// answer 503 saying what is missing).
struct dashboard_sources {
  std::shared_ptr<dashboard_controls> controls;
  std::shared_ptr<metrics_registry> metrics;
};

class dashboard final : public sink {
public:
  /// Binds and starts serving. Errors: a non-loopback address without a
  /// token, an address that does not parse, a port in use, an entry of
  /// allowed_hosts that is not a host name, max_streams not below
  /// max_connections.
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
