#include <agentcore/model/types.hpp>

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include <fmt/format.h>

namespace agentcore::model {

namespace {

class category_impl : public boost::system::error_category {
public:
  const char* name() const noexcept override { return "agentcore.model"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::success: return "success";
      case error::bad_response: return "the backend's answer is not a valid answer";
      case error::not_covered: return "the replay transcript has no answer for this request";
      case error::agent_failed: return "the CLI agent failed";
      case error::time_box: return "the CLI agent ran out of its time box";
      case error::http_status: return "the API answered with an error status";
      case error::no_api_key: return "the API key variable is not set";
      case error::rate_limited: return "the API is rate limiting (429)";
      case error::unavailable: return "the API is unavailable for now (408, 409 or 5xx)";
      case error::budget_exhausted: return "a budget is exhausted";
    }
    return "unknown model error";
  }
};

error_info bad(std::string_view what, std::string_view detail) {
  return fail(agentcore::error::invalid_argument, fmt::format("model: {}: {}", what, detail));
}

template <class T>
result<T> field(const json::object& o, std::string_view key, std::string_view what) {
  return json_field<T>(o, key, what);
}

}  // namespace

const boost::system::error_category& model_category() noexcept {
  static const category_impl c;
  return c;
}

std::string message::text() const {
  std::string out;
  for (const auto& p : parts)
    if (auto* t = std::get_if<text_part>(&p)) out += t->text;
  return out;
}

std::vector<tool_call> message::tool_calls() const {
  std::vector<tool_call> out;
  for (const auto& p : parts)
    if (auto* c = std::get_if<tool_call>(&p)) out.push_back(*c);
  return out;
}

usage& usage::operator+=(const usage& o) noexcept {
  input_tokens += o.input_tokens;
  output_tokens += o.output_tokens;
  cache_read_tokens += o.cache_read_tokens;
  cache_write_tokens += o.cache_write_tokens;
  return *this;
}

std::string_view to_string(role r) noexcept { return r == role::user ? "user" : "assistant"; }

std::string_view to_string(stop_reason s) noexcept {
  switch (s) {
    case stop_reason::end_turn: return "end_turn";
    case stop_reason::tool_use: return "tool_use";
    case stop_reason::max_tokens: return "max_tokens";
    case stop_reason::stop_sequence: return "stop_sequence";
    case stop_reason::refused: return "refused";
  }
  return "end_turn";
}

result<json::object> parse_arguments(const tool_call& call) {
  boost::system::error_code ec;
  json::value v = json::parse(call.arguments, ec);
  if (ec)
    return fail(agentcore::error::invalid_argument,
                fmt::format("the arguments of your call to '{}' are not valid JSON ({}); send one JSON object", call.name,
                            ec.message()));
  if (!v.is_object())
    return fail(agentcore::error::invalid_argument,
                fmt::format("the arguments of your call to '{}' must be a JSON object, not {}", call.name,
                            json_kind_name(v)));
  return std::move(v.as_object());
}

// --- JSON ---

json::value to_json_value(const message& m) {
  json::array parts;
  for (const auto& p : m.parts) {
    if (auto* t = std::get_if<text_part>(&p)) {
      parts.push_back(json::object{{"type", "text"}, {"text", t->text}});
    } else if (auto* c = std::get_if<tool_call>(&p)) {
      parts.push_back(json::object{{"type", "tool_call"}, {"id", c->id}, {"name", c->name}, {"arguments", c->arguments}});
    } else {
      auto& r = std::get<tool_result>(p);
      parts.push_back(
          json::object{{"type", "tool_result"}, {"call_id", r.call_id}, {"content", r.content}, {"is_error", r.is_error}});
    }
  }
  return json::object{{"role", to_string(m.role)}, {"parts", std::move(parts)}};
}

