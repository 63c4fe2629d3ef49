// A scripted HTTP/1.1 server for tests, on Beast: plain or TLS (with a
// certificate made at start, its PEM written for the client to trust), and a
// CONNECT proxy mode. Each request gets the next scripted answer (or the
// default), including faults: slow first byte, dropped connection, truncated
// body, bytes that are not HTTP.
#pragma once

#include "support/temp_dir.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace agentcore::test {

struct recorded_request {
  std::string method, target, body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(std::string_view name) const;
};

struct scripted_response {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// Sent as chunked transfer encoding, one chunk each, `pause` apart
  /// (server-sent events arrive like this).
  std::vector<std::string> chunks;
  std::chrono::milliseconds first_byte_delay{0};
  std::chrono::milliseconds pause{0};
  enum class fault_kind {
    none,
    close_before_answer,  ///< read the request, close without a byte
    close_mid_body,       ///< send headers and half the body (or the first chunk), then close
    truncated_body,       ///< Content-Length larger than the body sent, then close
    not_http,             ///< answer with bytes that are not HTTP
  } fault = fault_kind::none;
};

class http_test_server {
public:
  enum class mode { plain, tls, connect_proxy };
  explicit http_test_server(mode m = mode::plain);
  ~http_test_server();
  http_test_server(const http_test_server&) = delete;
  http_test_server& operator=(const http_test_server&) = delete;

  std::uint16_t port() const { return port_; }
  /// http(s)://127.0.0.1:PORT
  std::string base_url() const;
  /// The PEM certificate a client must trust (tls mode).
  std::string ca_file() const { return (dir_ / "ca.pem").string(); }

  /// Answers for the next requests, in order; after them, `fallback`.
  void push(scripted_response r);
  void set_fallback(std::function<scripted_response(const recorded_request&)> f);
  std::vector<recorded_request> requests() const;
  std::size_t connections() const { return connections_.load(); }

private:
  struct state;
  void accept_loop();
  void serve(int fd);
  void tunnel(int fd);
  scripted_response next(const recorded_request& r);

  mode mode_;
  temp_dir dir_{"https"};
  std::uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> connections_{0};
  std::thread acceptor_;
  mutable std::mutex mutex_;
  std::vector<std::thread> workers_;
  std::vector<int> open_fds_;
  std::deque<scripted_response> script_;
  std::function<scripted_response(const recorded_request&)> fallback_;
  std::vector<recorded_request> requests_;
  std::shared_ptr<state> state_;
};

}  // namespace agentcore::test
