// A child process commits in a loop and is SIGKILLed at random moments, 50
// times. After each kill, reopening must find every acknowledged commit, and
// the store must take new commits.
#include "support/temp_dir.hpp"

#include <agentcore/store/file_store.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <csignal>
#include <map>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

using namespace agentcore;
using namespace agentcore::store;

namespace {

struct child_run {
  std::map<int, std::vector<long>> acked;  // thread -> acknowledged n
  int status = 0;
};

child_run run_and_kill(const std::string& dir, long start, std::chrono::milliseconds after) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::string exe = AGENTCORE_CRASH_CHILD;
  std::string start_s = std::to_string(start);
  char* argv[] = {exe.data(), const_cast<char*>(dir.c_str()), start_s.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(::posix_spawn(&pid, exe.c_str(), &fa, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);

  std::string out;
  char buf[65536];
  // Reads what the child prints (so the pipe never fills and blocks it) until
  // `until`, or until `done` says so.
  auto read_until = [&](std::chrono::steady_clock::time_point until, auto done) {
    while (!done() && std::chrono::steady_clock::now() < until) {
      timeval tv{0, 2000};
      fd_set set;
      FD_ZERO(&set);
      FD_SET(fds[0], &set);
      if (::select(fds[0] + 1, &set, nullptr, nullptr, &tv) > 0) {
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n <= 0) return;
        out.append(buf, static_cast<std::size_t>(n));
      }
    }
  };
  // Wait for the child to have opened (and recovered) the store, then kill it
  // `after` later, so every round kills it while it commits.
  read_until(std::chrono::steady_clock::now() + std::chrono::seconds(120),
             [&] { return out.find("ready\n") != std::string::npos; });
  read_until(std::chrono::steady_clock::now() + after, [] { return false; });
  ::kill(pid, SIGKILL);
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  child_run r;
  ::waitpid(pid, &r.status, 0);
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream l(line);
    int t;
    long n;
    if (l >> t >> n) r.acked[t].push_back(n);
  }
  return r;
}

}  // namespace

TEST_CASE("store.file.crash_loses_no_acknowledged_commit") {
  test::temp_dir dir("crash");
  std::mt19937 rng(20261128);
  std::uniform_int_distribution<int> ms(5, 120);
  long start = 0;
  std::size_t total_acked = 0;
  for (int round = 0; round < 50; ++round) {
    CAPTURE(round);
    auto run = run_and_kill(dir.path().string(), start, std::chrono::milliseconds(ms(rng)));
    REQUIRE_MESSAGE(WIFSIGNALED(run.status), "the child exited on its own: it failed to open or commit");
    auto s = file_store::open(dir.path());
    REQUIRE_MESSAGE(s.has_value(), s.error().message());
    for (auto& [t, ns] : run.acked) {
      for (long n : ns) {
        auto kv = (*s)->get(fmt::format("t{}/{:08}", t, n));
        REQUIRE(kv.has_value());
        REQUIRE_MESSAGE(kv->has_value(), fmt::format("acknowledged commit t{}/{} lost in round {}", t, n, round));
      }
      total_acked += ns.size();
    }
    // The store works after recovery.
    auto c = (*s)->commit(txn().put(fmt::format("parent/{}", round), "ok"));
    REQUIRE(c.has_value());
    REQUIRE(c->succeeded);
    start += 1'000'000;  // fresh keys each round
  }
  auto s = file_store::open(dir.path()).value();
  CHECK(s->range("parent/").value().kvs.size() == 50);
  MESSAGE("acknowledged commits checked: " << total_acked);
  CHECK(total_acked > 0);
}
