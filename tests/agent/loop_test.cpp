// The agent loop: turns until finish, the time box, stalls, stop, condensing.
#include "agent/agent_fixture.hpp"
#include "support/io_thread.hpp"

#include <agentcore/core/event_bus.hpp>
#include <agentcore/model/cli.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <fmt/format.h>

#include <chrono>
#include <future>
#include <optional>
#include <set>
#include <thread>

using namespace agentcore;
using namespace std::chrono_literals;

namespace {

struct loop_fixture : test::agent_fixture {
  test::io_thread io;
  boost::asio::thread_pool blocking{1};
  agent::workspace ws = open();

  agent::outcome run(test::scripted_client& model, agent::loop_options o, std::string task = "Add a greeting") {
    o.executor = io.io.get_executor();
    o.blocking = blocking.get_executor();
    if (o.tags.role.empty()) o.tags = {.role = "worker", .task = "t1"};
    agent::agent_loop loop(model, ws, agent::standard_tools({.command_timeout = 30s}), std::move(o));
    std::promise<agent::outcome> p;
    auto f = p.get_future();
    loop.async_run(std::move(task), [&](agent::outcome out) { p.set_value(std::move(out)); });
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    return f.get();
  }
};

// Every tool result in a request answers a tool call made earlier in it, and
// roles alternate starting with the user: what both APIs insist on.
void check_well_formed(const model::request& r) {
  REQUIRE_FALSE(r.messages.empty());
  CHECK(r.messages.front().role == model::role::user);
  std::set<std::string> called;
  for (std::size_t i = 0; i < r.messages.size(); ++i) {
    if (i > 0) CHECK(r.messages[i].role != r.messages[i - 1].role);
    for (const auto& p : r.messages[i].parts) {
      if (auto* c = std::get_if<model::tool_call>(&p)) called.insert(c->id);
      if (auto* t = std::get_if<model::tool_result>(&p)) CHECK_MESSAGE(called.count(t->call_id) == 1, t->call_id);
    }
  }
}

}  // namespace

TEST_CASE("agent.loop.turns_until_finish") {
  loop_fixture f;
  event_bus bus;
  std::vector<std::string> seen;
  auto sub = bus.subscribe_all([&](const event& e) { seen.emplace_back(e.type); });
  test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
    if (turn == 1) return test::calls({{"read_file", R"({"path":"src/main.cpp"})"}});
    if (turn == 2) {
      // The answer to the call is in this request, paired with its id.
      auto last = r.messages.back();
      auto* res = std::get_if<model::tool_result>(&last.parts.at(0));
      REQUIRE(res);
      CHECK(res->call_id == "call-1");
      CHECK(res->content.find("int main()") != std::string::npos);
      return test::calls({{"write_file", R"({"path":"src/greet.hpp","content":"// hello\n"})"},
                          {"edit_file", R"({"path":"src/main.cpp","old_text":"return 0;","new_text":"return 1;"})"}});
    }
    return test::calls({{"finish", R"({"summary":"added src/greet.hpp"})"}});
  });
  auto out = f.run(model, {.events = &bus});
  CHECK(out.kind == agent::outcome_kind::finished);
  CHECK(out.summary == "added src/greet.hpp");
  CHECK(out.turns == 3);
  CHECK(out.usage.input_tokens == 30);
  CHECK(out.usage.output_tokens == 15);
  CHECK(out.tool_calls == 4);
  CHECK(out.tool_errors == 0);
  CHECK(out.files_written == std::vector<std::string>{"src/greet.hpp", "src/main.cpp"});
  CHECK(test::read_text(f.wt / "src/greet.hpp") == "// hello\n");
  auto reqs = model.requests();
  REQUIRE(reqs.size() == 3);
  for (const auto& r : reqs) check_well_formed(r);
  CHECK(reqs[0].system.find("Goal: Add a greeting") != std::string::npos);  // the contract, stated
  CHECK(reqs[0].system.find("src/**") != std::string::npos);
  CHECK(reqs[0].tools.size() == 7);
  CHECK(reqs[0].tags.role == "worker");
  CHECK(std::count(seen.begin(), seen.end(), "agent.turn") == 3);
  CHECK(std::count(seen.begin(), seen.end(), "agent.tool_call") == 4);
  CHECK(std::count(seen.begin(), seen.end(), "agent.outcome") == 1);
}

