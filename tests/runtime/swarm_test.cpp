// The swarm runtime: configuration, a whole small run, stop.
#include "agent/agent_fixture.hpp"
#include "git/git_fixture.hpp"

#include <agentcore/model/cli.hpp>
#include <agentcore/observe/events.hpp>
#include <agentcore/observe/metrics.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/runtime/swarm.hpp>

#include <boost/json/parse.hpp>
#include <fmt/format.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include <sys/resource.h>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

struct swarm_fixture : test::git_fixture {
  test::temp_dir work{"swarm"};
  swarm_fixture() {
    auto root = commit(std::nullopt, {{"README.md", test::file_spec{"# tiny\n"}}, {"src/main.c", test::file_spec{"int main;\n"}}},
                       "root");
    REQUIRE(repo.advance("refs/heads/main", std::nullopt, root, "init").value().advanced);
    REQUIRE(git("symbolic-ref HEAD refs/heads/main").exit == 0);
  }
  runtime::swarm_config config() {
    runtime::swarm_config c;
    c.repository = dir.path();
    c.worktrees = work.path() / "slots";
    c.slots = 4;
    c.workers = 2;
    c.goal = "Add src/a.c and src/b.c";
    c.goal_checks = {"test -f src/a.c && test -f src/b.c"};
    c.gate_policy = gate::policy::serial;
    c.contract.allowed_paths = {"src/**"};
    return c;
  }
};

// A planner that plans a and b once, then nothing.
std::shared_ptr<test::scripted_client> two_task_planner() {
  return std::make_shared<test::scripted_client>([](const model::request&, int turn) -> std::optional<model::result_type> {
    if (turn == 1)
      return test::text_answer(R"({"tasks":[{"id":"a","title":"Add a","description":"create src/a.c"},
                                            {"id":"b","title":"Add b","description":"create src/b.c"}]})");
    return test::text_answer(R"({"tasks":[]})");
  });
}

// A worker that writes src/<task>.c, then finishes.
std::shared_ptr<test::scripted_client> file_writer() {
  return std::make_shared<test::scripted_client>([](const model::request& r, int) -> std::optional<model::result_type> {
    if (r.messages.size() == 1)
      return test::calls({{"write_file", fmt::format(R"({{"path":"src/{}.c","content":"int {};\n"}})", r.tags.task, r.tags.task)}});
    return test::calls({{"finish", R"({"summary":"done"})"}});
  });
}


// Runs a swarm on a thread of its own and stops it when `stop_when` says so,
// or when `deadline` passes: a run that would hang then fails its test with
// what the swarm and its workers last did, instead of a ctest timeout that
// says nothing.
struct bounded_run {
  result<runtime::swarm_report> report = fail(error::invalid_argument, "not run");
  bool cut_off = false;   // the deadline stopped it
  bool asked_to = false;  // stop_when stopped it
  std::chrono::steady_clock::duration took{};
  std::string log;  // the swarm's events and the workers' phases, oldest first
};
bounded_run run_bounded(runtime::swarm& s, std::chrono::seconds deadline, std::function<bool()> stop_when = {}) {
  bounded_run out;
  std::mutex mu;
  auto note = [&](std::string line) {
    std::lock_guard lock(mu);
    out.log += line + "\n";
  };
  auto t0 = std::chrono::steady_clock::now();
  auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  auto a = s.events().subscribe<runtime::swarm_event>(
      [&](const runtime::swarm_event& e) { note(fmt::format("{:7.3f} swarm {}: {}", since(), e.what, e.detail)); });
  auto b = s.events().subscribe<roles::worker_phase>([&](const roles::worker_phase& p) {
    note(fmt::format("{:7.3f} {} {} {} {}", since(), p.worker, p.task, p.phase, p.detail));
  });
  std::atomic<bool> done{false};
  std::thread watch([&] {
    while (!done) {
      if (stop_when && !out.asked_to && stop_when()) {
        out.asked_to = true;
        s.stop();
      }
      if (!out.cut_off && std::chrono::steady_clock::now() - t0 > deadline) {
        out.cut_off = true;
        note(fmt::format("{:7.3f} the deadline passed: stopping", since()));
        s.stop();
      }
      std::this_thread::sleep_for(5ms);
    }
  });
  out.report = s.run();
  done = true;
  watch.join();
  out.took = std::chrono::steady_clock::now() - t0;
  std::lock_guard lock(mu);
  return out;
}
}  // namespace

