// agentcore/agent/loop.hpp: the agent loop: the model and the tools take
// turns until the model calls finish, the time box runs out (wall time, turns,
// tokens, cost) or the loop stalls (the same call over and over, or no file
// changed for many turns). A conversation that outgrows its token budget is
// condensed: the task statement and the latest turns stay, the middle becomes
// a summary the model writes.
//
// A whole-task engine (model::engine_kind::whole_task: an external coding
// agent such as Claude Code, see model/cli.hpp) is not driven turn by turn:
// the loop asks it once, in the workspace's directory, and the attempt is
// finished with its report as the summary; what it changed is in the
// worktree (the workspace then counts as changed outside its tools, so a
// commit looks at the whole tree). async_continue asks it once more, with
// the conversation so far and the new message (a failed check, say).
//
//   agent::agent_loop loop(*client, ws, agent::standard_tools(),
//                          {.executor = io.get_executor(), .blocking = pool.get_executor(),
//                           .limits = {.wall = std::chrono::minutes(30), .model_turns = 60}});
//   loop.async_run(task_statement, [](agent::outcome o) {
//     if (o.kind == agent::outcome_kind::finished) submit(o.summary);
//   });
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/agent/tool.hpp>
#include <agentcore/agent/workspace.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/model/client.hpp>
#include <agentcore/model/middleware.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace agentcore::agent {

struct loop_options {
  /// Where the loop's coroutine runs. Required.
  asio::any_io_executor executor;
  /// Where tools do blocking work; default: inline on `executor`.
  asio::any_io_executor blocking;
  /// The system prompt; empty: system_prompt(workspace's contract), or for a
  /// whole-task engine whole_task_prompt(workspace's contract).
  std::string system;
  /// The time box: wall time, model turns, tokens (input + output), cost. 0: no limit.
  contract::time_box limits;
  /// Prices for the cost limit, by model name (see model/middleware.hpp).
  model::price_table prices;
  std::uint32_t max_tokens = 4096;  ///< per answer
  /// Condense when the conversation is estimated above this many tokens.
  std::size_t context_tokens = 100000;
  /// Messages kept verbatim at the end when condensing.
  std::size_t keep_messages = 8;
  /// The same tool calls this many turns in a row: stalled.
  int repeat_limit = 4;
  /// This many turns in a row with no file changed: stalled. 0: never.
  int idle_turns = 15;
  /// Tool calls run per turn; the calls of an answer beyond it are not run,
  /// each answered with why (a model that asks for ten thousand calls in one
  /// turn gets this many run, not a hung host). 0: no limit.
  std::size_t max_tool_calls_per_turn = 64;
  /// Tags every request carries (role, task, workdir).
  model::request_tags tags;
  /// Limits and sandbox for run_command.
  process::run_options commands;
  event_bus* events = nullptr;
};

enum class outcome_kind {
  finished,  ///< the model called finish (a whole-task engine: answered)
  time_box,  ///< a limit of the time box ran out (summary names which)
  stalled,   ///< no progress (summary says how)
  stopped,   ///< stop() was called
  failed,    ///< the model could not be asked (error says why)
};
std::string_view to_string(outcome_kind k) noexcept;

struct outcome {
  outcome_kind kind = outcome_kind::failed;
  /// finish's summary, or what ran out, or how the loop stalled.
  std::string summary;
  error_info error;  ///< for failed
  int turns = 0;
  model::usage usage;
  double cost = 0;
  std::size_t condensations = 0;
  std::size_t tool_calls = 0, tool_errors = 0;
  std::chrono::milliseconds elapsed{0};
  std::vector<std::string> files_written;  ///< through write_file / edit_file (not a whole-task engine's)
  std::vector<model::message> messages;    ///< the conversation at the end (condensed as it went)
};

/// A system prompt that states the contract: goal, criteria, checks, where
/// the agent may write, the limits, and how to use the tools.
std::string system_prompt(const contract::task_contract& c);
/// The same contract for a whole-task engine, which has tools of its own and
/// ends by answering with a summary instead of calling finish.
std::string whole_task_prompt(const contract::task_contract& c);

/// One agent working one task. Not copyable; keep it alive until its
/// completion handler has run.
class agent_loop {
public:
  agent_loop(model::client& model, agent::workspace& ws, std::vector<std::shared_ptr<tool>> tools,
             loop_options options);
  ~agent_loop();
  agent_loop(const agent_loop&) = delete;
  agent_loop& operator=(const agent_loop&) = delete;

  /// Where a completion handler that has no executor of its own runs (the
  /// options' executor), as with Asio's I/O objects.
  asio::any_io_executor get_executor() const;

  /// Runs the loop on options.executor; completes once with the outcome
  /// (never an exception).
  template <class CompletionToken>
  auto async_run(std::string task, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(outcome)>(
        [this](auto handler, std::string t) {
          start({model::user(std::move(t))}, ::agentcore::detail::never_inline(std::move(handler), get_executor()));
        },
        token, std::move(task));
  }

  /// Goes on with a conversation a run ended with (outcome::messages), after
  /// a new message from the user: a worker's "the checks fail, fix it" or
  /// "resolve these conflicts". The limits apply afresh to this run.
  template <class CompletionToken>
  auto async_continue(std::vector<model::message> conversation, std::string message, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(outcome)>(
        [this](auto handler, std::vector<model::message> c, std::string m) {
          start(continued(std::move(c), std::move(m)), ::agentcore::detail::never_inline(std::move(handler), get_executor()));
        },
        token, std::move(conversation), std::move(message));
  }

  /// Asks a running loop to stop: the model call in flight is cancelled, a
  /// running command killed; the outcome is `stopped`. Thread-safe.
  void stop();

private:
  struct state;
  static std::vector<model::message> continued(std::vector<model::message> conversation, std::string message);
  void start(std::vector<model::message> conversation, asio::any_completion_handler<void(outcome)> handler);
  std::shared_ptr<state> state_;
};

/// Published after every model turn.
struct turn_event {
  static constexpr std::string_view event_type = "agent.turn";
  std::string role, task;
  int turn = 0;
  std::vector<std::string> tool_calls;  ///< names, in order
  model::usage usage;
  std::string stop;
  std::string model;  ///< the model that answered (the response's model name)
  double cost = 0;    ///< this turn's cost by the loop's price table
  double seconds = 0; ///< how long the model took to answer
};
/// Published for every tool call the loop answered.
struct tool_call_event {
  static constexpr std::string_view event_type = "agent.tool_call";
  std::string role, task, tool;
  bool is_error = false;
  std::string answer_head;  ///< the answer's first line, at most 200 characters
};
/// Published when the loop ends.
struct outcome_event {
  static constexpr std::string_view event_type = "agent.outcome";
  std::string role, task, kind, summary;
  int turns = 0;
  model::usage usage;
  double cost = 0;
};
void tag_invoke(json::value_from_tag, json::value& v, const turn_event& e);
void tag_invoke(json::value_from_tag, json::value& v, const tool_call_event& e);
void tag_invoke(json::value_from_tag, json::value& v, const outcome_event& e);

}  // namespace agentcore::agent
