#include "model/codec.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <map>

namespace agentcore::model::detail {

namespace {

std::string_view api_name(api a) { return a == api::openai ? "openai" : "anthropic"; }

error_info bad_answer(api a, std::string_view detail) {
  return fail(error::bad_response, fmt::format("model: {}: the answer is not valid: {}", api_name(a), detail));
}

// Arguments as compact JSON when they parse, so that a streamed answer (built
// from fragments) and a whole one compare equal; as the model wrote them when
// they do not.
std::string normalize_arguments(std::string_view text) {
  if (text.empty()) return "{}";
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec) return std::string(text);
  return json::serialize(v);
}

std::uint64_t count_at(const json::object* o, std::string_view key) {
  if (!o) return 0;
  auto it = o->find(key);
  if (it == o->end()) return 0;
  if (it->value().is_uint64()) return it->value().as_uint64();
  if (it->value().is_int64() && it->value().as_int64() > 0) return static_cast<std::uint64_t>(it->value().as_int64());
  return 0;
}

result<json::object> parse_object(api a, std::string_view text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec) return bad_answer(a, fmt::format("not JSON ({})", ec.message()));
  if (!v.is_object()) return bad_answer(a, "not a JSON object");
  auto& o = v.as_object();
  if (auto* err = object_at(o, "error"))
    return fail(error::bad_response,
                fmt::format("model: {}: the API answered with an error: {}", api_name(a), string_at(*err, "message")));
  return std::move(o);
}

// --- OpenAI chat completions ---

stop_reason openai_stop(std::string_view finish) {
  if (finish == "tool_calls" || finish == "function_call") return stop_reason::tool_use;
  if (finish == "length") return stop_reason::max_tokens;
  if (finish == "content_filter") return stop_reason::refused;
  return stop_reason::end_turn;
}

// prompt_tokens counts cached tokens too; agentcore's input_tokens does not
// (Anthropic's meaning), so that cost = input + cache reads at their prices.
usage openai_usage(const json::object* u) {
  usage out;
  if (!u) return out;
  std::uint64_t prompt = count_at(u, "prompt_tokens");
  std::uint64_t cached = count_at(object_at(*u, "prompt_tokens_details"), "cached_tokens");
  out.cache_read_tokens = std::min(cached, prompt);
  out.input_tokens = prompt - out.cache_read_tokens;
  out.output_tokens = count_at(u, "completion_tokens");
  return out;
}

json::object openai_body(const request& r, std::string_view model, bool stream) {
  json::array messages;
  if (!r.system.empty()) messages.push_back(json::object{{"role", "system"}, {"content", r.system}});
  for (const auto& m : r.messages) {
    if (m.role == role::user) {
      // Tool results are messages of their own, answering the assistant's calls.
      for (const auto& p : m.parts)
        if (auto* tr = std::get_if<tool_result>(&p))
          messages.push_back(json::object{{"role", "tool"},
                                          {"tool_call_id", tr->call_id},
                                          {"content", tr->is_error ? "error: " + tr->content : tr->content}});
      auto text = m.text();
      if (!text.empty()) messages.push_back(json::object{{"role", "user"}, {"content", text}});
    } else {
      json::object msg{{"role", "assistant"}};
      auto text = m.text();
      msg["content"] = text.empty() ? json::value(nullptr) : json::value(text);
      json::array calls;
      for (const auto& c : m.tool_calls())
        calls.push_back(json::object{{"id", c.id},
                                     {"type", "function"},
                                     {"function", json::object{{"name", c.name}, {"arguments", c.arguments}}}});
      if (!calls.empty()) msg["tool_calls"] = std::move(calls);
      messages.push_back(std::move(msg));
    }
  }
  json::object body{{"model", model}, {"messages", std::move(messages)}, {"max_tokens", r.max_tokens}};
  if (r.temperature) body["temperature"] = *r.temperature;
  if (!r.stop.empty()) {
    json::array stop;
    for (const auto& s : r.stop) stop.push_back(json::value(s));
    body["stop"] = std::move(stop);
  }
  if (!r.tools.empty()) {
    json::array tools;
    for (const auto& t : r.tools)
      tools.push_back(json::object{
          {"type", "function"},
          {"function", json::object{{"name", t.name}, {"description", t.description}, {"parameters", t.parameters}}}});
    body["tools"] = std::move(tools);
  }
  if (r.response_format)
    body["response_format"] = json::object{
        {"type", "json_schema"}, {"json_schema", json::object{{"name", "answer"}, {"schema", *r.response_format}}}};
  if (stream) {
    body["stream"] = true;
    body["stream_options"] = json::object{{"include_usage", true}};
  }
  return body;
}