TEST_CASE("runtime.config.reads_checks_and_writes_back") {
  auto text = R"({
    // comments are allowed
    "schema": 1, "repository": "repo", "goal": "g", "store": "file:state",
    "models": {"planner": "replay:t.jsonl", "worker": "openai:gpt-4o"},
    "gate": {"policy": "batch", "batch_size": 4, "deep_checks": ["make test"]},
    "contract": {"allowed_paths": ["src/**"], "time_box": {"model_turns": 30}},
    "subsystems": [{"name": "parser", "paths": ["src/parser/**"]}],
    "judge": {"merges_per_cycle": 5, "max_cycles": 3},
    "workers": 6, "sandbox": "required",
  })";
  auto c = runtime::config_from_text(text, "/base");
  REQUIRE_MESSAGE(c.has_value(), c.error().message());
  CHECK(c->repository == std::filesystem::path("/base/repo"));
  CHECK(c->store == "file:/base/state");
  CHECK(c->models.planner == "replay:/base/t.jsonl");
  CHECK(c->models.worker == "openai:gpt-4o");
  CHECK(c->gate_policy == gate::policy::batch);
  CHECK(c->batch_size == 4);
  CHECK(c->contract.time.model_turns == 30);
  CHECK(c->subsystems.at(0).name == "parser");
  CHECK(c->merges_per_cycle == 5);
  CHECK(c->workers == 6);
  CHECK(c->sandbox == process::sandbox_mode::required);
  CHECK(c->worktrees == std::filesystem::path("/base/repo/.agentcore/slots"));
  // What init writes reads back as the same configuration.
  auto again = runtime::config_from_text(runtime::commented_config(*c), "/elsewhere");
  REQUIRE_MESSAGE(again.has_value(), again.error().message());
  CHECK(json::serialize(runtime::to_json_value(*again)) == json::serialize(runtime::to_json_value(*c)));

  auto error_of = [](std::string_view t) {
    auto r = runtime::config_from_text(t, "/b");
    REQUIRE_FALSE(r.has_value());
    return r.error().message();
  };
  CHECK(error_of(R"({"repository":"r"})").find("'schema' is missing") != std::string::npos);
  CHECK(error_of(R"({"schema":1})").find("'repository' is missing") != std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","workers":"six"})") ==
        "configuration: 'workers' must be a whole number from 0 to 100000, not \"six\"");
  CHECK(error_of(R"({"schema":1,"repository":"r","gate":{"policy":"yolo"}})").find("'gate.policy' must be \"serial\"") !=
        std::string::npos);
  // The sandbox is the default; giving it up takes words that say what is given up.
  CHECK(runtime::config_from_text(R"({"schema":1,"repository":"r"})", "/b")->sandbox == process::sandbox_mode::required);
  CHECK(runtime::config_from_text(R"({"schema":1,"repository":"r","sandbox":"unconfined-host-access"})", "/b")->sandbox ==
        process::sandbox_mode::unconfined_host_access);
  for (const char* old : {"off", "automatic"}) {
    auto why = error_of(fmt::format(R"({{"schema":1,"repository":"r","sandbox":"{}"}})", old));
    CHECK(why.find("no longer accepted") != std::string::npos);
    CHECK(why.find("unconfined-host-access") != std::string::npos);
  }
  CHECK(error_of(R"({"schema":1,"repository":"r","wrokers":3})") ==
        "configuration: unknown field 'wrokers'; remove it or check its spelling");
  CHECK(error_of(R"({"schema":1,"repository":"r","judge":{"reveiw":true}})").find("'judge.reveiw'") != std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","store":"redis://x"})").find("'store' must be") != std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","store":"etcd:///prefix"})").find("etcd://HOST:PORT") !=
        std::string::npos);
  CHECK(runtime::config_from_text(R"({"schema":1,"repository":"r","store":"etcd://10.0.0.1:2379,10.0.0.2/b"})", "/b"));
  CHECK(error_of(R"({"schema":1,"repository":"r","subsystems":[{"name":"x","paths":["src/[x"]}]})")
            .find("subsystems[0].paths") != std::string::npos);
  CHECK(error_of(R"({"schema":2,"repository":"r"})").find("newer") != std::string::npos);
  // Budgets: per run, role and task; a role that is none, a cost that is no money and a price that is no
  // number are errors naming the field.
  auto b = runtime::config_from_text(R"({"schema":1,"repository":"r","model_options":{"prices":{"gpt-4o":{"input_per_mtok":2.5}}},
      "budgets":{"run":{"cost":50},"roles":{"worker":{"tokens":5000000000},"planner":{"cost":5}},"task":{"tokens":20000}}})",
                                     "/b");
  REQUIRE_MESSAGE(b.has_value(), b.error().message());
  CHECK(b->budgets.run.cost == 50.0);
  CHECK_FALSE(b->budgets.run.tokens);
  CHECK(b->budgets.roles.at("worker").tokens == 5000000000ull);
  CHECK(b->budgets.roles.at("planner").cost == 5.0);
  CHECK(b->budgets.task.tokens == 20000u);
  auto b2 = runtime::config_from_text(runtime::commented_config(*b), "/b");
  REQUIRE_MESSAGE(b2.has_value(), b2.error().message());
  CHECK(json::serialize(runtime::to_json_value(*b2)) == json::serialize(runtime::to_json_value(*b)));
  CHECK(error_of(R"({"schema":1,"repository":"r","budgets":{"roles":{"wroker":{"tokens":5}}}})")
            .find("'budgets.roles.wroker' names no role") != std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","budgets":{"run":{"cost":-1}}})") ==
        "configuration: 'budgets.run.cost' must be a number above 0, not -1");
  CHECK(error_of(R"({"schema":1,"repository":"r","budgets":{"task":{"tokens":0}}})").find("'budgets.task.tokens'") !=
        std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","budgets":{"run":{"dollars":3}}})").find("'budgets.run.dollars'") !=
        std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","model_options":{"prices":{"m":{"input_per_mtok":"cheap"}}}})")
            .find("input_per_mtok") != std::string::npos);
  CHECK(error_of(R"({"schema":1,"repository":"r","model_options":{"prices":{"m":{"input_per_mtok":-2}}}})")
            .find("negative") != std::string::npos);
  CHECK(error_of("{not json").find("not valid JSON") != std::string::npos);
}

