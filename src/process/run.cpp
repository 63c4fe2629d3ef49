// Running one command with its limits: the environment, the sandbox, the
// time limit, the output cap and the bounds on what it writes.
#include "detail.hpp"

#include <boost/asio/connect_pipe.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/v2/process.hpp>
#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <map>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

namespace agentcore::process {

namespace asio = boost::asio;
namespace bp = boost::process::v2;

namespace {

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


// One command's run: prepare (environment, sandbox arguments, cgroup), start
// (spawn, then the sandbox's limits before it is let go), supervise (the
// output, the time limit, the stop flag, the bounds on what it writes) and
// finish. The sandbox's first process is its pid namespace's init, which
// ends only once every process in the namespace is gone: run waits for it
// (a pidfd; up to 5 s), so that no process of the command outlives it,
// whether or not a pids cgroup could be made (unprivileged hosts).
class runner {
public:
  runner(std::string_view command, const run_options& options)
      : command_(command), o_(options), program_(options.shell), args_{"-c", std::string(command)} {
    out_.command = std::string(command);
    written_dirs_.push_back(o_.working_directory);
    for (const auto& w : o_.sandbox.writable) written_dirs_.push_back(w);
    bounded_ = o_.max_written_bytes > 0 || o_.max_new_entries > 0;
  }
  ~runner() {
    if (sandbox_init_ >= 0) ::close(sandbox_init_);
  }

  result<run_result> run() {
    if (auto r = prepare(); !r) return r.error();
    if (bounded_) baseline_ = o_.written_since ? *o_.written_since : usage_now();
    if (auto r = start(); !r) return r.error();
    supervise();
    ctx_.run();
    if (sandbox_init_ >= 0) {
      struct pollfd p{sandbox_init_, POLLIN, 0};
      ::poll(&p, 1, 5000);
    }
    // A command that wrote past a bound between two looks, or just before it
    // ended, is over it all the same.
    if (bounded_ && out_.limit_exceeded.empty()) out_.limit_exceeded = over_bounds(usage_now());
    out_.duration = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
    out_.log = log_.text(out_.truncated);
    out_.output_bytes = log_.total();
    return std::move(out_);
  }

private:
  result<void> prepare() {
    std::error_code ec;
    if (o_.working_directory.empty())
      return fail(error::invalid_argument, "process: run_options::working_directory is empty");
    if (!std::filesystem::is_directory(o_.working_directory, ec))
      return fail(error::invalid_argument,
                  fmt::format("process: working directory '{}' does not exist", o_.working_directory.string()));
    for (const auto& name : o_.env_allow)
      if (const char* v = std::getenv(name.c_str())) env_[name] = v;
    for (const auto& [k, v] : o_.env_set) env_[k] = v;
    if (o_.sandbox.mode == sandbox_mode::required) return prepare_sandbox();
    return {};
  }

