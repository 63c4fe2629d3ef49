#include "net/http.hpp"

#include "detail/complete.hpp"
#include "detail/spawn.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>

namespace agentcore::net {

namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
using asio::awaitable;
using asio::use_awaitable;

// --- url ---

std::string url::origin() const { return fmt::format("{}://{}:{}", scheme, host, port); }

result<url> parse_url(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return net::fail(error::bad_url, fmt::format("'{}' is not a usable URL: {}; write http(s)://host[:port][/path]",
                                                 text, why));
  };
  url u;
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return bad("no scheme");
  u.scheme = std::string(text.substr(0, sep));
  std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (u.scheme != "http" && u.scheme != "https") return bad("the scheme is neither http nor https");
  auto rest = text.substr(sep + 3);
  auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  u.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) return bad("credentials in URLs are not supported; use headers");
  if (authority.empty()) return bad("no host");
  std::string_view host = authority, port;
  if (authority.front() == '[') {  // [v6]:port
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("an unclosed '[' in the host");
    host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return bad("junk after the IPv6 address");
      port = authority.substr(close + 2);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad("no host");
  u.host = std::string(host);
  u.port = u.tls() ? 443 : 80;
  if (!port.empty()) {
    unsigned p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p == 0 || p > 65535) return bad("the port is not 1-65535");
    u.port = static_cast<std::uint16_t>(p);
  }
  return u;
}

std::string http_response::get(std::string_view name) const {
  for (const auto& h : headers)
    if (beast::iequals(h.name, name)) return h.value;
  return {};
}

// --- the client ---

namespace {

struct connection {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;
  beast::tcp_stream& tcp() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
};
using connection_ptr = std::unique_ptr<connection>;

struct proxy_settings {
  std::optional<url> http, https;
  std::vector<std::string> no_proxy;  // host suffixes; "*" for all

  static std::string env(const char* lower, const char* upper) {
    if (const char* v = std::getenv(lower); v && *v) return v;
    if (const char* v = std::getenv(upper); v && *v) return v;
    return {};
  }

  static proxy_settings from_env() {
    proxy_settings p;
    auto parse = [](std::string v) -> std::optional<url> {
      if (v.empty()) return std::nullopt;
      if (v.find("://") == std::string::npos) v = "http://" + v;
      auto u = parse_url(v);
      return u ? std::optional<url>(*u) : std::nullopt;
    };
    p.http = parse(env("http_proxy", "HTTP_PROXY"));
    p.https = parse(env("https_proxy", "HTTPS_PROXY"));
    std::string list = env("no_proxy", "NO_PROXY");
    std::size_t start = 0;
    while (start <= list.size()) {
      auto comma = list.find(',', start);
      auto item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (!item.empty()) p.no_proxy.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return p;
  }

  const url* for_url(const url& u) const {
    const auto& proxy = u.tls() ? https : http;
    if (!proxy) return nullptr;
    for (const auto& n : no_proxy) {
      if (n == "*") return nullptr;
      std::string suffix = n.front() == '.' ? n : "." + n;
      if (u.host == n || (u.host.size() > suffix.size() && u.host.ends_with(suffix))) return nullptr;
    }
    return &*proxy;
  }
};

// An exchange's outcome, and what to do with its connection.
struct sent {
  result<http_response> response = http_response{};
  bool keep = false;   ///< the connection may serve another request
  bool stale = false;  ///< a pooled connection the server had closed: try a fresh one
};

std::string ms(std::chrono::milliseconds d) { return fmt::format("{} ms", d.count()); }

bool is_disconnect(const boost::system::error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == beast::error::timeout || ec == asio::ssl::error::stream_truncated;
}

}  // namespace

struct http_client::impl : std::enable_shared_from_this<impl> {
  asio::any_io_executor ex;
  http_options options;
  asio::ssl::context tls{asio::ssl::context::tls_client};
  error_info tls_setup;
  proxy_settings proxies;
  mutable std::mutex mutex;
  std::map<std::string, std::vector<connection_ptr>> idle;
  std::atomic<std::size_t> opened{0};

