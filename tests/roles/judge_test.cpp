// The judge: figures from the bus, churn from the branch, goal checks, decisions.
#include "agent/agent_fixture.hpp"
#include "gate/gate_fixture.hpp"
#include "support/io_thread.hpp"

#include <agentcore/roles/judge.hpp>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

struct judge_fixture : test::gate_fixture {
  test::io_thread io;
  event_bus bus;
  board::task_board board{*store, {.events = &bus}};

  roles::judgement close(roles::judge& j) {
    std::promise<result<roles::judgement>> p;
    auto f = p.get_future();
    j.async_close_cycle([&](result<roles::judgement> r) { p.set_value(std::move(r)); });
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    auto r = f.get();
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
    return *r;
  }
  void verdict(gate::verdict_kind k) { bus.publish(gate::gate_event{gate::change_verdict{.change_id = "c", .kind = k}}); }
  // Lands a commit on main changing `files`, announcing it as the gate does.
  void land(test::files fs) {
    auto from = main_tip();
    auto to = commit(from, fs, "land");
    REQUIRE(repo.advance("refs/heads/main", from, to, "land").value().advanced);
    bus.publish(gate::branch_moved{"refs/heads/main", from, to, {}});
    verdict(gate::verdict_kind::merged);
  }
};

}  // namespace

TEST_CASE("roles.judge.figures_churn_and_continue") {
  judge_fixture f;
  roles::judge j(f.bus, f.board, f.dir.path(), *f.pool,
                 {.merges_per_cycle = 3, .executor = f.io.io.get_executor()});
  f.land({{"src/a.c", test::file_spec{"1\n2\n"}}});
  CHECK_FALSE(j.cycle_over());
  f.land({{"src/a.c", test::file_spec{"1\n3\n"}}});  // rewrites a line of the first merge: churn
  f.verdict(gate::verdict_kind::conflict);
  f.verdict(gate::verdict_kind::contract_violated);
  f.bus.publish(agent::outcome_event{"worker", "t", "stalled", "stuck", 7, {100, 50}, 0.25});
  f.bus.publish(agent::outcome_event{"worker", "t2", "finished", "ok", 3, {10, 5}, 0.0});
  // Tokens and cost come from every model call (agents' turns, planners, the reviewer), not from outcomes.
  f.bus.publish(agent::turn_event{"worker", "t", 1, {}, {100, 50}, "tool_use", "m", 0.2, 1.0});
  f.bus.publish(agent::turn_event{"planner", "", 1, {}, {10, 5}, "end_turn", "m", 0.05, 1.0});
  CHECK(j.current().merged == 2);
  f.land({{"src/b.c", test::file_spec{"b\n"}}});
  CHECK(j.cycle_over());
  auto r = f.close(j);
  CHECK(r.cycle == 1);
  CHECK(r.figures.merged == 3);
  CHECK(r.figures.rejected == 2);
  CHECK(r.figures.conflicts == 1);
  CHECK(r.figures.contract_violations == 1);
  CHECK(r.figures.stalls == 1);
  CHECK(r.figures.input_tokens == 110);
  CHECK(r.figures.cost == doctest::Approx(0.25));
  CHECK(r.figures.changed_lines == 2 + 2 + 1);  // +1 +1 (a.c), -1 +1 (a.c again), +1 (b.c)
  CHECK(r.figures.churn_lines == 2);
  CHECK(r.verdict == roles::decision::continue_cycle);
  // The next cycle starts from zero.
  CHECK(j.current().merged == 0);
  CHECK_FALSE(j.cycle_over());
}

TEST_CASE("roles.judge.restarts_when_the_plan_is_not_working") {
  judge_fixture f;
  roles::judge j(f.bus, f.board, f.dir.path(), *f.pool, {.executor = f.io.io.get_executor()});
  f.land({{"x", test::file_spec{"x\n"}}});
  for (int i = 0; i < 4; ++i) f.verdict(gate::verdict_kind::checks_failed);
  auto r = f.close(j);
  CHECK(r.verdict == roles::decision::restart);
  CHECK(r.reason.find("4 of 5 changes were rejected") != std::string::npos);
  // Nothing at all landing while work fails is a restart too.
  f.verdict(gate::verdict_kind::conflict);
  auto r2 = f.close(j);
  CHECK(r2.cycle == 2);
  CHECK(r2.verdict == roles::decision::restart);
  CHECK(r2.reason.find("nothing landed") != std::string::npos);
}

TEST_CASE("roles.judge.stops_when_the_goal_checks_pass_on_main") {
  judge_fixture f;
  roles::judge j(f.bus, f.board, f.dir.path(), *f.pool,
                 {.goal_checks = {"test -f src/feature.c"}, .executor = f.io.io.get_executor()});
  auto r1 = f.close(j);
  CHECK_FALSE(r1.goal_met);
  REQUIRE(r1.goal_checks.size() == 1);
  CHECK_FALSE(r1.goal_checks[0].passed());
  CHECK(r1.verdict != roles::decision::stop);
  f.land({{"src/feature.c", test::file_spec{"done\n"}}});
  std::vector<std::string> decisions;
  auto sub = f.bus.subscribe<roles::judge_event>([&](const roles::judge_event& e) { decisions.push_back(e.decision); });
  auto r2 = f.close(j);
  CHECK(r2.goal_met);
  CHECK(r2.verdict == roles::decision::stop);
  CHECK(decisions == std::vector<std::string>{"stop"});
}

