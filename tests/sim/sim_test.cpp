// The capacity simulator: the shapes it must reproduce, with fixed seeds
// (the throughput cliff of strict locks, a dead lock holder stalling
// everyone, hard work starving when agents choose their own, batches that
// fail more often as they grow, a gate that saturates), determinism, and
// errors that name the field.
#include <agentcore/sim/sim.hpp>

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <sstream>
#include <doctest/doctest.h>

#include <string>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

// Endless work, a quick gate: what limits throughput is the coordination.
sim::scenario throughput(sim::design d, int workers, std::uint64_t seed = 1) {
  sim::scenario s;
  s.seed = seed;
  s.coordination = d;
  s.workers = workers;
  s.planners = std::max(1, workers / 4);
  s.work.features = 0;
  s.horizon = 24h;
  s.checks.deep_seconds = {60, 60};
  s.gate = {.mode = gate::policy::batch, .batch_size = 16};
  s.worker.breaks_build = 0.02;
  s.repository.subsystems = 40;
  return s;
}

sim::report simulate(const sim::scenario& s) {
  auto r = sim::run(s);
  REQUIRE_MESSAGE(r, (r ? "" : r.error().message()));
  return *r;
}

std::string without_wall_time(sim::report r) {
  r.wall_seconds = 0;
  return boost::json::serialize(boost::json::value_from(r));
}

}  // namespace

TEST_CASE("sim.strict_locks_reach_a_throughput_cliff_that_planner_worker_does_not") {
  // A quick gate, so that what limits throughput is the coordination.
  for (std::uint64_t seed : {1, 2, 3}) {
  CAPTURE(seed);
  auto at = [seed](sim::design d, int workers) {
    auto s = throughput(d, workers, seed);
    s.horizon = 24h * 7;
    return simulate(s);
  };
  auto one = at(sim::design::strict_locks, 1);
  auto twenty = at(sim::design::strict_locks, 20);
  auto pw_one = at(sim::design::planner_worker, 1);
  auto pw_twenty = at(sim::design::planner_worker, 20);
  double locks = static_cast<double>(twenty.merges) / static_cast<double>(one.merges);
  double pw = static_cast<double>(pw_twenty.merges) / static_cast<double>(pw_one.merges);
  CAPTURE(one.merges);
  CAPTURE(twenty.merges);
  CAPTURE(pw_one.merges);
  CAPTURE(pw_twenty.merges);
  // Twenty agents behind one lock do the work of two or three...
  CHECK(locks > 1.5);
  CHECK(locks < 4);
  // ...and spend most of their time waiting for it.
  CHECK(twenty.worker_waiting > 0.6);
  // Without the lock, twenty do many times one's work.
  CHECK(pw > 3 * locks);
  }
}

TEST_CASE("sim.a_lock_holder_that_dies_stalls_everyone_until_its_time_out") {
  for (std::uint64_t seed : {1, 2, 3}) {
  CAPTURE(seed);
  auto s = throughput(sim::design::strict_locks, 10, seed);
  s.horizon = 24h * 3;
  s.worker.stall = 0.1;
  s.lock_timeout = 15min;
  auto quick = simulate(s);
  s.lock_timeout = 6h;
  auto slow = simulate(s);
  CAPTURE(quick.merges);
  CAPTURE(slow.merges);
  CAPTURE(slow.stalls);
  CHECK(slow.stalls > 2);
  CHECK(static_cast<double>(slow.merges) < 0.6 * static_cast<double>(quick.merges));
  }
}

