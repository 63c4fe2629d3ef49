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
