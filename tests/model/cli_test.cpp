// CLI agents as whole-task engines, with small fake agents that emit the
// event streams Claude Code, Codex CLI and Aider print.
#include <agentcore/model/cli.hpp>
#include <agentcore/model/registry.hpp>

#include "support/temp_dir.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

using namespace agentcore;
using agentcore::test::temp_dir;
using std::chrono::milliseconds;

namespace {

std::string write_script(const temp_dir& dir, const std::string& name, const std::string& body) {
  auto path = dir / name;
  std::ofstream(path) << "#!/bin/sh\n" << body;
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path.string();
}

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

model::request task(const std::filesystem::path& workdir) {
  model::request r;
  r.system = "You are a careful engineer.";
  r.messages.push_back(model::user("Add a README."));
  r.tags = {"worker", "t-1", workdir.string()};
  return r;
}

}  // namespace

TEST_CASE("model.cli.claude_code_stream_json") {
  temp_dir bin("fake-agent"), wt("worktree");
  auto agent = write_script(bin, "claude", R"(cat > prompt.txt
echo "# hello" > README.md
echo "some progress on stderr" >&2
printf '%s\n' '{"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5","tools":["Edit"]}'
printf '%s\n' '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Writing the README."},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"README.md"}}],"usage":{"input_tokens":10,"output_tokens":5}}}'
printf '%s\n' '{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}'
printf '%s\n' '{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"num_turns":2,"result":"Added README.md.","total_cost_usd":0.0123,"usage":{"input_tokens":120,"cache_creation_input_tokens":30,"cache_read_input_tokens":400,"output_tokens":55}}'
)");
  auto opts = model::cli_preset("claude").value();
  opts.command = {agent};
  opts.events = std::make_shared<event_bus>();
  std::vector<model::agent_event> events;
  std::mutex events_mutex;
  auto sub = opts.events->subscribe<model::agent_event>([&](const model::agent_event& e) {
    std::lock_guard lock(events_mutex);
    events.push_back(e);
  });
  auto c = model::make_cli_client(opts);
  CHECK(c->name() == "cli:claude");
  std::string deltas;
  std::promise<model::result_type> done;
  c->async_stream(task(wt.path()), [&](const model::delta& d) { deltas += d.content; },
                  [&](model::result_type r) { done.set_value(std::move(r)); });
  auto r = done.get_future().get();
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->message.text() == "Added README.md.");
  CHECK(r->usage == model::usage{120, 55, 400, 30});
  CHECK(r->model_name == "claude-sonnet-4-5");
  CHECK(deltas == "Writing the README.");
  // Every event the agent printed went to the bus, then its usage.
  std::lock_guard lock(events_mutex);
  REQUIRE(events.size() == 5);
  CHECK(events[0].kind == "system");
  CHECK(events[1].kind == "assistant");
  CHECK(events[3].kind == "result");
  CHECK(events[3].task == "t-1");
  CHECK(events[4].kind == "usage");
  CHECK(events[4].data.at("cache_read").to_number<int>() == 400);
  // It ran in the worktree, and got the prompt on its standard input.
  CHECK(read(wt / "README.md") == "# hello\n");
  CHECK(read(wt / "prompt.txt") == "You are a careful engineer.\n\nAdd a README.");
}

TEST_CASE("model.cli.codex_and_aider_and_custom_commands") {
  temp_dir bin("fake-agent"), wt("worktree");
  auto codex = write_script(bin, "codex", R"(cat > /dev/null
printf '%s\n' '{"type":"thread.started","thread_id":"x"}'
printf '%s\n' '{"type":"turn.started"}'
printf '%s\n' '{"type":"item.completed","item":{"id":"i0","type":"command_execution","command":"ls","status":"completed"}}'
printf '%s\n' '{"type":"item.completed","item":{"id":"i1","type":"agent_message","text":"Done: README added."}}'
printf '%s\n' '{"type":"turn.completed","usage":{"input_tokens":900,"cached_input_tokens":600,"output_tokens":40}}'
)");
  auto opts = model::cli_preset("codex").value();
  opts.command = {codex};
  auto r = model::make_cli_client(opts)->chat(task(wt.path()));
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->message.text() == "Done: README added.");
  CHECK(r->usage == model::usage{300, 40, 600, 0});

  auto aider = write_script(bin, "aider", R"(cat > /dev/null
echo "Applied edit to README.md"
echo "Tokens: 2.3k sent, 120 received. Cost: \$0.01 message, \$0.01 session."
)");
  auto a = model::cli_preset("aider").value();
  a.command = {aider};
  auto ar = model::make_cli_client(a)->chat(task(wt.path()));
  REQUIRE_MESSAGE(ar.has_value(), ar.error().message());
  CHECK(ar->message.text().find("Applied edit to README.md") == 0);
  CHECK(ar->usage.input_tokens == 2300);
  CHECK(ar->usage.output_tokens == 120);

  // Through the registry: a preset with another command, and a custom agent.
  boost::asio::io_context io;
  auto reg = model::registry::with_builtins();
  auto opts_json = json::object{{"command", json::array{json::value(codex)}}, {"workdir", wt.path().string()}};
  auto via = reg.make("cli:codex", {io.get_executor(), opts_json});
  REQUIRE_MESSAGE(via.has_value(), via.error().message());
  model::request no_workdir = task(wt.path());
  no_workdir.tags.workdir.clear();  // the option's workdir is used
  CHECK((*via)->chat(no_workdir).value().message.text() == "Done: README added.");
  auto custom = reg.make("cli:mine", {io.get_executor(), json::object{{"command", json::array{"sh", "-c", "echo custom"}},
                                                                     {"workdir", wt.path().string()}}});
  REQUIRE_MESSAGE(custom.has_value(), custom.error().message());
  CHECK((*custom)->chat(no_workdir).value().message.text() == "custom\n");
  auto unknown = reg.make("cli:mine", {io.get_executor(), {}});
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().message().find("known: claude, codex, aider") != std::string::npos);
}

