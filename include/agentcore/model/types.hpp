// agentcore/model/types.hpp: what a model is asked and what it answers, the
// same for every backend: a system prompt, messages made of text, tool calls
// and tool results, tool definitions with JSON Schema; an answer with its
// tool calls, stop reason, token usage, latency and the model that answered.
//
//   model::request r{.system = "You edit C++.", .max_tokens = 2048};
//   r.messages.push_back(model::user("Rename foo to bar in src/a.cpp"));
//   r.tools.push_back({.name = "read_file", .description = "...", .parameters = schema});
//   auto text = model::to_json(r);              // the form transcripts store
//   auto back = model::request_from_json(text);  // result<request>
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/core/json.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace agentcore::model {

/// Errors of the model module, in their own boost::system category
/// ("agentcore.model").
enum class error {
  success = 0,
  bad_response = 1,  ///< a backend answered something that is not a valid answer
  not_covered,       ///< a replay transcript has no answer for the request
  http_status,       ///< an HTTP API answered with an error status not worth retrying (400, 401, 404, ...)
  no_api_key,        ///< the environment variable meant to hold the API key is not set
  rate_limited,      ///< the API answered 429; error_info::retry_after says how long to wait, if it said
  unavailable,       ///< the API answered 408, 409 or 5xx: worth retrying
  budget_exhausted,  ///< a token or money budget has nothing left (the message names it)
  agent_failed,      ///< a CLI agent exited with an error or reported one (the message has its words)
  time_box,          ///< a CLI agent ran out of its time box and was killed
};

const boost::system::error_category& model_category() noexcept;
inline error_code make_error_code(error e) noexcept { return {static_cast<int>(e), model_category()}; }
inline error_info fail(error e, std::string message) { return {make_error_code(e), std::move(message)}; }

}  // namespace agentcore::model

template <>
struct boost::system::is_error_code_enum<agentcore::model::error> : std::true_type {};

namespace agentcore::model {

/// Plain text from the user or the model.
struct text_part {
  std::string text;
  friend bool operator==(const text_part&, const text_part&) = default;
};

/// The model asks for a tool. `arguments` is the JSON text exactly as the
/// model produced it: it may not parse, and the agent loop must tell the model
/// so rather than fail (see parse_arguments).
struct tool_call {
  std::string id;
  std::string name;
  std::string arguments = "{}";
  friend bool operator==(const tool_call&, const tool_call&) = default;
};

/// A tool's answer to the call with id `call_id`.
struct tool_result {
  std::string call_id;
  std::string content;
  bool is_error = false;
  friend bool operator==(const tool_result&, const tool_result&) = default;
};

using part = std::variant<text_part, tool_call, tool_result>;

enum class role { user, assistant };

struct message {
  model::role role = model::role::user;
  std::vector<part> parts;

  /// Every text part, concatenated.
  std::string text() const;
  /// The tool calls, in order.
  std::vector<tool_call> tool_calls() const;
  friend bool operator==(const message&, const message&) = default;
};

inline message user(std::string text) { return {role::user, {text_part{std::move(text)}}}; }
inline message assistant(std::string text) { return {role::assistant, {text_part{std::move(text)}}}; }

/// A tool the model may call; `parameters` is a JSON Schema object.
struct tool_definition {
  std::string name;
  std::string description;
  json::object parameters;
  friend bool operator==(const tool_definition&, const tool_definition&) = default;
};

/// Who is asking: used to match replayed answers by role and turn, and (with
/// the budget middleware) to charge the right budget. Not sent to a model.
struct request_tags {
  std::string role;  ///< "planner", "worker", ...
  std::string task;  ///< the task id, if any
  /// Where a whole-task engine (a CLI agent) works: the task's worktree.
  std::string workdir;
  friend bool operator==(const request_tags&, const request_tags&) = default;
};

struct request {
  std::string system;
  std::vector<message> messages;
  std::vector<tool_definition> tools;
  std::uint32_t max_tokens = 1024;
  std::optional<double> temperature;
  std::vector<std::string> stop;
  /// Ask for a JSON answer matching this JSON Schema (where the API supports it).
  std::optional<json::object> response_format;
  request_tags tags;
  friend bool operator==(const request&, const request&) = default;
};

enum class stop_reason {
  end_turn,       ///< the model finished its answer
  tool_use,       ///< the model wants its tool calls answered
  max_tokens,     ///< the answer hit max_tokens
  stop_sequence,  ///< the answer hit one of `stop`
  refused,        ///< the API's content filter or a refusal
};

struct usage {
  std::uint64_t input_tokens = 0;
  std::uint64_t output_tokens = 0;
  std::uint64_t cache_read_tokens = 0;
  std::uint64_t cache_write_tokens = 0;
  usage& operator+=(const usage& o) noexcept;
  friend bool operator==(const usage&, const usage&) = default;
};

struct response {
  model::message message{role::assistant, {}};
  model::stop_reason stop = stop_reason::end_turn;
  model::usage usage;
  std::chrono::milliseconds latency{0};
  std::string model_name;  ///< the model that answered, as the backend named it
  friend bool operator==(const response&, const response&) = default;
};

/// A piece of a streamed answer. Text arrives as `text` deltas; a tool call
/// as one `tool_call_start` (id, name) and `tool_call_arguments` deltas of its
/// JSON text. `index` is the call's position among the answer's tool calls.
struct delta {
  enum kind { text, tool_call_start, tool_call_arguments } kind = text;
  std::size_t index = 0;
  std::string content;  ///< text, or a fragment of the arguments' JSON
  std::string id;       ///< tool_call_start only
  std::string name;     ///< tool_call_start only
};

std::string_view to_string(role r) noexcept;
std::string_view to_string(stop_reason s) noexcept;

/// Parses a tool call's arguments: an object, or an error saying what is
/// wrong with the text in words the model can act on.
result<json::object> parse_arguments(const tool_call& call);

/// The JSON forms (schema 1) used by transcripts and events:
/// request: {"system","messages":[{"role","parts":[{"type":"text","text"} |
/// {"type":"tool_call","id","name","arguments"} | {"type":"tool_result",
/// "call_id","content","is_error"}]}],"tools":[{"name","description",
/// "parameters"}],"max_tokens","temperature"?,"stop","response_format"?,
/// "tags":{"role","task"}}; response: {"message","stop","usage":{"input",
/// "output","cache_read","cache_write"},"latency_ms","model"}.
json::value to_json_value(const request& r);
json::value to_json_value(const response& r);
std::string to_json(const request& r);
std::string to_json(const response& r);
result<request> request_from_json(const json::value& v);
result<response> response_from_json(const json::value& v);
result<message> message_from_json(const json::value& v);
json::value to_json_value(const message& m);

}  // namespace agentcore::model
