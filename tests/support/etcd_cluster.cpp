#include "support/etcd_cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace agentcore::test {

namespace {

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("etcd_cluster: cannot find a free loopback port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string field(const std::string& json, const std::string& name) {
  auto k = json.find("\"" + name + "\":\"");
  if (k == std::string::npos) return {};
  k += name.size() + 4;
  return json.substr(k, json.find('"', k) - k);
}

}  // namespace

std::string find_etcd() {
  if (const char* e = std::getenv("AGENTCORE_ETCD"); e && *e) return e;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(ss, d, ':');) {
    auto p = std::filesystem::path(d) / "etcd";
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return {};
}

std::string etcd_post(std::uint16_t port, const std::string& path, const std::string& body,
                      std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    std::string req = "POST " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  auto at = out.find("\r\n\r\n");
  return at == std::string::npos ? std::string() : out.substr(at + 4);
}

etcd_tls make_test_certificates(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  auto run = [&](const std::string& cmd) {
    std::string full = "cd '" + dir.string() + "' && " + cmd + " >>openssl.log 2>&1";
    if (std::system(full.c_str()) != 0) {
      std::ifstream in(dir / "openssl.log");
      std::stringstream log;
      log << in.rdbuf();
      throw std::runtime_error("make_test_certificates: failed (is the openssl command installed? "
                               "scripts/install-deps.sh): " + cmd + "\n" + log.str());
    }
  };
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  run("openssl req -x509 " + ec + " -keyout ca.key -out ca.crt -days 2 -subj /CN=agentcore-test-ca");
  auto issue = [&](const std::string& name, const std::string& cn, const std::string& ext) {
    {
      std::ofstream e(dir / (name + ".ext"));
      e << ext << "\n";
    }
    run("openssl req " + ec + " -keyout " + name + ".key -out " + name + ".csr -subj /CN=" + cn);
    run("openssl x509 -req -in " + name + ".csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out " + name +
        ".crt -extfile " + name + ".ext");
  };
  // etcd's own gateway dials the member with the server certificate, so it is a client certificate too.
  issue("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth");
  issue("client", "agentcore-test-client", "extendedKeyUsage=clientAuth");
  return {dir / "server.crt", dir / "server.key", dir / "ca.crt"};
}

etcd_cluster::etcd_cluster(int members, std::filesystem::path dir, std::optional<etcd_tls> tls)
    : dir_(std::move(dir)), tls_(std::move(tls)) {
  etcd_ = find_etcd();
  if (etcd_.empty())
    throw std::runtime_error("etcd_cluster: no etcd binary (set AGENTCORE_ETCD or install Debian's etcd-server: "
                             "scripts/install-deps.sh)");
  std::random_device rd;
  token_ = "agentcore-test-" + std::to_string(rd());
  if (dir_.empty()) {
    dir_ = std::filesystem::temp_directory_path() / ("agentcore-etcd-" + std::to_string(::getpid()) + "-" + token_);
    own_dir_ = true;
  }
  std::filesystem::create_directories(dir_);
  for (int i = 0; i < members; ++i) {
    member m;
    m.name = "m" + std::to_string(i);
    m.client_port = free_port();
    m.peer_port = free_port();
    if (tls_) m.tls_port = free_port();
    m.data = dir_ / (m.name + ".etcd");
    m.log = dir_ / (m.name + ".log");
    initial_cluster_ += (i ? "," : "") + m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
    members_.push_back(std::move(m));
  }
  for (int i = 0; i < members; ++i) start(i);
  if (!wait_for_leader()) {
    std::string tail = log_tail(0);
    for (int i = 0; i < size(); ++i) kill(i);
    throw std::runtime_error("etcd_cluster: no leader within 20 s; m0's log ends:\n" + tail);
  }
}

etcd_cluster::~etcd_cluster() {
  for (int i = 0; i < size(); ++i) kill(i);
  std::error_code ec;
  if (own_dir_) std::filesystem::remove_all(dir_, ec);
}

std::vector<std::string> etcd_cluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string etcd_cluster::endpoint(int i) const {
  return "http://127.0.0.1:" + std::to_string(members_[i].client_port);
}

std::string etcd_cluster::tls_endpoint(int i) const {
  if (!tls_) throw std::logic_error("etcd_cluster::tls_endpoint: the cluster was started without TLS");
  return "https://127.0.0.1:" + std::to_string(members_[i].tls_port);
}

void etcd_cluster::kill(int i) {
  member& m = members_[i];
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  int status = 0;
  ::waitpid(m.pid, &status, 0);
  m.pid = -1;
}

void etcd_cluster::start(int i) {
  member& m = members_[i];
  if (m.pid > 0) return;
  std::string client = "http://127.0.0.1:" + std::to_string(m.client_port);
  std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  std::vector<std::string> args = {etcd_,
                                   "--name", m.name,
                                   "--data-dir", m.data.string(),
                                   "--listen-client-urls", tls_ ? client + "," + tls_endpoint(i) : client,
                                   "--advertise-client-urls", tls_ ? client + "," + tls_endpoint(i) : client,
                                   "--listen-peer-urls", peer,
                                   "--initial-advertise-peer-urls", peer,
                                   "--initial-cluster", initial_cluster_,
                                   "--initial-cluster-token", token_,
                                   "--initial-cluster-state", m.started_once ? "existing" : "new"};
  if (tls_) {
    for (std::string a : {"--cert-file=" + tls_->cert.string(), "--key-file=" + tls_->key.string(),
                          "--trusted-ca-file=" + tls_->ca.string(), std::string("--client-cert-auth")})
      args.push_back(std::move(a));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, etcd_.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("etcd_cluster: cannot start " + etcd_ + ": " + std::strerror(rc));
  m.pid = pid;
  m.started_once = true;
}

int etcd_cluster::leader() const {
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid <= 0) continue;
    auto s = etcd_post(members_[i].client_port, "/v3/maintenance/status", "{}", std::chrono::milliseconds(500));
    auto lead = field(s, "leader");
    if (lead.empty() || lead == "0") continue;
    for (int j = 0; j < size(); ++j) {
      if (members_[j].pid <= 0) continue;
      auto sj = etcd_post(members_[j].client_port, "/v3/maintenance/status", "{}", std::chrono::milliseconds(500));
      if (field(sj, "member_id") == lead) return j;
    }
  }
  return -1;
}

bool etcd_cluster::wait_for_leader(std::chrono::milliseconds timeout) const {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (leader() >= 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string etcd_cluster::log_tail(int i) const {
  std::ifstream in(members_[i].log);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(std::move(l));
  std::string out;
  for (std::size_t k = lines.size() > 20 ? lines.size() - 20 : 0; k < lines.size(); ++k) out += lines[k] + "\n";
  return out;
}

}  // namespace agentcore::test