TEST_CASE("model.cli.failures_time_box_and_environment") {
  temp_dir bin("fake-agent"), wt("worktree");
  auto run = [&](const std::string& body, milliseconds box = milliseconds(20'000),
                 model::cli_options::format f = model::cli_options::format::claude_stream_json) {
    model::cli_options o{.output = f, .command = {write_script(bin, "agent", body)}, .time_box = box, .name = "cli:fake"};
    return model::make_cli_client(o)->chat(task(wt.path()));
  };
  auto crashed = run("cat > /dev/null; echo 'boom: no credentials' >&2; exit 3");
  REQUIRE_FALSE(crashed.has_value());
  CHECK(crashed.error().code() == model::error::agent_failed);
  CHECK(crashed.error().message().find("exit 3") != std::string::npos);
  CHECK(crashed.error().message().find("boom: no credentials") != std::string::npos);

  auto reported = run(R"(cat > /dev/null
printf '%s\n' '{"type":"result","subtype":"error_max_turns","is_error":true,"result":"hit the turn limit"}')");
  REQUIRE_FALSE(reported.has_value());
  CHECK(reported.error().message().find("hit the turn limit") != std::string::npos);

  auto silent = run("cat > /dev/null; echo not json");
  REQUIRE_FALSE(silent.has_value());
  CHECK(silent.error().message().find("without reporting its end") != std::string::npos);

  // The time box kills the whole process group.
  auto t0 = std::chrono::steady_clock::now();
  // (The agent runs in the sandbox, in a pid namespace of its own: its
  // processes are found by their command line, not by a pid it reports.)
  std::string marker = "sleep 29." + std::to_string(::getpid());
  auto boxed = run("cat > /dev/null; " + marker + " & " + marker, milliseconds(300));
  REQUIRE_FALSE(boxed.has_value());
  CHECK(boxed.error().code() == model::error::time_box);
  CHECK(std::chrono::steady_clock::now() - t0 < milliseconds(10'000));
  auto left = [&] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      std::string cmd = read((e.path() / "cmdline").string());
      std::replace(cmd.begin(), cmd.end(), '\0', ' ');
      std::string stat = read((e.path() / "stat").string());
      auto close_paren = stat.rfind(')');
      bool zombie = close_paren != std::string::npos && stat.size() > close_paren + 2 && stat[close_paren + 2] == 'Z';
      if (cmd.find(marker) != std::string::npos && cmd.find("bwrap") == std::string::npos && !zombie) ++n;
    }
    return n;
  };
  int alive = 1;
  for (int i = 0; i < 100 && alive > 0; ++i) {
    alive = left();
    if (alive > 0) std::this_thread::sleep_for(milliseconds(20));
  }
  CHECK(alive == 0);  // gone: no process, or a zombie waiting for a reaper

  // An agent still running when its client is destroyed is stopped.
  {
    model::cli_options o{.output = model::cli_options::format::text,
                         .command = {write_script(bin, "long", "cat > /dev/null; sleep 30")},
                         .name = "cli:long"};
    auto c = model::make_cli_client(o);
    std::promise<model::result_type> done;
    c->async_chat(task(wt.path()), [&](model::result_type r) { done.set_value(std::move(r)); });
    std::this_thread::sleep_for(milliseconds(200));
    auto t1 = std::chrono::steady_clock::now();
    c.reset();
    auto r = done.get_future().get();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == agentcore::error::canceled);
    CHECK(std::chrono::steady_clock::now() - t1 < milliseconds(10'000));
  }

  // The environment is an allow-list: the preset's key passes, other secrets do not.
  ::setenv("AGENTCORE_TEST_SECRET", "s3cr3t", 1);
  ::setenv("ANTHROPIC_API_KEY", "ak-test", 1);
  auto o = model::cli_preset("claude").value();
  o.output = model::cli_options::format::text;
  o.command = {write_script(bin, "env-agent", "cat > /dev/null; env")};
  auto env = model::make_cli_client(o)->chat(task(wt.path()));
  ::unsetenv("AGENTCORE_TEST_SECRET");
  ::unsetenv("ANTHROPIC_API_KEY");
  REQUIRE(env.has_value());
  CHECK(env->message.text().find("s3cr3t") == std::string::npos);
  CHECK(env->message.text().find("ANTHROPIC_API_KEY=ak-test") != std::string::npos);
}
