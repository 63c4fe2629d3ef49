// The worker role end to end: a real repository, worktree pool, store, board
// and merge gate; a scripted model.
#include "agent/agent_fixture.hpp"
#include "gate/gate_fixture.hpp"
#include "support/io_thread.hpp"

#include <agentcore/roles/planner.hpp>
#include <agentcore/roles/worker.hpp>

#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <thread>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

gate::gate_options with_board(gate::gate_options o, board::task_board& b) {
  o.board = &b;
  return o;
}

struct worker_fixture : test::gate_fixture {
  explicit worker_fixture(gate::gate_options go = {.mode = gate::policy::serial}) : g(open_gate(with_board(go, board))) {}
  test::io_thread io;
  boost::asio::thread_pool blocking{2};
  event_bus bus;
  board::task_board board{*store, {.events = &bus}};
  std::unique_ptr<gate::merge_gate> g;
  std::atomic<bool> done{false};
  std::thread runner{[this] {
    while (!done) {
      (void)g->run_until_empty();
      std::this_thread::sleep_for(5ms);
    }
  }};
  ~worker_fixture() {
    done = true;
    runner.join();
  }

  contract::task_contract terms{.goal = "work", .allowed_paths = {"src/**"}};

  void propose(const std::string& id, contract::task_contract c) {
    board::task t{.id = task_id{id}, .title = "Task " + id};
    t.contract = contract::to_json_value(c);
    REQUIRE(board.propose(std::move(t)).has_value());
  }

  roles::work_report run(model::client& model, roles::worker_options o = {}) {
    if (o.id.str().empty()) o.id = worker_id{"w1"};
    o.loop.executor = io.io.get_executor();
    o.loop.blocking = blocking.get_executor();
    o.events = &bus;
    roles::worker w(board, *store, dir.path(), *pool, *g, model, std::move(o));
    std::promise<result<roles::work_report>> p;
    auto f = p.get_future();
    w.async_run_one([&](result<roles::work_report> r) { p.set_value(std::move(r)); });
    REQUIRE(f.wait_for(120s) == std::future_status::ready);
    auto r = f.get();
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
    return *r;
  }

  board::task task(const std::string& id) { return board.get(task_id{id}).value().value(); }
  std::string main_file(const std::string& path) {
    auto tree = repo.commit_tree(main_tip()).value();
    auto e = repo.entry_at(tree, path).value();
    REQUIRE(e.has_value());
    return repo.read_blob(e->id).value();
  }
};

}  // namespace

TEST_CASE("roles.worker.idle_when_nothing_is_ready") {
  worker_fixture f;
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
    FAIL("the model must not be asked");
    return std::nullopt;
  });
  auto r = f.run(model);
  CHECK(r.result == roles::work_result::idle);
  CHECK_FALSE(r.task.has_value());
}

TEST_CASE("roles.worker.claims_works_submits_and_lands") {
  worker_fixture f;
  f.propose("greet", f.terms);
  std::vector<std::string> phases;
  auto sub = f.bus.subscribe<roles::worker_phase>([&](const roles::worker_phase& p) { phases.push_back(p.phase); });
  test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
    CHECK(r.tags.role == "worker");
    CHECK(r.tags.task == "greet");
    if (turn == 1) {
      CHECK(r.messages[0].text().starts_with("Task greet: Task greet"));
      return test::calls({{"write_file", R"({"path":"src/greet.c","content":"const char* greet = \"hi\";\n"})"}});
    }
    return test::calls({{"finish", R"({"summary":"added src/greet.c"})"}});
  });
  auto r = f.run(model);
  CHECK(r.result == roles::work_result::merged);
  CHECK(r.task == task_id{"greet"});
  CHECK(r.turns == 2);
  REQUIRE(r.verdicts.size() == 1);
  CHECK(r.verdicts[0].kind == gate::verdict_kind::merged);
  CHECK(f.task("greet").state == board::task_state::merged);
  CHECK(f.main_file("src/greet.c") == "const char* greet = \"hi\";\n");
  CHECK(phases.front() == "claimed");
  CHECK(std::find(phases.begin(), phases.end(), "waiting") != phases.end());
  CHECK(phases.back() == "merged");
}