TEST_CASE("roles.judge.a_reviewer_may_restart_but_not_stop_short_of_the_goal") {
  judge_fixture f;
  test::scripted_client reviewer([](const model::request& r, int turn) -> std::optional<model::result_type> {
    CHECK(r.tags.role == "judge");
    CHECK(r.messages[0].text().find("\"merged\":1") != std::string::npos);
    if (turn == 1) return test::text_answer(R"({"decision":"restart","reason":"tasks overlap"})");
    return test::text_answer(R"({"decision":"stop","reason":"looks done to me"})");
  });
  roles::judge j(f.bus, f.board, f.dir.path(), *f.pool,
                 {.goal_checks = {"false"}, .reviewer = &reviewer, .executor = f.io.io.get_executor()});
  f.land({{"a", test::file_spec{"a\n"}}});
  auto r1 = f.close(j);
  CHECK(r1.verdict == roles::decision::restart);
  CHECK(r1.reason.find("tasks overlap") != std::string::npos);
  f.land({{"b", test::file_spec{"b\n"}}});
  auto r2 = f.close(j);
  CHECK(r2.verdict == roles::decision::continue_cycle);  // the goal checks fail: no stop
  CHECK(r2.review.find("looks done") != std::string::npos);
}

// Commits without convergence: cycle after cycle merges work that rewrites
// itself while the goal checks pass no better. The judge restarts; when the
// same happens after the restart, it stops, saying why.
TEST_CASE("roles.judge.commits_without_convergence_restart_then_stop") {
  judge_fixture f;
  roles::judge j(f.bus, f.board, f.dir.path(), *f.pool,
                 {.goal_checks = {"test -f src/feature.c", "true"},
                  .converge_cycles = 2,
                  .churn_share = 0.3,
                  .executor = f.io.io.get_executor()});
  int n = 0;
  auto churning_cycle = [&] {
    // Two merges, the second rewriting the lines of the first.
    f.land({{"src/a.c", test::file_spec{fmt::format("v{}\nw{}\n", n, n)}}});
    ++n;
    f.land({{"src/a.c", test::file_spec{fmt::format("v{}\nw{}\n", n, n)}}});
    ++n;
    return f.close(j);
  };
  // The first cycle is the baseline; two more like it are the window.
  auto c1 = churning_cycle();
  CHECK(c1.goal_checks_passed == 1);
  CHECK(c1.verdict == roles::decision::continue_cycle);
  CHECK(churning_cycle().verdict == roles::decision::continue_cycle);
  auto c3 = churning_cycle();
  CHECK(c3.verdict == roles::decision::restart);
  CHECK(c3.reason.find("not converging") != std::string::npos);
  CHECK(churning_cycle().verdict == roles::decision::continue_cycle);
  auto c5 = churning_cycle();
  CHECK(c5.verdict == roles::decision::stop);
  CHECK(c5.reason.find("a restart did not help") != std::string::npos);
  CHECK_FALSE(c5.goal_met);

  // The same churn with the goal checks improving is progress.
  judge_fixture g;
  roles::judge k(g.bus, g.board, g.dir.path(), *g.pool,
                 {.goal_checks = {"test -f src/x.c", "test -f src/y.c", "test -f src/z.c", "false"},
                  .converge_cycles = 2,
                  .executor = g.io.io.get_executor()});
  int m = 0;
  for (const char* file : {"src/x.c", "src/y.c", "src/z.c"}) {
    g.land({{"src/a.c", test::file_spec{fmt::format("{}\n{}\n", m, m)}}});
    ++m;
    g.land({{"src/a.c", test::file_spec{fmt::format("{}\n{}\n", m, m)}}, {file, test::file_spec{"x\n"}}});
    ++m;
    auto c = g.close(k);
    CHECK(c.verdict == roles::decision::continue_cycle);
  }
}

// The host's rules see the judgement and may overrule it.
TEST_CASE("roles.judge.the_host_s_rules_decide_last") {
  judge_fixture f;
  std::vector<int> seen;
  roles::judge j(f.bus, f.board, f.dir.path(), *f.pool,
                 {.rules =
                      [&](roles::judgement& jm) {
                        seen.push_back(jm.cycle);
                        if (jm.cycle == 2) {
                          jm.verdict = roles::decision::stop;
                          jm.reason = "the host's deadline passed";
                        }
                      },
                  .executor = f.io.io.get_executor()});
  std::vector<std::string> published;
  auto sub = f.bus.subscribe<roles::judge_event>([&](const roles::judge_event& e) { published.push_back(e.reason); });
  f.land({{"src/a.c", test::file_spec{"a\n"}}});
  auto r1 = f.close(j);
  CHECK(r1.verdict == roles::decision::continue_cycle);
  auto r2 = f.close(j);
  CHECK(r2.verdict == roles::decision::stop);
  CHECK(r2.reason == "the host's deadline passed");
  CHECK(seen == std::vector<int>{1, 2});
  CHECK(published.back() == "the host's deadline passed");  // what is published is what the host decided
}
