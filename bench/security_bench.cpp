// The security area: what the sandbox costs a command (a no-op through
// bubblewrap against the same no-op unsandboxed, in the same run), and the
// hostile attacks of tests/security run again here, counting escapes.
#include "bench.hpp"

#include <agentcore/process/process.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace agentcore::bench {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double ms_per_command(const process::run_options& o, int n) {
  std::vector<double> each;
  for (int i = 0; i < n; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = process::run("true", o);
    if (!r || !r->passed()) throw failure(fmt::format("security: a no-op command failed: {}",
                                                      r ? r->outcome() : r.error().message()));
    each.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(std::move(each));
}

}  // namespace

std::vector<figure> run_security(const run_options& options) {
  auto status = process::probe_sandbox();
  if (!status.available) throw failure("security: the sandbox is unavailable: " + status.detail);
  namespace fs = std::filesystem;
  auto wt = options.dir / "worktree";
  auto outside = options.dir / "outside";
  fs::create_directories(wt);
  fs::create_directories(outside);
  std::ofstream(outside / "target.txt") << "untouched\n";

  int n = options.quick ? 10 : 60;
  process::run_options plain{.working_directory = wt, .sandbox = {.mode = process::sandbox_mode::unconfined_host_access}};
  process::run_options boxed{.working_directory = wt};
  (void)ms_per_command(boxed, 2);  // the probe and the page cache, outside the figure
  double unsandboxed = ms_per_command(plain, n);
  double sandboxed = ms_per_command(boxed, n);

  // Attacks as in tests/security/hostile_test.cpp; an escape is an effect
  // seen from outside: a file made or changed where the command may not
  // write, a secret of the host in its output, a connection made.
  auto tag = std::to_string(::getpid());
  ::setenv("AGENTCORE_BENCH_SECRET", "sk-bench-secret", 1);
  std::vector<fs::path> markers{"/usr/agentcore-bench-" + tag, "/etc/agentcore-bench-" + tag,
                                outside / ("pwned-" + tag)};
  const std::vector<std::string> attacks{
      "mount -o remount,rw / ; touch /usr/agentcore-bench-" + tag + " /etc/agentcore-bench-" + tag,
      "touch " + (outside / ("pwned-" + tag)).string() + " ; echo x >> " + (outside / "target.txt").string(),
      "unshare -Urm sh -c 'mount -t tmpfs none /usr && touch /usr/agentcore-bench-" + tag + "'",
      "ln -s " + outside.string() + " out && echo x > out/pwned-" + tag,
      "cat /proc/$PPID/environ; for f in /proc/[0-9]*/environ; do cat $f; done; env",
      "echo 61 > /proc/sys/vm/swappiness",
      "grep -q '^CapEff:.0000000000000000' /proc/self/status || echo CAPS-LEFT",
  };
  std::string swappiness;
  std::getline(std::ifstream("/proc/sys/vm/swappiness"), swappiness);
  int escapes = 0;
  for (const auto& a : attacks) {
    auto r = process::run(a, boxed);
    if (!r) throw failure("security: an attack could not run: " + r.error().message());
    if (r->log.find("sk-bench-secret") != std::string::npos || r->log.find("CAPS-LEFT") != std::string::npos) ++escapes;
  }
  ::unsetenv("AGENTCORE_BENCH_SECRET");
  std::error_code ec;
  for (const auto& m : markers)
    if (fs::exists(m, ec)) {
      ++escapes;
      fs::remove(m, ec);
    }
  std::string text, now;
  std::getline(std::ifstream(outside / "target.txt"), text);
  if (text != "untouched") ++escapes;
  std::getline(std::ifstream("/proc/sys/vm/swappiness"), now);
  if (now != swappiness) {
    ++escapes;
    std::ofstream("/proc/sys/vm/swappiness") << swappiness;
  }
  return {
      {"unsandboxed_ms_per_command", unsandboxed, 2},
      {"sandboxed_ms_per_command", sandboxed, 2},
      {"sandbox_overhead_ms_per_command", sandboxed - unsandboxed, 2, bound{false, 15}},
      {"escapes", static_cast<double>(escapes), 0, bound{false, 0}},
  };
}

}  // namespace agentcore::bench
