// An HTTP/1.1 client over Beast for agentcore's own backends (model APIs,
// etcd, ...), with no Beast or OpenSSL type in this header: TLS with
// certificate and host-name verification and SNI, keep-alive connections
// pooled per endpoint, HTTP(S)_PROXY through CONNECT, connect / first-byte /
// total time limits, a size cap, and bodies streamed to a callback.
#pragma once

#include <agentcore/net/error.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::net {

namespace asio = boost::asio;

struct url {
  std::string scheme;  ///< "http" or "https"
  std::string host;
  std::uint16_t port = 0;
  std::string path;  ///< starts with '/'; "/" when the URL has none
  bool tls() const noexcept { return scheme == "https"; }
  /// scheme://host:port
  std::string origin() const;
};
result<url> parse_url(std::string_view text);

struct header {
  std::string name, value;
};

struct http_request {
  std::string method = "POST";
  std::string target;  ///< origin-form: "/v1/chat/completions"
  std::vector<header> headers;
  std::string body;
  /// When a pooled keep-alive connection turns out to be closed before any
  /// answer arrives, send once more on a fresh one. Turn off for requests
  /// that must not be repeated blindly (the server may have acted on them).
  bool resend_on_stale = true;
};

struct http_response {
  unsigned status = 0;
  std::vector<header> headers;
  std::string body;  ///< empty when the body went to a body_sink (unless the status is not 2xx)
  /// The first header of that name (case-insensitive), or "".
  std::string get(std::string_view name) const;
};

struct limits {
  std::chrono::milliseconds connect{10'000};
  std::chrono::milliseconds first_byte{120'000};
  std::chrono::milliseconds total{600'000};
  std::size_t max_body = 32u << 20;
};

/// Receives a 2xx response's body as it arrives; an error aborts the exchange.
using body_sink = std::function<error_info(std::string_view)>;
using response_signature = void(result<http_response>);

struct http_options {
  bool verify_tls = true;       ///< certificate chain and host name
  std::string ca_file;          ///< extra trusted certificates (PEM), beside the system's
  std::string cert_file, key_file;  ///< a client certificate and its key (PEM), for servers that ask
  std::size_t max_idle = 16;    ///< idle keep-alive connections kept per endpoint
  bool proxy_from_env = true;   ///< honour HTTPS_PROXY / HTTP_PROXY / NO_PROXY
};

class http_client {
public:
  explicit http_client(asio::any_io_executor ex, http_options options = {});
  ~http_client();
  http_client(const http_client&) = delete;
  http_client& operator=(const http_client&) = delete;

  /// One exchange. With `on_body`, a 2xx body goes there piece by piece;
  /// otherwise it is collected in the response. Completes on the handler's
  /// executor; honours the handler's cancellation slot (error::canceled).
  void request(const url& to, http_request req, limits lim, body_sink on_body,
               asio::any_completion_handler<response_signature> handler);

  /// Why TLS cannot be set up (a CA or client certificate file that does not
  /// load), or no error; https requests fail with it.
  const error_info& setup_error() const;
  /// Idle pooled connections, for tests and benchmarks.
  std::size_t idle_connections() const;
  /// Connections opened so far (not reused ones).
  std::size_t connections_opened() const;

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

}  // namespace agentcore::net