result<response> openai_decode(std::string_view text) {
  auto o = parse_object(api::openai, text);
  if (!o) return o.error();
  auto* choices = array_at(*o, "choices");
  if (!choices || choices->empty() || !(*choices)[0].is_object()) return bad_answer(api::openai, "it has no choices");
  const auto& choice = (*choices)[0].as_object();
  auto* msg = object_at(choice, "message");
  if (!msg) return bad_answer(api::openai, "its first choice has no message");
  response r;
  r.model_name = string_at(*o, "model");
  auto content = string_at(*msg, "content");
  if (!content.empty()) r.message.parts.push_back(text_part{std::move(content)});
  if (auto* calls = array_at(*msg, "tool_calls")) {
    for (const auto& cv : *calls) {
      if (!cv.is_object()) return bad_answer(api::openai, "a tool call is not an object");
      auto* fn = object_at(cv.as_object(), "function");
      if (!fn) return bad_answer(api::openai, "a tool call has no function");
      auto name = string_at(*fn, "name");
      if (name.empty()) return bad_answer(api::openai, "a tool call has no function name");
      r.message.parts.push_back(
          tool_call{string_at(cv.as_object(), "id"), std::move(name), normalize_arguments(string_at(*fn, "arguments"))});
    }
  }
  r.stop = openai_stop(string_at(choice, "finish_reason"));
  r.usage = openai_usage(object_at(*o, "usage"));
  return r;
}

class openai_stream final : public stream_decoder {
public:
  error_info on_event(const sse_event& e, const delta_handler& on_delta) override {
    if (e.data == "[DONE]") {
      done_ = true;
      return {};
    }
    auto o = parse_object(api::openai, e.data);
    if (!o) return o.error();
    if (auto m = string_at(*o, "model"); !m.empty()) model_ = m;
    if (auto* u = object_at(*o, "usage")) usage_ = openai_usage(u);
    auto* choices = array_at(*o, "choices");
    if (!choices || choices->empty()) return {};  // the usage chunk
    if (!(*choices)[0].is_object()) return bad_answer(api::openai, "a streamed choice is not an object");
    const auto& choice = (*choices)[0].as_object();
    if (auto* d = object_at(choice, "delta")) {
      if (auto c = string_at(*d, "content"); !c.empty()) {
        text_ += c;
        if (on_delta) on_delta({delta::text, 0, c, {}, {}});
      }
      if (auto* calls = array_at(*d, "tool_calls")) {
        for (const auto& cv : *calls) {
          if (!cv.is_object()) return bad_answer(api::openai, "a streamed tool call is not an object");
          const auto& c = cv.as_object();
          std::size_t index = count_at(&c, "index");
          if (index > 1024) return bad_answer(api::openai, "a streamed tool call has an index over 1024");
          if (calls_.size() <= index) calls_.resize(index + 1);
          auto& call = calls_[index];
          auto* fn = object_at(c, "function");
          if (auto id = string_at(c, "id"); !id.empty()) call.id = id;
          if (fn)
            if (auto n = string_at(*fn, "name"); !n.empty()) call.name += n;
          if (!call.started && !call.name.empty()) {
            call.started = true;
            if (on_delta) on_delta({delta::tool_call_start, index, {}, call.id, call.name});
          }
          if (fn)
            if (auto a = string_at(*fn, "arguments"); !a.empty()) {
              call.arguments += a;
              if (on_delta) on_delta({delta::tool_call_arguments, index, a, {}, {}});
            }
        }
      }
    }
    if (auto f = string_at(choice, "finish_reason"); !f.empty()) finish_ = f;
    return {};
  }

  result<response> finish() override {
    if (finish_.empty())
      return bad_answer(api::openai, done_ ? "the stream ended without a finish reason"
                                           : "the stream ended before the answer finished");
    response r;
    r.model_name = model_;
    if (!text_.empty()) r.message.parts.push_back(text_part{text_});
    for (const auto& c : calls_) {
      if (c.name.empty()) return bad_answer(api::openai, "a streamed tool call has no function name");
      r.message.parts.push_back(tool_call{c.id, c.name, normalize_arguments(c.arguments)});
    }
    r.stop = openai_stop(finish_);
    r.usage = usage_;
    return r;
  }

private:
  struct call {
    std::string id, name, arguments;
    bool started = false;
  };
  std::string text_, finish_, model_;
  std::vector<call> calls_;
  usage usage_;
  bool done_ = false;
};

// --- Anthropic messages ---