TEST_CASE("runtime.swarm.plans_works_gates_and_stops_when_the_goal_is_met") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto worker = file_writer();
  std::vector<std::string> swarm_events;
  event_bus bus;
  auto sub = bus.subscribe<runtime::swarm_event>([&](const runtime::swarm_event& e) { swarm_events.push_back(e.what); });
  auto s = runtime::swarm::create(f.config(), {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                                 if (role == "planner") return planner;
                                                 if (role == "worker") return worker;
                                                 return nullptr;
                                               },
                                               .events = &bus});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->goal_met);
  CHECK(r->merged == 2);
  CHECK(r->tasks_by_state["merged"] == 2);
  CHECK(r->cycles >= 1);
  CHECK(r->reason.find("goal") != std::string::npos);
  CHECK(f.repo.entry_at(f.repo.commit_tree(f.repo.resolve("refs/heads/main").value()).value(), "src/b.c").value());
  CHECK(swarm_events.front() == "started");
  CHECK(swarm_events.back() == "finished");
}

TEST_CASE("runtime.swarm.stop_releases_claims_and_ends_the_run") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto hanging = std::make_shared<test::scripted_client>(
      [](const model::request&, int) -> std::optional<model::result_type> { return std::nullopt; });
  auto cfg = f.config();
  cfg.store = "file:" + (f.work.path() / "store").string();
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : hanging;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  std::thread stopper([&] {
    while (hanging->requests().size() < 2) std::this_thread::sleep_for(10ms);
    (*s)->stop();
  });
  auto r = (*s)->run();
  stopper.join();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->stopped);
  CHECK(r->tasks_by_state["claimed"] == 0);  // released, not left claimed
  CHECK(r->tasks_by_state["ready"] == 2);
  s->reset();
  // A new swarm on the same store resumes with the tasks still there.
  auto again = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                              return role == "planner" ? std::shared_ptr<model::client>(planner)
                                                                       : std::shared_ptr<model::client>(file_writer());
                                            }});
  REQUIRE_MESSAGE(again.has_value(), again.error().message());
  auto r2 = (*again)->run();
  REQUIRE_MESSAGE(r2.has_value(), r2.error().message());
  CHECK(r2->goal_met);
  CHECK(r2->tasks_by_state["merged"] == 2);
}

