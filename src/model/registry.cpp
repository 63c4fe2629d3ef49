#include <agentcore/model/cli.hpp>
#include <agentcore/model/http_clients.hpp>
#include <agentcore/model/middleware.hpp>
#include <agentcore/model/plugin.hpp>
#include <agentcore/model/registry.hpp>
#include <agentcore/model/replay.hpp>

#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <mutex>
#include <set>

#include <dlfcn.h>

#include <boost/asio/any_io_executor.hpp>

namespace agentcore::model {

namespace {

error_info bad_option(std::string_view spec, std::string_view key, std::string_view why) {
  return fail(agentcore::error::invalid_argument, fmt::format("model: '{}': option '{}' {}", spec, key, why));
}

// Reads and removes `key` from `o`.
template <class T>
result<std::optional<T>> take(json::object& o, std::string_view key, std::string_view spec) {
  auto it = o.find(key);
  if (it == o.end() || it->value().is_null()) {
    if (it != o.end()) o.erase(it);
    return std::optional<T>();
  }
  auto v = json::try_value_to<T>(it->value());
  if (!v)
    return result<std::optional<T>>(
        boost::system::in_place_error,
        bad_option(spec, key, fmt::format("has the wrong type ({})", agentcore::json_kind_name(it->value()))));
  o.erase(it);
  return std::optional<T>(std::move(*v));
}

template <class T, class F>
error_info read(json::object& o, std::string_view key, std::string_view spec, F&& apply) {
  auto v = take<T>(o, key, spec);
  if (!v) return v.error();
  if (*v) apply(std::move(**v));
  return {};
}

error_info unknown(std::string_view spec, std::string_view where, const json::object& unread) {
  if (unread.empty()) return {};
  std::string keys;
  for (const auto& kv : unread) keys += (keys.empty() ? "'" : ", '") + std::string(kv.key()) + "'";
  return fail(agentcore::error::invalid_argument,
              fmt::format("model: '{}': unknown option{} {}{}; check the spelling", spec, unread.size() > 1 ? "s" : "",
                          keys, where));
}

result<http_client_options> http_options(std::string_view model, std::string_view spec, json::object& o) {
  http_client_options h;
  h.model = std::string(model);
  using ms = std::chrono::milliseconds;
  for (auto e : {
           read<std::string>(o, "base_url", spec, [&](std::string v) { h.base_url = std::move(v); }),
           read<std::string>(o, "api_key_env", spec, [&](std::string v) { h.api_key_env = std::move(v); }),
           read<std::map<std::string, std::string>>(o, "headers", spec,
                                                    [&](auto v) { h.headers.assign(v.begin(), v.end()); }),
           read<std::int64_t>(o, "connect_timeout_ms", spec, [&](std::int64_t v) { h.connect_timeout = ms(v); }),
           read<std::int64_t>(o, "first_byte_timeout_ms", spec, [&](std::int64_t v) { h.first_byte_timeout = ms(v); }),
           read<std::int64_t>(o, "total_timeout_ms", spec, [&](std::int64_t v) { h.total_timeout = ms(v); }),
           read<std::uint64_t>(o, "max_response_bytes", spec, [&](std::uint64_t v) { h.max_response_bytes = v; }),
           read<bool>(o, "verify_tls", spec, [&](bool v) { h.verify_tls = v; }),
           read<std::string>(o, "ca_file", spec, [&](std::string v) { h.ca_file = std::move(v); }),
           read<bool>(o, "proxy_from_env", spec, [&](bool v) { h.proxy_from_env = v; }),
           read<std::uint64_t>(o, "max_idle_connections", spec, [&](std::uint64_t v) { h.max_idle_connections = v; }),
           read<std::string>(o, "anthropic_version", spec, [&](std::string v) { h.anthropic_version = std::move(v); }),
       })
    if (e) return e;
  return h;
}

client_factory http_factory(bool anthropic) {
  return [anthropic](std::string_view model, const client_context& ctx,
                     json::object& unread) -> result<std::shared_ptr<client>> {
    std::string spec = fmt::format("{}:{}", anthropic ? "anthropic" : "openai", model);
    if (model.empty())
      return fail(agentcore::error::invalid_argument,
                  fmt::format("model: '{}': name the model after the colon, as in '{}:MODEL'", spec,
                              anthropic ? "anthropic" : "openai"));
    if (!ctx.executor)
      return fail(agentcore::error::invalid_argument, fmt::format("model: '{}': needs an executor", spec));
    auto h = http_options(model, spec, unread);
    if (!h) return h.error();
    auto c = anthropic ? make_anthropic_client(ctx.executor, std::move(*h)) : make_openai_client(ctx.executor, std::move(*h));
    if (!c) return c.error();
    return std::shared_ptr<client>(std::move(*c));
  };
}

result<std::shared_ptr<client>> make_replay(std::string_view path, const client_context&, json::object& unread) {
  std::string spec = fmt::format("replay:{}", path);
  replay_options ro;
  auto match = take<std::string>(unread, "match", spec);
  if (!match) return match.error();
  if (*match) {
    if (**match == "role_and_turn") ro.by = replay_options::match::role_and_turn;
    else if (**match == "request_hash") ro.by = replay_options::match::request_hash;
    else if (**match == "task_and_turn") ro.by = replay_options::match::task_and_turn;
    else
      return bad_option(spec, "match",
                        fmt::format("is '{}'; use 'role_and_turn', 'task_and_turn' or 'request_hash'", **match));
  }
  auto c = replay_client::open(std::filesystem::path(path), ro);
  if (!c) return c.error();
  return std::shared_ptr<client>(std::move(*c));
}

// cli:NAME: a preset (claude, codex, aider), or any name with a "command".
result<std::shared_ptr<client>> make_cli(std::string_view name, const client_context&, json::object& unread) {
  std::string spec = fmt::format("cli:{}", name);
  auto command = take<std::vector<std::string>>(unread, "command", spec);
  if (!command) return command.error();
  cli_options o;
  if (*command) {
    if ((*command)->empty()) return bad_option(spec, "command", "is empty");
    o.command = std::move(**command);
    o.name = spec;
    if (auto preset = cli_preset(name)) {  // a preset's format and key, with another command
      o.output = preset->output;
      o.env_allow = preset->env_allow;
    }
  } else {
    auto preset = cli_preset(name);
    if (!preset) return preset.error();
    o = std::move(*preset);
  }
  using ms = std::chrono::milliseconds;
  for (auto e : {read<std::string>(unread, "workdir", spec, [&](std::string v) { o.working_directory = v; }),
                 read<std::int64_t>(unread, "time_box_ms", spec, [&](std::int64_t v) { o.time_box = ms(v); }),
                 read<std::uint64_t>(unread, "output_limit", spec, [&](std::uint64_t v) { o.output_limit = v; }),
                 read<std::vector<std::string>>(unread, "env_allow", spec,
                                                [&](auto v) { o.env_allow.insert(o.env_allow.end(), v.begin(), v.end()); }),
                 read<std::map<std::string, std::string>>(unread, "env", spec, [&](auto v) { o.env_set = std::move(v); })})
    if (e) return e;
  auto format = take<std::string>(unread, "format", spec);
  if (!format) return format.error();
  if (*format) {
    if (**format == "claude_stream_json") o.output = cli_options::format::claude_stream_json;
    else if (**format == "codex_json") o.output = cli_options::format::codex_json;
    else if (**format == "text") o.output = cli_options::format::text;
    else return bad_option(spec, "format", fmt::format("is '{}'; use claude_stream_json, codex_json or text", **format));
  }
  return make_cli_client(std::move(o));
}

// "limits" are per endpoint: every client of one backend and base URL made
// while another lives shares its limiter (the first one's limits).
std::mutex limiters_mutex;
std::map<std::string, std::weak_ptr<limiter>> limiters;

std::shared_ptr<limiter> limiter_for(const std::string& endpoint, const boost::asio::any_io_executor& ex, limit_options o) {
  std::lock_guard lock(limiters_mutex);
  auto& slot = limiters[endpoint];
  if (auto l = slot.lock()) return l;
  auto l = limiter::make(ex, o);
  slot = l;
  return l;
}

// Plugins stay loaded for the life of the process; each is loaded once.
std::mutex plugins_mutex;
std::set<std::string> loaded_plugins;

result<price_table> parse_prices(const json::object& table, std::string_view spec) {
  price_table prices;
  for (auto& [name, v] : table) {
    if (!v.is_object()) return bad_option(spec, "prices", fmt::format("entry '{}' is not an object", std::string(name)));
    auto o = v.as_object();
    price p;
    for (auto e : {read<double>(o, "input_per_mtok", spec, [&](double x) { p.input_per_mtok = x; }),
                   read<double>(o, "output_per_mtok", spec, [&](double x) { p.output_per_mtok = x; }),
                   read<double>(o, "cache_read_per_mtok", spec, [&](double x) { p.cache_read_per_mtok = x; }),
                   read<double>(o, "cache_write_per_mtok", spec, [&](double x) { p.cache_write_per_mtok = x; })})
      if (e) return e;
    if (auto e = unknown(spec, fmt::format(" in 'prices.{}'", std::string(name)), o)) return e;
    for (double x : {p.input_per_mtok, p.output_per_mtok, p.cache_read_per_mtok, p.cache_write_per_mtok})
      if (!(x >= 0))
        return bad_option(spec, "prices", fmt::format("entry '{}' has a negative or invalid price", std::string(name)));
    prices[std::string(name)] = p;
  }
  return prices;
}

}  // namespace

result<price_table> prices_from_options(const json::object& options) {
  auto* p = options.if_contains("prices");
  if (!p || p->is_null()) return price_table{};
  if (!p->is_object())
    return bad_option("model_options", "prices",
                      fmt::format("has the wrong type ({})", agentcore::json_kind_name(*p)));
  return parse_prices(p->as_object(), "model_options");
}

registry registry::with_builtins() {
  registry r;
  r.add("openai", http_factory(false));
  r.add("anthropic", http_factory(true));
  r.add("replay", make_replay);
  r.add("cli", make_cli);
  return r;
}

error_info registry::add(std::string backend, client_factory factory) {
  if (backend.empty() || !factory)
    return fail(agentcore::error::invalid_argument, "model: registry: a backend needs a name and a factory");
  if (factories_.contains(backend))
    return fail(agentcore::error::already_exists,
                fmt::format("model: registry: backend '{}' is already registered", backend));
  factories_.emplace(std::move(backend), std::move(factory));
  return {};
}

bool registry::has(std::string_view backend) const { return factories_.find(backend) != factories_.end(); }

std::vector<std::string> registry::backends() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : factories_) out.push_back(k);
  return out;
}

