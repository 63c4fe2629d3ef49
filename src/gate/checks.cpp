// The check extension point: a check from a function.
#include <agentcore/gate/checks.hpp>

#include "detail/complete.hpp"

#include <fmt/format.h>

#include <future>
#include <utility>

namespace agentcore::gate {

namespace {
// The check whose default do_async_run is running run() on this thread: with
// run() not overridden either, that is an error, not a recursion.
thread_local const check* in_default_run = nullptr;
}  // namespace

result<check_result> check::run(const std::filesystem::path& worktree, const check_options& limits) {
  if (in_default_run == this)
    return fail(error::invalid_argument,
                fmt::format("gate: the check '{}' overrides neither run() nor do_async_run(); override one", name()));
  std::promise<result<check_result>> done;
  auto f = done.get_future();
  do_async_run(worktree, limits, [&done](result<check_result> r) { done.set_value(std::move(r)); });
  return f.get();
}

void check::do_async_run(std::filesystem::path worktree, check_options limits,
                         boost::asio::any_completion_handler<run_signature> handler) {
  auto* outer = std::exchange(in_default_run, this);
  auto r = run(worktree, limits);
  in_default_run = outer;
  detail::post_completion(std::move(handler), std::move(r));
}

std::shared_ptr<check> make_check(std::string name,
                                  std::function<result<check_result>(const std::filesystem::path&, const check_options&)> fn) {
  class function_check final : public check {
  public:
    function_check(std::string n, decltype(fn) f) : name_(std::move(n)), fn_(std::move(f)) {}
    std::string name() const override { return name_; }
    result<check_result> run(const std::filesystem::path& wt, const check_options& o) override {
      try {
        auto r = fn_(wt, o);
        if (r) r->command = name_;
        return r;
      } catch (const std::exception& e) {  // a host's exception is an error here, never unwound through the gate
        return fail(error::io_error, fmt::format("gate: the check '{}' threw: {}", name_, e.what()));
      }
    }

  private:
    std::string name_;
    decltype(fn) fn_;
  };
  return std::make_shared<function_check>(std::move(name), std::move(fn));
}

}  // namespace agentcore::gate
