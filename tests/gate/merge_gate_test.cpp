#include "gate/gate_fixture.hpp"

#include <doctest/doctest.h>

#include <fstream>

using namespace agentcore;
using namespace agentcore::test;

namespace {
std::map<std::string, gate::verdict_kind> by_id(const std::vector<gate::change_verdict>& vs) {
  std::map<std::string, gate::verdict_kind> out;
  for (const auto& v : vs) out[v.change_id] = v.kind;
  return out;
}
void submit_ok(gate::merge_gate& g, gate::change c) {
  auto v = g.submit(std::move(c));
  REQUIRE_MESSAGE(v.has_value(), v.error().message());
  REQUIRE_MESSAGE(v->kind == gate::verdict_kind::queued, v->detail);
}
}  // namespace

TEST_CASE("gate.serial_lands_good_changes_and_rejects_a_failing_one") {
  gate_fixture fx;
  event_bus bus;
  std::vector<std::string> moves;
  auto sub = bus.subscribe<gate::branch_moved>([&](const gate::branch_moved& m) { moves.push_back(m.changes.at(0)); });
  auto g = fx.open_gate({.mode = gate::policy::serial, .events = &bus});
  auto base = fx.main_tip();
  submit_ok(*g, fx.make_change("a", false, base));
  submit_ok(*g, fx.make_change("bad", true, base));
  submit_ok(*g, fx.make_change("c", false, base));
  CHECK(g->queued().value() == 3);
  auto vs = g->run_until_empty().value();
  auto v = by_id(vs);
  CHECK(v["a"] == gate::verdict_kind::merged);
  CHECK(v["bad"] == gate::verdict_kind::deep_checks_failed);
  CHECK(v["c"] == gate::verdict_kind::merged);
  CHECK(fx.main_has("changes/a.txt"));
  CHECK(fx.main_has("changes/c.txt"));
  CHECK_FALSE(fx.main_has("POISON"));
  CHECK(moves == std::vector<std::string>{"a", "c"});
  auto stored = g->verdict("bad").value();
  REQUIRE(stored);
  CHECK(stored->kind == gate::verdict_kind::deep_checks_failed);
  CHECK(stored->detail.find("test ! -e POISON") != std::string::npos);
  auto merged = g->verdict("a").value();
  REQUIRE(merged->merged_as);
  CHECK(fx.repo.is_ancestor(*merged->merged_as, fx.main_tip()).value());
  CHECK(fx.git("fsck --strict").exit == 0);
}

TEST_CASE("gate.batch_bisects_to_the_culprit_and_lands_the_rest") {
  gate_fixture fx;
  event_bus bus;
  std::vector<std::string> steps;
  auto sub = bus.subscribe<gate::gate_step>([&](const gate::gate_step& s) { steps.push_back(s.step); });
  auto g = fx.open_gate({.mode = gate::policy::batch, .batch_size = 8, .events = &bus});
  auto base = fx.main_tip();
  for (std::string id : {"b1", "b2", "b3", "b4", "b5"}) submit_ok(*g, fx.make_change(id, id == "b3", base));
  auto v = by_id(g->run_until_empty().value());
  CHECK(v.size() == 5);
  for (std::string id : {"b1", "b2", "b4", "b5"}) {
    CAPTURE(id);
    CHECK(v[id] == gate::verdict_kind::merged);
    CHECK(fx.main_has("changes/" + id + ".txt"));
  }
  CHECK(v["b3"] == gate::verdict_kind::deep_checks_failed);
  CHECK_FALSE(fx.main_has("POISON"));
  CHECK(g->queued().value() == 0);
  // Every step was on the bus: the failed batch, its bisection, the landings.
  auto count = [&](const char* name) { return std::count(steps.begin(), steps.end(), name); };
  CHECK(count("contract_checked") == 5);
  CHECK(count("bisect") >= 1);
  CHECK(count("deep_checks") >= 3);
  CHECK(count("landing") >= 2);
}

