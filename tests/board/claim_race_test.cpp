// 8 threads make 100,000 claims over 1,000 tasks: no task is ever held by two
// workers at once. Each claim is checked against an owner table that only the
// holder clears, just before it releases the task.
#include "board/board_backends.hpp"

#include <doctest/doctest.h>

#include <array>

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
