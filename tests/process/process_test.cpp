#include "support/temp_dir.hpp"
#include "support/sandbox.hpp"

#include <agentcore/process/process.hpp>

#include <doctest/doctest.h>

#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {
process::run_result run_ok(const std::string& cmd, process::run_options o) {
  auto r = process::run(cmd, o);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  return *r;
}
}  // namespace

TEST_CASE("process.exit_status_log_and_directory") {
  test::temp_dir dir("check");
  auto ok = run_ok("echo hello; echo oops >&2; pwd", {.working_directory = dir.path()});
  CHECK(ok.passed());
  CHECK(ok.outcome() == "passed");
  CHECK(ok.log.find("hello\n") != std::string::npos);
  CHECK(ok.log.find("oops\n") != std::string::npos);  // stderr too
  CHECK(ok.log.find(std::filesystem::canonical(dir.path()).string()) != std::string::npos);
  auto bad = run_ok("exit 3", {.working_directory = dir.path()});
  CHECK_FALSE(bad.passed());
  CHECK(bad.exit_code == 3);
  CHECK(bad.outcome() == "exit 3");
  auto missing = run_ok("no-such-command-agentcore --x", {.working_directory = dir.path()});
  CHECK(missing.exit_code == 127);
  CHECK(missing.outcome().find("not found") != std::string::npos);
  CHECK(missing.log.find("no-such-command-agentcore") != std::string::npos);
  auto nodir = process::run("true", {.working_directory = dir.path() / "nope"});
  REQUIRE_FALSE(nodir.has_value());
  CHECK(nodir.error().message().find("nope") != std::string::npos);
}

TEST_CASE("process.time_limit_kills_the_whole_process_group") {
  test::temp_dir dir("check");
  auto started = std::chrono::steady_clock::now();
  // Unsandboxed: the pid written must be a pid of this machine's namespace.
  auto r = run_ok("sleep 100 & echo $! > bg.pid; sleep 100",
               {.working_directory = dir.path(), .timeout = 300ms, .sandbox = {.mode = process::sandbox_mode::unconfined_host_access}});
  CHECK(r.timed_out);
  CHECK_FALSE(r.passed());
  CHECK(r.outcome().find("timed out") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  std::ifstream f(dir.path() / "bg.pid");
  pid_t bg = 0;
  f >> bg;
  REQUIRE(bg > 0);
  // The background child is gone too (give the kernel a moment to reap it).
  // Killed means gone, or a zombie waiting for init to reap it.
  auto dead = [](pid_t pid) {
    if (::kill(pid, 0) != 0) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_s, comm, state;
    stat >> pid_s >> comm >> state;
    return state == "Z" || state == "X";
  };
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = dead(bg);
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  CHECK(gone);
}

TEST_CASE("process.a_finished_command_leaves_no_stray_children") {
  test::temp_dir dir("check");
  auto started = std::chrono::steady_clock::now();
  auto r = run_ok("sleep 100 & echo done", {.working_directory = dir.path(), .timeout = 30s});
  CHECK(r.passed());
  CHECK(std::chrono::steady_clock::now() - started < 10s);  // did not wait for the sleep
}

TEST_CASE("process.output_flood_is_capped_head_and_tail") {
  test::temp_dir dir("check");
  auto r = run_ok("echo FIRST; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo LAST",
               {.working_directory = dir.path(), .output_limit = 4096});
  CHECK(r.passed());
  CHECK(r.truncated);
  CHECK(r.output_bytes > 5'000'000);
  CHECK(r.log.size() < 4096 + 100);
  CHECK(r.log.starts_with("FIRST\n"));
  CHECK(r.log.find("LAST\n") != std::string::npos);
  CHECK(r.log.find("bytes elided") != std::string::npos);
}

TEST_CASE("process.environment_is_an_allow_list") {
  test::temp_dir dir("check");
  ::setenv("AGENTCORE_TEST_API_KEY", "sk-very-secret", 1);
  auto r = run_ok("env", {.working_directory = dir.path(), .env_set = {{"AGENTCORE_TASK", "t-12"}}});
  ::unsetenv("AGENTCORE_TEST_API_KEY");
  CHECK(r.passed());
  CHECK(r.log.find("sk-very-secret") == std::string::npos);
  CHECK(r.log.find("AGENTCORE_TASK=t-12") != std::string::npos);
  CHECK(r.log.find("PATH=") != std::string::npos);
  auto bare = run_ok("env", {.working_directory = dir.path(), .env_allow = {}});
  CHECK(bare.log.find("HOME=") == std::string::npos);
}

TEST_CASE("process.a_daemon_holding_the_pipe_does_not_hang_the_check") {
  test::temp_dir dir("check");
  auto started = std::chrono::steady_clock::now();
  // setsid leaves the process group, so killing the group misses it; it keeps
  // stdout open. The check must still end soon after the shell exits.
  auto r = run_ok("setsid sleep 30 & echo $! > daemon.pid; echo started",
               {.working_directory = dir.path(), .timeout = 20s, .sandbox = {.mode = process::sandbox_mode::unconfined_host_access}});
  CHECK(r.passed());
  CHECK_FALSE(r.timed_out);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  std::ifstream f(dir.path() / "daemon.pid");
  pid_t daemon = 0;
  f >> daemon;
  if (daemon > 0) ::kill(daemon, SIGKILL);  // it escaped the group by design; end it here
}

TEST_CASE("process.stdin_streamed_stdout_and_stop") {
  test::temp_dir dir("check");
  // Standard input is fed; standard output arrives apart from standard error.
  std::string streamed;
  auto r = process::run("tr a-z A-Z; echo oops >&2",
                           {.working_directory = dir.path(),
                            .stdin_data = "hello from the host\n",
                            .on_stdout = [&](std::string_view s) { streamed += s; }});
  REQUIRE(r.has_value());
  CHECK(r->passed());
  CHECK(streamed == "HELLO FROM THE HOST\n");
  CHECK(r->log.find("oops") != std::string::npos);
  CHECK(r->log.find("HELLO") != std::string::npos);

  // A stop request kills the whole group promptly.
  std::atomic<bool> stop{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    stop = true;
  });
  auto t0 = std::chrono::steady_clock::now();
  auto stopped = process::run("sleep 30 & sleep 30", {.working_directory = dir.path(), .stop = &stop});
  stopper.join();
  REQUIRE(stopped.has_value());
  CHECK_FALSE(stopped->passed());
  CHECK_FALSE(stopped->timed_out);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}