TEST_CASE("gate.optimistic_reverts_the_culprit") {
  gate_fixture fx;
  event_bus bus;
  std::vector<gate::change_verdict> seen;
  auto sub = bus.subscribe<gate::gate_event>([&](const gate::gate_event& e) { seen.push_back(e.verdict); });
  auto g = fx.open_gate({.mode = gate::policy::optimistic, .optimistic_every = 4, .events = &bus});
  auto base = fx.main_tip();
  for (std::string id : {"o1", "o2", "o3", "o4"}) submit_ok(*g, fx.make_change(id, id == "o2", base));
  g->run_until_empty().value();
  // All four landed on the fast checks alone; the deep check after the fourth
  // failed, bisection found o2, and o2 was reverted.
  auto o2 = g->verdict("o2").value();
  REQUIRE(o2);
  CHECK(o2->kind == gate::verdict_kind::reverted);
  CHECK_FALSE(fx.main_has("POISON"));
  CHECK_FALSE(fx.main_has("changes/o2.txt"));
  for (std::string id : {"o1", "o3", "o4"}) {
    CAPTURE(id);
    CHECK(g->verdict(id).value()->kind == gate::verdict_kind::merged);
    CHECK(fx.main_has("changes/" + id + ".txt"));
  }
  CHECK(fx.repo.commit_message(fx.main_tip()).value().starts_with("Revert "));
  bool announced = false;
  for (const auto& v : seen) announced = announced || (v.change_id == "o2" && v.kind == gate::verdict_kind::reverted);
  CHECK(announced);
}

TEST_CASE("gate.per_change_rejections_are_values_and_the_queue_goes_on") {
  gate_fixture fx;
  auto g = fx.open_gate();
  auto base = fx.main_tip();

  auto forbidden = fx.make_change("forbidden", false, base);
  forbidden.contract.forbidden_paths = {"changes/**"};
  auto v1 = g->submit(forbidden).value();
  CHECK(v1.kind == gate::verdict_kind::contract_violated);
  CHECK(v1.detail.find("changes/forbidden.txt") != std::string::npos);
  CHECK(g->submit(forbidden).value().kind == gate::verdict_kind::contract_violated);  // idempotent

  auto lint = fx.make_change("lint", false, base);
  lint.checks = {"grep -q nothing-like-this changes/lint.txt"};
  auto v2 = g->submit(lint).value();
  CHECK(v2.kind == gate::verdict_kind::checks_failed);
  REQUIRE(v2.checks.size() == 1);
  CHECK(v2.checks[0].exit_code == 1);

  auto missing_tool = fx.make_change("tool", false, base);
  missing_tool.checks = {"no-such-linter-agentcore"};
  auto v3 = g->submit(missing_tool).value();
  CHECK(v3.kind == gate::verdict_kind::checks_failed);
  CHECK(v3.detail.find("not found") != std::string::npos);

  auto ghost = fx.make_change("ghost", false, base);
  ghost.head = git::oid::from_hex("0123456789abcdef0123456789abcdef01234567").value();
  auto v4 = g->submit(ghost).value();
  CHECK(v4.kind == gate::verdict_kind::error);
  CHECK(v4.detail.find("0123456789abcdef") != std::string::npos);

  auto stranger_root = fx.commit(std::nullopt, {{"other", file_spec{"x\n"}}}, "unrelated history");
  auto unrelated = fx.make_change("unrelated", false, stranger_root);
  auto v5 = g->submit(unrelated).value();
  CHECK(v5.kind == gate::verdict_kind::error);
  CHECK(v5.detail.find("not an ancestor") != std::string::npos);

  // Two changes editing the same line: the second gets a conflict with the path.
  auto e1 = fx.commit(base, {{"README", file_spec{"project one\n"}}}, "e1");
  auto e2 = fx.commit(base, {{"README", file_spec{"project two\n"}}}, "e2");
  submit_ok(*g, {.id = "edit1", .base = base, .head = e1});
  submit_ok(*g, {.id = "edit2", .base = base, .head = e2});
  submit_ok(*g, fx.make_change("fine", false, base));
  auto v = by_id(g->run_until_empty().value());
  CHECK(v["edit1"] == gate::verdict_kind::merged);
  CHECK(v["edit2"] == gate::verdict_kind::conflict);
  CHECK(v["fine"] == gate::verdict_kind::merged);
  CHECK(g->verdict("edit2").value()->paths == std::vector<std::string>{"README"});
}

