// The planner role: snapshot, proposals validated and deduplicated, scopes,
// splitting what failed.
#include "agent/agent_fixture.hpp"
#include "gate/gate_fixture.hpp"
#include "support/io_thread.hpp"

#include <agentcore/roles/planner.hpp>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

struct planner_fixture : test::gate_fixture {
  test::io_thread io;
  board::task_board board{*store};

  planner_fixture() {
    auto c = commit(main_tip(), {{"README.md", test::file_spec{"# Calc\nA calculator library.\n"}},
                                 {"src/parser/parse.c", test::file_spec{"int parse;\n"}},
                                 {"src/eval/eval.c", test::file_spec{"int eval;\n"}}},
                    "more files");
    REQUIRE(repo.advance("refs/heads/main", main_tip(), c, "more").value().advanced);
  }

  result<roles::plan_report> plan(model::client& model, roles::planner_options o = {}) {
    o.executor = io.io.get_executor();
    if (o.goal.empty()) o.goal = "Make the calculator evaluate expressions";
    roles::planner p(board, dir.path(), model, std::move(o));
    std::promise<result<roles::plan_report>> pr;
    auto f = pr.get_future();
    p.async_plan([&](result<roles::plan_report> r) { pr.set_value(std::move(r)); });
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    return f.get();
  }
  board::task task(const char* id) { return board.get(task_id{id}).value().value(); }
};

model::result_type answer(std::string text) { return test::text_answer(std::move(text)); }

}  // namespace

TEST_CASE("roles.planner.proposes_validated_tasks_from_a_snapshot") {
  planner_fixture f;
  REQUIRE(f.board.propose({.id = task_id{"existing"}, .title = "Write the lexer"}).has_value());
  std::string snapshot;
  test::scripted_client model([&](const model::request& r, int) -> std::optional<model::result_type> {
    snapshot = r.messages.at(0).text();
    CHECK(r.response_format.has_value());
    CHECK(r.tags.role == "planner");
    return answer(R"(Here is the plan:
```json
{"tasks": [
  {"id": "eval-add", "title": "Evaluate addition", "description": "Add + to eval.c",
   "contract": {"allowed_paths": ["src/eval/**"], "acceptance_checks": ["make test"], "max_files": 3}},
  {"id": "eval-mul", "title": "Evaluate multiplication", "description": "Add * to eval.c",
   "dependencies": ["eval-add", "no-such-task"]},
  {"id": "dup", "title": "  write THE lexer ", "description": "again"},
  {"id": "existing", "title": "Something else", "description": "same id"},
  {"id": "bad-glob", "title": "Broken", "description": "x", "contract": {"allowed_paths": ["src/[oops"]}},
  {"title": "No id given, one is made", "description": "y"},
  {"id": "no title"}
]}
```)");
  });
  auto r = f.plan(model, {.default_contract = {.acceptance_checks = {"true"}, .max_files = 10,
                                               .time = {.model_turns = 40}}});
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  // What the model was shown.
  CHECK(snapshot.find("Make the calculator evaluate expressions") != std::string::npos);
  CHECK(snapshot.find("src/parser/ (1 files): parse.c") != std::string::npos);
  CHECK(snapshot.find("A calculator library.") != std::string::npos);
  CHECK(snapshot.find("[ready] existing: Write the lexer") != std::string::npos);
  // What it got.
  std::vector<std::string> ids;
  for (const auto& id : r->proposed) ids.push_back(id.str());
  CHECK(ids == std::vector<std::string>{"eval-add", "eval-mul", "no-id-given-one-is-made"});
  auto add = f.task("eval-add");
  auto c = contract::contract_from_json(add.contract).value();
  CHECK(c.allowed_paths == std::vector<std::string>{"src/eval/**"});
  CHECK(c.acceptance_checks == std::vector<std::string>{"make test"});
  CHECK(c.max_files == 3);
  CHECK(c.time.model_turns == 40);  // from the defaults
  auto mul = f.task("eval-mul");
  CHECK(mul.dependencies == std::vector<task_id>{task_id{"eval-add"}});
  CHECK(mul.state == board::task_state::proposed);  // waits for eval-add
  auto dropped = fmt::format("{}", fmt::join(r->dropped, "\n"));
  CHECK(dropped.find("'dup': duplicates an open or merged task") != std::string::npos);
  CHECK(dropped.find("'existing': a task with this id exists") != std::string::npos);
  CHECK(dropped.find("no-such-task") != std::string::npos);
  CHECK(dropped.find("Broken") != std::string::npos);
  CHECK(dropped.find("task 7: no title") != std::string::npos);
}