  result<void> prepare_sandbox() {
    auto st = probe_sandbox(o_.sandbox);
    if (!st.available)
      return fail(error::io_error,
                  fmt::format("process: refusing to run '{}' without a sandbox: {}; a host that confines commands "
                              "itself can choose sandbox_mode::unconfined_host_access (\"sandbox\": "
                              "\"unconfined-host-access\" in the configuration), which gives the command the "
                              "host's powers",
                              command_, st.detail));
    std::error_code ec;
    std::vector<std::filesystem::path> rw{std::filesystem::absolute(o_.working_directory)};
    for (const auto& w : o_.sandbox.writable) {
      if (!std::filesystem::exists(w, ec))
        return fail(error::invalid_argument,
                    fmt::format("process: sandbox writable path '{}' does not exist; create it first", w.string()));
      rw.push_back(std::filesystem::absolute(w));
    }
    sandbox_options so = o_.sandbox;
    so.read_only.clear();
    for (const auto& p : o_.sandbox.read_only) {
      if (!std::filesystem::exists(p, ec))
        return fail(error::invalid_argument,
                    fmt::format("process: sandbox read-only path '{}' does not exist; create it first", p.string()));
      so.read_only.push_back(std::filesystem::absolute(p));
    }
    if (!info_.ok() || !block_.ok())
      return fail(error::io_error, fmt::format("process: cannot make a pipe for the sandbox: {}", std::strerror(errno)));
    args_ = detail::bubblewrap_args(so, rw, rw.front(), detail::limit_pipes{3, 4});  // where spawn_command puts them
    args_.insert(args_.end(), {o_.shell, "-c", command_});
    program_ = detail::find_bubblewrap(o_.sandbox);
    env_["TMPDIR"] = "/tmp";  // the private one: the host's may be read-only inside
    out_.sandboxed = true;
    if (::geteuid() == 0 || ::getuid() == 0)
      if (auto why = cgroup_.make(o_.sandbox.max_processes); !why.empty())
        out_.warning = fmt::format("the process limit ({}) is not enforced: the host runs as root, for whom the "
                                   "kernel ignores RLIMIT_NPROC, and no pids cgroup could be made ({}); the time "
                                   "limit and the pid namespace still end every process",
                                   o_.sandbox.max_processes, why);
    return {};
  }

  // Spawns the command with its pipes, puts it in the cgroup and, in the
  // sandbox, sets the limits of its first process before letting it go.
  result<void> start() {
    std::vector<std::string> env_lines;
    for (const auto& [k, v] : env_) env_lines.push_back(k + "=" + v);
    asio::connect_pipe(reader_, writer_);
    if (split_) asio::connect_pipe(out_reader_, out_writer_);
    if (feed_) asio::connect_pipe(in_reader_, in_writer_);
    for (int fd : {reader_.native_handle(), out_reader_.native_handle(), in_writer_.native_handle()})
      if (fd >= 0) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    started_ = std::chrono::steady_clock::now();
    detail::spawn_fds fds{.in = feed_ ? in_reader_.native_handle() : -1,
                          .out = split_ ? out_writer_.native_handle() : writer_.native_handle(),
                          .err = writer_.native_handle()};
    if (out_.sandboxed) fds.keep = {info_.w, block_.r};
    auto spawned = detail::spawn_command(program_, args_, env_lines, o_.working_directory, fds);
    if (!spawned)  // fork failing (EAGAIN, ENOMEM) or a program that cannot be run
      return fail(error::io_error, fmt::format("process: cannot start '{}': {}", command_, spawned.error().message()));
    group_ = *spawned;
    proc_.emplace(ctx_.get_executor(), group_);
    // Into the pids cgroup before anything the command starts: bubblewrap now
    // (its sandbox's first process below, before it is let go).
    if (!detail::join_cgroup(cgroup_.procs(), group_))
      return abandon(fmt::format("process: cannot bound the processes of '{}' (cgroup: {}); nothing was run", command_,
                                 std::strerror(errno)));
    if (out_.sandboxed)
      if (auto r = release_sandbox(); !r) return r;
    writer_.close();
    if (split_) out_writer_.close();
    if (feed_) in_reader_.close();
    // Only the command's own ends of the pipes may reach it (and its
    // children): a copy of the write end of its standard input would keep it
    // from ever seeing end of file.
    return {};
  }