TEST_CASE("agent.loop.bad_calls_are_answered_and_the_loop_goes_on") {
  loop_fixture f;
  test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
    if (turn == 1)
      return test::calls({{"write_file", R"({"path":"src/a.txt", "content": )"},  // cut off: not JSON
                          {"rm_rf", R"({})"},
                          {"write_file", R"({"path":"../../etc/x","content":"x"})"},
                          {"write_file", R"({"path":"README.md","content":"x"})"}});
    auto& results = r.messages.back().parts;
    REQUIRE(results.size() == 4);
    for (const auto& p : results) CHECK(std::get<model::tool_result>(p).is_error);
    CHECK(std::get<model::tool_result>(results[0]).content.find("JSON") != std::string::npos);
    CHECK(std::get<model::tool_result>(results[1]).content.find("no tool named 'rm_rf'") != std::string::npos);
    CHECK(std::get<model::tool_result>(results[1]).content.find("read_file") != std::string::npos);
    CHECK(std::get<model::tool_result>(results[2]).content.find("refused") != std::string::npos);
    CHECK(std::get<model::tool_result>(results[3]).content.find("contract") != std::string::npos);
    return test::calls({{"finish", R"({"summary":"gave up politely"})"}});
  });
  auto out = f.run(model, {});
  CHECK(out.kind == agent::outcome_kind::finished);
  CHECK(out.tool_errors == 4);
  CHECK_FALSE(std::filesystem::exists(f.wt / "src/a.txt"));
  CHECK(test::read_text(f.wt / "README.md") == "# demo\n");
}

TEST_CASE("agent.loop.time_box_turns_tokens_cost") {
  SUBCASE("turns") {
    loop_fixture f;
    test::scripted_client model([](const model::request&, int turn) -> std::optional<model::result_type> {
      return test::calls({{"write_file", fmt::format(R"({{"path":"src/f{}.txt","content":"x"}})", turn)}});
    });
    auto out = f.run(model, {.limits = {.model_turns = 3}});
    CHECK(out.kind == agent::outcome_kind::time_box);
    CHECK(out.turns == 3);
    CHECK(out.summary.find("3 model turns") != std::string::npos);
  }
  SUBCASE("tokens") {
    loop_fixture f;
    test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
      CHECK(r.max_tokens <= 4096);
      return test::calls({{"write_file", fmt::format(R"({{"path":"src/f{}.txt","content":"x"}})", turn)}},
                         {400, 100});
    });
    auto out = f.run(model, {.limits = {.tokens = 1200}});
    CHECK(out.kind == agent::outcome_kind::time_box);
    CHECK(out.turns == 3);  // 500, 1000, 1500 >= 1200
    CHECK(out.summary.find("1200 tokens") != std::string::npos);
    auto reqs = model.requests();
    CHECK(reqs.back().max_tokens == 200);  // what the box had left
  }
  SUBCASE("cost") {
    loop_fixture f;
    test::scripted_client model([](const model::request&, int turn) -> std::optional<model::result_type> {
      return test::calls({{"write_file", fmt::format(R"({{"path":"src/f{}.txt","content":"x"}})", turn)}},
                         {1'000'000, 0});
    });
    auto out = f.run(model, {.limits = {.cost = 2.5}, .prices = {{"scripted-1", {.input_per_mtok = 1.0}}}});
    CHECK(out.kind == agent::outcome_kind::time_box);
    CHECK(out.turns == 3);
    CHECK(out.cost == doctest::Approx(3.0));
  }
}

