// The etcd area: the etcd store backend against a local single-member etcd
// the benchmark starts itself (data directory under --dir): compare-and-set
// commits with 1, 16 and 64 in flight, board claims by 64 claimers, and
// etcd's own `etcdctl check perf --load=s` figure for reference.
#include "bench.hpp"
#include "harness.hpp"
#include "support/etcd_cluster.hpp"

#include <agentcore/board/task_board.hpp>
#include <agentcore/store/etcd_store.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include <functional>

#include <cstdio>
#include <memory>
#include <optional>
#include <regex>

namespace agentcore::bench {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::unique_ptr<store::etcd_store> connect(const test::etcd_cluster& c, std::string prefix) {
  store::etcd_options o;
  o.endpoints = c.endpoints();
  o.prefix = std::move(prefix);
  return check(store::etcd_store::connect(o), "etcd connect");
}

// Each lane owns a key and commits "if its version is v, put v+1": a
// read-compare-write whose read is the lane's previous commit (the first one
// reads the key). `lanes` asynchronous commits are in flight at once, their
// completions on one thread, as a host's event loop would have them.
double cas_commits(const test::etcd_cluster& c, int lanes, std::chrono::milliseconds duration) {
  auto s = connect(c, fmt::format("bench/cas/c{}/", lanes));
  boost::asio::io_context io;
  struct lane {
    std::string key;
    std::int64_t version = 0;
  };
  std::vector<lane> ls;
  for (int t = 0; t < lanes; ++t) {
    lane l{fmt::format("k{:03}", t)};
    auto kv = check(s->get(l.key), "etcd get");
    l.version = kv ? kv->version : 0;
    ls.push_back(std::move(l));
  }
  std::uint64_t done = 0;
  bool stop = false;
  std::string error;
  std::function<void(int)> next = [&](int i) {
    lane& l = ls[static_cast<std::size_t>(i)];
    s->async_commit(store::txn().if_version(l.key, l.version).put(l.key, std::to_string(l.version + 1)),
                    boost::asio::bind_executor(io, [&, i](result<store::commit_result> r) {
                      if (!r || !r->succeeded) {
                        if (error.empty())
                          error = !r ? fmt::format("etcd commit: {}", r.error().message())
                                     : fmt::format("etcd cas: lane {} lost its own key's compare", i);
                        stop = true;
                        return;
                      }
                      ++ls[static_cast<std::size_t>(i)].version;
                      if (stop) return;
                      ++done;
                      next(i);
                    }));
  };
  boost::asio::steady_timer timer(io, duration);
  timer.async_wait([&](error_code) { stop = true; });
  for (int i = 0; i < lanes; ++i) next(i);
  io.run();  // until the timer has fired and every lane's last commit has come back
  if (!error.empty()) throw failure(error);
  return static_cast<double>(done) / std::chrono::duration<double>(duration).count();
}

struct claim_figures {
  double claims_per_s = 0;
  double conflicts_per_claim = 0;
};

claim_figures claims(const test::etcd_cluster& c, std::size_t tasks, int claimers) {
  auto s = connect(c, "bench/board/");
  board::task_board b(*s);
  {  // Propose with 32 threads: one transaction per task.
    std::atomic<std::size_t> next{0};
    first_error err;
    std::vector<std::thread> pool;
    for (int t = 0; t < 32; ++t)
      pool.emplace_back([&] {
        try {
          for (std::size_t i; !err.stop && (i = next++) < tasks;)
            check(b.propose(board::task{.id = task_id{fmt::format("t{:05}", i)}, .title = "x"}), "board propose");
        } catch (const std::exception& e) {
          err.set(e.what());
        }
      });
    for (auto& th : pool) th.join();
    err.rethrow();
  }
  auto before = b.stats();
  auto run = claim_until_empty(b, *s, claimers);
  auto st = b.stats();
  std::uint64_t claimed = st.claims - before.claims;
  if (run.claims != tasks || claimed != tasks)
    throw failure(fmt::format("etcd claims: {} claimers claimed {} tasks (board counted {}) of {}; each must be "
                              "claimed exactly once",
                              claimers, run.claims, claimed, tasks));
  return {static_cast<double>(tasks) / run.to_last_claim_s,
          static_cast<double>(st.claim_conflicts - before.claim_conflicts) / static_cast<double>(claimed)};
}

// etcd's own check: 60 s of its small workload. Measured once per process
// (the driver's runs share it): it is a reference, not ours to repeat.
double etcdctl_check_perf(const test::etcd_cluster& c) {
  static double cached = -1;
  if (cached >= 0) return cached;
  std::string cmd = fmt::format("ETCDCTL_API=3 etcdctl --endpoints={} check perf --load=s 2>&1",
                                c.endpoint(0).substr(std::string("http://").size()));
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw failure("etcdctl check perf: cannot start etcdctl (install etcd-client)");
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  int rc = ::pclose(p);
  std::smatch m;
  static const std::regex throughput(R"(Throughput is ([0-9.]+) writes/s)");
  if (!std::regex_search(out, m, throughput))
    throw failure(fmt::format("etcdctl check perf (exit {}): no throughput in its output:\n{}", rc, out));
  cached = std::stod(m[1].str());
  return cached;
}

}  // namespace

std::vector<figure> run_etcd(const run_options& o) {
  const std::chrono::milliseconds duration = o.quick ? 500ms : 3000ms;
  const auto at_least = [](double v) { return bound{true, v}; };
  std::vector<figure> out;
  auto phase = steady::now();
  auto progress = [&phase](std::string_view what, double v) {
    fmt::print(stderr, "  {:<34} {:>16.3f}   ({:.1f} s)\n", what, v, seconds_since(phase));
    phase = steady::now();
  };
  // A fresh etcd per run: what a run leaves (10,000 claimed tasks, history) must not meet the next.
  static int run = 0;
  const auto data = o.dir / fmt::format("etcd-{}", ++run);
  fs::remove_all(data);
  std::optional<test::etcd_cluster> cluster_holder;
  cluster_holder.emplace(1, data);
  auto& cluster = *cluster_holder;
  for (int lanes : {1, 16, 64}) {
    double r = cas_commits(cluster, lanes, duration);
    auto name = fmt::format("etcd_cas_commits_per_s_c{}", lanes);
    progress(name, r);
    out.push_back({name, r, 0, lanes == 64 ? std::optional(at_least(5'000)) : std::nullopt});
  }
  auto cl = claims(cluster, o.quick ? 1'000 : 10'000, 64);
  progress("etcd_claims_per_s", cl.claims_per_s);
  out.push_back({"etcd_claims_per_s", cl.claims_per_s, 0, std::nullopt});
  progress("claim_conflicts_per_claim", cl.conflicts_per_claim);
  out.push_back({"claim_conflicts_per_claim", cl.conflicts_per_claim, 4, std::nullopt});
  if (!o.quick) {
    double ref = etcdctl_check_perf(cluster);
    progress("etcdctl_check_perf_writes_per_s", ref);
    out.push_back({"etcdctl_check_perf_writes_per_s", ref, 0, std::nullopt});
  }
  cluster_holder.reset();
  fs::remove_all(data);
  return out;
}

}  // namespace agentcore::bench