  result<void> release_sandbox() {
    info_.close_write();
    block_.close_read();
    // Until the limits are set, the sandbox waits; a bubblewrap that ends
    // before saying its first process has its error in the log.
    if (pid_t first = detail::read_child_pid(info_.r, std::chrono::seconds(10)); first > 0) {
      sandbox_init_ = static_cast<int>(::syscall(SYS_pidfd_open, first, 0));
      struct rlimit nproc{o_.sandbox.max_processes, o_.sandbox.max_processes};
      struct rlimit fsize{o_.sandbox.max_file_bytes, o_.sandbox.max_file_bytes};
      if (!detail::join_cgroup(cgroup_.procs(), first) || ::prlimit(first, RLIMIT_NPROC, &nproc, nullptr) != 0 ||
          ::prlimit(first, RLIMIT_FSIZE, &fsize, nullptr) != 0)
        return abandon(fmt::format("process: cannot limit the sandbox of '{}' (cgroup or prlimit: {}); nothing was run",
                                   command_, std::strerror(errno)));
      if (::write(block_.w, "1", 1) != 1) kill_group();
    } else {
      kill_group();
    }
    block_.close_write();
    info_.close_read();
    return {};
  }

  // Kills what was started and says why nothing ran.
  error_info abandon(std::string why) {
    kill_group();
    boost::system::error_code ignored;
    proc_->wait(ignored);
    return error_info{make_error_code(error::io_error), std::move(why)};
  }

  void kill_group() {
    if (group_ > 0) ::kill(-group_, SIGKILL);
  }
  void stop_reading() {
    reader_.close();
    out_reader_.close();
  }

  // The handlers that run until the command and its output are done.
  void supervise() {
    timer_.expires_after(o_.timeout);
    timer_.async_wait([this](boost::system::error_code e) {
      if (e) return;
      if (!exited_) out_.timed_out = true;
      kill_group();
      stop_reading();  // a process that left the group (setsid) may still hold the pipe
    });
    if (o_.stop) watch_stop();
    if (bounded_) watch_usage(std::chrono::milliseconds(250));
    if (feed_)
      asio::async_write(in_writer_, asio::buffer(o_.stdin_data), [this](boost::system::error_code, std::size_t) {
        in_writer_.close();  // EOF for the command; a command that never reads gets EPIPE, which is fine
      });
    read_log();
    if (split_) read_stdout();
    proc_->async_wait([this](boost::system::error_code e, int code) { on_exit(e, code); });
  }

  void watch_stop() {
    poll_.expires_after(std::chrono::milliseconds(50));
    poll_.async_wait([this](boost::system::error_code e) {
      if (e || exited_) return;
      if (o_.stop->load()) return kill_group();
      watch_stop();
    });
  }

  // The bounds on what it writes, checked while it runs: a walk of the tree
  // every 250 ms, or every fifth of the time, whichever is less often, so a
  // large tree costs at most a fifth of a core.
  void watch_usage(std::chrono::milliseconds after) {
    usage_timer_.expires_after(after);
    usage_timer_.async_wait([this](boost::system::error_code e) {
      if (e || exited_) return;
      auto t0 = std::chrono::steady_clock::now();
      if (auto why = over_bounds(usage_now()); !why.empty()) {
        out_.limit_exceeded = std::move(why);
        return kill_group();
      }
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
      watch_usage(std::max(std::chrono::milliseconds(250), 4 * took));
    });
  }

  void read_log() {
    reader_.async_read_some(asio::buffer(buf_), [this](boost::system::error_code e, std::size_t n) {
      log_.append(buf_.data(), n);
      if (e) return stream_done();
      read_log();
    });
  }
  void read_stdout() {
    out_reader_.async_read_some(asio::buffer(out_buf_), [this](boost::system::error_code e, std::size_t n) {
      log_.append(out_buf_.data(), n);
      if (n > 0) o_.on_stdout(std::string_view(out_buf_.data(), n));
      if (e) return stream_done();
      read_stdout();
    });
  }
  void stream_done() {
    if (--open_streams_ == 0 && exited_) timer_.cancel();
  }

  void on_exit(boost::system::error_code e, int code) {
    exited_ = true;
    poll_.cancel();
    usage_timer_.cancel();
    out_.exit_code = e ? -1 : code;
    kill_group();  // stray background children would hold the pipe open: end them too
    timer_.cancel();
    if (open_streams_ == 0) return;
    // Whatever escaped the group (a daemon that called setsid) gets a moment
    // to let go of the pipe; then reading stops.
    timer_.expires_after(std::chrono::milliseconds(200));
    timer_.async_wait([this](boost::system::error_code e2) {
      if (!e2 && open_streams_ > 0) stop_reading();
    });
  }