  impl(asio::any_io_executor e, http_options o) : ex(std::move(e)), options(std::move(o)) {
    boost::system::error_code ec;
    tls.set_default_verify_paths(ec);
    if (!ec && !options.ca_file.empty()) tls.load_verify_file(options.ca_file, ec);
    if (ec)
      tls_setup = net::fail(error::tls_failed, fmt::format("TLS setup: cannot load trusted certificates{}: {}",
                                                           options.ca_file.empty() ? "" : " from '" + options.ca_file + "'",
                                                           ec.message()));
    if (!tls_setup && !options.cert_file.empty()) {
      tls.use_certificate_chain_file(options.cert_file, ec);
      if (!ec) tls.use_private_key_file(options.key_file.empty() ? options.cert_file : options.key_file,
                                        asio::ssl::context::pem, ec);
      if (ec)
        tls_setup = net::fail(error::tls_failed, fmt::format("TLS setup: cannot load the client certificate '{}' "
                                                             "or its key '{}': {}",
                                                             options.cert_file, options.key_file, ec.message()));
    }
    tls.set_verify_mode(options.verify_tls ? asio::ssl::verify_peer : asio::ssl::verify_none);
    if (options.proxy_from_env) proxies = proxy_settings::from_env();
  }

  connection_ptr take_idle(const std::string& key) {
    std::lock_guard lock(mutex);
    auto it = idle.find(key);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto c = std::move(it->second.back());
    it->second.pop_back();
    return c;
  }

  void give_back(const std::string& key, connection_ptr c) {
    std::lock_guard lock(mutex);
    auto& list = idle[key];
    if (list.size() < options.max_idle) list.push_back(std::move(c));
  }