TEST_CASE("runtime.swarm.a_failing_model_is_backed_off_not_spun_on") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto broken = std::make_shared<test::scripted_client>([](const model::request&, int) -> std::optional<model::result_type> {
    return model::result_type(model::fail(model::error::unavailable, "scripted: the API is down"));
  });
  std::atomic<int> errors{0};
  event_bus bus;
  auto sub = bus.subscribe<runtime::swarm_event>([&](const runtime::swarm_event& e) {
    if (e.what == "error" && e.detail.find("the API is down") != std::string::npos) ++errors;
  });
  auto s = runtime::swarm::create(f.config(), {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                                 return role == "planner" ? std::shared_ptr<model::client>(planner) : broken;
                                               },
                                               .events = &bus});
  REQUIRE(s.has_value());
  std::thread stopper([&] {
    std::this_thread::sleep_for(1500ms);
    (*s)->stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  auto r = (*s)->run();
  stopper.join();
  REQUIRE(r.has_value());
  CHECK(r->stopped);
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // the back-off does not hold up stopping
  // Two workers, each tried, failed, and waited (1 s, then 2 s): a handful of calls, not thousands.
  CHECK(broken->requests().size() >= 2);
  CHECK(broken->requests().size() <= 8);
  CHECK(errors >= 2);  // and each failure was said, with the model's words
  CHECK(r->tasks_by_state["ready"] == 2);
}

// A file store that fails a write takes no more work until it is reopened
// (fail-stop). The run must end with that error, not have every worker,
// planner and gate loop retry it forever (a soak whose store directory was
// removed spun on "the store stopped accepting commits" and ignored SIGTERM).
// The failure: the process's file size limit (RLIMIT_FSIZE) set just past the
// store's log, as a full disk would, once a worker has claimed a task.
TEST_CASE("runtime.swarm.a_store_that_fails_a_write_ends_the_run_with_that_error") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto store_dir = f.work.path() / "store";
  rlimit before{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &before) == 0);
  auto old_xfsz = ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit is EFBIG, not the end of the process
  std::atomic<bool> limited{false};
  auto failing = std::make_shared<test::scripted_client>([&](const model::request&, int) -> std::optional<model::result_type> {
    if (!limited.exchange(true)) {
      std::uintmax_t largest = 0;
      for (const auto& e : std::filesystem::directory_iterator(store_dir))
        if (e.path().filename().string().starts_with("wal-")) largest = std::max(largest, e.file_size());
      rlimit l = before;
      l.rlim_cur = static_cast<rlim_t>(largest + 8);
      ::setrlimit(RLIMIT_FSIZE, &l);
    }
    return model::result_type(model::fail(model::error::unavailable, "scripted: the API is down"));
  });
  auto cfg = f.config();
  cfg.store = "file:" + store_dir.string();
  event_bus bus;
  auto sub = bus.subscribe<runtime::swarm_event>([&](const runtime::swarm_event& e) {
    if (e.what == "error") MESSAGE(e.detail);
  });
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : failing;
                                        },
                                        .events = &bus});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  std::atomic<bool> ended{false};
  std::thread watchdog([&] {  // a hang fails the test instead of holding up the suite
    for (int i = 0; i < 300 && !ended; ++i) std::this_thread::sleep_for(100ms);
    if (!ended) (*s)->stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  auto r = (*s)->run();
  ended = true;
  watchdog.join();
  ::setrlimit(RLIMIT_FSIZE, &before);
  ::signal(SIGXFSZ, old_xfsz);
  CHECK(limited);
  REQUIRE_MESSAGE(!r.has_value(), (r ? r->reason : std::string()));
  CHECK(r.error() == error::closed);
  CHECK(r.error().message().find("stopped accepting commits") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);
  s->reset();
  // Nothing acknowledged was lost: the store reopens with the planned tasks.
  auto reopened = runtime::open_store(cfg.store);
  REQUIRE_MESSAGE(reopened.has_value(), reopened.error().message());
  board::task_board board(**reopened);
  CHECK(board.get(task_id{"a"}).value().has_value());
}

TEST_CASE("runtime.swarm.waves_plan_only_when_the_board_is_drained") {
  swarm_fixture f;
  std::atomic<int> open_when_asked{-1};
  auto planner = std::make_shared<test::scripted_client>([&](const model::request& r, int turn) -> std::optional<model::result_type> {
    auto snapshot = r.messages[0].text();
    if (turn == 1) return test::text_answer(R"({"tasks":[{"id":"a","title":"Add a","description":"src/a.c"}]})");
    if (turn == 2) {
      // The first wave is over before the second is planned: a is merged, nothing is open.
      CHECK(snapshot.find("# Open tasks\n(none)") != std::string::npos);
      CHECK(snapshot.find("- a: Add a") != std::string::npos);
      return test::text_answer(R"({"tasks":[{"id":"b","title":"Add b","description":"src/b.c"}]})");
    }
    return test::text_answer(R"({"tasks":[]})");
  });
  auto worker = file_writer();
  auto cfg = f.config();
  cfg.plan_when = runtime::swarm_config::plan_schedule::drained;
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->goal_met);
  CHECK(r->cycles == 2);  // one per wave
  CHECK(planner->requests().size() == 2);  // exactly one round per wave: replayable
  REQUIRE(r->judgements.size() == 2);
  CHECK(r->judgements[0].figures.merged == 1);
  CHECK(r->judgements[1].figures.merged == 1);
}