TEST_CASE("sim.agents_choosing_their_own_work_starve_the_hard_tasks_planner_worker_finishes_them") {
  for (std::uint64_t seed : {1, 2, 3}) {
  CAPTURE(seed);
  auto goal = [seed](sim::design d, std::chrono::hours horizon) {
    sim::scenario s = throughput(d, 12, seed);
    s.planners = 3;
    s.work.features = 60;
    s.work.follow_up = 0.6;  // merged work uncovers small follow-ups
    s.horizon = horizon;
    return simulate(s);
  };
  auto pw = goal(sim::design::planner_worker, 24h * 7);
  REQUIRE(pw.time_to_goal_h.has_value());
  CHECK(pw.hard_done == pw.hard);  // converges on all of them
  // The agents on their own, in the time planner/worker took for the whole goal.
  auto flat = goal(sim::design::flat_optimistic, std::chrono::hours(static_cast<int>(std::ceil(*pw.time_to_goal_h))));
  CAPTURE(flat.hard);
  CAPTURE(flat.hard_done);
  CAPTURE(flat.features_done);
  CAPTURE(*pw.time_to_goal_h);
  REQUIRE(flat.hard > 0);
  REQUIRE(flat.hard == pw.hard);  // the same goal
  CHECK(flat.hard_done < flat.hard);
  double flat_hard = static_cast<double>(flat.hard_done) / flat.hard;
  double flat_easy = static_cast<double>(flat.features_done - flat.hard_done) / (flat.features - flat.hard);
  CHECK(flat_easy > flat_hard);  // the easy ones went first
  }
}

TEST_CASE("sim.larger_batches_fail_more_often_as_the_failure_rate_grows") {
  auto batch = [](std::size_t size, double breaks) {
    auto s = throughput(sim::design::planner_worker, 30);
    s.gate.batch_size = size;
    s.worker.breaks_build = breaks;
    s.checks.fast_catches = 0;
    s.checks.deep_seconds = {600, 600};
    return simulate(s);
  };
  auto small_low = batch(2, 0.02), big_low = batch(16, 0.02);
  auto small_high = batch(2, 0.2), big_high = batch(16, 0.2);
  CAPTURE(small_low.batch_failure_rate);
  CAPTURE(big_low.batch_failure_rate);
  CAPTURE(small_high.batch_failure_rate);
  CAPTURE(big_high.batch_failure_rate);
  CHECK(big_low.batch_failure_rate > small_low.batch_failure_rate);
  CHECK(big_high.batch_failure_rate > small_high.batch_failure_rate);
  CHECK(big_high.batch_failure_rate > big_low.batch_failure_rate);
  // A failing change never lands under batch: the reverts are the optimistic policy's.
  CHECK(big_high.reverts == 0);
}

TEST_CASE("sim.past_some_worker_count_the_gate_saturates_and_queue_wait_grows") {
  auto at = [](int workers) {
    auto s = throughput(sim::design::planner_worker, workers);
    s.gate = {.mode = gate::policy::serial};
    s.checks.deep_seconds = {1800, 1800};  // 30-minute deep checks: 2 merges an hour at most
    s.horizon = 48h;
    return simulate(s);
  };
  auto few = at(2), some = at(8), many = at(32);
  CAPTURE(few.merges_per_hour);
  CAPTURE(some.merges_per_hour);
  CAPTURE(many.merges_per_hour);
  CHECK(many.merges_per_hour <= 2.05);
  CHECK(many.merges_per_hour < 1.2 * some.merges_per_hour);  // throughput stops growing
  CHECK(many.queue_wait_median_s > 3 * few.queue_wait_median_s);  // the wait grows
  CHECK(many.gate_utilisation > 0.95);
}

TEST_CASE("sim.optimistic_lands_at_once_and_reverts_what_breaks_the_branch") {
  auto s = throughput(sim::design::planner_worker, 20);
  s.gate = {.mode = gate::policy::optimistic, .optimistic_every = 5};
  s.worker.breaks_build = 0.1;
  s.checks.fast_catches = 0;
  auto r = simulate(s);
  CHECK(r.reverts > 0);
  CHECK(r.revert_rate < 0.3);
  CHECK(r.batches == 0);
}

TEST_CASE("sim.the_same_seed_gives_the_same_report") {
  auto s = throughput(sim::design::planner_worker, 12);
  s.worker.stall = 0.05;
  s.gate = {.mode = gate::policy::batch, .batch_size = 4, .batch_wait = 120000ms};
  auto a = simulate(s), b = simulate(s);
  CHECK(without_wall_time(a) == without_wall_time(b));
  s.seed = 2;
  auto c = simulate(s);
  CHECK(without_wall_time(a) != without_wall_time(c));
  CHECK(a.merges > 0);
  CHECK(a.cost > 0);
}