  // A new connection to `to` (through a proxy if one applies), TLS set up.
  awaitable<result<connection_ptr>> connect(const url& to, const limits& lim, clock_type::time_point deadline,
                                            const std::string& what) {
    using namespace asio::experimental::awaitable_operators;
    const url* proxy = proxies.for_url(to);
    const url& first_hop = proxy ? *proxy : to;
    auto conn = std::make_unique<connection>();
    conn->plain.emplace(ex);
    auto connect_deadline = std::min(deadline, clock_type::now() + lim.connect);

    tcp::resolver resolver(ex);
    asio::steady_timer timer(ex, connect_deadline);
    boost::system::error_code ec, timer_ec;  // apart: the loser of the race completes with operation_aborted
    auto raced = co_await (resolver.async_resolve(first_hop.host, std::to_string(first_hop.port),
                                                  asio::redirect_error(use_awaitable, ec)) ||
                           timer.async_wait(asio::redirect_error(use_awaitable, timer_ec)));
    if (raced.index() == 1)
      co_return net::fail(error::timed_out, fmt::format("{}: resolving '{}' timed out after {}", what, first_hop.host,
                                                        ms(lim.connect)));
    if (ec)
      co_return net::fail(error::resolve_failed,
                          fmt::format("{}: cannot resolve '{}': {}", what, first_hop.host, ec.message()));
    auto endpoints = std::get<0>(raced);
    conn->plain->expires_at(connect_deadline);
    co_await conn->plain->async_connect(endpoints, asio::redirect_error(use_awaitable, ec));
    if (ec == beast::error::timeout)
      co_return net::fail(error::timed_out, fmt::format("{}: connecting to {}:{} timed out after {}", what,
                                                        first_hop.host, first_hop.port, ms(lim.connect)));
    if (ec)
      co_return net::fail(error::connect_failed, fmt::format("{}: cannot connect to {}:{}{}: {}", what, first_hop.host,
                                                             first_hop.port, proxy ? " (the proxy)" : "", ec.message()));
    opened.fetch_add(1, std::memory_order_relaxed);

    if (proxy && to.tls()) {  // a tunnel through the proxy
      bhttp::request<bhttp::empty_body> creq{bhttp::verb::connect, fmt::format("{}:{}", to.host, to.port), 11};
      creq.set(bhttp::field::host, fmt::format("{}:{}", to.host, to.port));
      co_await bhttp::async_write(*conn->plain, creq, asio::redirect_error(use_awaitable, ec));
      bhttp::response_parser<bhttp::empty_body> p;
      p.skip(true);  // a CONNECT answer has no body
      if (!ec) co_await bhttp::async_read(*conn->plain, conn->buffer, p, asio::redirect_error(use_awaitable, ec));
      if (ec)
        co_return net::fail(error::proxy_failed, fmt::format("{}: the proxy {}:{} broke the tunnel: {}", what,
                                                             proxy->host, proxy->port, ec.message()));
      if (p.get().result_int() != 200)
        co_return net::fail(error::proxy_failed, fmt::format("{}: the proxy {}:{} refused the tunnel with status {}",
                                                             what, proxy->host, proxy->port, p.get().result_int()));
    }
    if (to.tls()) {
      if (tls_setup) co_return error_info(tls_setup.code(), fmt::format("{}: {}", what, tls_setup.message()));
      auto tcp_stream = std::move(*conn->plain);
      conn->plain.reset();
      conn->secure.emplace(std::move(tcp_stream), tls);
      // SNI, and the certificate must name the host.
      if (!SSL_set_tlsext_host_name(conn->secure->native_handle(), to.host.c_str()))
        co_return net::fail(error::tls_failed, fmt::format("{}: cannot set the TLS server name '{}'", what, to.host));
      if (options.verify_tls) conn->secure->set_verify_callback(asio::ssl::host_name_verification(to.host));
      conn->tcp().expires_at(connect_deadline);
      co_await conn->secure->async_handshake(asio::ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
      if (ec == beast::error::timeout)
        co_return net::fail(error::timed_out,
                            fmt::format("{}: the TLS handshake timed out after {}", what, ms(lim.connect)));
      if (ec)
        co_return net::fail(error::tls_failed, fmt::format("{}: TLS handshake with {} failed: {}", what, to.host,
                                                           ec.message()));
    }
    co_return std::move(conn);
  }

  template <class Stream>
  awaitable<sent> send_on(Stream& stream, connection& conn, const url& to, const http_request& req, const limits& lim,
                          clock_type::time_point deadline, const body_sink& sink, const std::string& what,
                          bool reused) {
    sent out;
    boost::system::error_code ec;
    bhttp::request<bhttp::string_body> hr;
    hr.method(bhttp::string_to_verb(req.method));
    if (hr.method() == bhttp::verb::unknown)
      co_return sent{net::fail(error::protocol, fmt::format("{}: '{}' is not an HTTP method", what, req.method))};
    bool absolute = !to.tls() && proxies.for_url(to);  // plain HTTP through a proxy: absolute-form target
    hr.target(absolute ? to.origin() + req.target : req.target);
    hr.version(11);
    bool default_port = to.port == (to.tls() ? 443 : 80);
    hr.set(bhttp::field::host, default_port ? to.host : fmt::format("{}:{}", to.host, to.port));
    hr.set(bhttp::field::user_agent, "agentcore");
    for (const auto& h : req.headers) hr.insert(h.name, h.value);
    hr.body() = req.body;
    hr.keep_alive(true);
    hr.prepare_payload();

    conn.tcp().expires_at(std::min(deadline, clock_type::now() + lim.first_byte));
    co_await bhttp::async_write(stream, hr, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      if (reused && is_disconnect(ec) && ec != beast::error::timeout) co_return sent{http_response{}, false, true};
      co_return sent{failure(ec, what, "sending the request", lim)};
    }
    bhttp::response_parser<bhttp::buffer_body> p;
    p.header_limit(64 * 1024);
    p.body_limit(lim.max_body);
    co_await bhttp::async_read_header(stream, conn.buffer, p, asio::redirect_error(use_awaitable, ec));
    if (ec) {
      // The write went out: only a request that may be repeated is sent again.
      if (reused && req.resend_on_stale && is_disconnect(ec) && ec != beast::error::timeout && conn.buffer.size() == 0)
        co_return sent{http_response{}, false, true};
      // A TLS alert before any answer on a new connection: the server refused
      // the session (TLS 1.3 checks the client certificate after the client's
      // side of the handshake), so it never read the request.
      if (!reused && conn.secure && ec.category() == asio::error::get_ssl_category() && conn.buffer.size() == 0)
        co_return sent{net::fail(error::tls_failed,
                                 fmt::format("{}: the server refused the TLS session ({}); if it asks for a client "
                                             "certificate, give one (cert_file and key_file)",
                                             what, ec.message()))};
      co_return sent{failure(ec, what, "waiting for the answer", lim)};
    }
    http_response resp;
    resp.status = p.get().result_int();
    for (const auto& f : p.get()) resp.headers.push_back({std::string(f.name_string()), std::string(f.value())});
    bool to_sink = sink && resp.status / 100 == 2;
    conn.tcp().expires_at(deadline);
    std::array<char, 16 * 1024> buf;
    std::size_t total = 0;
    while (!p.is_done()) {
      p.get().body().data = buf.data();
      p.get().body().size = buf.size();
      // read_some: a streamed body must reach the sink as it arrives, not when
      // the buffer is full or the message complete.
      co_await bhttp::async_read_some(stream, conn.buffer, p, asio::redirect_error(use_awaitable, ec));
      if (ec == bhttp::error::need_buffer) ec = {};
      std::size_t n = buf.size() - p.get().body().size;
      total += n;
      if (n > 0) {
        if (to_sink) {
          if (auto e = sink(std::string_view(buf.data(), n))) co_return sent{e};
        } else {
          resp.body.append(buf.data(), n);
        }
      }
      if (ec) co_return sent{failure(ec, what, fmt::format("reading the body (after {} bytes)", total), lim)};
    }
    out.keep = p.keep_alive();
    out.response = std::move(resp);
    co_return out;
  }

  static error_info failure(const boost::system::error_code& ec, const std::string& what, std::string_view during,
                            const limits& lim) {
    if (ec == asio::error::operation_aborted)
      return fail(agentcore::error::canceled, fmt::format("{}: canceled while {}", what, during));
    if (ec == beast::error::timeout)
      return net::fail(error::timed_out, fmt::format("{}: timed out {} (limits: first byte {}, total {})", what, during,
                                                     ms(lim.first_byte), ms(lim.total)));
    if (ec == bhttp::error::body_limit)
      return net::fail(error::too_large,
                       fmt::format("{}: the answer is over the {} byte size cap", what, lim.max_body));
    if (ec == bhttp::error::header_limit)
      return net::fail(error::too_large, fmt::format("{}: the answer's headers are over 64 KiB", what));
    if (is_disconnect(ec) || ec == bhttp::error::partial_message)
      return net::fail(error::connection_lost,
                       fmt::format("{}: the connection closed while {} ({})", what, during, ec.message()));
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_version).category())
      return net::fail(error::protocol, fmt::format("{}: the server's answer is not valid HTTP while {}: {}", what,
                                                    during, ec.message()));
    return net::fail(error::connection_lost, fmt::format("{}: {} failed: {}", what, during, ec.message()));
  }

