// agentcore/net/error.hpp: what can go wrong talking to a server over HTTP,
// in its own boost::system category ("agentcore.net"). Every such error's
// message names the endpoint and the cause:
//
//   POST https://api.example.com/v1/chat/completions: connect: timed out after 10000 ms
#pragma once

#include <agentcore/core/error.hpp>

namespace agentcore::net {

enum class error {
  success = 0,
  resolve_failed = 1,  ///< the host name did not resolve
  connect_failed,      ///< no TCP connection (refused, unreachable)
  timed_out,           ///< connect, first byte or the whole exchange took too long
  tls_failed,          ///< the TLS handshake failed (certificate not trusted, wrong host)
  proxy_failed,        ///< the proxy refused or broke the tunnel
  connection_lost,     ///< the connection closed or reset mid-exchange
  protocol,            ///< the server's bytes are not HTTP
  too_large,           ///< the response is over the size cap
  bad_url,             ///< the URL is not http(s)://host[:port][/path]
};

const boost::system::error_category& net_category() noexcept;
inline error_code make_error_code(error e) noexcept { return {static_cast<int>(e), net_category()}; }
inline error_info fail(error e, std::string message) { return {make_error_code(e), std::move(message)}; }

}  // namespace agentcore::net

template <>
struct boost::system::is_error_code_enum<agentcore::net::error> : std::true_type {};