TEST_CASE("sim.bad_scenarios_are_errors_naming_the_field") {
  auto message = [](sim::scenario s) {
    auto r = sim::run(s);
    REQUIRE(!r);
    return r.error().message();
  };
  sim::scenario s;
  s.workers = 0;
  CHECK(message(s).find("'workers'") != std::string::npos);
  s = {};
  s.worker.stall = 1.5;
  CHECK(message(s).find("'worker.stall'") != std::string::npos);
  s = {};
  s.checks.deep_seconds = {0, 0};
  CHECK(message(s).find("'checks.deep_seconds'") != std::string::npos);
  s = {};
  s.gate.batch_size = 0;
  CHECK(message(s).find("'gate.batch_size'") != std::string::npos);
}


TEST_CASE("sim.github_merge_queue_model_lands_good_changes_and_restarts_behind_a_failure") {
  auto s = throughput(sim::design::planner_worker, 40);
  s.queue = sim::queue_kind::github_merge_queue;
  s.github_builds = 5;
  s.checks.deep_seconds = {1800, 1800};
  s.checks.fast_catches = 0;
  s.checks.flake = 0;
  s.worker.breaks_build = 0.1;
  s.horizon = 48h;
  auto r = simulate(s);
  CAPTURE(r.merges_per_hour);
  // Five builds of 30 minutes: at most 10 an hour; failures cost restarts.
  CHECK(r.merges_per_hour <= 10.05);
  CHECK(r.merges_per_hour > 4);
  CHECK(r.rejected > 0);
  CHECK(r.reverts == 0);
  s.worker.breaks_build = 0;
  auto clean = simulate(s);
  CHECK(clean.merges_per_hour > r.merges_per_hour);
}

TEST_CASE("sim.scenarios_read_back_what_they_write_and_name_wrong_fields") {
  sim::scenario s;
  s.coordination = sim::design::flat_optimistic;
  s.workers = 33;
  s.gate = {.mode = gate::policy::optimistic, .optimistic_every = 7};
  s.checks.deep_seconds = {1200, 2400};
  s.worker.stall = 0.25;
  s.horizon = 36h;
  s.seed = 99;
  auto j = boost::json::value_from(s);
  auto back = sim::scenario_from_json(j);
  REQUIRE_MESSAGE(back, (back ? "" : back.error().message()));
  CHECK(boost::json::serialize(boost::json::value_from(*back)) == boost::json::serialize(j));
  auto message = [](std::string_view text) {
    auto r = sim::scenario_from_json(parse_json(text).value());
    REQUIRE(!r);
    return r.error().message();
  };
  CHECK(message(R"({"worker": {"stal": 0.1}})").find("unknown field 'worker.stal'") != std::string::npos);
  CHECK(message(R"({"checks": {"deep_seconds": "long"}})").find("'checks.deep_seconds' must be") != std::string::npos);
  CHECK(message(R"({"design": "anarchy"})").find("'design' must be") != std::string::npos);
  CHECK(message(R"({"gate": {"mode": "yolo"}})").find("'gate.mode' must be") != std::string::npos);
  CHECK(message(R"({"workers": -3})").find("'workers'") != std::string::npos);
}

TEST_CASE("sim.a_sweep_answers_where_the_gate_saturates_and_what_to_use_beyond") {
  sim::scenario base = throughput(sim::design::planner_worker, 4);
  base.gate = {.mode = gate::policy::serial};
  base.checks.deep_seconds = {1800, 1800};
  sim::sweep_options o;
  o.workers = {1, 4, 16};
  o.designs = {sim::design::strict_locks, sim::design::planner_worker};
  o.policies = {{.mode = gate::policy::serial}, {.mode = gate::policy::batch, .batch_size = 8}};
  auto r = sim::sweep(base, o);
  REQUIRE(r);
  CHECK(r->by_design.size() == 6);
  CHECK(r->by_policy.size() == 6);
  auto text = sim::answer(*r);
  CAPTURE(text);
  CHECK(text.find("saturates at") != std::string::npos);
  CHECK(text.find("use batch 8") != std::string::npos);  // at 16 workers batching beats one change at a time
  auto svg = sim::throughput_svg(*r);
  CHECK(svg.starts_with("<svg"));
  std::size_t lines = 0;
  for (auto at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) ++lines;
  CHECK(lines == 2);  // one per design
  CHECK(sim::queue_wait_svg(*r).find("batch 8") != std::string::npos);
}