TEST_CASE("roles.planner.asks_again_once_when_the_answer_is_not_json") {
  planner_fixture f;
  test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
    if (turn == 1) return answer("I would suggest adding tests.");
    CHECK(r.messages.back().text().find("not valid JSON") != std::string::npos);
    return answer(R"({"tasks":[{"id":"tests","title":"Add tests","description":"..."}]})");
  });
  auto r = f.plan(model);
  REQUIRE(r.has_value());
  CHECK(r->model_calls == 2);
  CHECK(r->proposed.size() == 1);

  test::scripted_client stubborn([](const model::request&, int) -> std::optional<model::result_type> {
    return answer("no JSON, sorry");
  });
  auto bad = f.plan(stubborn);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find("twice") != std::string::npos);
}

TEST_CASE("roles.planner.a_sub_planner_stays_in_its_subsystem") {
  planner_fixture f;
  roles::subsystem parser{.name = "parser", .paths = {"src/parser/**"}, .description = "the parser"};
  test::scripted_client model([](const model::request& r, int) -> std::optional<model::result_type> {
    CHECK(r.messages[0].text().find("subsystem 'parser'") != std::string::npos);
    return answer(R"({"tasks":[
      {"id":"p1","title":"Parse numbers","description":"."},
      {"id":"p2","title":"Parse names","description":".","contract":{"allowed_paths":["src/parser/names/**"]}},
      {"id":"p3","title":"Touch eval","description":".","contract":{"allowed_paths":["src/eval/**"]}}]})");
  });
  auto r = f.plan(model, {.name = "parser-planner", .scope = parser});
  REQUIRE(r.has_value());
  CHECK(r->proposed == std::vector<task_id>{task_id{"p1"}, task_id{"p2"}});
  CHECK(f.task("p1").subsystem == "parser");
  CHECK(contract::contract_from_json(f.task("p1").contract).value().allowed_paths ==
        std::vector<std::string>{"src/parser/**"});
  REQUIRE(r->dropped.size() == 1);
  CHECK(r->dropped[0].find("outside the subsystem 'parser'") != std::string::npos);
}

TEST_CASE("roles.planner.splits_abandoned_work_and_retries_a_first_rejection") {
  planner_fixture f;
  auto lease = f.store->grant(60s).value();
  REQUIRE(f.board.propose({.id = task_id{"big"}, .title = "Do everything", .priority = 5}).has_value());
  REQUIRE(f.board.propose({.id = task_id{"after-big"}, .title = "Then this", .dependencies = {task_id{"big"}}}).has_value());
  REQUIRE(f.board.propose({.id = task_id{"flaky"}, .title = "Flaky one"}).has_value());
  // big: claimed and abandoned with a report; flaky: rejected once.
  for (int i = 0; i < 2; ++i) {
    auto t = f.board.claim(worker_id{"w"}, lease).value().value();
    if (t.id == task_id{"big"}) {
      REQUIRE(f.board.abandon(t.id, worker_id{"w"}, json::object{{"kind", "stalled"}, {"summary", "too much"}}).has_value());
    } else {
      REQUIRE(f.board.submit(t.id, worker_id{"w"}).has_value());
      REQUIRE(f.board.finish(t.id, board::task_state::rejected, json::object{{"kind", "checks_failed"}}).has_value());
    }
  }
  test::scripted_client model([](const model::request& r, int) -> std::optional<model::result_type> {
    auto text = r.messages[0].text();
    if (text.find("did not get done") != std::string::npos) {
      CHECK(text.find("too much") != std::string::npos);
      return answer(R"({"tasks":[{"id":"big-1","title":"First half","description":"."},
                                 {"id":"big-2","title":"Second half","description":".","dependencies":["big-1"]}]})");
    }
    return answer(R"({"tasks":[]})");
  });
  auto r = f.plan(model);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->split == std::vector<task_id>{task_id{"big"}});
  CHECK(f.task("big").state == board::task_state::superseded);
  CHECK(f.task("big-1").parent == task_id{"big"});
  CHECK(f.task("big-1").priority == 5);
  CHECK(f.task("big-2").dependencies == std::vector<task_id>{task_id{"big-1"}});
  // Who waited for the parent now waits for its children.
  auto after = f.task("after-big");
  CHECK(std::find(after.dependencies.begin(), after.dependencies.end(), task_id{"big-2"}) != after.dependencies.end());
  // A first rejection is simply retried.
  CHECK(f.task("flaky").state == board::task_state::ready);
  CHECK(f.task("flaky").notes.back().text.find("checks_failed") != std::string::npos);
}