result<std::shared_ptr<client>> registry::make(std::string_view spec, const client_context& ctx) const {
  auto colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return fail(agentcore::error::invalid_argument,
                fmt::format("model: '{}' is not a client spec; write BACKEND:ARGUMENT, as in 'openai:gpt-4o'", spec));
  std::string backend(spec.substr(0, colon));
  std::string_view argument = spec.substr(colon + 1);
  if (backend == "plugin") {  // plugin:NAME:MODEL
    auto second = argument.find(':');
    backend += ":" + std::string(argument.substr(0, second));
    argument = second == std::string_view::npos ? std::string_view() : argument.substr(second + 1);
  }
  auto it = factories_.find(backend);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& [k, v] : factories_) known += (known.empty() ? "" : ", ") + k;
    return fail(agentcore::error::not_found,
                fmt::format("model: '{}': no backend '{}' (known: {}){}", spec, backend, known.empty() ? "none" : known,
                            backend.starts_with("plugin:") ? "; is its plugin on AGENTCORE_PLUGIN_PATH?" : ""));
  }
  json::object unread = ctx.options;
  // The middleware every backend takes.
  std::optional<retry_options> retry;
  std::optional<limit_options> limits;
  std::optional<timeout_options> timeouts;
  std::optional<std::string> record;
  using ms = std::chrono::milliseconds;
  if (auto r = take<json::object>(unread, "retry", spec); !r) {
    return r.error();
  } else if (*r) {
    retry.emplace();
    auto& o = **r;
    for (auto e : {read<int>(o, "max_attempts", spec, [&](int v) { retry->max_attempts = v; }),
                   read<std::int64_t>(o, "initial_delay_ms", spec, [&](std::int64_t v) { retry->initial_delay = ms(v); }),
                   read<double>(o, "multiplier", spec, [&](double v) { retry->multiplier = v; }),
                   read<std::int64_t>(o, "max_delay_ms", spec, [&](std::int64_t v) { retry->max_delay = ms(v); }),
                   read<double>(o, "jitter", spec, [&](double v) { retry->jitter = v; }),
                   read<std::int64_t>(o, "max_retry_after_ms", spec,
                                      [&](std::int64_t v) { retry->max_retry_after = ms(v); })})
      if (e) return e;
    if (auto e = unknown(spec, " in 'retry'", o)) return e;
  }
  if (auto r = take<json::object>(unread, "limits", spec); !r) {
    return r.error();
  } else if (*r) {
    limits.emplace();
    auto& o = **r;
    for (auto e : {read<std::uint64_t>(o, "max_in_flight", spec, [&](std::uint64_t v) { limits->max_in_flight = v; }),
                   read<double>(o, "requests_per_second", spec, [&](double v) { limits->requests_per_second = v; }),
                   read<double>(o, "burst", spec, [&](double v) { limits->burst = v; })})
      if (e) return e;
    if (auto e = unknown(spec, " in 'limits'", o)) return e;
  }
  if (auto r = take<json::object>(unread, "timeouts", spec); !r) {
    return r.error();
  } else if (*r) {
    timeouts.emplace();
    auto& o = **r;
    for (auto e : {read<std::int64_t>(o, "first_byte_ms", spec, [&](std::int64_t v) { timeouts->first_byte = ms(v); }),
                   read<std::int64_t>(o, "total_ms", spec, [&](std::int64_t v) { timeouts->total = ms(v); })})
      if (e) return e;
    if (auto e = unknown(spec, " in 'timeouts'", o)) return e;
  }
  if (auto r = take<std::string>(unread, "record", spec); !r) return r.error();
  else record = std::move(*r);
  price_table prices;
  if (auto r = take<json::object>(unread, "prices", spec); !r) {
    return r.error();
  } else if (*r) {
    auto parsed = parse_prices(**r, spec);
    if (!parsed) return parsed.error();
    prices = std::move(*parsed);
  }
  std::shared_ptr<budget> own_budget;
  if (auto r = take<json::object>(unread, "budget", spec); !r) {
    return r.error();
  } else if (*r) {
    budget_limits limits;
    auto& o = **r;
    for (auto e : {read<std::uint64_t>(o, "tokens", spec, [&](std::uint64_t v) { limits.tokens = v; }),
                   read<double>(o, "cost", spec, [&](double v) { limits.cost = v; })})
      if (e) return e;
    if (auto e = unknown(spec, " in 'budget'", o)) return e;
    own_budget = budget::make(fmt::format("client {}", spec), limits);
  }
  if ((retry || limits || timeouts) && !ctx.executor)
    return fail(agentcore::error::invalid_argument,
                fmt::format("model: '{}': retry, limits and timeouts need an executor in the client_context", spec));

  result<std::shared_ptr<client>> made = fail(agentcore::error::invalid_argument, "unreached");
  try {
    made = it->second(argument, ctx, unread);
  } catch (const std::exception& e) {  // a plugin's factory: never unwind through the host
    return fail(agentcore::error::invalid_argument, fmt::format("model: '{}': the backend's factory threw: {}", spec, e.what()));
  }
  if (!made) return made.error();
  if (!*made) return fail(agentcore::error::invalid_argument, fmt::format("model: '{}': the backend made no client", spec));
  if (auto e = unknown(spec, "", unread)) return e;
  // Innermost first: record real answers, then time limits per attempt, then
  // limits (each attempt waits its turn), then retry around it all.
  std::shared_ptr<client> c = std::move(*made);
  if (record) {
    auto rec = recorder::open(c, *record);
    if (!rec) return rec.error();
    c = std::move(*rec);
  }
  if (timeouts) c = with_timeouts(ctx.executor, std::move(c), *timeouts);
  if (limits) {
    std::string endpoint = backend;
    if (auto b = ctx.options.find("base_url"); b != ctx.options.end() && b->value().is_string())
      endpoint += "|" + std::string(b->value().as_string());
    c = with_limits(std::move(c), limiter_for(endpoint, ctx.executor, *limits));
  }
  if (retry) c = with_retry(ctx.executor, std::move(c), *retry);
  // Budgets outermost: a call refused for money never waits for a slot.
  if (own_budget) c = with_budget(std::move(c), [own_budget](const request&) { return own_budget; }, prices);
  if (ctx.budgets) c = with_budget(std::move(c), ctx.budgets, prices);
  return c;
}