TEST_CASE("sim.calibrate_fits_a_scenario_to_an_event_log") {
  // A hand-written log in agentcore's event format (docs/events.md): worker
  // turns of 10, 20, 30, 40 s; 4 attempts, 3 finished, 1 stalled; 4
  // submissions, one out of contract, one failing its fast checks; deep
  // checks of 600 s between merged_in_memory and deep_checks.
  std::string log;
  auto event = [&](std::string_view type, std::string_view role, std::string_view data, std::string_view time = "2026-12-01T10:00:00.000000Z") {
    log += fmt::format(R"({{"v":1,"seq":1,"time":"{}","type":"{}","run":"r","cycle":1,"role":"{}","worker":"","task":"t","data":{}}})",
                       time, type, role, data);
    log += "\n";
  };
  for (int s : {10, 20, 30, 40})
    event("agent.turn", "worker", fmt::format(R"({{"role":"worker","task":"t","seconds":{},"input_tokens":900,"output_tokens":100,"cost":0.003}})", s));
  for (const char* kind : {"finished", "finished", "finished", "stalled"})
    event("agent.outcome", "worker", fmt::format(R"({{"kind":"{}","turns":8}})", kind));
  for (const char* v : {"queued", "queued", "contract_violated", "checks_failed"})
    event("gate.verdict", "gate", fmt::format(R"({{"verdict":"{}","checks":[{{"duration_ms":90000}}]}})", v));
  for (int i = 0; i < 3; ++i) {
    event("gate.step", "gate", R"({"step":"merged_in_memory"})", fmt::format("2026-12-01T1{}:00:00.000000Z", i));
    event("gate.step", "gate", R"({"step":"deep_checks","detail":"passed"})", fmt::format("2026-12-01T1{}:10:00.000000Z", i));
  }
  for (const char* w : {"w1", "w2"}) event("roles.worker_phase", "worker", fmt::format(R"({{"worker":"{}","phase":"claimed"}})", w));
  log += "{\"v\":1,\"torn";  // a torn last line is skipped
  std::istringstream in(log);
  auto c = sim::calibrate(in, sim::scenario{});
  REQUIRE_MESSAGE(c, (c ? "" : c.error().message()));
  CHECK(c->skipped == 1);
  const auto& s = c->fitted;
  CHECK(s.worker.model.turn_seconds.median == doctest::Approx(30));
  CHECK(s.worker.model.turn_seconds.p90 == doctest::Approx(40));
  CHECK(s.worker.model.cost_per_million_tokens == doctest::Approx(3));
  CHECK(s.worker.turns_per_unit.median == doctest::Approx(8));
  CHECK(s.worker.success_per_unit == doctest::Approx(0.75));
  CHECK(s.worker.stall == doctest::Approx(0.25));
  CHECK(s.worker.out_of_contract == doctest::Approx(0.25));
  CHECK(s.checks.fast_seconds.median == doctest::Approx(90));
  CHECK(s.checks.deep_seconds.median == doctest::Approx(600));
  CHECK(s.workers == 2);
  // Too little of something keeps the base's value, and the notes say so.
  CHECK(s.planner.turn_seconds.median == sim::scenario{}.planner.turn_seconds.median);
  bool said = false;
  for (const auto& n : c->notes) said = said || n.find("planner turn latency: 0 samples, too few") != std::string::npos;
  CHECK(said);
  // Not agentcore's events: an error saying so.
  std::istringstream other("{\"v\":2,\"type\":\"x\"}\n");
  auto bad = sim::calibrate(other, {});
  REQUIRE(!bad);
  CHECK(bad.error().message().find("not a version-1 event") != std::string::npos);
}
