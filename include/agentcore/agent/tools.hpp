// agentcore/agent/tools.hpp: the built-in tool box: read_file, write_file,
// edit_file, list_files, search, run_command and finish, each confined to the
// task's worktree and contract (see workspace.hpp) and capped in what it
// answers, so one call cannot flood the model's context.
//
//   auto tools = agent::standard_tools({.command_timeout = std::chrono::minutes(2)});
//   tools.push_back(my_host_tool);        // hosts add their own (tool.hpp)
//
// run_command goes through process::run with tool_context::commands: a time
// limit (never past the time box), an output cap, an allow-listed environment
// and the bubblewrap sandbox where the machine has one.
#pragma once

#include <agentcore/agent/tool.hpp>

#include <chrono>
#include <memory>
#include <vector>

namespace agentcore::agent {

struct tools_options {
  std::size_t read_lines = 2000;          ///< lines per read_file answer
  std::size_t line_chars = 2000;          ///< longer lines are cut in answers
  std::size_t answer_bytes = 32 * 1024;   ///< the most any answer carries
  std::size_t list_limit = 1000;          ///< entries per list_files answer
  std::size_t search_matches = 200;       ///< matches per search answer
  std::size_t search_files = 100000;      ///< files search looks at, at most
  std::chrono::seconds command_timeout{300};      ///< run_command's default limit
  std::chrono::seconds max_command_timeout{1800}; ///< the most a call may ask for
  /// What a task's commands together may add to its worktree (counted from
  /// before its first command): bytes on disk and new files and directories.
  /// A command that goes over is stopped and the model told why. 0: no bound.
  std::uint64_t max_task_written_bytes = std::uint64_t(2) << 30;
  std::uint64_t max_task_new_entries = 200000;
};

/// The seven built-in tools, in the order above.
std::vector<std::shared_ptr<tool>> standard_tools(tools_options options = {});

std::shared_ptr<tool> read_file_tool(tools_options options = {});
std::shared_ptr<tool> write_file_tool(tools_options options = {});
std::shared_ptr<tool> edit_file_tool(tools_options options = {});
std::shared_ptr<tool> list_files_tool(tools_options options = {});
std::shared_ptr<tool> search_tool(tools_options options = {});
std::shared_ptr<tool> run_command_tool(tools_options options = {});
std::shared_ptr<tool> finish_tool();

/// Published for every command run_command ran.
struct command_event {
  static constexpr std::string_view event_type = "agent.command";
  std::string task;
  process::run_result result;
};
void tag_invoke(json::value_from_tag, json::value& v, const command_event& e);

}  // namespace agentcore::agent