  awaitable<result<http_response>> exchange(url to, http_request req, limits lim, body_sink sink) {
    auto deadline = clock_type::now() + lim.total;
    std::string what = fmt::format("{} {}{}", req.method, to.origin(), req.target);
    std::string key = to.origin();
    for (int attempt = 0;; ++attempt) {
      auto conn = take_idle(key);
      bool reused = conn != nullptr;
      if (!conn) {
        auto c = co_await connect(to, lim, deadline, what);
        if (!c) co_return c.error();
        conn = std::move(*c);
      }
      // Not `cond ? co_await a : co_await b`: GCC 12 miscompiles co_await in a conditional.
      sent s;
      if (conn->secure) s = co_await send_on(*conn->secure, *conn, to, req, lim, deadline, sink, what, reused);
      else s = co_await send_on(*conn->plain, *conn, to, req, lim, deadline, sink, what, reused);
      if (s.stale && attempt == 0) continue;  // the server had closed the idle connection: once more, fresh
      if (s.response && s.keep) {
        conn->tcp().expires_never();
        give_back(key, std::move(conn));
      }
      co_return std::move(s.response);
    }
  }
};

http_client::http_client(asio::any_io_executor ex, http_options options)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(options))) {}

http_client::~http_client() = default;

void http_client::request(const url& to, http_request req, limits lim, body_sink on_body,
                          asio::any_completion_handler<response_signature> handler) {
  auto self = impl_;
  agentcore::detail::spawn_operation(
      self->ex, self->ex, self->exchange(to, std::move(req), lim, std::move(on_body)), std::move(handler),
      [self](const std::string& what) -> result<http_response> {  // self: the client lives until the completion
        return fail(agentcore::error::io_error, fmt::format("http: unexpected exception: {}", what));
      },
      agentcore::detail::forward_cancellation::yes);
}

std::size_t http_client::idle_connections() const {
  std::lock_guard lock(impl_->mutex);
  std::size_t n = 0;
  for (const auto& [k, v] : impl_->idle) n += v.size();
  return n;
}

const error_info& http_client::setup_error() const { return impl_->tls_setup; }
std::size_t http_client::connections_opened() const { return impl_->opened.load(); }

}  // namespace agentcore::net
