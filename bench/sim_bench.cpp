// The sim area: how fast the capacity simulator runs (a week of 500 agents),
// agentcore's merge queue against a model of GitHub's on GitHub's own example
// (30-minute CI, 10% of changes failing, five builds at once), and the
// throughput cliff of strict locks.
#include "bench.hpp"

#include <agentcore/sim/sim.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <string>

namespace agentcore::bench {

namespace {

using namespace std::chrono_literals;

sim::report simulate(const sim::scenario& s, std::string_view what) {
  auto r = sim::run(s);
  if (!r) throw failure(fmt::format("sim: {}: {}", what, r.error().message()));
  return *r;
}

// GitHub's example: a queue that deep-checks for 30 minutes, 10% of changes
// breaking the build, and enough workers that the queue is the bottleneck.
sim::scenario github_example(bool quick) {
  sim::scenario s;
  s.workers = 40;
  s.planners = 10;
  s.work.features = 0;
  s.horizon = quick ? 24h : 24h * 7;
  s.checks.deep_seconds = {1800, 1800};
  s.checks.fast_catches = 0;  // the 10% reach the queue
  s.checks.flake = 0;
  s.worker.breaks_build = 0.1;
  return s;
}

// Merges that stayed: what a policy delivers (optimistic lands and reverts).
double kept_per_hour(const sim::report& r) {
  return static_cast<double>(r.merges - r.reverts) / std::max(r.hours, 1e-9);
}

}  // namespace

std::vector<figure> run_sim(const run_options& o) {
  std::vector<figure> out;
  const auto at_least = [](double v) { return bound{true, v}; };
  const auto at_most = [](double v) { return bound{false, v}; };

  // A week of 500 agents, planner/worker, the batch gate.
  sim::scenario week;
  week.workers = o.quick ? 50 : 500;
  week.planners = week.workers / 10;
  week.work.features = 0;
  week.horizon = 24h * 7;
  auto w = simulate(week, "a week of agents");
  fmt::print(stderr, "  week of {} agents: {:.1f} s, {} merges, {:.1f} merges/h, gate {:.0f}% busy, queue wait {:.0f} s\n",
             week.workers, w.wall_seconds, w.merges, w.merges_per_hour, 100 * w.gate_utilisation,
             w.queue_wait_median_s);
  out.push_back({o.quick ? "sim_week_50_agents_s" : "sim_week_500_agents_s", w.wall_seconds, 2,
                 o.quick ? std::nullopt : std::optional(at_most(60))});

  // GitHub's merge queue on its own example, against agentcore's policies.
  auto gh_s = github_example(o.quick);
  gh_s.queue = sim::queue_kind::github_merge_queue;
  gh_s.github_builds = 5;
  auto gh = simulate(gh_s, "github merge queue");
  fmt::print(stderr, "  github merge queue (5 builds): {:.2f} merges/h\n", kept_per_hour(gh));
  out.push_back({"github_mq_scenario_merges_per_h", kept_per_hour(gh), 2, std::nullopt});
  double best = 0;
  std::string best_name;
  auto consider = [&](gate::queue_policy_options p, std::string name) {
    auto s = github_example(o.quick);
    s.gate = p;
    auto r = simulate(s, name);
    fmt::print(stderr, "  agentcore {}: {:.2f} merges/h kept ({} merged, {} reverted), queue wait {:.0f} s\n", name,
               kept_per_hour(r), r.merges, r.reverts, r.queue_wait_median_s);
    if (kept_per_hour(r) > best) best = kept_per_hour(r), best_name = name;
  };
  for (std::size_t size : {4, 8, 16, 32})
    consider({.mode = gate::policy::batch, .batch_size = size}, fmt::format("batch {}", size));
  for (std::size_t every : {5, 10, 20})
    consider({.mode = gate::policy::optimistic, .optimistic_every = every}, fmt::format("optimistic every {}", every));
  fmt::print(stderr, "  best: {}\n", best_name);
  out.push_back({"agentcore_best_merges_per_h", best, 2, std::nullopt});
  out.push_back({"batch_vs_github_mq_ratio", best / std::max(kept_per_hour(gh), 1e-9), 2, at_least(2),
                 std::pair{"agentcore_best_merges_per_h", "github_mq_scenario_merges_per_h"}});

  // Strict locks: twenty agents against one, a quick gate.
  auto locks = [&](int workers) {
    sim::scenario s;
    s.coordination = sim::design::strict_locks;
    s.workers = workers;
    s.work.features = 0;
    s.horizon = o.quick ? 48h : 24h * 7;
    s.checks.deep_seconds = {60, 60};
    s.gate = {.mode = gate::policy::batch, .batch_size = 16};
    return simulate(s, fmt::format("strict locks, {} agents", workers));
  };
  auto one = locks(1), twenty = locks(20);
  fmt::print(stderr, "  strict locks: 1 agent {} merges, 20 agents {} (waiting {:.0f}% of the time)\n", one.merges,
             twenty.merges, 100 * twenty.worker_waiting);
  out.push_back({"lock_1_agent_merges", static_cast<double>(one.merges), 0, std::nullopt});
  out.push_back({"lock_20_agents_merges", static_cast<double>(twenty.merges), 0, std::nullopt});
  out.push_back({"lock_cliff_ratio", static_cast<double>(twenty.merges) / std::max<double>(1, one.merges), 2,
                 std::nullopt, std::pair{"lock_20_agents_merges", "lock_1_agent_merges"}});
  return out;
}

}  // namespace agentcore::bench
