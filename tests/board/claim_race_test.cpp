// 8 threads make 100,000 claims over 1,000 tasks: no task is ever held by two
// workers at once. Each claim is checked against an owner table that only the
// holder clears, just before it releases the task.
#include "board/board_backends.hpp"
#include "support/etcd_cluster.hpp"
#include "support/temp_dir.hpp"

#include <agentcore/store/etcd_store.hpp>

#include <doctest/doctest.h>

#include <array>
#include <fstream>
#include <map>

#include <spawn.h>
#include <sys/wait.h>

extern char** environ;

using namespace agentcore;
using namespace agentcore::board;
using namespace std::chrono_literals;

namespace {

template <class Backend>
void claim_race(Backend& be, std::unique_ptr<store::store> s) {
  constexpr int tasks = 1000, threads = 8, total_claims = 100'000;
  task_board board(*s, {.claim_window = 32});
  for (int i = 0; i < tasks; ++i) REQUIRE(board.propose(test::make_task(fmt::format("t{:04}", i))).has_value());

  std::vector<std::atomic<int>> owner(tasks);
  for (auto& o : owner) o = -1;
  std::atomic<int> claims{0}, double_held{0}, errors{0};
  std::vector<std::thread> ts;
  for (int w = 0; w < threads; ++w)
    ts.emplace_back([&, w] {
      worker_id me{fmt::format("w{}", w)};
      auto lease = s->grant(3600s);
      if (!lease) {
        ++errors;
        return;
      }
      while (claims.load() < total_claims) {
        auto t = board.claim(me, *lease);
        if (!t || !*t) {
          ++errors;
          return;
        }
        int idx = std::stoi((*t)->id.str().substr(1));
        int expected = -1;
        if (!owner[idx].compare_exchange_strong(expected, w)) ++double_held;
        ++claims;
        owner[idx].store(-1);
        if (!board.release((*t)->id, me).has_value()) {
          ++errors;
          return;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK(errors.load() == 0);
  CHECK(double_held.load() == 0);
  CHECK(claims.load() >= total_claims);
  CHECK(board.stats().claims == static_cast<std::uint64_t>(claims.load()));
  // Every task is ready again, and the index agrees.
  CHECK(board.list(task_state::ready).value().size() == tasks);
  CHECK(s->range("board/ready/").value().kvs.size() == tasks);
  CHECK(s->range("board/claim/").value().kvs.empty());
  MESSAGE(Backend::name << ": " << claims.load() << " claims, " << board.stats().claim_conflicts << " conflicts");
  (void)be;
}

}  // namespace

TEST_CASE("board.claim_race.memory") {
  test::memory_backend be;
  claim_race(be, be.make());
}

TEST_CASE("board.claim_race.file") {
  // fsync is beside the point here (what matters is the compare-and-swap), and
  // 200,000 synced commits would make this a benchmark.
  test::file_backend be;
  auto s = store::file_store::open(be.dir.path(), {.clock = be.clock, .fsync = store::fsync_policy::none});
  REQUIRE(s.has_value());
  claim_race(be, std::move(*s));
}

// Four processes on one board in etcd, 2,500 claims each over 1,000 tasks
// (AGENTCORE_CLAIM_RACE_CLAIMS=25000 for the long run; a claim cycle costs
// seven etcd round trips, ~200 cycles/s here, so the suite runs the short
// one): no task is ever
// held by two of them at once. Each child checks with the board that it holds
// what it claimed and releases it (a release by a non-holder fails the child);
// here, every task's hold intervals, from all processes, must not overlap.
TEST_CASE("board.claim_race.four_processes_on_etcd") {
  long per_process = 2'500;
  if (const char* e = std::getenv("AGENTCORE_CLAIM_RACE_CLAIMS")) per_process = std::atol(e);
  constexpr int processes = 4, tasks = 1000;
  test::etcd_cluster cluster(1);
  // Compacting as it goes keeps etcd as fast at the last claim as at the first.
  std::string url = "etcd://" + cluster.endpoint(0).substr(7) + "/race?history_limit=20000";
  {
    auto s = store::etcd_store::connect(store::parse_etcd_url(url).value()).value();
    task_board board(*s);
    for (int i = 0; i < tasks; ++i) REQUIRE(board.propose(test::make_task(fmt::format("t{:04}", i))).has_value());
  }
  test::temp_dir dir("claim-race");
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p) {
    std::vector<std::string> args = {AGENTCORE_CLAIM_CHILD, url, fmt::format("p{}", p), std::to_string(per_process),
                                     (dir / fmt::format("p{}.log", p)).string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    REQUIRE(::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) == 0);
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "a claim child failed (its stderr says why)");
  }
  struct hold {
    long long from, until;
    int process;
  };
  std::map<std::string, std::vector<hold>> by_task;
  long total = 0;
  for (int p = 0; p < processes; ++p) {
    std::ifstream in(dir / fmt::format("p{}.log", p));
    std::string id;
    long long from, until;
    long mine = 0;
    while (in >> id >> from >> until) {
      by_task[id].push_back({from, until, p});
      ++mine;
    }
    CHECK(mine == per_process);
    total += mine;
  }
  CHECK(total == processes * per_process);
  int overlaps = 0;
  for (auto& [id, holds] : by_task) {
    std::sort(holds.begin(), holds.end(), [](const hold& a, const hold& b) { return a.from < b.from; });
    for (std::size_t i = 1; i < holds.size(); ++i)
      if (holds[i].from < holds[i - 1].until) ++overlaps;
  }
  CHECK(overlaps == 0);
  CHECK(by_task.size() > tasks / 2);  // the claims spread over the board
  auto s = store::etcd_store::connect(store::parse_etcd_url(url).value()).value();
  task_board board(*s);
  CHECK(board.list(task_state::ready).value().size() == tasks);  // every task released, none lost
}