stop_reason anthropic_stop(std::string_view s) {
  if (s == "tool_use") return stop_reason::tool_use;
  if (s == "max_tokens") return stop_reason::max_tokens;
  if (s == "stop_sequence") return stop_reason::stop_sequence;
  if (s == "refusal") return stop_reason::refused;
  return stop_reason::end_turn;
}

void anthropic_usage(const json::object* u, usage& out) {
  if (!u) return;
  if (u->contains("input_tokens")) out.input_tokens = count_at(u, "input_tokens");
  if (u->contains("output_tokens")) out.output_tokens = count_at(u, "output_tokens");
  if (u->contains("cache_read_input_tokens")) out.cache_read_tokens = count_at(u, "cache_read_input_tokens");
  if (u->contains("cache_creation_input_tokens")) out.cache_write_tokens = count_at(u, "cache_creation_input_tokens");
}

result<json::object> anthropic_body(const request& r, std::string_view model, bool stream) {
  json::array messages;
  for (const auto& m : r.messages) {
    json::array blocks;
    for (const auto& p : m.parts) {
      if (auto* t = std::get_if<text_part>(&p)) {
        if (!t->text.empty()) blocks.push_back(json::object{{"type", "text"}, {"text", t->text}});
      } else if (auto* c = std::get_if<tool_call>(&p)) {
        auto args = parse_arguments(*c);
        if (!args)
          return fail(agentcore::error::invalid_argument,
                      fmt::format("model: anthropic: tool call '{}' ({}) has arguments that are not a JSON object; "
                                  "the Messages API needs one: {}",
                                  c->id, c->name, args.error().message()));
        blocks.push_back(json::object{{"type", "tool_use"}, {"id", c->id}, {"name", c->name}, {"input", std::move(*args)}});
      } else {
        auto& tr = std::get<tool_result>(p);
        blocks.push_back(json::object{
            {"type", "tool_result"}, {"tool_use_id", tr.call_id}, {"content", tr.content}, {"is_error", tr.is_error}});
      }
    }
    messages.push_back(json::object{{"role", to_string(m.role)}, {"content", std::move(blocks)}});
  }
  json::object body{{"model", model}, {"max_tokens", r.max_tokens}, {"messages", std::move(messages)}};
  std::string system = r.system;
  // The Messages API has no JSON-schema answer mode: the schema goes into the
  // system prompt, and the caller validates the answer as with any model.
  if (r.response_format)
    system += fmt::format("{}Answer with one JSON object, and nothing else, matching this JSON Schema: {}",
                          system.empty() ? "" : "\n\n", json::serialize(*r.response_format));
  if (!system.empty()) body["system"] = system;
  if (r.temperature) body["temperature"] = *r.temperature;
  if (!r.stop.empty()) {
    json::array stop;
    for (const auto& s : r.stop) stop.push_back(json::value(s));
    body["stop_sequences"] = std::move(stop);
  }
  if (!r.tools.empty()) {
    json::array tools;
    for (const auto& t : r.tools) {
      json::object schema = t.parameters;
      if (schema.empty()) schema = {{"type", "object"}};
      tools.push_back(json::object{{"name", t.name}, {"description", t.description}, {"input_schema", std::move(schema)}});
    }
    body["tools"] = std::move(tools);
  }
  if (stream) body["stream"] = true;
  return body;
}

result<response> anthropic_decode(std::string_view text) {
  auto o = parse_object(api::anthropic, text);
  if (!o) return o.error();
  auto* content = array_at(*o, "content");
  if (!content) return bad_answer(api::anthropic, "it has no content");
  response r;
  r.model_name = string_at(*o, "model");
  for (const auto& bv : *content) {
    if (!bv.is_object()) return bad_answer(api::anthropic, "a content block is not an object");
    const auto& b = bv.as_object();
    auto type = string_at(b, "type");
    if (type == "text") {
      if (auto t = string_at(b, "text"); !t.empty()) r.message.parts.push_back(text_part{std::move(t)});
    } else if (type == "tool_use") {
      auto it = b.find("input");
      std::string args = it == b.end() ? "{}" : json::serialize(it->value());
      auto name = string_at(b, "name");
      if (name.empty()) return bad_answer(api::anthropic, "a tool_use block has no name");
      r.message.parts.push_back(tool_call{string_at(b, "id"), std::move(name), std::move(args)});
    }
    // thinking and other blocks are not part of the answer
  }
  r.stop = anthropic_stop(string_at(*o, "stop_reason"));
  anthropic_usage(object_at(*o, "usage"), r.usage);
  return r;
}

