#include "support/http_test_server.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace agentcore::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

std::string recorded_request::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (beast::iequals(k, name)) return v;
  return {};
}

struct http_test_server::state {
  asio::ssl::context tls{asio::ssl::context::tls_server};
};

namespace {

// A self-signed certificate for localhost and 127.0.0.1, made now.
std::pair<std::string, std::string> make_certificate() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (!key) throw std::runtime_error("test server: cannot make a key");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("agentcore test"), -1, -1,
                             0);
  X509_set_issuer_name(x, name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair{NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"},
                            std::pair{NID_basic_constraints, "critical,CA:TRUE"}}) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(x, key, EVP_sha256());
  auto pem = [](auto write) {
    BIO* b = BIO_new(BIO_s_mem());
    write(b);
    char* data = nullptr;
    long n = BIO_get_mem_data(b, &data);
    std::string s(data, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  };
  std::string cert = pem([&](BIO* b) { PEM_write_bio_X509(b, x); });
  std::string pkey = pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(x);
  EVP_PKEY_free(key);
  return {cert, pkey};
}

std::string reason(unsigned status) {
  return std::string(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
}

template <class Stream>
void write_str(Stream& s, const std::string& text, boost::system::error_code& ec) {
  asio::write(s, asio::buffer(text), ec);
}

template <class Stream>
void answer(Stream& s, const scripted_response& r, boost::system::error_code& ec) {
  using fault = scripted_response::fault_kind;
  if (r.first_byte_delay.count() > 0) std::this_thread::sleep_for(r.first_byte_delay);
  if (r.fault == fault::close_before_answer) {
    ec = asio::error::eof;
    return;
  }
  if (r.fault == fault::not_http) {
    write_str(s, "this is not HTTP at all\r\n\r\n", ec);
    ec = asio::error::eof;
    return;
  }
  std::string head = fmt::format("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
  for (const auto& [k, v] : r.headers) head += fmt::format("{}: {}\r\n", k, v);
  if (!r.chunks.empty()) {
    head += "Transfer-Encoding: chunked\r\n\r\n";
    write_str(s, head, ec);
    for (std::size_t i = 0; i < r.chunks.size() && !ec; ++i) {
      if (i > 0 && r.pause.count() > 0) std::this_thread::sleep_for(r.pause);
      write_str(s, fmt::format("{:x}\r\n{}\r\n", r.chunks[i].size(), r.chunks[i]), ec);
      if (r.fault == fault::close_mid_body) {
        ec = asio::error::eof;
        return;
      }
    }
    if (!ec) write_str(s, "0\r\n\r\n", ec);
    return;
  }
  std::size_t declared = r.body.size() + (r.fault == fault::truncated_body ? 100 : 0);
  head += fmt::format("Content-Length: {}\r\n\r\n", declared);
  if (r.fault == fault::close_mid_body) {
    write_str(s, head + r.body.substr(0, r.body.size() / 2), ec);
    ec = asio::error::eof;
    return;
  }
  write_str(s, head + r.body, ec);
  if (r.fault == fault::truncated_body) ec = asio::error::eof;
}

}  // namespace

http_test_server::http_test_server(mode m) : mode_(m), state_(std::make_shared<state>()) {
  if (mode_ == mode::tls) {
    auto [cert, key] = make_certificate();
    std::ofstream(ca_file()) << cert;
    state_->tls.use_certificate_chain(asio::buffer(cert));
    state_->tls.use_private_key(asio::buffer(key), asio::ssl::context::pem);
  }
  fallback_ = [](const recorded_request&) { return scripted_response{404, {}, "{\"error\":{\"message\":\"no script\"}}"}; };
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 512) != 0)
    throw std::runtime_error("test server: cannot listen on 127.0.0.1");
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

