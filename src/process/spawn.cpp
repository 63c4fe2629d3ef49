// Starting a process: posix_spawn with its own process group and only the
// descriptors given, the pids cgroup, and the sandbox's first process.
#include "detail.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <poll.h>
#include <spawn.h>

namespace agentcore::process::detail {

result<pid_t> spawn_command(const std::filesystem::path& program, const std::vector<std::string>& args,
                            const std::vector<std::string>& env, const std::filesystem::path& dir, spawn_fds fds) {
  // Every source descriptor above the targets (0-4), so no dup2 in the
  // child overwrites one still to be copied, and each target's close-on-exec
  // flag is cleared by its dup2.
  std::vector<int> lifted;
  auto lift = [&](int& fd) -> bool {
    if (fd < 0 || fd >= 5) return true;
    int high = ::fcntl(fd, F_DUPFD_CLOEXEC, 5);
    if (high < 0) return false;
    lifted.push_back(high);
    fd = high;
    return true;
  };
  struct closer {
    std::vector<int>& fds;
    ~closer() {
      for (int fd : fds) ::close(fd);
    }
  } close_lifted{lifted};
  for (int* fd : {&fds.in, &fds.out, &fds.err, &fds.keep[0], &fds.keep[1]})
    if (!lift(*fd)) return fail(error::io_error, fmt::format("{}: dup: {}", program.string(), std::strerror(errno)));

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawnattr_init(&attr);
  struct cleanup {
    posix_spawn_file_actions_t& fa;
    posix_spawnattr_t& attr;
    ~cleanup() {
      ::posix_spawn_file_actions_destroy(&fa);
      ::posix_spawnattr_destroy(&attr);
    }
  } done{fa, attr};
  int rc = 0;
  auto step = [&](int r) {
    if (rc == 0) rc = r;
  };
  if (fds.in >= 0) step(::posix_spawn_file_actions_adddup2(&fa, fds.in, 0));
  else step(::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0));
  step(::posix_spawn_file_actions_adddup2(&fa, fds.out, 1));
  step(::posix_spawn_file_actions_adddup2(&fa, fds.err, 2));
  int first_closed = 3;
  if (fds.keep[0] >= 0) {
    step(::posix_spawn_file_actions_adddup2(&fa, fds.keep[0], 3));
    step(::posix_spawn_file_actions_adddup2(&fa, fds.keep[1], 4));
    first_closed = 5;
  }
  step(::posix_spawn_file_actions_addclosefrom_np(&fa, first_closed));
  step(::posix_spawn_file_actions_addchdir_np(&fa, dir.c_str()));
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGXFSZ, SIGTTIN, SIGTTOU})
    sigaddset(&defaults, sig);
  step(::posix_spawnattr_setsigmask(&attr, &none));
  step(::posix_spawnattr_setsigdefault(&attr, &defaults));
  step(::posix_spawnattr_setpgroup(&attr, 0));
  step(::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF));
  if (rc != 0) return fail(error::io_error, fmt::format("{}: spawn attributes: {}", program.string(), std::strerror(rc)));

  std::vector<char*> argv, envp;
  std::string arg0 = program.string();
  argv.push_back(arg0.data());
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  rc = ::posix_spawn(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data());
  if (rc != 0) return fail(error::io_error, fmt::format("{}: {}", program.string(), std::strerror(rc)));
  return pid;
}

bool join_cgroup(int procs, pid_t pid) {
  if (procs < 0) return true;
  auto line = fmt::format("{}\n", pid);
  return ::pwrite(procs, line.data(), line.size(), 0) == static_cast<ssize_t>(line.size());
}

pid_t read_child_pid(int fd, std::chrono::milliseconds limit) {
  std::string text;
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    if (left.count() <= 0) return 0;
    struct pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    char buf[512];
    auto got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return 0;
    text.append(buf, static_cast<std::size_t>(got));
    auto v = parse_json(text);
    if (!v) continue;  // not all of it yet
    if (auto* o = v->if_object())
      if (auto* pid = o->if_contains("child-pid"); pid && pid->is_int64()) return static_cast<pid_t>(pid->as_int64());
    return 0;
  }
}

}  // namespace agentcore::process::detail