class anthropic_stream final : public stream_decoder {
public:
  error_info on_event(const sse_event& e, const delta_handler& on_delta) override {
    if (e.event == "ping") return {};
    auto o = parse_object(api::anthropic, e.data);
    if (!o) return o.error();
    auto type = string_at(*o, "type");
    if (type == "message_start") {
      if (auto* m = object_at(*o, "message")) {
        model_ = string_at(*m, "model");
        anthropic_usage(object_at(*m, "usage"), usage_);
      }
    } else if (type == "content_block_start") {
      std::size_t index = count_at(&*o, "index");
      if (index > 1024) return bad_answer(api::anthropic, "a content block has an index over 1024");
      auto* cb = object_at(*o, "content_block");
      if (!cb) return bad_answer(api::anthropic, "content_block_start has no content_block");
      if (blocks_.size() <= index) blocks_.resize(index + 1);
      auto& b = blocks_[index];
      b.type = string_at(*cb, "type");
      if (b.type == "text") {
        b.text = string_at(*cb, "text");
        if (!b.text.empty() && on_delta) on_delta({delta::text, 0, b.text, {}, {}});
      } else if (b.type == "tool_use") {
        b.id = string_at(*cb, "id");
        b.name = string_at(*cb, "name");
        b.call_index = calls_++;
        if (on_delta) on_delta({delta::tool_call_start, b.call_index, {}, b.id, b.name});
      }
    } else if (type == "content_block_delta") {
      std::size_t index = count_at(&*o, "index");
      auto* d = object_at(*o, "delta");
      if (index >= blocks_.size() || !d) return bad_answer(api::anthropic, "a delta for a block that never started");
      auto& b = blocks_[index];
      auto dtype = string_at(*d, "type");
      if (dtype == "text_delta") {
        auto t = string_at(*d, "text");
        b.text += t;
        if (on_delta && !t.empty()) on_delta({delta::text, 0, t, {}, {}});
      } else if (dtype == "input_json_delta") {
        auto j = string_at(*d, "partial_json");
        b.text += j;
        if (on_delta && !j.empty()) on_delta({delta::tool_call_arguments, b.call_index, j, {}, {}});
      }
    } else if (type == "message_delta") {
      if (auto* d = object_at(*o, "delta"))
        if (auto s = string_at(*d, "stop_reason"); !s.empty()) stop_ = s;
      anthropic_usage(object_at(*o, "usage"), usage_);
    } else if (type == "message_stop") {
      stopped_ = true;
    } else if (type == "error") {
      auto* err = object_at(*o, "error");
      return fail(error::bad_response, fmt::format("model: anthropic: the stream reported an error: {}",
                                                   err ? string_at(*err, "message") : std::string("(no message)")));
    }
    return {};
  }

  result<response> finish() override {
    if (!stopped_ && stop_.empty()) return bad_answer(api::anthropic, "the stream ended before the answer finished");
    response r;
    r.model_name = model_;
    for (const auto& b : blocks_) {
      if (b.type == "text") {
        if (!b.text.empty()) r.message.parts.push_back(text_part{b.text});
      } else if (b.type == "tool_use") {
        if (b.name.empty()) return bad_answer(api::anthropic, "a tool_use block has no name");
        r.message.parts.push_back(tool_call{b.id, b.name, normalize_arguments(b.text)});
      }
    }
    r.stop = anthropic_stop(stop_);
    r.usage = usage_;
    return r;
  }

private:
  struct block {
    std::string type, text, id, name;
    std::size_t call_index = 0;
  };
  std::vector<block> blocks_;
  std::size_t calls_ = 0;
  std::string model_, stop_;
  usage usage_;
  bool stopped_ = false;
};

}  // namespace

result<std::string> encode_request(api a, const request& r, std::string_view model, bool stream) {
  if (a == api::openai) return json::serialize(openai_body(r, model, stream));
  auto body = anthropic_body(r, model, stream);
  if (!body) return body.error();
  return json::serialize(*body);
}

result<response> decode_response(api a, std::string_view body) {
  return a == api::openai ? openai_decode(body) : anthropic_decode(body);
}

std::string error_message(std::string_view body) {
  boost::system::error_code ec;
  auto v = json::parse(body, ec);
  if (!ec && v.is_object())
    if (auto* err = object_at(v.as_object(), "error")) {
      auto m = string_at(*err, "message");
      if (!m.empty()) return m;
    }
  std::string start(body.substr(0, 200));
  for (auto& c : start)
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  return body.size() > 200 ? start + "..." : start;
}

std::unique_ptr<stream_decoder> make_stream_decoder(api a) {
  if (a == api::openai) return std::make_unique<openai_stream>();
  return std::make_unique<anthropic_stream>();
}

}  // namespace agentcore::model::detail