TEST_CASE("runtime.swarm.stop_while_the_gate_has_the_changes_loses_nothing") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto worker = file_writer();
  auto cfg = f.config();
  cfg.store = "file:" + (f.work.path() / "store").string();
  cfg.deep_checks = {"sleep 1"};  // a slow gate: the workers wait for their verdicts
  std::atomic<int> waiting{0};
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto sub = (*s)->events().subscribe<roles::worker_phase>([&](const roles::worker_phase& p) { waiting += p.phase == "waiting"; });
  auto run = run_bounded(**s, 120s, [&] { return waiting >= 2; });
  INFO("the first run:\n" << run.log);
  REQUIRE_MESSAGE(run.report.has_value(), run.report.error().message());
  auto& r = *run.report;
  CHECK_FALSE(run.cut_off);
  CHECK(r.stopped);
  CHECK(run.took < 30s);  // the gate's step ends; nobody waits for verdicts forever
  CHECK(r.tasks_by_state["claimed"] == 0);
  CHECK(r.tasks_by_state["submitted"] + r.tasks_by_state["merged"] == 2);
  sub.reset();
  s->reset();
  // The next run's gate decides what the last one left queued.
  auto again = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                              return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                            }});
  REQUIRE_MESSAGE(again.has_value(), again.error().message());
  auto run2 = run_bounded(**again, 120s);
  INFO("the second run:\n" << run2.log);
  REQUIRE_MESSAGE(run2.report.has_value(), run2.report.error().message());
  CHECK_FALSE(run2.cut_off);
  CHECK(run2.report->goal_met);
  CHECK(run2.report->tasks_by_state["merged"] == 2);
}

// A CLI coding agent as the workers' engine (a fake one: it reads the task
// from its prompt and writes the file, first with a TODO the acceptance
// check refuses). Each attempt runs it once; the self-check's failure reaches
// its second run; its changes are taken from the worktree and go through the
// contract and the gate like any worker's.
TEST_CASE("runtime.swarm.a_cli_agent_does_whole_tasks") {
  swarm_fixture f;
  test::temp_dir bin("fake-cli");
  auto script = bin / "agent";
  test::write_text(script, R"(#!/bin/sh
prompt=$(cat)
file=$(printf '%s' "$prompt" | grep -o 'src/[a-z]*[.]c' | head -n 1)
[ -n "$file" ] || { echo "no task in the prompt" >&2; exit 2; }
name=$(basename "$file" .c)
mkdir -p src
case "$prompt" in
  *"acceptance check"*) printf 'int %s;\n' "$name" > "$file"; echo "Removed the TODO from $file." ;;
  *) printf 'int %s; /* TODO */\n' "$name" > "$file"; echo "Wrote $file." ;;
esac
)");
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  std::shared_ptr<model::client> cli = model::make_cli_client(
      {.output = model::cli_options::format::text, .command = {script.string()}, .time_box = 60s, .name = "cli:fake"});
  auto planner = two_task_planner();
  auto cfg = f.config();
  cfg.goal = "Add the two files";  // the only paths in a worker's prompt are its task's
  cfg.contract.acceptance_checks = {"! grep -rq TODO src"};
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : cli;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  std::mutex mu;
  std::map<std::string, int> runs;  // CLI runs per task
  auto sub = (*s)->events().subscribe<agent::turn_event>([&](const agent::turn_event& e) {
    std::lock_guard lock(mu);
    if (e.role == "worker") ++runs[e.task];
  });
  auto run = run_bounded(**s, 120s);
  INFO(run.log);
  REQUIRE_MESSAGE(run.report.has_value(), run.report.error().message());
  CHECK_FALSE(run.cut_off);
  CHECK(run.report->goal_met);
  CHECK(run.report->tasks_by_state["merged"] == 2);
  std::lock_guard lock(mu);
  CHECK(runs["a"] == 2);  // written, then fixed after the self-check said why
  CHECK(runs["b"] == 2);
  CHECK(f.git("show main:src/a.c").out == "int a;\n");
  CHECK(f.git("show main:src/b.c").out == "int b;\n");
}