// A split's children that are tasks the board already has (merged or open,
// whatever id the model gives them) would do that work twice: dropped.
TEST_CASE("roles.planner.split_children_do_not_duplicate_tasks_on_the_board") {
  planner_fixture f;
  auto lease = f.store->grant(60s).value();
  REQUIRE(f.board.propose({.id = task_id{"done"}, .title = "Add the lexer"}).has_value());
  REQUIRE(f.board.propose({.id = task_id{"big"}, .title = "Do everything"}).has_value());
  REQUIRE(f.board.propose({.id = task_id{"open"}, .title = "Write the docs", .dependencies = {task_id{"big"}}}).has_value());
  for (int i = 0; i < 2; ++i) {
    auto t = f.board.claim(worker_id{"w"}, lease).value().value();
    if (t.id == task_id{"done"}) {
      REQUIRE(f.board.submit(t.id, worker_id{"w"}).has_value());
      REQUIRE(f.board.finish(t.id, board::task_state::merged).has_value());
    } else {
      REQUIRE(f.board.abandon(t.id, worker_id{"w"}, json::object{{"kind", "stalled"}, {"summary", "too much"}}).has_value());
    }
  }
  test::scripted_client model([](const model::request& r, int) -> std::optional<model::result_type> {
    if (r.messages[0].text().find("did not get done") != std::string::npos)
      return answer(R"({"tasks":[{"id":"done","title":"Add the lexer","description":"."},
                                 {"id":"docs-again","title":"write the docs","description":"."},
                                 {"id":"parser","title":"Add the parser","description":"."},
                                 {"id":"parser-twice","title":"Add the parser","description":"."}]})");
    return answer(R"({"tasks":[]})");
  });
  auto r = f.plan(model);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->split == std::vector<task_id>{task_id{"big"}});
  auto all = f.board.list().value();
  std::size_t lexers = 0, docs = 0, parsers = 0;
  for (const auto& t : all) {
    lexers += t.title == "Add the lexer";
    docs += t.title == "Write the docs" || t.title == "write the docs";
    parsers += t.title == "Add the parser";
  }
  CHECK(lexers == 1);
  CHECK(docs == 1);
  CHECK(parsers == 1);
  CHECK(r->dropped.size() == 3);
  for (const auto& d : r->dropped) CHECK(d.find("has a task titled") != std::string::npos);
}

TEST_CASE("roles.planner.a_full_board_gets_no_new_tasks") {
  planner_fixture f;
  for (int i = 0; i < 3; ++i)
    REQUIRE(f.board.propose({.id = task_id{"t" + std::to_string(i)}, .title = "T" + std::to_string(i)}).has_value());
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
    FAIL("the model must not be asked");
    return std::nullopt;
  });
  auto r = f.plan(model, {.max_open_tasks = 3});
  REQUIRE(r.has_value());
  CHECK(r->model_calls == 0);
  CHECK(r->proposed.empty());
}

// --- Issue 14: planner answers that try to widen their contracts ---