result<message> message_from_json(const json::value& v) {
  if (!v.is_object()) return bad("message", fmt::format("must be an object, not {}", json_kind_name(v)));
  const auto& o = v.as_object();
  auto r = field<std::string>(o, "role", "model message");
  if (!r) return r.error();
  message m;
  if (*r == "user") m.role = role::user;
  else if (*r == "assistant") m.role = role::assistant;
  else return bad("message", fmt::format("role '{}' is neither 'user' nor 'assistant'", *r));
  auto parts = field<json::array>(o, "parts", "model message");
  if (!parts) return parts.error();
  for (std::size_t i = 0; i < parts->size(); ++i) {
    const auto& pv = (*parts)[i];
    std::string what = fmt::format("model message part {}", i);
    if (!pv.is_object()) return bad(what, "must be an object");
    const auto& po = pv.as_object();
    auto type = field<std::string>(po, "type", what);
    if (!type) return type.error();
    if (*type == "text") {
      auto t = field<std::string>(po, "text", what);
      if (!t) return t.error();
      m.parts.push_back(text_part{std::move(*t)});
    } else if (*type == "tool_call") {
      auto id = field<std::string>(po, "id", what);
      if (!id) return id.error();
      auto name = field<std::string>(po, "name", what);
      if (!name) return name.error();
      auto args = field<std::string>(po, "arguments", what);
      if (!args) return args.error();
      m.parts.push_back(tool_call{std::move(*id), std::move(*name), std::move(*args)});
    } else if (*type == "tool_result") {
      auto id = field<std::string>(po, "call_id", what);
      if (!id) return id.error();
      auto content = field<std::string>(po, "content", what);
      if (!content) return content.error();
      auto err = json_field_or<bool>(po, "is_error", false, what);
      if (!err) return err.error();
      m.parts.push_back(tool_result{std::move(*id), std::move(*content), *err});
    } else {
      return bad(what, fmt::format("type '{}' is not one of text, tool_call, tool_result", *type));
    }
  }
  return m;
}

json::value to_json_value(const request& r) {
  json::array messages, tools, stop;
  for (const auto& m : r.messages) messages.push_back(to_json_value(m));
  for (const auto& t : r.tools)
    tools.push_back(json::object{{"name", t.name}, {"description", t.description}, {"parameters", t.parameters}});
  for (const auto& s : r.stop) stop.push_back(json::value(s));
  json::object o{{"system", r.system}, {"messages", std::move(messages)}, {"tools", std::move(tools)},
                 {"max_tokens", r.max_tokens}};
  if (r.temperature) o["temperature"] = *r.temperature;
  o["stop"] = std::move(stop);
  if (r.response_format) o["response_format"] = *r.response_format;
  o["tags"] = json::object{{"role", r.tags.role}, {"task", r.tags.task}};
  if (!r.tags.workdir.empty()) o["tags"].as_object()["workdir"] = r.tags.workdir;
  return o;
}

