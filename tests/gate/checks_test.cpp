#include "support/temp_dir.hpp"

#include <agentcore/gate/checks.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <thread>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {
gate::check_result run(const std::string& cmd, gate::check_options o) {
  auto r = gate::run_check(cmd, o);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  return *r;
}
}  // namespace

TEST_CASE("gate.checks.exit_status_log_and_directory") {
  test::temp_dir dir("check");
  auto ok = run("echo hello; echo oops >&2; pwd", {.working_directory = dir.path()});
  CHECK(ok.passed());
  CHECK(ok.outcome() == "passed");
  CHECK(ok.log.find("hello\n") != std::string::npos);
  CHECK(ok.log.find("oops\n") != std::string::npos);  // stderr too
  CHECK(ok.log.find(std::filesystem::canonical(dir.path()).string()) != std::string::npos);
  auto bad = run("exit 3", {.working_directory = dir.path()});
  CHECK_FALSE(bad.passed());
  CHECK(bad.exit_code == 3);
  CHECK(bad.outcome() == "exit 3");
  auto missing = run("no-such-command-agentcore --x", {.working_directory = dir.path()});
  CHECK(missing.exit_code == 127);
  CHECK(missing.outcome().find("not found") != std::string::npos);
  CHECK(missing.log.find("no-such-command-agentcore") != std::string::npos);
  auto nodir = gate::run_check("true", {.working_directory = dir.path() / "nope"});
  REQUIRE_FALSE(nodir.has_value());
  CHECK(nodir.error().message().find("nope") != std::string::npos);
}

TEST_CASE("gate.checks.time_limit_kills_the_whole_process_group") {
  test::temp_dir dir("check");
  auto started = std::chrono::steady_clock::now();
  auto r = run("sleep 100 & echo $! > bg.pid; sleep 100", {.working_directory = dir.path(), .timeout = 300ms});
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

TEST_CASE("gate.checks.a_finished_command_leaves_no_stray_children") {
  test::temp_dir dir("check");
  auto started = std::chrono::steady_clock::now();
  auto r = run("sleep 100 & echo done", {.working_directory = dir.path(), .timeout = 30s});
  CHECK(r.passed());
  CHECK(std::chrono::steady_clock::now() - started < 10s);  // did not wait for the sleep
}

TEST_CASE("gate.checks.output_flood_is_capped_head_and_tail") {
  test::temp_dir dir("check");
  auto r = run("echo FIRST; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo LAST",
               {.working_directory = dir.path(), .output_limit = 4096});
  CHECK(r.passed());
  CHECK(r.truncated);
  CHECK(r.output_bytes > 5'000'000);
  CHECK(r.log.size() < 4096 + 100);
  CHECK(r.log.starts_with("FIRST\n"));
  CHECK(r.log.find("LAST\n") != std::string::npos);
  CHECK(r.log.find("bytes elided") != std::string::npos);
}

TEST_CASE("gate.checks.environment_is_an_allow_list") {
  test::temp_dir dir("check");
  ::setenv("AGENTCORE_TEST_API_KEY", "sk-very-secret", 1);
  auto r = run("env", {.working_directory = dir.path(), .env_set = {{"AGENTCORE_TASK", "t-12"}}});
  ::unsetenv("AGENTCORE_TEST_API_KEY");
  CHECK(r.passed());
  CHECK(r.log.find("sk-very-secret") == std::string::npos);
  CHECK(r.log.find("AGENTCORE_TASK=t-12") != std::string::npos);
  CHECK(r.log.find("PATH=") != std::string::npos);
  auto bare = run("env", {.working_directory = dir.path(), .env_allow = {}});
  CHECK(bare.log.find("HOME=") == std::string::npos);
}

TEST_CASE("gate.checks.a_daemon_holding_the_pipe_does_not_hang_the_check") {
  test::temp_dir dir("check");
  auto started = std::chrono::steady_clock::now();
  // setsid leaves the process group, so killing the group misses it; it keeps
  // stdout open. The check must still end soon after the shell exits.
  auto r = run("setsid sleep 30 & echo $! > daemon.pid; echo started",
               {.working_directory = dir.path(), .timeout = 20s});
  CHECK(r.passed());
  CHECK_FALSE(r.timed_out);
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  std::ifstream f(dir.path() / "daemon.pid");
  pid_t daemon = 0;
  f >> daemon;
  if (daemon > 0) ::kill(daemon, SIGKILL);  // it escaped the group by design; end it here
}

TEST_CASE("gate.checks.stdin_streamed_stdout_and_stop") {
  test::temp_dir dir("check");
  // Standard input is fed; standard output arrives apart from standard error.
  std::string streamed;
  auto r = gate::run_check("tr a-z A-Z; echo oops >&2",
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
  auto stopped = gate::run_check("sleep 30 & sleep 30", {.working_directory = dir.path(), .stop = &stop});
  stopper.join();
  REQUIRE(stopped.has_value());
  CHECK_FALSE(stopped->passed());
  CHECK_FALSE(stopped->timed_out);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
}