TEST_CASE("roles.worker.self_check_sends_failures_back_to_the_model") {
  worker_fixture f;
  auto terms = f.terms;
  terms.acceptance_checks = {"grep -q fixed src/main.c"};
  f.propose("fix", terms);
  test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
    switch (turn) {
      case 1: return test::calls({{"finish", R"({"summary":"nothing to do, surely"})"}});
      case 2:
        CHECK(r.messages.back().text().find("no change") != std::string::npos);
        return test::calls({{"write_file", R"({"path":"src/main.c","content":"int main; /* broken */\n"})"}});
      case 3: return test::calls({{"finish", R"({"summary":"changed"})"}});
      case 4:
        CHECK(r.messages.back().text().find("acceptance check 'grep -q fixed src/main.c' fails") != std::string::npos);
        return test::calls({{"write_file", R"({"path":"src/main.c","content":"int main; /* fixed */\n"})"}});
      default: return test::calls({{"finish", R"({"summary":"fixed"})"}});
    }
  });
  auto r = f.run(model, {.fix_rounds = 2});
  CHECK(r.result == roles::work_result::merged);
  CHECK(r.fix_rounds_used == 2);
  CHECK(f.main_file("src/main.c") == "int main; /* fixed */\n");
}

TEST_CASE("roles.worker.a_contract_breach_by_command_is_caught_before_the_gate") {
  worker_fixture f;
  f.propose("sneaky", f.terms);
  test::scripted_client model([](const model::request&, int turn) -> std::optional<model::result_type> {
    if (turn % 2 == 1) return test::calls({{"run_command", R"({"command":"echo hacked >> README"})"}});
    return test::calls({{"finish", R"({"summary":"done"})"}});
  });
  auto before = f.main_tip();
  auto r = f.run(model, {.fix_rounds = 1});
  CHECK(r.result == roles::work_result::abandoned);
  CHECK(r.detail.find("README") != std::string::npos);
  auto t = f.task("sneaky");
  CHECK(t.state == board::task_state::abandoned);
  CHECK(t.result.as_object().at("kind").as_string() == "self_check_failed");
  CHECK(f.main_tip() == before);
}

TEST_CASE("roles.worker.a_stall_abandons_with_a_report") {
  worker_fixture f;
  f.propose("stuck", f.terms);
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
    return test::calls({{"read_file", R"({"path":"src/main.c"})"}});
  });
  auto r = f.run(model, {.loop = {.repeat_limit = 3}});
  CHECK(r.result == roles::work_result::abandoned);
  auto t = f.task("stuck");
  CHECK(t.state == board::task_state::abandoned);
  const auto& report = t.result.as_object();
  CHECK(report.at("kind").as_string() == "stalled");
  CHECK(std::string(report.at("summary").as_string()).find("3 turns in a row") != std::string::npos);
  CHECK(report.at("turns").as_int64() == 3);
  // The next attempt is told how the last one ended.
  CHECK(roles::task_statement(t).find("ended as 'stalled'") != std::string::npos);
}

TEST_CASE("roles.worker.resolves_a_merge_conflict_itself") {
  worker_fixture f;
  f.propose("edit", f.terms);
  auto repo_path = f.dir.path();
  auto root = f.root;
  std::atomic<bool> moved{false};
  test::scripted_client model([&](const model::request& r, int turn) -> std::optional<model::result_type> {
    if (turn == 1) {
      // Meanwhile another change lands on main, on the same line.
      auto repo = git::repository::open(repo_path).value();
      auto blob = repo.write_blob("int main = 1; /* main */\n").value();
      auto tree = repo.edit_tree(repo.commit_tree(root).value(),
                                 {{"src/main.c", git::tree_entry{blob, git::file_mode::blob}}})
                      .value();
      auto c = repo.create_commit(tree, {root}, "someone else", {"x", "x@x", 0, 0}).value();
      REQUIRE(repo.advance("refs/heads/main", root, c, "someone else").value().advanced);
      moved = true;
      return test::calls({{"write_file", R"({"path":"src/main.c","content":"int main = 2; /* worker */\n"})"}});
    }
    if (turn == 2) return test::calls({{"finish", R"({"summary":"set main to 2"})"}});
    if (turn == 3) {
      auto ask = r.messages.back().text();
      CHECK(ask.find("conflicts with it in: src/main.c") != std::string::npos);
      return test::calls({{"read_file", R"({"path":"src/main.c"})"}});
    }
    if (turn == 4) {
      auto shown = std::get<model::tool_result>(r.messages.back().parts.at(0)).content;
      CHECK(shown.find("<<<<<<<") != std::string::npos);
      CHECK(shown.find("/* main */") != std::string::npos);
      CHECK(shown.find("/* worker */") != std::string::npos);
      return test::calls({{"write_file", R"({"path":"src/main.c","content":"int main = 3; /* both */\n"})"}});
    }
    return test::calls({{"finish", R"({"summary":"resolved"})"}});
  });
  auto r = f.run(model);
  CHECK(moved);
  CHECK(r.result == roles::work_result::merged);
  CHECK(r.conflicts_resolved == 1);
  REQUIRE(r.verdicts.size() == 2);
  CHECK(r.verdicts[0].kind == gate::verdict_kind::conflict);
  CHECK(r.verdicts[1].kind == gate::verdict_kind::merged);
  CHECK(f.main_file("src/main.c") == "int main = 3; /* both */\n");
  CHECK(f.task("edit").state == board::task_state::merged);
}