namespace {
// Processes of this machine whose command line contains `marker`.
int processes_with(const std::string& marker) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::ifstream f(e.path() / "cmdline");
    std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if (cmd.find(marker) != std::string::npos && cmd.find("bwrap") == std::string::npos) ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("process.sandbox_confines_writes_tmp_and_network") {
  if (!test::sandbox_or_skip()) return;
  test::temp_dir dir("sandbox");
  auto wd = dir.path() / "worktree";
  auto outside = dir.path() / "outside";
  std::filesystem::create_directories(wd);
  std::filesystem::create_directories(outside);
  std::string host_tmp_marker = "/tmp/agentcore-sandbox-" + std::to_string(::getpid());

  auto r = run_ok("echo inside > made.txt && cat made.txt && echo escaped > " + (outside / "x.txt").string() +
                   "; echo tmp > " + host_tmp_marker + " && cat " + host_tmp_marker + "; echo $TMPDIR",
               {.working_directory = wd});
  CHECK(r.sandboxed);
  CHECK(r.warning.empty());
  CHECK(std::filesystem::exists(wd / "made.txt"));       // the working directory is writable
  CHECK_FALSE(std::filesystem::exists(outside / "x.txt"));  // nothing else is
  // (under /tmp the outside directory does not even exist inside; elsewhere it is read-only)
  CHECK((r.log.find("Read-only file system") != std::string::npos || r.log.find("nonexistent") != std::string::npos ||
         r.log.find("No such file") != std::string::npos));
  CHECK(r.log.find("tmp\n") != std::string::npos);          // a private /tmp works inside...
  CHECK_FALSE(std::filesystem::exists(host_tmp_marker));  // ...and is not the machine's
  CHECK(r.log.find("/tmp\n") != std::string::npos);         // TMPDIR points at it

  // Extra writable paths are the host's to grant.
  auto granted = run_ok("echo ok > " + (outside / "y.txt").string(),
                     {.working_directory = wd, .sandbox = {.writable = {outside}}});
  CHECK(granted.passed());
  CHECK(std::filesystem::exists(outside / "y.txt"));

  // No network: a listening socket on this machine's loopback is out of reach.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  auto port = std::to_string(acceptor.local_endpoint().port());
  std::string connect = "bash -c 'echo hi > /dev/tcp/127.0.0.1/" + port + "' && echo CONNECTED";
  auto cut = run_ok(connect, {.working_directory = wd});
  CHECK(cut.log.find("CONNECTED") == std::string::npos);
  auto net = run_ok(connect, {.working_directory = wd, .sandbox = {.network = true}});
  CHECK_MESSAGE(net.log.find("CONNECTED") != std::string::npos, net.log);

  // The environment is still the allow-list inside.
  ::setenv("AGENTCORE_TEST_API_KEY", "sk-sandboxed-secret", 1);
  auto env = run_ok("env", {.working_directory = wd});
  ::unsetenv("AGENTCORE_TEST_API_KEY");
  CHECK(env.log.find("sk-sandboxed-secret") == std::string::npos);
}

TEST_CASE("process.sandboxed_time_limit_ends_everything_inside") {
  if (!test::sandbox_or_skip()) return;
  test::temp_dir dir("sandbox");
  std::string marker = "sleep 97." + std::to_string(::getpid() % 1000);
  auto started = std::chrono::steady_clock::now();
  auto r = run_ok("(setsid " + marker + " &) ; " + marker + " & " + marker, {.working_directory = dir.path(), .timeout = 300ms});
  CHECK(r.sandboxed);
  CHECK(r.timed_out);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  int left = 1;
  for (int i = 0; i < 300 && left > 0; ++i) {
    left = processes_with(marker);
    if (left > 0) std::this_thread::sleep_for(10ms);
  }
  CHECK(left == 0);  // even the one that left the process group
}

TEST_CASE("process.sandbox_missing_is_an_error_unless_the_host_gives_up_isolation_explicitly") {
  test::temp_dir dir("sandbox");
  process::sandbox_options missing{.mode = process::sandbox_mode::required, .bubblewrap = "/nonexistent/bwrap"};
  auto st = process::probe_sandbox(missing);
  CHECK_FALSE(st.available);
  auto req = process::run("true", {.working_directory = dir.path(), .sandbox = missing});
  REQUIRE_FALSE(req.has_value());
  CHECK(req.error().message().find("/nonexistent/bwrap") != std::string::npos);
  CHECK(req.error().message().find("without a sandbox") != std::string::npos);
  CHECK(req.error().message().find("unconfined_host_access") != std::string::npos);
  // The default is the same refusal, with how to install bubblewrap.
  auto dflt = process::run("true", {.working_directory = dir.path(), .sandbox = {.bubblewrap = "/nonexistent/bwrap"}});
  REQUIRE_FALSE(dflt.has_value());
  auto off = run_ok("echo ran", {.working_directory = dir.path(), .sandbox = {.mode = process::sandbox_mode::unconfined_host_access}});
  CHECK_FALSE(off.sandboxed);
  CHECK(off.warning.empty());  // the host's choice: nothing to warn about
}

// The bounds on what a command writes hold with or without the sandbox: a
// slow writer is stopped while it runs, a fast one that finished is over the
// bound all the same, and one within the bounds passes.
TEST_CASE("process.writes_past_a_bound_stop_the_command") {
  test::temp_dir dir("check-bounds");
  process::run_options o{.working_directory = dir.path(),
                        .max_written_bytes = 1 << 20,
                        .max_new_entries = 50,
                        .sandbox = {.mode = process::sandbox_mode::unconfined_host_access}};
  auto within = run_ok("head -c 100000 /dev/zero > small && mkdir d && touch d/a d/b", o);
  CHECK(within.passed());
  CHECK(within.limit_exceeded.empty());
  auto fast = run_ok("head -c 5000000 /dev/urandom > big", o);
  CHECK_FALSE(fast.passed());
  CHECK(fast.exit_code == 0);  // it ran to its end; the bound is what failed
  CHECK(fast.outcome().find("stopped: wrote") != std::string::npos);
  CHECK(fast.outcome().find("the bound is 1.0 MiB") != std::string::npos);
  std::filesystem::remove(dir.path() / "big");
  auto slow = run_ok("head -c 5000000 /dev/urandom > big2; sleep 30", o);
  CHECK_FALSE(slow.passed());
  CHECK(slow.duration < 20s);  // stopped, not left to sleep
  CHECK(slow.limit_exceeded.find("wrote") != std::string::npos);
  std::filesystem::remove(dir.path() / "big2");
  auto entries = run_ok("mkdir many && cd many && seq 1 500 | xargs touch; sleep 30", o);
  CHECK_FALSE(entries.passed());
  CHECK(entries.duration < 20s);
  CHECK(entries.limit_exceeded.find("new files and directories") != std::string::npos);
  // Counted from a given starting point: what was there before is not new.
  std::filesystem::remove_all(dir.path() / "many");
  auto before = process::measure_disk_usage(dir.path());
  o.written_since = process::disk_usage{before.bytes, before.entries - 3};
  auto since = run_ok("touch e1", o);
  CHECK(since.passed());  // 4 new entries counted, within 50
  REQUIRE(before.bytes >= 100000);  // "small", written by the first command
  o.written_since = process::disk_usage{0, before.entries};
  o.max_written_bytes = 50000;
  auto over = run_ok("true", o);
  CHECK_FALSE(over.passed());  // "small" counts: written after the starting point given
  CHECK(over.limit_exceeded.find("the bound is 48.8 KiB") != std::string::npos);
}

// A root host killed with -9 leaves the pids cgroup of the command it was
// running; the next host's first sandboxed command removes the empty ones
// named for processes that are gone (and no others).
TEST_CASE("process.stale_pids_cgroups_of_dead_hosts_are_removed") {
  if (!test::sandbox_or_skip()) return;
  if (::geteuid() != 0) {
    MESSAGE("SKIPPED (pids cgroups are made for root hosts only)");
    return;
  }
  std::filesystem::path base;
  std::ifstream f("/proc/self/cgroup");
  for (std::string line; std::getline(f, line);)
    if (auto a = line.find(":pids:"); a != std::string::npos)
      base = std::filesystem::path("/sys/fs/cgroup/pids") / std::filesystem::path(line.substr(a + 6)).relative_path();
  if (base.empty() || ::access(base.c_str(), W_OK) != 0) {
    MESSAGE("SKIPPED (no writable cgroup v1 pids hierarchy here)");
    return;
  }
  pid_t dead = 0;  // a pid no process has
  for (pid_t p = 4000000; p > 3000000 && !dead; --p)
    if (::kill(p, 0) != 0 && errno == ESRCH) dead = p;
  REQUIRE(dead > 0);
  auto stale = base / ("agentcore-" + std::to_string(dead) + "-0");
  auto alive = base / ("agentcore-" + std::to_string(::getppid()) + "-0");  // its host still runs
  std::filesystem::create_directory(stale);
  std::filesystem::create_directory(alive);
  REQUIRE(std::filesystem::exists(stale));
  test::temp_dir dir("check-cgroup");
  CHECK(run_ok("true", {.working_directory = dir.path()}).passed());
  CHECK_FALSE(std::filesystem::exists(stale));
  CHECK(std::filesystem::exists(alive));
  std::filesystem::remove(alive);
}

// A command inherits nothing of the host's but what it is given: no open
// descriptor (a host file opened without O_CLOEXEC), no ignored or blocked
// signal (an asio host ignores SIGPIPE: `cmd | head` must still end cmd);
// a program that cannot be started is an error that names it.
TEST_CASE("process.a_command_inherits_no_descriptor_or_signal_state_of_the_host") {
  test::temp_dir dir("check");
  int leaked = ::open((dir / "host-secret").c_str(), O_WRONLY | O_CREAT, 0600);  // no O_CLOEXEC
  REQUIRE(leaked >= 0);
  auto old_pipe = ::signal(SIGPIPE, SIG_IGN);
  sigset_t block, old_mask;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  for (auto mode : {process::sandbox_mode::required, process::sandbox_mode::unconfined_host_access}) {
    CAPTURE(static_cast<int>(mode));
    process::run_options o{.working_directory = dir.path()};
    o.sandbox.mode = mode;
    if (mode == process::sandbox_mode::required && !test::sandbox_or_skip()) continue;
    // The shell's open files (by name: the shell keeps some of its own), and
    // its signal state read with builtins only (while it forks, dash blocks
    // every signal for a moment).
    auto r = run_ok("ls -l /proc/$$/fd > fds.txt; cat fds.txt; "
                 "while read -r l; do case $l in SigBlk*|SigIgn*) echo \"$l\" ;; esac; done < /proc/$$/status",
                 o);
    INFO(r.log);
    CHECK(r.passed());
    CHECK(r.log.find("0 -> /dev/null") != std::string::npos);  // the listing is there
    CHECK(r.log.find("host-secret") == std::string::npos);  // and nothing the host had open
    // SIGPIPE is signal 13 (bit 0x1000), SIGTERM 15 (0x4000): neither ignored nor blocked.
    for (const char* line : {"SigBlk:", "SigIgn:"}) {
      auto at = r.log.find(line);
      REQUIRE(at != std::string::npos);
      auto mask = std::strtoull(r.log.c_str() + at + 7, nullptr, 16);
      CHECK_MESSAGE((mask & 0x1000) == 0, line << " has SIGPIPE");
      CHECK_MESSAGE((mask & 0x4000) == 0, line << " has SIGTERM");
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::signal(SIGPIPE, old_pipe);
  ::close(leaked);
  process::run_options o{.working_directory = dir.path(), .shell = "/nonexistent/agentcore-sh"};
  o.sandbox.mode = process::sandbox_mode::unconfined_host_access;
  auto missing = process::run("true", o);
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message().find("/nonexistent/agentcore-sh") != std::string::npos);
  CHECK(missing.error().message().find("No such file") != std::string::npos);
}
