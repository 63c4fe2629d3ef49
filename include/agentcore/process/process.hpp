// agentcore/process/process.hpp: running a command (a check, a CLI agent, an
// agent's run_command) with the limits agent output needs: a time limit that
// kills the whole process group, an output cap that keeps the head and the
// tail, an environment reduced to an allow-list, so no secret reaches the
// command, bounds on what it writes, and a sandbox (bubblewrap): no
// capabilities and an unprivileged user even when the host is root, the
// working directory read-write, everything else read-only, credentials
// hidden, a private /tmp, no network, limited processes. Without bubblewrap a
// command is refused unless the host chose sandbox_mode::unconfined_host_access.
//
//   auto r = agentcore::process::run("ctest --output-on-failure",
//                                    {.working_directory = wt.path(), .timeout = std::chrono::minutes(5)});
//   if (r && !r->passed()) report(r->log);
//
// Blocking: run it on a blocking pool, not on an I/O thread.
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/core/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::process {

/// Environment variables passed through from the host by default.
std::vector<std::string> default_env_allow_list();

enum class sandbox_mode {
  /// The default: bubblewrap, or run fails with an error that says what
  /// is missing and how to install it. Never a silent fallback.
  required,
  /// No isolation at all: the command runs as the host's own user with its
  /// capabilities (all of them for root), its files, its network, its other
  /// processes (their environments, API keys included) and its repository.
  /// Only for hosts that confine commands themselves (a container or VM per
  /// command) or run nothing an agent wrote.
  unconfined_host_access,
};

/// "required" or "unconfined-host-access": the configuration's spelling.
std::string_view to_string(sandbox_mode m) noexcept;

/// Paths hidden inside the sandbox by default: the host's credentials
/// (ssh, gpg, cloud and registry tokens in /root and $HOME, /etc/shadow, ssh
/// host keys) and /run, whose sockets (systemd, docker, databases) would let
/// a command talk to services that act as root. Only those that exist.
std::vector<std::filesystem::path> default_hidden_paths();

/// The sandbox (Debian's `bubblewrap` package, 0.8 or newer). Whoever the host
/// is, root included, the command runs as an unprivileged user (uid and gid
/// 65534) in new user, pid, ipc, uts, cgroup and network namespaces, with every
/// capability dropped, no new privileges, and no further user namespaces; the
/// file system is read-only but for the working directory and `writable`,
/// /tmp is private and size-limited (TMPDIR=/tmp), /dev and /proc are private
/// (no other process of the machine is visible, so neither are their
/// environments), `hidden` paths are empty, and the process count and the size
/// of any one file written are limited. The command dies with the runner.
struct sandbox_options {
  sandbox_mode mode = sandbox_mode::required;
  std::vector<std::filesystem::path> writable;  ///< besides the working directory
  /// Bound read-only over the private /tmp and `hidden` paths, for what a
  /// command needs from there: a worktree's git data when the repository
  /// lives under /tmp (worktree::sandbox_read_only() names it).
  std::vector<std::filesystem::path> read_only;
  std::vector<std::filesystem::path> hidden = default_hidden_paths();
  bool network = false;
  /// Processes (and threads) the command may have at once: a fork bomb gets
  /// "Resource temporarily unavailable", not the host's process table.
  std::size_t max_processes = 512;
  /// The largest file the command may write (RLIMIT_FSIZE): beyond it the
  /// write fails with "File too large".
  std::uint64_t max_file_bytes = std::uint64_t(4) << 30;
  /// The size of the private /tmp.
  std::uint64_t tmp_bytes = std::uint64_t(1) << 30;
  std::filesystem::path bubblewrap;  ///< empty: `bwrap` on PATH
};

/// Whether this machine can run the sandbox: bubblewrap found and able to
/// create its namespaces (tried once per bubblewrap path, then remembered).
/// `detail` names the program used, or says what is missing and what to do.
struct sandbox_status {
  bool available = false;
  std::string detail;
};
sandbox_status probe_sandbox(const sandbox_options& options = {});

/// What a directory tree holds: bytes allocated on disk (st_blocks, so sparse
/// files count what they take) and entries (files, directories, links),
/// without following links or crossing into other file systems.
struct disk_usage {
  std::uint64_t bytes = 0;
  std::uint64_t entries = 0;
  friend bool operator==(const disk_usage&, const disk_usage&) = default;
};
disk_usage measure_disk_usage(const std::filesystem::path& dir);

struct run_options {
  std::filesystem::path working_directory;  ///< required
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  std::size_t output_limit = 256 * 1024;  ///< bytes of log kept: the first and last halves
  std::vector<std::string> env_allow = default_env_allow_list();
  std::map<std::string, std::string> env_set;  ///< set (or override) in the command's environment
  std::string shell = "/bin/sh";
  /// Written to the command's standard input (then closed); empty: /dev/null.
  std::string stdin_data;
  /// When set, standard output goes here as it arrives (and to the log),
  /// apart from standard error: for commands that stream JSON events.
  std::function<void(std::string_view)> on_stdout;
  /// When set and it becomes true, the process group is killed (the result
  /// says timed_out = false, exit_code 128 + SIGKILL).
  const std::atomic<bool>* stop = nullptr;
  /// Bounds on what the command may add to the working directory (and the
  /// sandbox's `writable` paths): bytes on disk and new entries, counted from
  /// `written_since` (empty: what they held when the command started). The
  /// tree is measured while the command runs (every 250 ms, less often on
  /// trees that take long to walk) and once after it: over a bound, its
  /// processes are killed and the result's `limit_exceeded` says which. A
  /// fast writer can overshoot by what it writes in one interval. 0: no bound.
  std::uint64_t max_written_bytes = 0;
  std::uint64_t max_new_entries = 0;
  std::optional<disk_usage> written_since;
  sandbox_options sandbox;
};

struct run_result {
  std::string command;
  int exit_code = -1;  ///< the exit status, or 128 + signal when killed by one
  bool timed_out = false;
  std::chrono::milliseconds duration{0};
  std::string log;                  ///< stdout and stderr interleaved, capped
  std::size_t output_bytes = 0;     ///< all the output, before the cap
  bool truncated = false;
  bool sandboxed = false;  ///< ran inside the sandbox
  /// Something the host should know about how the command ran.
  std::string warning;
  /// Set when the command went over max_written_bytes or max_new_entries:
  /// what it wrote and the bound. Such a command did not pass.
  std::string limit_exceeded;
  bool passed() const noexcept { return !timed_out && exit_code == 0 && limit_exceeded.empty(); }
  /// One line: "passed", "exit 2", "timed out after 30000 ms", "command not found",
  /// "stopped: wrote ... (the bound is ...)".
  std::string outcome() const;
};

/// Runs `command` with `options.shell -c`. A command that fails or does not
/// exist is a result (exit_code != 0), not an error; an error means it could
/// not be started at all (a missing working directory, say).
result<run_result> run(std::string_view command, const run_options& options);

void tag_invoke(json::value_from_tag, json::value& v, const run_result& r);

}  // namespace agentcore::process
