// parse_etcd_url: an etcd:// or etcds:// store URL as etcd_options.
#include <agentcore/store/etcd_store.hpp>

#include "net/http.hpp"

#include <fmt/format.h>

#include <charconv>
#include <fstream>

namespace agentcore::store {

result<etcd_options> parse_etcd_url(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(error::invalid_argument,
                fmt::format("'{}' is not an etcd store URL: {}; write etcd://HOST:PORT[,HOST:PORT...]/PREFIX "
                            "(etcds:// for TLS)",
                            text, why));
  };
  etcd_options o;
  std::string scheme;
  if (text.starts_with("etcd://")) scheme = "http";
  else if (text.starts_with("etcds://")) scheme = "https";
  else return bad("the scheme is neither etcd:// nor etcds://");
  auto rest = text.substr(text.find("://") + 3);
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto slash = rest.find('/');
  auto hosts = rest.substr(0, slash);
  if (hosts.empty()) return bad("no host");
  while (!hosts.empty()) {
    auto comma = hosts.find(',');
    auto h = hosts.substr(0, comma);
    if (h.empty()) return bad("an empty host in the list");
    std::string ep = fmt::format("{}://{}", scheme, h);
    if (h.find(':') == std::string_view::npos || (h.front() == '[' && h.back() == ']')) ep += ":2379";
    auto u = net::parse_url(ep);
    if (!u) return bad(u.error().message());
    o.endpoints.push_back(std::move(ep));
    hosts = comma == std::string_view::npos ? std::string_view() : hosts.substr(comma + 1);
  }
  if (slash != std::string_view::npos) {
    o.prefix = std::string(rest.substr(slash + 1));
    if (!o.prefix.empty() && o.prefix.back() != '/') o.prefix += '/';
  }
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    auto eq = item.find('=');
    auto name = item.substr(0, eq);
    auto value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (value.empty()) return bad(fmt::format("option '{}' has no value (write {}=VALUE)", name, name));
    auto number = [&](std::int64_t& out) -> bool {
      auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), out);
      return ec == std::errc() && p == value.data() + value.size() && out >= 0;
    };
    if (name == "ca_file") o.ca_file = value;
    else if (name == "cert_file") o.cert_file = value;
    else if (name == "key_file") o.key_file = value;
    else if (name == "user") o.username = value;
    else if (name == "verify_tls") {
      if (value != "true" && value != "false") return bad("verify_tls is true or false");
      o.verify_tls = value == "true";
    } else if (name == "password_file") {
      std::ifstream in{std::string(value), std::ios::binary};
      if (!in) return bad(fmt::format("password_file '{}' cannot be read", value));
      std::getline(in, o.password);
      if (!o.password.empty() && o.password.back() == '\r') o.password.pop_back();
    } else if (name == "history_limit") {
      if (!number(o.history_limit)) return bad("history_limit is a count of revisions, like history_limit=100000");
    } else if (name == "request_timeout_ms") {
      std::int64_t ms = 0;
      if (!number(ms) || ms == 0) return bad("request_timeout_ms is a positive number of milliseconds");
      o.request_timeout = std::chrono::milliseconds(ms);
    } else {
      return bad(fmt::format("unknown option '{}' (known: ca_file, cert_file, key_file, verify_tls, user, "
                             "password_file, history_limit, request_timeout_ms)",
                             name));
    }
  }
  if (!o.username.empty() && o.password.empty())
    return bad("user needs password_file (a file holding the password)");
  return o;
}

}  // namespace agentcore::store