  disk_usage usage_now() const {
    disk_usage total;
    for (const auto& d : written_dirs_) {
      auto u = measure_disk_usage(d);
      total.bytes += u.bytes;
      total.entries += u.entries;
    }
    return total;
  }
  // Empty while within the bounds, else what went over.
  std::string over_bounds(const disk_usage& u) const {
    std::uint64_t added = u.bytes > baseline_.bytes ? u.bytes - baseline_.bytes : 0;
    std::uint64_t entries = u.entries > baseline_.entries ? u.entries - baseline_.entries : 0;
    if (o_.max_written_bytes && added > o_.max_written_bytes)
      return fmt::format("wrote {} into '{}' (the bound is {}); remove what is not needed", human(added),
                         o_.working_directory.string(), human(o_.max_written_bytes));
    if (o_.max_new_entries && entries > o_.max_new_entries)
      return fmt::format("made {} new files and directories in '{}' (the bound is {}); remove what is not needed",
                         entries, o_.working_directory.string(), o_.max_new_entries);
    return {};
  }

  std::string command_;
  const run_options& o_;
  run_result out_;
  std::map<std::string, std::string> env_;
  std::filesystem::path program_;
  std::vector<std::string> args_;
  std::vector<std::filesystem::path> written_dirs_;
  bool bounded_ = false;
  disk_usage baseline_;
  detail::pids_cgroup cgroup_;  // outlives the command: removed once its processes are gone
  detail::owned_pipe info_, block_;  // bubblewrap's: it says its first process, waits until its limits are set
  int sandbox_init_ = -1;            // a pidfd of the sandbox's first process
  asio::io_context ctx_;
  asio::readable_pipe reader_{ctx_}, out_reader_{ctx_}, in_reader_{ctx_};
  asio::writable_pipe writer_{ctx_}, out_writer_{ctx_}, in_writer_{ctx_};
  bool split_ = static_cast<bool>(o_.on_stdout);
  bool feed_ = !o_.stdin_data.empty();
  std::chrono::steady_clock::time_point started_;
  pid_t group_ = -1;
  std::optional<bp::process> proc_;
  capped_log log_{o_.output_limit};
  std::array<char, 16384> buf_, out_buf_;
  bool exited_ = false;
  int open_streams_ = split_ ? 2 : 1;  // pipes still being read
  asio::steady_timer timer_{ctx_}, poll_{ctx_}, usage_timer_{ctx_};
};

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

std::string run_result::outcome() const {
  if (!limit_exceeded.empty()) return "stopped: " + limit_exceeded;
  if (timed_out) return fmt::format("timed out after {} ms", duration.count());
  if (exit_code == 0) return "passed";
  if (exit_code == 127) return "command not found (exit 127)";
  if (exit_code > 128) return fmt::format("killed by signal {}", exit_code - 128);
  return fmt::format("exit {}", exit_code);
}

result<run_result> run(std::string_view command, const run_options& options) {
  return runner(command, options).run();
}

void tag_invoke(json::value_from_tag, json::value& v, const run_result& r) {
  v = {{"command", r.command},          {"exit_code", r.exit_code},   {"timed_out", r.timed_out},
       {"duration_ms", r.duration.count()}, {"output_bytes", r.output_bytes}, {"truncated", r.truncated},
       {"outcome", r.outcome()},        {"log", r.log}, {"sandboxed", r.sandboxed}};
  if (!r.warning.empty()) v.as_object()["warning"] = r.warning;
  if (!r.limit_exceeded.empty()) v.as_object()["limit_exceeded"] = r.limit_exceeded;
}


}  // namespace agentcore::process