TEST_CASE("agent.loop.wall_time_cancels_a_hanging_model_and_bounds_commands") {
  SUBCASE("model") {
    loop_fixture f;
    test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> { return std::nullopt; });
    auto t0 = std::chrono::steady_clock::now();
    auto out = f.run(model, {.limits = {.wall = 1s}});
    CHECK(out.kind == agent::outcome_kind::time_box);
    CHECK(out.summary.find("wall time") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - t0 < 10s);
  }
  SUBCASE("command") {
    loop_fixture f;
    test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
      return test::calls({{"run_command", R"({"command":"sleep 600","timeout_seconds":600})"}});
    });
    auto t0 = std::chrono::steady_clock::now();
    auto out = f.run(model, {.limits = {.wall = 2s}});
    CHECK(out.kind == agent::outcome_kind::time_box);
    CHECK(std::chrono::steady_clock::now() - t0 < 15s);
  }
}

TEST_CASE("agent.loop.stop_ends_a_running_loop") {
  loop_fixture f;
  test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> { return std::nullopt; });
  agent::agent_loop loop(model, f.ws, agent::standard_tools(),
                         {.executor = f.io.io.get_executor(), .blocking = f.blocking.get_executor()});
  std::promise<agent::outcome> p;
  auto fut = p.get_future();
  loop.async_run("task", [&](agent::outcome o) { p.set_value(std::move(o)); });
  while (model.requests().empty()) std::this_thread::sleep_for(5ms);
  loop.stop();
  REQUIRE(fut.wait_for(10s) == std::future_status::ready);
  CHECK(fut.get().kind == agent::outcome_kind::stopped);
}

TEST_CASE("agent.loop.stalls") {
  SUBCASE("the same call over and over") {
    loop_fixture f;
    test::scripted_client model([](const model::request&, int) -> std::optional<model::result_type> {
      return test::calls({{"read_file", R"({"path":"src/main.cpp"})"}});
    });
    auto out = f.run(model, {.repeat_limit = 4});
    CHECK(out.kind == agent::outcome_kind::stalled);
    CHECK(out.turns == 4);
    CHECK(out.summary.find("read_file") != std::string::npos);
    CHECK(out.summary.find("4 turns in a row") != std::string::npos);
  }
  SUBCASE("no file changed") {
    loop_fixture f;
    test::scripted_client model([](const model::request&, int turn) -> std::optional<model::result_type> {
      return test::calls({{"search", fmt::format(R"({{"pattern":"x{}"}})", turn)}});
    });
    auto out = f.run(model, {.idle_turns = 5});
    CHECK(out.kind == agent::outcome_kind::stalled);
    CHECK(out.turns == 5);
    CHECK(out.summary.find("no file changed in the last 5 turns") != std::string::npos);
  }
  SUBCASE("talking instead of calling tools") {
    loop_fixture f;
    test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
      if (turn > 1) CHECK(r.messages.back().text().find("call finish") != std::string::npos);  // nudged
      return test::text_answer("I think the code is fine.");
    });
    auto out = f.run(model, {.idle_turns = 3});
    CHECK(out.kind == agent::outcome_kind::stalled);
    CHECK(out.turns == 3);
  }
}

TEST_CASE("agent.loop.condenses_a_long_conversation") {
  loop_fixture f;
  std::string big(4000, 'z');
  test::write_text(f.wt / "src/big.txt", big);
  int summaries = 0, work_turns = 0;
  test::scripted_client model([&](const model::request& r, int) -> std::optional<model::result_type> {
    if (r.system.starts_with("You condense")) {
      ++summaries;
      CHECK(r.tools.empty());
      CHECK(r.messages.size() == 1);
      CHECK(r.messages[0].text().find("[assistant called") != std::string::npos);
      return test::text_answer("SUMMARY: read big.txt several times, wrote notes", {50, 20});
    }
    check_well_formed(r);
    std::size_t n = ++work_turns;
    if (n > 24) return test::calls({{"finish", R"({"summary":"done"})"}});
    // Alternate reading the big file and writing, so nothing stalls.
    if (n % 2 == 1) return test::calls({{"read_file", R"({"path":"src/big.txt"})"}}, {0, 0});
    return test::calls({{"write_file", fmt::format(R"({{"path":"src/n{}.txt","content":"x"}})", n)}}, {0, 0});
  });
  auto out = f.run(model, {.context_tokens = 3000, .keep_messages = 4, .repeat_limit = 0, .idle_turns = 0},
                   "THE TASK STATEMENT");
  REQUIRE(summaries > 0);
  CHECK(out.condensations == static_cast<std::size_t>(summaries));
  auto reqs = model.requests();
  bool saw_condensed = false;
  for (const auto& r : reqs) {
    if (r.system.starts_with("You condense")) continue;
    CHECK(r.messages.front().text().starts_with("THE TASK STATEMENT"));  // the task always stays
    if (r.messages.front().text().find("SUMMARY: read big.txt") != std::string::npos) saw_condensed = true;
  }
  CHECK(saw_condensed);
  CHECK(out.usage.input_tokens >= 50);  // the summaries' usage is charged too
  // Without condensing, a request would have carried every read of the big file.
  for (const auto& r : reqs) {
    std::size_t chars = 0;
    for (const auto& m : r.messages)
      for (const auto& p : m.parts)
        if (auto* t = std::get_if<model::tool_result>(&p)) chars += t->content.size();
    CHECK(chars < 20000);
  }
}