http_test_server::~http_test_server() {
  stopping_ = true;
  acceptor_.join();
  ::close(listen_fd_);
  std::vector<std::thread> workers;
  {
    std::lock_guard lock(mutex_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
}

std::string http_test_server::base_url() const {
  return fmt::format("{}://127.0.0.1:{}", mode_ == mode::tls ? "https" : "http", port_);
}

void http_test_server::push(scripted_response r) {
  std::lock_guard lock(mutex_);
  script_.push_back(std::move(r));
}

void http_test_server::set_fallback(std::function<scripted_response(const recorded_request&)> f) {
  std::lock_guard lock(mutex_);
  fallback_ = std::move(f);
}

std::vector<recorded_request> http_test_server::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

scripted_response http_test_server::next(const recorded_request& r) {
  std::lock_guard lock(mutex_);
  requests_.push_back(r);
  if (!script_.empty()) {
    auto s = std::move(script_.front());
    script_.pop_front();
    return s;
  }
  return fallback_(r);
}

void http_test_server::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++connections_;
    std::lock_guard lock(mutex_);
    open_fds_.push_back(fd);
    workers_.emplace_back([this, fd] {
      if (mode_ == mode::connect_proxy) tunnel(fd);
      else serve(fd);
      std::lock_guard lock(mutex_);
      std::erase(open_fds_, fd);
      ::close(fd);
    });
  }
}

void http_test_server::serve(int fd) {
  asio::io_context ioc;
  tcp::socket sock(ioc);
  boost::system::error_code ec;
  sock.assign(tcp::v4(), ::dup(fd), ec);
  if (ec) return;
  auto loop = [&](auto& stream) {
    beast::flat_buffer buf;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> p;
      p.body_limit(64u << 20);
      bhttp::read(stream, buf, p, ec);
      if (ec) return;
      const auto& req = p.get();
      recorded_request rec{std::string(req.method_string()), std::string(req.target()), req.body(), {}};
      for (const auto& f : req) rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      auto r = next(rec);
      answer(stream, r, ec);
      if (ec || !req.keep_alive()) return;
    }
  };
  if (mode_ == mode::tls) {
    asio::ssl::stream<tcp::socket&> s(sock, state_->tls);
    s.handshake(asio::ssl::stream_base::server, ec);
    if (!ec) loop(s);
  } else {
    loop(sock);
  }
}

// CONNECT host:port -> a byte pipe to 127.0.0.1:port.
void http_test_server::tunnel(int fd) {
  asio::io_context ioc;
  tcp::socket sock(ioc);
  boost::system::error_code ec;
  sock.assign(tcp::v4(), ::dup(fd), ec);
  beast::flat_buffer buf;
  bhttp::request<bhttp::empty_body> req;
  bhttp::read(sock, buf, req, ec);
  if (ec) return;
  recorded_request rec{std::string(req.method_string()), std::string(req.target()), {}, {}};
  for (const auto& f : req) rec.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(rec);
  }
  auto colon = rec.target.rfind(':');
  if (req.method() != bhttp::verb::connect || colon == std::string::npos) {
    write_str(sock, "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n", ec);
    return;
  }
  int up = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(rec.target.substr(colon + 1))));
  if (::connect(up, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(up);
    write_str(sock, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n", ec);
    return;
  }
  write_str(sock, "HTTP/1.1 200 Connection established\r\n\r\n", ec);
  int down = sock.native_handle();
  char data[16384];
  while (!stopping_ && !ec) {
    pollfd p[2] = {{down, POLLIN, 0}, {up, POLLIN, 0}};
    if (::poll(p, 2, 50) <= 0) continue;
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(p[i].fd, data, sizeof data);
      if (n <= 0) {
        done = true;
        break;
      }
      int to = i == 0 ? up : down;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(to, data + off, static_cast<std::size_t>(n - off));
        if (w <= 0) {
          done = true;
          break;
        }
        off += w;
      }
    }
    if (done) break;
  }
  ::close(up);
}

}  // namespace agentcore::test