TEST_CASE("roles.worker.unresolved_markers_are_not_submitted") {
  worker_fixture f;
  f.propose("lazy", f.terms);
  auto repo_path = f.dir.path();
  auto root = f.root;
  test::scripted_client model([&](const model::request&, int turn) -> std::optional<model::result_type> {
    if (turn == 1) {
      auto repo = git::repository::open(repo_path).value();
      auto blob = repo.write_blob("int main = 1;\n").value();
      auto tree = repo.edit_tree(repo.commit_tree(root).value(),
                                 {{"src/main.c", git::tree_entry{blob, git::file_mode::blob}}})
                      .value();
      auto c = repo.create_commit(tree, {root}, "someone else", {"x", "x@x", 0, 0}).value();
      REQUIRE(repo.advance("refs/heads/main", root, c, "someone else").value().advanced);
      return test::calls({{"write_file", R"({"path":"src/main.c","content":"int main = 2;\n"})"}});
    }
    return test::calls({{"finish", R"({"summary":"done"})"}});  // never resolves anything
  });
  auto r = f.run(model, {.fix_rounds = 1});
  CHECK(r.result == roles::work_result::abandoned);
  CHECK(r.detail.find("conflict markers") != std::string::npos);
  CHECK(f.main_file("src/main.c") == "int main = 1;\n");
}

