// agentcore/model/registry.hpp: clients made from spec strings and options
// from the configuration, and plugins that add backends.
//
//   auto reg = model::registry::with_builtins();
//   reg.load_plugins_from_env();                                  // AGENTCORE_PLUGIN_PATH
//   auto c = reg.make("openai:gpt-4o", {.executor = ex, .options = json::parse(R"({
//       "api_key_env": "OPENAI_API_KEY", "retry": {"max_attempts": 4}, "limits": {"max_in_flight": 16}})").as_object()});
//
// Specs: `openai:MODEL`, `anthropic:MODEL`, `replay:PATH`, `cli:claude|codex|aider`
// (or `cli:NAME` with a "command"), `plugin:NAME:MODEL` (a backend a plugin
// registered under NAME), or any backend a host added.
// Options every backend takes: "retry" (object of retry_options fields, in
// milliseconds where they are times), "limits" (limit_options, per endpoint:
// every client of one backend and base_url shares them), "timeouts"
// ({"first_byte_ms", "total_ms"}), "record" (a transcript path: every answer
// is appended there), "prices" ({"MODEL or prefix": {"input_per_mtok",
// "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"}}), and
// "budget" ({"tokens", "cost"}: a budget of this client's own; the host's
// budgets in client_context::budgets are charged too). An option no one reads is an error naming it, so a typo
// does not go unnoticed.
#pragma once

#include <agentcore/core/json.hpp>
#include <agentcore/model/client.hpp>
#include <agentcore/model/middleware.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::model {

struct client_context {
  boost::asio::any_io_executor executor;
  /// The backend's options from the configuration.
  json::object options;
  /// The host's budgets (run -> role -> task, say budget_by_role_and_task):
  /// when set, every call is charged to the budget it picks, priced with the
  /// "prices" option.
  budget_picker budgets;
};

/// The "prices" of a backend's options as a price table (empty when there are
/// none), for pricing calls where the client is not made by the registry (a
/// host's own client, the agent loop's and the roles' events). An entry that
/// is not an object, an unknown field or a negative price is an error naming it.
result<price_table> prices_from_options(const json::object& options);

/// Makes a backend's client. `argument` is what follows "backend:" in the
/// spec ("gpt-4o", a path). Read the options you use and remove them from
/// `unread`: what is left there afterwards is reported as unknown.
using client_factory = std::function<result<std::shared_ptr<client>>(std::string_view argument, const client_context& ctx,
                                                                      json::object& unread)>;

class registry {
public:
  /// An empty registry.
  registry() = default;
  /// openai, anthropic, replay and cli.
  static registry with_builtins();

  /// Adds a backend; an existing name is an error (plugins may not replace
  /// built-ins silently).
  error_info add(std::string backend, client_factory factory);
  bool has(std::string_view backend) const;
  std::vector<std::string> backends() const;

  /// A client for `spec`, wrapped in the middleware its options ask for.
  result<std::shared_ptr<client>> make(std::string_view spec, const client_context& ctx) const;

  /// Loads one plugin (a shared library made with AGENTCORE_PLUGIN, see
  /// plugin.hpp) and lets it register its backend as "plugin:<its name>". A
  /// plugin built for another plugin ABI is refused, saying which it was built
  /// for. Plugins stay loaded for the life of the process (clients they made
  /// may outlive the registry).
  error_info load_plugin(const std::filesystem::path& library);
  /// Loads every *.so in the directories of AGENTCORE_PLUGIN_PATH (':'-separated).
  /// Returns the first error; the other plugins are still loaded.
  error_info load_plugins_from_env();

private:
  std::map<std::string, client_factory, std::less<>> factories_;
};

}  // namespace agentcore::model
