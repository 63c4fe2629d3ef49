// agentcore/contract/ceiling.hpp: the host's bounds on the contracts a planner
// (a model) proposes. A proposal may only narrow the ceiling: its paths are
// cut to the ceiling's, its limits to the ceiling's, and it never gets to
// change protected paths. What was cut, and why, comes back in words, for the
// task's notes.
//
//   contract::ceiling top{.allowed_paths = {"src/**", "tests/**"}, .max_added_bytes = 4 << 20};
//   auto n = contract::narrow(proposed, top).value();
//   if (!n.ok()) drop(n.refused);                       // nothing of it fits
//   else propose(n.contract, /*notes*/ n.notes);       // "allowed path '**' narrowed to 'src/**', 'tests/**'"
//
// Narrowing, field by field:
//   allowed_paths    each proposed glob is kept if it is provably inside one of
//                    the ceiling's (glob::within); replaced by the ceiling's
//                    globs inside it if there are any ("**" becomes the
//                    ceiling's list); else dropped. A glob that names no path
//                    inside the repository (check_contract_glob: absolute,
//                    "..", ".git") or lies wholly in a protected path is
//                    dropped. An empty proposal means the ceiling's list. When
//                    a proposal had globs and none is left, it is refused.
//   forbidden_paths  the proposal's (valid ones) and the ceiling's.
//   protected_paths  the ceiling's and any more the proposal names;
//                    protected_allowed is always cleared.
//   limits           the smaller of the two, 0 meaning "no limit".
//   permissions      binary, executables, submodules: both must allow;
//                    links: the narrower policy.
// Goal, acceptance checks and criteria, and the time box pass unchanged.
#pragma once

#include <agentcore/contract/contract.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace agentcore::contract {

/// The most a proposed contract may get. `{}` is the default ceiling: the
/// whole repository but the default protected paths, at most 16 MiB of new
/// content per task, links only inside the repository, no submodules.
struct ceiling {
  std::vector<std::string> allowed_paths;    ///< globs; empty: the whole repository
  std::vector<std::string> forbidden_paths;  ///< added to every contract
  std::vector<std::string> protected_paths = default_protected_paths();  ///< added to every contract
  std::size_t max_files = 0;          ///< 0: no limit
  std::size_t max_changed_lines = 0;  ///< 0: no limit
  std::uint64_t max_added_bytes = std::uint64_t{16} << 20;  ///< 0: no limit
  bool binary_allowed = true;
  bool executable_allowed = true;
  link_policy links = link_policy::inside;
  bool submodules_allowed = false;
  friend bool operator==(const ceiling&, const ceiling&) = default;
};

/// A proposal after narrowing.
struct narrowing {
  task_contract contract;          ///< inside the ceiling (when ok())
  std::vector<std::string> notes;  ///< one line per change made to the proposal, with why
  std::string refused;             ///< why nothing of the proposal can stand; empty when it can
  bool ok() const noexcept { return refused.empty(); }
};

/// Errors name a glob of the ceiling that is malformed or names no path in
/// the repository (check_contract_glob).
error_info validate(const ceiling& c);

/// Narrows `proposed` to the ceiling (see the header comment). An error only
/// when the ceiling itself is not valid.
result<narrowing> narrow(const task_contract& proposed, const ceiling& c);

/// JSON: {"allowed_paths":[...], "forbidden_paths":[...], "protected_paths":[...],
/// "max_files":0, "max_changed_lines":0, "max_added_bytes":16777216,
/// "binary_allowed":true, "executable_allowed":true, "links":"inside",
/// "submodules_allowed":false}; every field optional on reading (missing:
/// the default), unknown fields are errors.
json::value to_json_value(const ceiling& c);
result<ceiling> ceiling_from_json(const json::value& v);
void tag_invoke(json::value_from_tag, json::value& v, const ceiling& c);

}  // namespace agentcore::contract