result<request> request_from_json(const json::value& v) {
  if (!v.is_object()) return bad("request", fmt::format("must be an object, not {}", json_kind_name(v)));
  const auto& o = v.as_object();
  request r;
  auto system = json_field_or<std::string>(o, "system", "", "model request");
  if (!system) return system.error();
  r.system = std::move(*system);
  auto messages = field<json::array>(o, "messages", "model request");
  if (!messages) return messages.error();
  for (const auto& mv : *messages) {
    auto m = message_from_json(mv);
    if (!m) return m.error();
    r.messages.push_back(std::move(*m));
  }
  auto tools = json_field_or<json::array>(o, "tools", {}, "model request");
  if (!tools) return tools.error();
  for (std::size_t i = 0; i < tools->size(); ++i) {
    std::string what = fmt::format("model request tool {}", i);
    if (!(*tools)[i].is_object()) return bad(what, "must be an object");
    const auto& to = (*tools)[i].as_object();
    auto name = field<std::string>(to, "name", what);
    if (!name) return name.error();
    auto desc = json_field_or<std::string>(to, "description", "", what);
    if (!desc) return desc.error();
    auto params = json_field_or<json::object>(to, "parameters", {}, what);
    if (!params) return params.error();
    r.tools.push_back({std::move(*name), std::move(*desc), std::move(*params)});
  }
  auto max_tokens = json_field_or<std::uint32_t>(o, "max_tokens", 1024, "model request");
  if (!max_tokens) return max_tokens.error();
  r.max_tokens = *max_tokens;
  if (auto it = o.find("temperature"); it != o.end() && !it->value().is_null()) {
    auto t = json::try_value_to<double>(it->value());
    if (!t) return bad("request", "'temperature' must be a number");
    r.temperature = *t;
  }
  auto stop = json_field_or<std::vector<std::string>>(o, "stop", {}, "model request");
  if (!stop) return stop.error();
  r.stop = std::move(*stop);
  if (auto it = o.find("response_format"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_object()) return bad("request", "'response_format' must be a JSON Schema object");
    r.response_format = it->value().as_object();
  }
  if (auto it = o.find("tags"); it != o.end() && it->value().is_object()) {
    auto role = json_field_or<std::string>(it->value().as_object(), "role", "", "model request tags");
    if (!role) return role.error();
    auto task = json_field_or<std::string>(it->value().as_object(), "task", "", "model request tags");
    if (!task) return task.error();
    auto workdir = json_field_or<std::string>(it->value().as_object(), "workdir", "", "model request tags");
    if (!workdir) return workdir.error();
    r.tags = {std::move(*role), std::move(*task), std::move(*workdir)};
  }
  return r;
}

json::value to_json_value(const response& r) {
  return json::object{{"message", to_json_value(r.message)},
                      {"stop", to_string(r.stop)},
                      {"usage", json::object{{"input", r.usage.input_tokens},
                                             {"output", r.usage.output_tokens},
                                             {"cache_read", r.usage.cache_read_tokens},
                                             {"cache_write", r.usage.cache_write_tokens}}},
                      {"latency_ms", r.latency.count()},
                      {"model", r.model_name}};
}

result<response> response_from_json(const json::value& v) {
  if (!v.is_object()) return bad("response", fmt::format("must be an object, not {}", json_kind_name(v)));
  const auto& o = v.as_object();
  response r;
  auto mv = o.find("message");
  if (mv == o.end()) return bad("response", "has no 'message'");
  auto m = message_from_json(mv->value());
  if (!m) return m.error();
  r.message = std::move(*m);
  auto stop = json_field_or<std::string>(o, "stop", "end_turn", "model response");
  if (!stop) return stop.error();
  bool known = false;
  for (auto s : {stop_reason::end_turn, stop_reason::tool_use, stop_reason::max_tokens, stop_reason::stop_sequence,
                 stop_reason::refused})
    if (to_string(s) == *stop) {
      r.stop = s;
      known = true;
    }
  if (!known) return bad("response", fmt::format("stop reason '{}' is not one agentcore knows", *stop));
  if (auto it = o.find("usage"); it != o.end() && it->value().is_object()) {
    const auto& u = it->value().as_object();
    for (auto [key, out] : {std::pair{"input", &r.usage.input_tokens}, std::pair{"output", &r.usage.output_tokens},
                            std::pair{"cache_read", &r.usage.cache_read_tokens},
                            std::pair{"cache_write", &r.usage.cache_write_tokens}}) {
      auto n = json_field_or<std::uint64_t>(u, key, 0, "model response usage");
      if (!n) return n.error();
      *out = *n;
    }
  }
  auto latency = json_field_or<std::int64_t>(o, "latency_ms", 0, "model response");
  if (!latency) return latency.error();
  r.latency = std::chrono::milliseconds(*latency);
  auto name = json_field_or<std::string>(o, "model", "", "model response");
  if (!name) return name.error();
  r.model_name = std::move(*name);
  return r;
}

std::string to_json(const request& r) { return to_json_string(to_json_value(r)); }
std::string to_json(const response& r) { return to_json_string(to_json_value(r)); }

}  // namespace agentcore::model