TEST_CASE("gate.rollback_reverts_through_the_queue") {
  gate_fixture fx;
  auto g = fx.open_gate();
  submit_ok(*g, fx.make_change("keep"));
  submit_ok(*g, fx.make_change("oops"));
  g->run_until_empty().value();
  REQUIRE(fx.main_has("changes/oops.txt"));
  auto merged = g->verdict("oops").value()->merged_as.value();
  auto rb = g->rollback(merged, "oops broke production").value();
  CHECK(rb.kind == gate::verdict_kind::queued);
  auto v = g->run_until_empty().value();
  REQUIRE(v.size() == 1);
  CHECK(v[0].kind == gate::verdict_kind::merged);
  CHECK_FALSE(fx.main_has("changes/oops.txt"));
  CHECK(fx.main_has("changes/keep.txt"));
}

TEST_CASE("gate.priority_lands_first") {
  gate_fixture fx;
  auto g = fx.open_gate({.mode = gate::policy::batch, .batch_size = 2});
  auto base = fx.main_tip();
  submit_ok(*g, fx.make_change("low1", false, base, 0));
  submit_ok(*g, fx.make_change("low2", false, base, 0));
  submit_ok(*g, fx.make_change("urgent", false, base, 10));
  auto first = g->run_once().value();
  REQUIRE_FALSE(first.empty());
  // The first batch starts with the urgent change, never behind the low ones.
  CHECK(first[0].change_id == "urgent");
  g->run_until_empty().value();
  CHECK(g->verdict("low2").value()->kind == gate::verdict_kind::merged);
}

TEST_CASE("gate.verdicts_reach_the_board") {
  gate_fixture fx;
  board::task_board tasks(*fx.store);
  REQUIRE(tasks.propose({.id = task_id{"t1"}, .title = "one"}).has_value());
  auto lease = fx.store->grant(std::chrono::seconds(60)).value();
  REQUIRE(tasks.claim(worker_id{"w"}, lease).value());
  REQUIRE(tasks.submit(task_id{"t1"}, worker_id{"w"}).has_value());
  auto g = fx.open_gate({.board = &tasks});
  auto c = fx.make_change("t1-1");
  c.task = task_id{"t1"};
  submit_ok(*g, c);
  g->run_until_empty().value();
  auto t = tasks.get(task_id{"t1"}).value().value();
  CHECK(t.state == board::task_state::merged);
  CHECK(t.result.as_object().at("verdict").as_string() == "merged");
}

TEST_CASE("gate.one_runner_per_queue") {
  gate_fixture fx;
  auto clk = std::make_shared<virtual_clock>();
  fx.store = store::memory_store::create({.clock = clk});
  auto first = fx.open_gate({.leader_ttl = std::chrono::seconds(5), .instance = "first"});
  auto second = fx.open_gate({.leader_ttl = std::chrono::seconds(5), .instance = "second"});
  submit_ok(*first, fx.make_change("x"));
  REQUIRE(first->run_until_empty().has_value());  // first leads
  submit_ok(*second, fx.make_change("y"));        // anyone may submit
  auto refused = second->run_until_empty();
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error() == error::in_use);
  CHECK(refused.error().message().find("'first'") != std::string::npos);
  // The first gate stops (as if it died): once its lease runs out, the second takes over.
  clk->advance(std::chrono::seconds(6));
  auto took = second->run_until_empty();
  REQUIRE_MESSAGE(took.has_value(), took.error().message());
  CHECK(second->verdict("y").value()->kind == gate::verdict_kind::merged);
}

