// Real etcd for tests and benchmarks: one or more members on free loopback
// ports, each with a fresh data directory, started and stopped by the test.
// No doctest and no agentcore types here, so the benchmark links it too.
//
//   agentcore::test::etcd_cluster c(3);      // three members, healthy
//   auto eps = c.endpoints();                // {"http://127.0.0.1:P0", ...}
//   c.kill(c.leader());                      // SIGKILL the leader
//   c.start(i);                              // and bring it back
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace agentcore::test {

/// The etcd binary: $AGENTCORE_ETCD, else `etcd` on PATH; empty when absent.
std::string find_etcd();

/// One POST to 127.0.0.1:port with a JSON body; returns the response body
/// ("" when the member does not answer within `timeout`).
std::string etcd_post(std::uint16_t port, const std::string& path, const std::string& body,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

/// Certificates for a cluster that also serves clients over TLS.
struct etcd_tls {
  std::filesystem::path cert, key;  ///< the members' certificate (SAN IP:127.0.0.1) and key
  std::filesystem::path ca;         ///< the CA clients must present certificates from
};

/// Makes a CA, a server certificate for 127.0.0.1 and a client certificate
/// (client.crt / client.key) in `dir` with the openssl command; throws when
/// openssl is missing or fails.
etcd_tls make_test_certificates(const std::filesystem::path& dir);

class etcd_cluster {
public:
  /// Starts `members` members under `dir` (a fresh temporary directory when
  /// empty) and waits until the cluster has a leader. Throws
  /// std::runtime_error with the tail of a member's log when it cannot.
  /// With `tls`, each member also serves clients on an https port that asks
  /// for a client certificate from `tls.ca` (the http port stays, for the
  /// cluster's own health checks).
  explicit etcd_cluster(int members = 1, std::filesystem::path dir = {}, std::optional<etcd_tls> tls = {});
  ~etcd_cluster();
  etcd_cluster(const etcd_cluster&) = delete;
  etcd_cluster& operator=(const etcd_cluster&) = delete;

  int size() const { return static_cast<int>(members_.size()); }
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  /// https://127.0.0.1:PORT of member i (only with TLS).
  std::string tls_endpoint(int i) const;
  std::uint16_t client_port(int i) const { return members_[i].client_port; }

  /// SIGKILL member i (no clean shutdown); start(i) brings it back on its data.
  void kill(int i);
  void start(int i);
  bool running(int i) const { return members_[i].pid > 0; }
  /// The index of the member that is leader now, or -1 (asks every running member).
  int leader() const;
  /// Waits until a running member reports a leader; false on timeout.
  bool wait_for_leader(std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;
  /// The last lines of member i's log, for failure messages.
  std::string log_tail(int i) const;

private:
  struct member {
    std::string name;
    std::uint16_t client_port = 0, peer_port = 0, tls_port = 0;
    pid_t pid = -1;
    std::filesystem::path data, log;
    bool started_once = false;
  };
  std::vector<member> members_;
  std::filesystem::path dir_;
  bool own_dir_ = false;
  std::optional<etcd_tls> tls_;
  std::string etcd_, initial_cluster_, token_;
};

}  // namespace agentcore::test