namespace {
std::string joined(const std::vector<std::string>& xs) { return fmt::format("{}", fmt::join(xs, "\n")); }
std::string notes_of(const board::task& t) {
  std::string out;
  for (const auto& n : t.notes) out += n.text + "\n";
  return out;
}
contract::task_contract contract_of(const board::task& t) { return contract::contract_from_json(t.contract).value(); }
bool has(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }
}  // namespace

TEST_CASE("roles.planner.contracts_are_narrowed_to_the_host_ceiling") {
  planner_fixture f;
  std::string snapshot;
  test::scripted_client model([&](const model::request& req, int) -> std::optional<model::result_type> {
    snapshot = req.messages.at(0).text();
    return answer(R"({"tasks":[
      {"id":"all","title":"Everything","description":".","contract":{"allowed_paths":["**"]}},
      {"id":"up","title":"Up","description":".","contract":{"allowed_paths":["../**"]}},
      {"id":"etc","title":"Etc","description":".","contract":{"allowed_paths":["/etc/**"]}},
      {"id":"git","title":"Git","description":".","contract":{"allowed_paths":[".git/**"]}},
      {"id":"hooks","title":"Hooks","description":".","contract":{"allowed_paths":["src/../.git/hooks/**"]}},
      {"id":"docs","title":"Docs","description":".","contract":{"allowed_paths":["docs/**"]}},
      {"id":"mixed","title":"Mixed","description":".","contract":{"allowed_paths":["src/eval/**","/etc/**","../x"]}},
      {"id":"perm","title":"Permissions","description":".","contract":{"allowed_paths":["src/**"],
        "protected_allowed":true,"links":"any","submodules_allowed":true,"executable_allowed":true,
        "max_added_bytes":999999999999,"forbidden_paths":["/etc/**"]}}]})");
  });
  auto r = f.plan(model, {.ceiling = {.allowed_paths = {"src/**", "tests/**"}, .max_added_bytes = 1 << 20}});
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  // The model was told the bounds...
  CHECK(has(snapshot, "Tasks may change only: src/**, tests/**."));
  CHECK(has(snapshot, "Protected (no task you propose may change them; name them in no contract): .ci/**"));
  // ...and code holds it to them.
  CHECK(r->proposed == std::vector<task_id>{task_id{"all"}, task_id{"mixed"}, task_id{"perm"}});
  // Widened: cut to the ceiling, and the task says so.
  auto all = f.task("all");
  CHECK(contract_of(all).allowed_paths == std::vector<std::string>{"src/**", "tests/**"});
  CHECK(has(notes_of(all), "allowed path '**' narrowed to the ceiling's 'src/**', 'tests/**'"));
  auto mixed = f.task("mixed");
  CHECK(contract_of(mixed).allowed_paths == std::vector<std::string>{"src/eval/**"});
  CHECK(has(notes_of(mixed), "allowed path '/etc/**' dropped"));
  CHECK(has(notes_of(mixed), "allowed path '../x' dropped"));
  // Permissions are not the planner's to give.
  auto perm = f.task("perm");
  auto pc = contract_of(perm);
  CHECK_FALSE(pc.protected_allowed);
  CHECK(pc.links == contract::link_policy::none);
  CHECK_FALSE(pc.submodules_allowed);
  CHECK_FALSE(pc.executable_allowed);
  CHECK(pc.max_added_bytes == 1u << 20);
  CHECK(pc.protected_paths == contract::default_protected_paths());
  CHECK(std::find(pc.forbidden_paths.begin(), pc.forbidden_paths.end(), "/etc/**") == pc.forbidden_paths.end());
  CHECK(has(notes_of(perm), "protected_allowed, executable_allowed, submodules_allowed, links ignored"));
  CHECK(has(notes_of(perm), "max_added_bytes 999999999999 lowered"));
  CHECK(has(notes_of(perm), "forbidden path '/etc/**' dropped"));
  // Nothing of it fits: dropped, with why.
  auto dropped = joined(r->dropped);
  for (const char* says : {"task 'Up': its contract does not fit the host's ceiling: none of its allowed paths can "
                           "stand: allowed path '../**' dropped: '../**' contains '..'",
                           "task 'Etc'", "'/etc/**' is absolute", "task 'Git'", "'.git/**' names the repository's .git",
                           "task 'Hooks'", "task 'Docs'", "'docs/**' dropped: it is not inside the ceiling's"}) {
    CAPTURE(says);
    CHECK(has(dropped, says));
  }
  for (const char* id : {"up", "etc", "git", "hooks", "docs"}) CHECK_FALSE(f.board.get(task_id{id}).value().has_value());
}

