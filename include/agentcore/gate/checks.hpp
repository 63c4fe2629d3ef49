// agentcore/gate/checks.hpp: the gate's checks. A shell command runs through
// agentcore::process (its limits and sandbox); `check` is the extension point
// for checks that are not a shell command.
//
//   auto lint = agentcore::gate::make_check("license headers", [](const auto& wt, const auto& limits) {
//     return agentcore::process::run("scripts/check-headers", {.working_directory = wt, .timeout = limits.timeout});
//   });
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/process/process.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace agentcore::gate {

/// What a check may do (time, output, environment, sandbox): a process's limits.
using check_options = process::run_options;
/// How a check went: a process's result (its command, the check's name).
using check_result = process::run_result;

/// A check over a worktree: the extension point for checks that are not a
/// shell command (a linter linked into the host, a call to a review service).
/// A failing check is a check_result that did not pass; an error means it
/// could not run at all. Runs on the gate's thread, blocking.
class check {
public:
  virtual ~check() = default;
  /// Shown as the check_result's command: "license headers", "api review".
  virtual std::string name() const = 0;
  virtual result<check_result> run(const std::filesystem::path& worktree, const check_options& limits) = 0;
};

/// A check from a function.
std::shared_ptr<check> make_check(std::string name,
                                  std::function<result<check_result>(const std::filesystem::path&, const check_options&)> fn);

}  // namespace agentcore::gate
