// agentcore/model/cli.hpp: an external coding agent (Claude Code, Codex CLI,
// Aider, or any command) as a whole-task engine: one call runs the agent in
// the task's worktree (request.tags.workdir) until it finishes or its time box
// runs out, and answers with what it reported. Its event stream arrives as
// text deltas; usage is taken from its report where it gives one.
//
//   auto opts = model::cli_preset("claude").value();   // claude -p --output-format stream-json
//   opts.time_box = std::chrono::minutes(20);
//   auto agent = model::make_cli_client(opts);
//   req.tags.workdir = slot.path().string();
//   auto r = co_await agent->async_chat(req, asio::use_awaitable);
//
// The prompt (system prompt, then every message's text) goes to the agent's
// standard input. The time box kills the agent's whole process group. Its
// environment is an allow-list (process::default_env_allow_list plus the API key
// variable the preset names), so the host's other secrets stay out.
#pragma once

#include <agentcore/core/event_bus.hpp>
#include <agentcore/process/process.hpp>
#include <agentcore/model/client.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace agentcore::model {

/// One event a CLI agent printed, as it printed it, on the event bus; and at
/// the end one of kind "usage" with the usage it reported.
struct agent_event {
  static constexpr std::string_view event_type = "model.agent_event";
  std::string client;  ///< "cli:claude"
  std::string task;    ///< the request's task tag
  std::string kind;    ///< the agent's own event type ("assistant", "result", "item.completed", ...)
  json::value data;
};
void tag_invoke(json::value_from_tag, json::value& v, const agent_event& e);

struct cli_options {
  /// How to read the agent's standard output.
  enum class format {
    claude_stream_json,  ///< Claude Code's `--output-format stream-json` lines
    codex_json,          ///< Codex CLI's `exec --json` events
    text,                ///< plain text: the whole output is the answer (Aider's token line is read for usage)
  } output = format::text;
  /// The command and its arguments; the prompt arrives on standard input.
  std::vector<std::string> command;
  /// Where the agent runs when a request names no workdir.
  std::filesystem::path working_directory;
  std::chrono::milliseconds time_box{std::chrono::minutes(30)};
  std::size_t output_limit = 1u << 20;
  /// Environment variables passed through besides process::default_env_allow_list().
  std::vector<std::string> env_allow;
  std::map<std::string, std::string> env_set;
  /// The client's name ("cli:claude").
  std::string name = "cli";
  /// The agent is untrusted code with a shell: it runs in the commands
  /// sandbox (see process/process.hpp) with the network it needs for its API and
  /// the working directory writable. Its own state (~/.claude, ~/.codex) must
  /// be listed in `writable` (the presets list those that exist); the
  /// directory of an absolute command is bound read-only. Only a host that
  /// confines the agent itself sets unconfined_host_access.
  process::sandbox_options sandbox{.network = true};
  /// Where the agent's events go (agent_event), if anywhere.
  std::shared_ptr<event_bus> events;
};

/// Options for "claude" (Claude Code), "codex" (Codex CLI) or "aider".
result<cli_options> cli_preset(std::string_view name);

std::shared_ptr<client> make_cli_client(cli_options options);

}  // namespace agentcore::model