// A model that asks for ten thousand tool calls in one answer gets the first
// max_tool_calls_per_turn run; every other call is answered with why.
TEST_CASE("agent.loop.tool_calls_per_turn_are_bounded") {
  loop_fixture f;
  test::scripted_client model([](const model::request& r, int turn) -> std::optional<model::result_type> {
    if (turn == 1) {
      std::vector<std::pair<std::string, std::string>> flood;
      for (int i = 0; i < 10000; ++i)
        flood.emplace_back("write_file", fmt::format(R"({{"path":"src/flood/f{}.txt","content":"x"}})", i));
      return test::calls(std::move(flood));
    }
    auto& results = r.messages.back().parts;
    REQUIRE(results.size() == 10000);  // every call has its answer, as the APIs insist
    CHECK_FALSE(std::get<model::tool_result>(results[63]).is_error);
    CHECK(std::get<model::tool_result>(results[64]).is_error);
    CHECK(std::get<model::tool_result>(results[64]).content.find("at most 64 tool calls") != std::string::npos);
    return test::calls({{"finish", R"({"summary":"flooded"})"}});
  });
  auto out = f.run(model, {});
  CHECK(out.kind == agent::outcome_kind::finished);
  std::size_t written = 0;
  for (auto& e : std::filesystem::directory_iterator(f.wt / "src/flood")) written += e.is_regular_file();
  CHECK(written == 64);
}

// A whole-task engine (a CLI coding agent) does the attempt in one call: the
// loop asks it once, takes its report as the summary and counts the worktree
// as changed outside the tools; a continuation asks it once more, with the
// conversation and the new message. (Driven turn by turn, it was nudged to
// call tools it does not have, re-run again and again, then called stalled.)
TEST_CASE("agent.loop.a_whole_task_engine_is_asked_once_per_attempt") {
  loop_fixture f;
  test::temp_dir bin("fake-cli");
  auto script = bin / "agent";
  test::write_text(script, R"(#!/bin/sh
prompt=$(cat)
n=1; [ -f src/calls ] && n=$(( $(cat src/calls) + 1 ))
echo $n > src/calls
case "$prompt" in
  *"the check fails"*) echo 'int greeting = 2;' > src/greeting.c; echo "Fixed the greeting." ;;
  *) echo 'int greeting = 1;' > src/greeting.c; echo "Wrote src/greeting.c." ;;