// kill -9 between the board's submit and the gate's: the task is
// `submitted` and no gate has its change. A restart hands the change over
// (or, with no change named, requeues the task); the run then ends, instead
// of waiting for a verdict forever, and the work is not done twice.
TEST_CASE("runtime.swarm.a_submission_a_crash_kept_from_the_gate_is_handed_over") {
  swarm_fixture f;
  auto cfg = f.config();
  cfg.store = "file:" + (f.work.path() / "store").string();
  auto main_tip = f.repo.resolve("refs/heads/main").value();
  {
    auto st = runtime::open_store(cfg.store).value();
    board::task_board b(*st);
    REQUIRE(b.propose({.id = task_id{"a"}, .title = "Add a"}).has_value());
    REQUIRE(b.propose({.id = task_id{"b"}, .title = "Add b"}).has_value());
    auto lease = st->grant(60s).value();
    for (int i = 0; i < 2; ++i) {
      auto t = b.claim(worker_id{"dead"}, lease).value();
      REQUIRE(t);
      json::object report{{"kind", "finished"}, {"summary", "done"}};
      if (t->id == task_id{"a"}) {  // committed and named its change, then died
        auto head = f.commit(main_tip, {{"src/a.c", test::file_spec{"int a;\n"}}}, "a");
        report["head"] = head.hex();
        report["base"] = main_tip.hex();
        report["change"] = "a-1-0";
      }
      REQUIRE(b.submit(t->id, worker_id{"dead"}, report).has_value());
    }
    REQUIRE(st->revoke(lease).has_value());
  }
  auto planner = std::make_shared<test::scripted_client>(
      [](const model::request&, int) -> std::optional<model::result_type> { return test::text_answer(R"({"tasks":[]})"); });
  auto worker = file_writer();
  std::vector<std::string> recovered;
  event_bus bus;
  auto sub = bus.subscribe<runtime::swarm_event>([&](const runtime::swarm_event& e) {
    if (e.what == "recovered") recovered.push_back(e.detail);
  });
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        },
                                        .events = &bus});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->goal_met);
  CHECK(r->tasks_by_state["merged"] == 2);
  CHECK(r->tasks_by_state["submitted"] == 0);
  CHECK(recovered.size() == 2);
  // a's change landed as it was: its worker's model was never asked again.
  for (const auto& req : worker->requests()) CHECK(req.tags.task != "a");
  auto tree = f.repo.commit_tree(f.repo.resolve("refs/heads/main").value()).value();
  CHECK(f.repo.read_blob(f.repo.entry_at(tree, "src/a.c").value()->id).value() == "int a;\n");
}

// Prices in the model options reach every call: the planner's and the
// workers' (host clients here), in the report, the agent.turn events and
// the metrics, all agreeing.
TEST_CASE("runtime.swarm.every_model_call_is_priced_in_the_report_events_and_metrics") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto worker = file_writer();
  auto cfg = f.config();
  // The scripted answers use 10 input and 5 output tokens: 10 * 1 + 5 * 2 = 20 a call.
  cfg.model_options =
      json::parse(R"({"prices":{"scripted":{"input_per_mtok":1000000,"output_per_mtok":2000000}}})").as_object();
  event_bus bus;
  std::mutex m;
  double turn_cost = 0;
  std::set<std::string> priced_roles;
  auto sub = bus.subscribe<agent::turn_event>([&](const agent::turn_event& e) {
    std::lock_guard lock(m);
    turn_cost += e.cost;
    if (e.cost > 0) priced_roles.insert(e.role);
  });
  auto metrics = std::make_shared<observe::metrics_registry>();
  observe::hub hub(bus);
  hub.add(std::make_shared<observe::metrics_sink>(metrics));
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        },
                                        .events = &bus});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->goal_met);
  auto planner_calls = planner->requests().size(), worker_calls = worker->requests().size();
  REQUIRE(planner_calls >= 1);
  REQUIRE(worker_calls >= 4);
  CHECK(r->cost == doctest::Approx(20.0 * static_cast<double>(planner_calls + worker_calls)));
  CHECK(r->usage.input_tokens == 10 * (planner_calls + worker_calls));
  {
    std::lock_guard lock(m);
    CHECK(turn_cost == doctest::Approx(r->cost));
    CHECK(priced_roles.count("planner") == 1);
    CHECK(priced_roles.count("worker") == 1);
  }
  hub.flush();
  CHECK(metrics->value("agentcore_cost_total", {{"role", "planner"}, {"model", "scripted-1"}}) ==
        doctest::Approx(20.0 * static_cast<double>(planner_calls)));
  CHECK(metrics->value("agentcore_cost_total", {{"role", "worker"}, {"model", "scripted-1"}}) ==
        doctest::Approx(20.0 * static_cast<double>(worker_calls)));
}