TEST_CASE("roles.planner.protected_paths_stay_closed_to_planner_tasks") {
  planner_fixture f;
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
    return answer(R"({"tasks":[
      {"id":"ci","title":"Fix CI","description":".","contract":{"allowed_paths":[".ci/**"]}},
      {"id":"workflows","title":"Workflows","description":".","contract":{"allowed_paths":[".github/workflows/**"]}},
      {"id":"scripts","title":"Scripts","description":".","contract":{"allowed_paths":["scripts/**"]}},
      {"id":"build","title":"Build","description":".","contract":{"allowed_paths":["CMakeLists.txt","src/**"]}},
      {"id":"everything","title":"Everything","description":".","contract":{"allowed_paths":["**"],
        "protected_paths":[]}}]})");
  });
  // Even a host default that trusts its own tasks does not reach planner tasks.
  auto r = f.plan(model, {.default_contract = {.protected_allowed = true}});
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->proposed == std::vector<task_id>{task_id{"build"}, task_id{"everything"}});
  auto build = contract_of(f.task("build"));
  CHECK(build.allowed_paths == std::vector<std::string>{"src/**"});
  CHECK(has(notes_of(f.task("build")), "allowed path 'CMakeLists.txt' dropped: it is protected"));
  auto everything = f.task("everything");
  auto ec = contract_of(everything);
  CHECK(ec.allowed_paths == std::vector<std::string>{"**"});
  CHECK(ec.protected_paths == contract::default_protected_paths());
  CHECK_FALSE(ec.protected_allowed);
  CHECK(has(notes_of(everything), "includes protected paths"));
  auto dropped = joined(r->dropped);
  for (const char* says : {"task 'Fix CI'", "'.ci/**' dropped: it is protected ('.ci/**')", "task 'Workflows'",
                           "('.github/**')", "task 'Scripts'", "('scripts/**')"}) {
    CAPTURE(says);
    CHECK(has(dropped, says));
  }
  // The ceiling's protected list is the one that counts.
  test::scripted_client again([](const model::request&, int) -> std::optional<model::result_type> {
    return answer(R"({"tasks":[{"id":"ci2","title":"Fix CI again","description":".","contract":{"allowed_paths":[".ci/**"]}},
      {"id":"deploy","title":"Deploy","description":".","contract":{"allowed_paths":["deploy/**"]}}]})");
  });
  auto r2 = f.plan(again, {.ceiling = {.protected_paths = {"deploy/**"}}});
  REQUIRE(r2.has_value());
  CHECK(r2->proposed == std::vector<task_id>{task_id{"ci2"}});
  CHECK(contract_of(f.task("ci2")).protected_paths == std::vector<std::string>{"deploy/**"});
  CHECK(has(joined(r2->dropped), "'deploy/**' dropped: it is protected"));
}

TEST_CASE("roles.planner.a_sub_planner_narrows_to_its_subsystem_then_the_ceiling") {
  planner_fixture f;
  roles::subsystem parser{.name = "parser", .paths = {"src/parser/**"}, .description = "the parser"};
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
    return answer(R"({"tasks":[
      {"id":"wide","title":"Wide","description":".","contract":{"allowed_paths":["**"]}},
      {"id":"climb","title":"Climb","description":".","contract":{"allowed_paths":["src/parser/../../**"]}},
      {"id":"abs","title":"Absolute","description":".","contract":{"allowed_paths":["/src/parser/**"]}}]})");
  });
  auto r = f.plan(model, {.name = "parser-planner", .scope = parser,
                          .ceiling = {.allowed_paths = {"src/**"}, .max_files = 4}});
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->proposed == std::vector<task_id>{task_id{"wide"}});
  auto wide = f.task("wide");
  auto wc = contract_of(wide);
  CHECK(wc.allowed_paths == std::vector<std::string>{"src/parser/**"});
  CHECK(wc.max_files == 4);
  CHECK(has(notes_of(wide), "contract narrowed to subsystem 'parser': allowed path '**' narrowed"));
  auto dropped = joined(r->dropped);
  CHECK(has(dropped, "task 'Climb': outside the subsystem 'parser'"));
  CHECK(has(dropped, "'..'"));
  CHECK(has(dropped, "task 'Absolute'"));
  CHECK(has(dropped, "absolute"));
}

TEST_CASE("roles.planner.split_children_stay_inside_the_ceiling_and_their_parent") {
  planner_fixture f;
  auto lease = f.store->grant(60s).value();
  auto parent = contract::to_json_value(contract::task_contract{.allowed_paths = {"src/**"}});
  REQUIRE(f.board.propose({.id = task_id{"big"}, .title = "Do src", .contract = parent}).has_value());
  auto t = f.board.claim(worker_id{"w"}, lease).value().value();
  REQUIRE(f.board.abandon(t.id, worker_id{"w"}, json::object{{"kind", "stalled"}}).has_value());
  test::scripted_client model([](const model::request& r, int) -> std::optional<model::result_type> {
    if (r.messages[0].text().find("did not get done") == std::string::npos) return answer(R"({"tasks":[]})");
    return answer(R"({"tasks":[
      {"id":"c1","title":"Eval","description":".","contract":{"allowed_paths":["src/eval/**"]}},
      {"id":"c2","title":"All of it","description":".","contract":{"allowed_paths":["**"]}},
      {"id":"c3","title":"Escape","description":".","contract":{"allowed_paths":["../**"]}},
      {"id":"c4","title":"CI","description":".","contract":{"allowed_paths":[".ci/**"]}},
      {"id":"c5","title":"Docs","description":".","contract":{"allowed_paths":["docs/**"]}}]})");
  });
  auto r = f.plan(model);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->split == std::vector<task_id>{task_id{"big"}});
  CHECK(contract_of(f.task("c1")).allowed_paths == std::vector<std::string>{"src/eval/**"});
  auto c2 = f.task("c2");
  CHECK(contract_of(c2).allowed_paths == std::vector<std::string>{"src/**"});
  CHECK(has(notes_of(c2), "contract narrowed to the parent 'big': allowed path '**' narrowed"));
  CHECK(contract_of(c2).protected_paths == contract::default_protected_paths());
  auto dropped = joined(r->dropped);
  CHECK(has(dropped, "task 'Escape'"));
  CHECK(has(dropped, "task 'CI'"));
  CHECK(has(dropped, "split of 'big': 'c5': outside its parent's paths (src/**)"));
  for (const char* id : {"c3", "c4", "c5"}) CHECK_FALSE(f.board.get(task_id{id}).value().has_value());
}

namespace {
// A backend that completes inside do_chat while holding its own lock (as a
// host's client with a mutex around its connection might): if the planner's
// continuation ran inline it would call again under that lock.
class locking_client final : public model::client {
public:
  std::string name() const override { return "locking"; }
  int turns = 0;

protected:
  void do_chat(model::request, model::delta_handler,
               boost::asio::any_completion_handler<model::chat_signature> h) override {
    std::unique_lock lk(m_, std::try_to_lock);
    if (!lk.owns_lock()) throw std::runtime_error("asked again under the client's own lock: a deadlock");
    ++turns;
    complete(std::move(h), turns == 1 ? answer("I would suggest adding tests.")
                                      : answer(R"({"tasks":[{"id":"tests","title":"Add tests","description":"..."}]})"));
  }

private:
  std::mutex m_;
};
}  // namespace

TEST_CASE("roles.planner.a_client_completing_under_its_own_lock_is_not_reentered") {
  planner_fixture f;
  locking_client model;
  auto r = f.plan(model);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(model.turns == 2);
  CHECK(r->proposed.size() == 1);
}
