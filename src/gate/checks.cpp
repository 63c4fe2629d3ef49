// Boost.Process v2 is used only here, header-only, so it is compiled once.
#define BOOST_PROCESS_USE_STD_FS 1
#include <agentcore/gate/checks.hpp>

// Boost 1.81's Process v2 with std::filesystem leans on these without
// including them.
#include <boost/io/quoted.hpp>
#include <boost/optional.hpp>
#include <boost/type_traits.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/connect_pipe.hpp>
#include <boost/process/v2/process.hpp>
#include <fmt/format.h>

#include <csignal>
#include <fstream>
#include <fcntl.h>
#include <mutex>
#include <optional>
#include <cstdlib>
#include <dirent.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace agentcore::gate {

namespace asio = boost::asio;
namespace bp = boost::process::v2;

namespace {

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

// Moves a process into a pids cgroup (its cgroup.procs open for writing).
bool join_cgroup(int procs, pid_t pid) {
  if (procs < 0) return true;
  auto line = fmt::format("{}\n", pid);
  return ::pwrite(procs, line.data(), line.size(), 0) == static_cast<ssize_t>(line.size());
}

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
  ~pids_cgroup() {
    if (procs_ >= 0) ::close(procs_);
    if (dir_.empty()) return;
    // Whatever is left in it is killed (cgroup.kill, Linux 5.14); it is
    // empty once the kernel has ended them, which under load takes a while:
    // up to 5 s, so that no process of the command outlives run_check.
    if (int kill = ::open((dir_ / "cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC); kill >= 0) {
      (void)!::write(kill, "1", 1);
      ::close(kill);
    }
    for (int i = 0; i < 5000 && ::rmdir(dir_.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(1000);
  }
  int procs() const { return procs_; }

  // Empty on success, else why not.
  std::string make(std::size_t max) {
    static std::atomic<std::uint64_t> counter{0};
    std::string why;
    auto bases = candidates();
    static std::once_flag swept;
    std::call_once(swept, [&] { sweep(bases); });
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

private:
  // The cgroups of hosts that died without removing theirs (kill -9): the
  // ones named for a process that is gone and now empty are removed, once
  // per process, so a long-lived machine does not collect them.
  static void sweep(const std::vector<std::filesystem::path>& bases) {
    for (const auto& base : bases) {
      std::error_code ec;
      for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
        auto name = e.path().filename().string();
        if (!name.starts_with("agentcore-")) continue;
        auto pid = std::strtol(name.c_str() + 10, nullptr, 10);
        if (pid <= 0) continue;
        // (Named for our own pid: a dead host's whose pid came back to us, as
        // pids do in a container after a restart; we have made none yet.)
        if (pid != ::getpid() && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)) continue;  // its host still runs
        ::rmdir(e.path().c_str());  // fails, harmlessly, while a process is left in it
      }
    }
  }

  // Where a child of our own cgroup with the pids controller can be made.
  static std::vector<std::filesystem::path> candidates() {
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
  std::filesystem::path dir_;
  int procs_ = -1;
};

// Keeps the first and the last `limit / 2` bytes of a stream.
class capped_log {
public:
  explicit capped_log(std::size_t limit) : half_(std::max<std::size_t>(limit / 2, 1)) {}
  void append(const char* p, std::size_t n) {
    total_ += n;
    std::size_t to_head = std::min(n, half_ - std::min(half_, head_.size()));
    head_.append(p, to_head);
    p += to_head;
    n -= to_head;
    if (n == 0) return;
    tail_.append(p, n);
    if (tail_.size() > 2 * half_) tail_.erase(0, tail_.size() - half_);
  }
  std::string text(bool& truncated) {
    if (tail_.size() > half_) tail_.erase(0, tail_.size() - half_);
    std::size_t kept = head_.size() + tail_.size();
    truncated = kept < total_;
    if (!truncated) return head_ + tail_;
    return head_ + fmt::format("\n[... {} bytes elided ...]\n", total_ - kept) + tail_;
  }
  std::size_t total() const { return total_; }

private:
  std::size_t half_;
  std::string head_, tail_;
  std::size_t total_ = 0;
};

std::filesystem::path find_bubblewrap(const sandbox_options& o) {
  if (!o.bubblewrap.empty()) return o.bubblewrap;
  std::string_view path = std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin";
  while (!path.empty()) {
    auto colon = path.find(':');
    auto dir = path.substr(0, colon);
    path = colon == std::string_view::npos ? std::string_view() : path.substr(colon + 1);
    if (dir.empty()) continue;
    auto candidate = std::filesystem::path(dir) / "bwrap";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

std::string shell_quote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

bool is_under(const std::filesystem::path& p, const std::filesystem::path& dir) {
  auto d = dir.lexically_normal().string();
  auto s = p.lexically_normal().string();
  if (!d.empty() && d.back() == '/') d.pop_back();
  return s == d || (s.size() > d.size() && s.compare(0, d.size(), d) == 0 && s[d.size()] == '/');
}

// The namespaces and mounts of the sandbox, up to (not including) the command.
// Order matters: later mounts cover earlier ones, so the private /tmp comes
// before what must show through it (read-only binds, the writable working
// directory), and hidden paths come before what the host granted explicitly.
struct limit_pipes {
  int w = -1;  ///< bubblewrap's info descriptor
  int r = -1;  ///< bubblewrap's block descriptor
};
std::vector<std::string> bubblewrap_args(const sandbox_options& o, const std::vector<std::filesystem::path>& rw,
                                         const std::filesystem::path& chdir, std::optional<limit_pipes> limits) {
  std::vector<std::string> a{
      // An unprivileged user in a user namespace of its own, whoever runs us:
      // as root, bubblewrap would otherwise keep every capability.
      "--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL", "--disable-userns",
      "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox",
      // /proc read-only as a whole: the sandbox's user is the host's user
      // outside, so for a root host it would otherwise write kernel settings
      // in /proc/sys (core_pattern!) and /proc/sysrq-trigger, which bubblewrap
      // leaves uncovered in a user namespace.
      "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--remount-ro", "/proc",
      "--size", std::to_string(o.tmp_bytes), "--tmpfs", "/tmp"};
  if (!o.network) a.push_back("--unshare-net");
  std::error_code ec;
  for (auto h : o.hidden) {
    if (h.empty() || !h.is_absolute()) continue;
    // A link (~/.ssh pointing at a dotfiles checkout, say): what it points at is hidden.
    if (std::filesystem::is_symlink(std::filesystem::symlink_status(h, ec))) h = std::filesystem::canonical(h, ec);
    if (ec) continue;
    auto st = std::filesystem::symlink_status(h, ec);
    if (ec || !std::filesystem::exists(st)) continue;
    // Nothing the command works in is hidden (a worktree under a hidden home).
    bool needed = false;
    for (const auto& p : rw) needed = needed || is_under(p, h);
    if (needed || is_under(h, "/tmp")) continue;
    if (std::filesystem::is_directory(st)) a.insert(a.end(), {"--tmpfs", h.string()});
    else a.insert(a.end(), {"--ro-bind", "/dev/null", h.string()});
  }
  for (const auto& p : o.read_only) a.insert(a.end(), {"--ro-bind", p.string(), p.string()});
  for (const auto& p : rw) a.insert(a.end(), {"--bind", p.string(), p.string()});
  // --new-session keeps the command from reaching the runner's terminal; the
  // process group it leaves is covered by --die-with-parent and the pid
  // namespace: killing bwrap (which is in the runner's group) ends them all.
  a.insert(a.end(), {"--die-with-parent", "--new-session", "--chdir", chdir.string()});
  // The process and file size limits are set from outside (prlimit(2) on the
  // sandbox's first process, which waits on the block descriptor until they
  // are): inside the user namespace RLIMIT_NPROC counts the sandbox's own
  // processes alone, and no extra program has to start.
  if (limits) a.insert(a.end(), {"--info-fd", std::to_string(limits->w), "--block-fd", std::to_string(limits->r)});
  a.push_back("--");
  return a;
}

void add_usage(int dirfd, dev_t dev, int depth, disk_usage& u) {
  DIR* d = ::fdopendir(dirfd);
  if (!d) {
    ::close(dirfd);
    return;
  }
  while (auto* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
    ++u.entries;
    u.bytes += static_cast<std::uint64_t>(st.st_blocks) * 512;
    if (S_ISDIR(st.st_mode) && st.st_dev == dev && depth < 512) {
      int sub = ::openat(::dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sub >= 0) add_usage(sub, dev, depth + 1, u);
    }
  }
  ::closedir(d);
}

std::string human(std::uint64_t bytes) {
  if (bytes >= (std::uint64_t(1) << 30)) return fmt::format("{:.1f} GiB", double(bytes) / double(std::uint64_t(1) << 30));
  if (bytes >= (std::uint64_t(1) << 20)) return fmt::format("{:.1f} MiB", double(bytes) / double(1 << 20));
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", double(bytes) / 1024.0);
  return fmt::format("{} bytes", bytes);
}

}  // namespace

disk_usage measure_disk_usage(const std::filesystem::path& dir) {
  disk_usage u;
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return u;
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return u;
  }
  add_usage(fd, st.st_dev, 0, u);
  return u;
}

sandbox_status probe_sandbox(const sandbox_options& options) {
  static std::mutex m;
  static std::map<std::string, sandbox_status> known;
  auto bwrap = find_bubblewrap(options);
  if (bwrap.empty())
    return {false, "bubblewrap ('bwrap') is not on PATH; install Debian's 'bubblewrap' package "
                   "(scripts/install-deps.sh does) or set sandbox_options::bubblewrap"};
  if (::access(bwrap.c_str(), X_OK) != 0)
    return {false, fmt::format("bubblewrap '{}' is not an executable file; install Debian's 'bubblewrap' "
                               "package or fix sandbox_options::bubblewrap", bwrap.string())};
  std::lock_guard lock(m);
  if (auto it = known.find(bwrap.string()); it != known.end()) return it->second;
  std::string cmd = shell_quote(bwrap.string());
  for (const auto& arg : bubblewrap_args({.hidden = {}}, {}, "/", std::nullopt)) cmd += " " + shell_quote(arg);
  cmd += " /bin/sh -c true";
  check_options o{.working_directory = "/", .timeout = std::chrono::seconds(20), .output_limit = 4096,
                  .sandbox = {.mode = sandbox_mode::unconfined_host_access}};
  auto r = run_check(cmd, o);
  sandbox_status st;
  if (!r) st = {false, fmt::format("cannot run '{}': {}", bwrap.string(), r.error().message())};
  else if (!r->passed()) {
    std::string log = r->log;
    while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
    st = {false, fmt::format("'{}' cannot create its namespaces here ({}: {}); it needs bubblewrap 0.8 or "
                             "newer and user namespaces (sysctl user.max_user_namespaces > 0, and "
                             "kernel.unprivileged_userns_clone=1 or kernel.apparmor_restrict_unprivileged_userns=0 "
                             "where those exist)",
                             bwrap.string(), r->outcome(), log)};
  } else {
    st = {true, fmt::format("bubblewrap ({})", bwrap.string())};
  }
  known[bwrap.string()] = st;
  return st;
}

std::string_view to_string(sandbox_mode m) noexcept {
  return m == sandbox_mode::required ? "required" : "unconfined-host-access";
}

std::vector<std::filesystem::path> default_hidden_paths() {
  std::vector<std::filesystem::path> out{"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/run",
                                         "/etc/ssl/private"};
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/etc/ssh", ec)) {
    auto name = e.path().filename().string();
    if (name.starts_with("ssh_host_") && !name.ends_with(".pub")) out.push_back(e.path());
  }
  std::vector<std::filesystem::path> homes{"/root"};
  if (const char* h = std::getenv("HOME"); h && *h && std::filesystem::path(h) != "/root" && std::filesystem::path(h) != "/")
    homes.emplace_back(h);
  for (const auto& home : homes)
    for (const char* secret : {".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".config/gh", ".docker", ".kube",
                               ".netrc", ".git-credentials", ".npmrc", ".pypirc", ".cargo/credentials",
                               ".cargo/credentials.toml", ".claude", ".codex"})
      out.push_back(home / secret);
  std::vector<std::filesystem::path> present;
  for (auto& p : out)
    if (std::filesystem::exists(std::filesystem::symlink_status(p, ec))) present.push_back(std::move(p));
  return present;
}

std::vector<std::string> default_env_allow_list() {
  return {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL"};
}

std::string check_result::outcome() const {
  if (!limit_exceeded.empty()) return "stopped: " + limit_exceeded;
  if (timed_out) return fmt::format("timed out after {} ms", duration.count());
  if (exit_code == 0) return "passed";
  if (exit_code == 127) return "command not found (exit 127)";
  if (exit_code > 128) return fmt::format("killed by signal {}", exit_code - 128);
  return fmt::format("exit {}", exit_code);
}

result<check_result> run_check(std::string_view command, const check_options& options) {
  if (options.working_directory.empty())
    return fail(error::invalid_argument, "gate: check_options::working_directory is empty");
  std::error_code fec;
  if (!std::filesystem::is_directory(options.working_directory, fec))
    return fail(error::invalid_argument,
                fmt::format("gate: working directory '{}' does not exist", options.working_directory.string()));

  std::map<std::string, std::string> env;
  for (const auto& name : options.env_allow)
    if (const char* v = std::getenv(name.c_str())) env[name] = v;
  for (const auto& [k, v] : options.env_set) env[k] = v;

  check_result out;
  out.command = std::string(command);
  pids_cgroup cgroup;  // outlives the command: removed once its processes are gone
  owned_pipe info, block;  // bubblewrap's: it says its first process, waits until its limits are set
  std::filesystem::path program = options.shell;
  std::vector<std::string> args{"-c", std::string(command)};
  if (options.sandbox.mode == sandbox_mode::required) {
    auto st = probe_sandbox(options.sandbox);
    if (!st.available)
      return fail(error::io_error,
                  fmt::format("gate: refusing to run '{}' without a sandbox: {}; a host that confines commands "
                              "itself can choose sandbox_mode::unconfined_host_access (\"sandbox\": "
                              "\"unconfined-host-access\" in the configuration), which gives the command the "
                              "host's powers",
                              command, st.detail));
    {
      std::vector<std::filesystem::path> rw{std::filesystem::absolute(options.working_directory)};
      for (const auto& w : options.sandbox.writable) {
        if (!std::filesystem::exists(w, fec))
          return fail(error::invalid_argument,
                      fmt::format("gate: sandbox writable path '{}' does not exist; create it first", w.string()));
        rw.push_back(std::filesystem::absolute(w));
      }
      sandbox_options so = options.sandbox;
      so.read_only.clear();
      for (const auto& p : options.sandbox.read_only) {
        if (!std::filesystem::exists(p, fec))
          return fail(error::invalid_argument,
                      fmt::format("gate: sandbox read-only path '{}' does not exist; create it first", p.string()));
        so.read_only.push_back(std::filesystem::absolute(p));
      }
      if (!info.ok() || !block.ok())
        return fail(error::io_error, fmt::format("gate: cannot make a pipe for the sandbox: {}", std::strerror(errno)));
      args = bubblewrap_args(so, rw, rw.front(), limit_pipes{3, 4});  // where spawn_command puts info.w and block.r
      args.insert(args.end(), {options.shell, "-c", std::string(command)});
      program = find_bubblewrap(options.sandbox);
      env["TMPDIR"] = "/tmp";  // the private one: the host's may be read-only inside
      out.sandboxed = true;
      if (::geteuid() == 0 || ::getuid() == 0)
        if (auto why = cgroup.make(options.sandbox.max_processes); !why.empty())
          out.warning = fmt::format("the process limit ({}) is not enforced: the host runs as root, for whom the "
                                    "kernel ignores RLIMIT_NPROC, and no pids cgroup could be made ({}); the time "
                                    "limit and the pid namespace still end every process",
                                    options.sandbox.max_processes, why);
    }
  }
  // What the command may write into, and what those held before it.
  std::vector<std::filesystem::path> written_dirs{options.working_directory};
  for (const auto& w : options.sandbox.writable) written_dirs.push_back(w);
  bool bounded = options.max_written_bytes > 0 || options.max_new_entries > 0;
  auto usage_now = [&] {
    disk_usage total;
    for (const auto& d : written_dirs) {
      auto u = measure_disk_usage(d);
      total.bytes += u.bytes;
      total.entries += u.entries;
    }
    return total;
  };
  disk_usage baseline;
  if (bounded) baseline = options.written_since ? *options.written_since : usage_now();
  // Empty while within the bounds, else what went over.
  auto over_bounds = [&](const disk_usage& u) -> std::string {
    std::uint64_t added = u.bytes > baseline.bytes ? u.bytes - baseline.bytes : 0;
    std::uint64_t entries = u.entries > baseline.entries ? u.entries - baseline.entries : 0;
    if (options.max_written_bytes && added > options.max_written_bytes)
      return fmt::format("wrote {} into '{}' (the bound is {}); remove what is not needed", human(added),
                         options.working_directory.string(), human(options.max_written_bytes));
    if (options.max_new_entries && entries > options.max_new_entries)
      return fmt::format("made {} new files and directories in '{}' (the bound is {}); remove what is not needed",
                         entries, options.working_directory.string(), options.max_new_entries);
    return {};
  };

  std::vector<std::string> env_lines;
  for (const auto& [k, v] : env) env_lines.push_back(k + "=" + v);
  asio::io_context ctx;
  asio::readable_pipe reader(ctx), out_reader(ctx);
  asio::writable_pipe writer(ctx), out_writer(ctx), in_writer(ctx);
  asio::readable_pipe in_reader(ctx);
  asio::connect_pipe(reader, writer);
  bool split = static_cast<bool>(options.on_stdout);
  if (split) asio::connect_pipe(out_reader, out_writer);
  bool feed = !options.stdin_data.empty();
  if (feed) asio::connect_pipe(in_reader, in_writer);
  for (int fd : {reader.native_handle(), out_reader.native_handle(), in_writer.native_handle()})
    if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  auto started = std::chrono::steady_clock::now();
  spawn_fds fds{.in = feed ? in_reader.native_handle() : -1,
                .out = split ? out_writer.native_handle() : writer.native_handle(),
                .err = writer.native_handle()};
  if (out.sandboxed) fds.keep = {info.w, block.r};
  auto spawned = spawn_command(program, args, env_lines, options.working_directory, fds);
  if (!spawned)  // fork failing (EAGAIN, ENOMEM) or a program that cannot be run
    return fail(error::io_error, fmt::format("gate: cannot start '{}': {}", command, spawned.error().message()));
  pid_t group = *spawned;
  bp::process proc(ctx.get_executor(), group);
  // The sandbox's first process is its pid namespace's init, which ends only
  // once every process in the namespace is gone: run_check waits for it
  // (a pidfd; up to 5 s), so that no process of the command outlives it,
  // whether or not a pids cgroup could be made (unprivileged hosts).
  struct pidfd_holder {
    int fd = -1;
    ~pidfd_holder() {
      if (fd >= 0) ::close(fd);
    }
    void wait_gone() {
      if (fd < 0) return;
      struct pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 5000);
    }
  } sandbox_init;
  auto kill_group = [&] {
    if (group > 0) ::kill(-group, SIGKILL);
  };
  // Into the pids cgroup before anything the command starts: bubblewrap now
  // (its sandbox's first process below, before it is let go).
  if (!join_cgroup(cgroup.procs(), group)) {
    int e = errno;
    kill_group();
    bp::error_code ignored;
    proc.wait(ignored);
    return fail(error::io_error, fmt::format("gate: cannot bound the processes of '{}' (cgroup: {}); nothing was run",
                                             command, std::strerror(e)));
  }
  if (out.sandboxed) {
    info.close_write();
    block.close_read();
    // Until the limits are set, the sandbox waits; a bubblewrap that ends
    // before saying its first process has its error in the log.
    if (pid_t first = read_child_pid(info.r, std::chrono::seconds(10)); first > 0) {
      sandbox_init.fd = static_cast<int>(::syscall(SYS_pidfd_open, first, 0));
      struct rlimit nproc{options.sandbox.max_processes, options.sandbox.max_processes};
      struct rlimit fsize{options.sandbox.max_file_bytes, options.sandbox.max_file_bytes};
      if (!join_cgroup(cgroup.procs(), first) || ::prlimit(first, RLIMIT_NPROC, &nproc, nullptr) != 0 ||
          ::prlimit(first, RLIMIT_FSIZE, &fsize, nullptr) != 0) {
        int e = errno;
        kill_group();
        bp::error_code ignored;
        proc.wait(ignored);
        return fail(error::io_error,
                    fmt::format("gate: cannot limit the sandbox of '{}' (cgroup or prlimit: {}); nothing was run", command,
                                std::strerror(e)));
      }
      if (::write(block.w, "1", 1) != 1) kill_group();
    } else {
      kill_group();
    }
    block.close_write();
    info.close_read();
  }
  writer.close();
  if (split) out_writer.close();
  if (feed) in_reader.close();
  // Only the command's own ends of the pipes may reach it (and its children):
  // a copy of the write end of its standard input would keep it from ever
  // seeing end of file.

  capped_log log(options.output_limit);
  std::array<char, 16384> buf, out_buf;
  bool exited = false;
  int open_streams = split ? 2 : 1;  // pipes still being read
  asio::steady_timer timer(ctx, options.timeout), poll(ctx);
  auto stop_reading = [&] {
    reader.close();
    out_reader.close();
  };
  timer.async_wait([&](bp::error_code e) {
    if (e) return;
    if (!exited) out.timed_out = true;
    kill_group();
    // A process that left the group (setsid) may still hold the pipe: stop reading.
    stop_reading();
  });
  std::function<void()> check_stop = [&] {  // lives as long as ctx.run(): handlers refer to it
    poll.expires_after(std::chrono::milliseconds(50));
    poll.async_wait([&](bp::error_code e) {
      if (e || exited) return;
      if (options.stop->load()) {
        kill_group();
        return;
      }
      check_stop();
    });
  };
  if (options.stop) check_stop();
  // The bounds on what it writes, checked while it runs: a walk of the tree
  // every 250 ms, or every fifth of the time, whichever is less often, so a
  // large tree costs at most a fifth of a core.
  asio::steady_timer usage_timer(ctx);
  std::function<void(std::chrono::milliseconds)> watch_usage = [&](std::chrono::milliseconds after) {
    usage_timer.expires_after(after);
    usage_timer.async_wait([&](bp::error_code e) {
      if (e || exited) return;
      auto t0 = std::chrono::steady_clock::now();
      if (auto why = over_bounds(usage_now()); !why.empty()) {
        out.limit_exceeded = std::move(why);
        kill_group();
        return;
      }
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      watch_usage(std::max(std::chrono::milliseconds(250), 4 * took));
    });
  };
  if (bounded) watch_usage(std::chrono::milliseconds(250));
  if (feed)
    asio::async_write(in_writer, asio::buffer(options.stdin_data), [&](bp::error_code, std::size_t) {
      in_writer.close();  // EOF for the command; a command that never reads gets EPIPE, which is fine
    });
  auto stream_done = [&] {
    if (--open_streams == 0 && exited) timer.cancel();
  };
  std::function<void()> read_more = [&] {
    reader.async_read_some(asio::buffer(buf), [&](bp::error_code e, std::size_t n) {
      log.append(buf.data(), n);
      if (e) return stream_done();
      read_more();
    });
  };
  read_more();
  std::function<void()> read_stdout = [&] {
    out_reader.async_read_some(asio::buffer(out_buf), [&](bp::error_code e, std::size_t n) {
      log.append(out_buf.data(), n);
      if (n > 0) options.on_stdout(std::string_view(out_buf.data(), n));
      if (e) return stream_done();
      read_stdout();
    });
  };
  if (split) read_stdout();
  proc.async_wait([&](bp::error_code e, int code) {
    exited = true;
    poll.cancel();
    usage_timer.cancel();
    out.exit_code = e ? -1 : code;
    // Stray background children would hold the pipe open: end them too.
    kill_group();
    if (open_streams == 0) {
      timer.cancel();
      return;
    }
    // Whatever escaped the group (a daemon that called setsid) gets a moment
    // to let go of the pipe; then reading stops.
    timer.cancel();
    timer.expires_after(std::chrono::milliseconds(200));
    timer.async_wait([&](bp::error_code e2) {
      if (!e2 && open_streams > 0) stop_reading();
    });
  });
  ctx.run();
  sandbox_init.wait_gone();
  // A command that wrote past a bound between two looks, or just before it
  // ended, is over it all the same.
  if (bounded && out.limit_exceeded.empty()) out.limit_exceeded = over_bounds(usage_now());
  out.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  out.log = log.text(out.truncated);
  out.output_bytes = log.total();
  return out;
}

std::shared_ptr<check> make_check(std::string name,
                                  std::function<result<check_result>(const std::filesystem::path&, const check_options&)> fn) {
  class function_check final : public check {
  public:
    function_check(std::string n, decltype(fn) f) : name_(std::move(n)), fn_(std::move(f)) {}
    std::string name() const override { return name_; }
    result<check_result> run(const std::filesystem::path& wt, const check_options& o) override {
      try {
        auto r = fn_(wt, o);
        if (r) r->command = name_;
        return r;
      } catch (const std::exception& e) {  // a host's exception is an error here, never unwound through the gate
        return fail(error::io_error, fmt::format("gate: the check '{}' threw: {}", name_, e.what()));
      }
    }

  private:
    std::string name_;
    decltype(fn) fn_;
  };
  return std::make_shared<function_check>(std::move(name), std::move(fn));
}

void tag_invoke(json::value_from_tag, json::value& v, const check_result& r) {
  v = {{"command", r.command},          {"exit_code", r.exit_code},   {"timed_out", r.timed_out},
       {"duration_ms", r.duration.count()}, {"output_bytes", r.output_bytes}, {"truncated", r.truncated},
       {"outcome", r.outcome()},        {"log", r.log}, {"sandboxed", r.sandboxed}};
  if (!r.warning.empty()) v.as_object()["warning"] = r.warning;
  if (!r.limit_exceeded.empty()) v.as_object()["limit_exceeded"] = r.limit_exceeded;
}

}  // namespace agentcore::gate
