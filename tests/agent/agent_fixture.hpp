// Shared by the agent tests: a worktree-like directory with a git repository,
// a contract, the tool box, and a scripted model client.
#pragma once

#include "support/temp_dir.hpp"

#include <agentcore/agent/loop.hpp>
#include <agentcore/agent/tools.hpp>
#include <agentcore/agent/workspace.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <sstream>

namespace agentcore::test {

namespace asio = boost::asio;

inline void write_text(const std::filesystem::path& p, std::string_view text) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// <tmp>/wt: a git repository (so .gitignore applies) with a few files, and
/// <tmp>/outside: what no tool may touch.
struct agent_fixture {
  temp_dir dir{"agent"};
  std::filesystem::path wt = dir.path() / "wt";
  std::filesystem::path outside = dir.path() / "outside";
  contract::task_contract terms{.goal = "Add a greeting",
                                .allowed_paths = {"src/**", "tests/**", "docs/**"},
                                .forbidden_paths = {"src/secret/**", ".ci/**"}};

  agent_fixture() {
    std::filesystem::create_directories(wt);
    std::filesystem::create_directories(outside);
    write_text(outside / "target.txt", "outside, untouched\n");
    write_text(wt / "src/main.cpp", "int main() {\n  return 0;\n}\n");
    write_text(wt / "src/util.hpp", "#pragma once\nint twice(int x) { return 2 * x; }\n");
    write_text(wt / "README.md", "# demo\n");
    write_text(wt / ".gitignore", "build/\n*.o\n");
    write_text(wt / "build/out.txt", "ignored\n");
    write_text(wt / "src/main.o", "ignored too\n");
    std::string cmd = "git init -q '" + wt.string() + "'";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }

  agent::workspace open(agent::workspace_options o = {}) {
    auto ws = agent::workspace::open(wt, terms, o);
    REQUIRE_MESSAGE(ws.has_value(), ws.error().message());
    return std::move(*ws);
  }
};

/// Runs one tool call to completion on the calling thread.
inline agent::tool_output call(agent::tool& t, agent::tool_context& ctx, std::string_view args_json) {
  std::promise<agent::tool_output> p;
  auto f = p.get_future();
  t.async_invoke(boost::json::parse(args_json).as_object(), ctx, [&](agent::tool_output o) { p.set_value(std::move(o)); });
  return f.get();
}

/// A model that answers by a function of the request (and the turn number);
/// a "hang" answer waits until cancelled.
class scripted_client final : public model::client {
public:
  using script = std::function<std::optional<model::result_type>(const model::request&, int turn)>;
  explicit scripted_client(script s) : script_(std::move(s)) {}
  std::string name() const override { return "scripted"; }

  std::vector<model::request> requests() {
    std::lock_guard lock(m_);
    return requests_;
  }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    int turn;
    {
      std::lock_guard lock(m_);
      requests_.push_back(req);
      turn = static_cast<int>(requests_.size());
    }
    auto answer = script_(req, turn);
    if (answer) return complete(std::move(h), std::move(*answer));
    // Hang until cancelled, as a slow model does.
    auto slot = asio::get_associated_cancellation_slot(h);
    REQUIRE(slot.is_connected());
    auto shared = std::make_shared<asio::any_completion_handler<model::chat_signature>>(std::move(h));
    slot.assign([shared](asio::cancellation_type) {
      if (*shared) complete(std::move(*shared), fail(agentcore::error::canceled, "scripted: cancelled"));
    });
    hung_.push_back(shared);
  }

private:
  script script_;
  std::mutex m_;
  std::vector<model::request> requests_;
  std::vector<std::shared_ptr<asio::any_completion_handler<model::chat_signature>>> hung_;
};

/// An answer that calls tools: {name, arguments JSON} pairs.
inline model::response calls(std::vector<std::pair<std::string, std::string>> cs, model::usage u = {10, 5}) {
  model::response r;
  r.stop = model::stop_reason::tool_use;
  r.usage = u;
  r.model_name = "scripted-1";
  int i = 0;
  for (auto& [n, a] : cs) r.message.parts.push_back(model::tool_call{"call-" + std::to_string(++i), n, a});
  return r;
}

inline model::response text_answer(std::string text, model::usage u = {10, 5}) {
  model::response r;
  r.message = model::assistant(std::move(text));
  r.usage = u;
  r.model_name = "scripted-1";
  return r;
}

}  // namespace agentcore::test
