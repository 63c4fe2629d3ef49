// agentcore/gate/checks.hpp: the gate's checks. A shell command runs through
// agentcore::process (its limits and sandbox); `check` is the extension point
// for checks that are not a shell command.
//
//   auto lint = agentcore::gate::make_check("license headers", [](const auto& wt, const auto& limits) {
//     return agentcore::process::run("scripts/check-headers", {.working_directory = wt, .timeout = limits.timeout});
//   });
//
// A check that waits on something else (a review service over HTTP) derives
// from `check` and overrides do_async_run: it holds no thread while it waits.
// A check that is a blocking call (a linter linked into the host) overrides
// run(), or comes from make_check.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/core/error.hpp>
#include <agentcore/process/process.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

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
/// could not run at all. A check overrides one of run() (blocking) and
/// do_async_run() (asynchronous); each has the other as its default.
class check {
public:
  using run_signature = void(result<check_result>);
  virtual ~check() = default;
  /// Shown as the check_result's command: "license headers", "api review".
  virtual std::string name() const = 0;

  /// Runs the check; completes with its result (docs/conventions.md).
  template <class CompletionToken>
  auto async_run(std::filesystem::path worktree, check_options limits, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, run_signature>(
        [this](auto handler, std::filesystem::path wt, check_options o) {
          do_async_run(std::move(wt), std::move(o), ::agentcore::detail::never_inline(std::move(handler)));
        },
        token, std::move(worktree), std::move(limits));
  }

  /// Runs the check, blocking the calling thread: the gate calls this on its
  /// blocking executor. The default starts do_async_run and waits for it
  /// (whose completion must not need the thread that waits).
  virtual result<check_result> run(const std::filesystem::path& worktree, const check_options& limits);

protected:
  /// Completes `handler` exactly once. The default runs run() on the calling
  /// thread and posts its result to the handler's executor.
  virtual void do_async_run(std::filesystem::path worktree, check_options limits,
                            boost::asio::any_completion_handler<run_signature> handler);
};

/// A check from a function.
std::shared_ptr<check> make_check(std::string name,
                                  std::function<result<check_result>(const std::filesystem::path&, const check_options&)> fn);

}  // namespace agentcore::gate