TEST_CASE("roles.worker.a_change_refused_at_submission_leaves_no_ref_in_the_shared_repository") {
  // The gate refuses every change at submission (a host check that fails).
  gate::gate_options go{.mode = gate::policy::serial};
  go.host_fast_checks = {gate::make_check("refuse", [](const std::filesystem::path&, const gate::check_options&) {
    gate::check_result r;
    r.command = "refuse";
    r.exit_code = 1;
    r.log = "refused by the host";
    return result<gate::check_result>(r);
  })};
  test::temp_dir shared_dir("shared");
  auto shared = shared_dir.path().string();
  REQUIRE(test::sh("git init -q --bare '" + shared + "'").exit == 0);
  go.remote = shared;  // the gate publishes what it queues there
  worker_fixture f(go);
  REQUIRE(f.git("push -q '" + shared + "' main").exit == 0);
  f.propose("greet", f.terms);
  test::scripted_client model([](const model::request&, int turn) -> std::optional<model::result_type> {
    if (turn == 1)
      return test::calls({{"write_file", R"({"path":"src/greet.c","content":"const char* greet = \"hi\";\n"})"}});
    return test::calls({{"finish", R"({"summary":"added src/greet.c"})"}});
  });
  auto r = f.run(model);
  CHECK(r.result == roles::work_result::rejected);
  REQUIRE_FALSE(r.verdicts.empty());
  CHECK(r.verdicts.back().kind == gate::verdict_kind::checks_failed);
  auto refs = test::sh("git --git-dir='" + shared + "' for-each-ref refs/agentcore/changes");
  CHECK_MESSAGE(refs.out.empty(), "change refs left behind: " << refs.out);
}

// A rejection's reason, its failing check and the end of that check's output
// reach the next attempt's statement and the planner, through a real gate:
// the retry is told what the compiler or the tests said, not just "exit 2".
TEST_CASE("roles.worker.the_gate_s_failure_output_reaches_the_retry_and_the_planner") {
  worker_fixture f({.mode = gate::policy::serial,
                    .deep_checks = {"echo 'building...'; echo 'src/greet.c:1: error: SENTINEL-7f3a expected ; before }' >&2; "
                                    "exit 2"}});
  f.propose("greet", f.terms);
  auto write_and_finish = [](const model::request&, int turn) -> std::optional<model::result_type> {
    if (turn == 1) return test::calls({{"write_file", R"({"path":"src/greet.c","content":"int greet = 1;\n"})"}});
    return test::calls({{"finish", R"({"summary":"added src/greet.c"})"}});
  };
  test::scripted_client first(write_and_finish);
  auto r1 = f.run(first);
  REQUIRE(r1.verdicts.size() == 1);
  CHECK(r1.verdicts[0].kind == gate::verdict_kind::deep_checks_failed);
  REQUIRE(f.task("greet").state == board::task_state::rejected);

  // The planner's round requeues it with the reason, and shows it when it splits.
  auto plan = [&](model::client& m, int split_after) {
    roles::planner p(f.board, f.dir.path(), m,
                     {.goal = "greet", .max_new_tasks = 0, .split_after = split_after, .executor = f.io.io.get_executor()});
    std::promise<result<roles::plan_report>> pr;
    auto fut = pr.get_future();
    p.async_plan([&](result<roles::plan_report> r) { pr.set_value(std::move(r)); });
    REQUIRE(fut.wait_for(60s) == std::future_status::ready);
    auto r = fut.get();
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
  };
  test::scripted_client quiet([](const model::request&, int) -> std::optional<model::result_type> {
    return test::text_answer(R"({"tasks": []})");
  });
  plan(quiet, 2);
  auto requeued = f.task("greet");
  REQUIRE(requeued.state == board::task_state::ready);
  bool noted = false;
  for (const auto& n : requeued.notes) noted = noted || n.text.find("SENTINEL-7f3a") != std::string::npos;
  CHECK_MESSAGE(noted, "the requeue note names the compiler's complaint");

  std::string statement;
  test::scripted_client second([&](const model::request& r, int turn) -> std::optional<model::result_type> {
    if (turn == 1) statement = r.messages.at(0).text();
    return write_and_finish(r, turn);
  });
  auto r2 = f.run(second);
  CHECK(r2.verdicts.at(0).kind == gate::verdict_kind::deep_checks_failed);
  INFO(statement);
  CHECK(statement.find("deep_checks_failed") != std::string::npos);
  CHECK(statement.find("exit 2") != std::string::npos);
  CHECK(statement.find("src/greet.c:1: error: SENTINEL-7f3a expected ; before }") != std::string::npos);

  // Failed twice: the planner splits it, and its prompt has the output too.
  std::string split_prompt;
  test::scripted_client splitter([&](const model::request& r, int) -> std::optional<model::result_type> {
    if (r.messages.at(0).text().find("did not get done") != std::string::npos) split_prompt = r.messages.at(0).text();
    return test::text_answer(R"({"tasks": []})");
  });
  plan(splitter, 2);
  INFO(split_prompt);
  CHECK(split_prompt.find("SENTINEL-7f3a") != std::string::npos);
  CHECK(split_prompt.find("\"log\"") == std::string::npos);  // words, not the verdict's raw JSON
}

// A task claimed again and again (its model calls fail, its workers die) is
// given up with why, not claimed forever.
TEST_CASE("roles.worker.a_task_claimed_too_often_is_abandoned_with_why") {
  worker_fixture f;
  f.propose("stuck", f.terms);
  auto lease = f.store->grant(60s).value();
  for (int i = 0; i < 3; ++i) {
    REQUIRE(f.board.claim(worker_id{"w0"}, lease).value());
    REQUIRE(f.board.release(task_id{"stuck"}, worker_id{"w0"}, "the model could not be asked: down").has_value());
  }
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
    FAIL("the model must not be asked");
    return std::nullopt;
  });
  auto r = f.run(model, {.max_attempts = 3});
  CHECK(r.result == roles::work_result::abandoned);
  auto t = f.task("stuck");
  CHECK(t.state == board::task_state::abandoned);
  CHECK(t.result.as_object().at("kind").as_string() == "too_many_attempts");
  CHECK(std::string(t.result.as_object().at("summary").as_string()).find("the model could not be asked: down") !=
        std::string::npos);
}