error_info registry::load_plugin(const std::filesystem::path& library) {
  auto path = std::filesystem::absolute(library).lexically_normal().string();
  std::lock_guard lock(plugins_mutex);
  void* h = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* why = ::dlerror();
    return fail(agentcore::error::invalid_argument,
                fmt::format("model: plugin '{}' does not load: {}{}", path, why ? why : "unknown reason",
                            why && std::string_view(why).find("undefined symbol") != std::string_view::npos
                                ? " (link the host with -rdynamic, CMake ENABLE_EXPORTS, so plugins find agentcore in it)"
                                : ""));
  }
  using info_fn = const agentcore_plugin_info* (*)();
  using register_fn = void (*)(plugin_registrar&, error_info&);
  auto info = reinterpret_cast<info_fn>(::dlsym(h, "agentcore_plugin_info_v1"));
  auto reg = reinterpret_cast<register_fn>(::dlsym(h, "agentcore_plugin_register"));
  if (!info || !reg)
    return fail(agentcore::error::invalid_argument,
                fmt::format("model: '{}' is not an agentcore plugin (it exports no agentcore_plugin_info_v1 / "
                            "agentcore_plugin_register; make it with AGENTCORE_PLUGIN)",
                            path));
  const agentcore_plugin_info* i = info();
  if (i->abi_version != AGENTCORE_PLUGIN_ABI_VERSION)
    return fail(agentcore::error::unsupported_format,
                fmt::format("model: plugin '{}' was built for agentcore plugin ABI {}; this agentcore speaks {}: rebuild "
                            "the plugin against this agentcore",
                            path, i->abi_version, AGENTCORE_PLUGIN_ABI_VERSION));
  if (i->layout != detail::plugin_layout())
    return fail(agentcore::error::unsupported_format,
                fmt::format("model: plugin '{}' was built with other agentcore headers or another standard library "
                            "(type layout {:x}, here {:x}): rebuild it against this agentcore",
                            path, i->layout, detail::plugin_layout()));
  std::string name = i->name ? i->name : "";
  if (name.empty() || name.find(':') != std::string::npos)
    return fail(agentcore::error::invalid_argument,
                fmt::format("model: plugin '{}' has no usable name ('{}'; no colons)", path, name));
  if (loaded_plugins.contains(path) && has("plugin:" + name)) return {};
  plugin_registrar r(*this, name);
  error_info out;
  reg(r, out);
  if (out) return error_info(out.code(), fmt::format("model: plugin '{}' ({}): {}", name, path, out.message()));
  loaded_plugins.insert(path);
  return {};
}

error_info registry::load_plugins_from_env() {
  const char* env = std::getenv("AGENTCORE_PLUGIN_PATH");
  if (!env || !*env) return {};
  error_info first;
  std::string_view rest(env);
  while (!rest.empty()) {
    auto colon = rest.find(':');
    std::filesystem::path dir(std::string(rest.substr(0, colon)));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (dir.empty()) continue;
    std::error_code ec;
    std::vector<std::filesystem::path> libs;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
      if (entry.path().extension() == ".so") libs.push_back(entry.path());
    if (ec && !first)
      first = fail(agentcore::error::not_found,
                   fmt::format("model: AGENTCORE_PLUGIN_PATH names '{}': {}", dir.string(), ec.message()));
    std::sort(libs.begin(), libs.end());
    for (const auto& lib : libs)
      if (auto e = load_plugin(lib); e && !first) first = e;
  }
  return first;
}

}  // namespace agentcore::model
