// agentcore/contract/contract.hpp: a task contract (what a change may touch,
// how big it may be, what counts as done, how long it may take) and the check
// of a diff against it. Prompts state contracts; this code enforces them.
//
//   contract::task_contract c{.goal = "Fix the lexer",
//                        .allowed_paths = {"src/lexer/**", "tests/lexer/**"},
//                        .forbidden_paths = {".ci/**"},
//                        .max_files = 10, .max_changed_lines = 400};
//   auto v = contract::check(c, diff);   // verdict: ok, or every violation with its path and rule
//
// Paths are matched with contract::glob (see glob.hpp: .gitignore syntax,
// anchored at the root). `.git/**` is always forbidden, whatever the list says.
// JSON schema 1:
//   {"schema":1, "goal":"...", "acceptance_criteria":["..."], "acceptance_checks":["make test"],
//    "allowed_paths":["src/**"], "forbidden_paths":[".ci/**"], "max_files":10,
//    "max_changed_lines":400, "binary_allowed":false,
//    "time_box":{"wall_seconds":1800, "model_turns":60, "tokens":2000000, "cost":5.0}}
// Limits of 0 mean "no limit". Every field but "schema" is optional on reading.
#pragma once

#include <agentcore/contract/diff.hpp>
#include <agentcore/contract/glob.hpp>
#include <agentcore/core/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace agentcore::contract {

inline constexpr int contract_schema = 1;

struct time_box {
  std::chrono::seconds wall{0};  ///< 0: no limit
  std::int64_t model_turns = 0;
  std::int64_t tokens = 0;
  double cost = 0;  ///< in the host's currency unit
  friend bool operator==(const time_box&, const time_box&) = default;
};

struct task_contract {
  std::string goal;
  std::vector<std::string> acceptance_criteria;  ///< in words, for the model and the judge
  std::vector<std::string> acceptance_checks;    ///< shell commands that must pass
  std::vector<std::string> allowed_paths;        ///< globs; empty: anywhere not forbidden
  std::vector<std::string> forbidden_paths;      ///< globs; ".git/**" is always added
  std::size_t max_files = 0;                     ///< 0: no limit
  std::size_t max_changed_lines = 0;             ///< additions + deletions; 0: no limit
  bool binary_allowed = false;
  time_box time;
  friend bool operator==(const task_contract&, const task_contract&) = default;
};

/// One broken rule. `rule` is a stable name: "path_invalid", "path_forbidden",
/// "path_not_allowed", "binary", "max_files", "max_changed_lines".
struct violation {
  std::string path;  ///< empty for whole-diff rules
  std::string rule;
  std::string detail;  ///< what exactly, for people and models
  friend bool operator==(const violation&, const violation&) = default;
};

struct verdict {
  std::vector<violation> violations;
  bool ok() const noexcept { return violations.empty(); }
  /// One line per violation, for a model or a log.
  std::string summary() const;
};

/// A contract with its globs compiled once, for checking many diffs or paths.
class compiled_contract {
public:
  /// Errors name the malformed glob and the list it is in.
  static result<compiled_contract> compile(task_contract c);

  const task_contract& terms() const noexcept { return contract_; }
  /// Whether a single path may be written (the tool box asks before a write).
  /// Returns an empty string when allowed, else the reason.
  std::string may_write(std::string_view path) const;
  verdict check(const diff& d) const;

private:
  task_contract contract_;
  std::vector<glob> allowed_, forbidden_;
};

/// Compiles and checks in one step.
result<verdict> check(const task_contract& c, const diff& d);

json::value to_json_value(const task_contract& c);
result<task_contract> contract_from_json(const json::value& v);
void tag_invoke(json::value_from_tag, json::value& v, const task_contract& c);
void tag_invoke(json::value_from_tag, json::value& v, const violation& x);
void tag_invoke(json::value_from_tag, json::value& v, const verdict& x);

}  // namespace agentcore::contract
