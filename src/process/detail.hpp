// Internal to the process module: starting a process, the sandbox's
// arguments and its pids cgroup.
#pragma once

#include <agentcore/process/process.hpp>

#include <array>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/types.h>
#include <unistd.h>

namespace agentcore::process::detail {

// Starts a command with posix_spawn: the child is made with vfork and runs
// no code of ours before exec (a forked child of a threaded host that
// allocates, as a fork-based launcher does, can wait forever on a lock
// another thread held at the fork; seen under ASan). The command gets a
// process group of its own (a time-out kills everything it started), its
// three standard streams, bubblewrap's info and block descriptors as 3 and 4
// when given, and no other descriptor of the host; signal dispositions and
// the signal mask are the defaults, whatever the host set (an ignored
// SIGPIPE would otherwise be inherited across exec).
struct spawn_fds {
  int in = -1;  ///< -1: /dev/null
  int out = -1, err = -1;
  std::array<int, 2> keep{-1, -1};  ///< become 3 and 4
};
result<pid_t> spawn_command(const std::filesystem::path& program, const std::vector<std::string>& args,
                            const std::vector<std::string>& env, const std::filesystem::path& dir, spawn_fds fds);

// Moves a process into a pids cgroup (its cgroup.procs open for writing; -1: none).
bool join_cgroup(int procs, pid_t pid);

// A pipe whose ends close themselves.
struct owned_pipe {
  int r = -1, w = -1;
  owned_pipe() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) == 0) r = p[0], w = p[1];
  }
  owned_pipe(const owned_pipe&) = delete;
  owned_pipe& operator=(const owned_pipe&) = delete;
  ~owned_pipe() {
    close_read();
    close_write();
  }
  void close_read() {
    if (r >= 0) ::close(r);
    r = -1;
  }
  void close_write() {
    if (w >= 0) ::close(w);
    w = -1;
  }
  bool ok() const { return r >= 0 && w >= 0; }
};

// The sandbox's first process, from what bubblewrap writes to its info
// descriptor ({"child-pid": N, ...}) before it waits on the block descriptor;
// 0 when bubblewrap ended (or said nothing) within the time given.
pid_t read_child_pid(int fd, std::chrono::milliseconds limit);

// A pids cgroup of its own for one sandboxed command run by root. RLIMIT_NPROC
// (set inside the sandbox by prlimit) bounds the processes of any other host,
// but the kernel never applies it to processes whose real user is root, which
// a user namespace does not change: for root, the pids controller does it.
// Tried where root can make one (cgroup v1's pids hierarchy, or v2 with pids
// enabled for our cgroup's children); elsewhere the result says so.
class pids_cgroup {
public:
  pids_cgroup() = default;
  pids_cgroup(const pids_cgroup&) = delete;
  pids_cgroup& operator=(const pids_cgroup&) = delete;
  /// Kills what is left in it and removes it (waiting up to 5 s for the kernel).
  ~pids_cgroup();
  int procs() const { return procs_; }
  /// Makes one allowing `max` processes: empty on success, else why not.
  std::string make(std::size_t max);

private:
  std::filesystem::path dir_;
  int procs_ = -1;
};

/// bubblewrap's program: the options' own, or `bwrap` on PATH (empty: none).
std::filesystem::path find_bubblewrap(const sandbox_options& o);

// The namespaces and mounts of the sandbox, up to (not including) the command.
struct limit_pipes {
  int w = -1;  ///< bubblewrap's info descriptor
  int r = -1;  ///< bubblewrap's block descriptor
};
std::vector<std::string> bubblewrap_args(const sandbox_options& o, const std::vector<std::filesystem::path>& rw,
                                         const std::filesystem::path& chdir, std::optional<limit_pipes> limits);

}  // namespace agentcore::process::detail
