// The pids cgroup of a sandboxed command run by root.
#include "detail.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>

namespace agentcore::process::detail {

namespace {

// The cgroups of hosts that died without removing theirs (kill -9): the
// ones named for a process that is gone and now empty are removed before
// every cgroup made (a dead host's may appear at any time; a listing of a
// few names is cheap beside starting a sandbox), so a long-lived machine
// does not collect them. Those named for our own pid are removed only the
// first time, before we made any: a dead host's whose pid came back to us,
// as pids do in a container after a restart; later, they may be ours.
void sweep(const std::vector<std::filesystem::path>& bases, bool first) {
  for (const auto& base : bases) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
      auto name = e.path().filename().string();
      if (!name.starts_with("agentcore-")) continue;
      auto pid = std::strtol(name.c_str() + 10, nullptr, 10);
      if (pid <= 0) continue;
      // Skipped: ours (after the first sweep), or its host still runs.
      if (pid == ::getpid() ? !first : (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)) continue;
      ::rmdir(e.path().c_str());  // fails, harmlessly, while a process is left in it
    }
  }
}

// Where a child of our own cgroup with the pids controller can be made.
std::vector<std::filesystem::path> candidates() {
  std::vector<std::filesystem::path> out;
  std::ifstream f("/proc/self/cgroup");
  std::string line;
  while (std::getline(f, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    auto controllers = line.substr(a + 1, b - a - 1);
    auto path = line.substr(b + 1);
    if (controllers == "pids" || controllers.find("pids,") != std::string::npos ||
        controllers.find(",pids") != std::string::npos)
      out.push_back(std::filesystem::path("/sys/fs/cgroup/pids") / std::filesystem::path(path).relative_path());
    else if (controllers.empty() && line.rfind("0::", 0) == 0)
      for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
        auto dir = std::filesystem::path(root) / std::filesystem::path(path).relative_path();
        std::ifstream sub(dir / "cgroup.subtree_control");
        std::string enabled;
        std::getline(sub, enabled);
        if ((" " + enabled + " ").find(" pids ") != std::string::npos) out.push_back(dir);
      }
  }
  return out;
}
}  // namespace

pids_cgroup::~pids_cgroup() {
  if (procs_ >= 0) ::close(procs_);
  if (dir_.empty()) return;
  // Whatever is left in it is killed (cgroup.kill, Linux 5.14); it is
  // empty once the kernel has ended them, which under load takes a while:
  // up to 5 s, so that no process of the command outlives process::run.
  if (int kill = ::open((dir_ / "cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC); kill >= 0) {
    (void)!::write(kill, "1", 1);
    ::close(kill);
  }
  for (int i = 0; i < 5000 && ::rmdir(dir_.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(1000);
}

std::string pids_cgroup::make(std::size_t max) {
  static std::atomic<std::uint64_t> counter{0};
  std::string why;
  auto bases = candidates();
  static std::once_flag swept_once;
  bool first = false;
  std::call_once(swept_once, [&] {
    sweep(bases, true);
    first = true;
  });
  if (!first) sweep(bases, false);
  for (const auto& base : bases) {
    std::error_code ec;
    std::filesystem::path dir;
    bool made = false;
    for (int tries = 0; !made && !ec && tries < 100; ++tries) {  // a name a dead host left (not emptied) is passed over
      dir = base / fmt::format("agentcore-{}-{}", ::getpid(), counter++);
      made = std::filesystem::create_directory(dir, ec);
    }
    if (!made) {
      why = fmt::format("cannot create '{}': {}", dir.string(), ec.message());
      continue;
    }
    int fd = ::open((dir / "pids.max").c_str(), O_WRONLY | O_CLOEXEC);
    auto value = std::to_string(max);
    bool ok = fd >= 0 && ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
    if (fd >= 0) ::close(fd);
    if (ok) procs_ = ::open((dir / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (!ok || procs_ < 0) {
      why = fmt::format("cannot limit '{}': {}", dir.string(), std::strerror(errno));
      ::rmdir(dir.c_str());
      continue;
    }
    dir_ = dir;
    return {};
  }
  return why.empty() ? "no pids cgroup controller is mounted" : why;
}

}  // namespace agentcore::process::detail
