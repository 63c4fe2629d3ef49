// The merge queue's policy alone (queue_policy.hpp), over abstract changes
// and check outcomes: properties that hold for every seed, and the rules a
// user configures (batch size, batch wait, priorities, optimistic interval).
#include <agentcore/gate/queue_policy.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace agentcore;
using namespace agentcore::gate;
using namespace std::chrono_literals;

namespace {

enum class fate { none, landed, rejected, dropped };

struct run_result {
  std::map<std::string, fate> fates;
  std::map<std::string, int> final_count;  // how many final outcomes each change got
  std::vector<std::string> landed_order;
  std::size_t tests = 0;
};

// Drives one batch_landing to the end. A group passes when none of its
// members is bad (and, with `flake`, unless the check flakes); a change in
// `conflicting` drops out the first time it is merged.
run_result drive(const std::vector<std::string>& batch, const std::set<std::string>& bad,
                 const std::set<std::string>& conflicting, std::mt19937& rng, double flake = 0, double moved = 0) {
  run_result r;
  for (const auto& id : batch) r.fates[id] = fate::none;
  batch_landing plan(batch);
  std::bernoulli_distribution flakes(flake), moves(moved);
  std::size_t guard = 0;
  while (auto group = plan.next()) {
    REQUIRE(++guard < 10'000);  // it ends
    bool dropped = false;
    for (const auto& id : *group)
      if (conflicting.count(id) && r.fates[id] == fate::none) {
        plan.drop(id);
        r.fates[id] = fate::dropped;
        ++r.final_count[id];
        dropped = true;
      }
    if (dropped) continue;
    REQUIRE(!group->empty());
    ++r.tests;
    bool passed = std::none_of(group->begin(), group->end(), [&](const std::string& id) { return bad.count(id) > 0; });
    if (passed && flakes(rng)) passed = false;
    auto o = plan.tested(passed);
    CHECK(int(!o.land.empty()) + int(o.reject.has_value()) + int(o.split) == 1);
    if (!o.land.empty()) {
      CHECK(o.land == *group);
      if (moves(rng)) {  // the branch moved under it: the same group again
        plan.retest(o.land);
        REQUIRE(plan.next() == *group);
        continue;
      }
      for (const auto& id : o.land) {
        r.fates[id] = fate::landed;
        ++r.final_count[id];
        r.landed_order.push_back(id);
      }
    } else if (o.reject) {
      CHECK(group->size() == 1);
      r.fates[*o.reject] = fate::rejected;
      ++r.final_count[*o.reject];
    } else {
      CHECK(group->size() > 1);
    }
  }
  return r;
}

std::vector<std::string> names(std::size_t n, std::string_view prefix = "c") {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(fmt::format("{}{}", prefix, i));
  return out;
}

std::size_t ceil_log2(std::size_t n) {
  std::size_t k = 0;
  while ((std::size_t{1} << k) < n) ++k;
  return k;
}

}  // namespace

TEST_CASE("gate.queue_policy.batch_landing_gives_every_change_one_outcome_and_never_lands_a_failing_one") {
  for (unsigned seed = 1; seed <= 2000; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    std::size_t n = std::uniform_int_distribution<std::size_t>(1, 16)(rng);
    auto batch = names(n);
    std::set<std::string> bad, conflicting;
    std::bernoulli_distribution is_bad(std::uniform_real_distribution<double>(0, 0.5)(rng)), conflicts(0.1);
    for (const auto& id : batch) {
      if (is_bad(rng)) bad.insert(id);
      else if (conflicts(rng)) conflicting.insert(id);
    }
    auto r = drive(batch, bad, conflicting, rng);
    for (const auto& id : batch) {
      CAPTURE(id);
      CHECK(r.final_count[id] == 1);  // exactly one final verdict
      if (bad.count(id)) CHECK(r.fates[id] == fate::rejected);
      else if (conflicting.count(id)) CHECK(r.fates[id] == fate::dropped);
      else CHECK(r.fates[id] == fate::landed);  // a good change is never rejected for a bad neighbour
    }
    // Landed in the batch's order, each once.
    std::vector<std::string> expected;
    for (const auto& id : batch)
      if (r.fates[id] == fate::landed) expected.push_back(id);
    CHECK(r.landed_order == expected);
    // Bisection's cost: one test when all pass, at most 1 + 2 per bad change per level.
    if (bad.empty()) CHECK(r.tests <= 1);
    CHECK(r.tests <= 1 + 2 * bad.size() * std::max<std::size_t>(1, ceil_log2(n)));
  }
}

TEST_CASE("gate.queue_policy.flaky_checks_and_a_moving_branch_still_end_with_one_outcome_each") {
  for (unsigned seed = 1; seed <= 1000; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto batch = names(std::uniform_int_distribution<std::size_t>(1, 12)(rng));
    std::set<std::string> bad;
    for (const auto& id : batch)
      if (std::bernoulli_distribution(0.2)(rng)) bad.insert(id);
    auto r = drive(batch, bad, {}, rng, /*flake=*/0.2, /*moved=*/0.2);
    std::set<std::string> landed(r.landed_order.begin(), r.landed_order.end());
    CHECK(landed.size() == r.landed_order.size());  // nothing lands twice
    for (const auto& id : batch) {
      CAPTURE(id);
      CHECK(r.final_count[id] == 1);
      if (bad.count(id)) CHECK(r.fates[id] == fate::rejected);  // a flake never makes a failing change pass
    }
  }
}

TEST_CASE("gate.queue_policy.bisection_tests_the_first_half_before_the_second") {
  std::mt19937 rng(7);
  batch_landing plan(names(4));
  CHECK(plan.next() == names(4));
  auto o = plan.tested(false);
  CHECK(o.split);
  CHECK(plan.next() == std::vector<std::string>{"c0", "c1"});
  o = plan.tested(true);
  CHECK(o.land == std::vector<std::string>{"c0", "c1"});
  CHECK(plan.next() == std::vector<std::string>{"c2", "c3"});  // tested on top of the landed half
  o = plan.tested(false);
  CHECK(plan.next() == std::vector<std::string>{"c2"});
  plan.drop("c2");  // did not merge on the new tip
  CHECK(plan.next() == std::vector<std::string>{"c3"});
  o = plan.tested(false);
  CHECK(o.reject == "c3");
  CHECK(!plan.next());
  // An empty batch has nothing to do; dropping every member ends it.
  CHECK(!batch_landing({}).next());
  batch_landing two(names(2));
  two.drop("c0");
  two.drop("c1");
  CHECK(!two.next());
}

TEST_CASE("gate.queue_policy.culprit_search_finds_the_first_bad_merge") {
  for (std::size_t n = 1; n <= 70; ++n)
    for (std::size_t culprit = 0; culprit < n; ++culprit) {
      CAPTURE(n);
      CAPTURE(culprit);
      culprit_search s(n);
      std::size_t probes = 0;
      while (auto mid = s.probe()) {
        REQUIRE(*mid < n);
        ++probes;
        s.tested(*mid < culprit);  // the branch at merge i passes while i is before the culprit
      }
      CHECK(s.culprit() == culprit);
      CHECK(probes <= culprit_search::max_probes(n));
      CHECK(culprit_search::max_probes(n) == ceil_log2(n));
    }
  CHECK(!culprit_search(0).probe());
}

TEST_CASE("gate.queue_policy.what_a_step_takes") {
  queue_policy serial({.mode = policy::serial, .batch_size = 8});
  CHECK(serial.most() == 1);
  CHECK(serial.take(0, 0ms) == 0);
  CHECK(serial.take(5, 0ms) == 1);
  CHECK(!serial.check_due(100));

  queue_policy batch({.mode = policy::batch, .batch_size = 4, .batch_wait = 100ms});
  CHECK(batch.most() == 4);
  CHECK(batch.take(9, 0ms) == 4);     // full: at once
  CHECK(batch.take(3, 50ms) == 0);    // not full, young: wait for company
  CHECK(batch.take(3, 100ms) == 3);   // waited long enough
  queue_policy eager({.mode = policy::batch, .batch_size = 4});
  CHECK(eager.take(3, 0ms) == 3);
  CHECK(queue_policy({.mode = policy::batch, .batch_size = 0}).most() == 1);

  queue_policy optimistic({.mode = policy::optimistic, .optimistic_every = 3});
  CHECK(optimistic.take(5, 0ms) == 1);
  CHECK(!optimistic.check_due(2));
  CHECK(optimistic.check_due(3));
  CHECK(queue_policy({.mode = policy::optimistic, .optimistic_every = 0}).check_due(1));
}

TEST_CASE("gate.queue_policy.landing_order_is_priority_then_arrival") {
  std::vector<queued_change> q{{"late-urgent", 5, 30}, {"a", 0, 10}, {"b", 0, 20}, {"low", -3, 1}, {"tie-b", 0, 10}};
  std::sort(q.begin(), q.end(), queue_policy::before);
  std::vector<std::string> order;
  for (const auto& c : q) order.push_back(c.id);
  CHECK(order == std::vector<std::string>{"late-urgent", "a", "tie-b", "b", "low"});
  // The gate's queue keys sort by rank, ascending: the same order.
  CHECK(queue_policy::rank(5) < queue_policy::rank(0));
  CHECK(queue_policy::rank(5000) == queue_policy::rank(1000));  // clamped
  CHECK(queue_policy::rank(-5000) == queue_policy::rank(-1000));
  CHECK(queue_policy::rank(-1000) < 10000);  // four digits in the key
}

TEST_CASE("gate.queue_policy.a_whole_queue_lands_each_good_change_once_in_priority_order") {
  // Changes arrive over time with priorities; each step sorts the queue,
  // takes what the policy says and lands it with batch_landing. No change
  // lands twice, each gets one verdict, and none that fails lands.
  for (policy mode : {policy::serial, policy::batch}) {
    for (unsigned seed = 1; seed <= 50; ++seed) {
      CAPTURE(seed);
      std::mt19937 rng(seed);
      queue_policy p({.mode = mode, .batch_size = 6});
      std::vector<queued_change> queue;
      std::set<std::string> bad;
      std::map<std::string, int> verdicts;
      std::vector<std::string> landed;
      std::uint64_t clock = 0;
      int next_id = 0;
      for (int step = 0; step < 400; ++step) {
        std::size_t arrivals = std::uniform_int_distribution<std::size_t>(0, 3)(rng);
        for (std::size_t i = 0; i < arrivals && next_id < 300; ++i) {
          std::string id = fmt::format("c{}", next_id++);
          queue.push_back({id, std::uniform_int_distribution<int>(-2, 2)(rng), ++clock});
          if (std::bernoulli_distribution(0.15)(rng)) bad.insert(id);
        }
        std::sort(queue.begin(), queue.end(), queue_policy::before);
        std::size_t take = p.take(queue.size(), 0ms);
        if (take == 0) continue;
        // Higher priorities first: nothing taken ranks after something left.
        for (std::size_t i = take; i < queue.size(); ++i) CHECK(!queue_policy::before(queue[i], queue[take - 1]));
        std::vector<std::string> ids;
        for (std::size_t i = 0; i < take; ++i) ids.push_back(queue[i].id);
        queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(take));
        auto r = drive(ids, bad, {}, rng);
        for (const auto& [id, n] : r.final_count) verdicts[id] += n;
        landed.insert(landed.end(), r.landed_order.begin(), r.landed_order.end());
      }
      CHECK(queue.empty());
      CHECK(verdicts.size() == static_cast<std::size_t>(next_id));
      for (const auto& [id, n] : verdicts) CHECK(n == 1);
      std::set<std::string> once(landed.begin(), landed.end());
      CHECK(once.size() == landed.size());
      for (const auto& id : landed) CHECK(!bad.count(id));
      CHECK(landed.size() + bad.size() == static_cast<std::size_t>(next_id));
    }
  }
}