// The workers' budget runs out after their first calls: no call beyond it
// reaches the model, the tasks go back untouched, and the run ends at once
// with a report that names the budget (no claiming and releasing forever).
TEST_CASE("runtime.swarm.an_exhausted_worker_budget_ends_the_run_naming_it") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto worker = file_writer();
  auto cfg = f.config();
  cfg.budgets.roles["worker"] = {.tokens = 15};  // one scripted call
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto t0 = std::chrono::steady_clock::now();
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(std::chrono::steady_clock::now() - t0 < 20s);
  CHECK_FALSE(r->goal_met);
  CHECK(r->budget_exhausted.find("'worker role'") != std::string::npos);
  CHECK(r->reason.find("budget") != std::string::npos);
  CHECK(worker->requests().size() <= 2);  // each of the two workers' first call, at most
  CHECK(r->tasks_by_state["claimed"] == 0);
  CHECK(r->tasks_by_state["merged"] == 0);
  CHECK(r->tasks_by_state["ready"] == 2);
  // The task whose call was refused went back saying why (the other may have been stopped with the run).
  bool said = false;
  for (const char* id : {"a", "b"}) {
    auto t = (*s)->board().get(task_id{id}).value();
    REQUIRE(t);
    for (const auto& n : t->notes) said = said || n.text.find("'worker role' is exhausted") != std::string::npos;
  }
  CHECK(said);
}

// The run's money budget covers the planner too: once the planner's and the
// first workers' calls have spent it, the run ends naming the run's budget.
TEST_CASE("runtime.swarm.an_exhausted_run_budget_in_money_ends_the_run") {
  swarm_fixture f;
  auto planner = two_task_planner();
  auto worker = file_writer();
  auto cfg = f.config();
  cfg.model_options = json::parse(R"({"prices":{"*":{"input_per_mtok":1000000,"output_per_mtok":2000000}}})").as_object();
  cfg.budgets.run = {.cost = 50.0};  // 20 a call: the planner's and two workers' calls
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK_FALSE(r->goal_met);
  CHECK(r->budget_exhausted.find("'run'") != std::string::npos);
  CHECK(planner->requests().size() + worker->requests().size() <= 4);
  CHECK(r->cost >= 50.0);
  CHECK(r->cost <= 80.0);
  CHECK(r->tasks_by_state["claimed"] == 0);
}

// A task's own budget bounds that task: spent, the task is abandoned with
// kind "budget_exhausted" (for a planner to split), and the run goes on.
TEST_CASE("runtime.swarm.an_exhausted_task_budget_abandons_that_task") {
  swarm_fixture f;
  auto planner = two_task_planner();
  // Task a's worker writes and finishes at once; task b's keeps reading.
  auto worker = std::make_shared<test::scripted_client>([](const model::request& r, int) -> std::optional<model::result_type> {
    if (r.tags.task == "b") return test::calls({{"list_files", R"({"path":"src"})"}});
    if (r.messages.size() == 1) return test::calls({{"write_file", R"({"path":"src/a.c","content":"int a;\n"})"}});
    return test::calls({{"finish", R"({"summary":"done"})"}});
  });
  auto cfg = f.config();
  cfg.goal_checks = {"test -f src/a.c"};
  cfg.budgets.task = {.tokens = 40};  // enough for a's two calls, b's third call is refused
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        }});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->budget_exhausted.empty());  // the run was not stopped by a budget
  auto a = (*s)->board().get(task_id{"a"}).value();
  auto b = (*s)->board().get(task_id{"b"}).value();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->state == board::task_state::merged);
  CHECK((b->state == board::task_state::abandoned || b->state == board::task_state::superseded));
  std::size_t b_calls = 0;
  for (const auto& q : worker->requests()) b_calls += q.tags.task == "b";
  CHECK(b_calls == 3);  // 15 + 15 + 15 >= 40: the fourth is refused before the model
  // Its report says why, for the planner.
  REQUIRE(b->result.is_object());
  CHECK(b->result.as_object().at("kind").as_string() == "budget_exhausted");
  CHECK(std::string(b->result.as_object().at("summary").as_string()).find("'task b'") != std::string::npos);
}

