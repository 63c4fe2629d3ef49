// agentcore/agent/tool.hpp: a tool the model may call, the extension point
// hosts add their own tools through. A tool answers every call with text for
// the model; a refusal or failure is an answer marked as an error (the model
// reads why and corrects itself), never an exception or a crash.
//
//   auto clock = agent::make_tool(
//       {.name = "now", .description = "The current UTC time", .parameters = {{"type", "object"}}},
//       [](const json::object&, agent::tool_context&) { return agent::tool_output{utc_now()}; });
//
// make_tool runs the function on the context's blocking executor; a tool that
// is asynchronous by nature derives from agent::tool and overrides do_invoke.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/agent/workspace.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/process/process.hpp>
#include <agentcore/model/types.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace agentcore::agent {

namespace asio = boost::asio;

/// What a tool answers: text for the model, and whether it is an error.
struct tool_output {
  std::string content;
  bool is_error = false;
};
inline tool_output refusal(const error_info& e) { return {e.message(), true}; }

/// What a tool may use while it runs. One per agent loop; tools run one at a time.
/// A tool that changes files must do it through `workspace` (write()), or
/// call workspace.note_untracked_change().
struct tool_context {
  agent::workspace& workspace;
  /// Where blocking work runs (file system, processes). Default-constructed:
  /// inline, on the loop's own executor.
  asio::any_io_executor blocking;
  /// The end of the task's time box; commands are cut off there.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  /// Set when the loop is asked to stop: long tools end early.
  const std::atomic<bool>* stop = nullptr;
  /// Limits and sandbox for run_command (its working directory is the workspace root).
  process::run_options commands;
  /// What the worktree held before the task's first command (set by
  /// run_command): the bounds on what commands write count from here.
  std::optional<process::disk_usage> usage_before_commands;
  /// Where tools publish events (agent.tool_call is the loop's), if anywhere.
  event_bus* events = nullptr;
  /// The task the tools work for (for events and messages).
  std::string task;
  /// Set by the finish tool: the loop ends after this turn.
  bool finished = false;
  std::string summary;
};

using tool_signature = void(tool_output);

class tool {
public:
  explicit tool(model::tool_definition definition) : definition_(std::move(definition)) {}
  virtual ~tool() = default;

  /// The name, description and JSON Schema the model sees.
  const model::tool_definition& definition() const noexcept { return definition_; }
  const std::string& name() const noexcept { return definition_.name; }

  /// Runs one call. `args` are the call's parsed arguments.
  template <class CompletionToken>
  auto async_invoke(json::object args, tool_context& ctx, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, tool_signature>(
        [this](auto handler, json::object a, tool_context* c) { invoke_guarded(std::move(a), *c, ::agentcore::detail::never_inline(std::move(handler))); },
        token, std::move(args), &ctx);
  }

protected:
  /// Complete `handler` exactly once. Exceptions thrown from here are caught
  /// and answered as an error naming the tool.
  virtual void do_invoke(json::object args, tool_context& ctx, asio::any_completion_handler<tool_signature> handler) = 0;

private:
  void invoke_guarded(json::object args, tool_context& ctx, asio::any_completion_handler<tool_signature> handler);
  model::tool_definition definition_;
};

using tool_function = std::function<tool_output(const json::object& args, tool_context& ctx)>;

/// A tool from a function, run on ctx.blocking (inline when it has none). An
/// exception from `fn` becomes an error answer naming the tool.
std::shared_ptr<tool> make_tool(model::tool_definition definition, tool_function fn);

/// Argument accessors for tools: a missing or mistyped argument is an error
/// whose message names the tool, the argument and the type wanted.
result<std::string> string_arg(const json::object& args, std::string_view tool, std::string_view name);
result<std::optional<std::string>> optional_string_arg(const json::object& args, std::string_view tool,
                                                       std::string_view name);
result<std::optional<std::int64_t>> optional_int_arg(const json::object& args, std::string_view tool,
                                                     std::string_view name);
result<std::optional<bool>> optional_bool_arg(const json::object& args, std::string_view tool, std::string_view name);

}  // namespace agentcore::agent
