#include <agentcore/agent/tool.hpp>

#include "detail/complete.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>
#include <boost/json/value.hpp>

#include <fmt/format.h>

#include <charconv>

namespace agentcore::agent {

namespace {

// Delivers `out` on the handler's executor, never inline.
void complete(asio::any_completion_handler<tool_signature> h, tool_output out) {
  agentcore::detail::post_completion(std::move(h), std::move(out));
}

tool_output thrown(std::string_view tool, std::string_view what) {
  return {fmt::format("the tool '{}' failed: {}", tool, what), true};
}

class function_tool final : public tool {
public:
  function_tool(model::tool_definition d, tool_function f) : tool(std::move(d)), fn_(std::move(f)) {}

protected:
  void do_invoke(json::object args, tool_context& ctx, asio::any_completion_handler<tool_signature> handler) override {
    auto run = [this, args = std::move(args), &ctx, handler = std::move(handler)]() mutable {
      tool_output out;
      try {
        out = fn_(args, ctx);
      } catch (const std::exception& e) {
        out = thrown(name(), e.what());
      } catch (...) {
        out = thrown(name(), "an exception that is not a std::exception");
      }
      complete(std::move(handler), std::move(out));
    };
    if (ctx.blocking) asio::post(ctx.blocking, std::move(run));
    else run();
  }

private:
  tool_function fn_;
};

}  // namespace

void tool::invoke_guarded(json::object args, tool_context& ctx, asio::any_completion_handler<tool_signature> handler) {
  // The handler is shared so that an exception thrown after do_invoke took it
  // can still be answered, and a second completion is dropped.
  auto slot = std::make_shared<asio::any_completion_handler<tool_signature>>(std::move(handler));
  auto ex = asio::get_associated_executor(*slot);
  // Outstanding work on the caller's executor until the answer is posted: a
  // tool that answers from a thread of its own must not let the caller's
  // io_context::run() return in between.
  auto work = std::make_shared<asio::any_completion_executor>(detail::track_work(*slot));
  auto once = [slot, work](tool_output out) {
    if (*slot) complete(std::move(*slot), std::move(out));
    *work = asio::any_completion_executor();
  };
  try {
    do_invoke(std::move(args), ctx, asio::any_completion_handler<tool_signature>(asio::bind_executor(ex, once)));
  } catch (const std::exception& e) {
    if (*slot) complete(std::move(*slot), thrown(name(), e.what()));
  } catch (...) {
    if (*slot) complete(std::move(*slot), thrown(name(), "an exception that is not a std::exception"));
  }
}

std::shared_ptr<tool> make_tool(model::tool_definition definition, tool_function fn) {
  return std::make_shared<function_tool>(std::move(definition), std::move(fn));
}

namespace {
error_info arg_error(std::string_view tool, std::string_view name, std::string_view want) {
  return fail(error::bad_arguments, fmt::format("{}: the argument '{}' must be {}", tool, name, want));
}
}  // namespace

result<std::string> string_arg(const json::object& args, std::string_view tool, std::string_view name) {
  auto it = args.find(name);
  if (it == args.end() || it->value().is_null())
    return fail(error::bad_arguments, fmt::format("{}: the argument '{}' is missing", tool, name));
  if (!it->value().is_string()) return arg_error(tool, name, "a string");
  return std::string(it->value().get_string());
}

result<std::optional<std::string>> optional_string_arg(const json::object& args, std::string_view tool,
                                                       std::string_view name) {
  auto it = args.find(name);
  if (it == args.end() || it->value().is_null()) return std::optional<std::string>();
  if (!it->value().is_string()) return arg_error(tool, name, "a string");
  return std::optional<std::string>(std::string(it->value().get_string()));
}

result<std::optional<std::int64_t>> optional_int_arg(const json::object& args, std::string_view tool,
                                                     std::string_view name) {
  auto it = args.find(name);
  if (it == args.end() || it->value().is_null()) return std::optional<std::int64_t>();
  const auto& v = it->value();
  if (v.is_int64()) return std::optional<std::int64_t>(v.get_int64());
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return std::optional<std::int64_t>(static_cast<std::int64_t>(v.get_uint64()));
  if (v.is_double() && v.get_double() == static_cast<double>(static_cast<std::int64_t>(v.get_double())))
    return std::optional<std::int64_t>(static_cast<std::int64_t>(v.get_double()));
  if (v.is_string()) {  // models often quote numbers
    const auto& s = v.get_string();
    std::int64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc() && p == s.data() + s.size()) return std::optional<std::int64_t>(n);
  }
  return arg_error(tool, name, "an integer");
}

result<std::optional<bool>> optional_bool_arg(const json::object& args, std::string_view tool, std::string_view name) {
  auto it = args.find(name);
  if (it == args.end() || it->value().is_null()) return result<std::optional<bool>>(std::optional<bool>());
  if (it->value().is_bool()) return result<std::optional<bool>>(std::optional<bool>(it->value().get_bool()));
  if (it->value().is_string()) {
    auto s = it->value().get_string();
    if (s == "true") return result<std::optional<bool>>(std::optional<bool>(true));
    if (s == "false") return result<std::optional<bool>>(std::optional<bool>(false));
  }
  return result<std::optional<bool>>(boost::system::in_place_error, arg_error(tool, name, "true or false"));
}

}  // namespace agentcore::agent
