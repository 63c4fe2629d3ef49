// agentcore/contract/contract.hpp: a task contract (what a change may touch,
// how big it may be, what counts as done, how long it may take) and the check
// of a diff against it. Prompts state contracts; this code enforces them.
//
//   contract::task_contract c{.goal = "Fix the lexer",
//                        .allowed_paths = {"src/lexer/**", "tests/lexer/**"},
//                        .forbidden_paths = {"src/generated/**"},
//                        .max_files = 10, .max_changed_lines = 400};
//   auto v = contract::check(c, diff);   // verdict: ok, or every violation with its path and rule
//
// Paths are matched with contract::glob (see glob.hpp: .gitignore syntax,
// anchored at the root). A contract's globs name paths inside the repository:
// one that is absolute, has a "." or ".." segment, or names ".git" is refused
// when the contract is compiled. `.git/**` is always forbidden, whatever the
// list says. Protected paths (CI configuration, build scripts, agentcore's
// configuration, .gitmodules, ... see default_protected_paths()) are changed
// only by a task whose contract has `protected_allowed`, which only a host
// sets: planners' contracts never get it (see ceiling.hpp).
// Beyond paths the check sees what a change does to the tree: symbolic links
// and where they point, submodules (gitlinks and .gitmodules), file modes,
// and the bytes of new content.
// JSON schema 1:
//   {"schema":1, "goal":"...", "acceptance_criteria":["..."], "acceptance_checks":["make test"],
//    "allowed_paths":["src/**"], "forbidden_paths":["src/generated/**"],
//    "protected_paths":[".ci/**", ...], "protected_allowed":false,
//    "max_files":10, "max_changed_lines":400, "max_added_bytes":1048576,
//    "binary_allowed":false, "executable_allowed":false, "links":"none"|"inside"|"any",
//    "submodules_allowed":false,
//    "time_box":{"wall_seconds":1800, "model_turns":60, "tokens":2000000, "cost":5.0}}
// Limits of 0 mean "no limit". Every field but "schema" is optional on reading;
// a missing one takes its default (so contracts written before a field
// existed read with the safe default: default protected paths, no links, no
// submodules, no new executables).
#pragma once

#include <agentcore/contract/diff.hpp>
#include <agentcore/contract/glob.hpp>
#include <agentcore/core/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
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

/// What a change may do with symbolic links. Removing a link is always fine.
enum class link_policy {
  none,    ///< no link may be added or changed
  inside,  ///< links whose target, read from the link's directory, stays in the repository (and out of .git)
  any,     ///< also absolute targets and targets outside the repository (never into .git)
};
std::string_view to_string(link_policy p) noexcept;
std::optional<link_policy> parse_link_policy(std::string_view s) noexcept;

/// The paths only a task the host allows may change: CI configuration, build
/// scripts and top-level build configuration, git's own configuration files
/// (.gitmodules, .gitattributes), agentcore's configuration, and files that run
/// on a developer's machine by themselves (hooks, .envrc). Sub-directory build
/// files (src/CMakeLists.txt) are not in it: ordinary tasks edit them.
std::vector<std::string> default_protected_paths();

struct task_contract {
  std::string goal;
  std::vector<std::string> acceptance_criteria;  ///< in words, for the model and the judge
  std::vector<std::string> acceptance_checks;    ///< shell commands that must pass
  std::vector<std::string> allowed_paths;        ///< globs; empty: anywhere not forbidden
  std::vector<std::string> forbidden_paths;      ///< globs; ".git/**" is always added
  /// Globs a change may touch (add, change, remove, rename from or to) only
  /// when `protected_allowed` is set.
  std::vector<std::string> protected_paths = default_protected_paths();
  /// Set by a host for a task it trusts with protected paths; contract::narrow
  /// (and so every planner) clears it.
  bool protected_allowed = false;
  std::size_t max_files = 0;                     ///< 0: no limit
  std::size_t max_changed_lines = 0;             ///< additions + deletions; 0: no limit
  /// Bytes of new content the change writes (diff::added_bytes()); 0: no limit.
  std::uint64_t max_added_bytes = 0;
  bool binary_allowed = false;
  /// Whether a change may make a file executable (add one with mode 100755, or
  /// turn the bit on). Editing a file that is executable already is fine.
  bool executable_allowed = false;
  link_policy links = link_policy::none;
  /// Whether a change may add or move a submodule (a gitlink, mode 160000) or
  /// change .gitmodules.
  bool submodules_allowed = false;
  time_box time;
  friend bool operator==(const task_contract&, const task_contract&) = default;
};

/// One broken rule. `rule` is a stable name:
///   "path_invalid", "path_forbidden", "path_not_allowed", "protected_path",
///   "binary", "mode" (a mode the contract does not allow, or one git does not
///   write), "link" (a symbolic link where the contract allows none),
///   "link_target" (a link that points out of the repository, into .git, or
///   nowhere sensible), "gitlink" (a submodule commit), "gitmodules" (a
///   .gitmodules change), "max_files", "max_changed_lines", "max_added_bytes".
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

/// Checks a glob a contract lists: it must name paths inside the repository,
/// so it may not be absolute, have a "." or ".." segment, or name ".git" (a
/// segment without '*' that matches ".git" as some file system reads it).
/// Returns an empty string when fine, else why not. Syntax is glob::compile's.
std::string check_contract_glob(std::string_view pattern);

/// A contract with its globs compiled once, for checking many diffs or paths.
class compiled_contract {
public:
  /// Errors name the glob, the list it is in and what is wrong: malformed,
  /// absolute, with "..", or naming .git (check_contract_glob). ".git/**" and
  /// ".git" are accepted in forbidden_paths, where they change nothing.
  static result<compiled_contract> compile(task_contract c);

  const task_contract& terms() const noexcept { return contract_; }
  /// Whether a single path may be written (the tool box asks before a write).
  /// Returns an empty string when allowed, else the reason.
  std::string may_write(std::string_view path) const;
  verdict check(const diff& d) const;

private:
  struct refusal {
    const char* rule = nullptr;  // nullptr: allowed
    std::string detail;
  };
  refusal why_not(std::string_view path) const;

  task_contract contract_;
  std::vector<glob> allowed_, forbidden_, protected_;
};

/// Compiles and checks in one step.
result<verdict> check(const task_contract& c, const diff& d);

json::value to_json_value(const task_contract& c);
result<task_contract> contract_from_json(const json::value& v);
void tag_invoke(json::value_from_tag, json::value& v, const task_contract& c);
void tag_invoke(json::value_from_tag, json::value& v, const violation& x);
void tag_invoke(json::value_from_tag, json::value& v, const verdict& x);

}  // namespace agentcore::contract
