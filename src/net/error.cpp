#include <agentcore/net/error.hpp>

namespace agentcore::net {

namespace {
class category_impl : public boost::system::error_category {
public:
  const char* name() const noexcept override { return "agentcore.net"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::success: return "success";
      case error::resolve_failed: return "the host name did not resolve";
      case error::connect_failed: return "could not connect";
      case error::timed_out: return "timed out";
      case error::tls_failed: return "the TLS handshake failed";
      case error::proxy_failed: return "the proxy refused or broke the tunnel";
      case error::connection_lost: return "the connection was lost";
      case error::protocol: return "the answer is not valid HTTP";
      case error::too_large: return "the answer is over the size cap";
      case error::bad_url: return "not a usable URL";
    }
    return "unknown network error";
  }
};
}  // namespace

const boost::system::error_category& net_category() noexcept {
  static const category_impl c;
  return c;
}

}  // namespace agentcore::net