esac
)");
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  auto cli = model::make_cli_client({.output = model::cli_options::format::text, .command = {script.string()},
                                     .time_box = 60s, .name = "cli:fake"});
  REQUIRE(cli->engine() == model::engine_kind::whole_task);
  std::filesystem::create_directories(f.wt / "src");
  event_bus bus;
  std::vector<agent::turn_event> turns;
  auto sub = bus.subscribe<agent::turn_event>([&](const agent::turn_event& e) { turns.push_back(e); });
  agent::loop_options o{.executor = f.io.io.get_executor(), .blocking = f.blocking.get_executor(),
                        .limits = {.model_turns = 30}, .events = &bus};
  o.tags = {.role = "worker", .task = "t1", .workdir = f.wt.string()};
  agent::agent_loop loop(*cli, f.ws, {}, o);
  auto ask = [&](std::vector<model::message> conversation, std::string message) {
    std::promise<agent::outcome> p;
    auto done = p.get_future();
    auto handler = [&](agent::outcome out) { p.set_value(std::move(out)); };
    if (conversation.empty()) loop.async_run(std::move(message), handler);
    else loop.async_continue(std::move(conversation), std::move(message), handler);
    REQUIRE(done.wait_for(60s) == std::future_status::ready);
    return done.get();
  };
  auto out = ask({}, "Add src/greeting.c");
  REQUIRE_MESSAGE(out.kind == agent::outcome_kind::finished, out.summary);
  CHECK(out.turns == 1);
  CHECK(out.summary == "Wrote src/greeting.c.\n");
  CHECK(test::read_text(f.wt / "src/calls") == "1\n");
  CHECK(test::read_text(f.wt / "src/greeting.c") == "int greeting = 1;\n");
  CHECK(f.ws.untracked_changes());  // a commit must look at the whole worktree
  REQUIRE(turns.size() == 1);
  CHECK(turns[0].tool_calls.empty());
  REQUIRE(out.messages.size() == 2);  // the statement and the agent's report
  CHECK(out.messages[0].text() == "Add src/greeting.c");

  auto again = ask(std::move(out.messages), "the check fails: greeting must be 2");
  REQUIRE_MESSAGE(again.kind == agent::outcome_kind::finished, again.summary);
  CHECK(again.turns == 1);
  CHECK(again.summary == "Fixed the greeting.\n");
  CHECK(test::read_text(f.wt / "src/calls") == "2\n");
  CHECK(test::read_text(f.wt / "src/greeting.c") == "int greeting = 2;\n");
}

namespace {
namespace asio = boost::asio;

// A model and a tool that answer from threads of their own after a while, as
// an HTTP client with its own I/O thread or a tool waiting on a service does.
class threaded_model final : public model::client {
public:
  std::string name() const override { return "threaded"; }
  ~threaded_model() override {
    for (auto& t : threads_) t.join();
  }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    bool first = req.messages.size() == 1;
    threads_.emplace_back([first, h = std::move(h)]() mutable {
      std::this_thread::sleep_for(50ms);
      std::move(h)(first ? model::result_type(test::calls({{"slow", "{}"}}))
                         : model::result_type(test::calls({{"finish", R"({"summary":"done"})"}})));
    });
  }

private:
  std::vector<std::thread> threads_;
};

class slow_tool final : public agent::tool {
public:
  slow_tool() : tool({.name = "slow", .description = "answers after a while", .parameters = {{"type", "object"}}}) {}
  ~slow_tool() override {
    for (auto& t : threads_) t.join();
  }

protected:
  void do_invoke(json::object, agent::tool_context&, asio::any_completion_handler<agent::tool_signature> h) override {
    threads_.emplace_back([h = std::move(h)]() mutable {
      std::this_thread::sleep_for(50ms);
      std::move(h)(agent::tool_output{"slow answer"});
    });
  }

private:
  std::vector<std::thread> threads_;
};
}  // namespace

// The host's io_context::run() returns only once the outcome is delivered,
// even while every part of the loop waits on a thread that is not the
// host's: the loop, the model call and the tool call count as outstanding
// work. (The custom-tool example once printed a default outcome, "failed
// after 0 turns", when run() returned with a model answer still on its way.)
TEST_CASE("agent.loop.the_host_io_context_runs_until_the_outcome") {
  test::agent_fixture fx;
  auto ws = fx.open();
  threaded_model model;
  auto tools = agent::standard_tools();
  tools.push_back(std::make_shared<slow_tool>());
  for (int round = 0; round < 3; ++round) {
    boost::asio::io_context io;
    agent::agent_loop loop(model, ws, tools, {.executor = io.get_executor(), .limits = {.model_turns = 5}});
    std::optional<agent::outcome> out;
    loop.async_run("Be slow", [&](agent::outcome o) { out = std::move(o); });
    io.run();
    REQUIRE(out);
    CHECK_MESSAGE(out->kind == agent::outcome_kind::finished, out->summary);
    CHECK(out->summary == "done");
    CHECK(out->turns == 2);
  }
}