TEST_CASE("gate.a_board_update_a_crash_missed_is_redone_by_the_next_leader") {
  gate_fixture fx;
  board::task_board tasks(*fx.store);
  REQUIRE(tasks.propose({.id = task_id{"t9"}, .title = "nine"}).has_value());
  auto lease = fx.store->grant(std::chrono::seconds(600)).value();
  REQUIRE(tasks.claim(worker_id{"w"}, lease).value());
  REQUIRE(tasks.submit(task_id{"t9"}, worker_id{"w"}).has_value());
  // The leader that merged t9 died before telling the board: its verdict and
  // the pending note are in the store, the task is still submitted.
  gate::change_verdict v{"t9-1", gate::verdict_kind::merged, "landed"};
  json::object pending{{"task", "t9"}, {"verdict", json::value_from(v)}};
  REQUIRE(fx.store->commit(store::txn().put("gate/main/verdict/t9-1", to_json_string(json::value_from(v)))
                                .put("gate/main/board_pending/t9-1", to_json_string(pending)))
              .has_value());
  auto g = fx.open_gate({.board = &tasks, .instance = "next"});
  REQUIRE(g->run_until_empty().has_value());  // takes the queue: redoes the board update
  CHECK(tasks.get(task_id{"t9"}).value()->state == board::task_state::merged);
  CHECK(fx.store->range("gate/main/board_pending/").value().kvs.empty());
}

TEST_CASE("gate.a_corrupt_object_fails_that_change_alone") {
  gate_fixture fx;
  auto g = fx.open_gate();
  auto base = fx.main_tip();
  auto bad = fx.make_change("corrupt", false, base);
  // Damage the change's commit object on disk (loose objects are read-only).
  auto hex = bad.head.hex();
  auto obj = fx.dir.path() / ".git" / "objects" / hex.substr(0, 2) / hex.substr(2);
  REQUIRE(std::filesystem::exists(obj));
  std::filesystem::remove(obj);
  {
    std::ofstream f(obj, std::ios::binary);
    f << "this is not a zlib stream";
  }
  auto v = g->submit(bad).value();
  CHECK(v.kind == gate::verdict_kind::error);
  CHECK(v.detail.find(hex) != std::string::npos);
  submit_ok(*g, fx.make_change("healthy", false, base));
  auto done = by_id(g->run_until_empty().value());
  CHECK(done["healthy"] == gate::verdict_kind::merged);
  CHECK(g->verdict("corrupt").value()->kind == gate::verdict_kind::error);
}

TEST_CASE("gate.batch_wait_gathers_changes_submitted_close_together") {
  gate_fixture fx;
  event_bus bus;
  std::vector<gate::branch_moved> moves;
  auto sub = bus.subscribe<gate::branch_moved>([&](const gate::branch_moved& m) { moves.push_back(m); });
  auto g = fx.open_gate({.mode = gate::policy::batch, .batch_size = 4, .batch_wait = std::chrono::milliseconds(300),
                         .events = &bus});
  auto base = fx.main_tip();
  submit_ok(*g, fx.make_change("w1", false, base));
  CHECK(g->run_once().value().empty());  // alone and young: it waits for company
  submit_ok(*g, fx.make_change("w2", false, base));
  CHECK(g->run_once().value().empty());
  auto t0 = std::chrono::steady_clock::now();
  auto v = by_id(g->run_until_empty().value());  // lands both once the oldest has waited
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(v["w1"] == gate::verdict_kind::merged);
  CHECK(v["w2"] == gate::verdict_kind::merged);
  REQUIRE(moves.size() == 1);  // one batch, one move of main
  CHECK(moves[0].changes.size() == 2);
  // A full batch does not wait.
  auto base2 = fx.main_tip();
  for (std::string id : {"f1", "f2", "f3", "f4"}) submit_ok(*g, fx.make_change(id, false, base2));
  CHECK(g->run_once().value().size() == 4);
}