// A judge's restart starts afresh, tested by what it changes: the planners
// are told the judge's findings (here the only way to the goal: the scripted
// planner proposes the task that meets it only when it reads them), and an
// attempt that began before the judged cycle (here in the first, the stall
// and restart come in a later one) is ended, its task released with why.
TEST_CASE("runtime.swarm.a_judge_restart_changes_what_the_next_cycle_does") {
  swarm_fixture f;
  std::atomic<int> fresh_prompts{0};
  auto planner = std::make_shared<test::scripted_client>([&](const model::request& r, int turn) -> std::optional<model::result_type> {
    auto text = r.messages[0].text();
    if (text.find("did not get done") != std::string::npos) return test::text_answer(R"({"tasks":[]})");
    if (turn == 1)
      return test::text_answer(R"({"tasks":[{"id":"stuck","title":"Stuck","description":"loops"},
                                            {"id":"slow","title":"Slow","description":"never answers"}]})");
    if (text.find("Why planning starts afresh") != std::string::npos && text.find("stalled") != std::string::npos) {
      if (fresh_prompts++ == 0)
        return test::text_answer(R"({"tasks":[{"id":"fresh","title":"Fresh","description":"create src/fresh.c"}]})");
    }
    return test::text_answer(R"({"tasks":[]})");
  });
  auto worker = std::make_shared<test::scripted_client>([](const model::request& r, int) -> std::optional<model::result_type> {
    // The same call again and again: a stall, after the first cycle (1 s) is over.
    if (r.tags.task == "stuck") return test::calls({{"run_command", R"({"command":"sleep 0.4"})"}});
    if (r.tags.task == "slow") return std::nullopt;                                         // no answer, ever
    if (r.messages.size() == 1) return test::calls({{"write_file", R"({"path":"src/fresh.c","content":"int f;\n"})"}});
    return test::calls({{"finish", R"({"summary":"done"})"}});
  });
  auto cfg = f.config();
  cfg.goal_checks = {"test -f src/fresh.c"};
  cfg.merges_per_cycle = 0;
  cfg.cycle_time = 1s;
  cfg.restart_stalls = 1;
  cfg.max_cycles = 8;  // without a restart that changes anything the goal is never met
  std::vector<std::string> restarts;
  event_bus bus;
  auto sub = bus.subscribe<runtime::swarm_event>([&](const runtime::swarm_event& e) {
    if (e.what == "restart") restarts.push_back(e.detail);
  });
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                          return role == "planner" ? std::shared_ptr<model::client>(planner) : worker;
                                        },
                                        .events = &bus});
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  auto r = (*s)->run();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->goal_met);
  REQUIRE_FALSE(restarts.empty());
  CHECK(fresh_prompts >= 1);
  auto slow = (*s)->board().get(task_id{"slow"}).value();
  REQUIRE(slow);
  bool ended = false;
  for (const auto& n : slow->notes) ended = ended || n.text.find("ended by the judge's restart") != std::string::npos;
  CHECK(ended);
}

// Finished tasks leave the board for the store's archive (a SQLite file next
// to a file store's segments), the gate forgets their changes, and they are
// not done again: a restarted run whose planner proposes the same work finds
// it there; the report counts them; a deleted archive is an error that names it, not work silently redone.
TEST_CASE("runtime.swarm.finished_tasks_are_archived_and_not_redone") {
  swarm_fixture f;
  auto cfg = f.config();
  auto dir = f.work.path() / "store";
  cfg.store = "file:" + dir.string();
  cfg.keep_finished = 0;
  auto run_once = [&] {
    auto planner = two_task_planner();  // proposes a and b at its first turn, each run
    auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view role) -> std::shared_ptr<model::client> {
                                            return role == "planner" ? std::shared_ptr<model::client>(planner)
                                                                     : std::shared_ptr<model::client>(file_writer());
                                          }});
    REQUIRE_MESSAGE(s.has_value(), s.error().message());
    auto run = run_bounded(**s, 120s);
    INFO(run.log);
    REQUIRE_MESSAGE(run.report.has_value(), run.report.error().message());
    CHECK_FALSE(run.cut_off);
    CHECK(run.report->goal_met);
    CHECK(run.report->tasks_by_state["merged"] == 2);
    CHECK(run.report->tasks_total == 2);
    return planner->requests().size();
  };
  run_once();
  auto main_after_first = f.repo.resolve("refs/heads/main").value();
  run_once();  // archives a and b as it starts; the planner's a and b are dropped
  CHECK(f.repo.resolve("refs/heads/main").value() == main_after_first);  // nothing merged again
  {
    auto st = runtime::open_store(cfg.store, {.read_only = true}).value();
    CHECK(st->range("board/task/").value().kvs.empty());  // off the board
    // and the gate has forgotten their changes (keep_finished of them kept)
    CHECK(st->range("gate/main/verdict/").value().kvs.empty());
    CHECK(st->range("gate/main/landed/").value().kvs.empty());
    auto archive = runtime::open_archive(cfg.store, *st, {.read_only = true}).value();
    REQUIRE(archive);
    CHECK(archive->count(board::task_state::merged).value() == 2);
    board::task_board b(*st, {.archive = archive});
    CHECK(b.get(task_id{"a"}).value().value().state == board::task_state::merged);
  }
  // The archive deleted: the next run refuses to start, naming it.
  std::filesystem::remove(dir / "archive.sqlite");
  auto s = runtime::swarm::create(cfg, {.client_for = [&](std::string_view) -> std::shared_ptr<model::client> {
                                          return file_writer();
                                        }});
  REQUIRE_FALSE(s.has_value());
  CHECK(s.error().message().find("archive.sqlite") != std::string::npos);
  CHECK(s.error().message().find("deleted or replaced") != std::string::npos);
}
