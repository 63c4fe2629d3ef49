// agentcore/board/task.hpp: a task on the board, its states and their legal
// transitions, and its versioned JSON form.
//
//   agentcore::board::task t{.id = agentcore::task_id{"fix-parser"}, .title = "Fix the parser",
//                            .priority = 5, .dependencies = {agentcore::task_id{"lexer"}}};
//   std::string json = agentcore::board::to_json(t);           // schema 1
//   auto back = agentcore::board::task_from_json(json);        // result<task>
//
// States: proposed -> ready -> claimed -> submitted -> merged, plus rejected,
// failed, abandoned and superseded. `is_legal(from, to)` is the state machine.
//
// JSON schema 1 (every field is written; on reading, only "schema" and "id" are required):
//   {"schema":1, "id":"fix-parser", "title":"...", "description":"...", "subsystem":"...",
//    "priority":5, "dependencies":["lexer"], "contract":{...} (opaque), "state":"ready",
//    "attempts":0, "parent":null|"id", "claimed_by":null|"worker",
//    "ready_since_us":0, "notes":[{"author":"...","text":"...","at_ms":0}], "result":null|{...}}
// A reader refuses a schema newer than it knows (error unsupported_format).
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/core/id.hpp>
#include <agentcore/core/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::board {

inline constexpr int task_schema = 1;
inline constexpr int min_priority = -1000;
inline constexpr int max_priority = 1000;

/// reverted: it was merged, then its merge was taken back out of the branch
/// (a rollback, or the gate's optimistic auto-revert); it can be requeued or
/// re-planned.
enum class task_state { proposed, ready, claimed, submitted, merged, rejected, failed, abandoned, superseded, reverted };

std::string_view to_string(task_state s) noexcept;
std::optional<task_state> parse_task_state(std::string_view s) noexcept;
/// True when the state machine allows `from -> to`.
bool is_legal(task_state from, task_state to) noexcept;
/// merged and superseded: no work follows them (a merged task can only be
/// reverted, by the gate).
bool is_terminal(task_state s) noexcept;
/// An `illegal_transition` error naming both states and the task.
error_info illegal(const task_id& id, task_state from, task_state to);

struct task_note {
  std::string author;
  std::string text;
  std::int64_t at_ms = 0;  ///< wall-clock milliseconds since the epoch
  friend bool operator==(const task_note&, const task_note&) = default;
};

struct task {
  task_id id;
  std::string title;
  std::string description;
  std::string subsystem;
  int priority = 0;  ///< higher is claimed first; [-1000, 1000]
  std::vector<task_id> dependencies;
  json::value contract;  ///< opaque until the contract module defines it
  task_state state = task_state::proposed;
  int attempts = 0;  ///< how many times it was claimed
  std::optional<task_id> parent;
  std::optional<worker_id> claimed_by;
  std::int64_t ready_since_us = 0;  ///< when it last became ready (orders by age)
  std::vector<task_note> notes;
  json::value result;  ///< the last structured report (submit, finish, abandon)

  friend bool operator==(const task&, const task&) = default;
};

/// Checks the fields a proposer sets: id, priority, dependencies.
error_info validate(const task& t);

json::value to_json_value(const task& t);
std::string to_json(const task& t);
/// Parses and validates; errors name the field and the task.
result<task> task_from_json(const json::value& v);
result<task> task_from_json(std::string_view text);

void tag_invoke(json::value_from_tag, json::value& v, const task& t);
void tag_invoke(json::value_from_tag, json::value& v, task_state s);

}  // namespace agentcore::board
