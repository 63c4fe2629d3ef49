// A tool of your own for the agent: agent::make_tool turns a function into a
// tool the model may call, with a JSON Schema for its arguments. It runs with
// the same confinement as the built-in tools: the tool_context's workspace
// refuses any path outside the worktree or the task's contract.
#include <agentcore/agent/loop.hpp>
#include <agentcore/agent/tools.hpp>

#include <boost/asio/io_context.hpp>

#include <fmt/format.h>

#include <fstream>

using namespace agentcore;
namespace asio = boost::asio;
namespace fs = std::filesystem;

// A stand-in for your model: it calls count_todos, then finishes with the answer.
class rule_model final : public model::client {
public:
  std::string name() const override { return "rules"; }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    model::response r;
    r.stop = model::stop_reason::tool_use;
    const auto& last = req.messages.back();
    if (req.messages.size() == 1) {
      r.message.parts.push_back(model::tool_call{"1", "count_todos", R"({"path":"src/main.c"})"});
    } else {
      auto answer = std::get<model::tool_result>(last.parts.at(0)).content;
      r.message.parts.push_back(model::tool_call{"2", "finish", fmt::format(R"({{"summary":"{}"}})", answer)});
    }
    complete(std::move(h), std::move(r));
  }
};

int main() {
  fs::path dir = fs::temp_directory_path() / fmt::format("agentcore-tool-example-{}", ::getpid());
  fs::create_directories(dir / "src");
  std::ofstream(dir / "src/main.c") << "int main() {\n  // TODO: parse args\n  // TODO: run\n}\n";

  auto count_todos = agent::make_tool(
      {.name = "count_todos",
       .description = "Count the TODO comments in a file of the worktree",
       .parameters = {{"type", "object"},
                      {"properties", {{"path", {{"type", "string"}}}}},
                      {"required", {"path"}}}},
      [](const json::object& args, agent::tool_context& ctx) -> agent::tool_output {
        auto path = agent::string_arg(args, "count_todos", "path");
        if (!path) return agent::refusal(path.error());
        auto text = ctx.workspace.read(*path);  // confined: "../x" or a link out is refused here
        if (!text) return agent::refusal(text.error());
        std::size_t n = 0;
        for (auto p = text->find("TODO"); p != std::string::npos; p = text->find("TODO", p + 4)) ++n;
        return {fmt::format("{} TODOs in {}", n, *path)};
      });

  auto ws = agent::workspace::open(dir, {.allowed_paths = {"src/**"}}).value();
  auto tools = agent::standard_tools();
  tools.push_back(count_todos);
  rule_model model;
  asio::io_context io;
  agent::agent_loop loop(model, ws, tools, {.executor = io.get_executor(), .limits = {.model_turns = 5}});
  agent::outcome out;
  loop.async_run("How many TODOs are left in src/main.c?", [&](agent::outcome o) { out = std::move(o); });
  io.run();
  fmt::print("{} after {} turns: {}\n", agent::to_string(out.kind), out.turns, out.summary);
  fs::remove_all(dir);
  return out.summary == "2 TODOs in src/main.c" ? 0 : 1;
}