// Workers in one repository, the gate in another, code through a shared bare
// repository: the change travels by its ref, the branch moves there first.
TEST_CASE("gate.shared_repository_carries_changes_and_the_branch") {
  gate_fixture worker_side;  // the worker's repository (and the store both sides share)
  temp_dir shared_dir("shared"), gate_dir("gate-repo"), gate_slots("gate-slots");
  auto url = shared_dir.path().string();
  (void)git::repository::init(shared_dir.path(), true).value();
  REQUIRE(worker_side.repo.push(url, {"refs/heads/main:refs/heads/main"}));
  auto gate_repo = git::repository::init(gate_dir.path(), false).value();
  REQUIRE(gate_repo.fetch(url, {"+refs/heads/main:refs/heads/main"}));
  REQUIRE(test::sh("git -C '" + gate_dir.path().string() + "' symbolic-ref HEAD refs/heads/main").exit == 0);
  auto gate_pool = git::worktree_pool::open(gate_dir.path(), {.root = gate_slots.path(), .slots = 2}).value();
  auto leader = gate::merge_gate::open(gate_dir.path(), *worker_side.store, *gate_pool,
                                       {.deep_checks = {"test ! -e POISON"}, .remote = url})
                    .value();
  auto submitter = worker_side.open_gate({.remote = url});

  auto a = worker_side.make_change("a");
  auto b = worker_side.make_change("b", /*poison=*/true);
  for (const auto* c : {&a, &b}) {
    REQUIRE(worker_side.repo.advance("refs/agentcore/changes/" + c->id, std::nullopt, c->head, "c").value().advanced);
    REQUIRE(worker_side.repo.push(url, {"refs/agentcore/changes/" + c->id + ":refs/agentcore/changes/" + c->id}));
    CHECK(submitter->submit(*c).value().kind == gate::verdict_kind::queued);
  }
  auto verdicts = leader->run_until_empty().value();
  REQUIRE(verdicts.size() == 2);
  CHECK(verdicts[0].kind == gate::verdict_kind::merged);
  CHECK(verdicts[1].kind == gate::verdict_kind::deep_checks_failed);
  // The shared branch has the landing; the gate's own branch agrees.
  auto shared = git::repository::open(shared_dir.path()).value();
  auto tip = shared.ref_target("refs/heads/main").value().value();
  CHECK(tip == *verdicts[0].merged_as);
  CHECK(gate_repo.ref_target("refs/heads/main").value().value() == tip);
  // Decided changes' refs are gone from the shared repository.
  CHECK_FALSE(shared.ref_target("refs/agentcore/changes/a").value().has_value());
  CHECK_FALSE(shared.ref_target("refs/agentcore/changes/b").value().has_value());

  // Someone moves the shared branch (another gate, a person): the gate starts
  // from there at its next step and never pushes over it.
  REQUIRE(worker_side.repo.fetch(url, {"+refs/heads/main:refs/heads/main"}));
  auto hand = worker_side.commit(tip, {{"HAND.txt", test::file_spec{"by hand\n"}}}, "by hand");
  REQUIRE(worker_side.repo.advance("refs/heads/main", tip, hand, "hand").value().advanced);
  REQUIRE(worker_side.repo.push(url, {"refs/heads/main:refs/heads/main"}));
  auto c = worker_side.make_change("c");
  REQUIRE(worker_side.repo.advance("refs/agentcore/changes/c", std::nullopt, c.head, "c").value().advanced);
  REQUIRE(worker_side.repo.push(url, {"refs/agentcore/changes/c:refs/agentcore/changes/c"}));
  REQUIRE(submitter->submit(c).value().kind == gate::verdict_kind::queued);
  auto more = leader->run_until_empty().value();
  REQUIRE(more.size() == 1);
  CHECK(more[0].kind == gate::verdict_kind::merged);
  auto landed = shared.ref_target("refs/heads/main").value().value();
  CHECK(shared.is_ancestor(hand, landed).value());
  CHECK(landed == *more[0].merged_as);
}
