// The check extension point: a check from a function.
#include <agentcore/gate/checks.hpp>

#include <fmt/format.h>

namespace agentcore::gate {

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
