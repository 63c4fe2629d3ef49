// The two chat APIs' wire formats, with answers shaped as the real APIs send
// them (field for field from their documentation and recorded responses).
#include "model/codec.hpp"

#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

using namespace agentcore;
using namespace agentcore::model;
using namespace agentcore::model::detail;

namespace {

request tool_conversation() {
  request r;
  r.system = "You edit code.";
  r.messages.push_back(user("Read a.txt"));
  r.messages.push_back({role::assistant, {text_part{"Reading."}, tool_call{"call_1", "read_file", R"({"path":"a.txt"})"}}});
  r.messages.push_back({role::user, {tool_result{"call_1", "hello", false}, text_part{"Now summarise."}}});
  r.tools.push_back({"read_file", "Reads a file", json::object{{"type", "object"}}});
  r.max_tokens = 300;
  r.temperature = 0.5;
  r.stop = {"END"};
  return r;
}

// Feeds a whole SSE body through the parser and a decoder, collecting deltas.
struct streamed {
  result<response> final = fail(agentcore::error::invalid_argument, "not run");
  std::string text;
  std::vector<delta> deltas;
};
streamed run_stream(api a, std::string_view body, std::size_t chunk) {
  streamed out;
  auto dec = make_stream_decoder(a);
  delta_handler on = [&](const delta& d) {
    out.deltas.push_back(d);
    if (d.kind == delta::text) out.text += d.content;
  };
  sse_parser p([&](const sse_event& e) { return dec->on_event(e, on); });
  for (std::size_t i = 0; i < body.size(); i += chunk)
    if (auto e = p.feed(body.substr(i, chunk))) {
      out.final = e;
      return out;
    }
  if (auto e = p.finish()) {
    out.final = e;
    return out;
  }
  out.final = dec->finish();
  return out;
}

constexpr std::string_view openai_tool_answer = R"({
  "id": "chatcmpl-9", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-2024-08-06",
  "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me look.",
     "tool_calls": [{"id": "call_abc", "type": "function",
                     "function": {"name": "read_file", "arguments": "{\"path\": \"src/a.cpp\"}"}}]},
     "logprobs": null, "finish_reason": "tool_calls"}],
  "usage": {"prompt_tokens": 120, "completion_tokens": 18, "total_tokens": 138,
            "prompt_tokens_details": {"cached_tokens": 100}}})";

constexpr std::string_view openai_tool_stream =
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let \"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"me look.\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"id\":\"call_abc\",\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"arguments\":\"\"}}]},"
    "\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"{\\\"path\\\": \"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
    "\"function\":{\"arguments\":\"\\\"src/a.cpp\\\"}\"}}]},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
    "\"tool_calls\"}]}\n\n"
    "data: {\"id\":\"c\",\"model\":\"gpt-4o-2024-08-06\",\"choices\":[],\"usage\":{\"prompt_tokens\":120,"
    "\"completion_tokens\":18,\"total_tokens\":138,\"prompt_tokens_details\":{\"cached_tokens\":100}}}\n\n"
    "data: [DONE]\n\n";

constexpr std::string_view anthropic_tool_answer = R"({
  "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
  "content": [{"type": "text", "text": "Let me look."},
              {"type": "tool_use", "id": "toolu_01", "name": "read_file", "input": {"path": "src/a.cpp"}}],
  "stop_reason": "tool_use", "stop_sequence": null,
  "usage": {"input_tokens": 20, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 18}})";

constexpr std::string_view anthropic_tool_stream =
    "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\","
    "\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{"
    "\"input_tokens\":20,\"cache_creation_input_tokens\":5,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\r\n\r\n"
    "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
    "\"text\",\"text\":\"\"}}\r\n\r\n"
    "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n"
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"text_delta\",\"text\":\"Let me\"}}\r\n\r\n"
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
    "\"text_delta\",\"text\":\" look.\"}}\r\n\r\n"
    "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n"
    "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
    "\"tool_use\",\"id\":\"toolu_01\",\"name\":\"read_file\",\"input\":{}}}\r\n\r\n"
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"\"}}\r\n\r\n"
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"{\\\"path\\\": \\\"src/\"}}\r\n\r\n"
    "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
    "\"input_json_delta\",\"partial_json\":\"a.cpp\\\"}\"}}\r\n\r\n"
    "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":1}\r\n\r\n"
    "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
    "\"stop_sequence\":null},\"usage\":{\"output_tokens\":18}}\r\n\r\n"
    "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

}  // namespace

TEST_CASE("model.codec.openai_request_body") {
  auto body = encode_request(api::openai, tool_conversation(), "gpt-test", true);
  REQUIRE(body.has_value());
  auto o = json::parse(*body).as_object();
  CHECK(o.at("model").as_string() == "gpt-test");
  CHECK(o.at("max_tokens").to_number<int>() == 300);
  CHECK(o.at("stream").as_bool());
  CHECK(o.at("stream_options").at("include_usage").as_bool());
  CHECK(o.at("stop").as_array().at(0).as_string() == "END");
  auto& msgs = o.at("messages").as_array();
  REQUIRE(msgs.size() == 5);
  CHECK(msgs[0].at("role").as_string() == "system");
  CHECK(msgs[2].at("tool_calls").at(0).at("function").at("name").as_string() == "read_file");
  CHECK(msgs[2].at("tool_calls").at(0).at("function").at("arguments").as_string() == R"({"path":"a.txt"})");
  CHECK(msgs[3].at("role").as_string() == "tool");  // the tool's answer comes before the user's text
  CHECK(msgs[3].at("tool_call_id").as_string() == "call_1");
  CHECK(msgs[4].at("content").as_string() == "Now summarise.");
  CHECK(o.at("tools").at(0).at("function").at("name").as_string() == "read_file");
}

TEST_CASE("model.codec.openai_answers_whole_and_streamed_agree") {
  auto whole = decode_response(api::openai, openai_tool_answer);
  REQUIRE_MESSAGE(whole.has_value(), whole.error().message());
  CHECK(whole->message.text() == "Let me look.");
  REQUIRE(whole->message.tool_calls().size() == 1);
  CHECK(whole->message.tool_calls()[0].id == "call_abc");
  CHECK(whole->message.tool_calls()[0].arguments == R"({"path":"src/a.cpp"})");
  CHECK(whole->stop == stop_reason::tool_use);
  CHECK(whole->usage == usage{20, 18, 100, 0});  // cached prompt tokens are not input tokens
  CHECK(whole->model_name == "gpt-4o-2024-08-06");
  // Every way of cutting the stream into network reads gives the same answer.
  for (std::size_t chunk : {1u, 2u, 7u, 64u, 100000u}) {
    auto s = run_stream(api::openai, openai_tool_stream, chunk);
    REQUIRE_MESSAGE(s.final.has_value(), s.final.error().message());
    CHECK(*s.final == *whole);
    CHECK(s.text == "Let me look.");
  }
  auto s = run_stream(api::openai, openai_tool_stream, 3);
  std::string args;
  bool started = false;
  for (const auto& d : s.deltas) {
    if (d.kind == delta::tool_call_start) {
      started = true;
      CHECK(d.name == "read_file");
      CHECK(d.id == "call_abc");
    }
    if (d.kind == delta::tool_call_arguments) args += d.content;
  }
  CHECK(started);
  CHECK(args == R"({"path": "src/a.cpp"})");
}

TEST_CASE("model.codec.anthropic_request_body") {
  auto r = tool_conversation();
  r.response_format = json::object{{"type", "object"}};
  auto body = encode_request(api::anthropic, r, "claude-test", false);
  REQUIRE(body.has_value());
  auto o = json::parse(*body).as_object();
  CHECK(o.at("model").as_string() == "claude-test");
  CHECK(o.at("system").as_string().find("You edit code.") == 0);
  CHECK(o.at("system").as_string().find("JSON Schema") != json::string::npos);
  CHECK(o.at("stop_sequences").at(0).as_string() == "END");
  CHECK_FALSE(o.contains("stream"));
  auto& msgs = o.at("messages").as_array();
  REQUIRE(msgs.size() == 3);
  CHECK(msgs[1].at("content").at(1).at("type").as_string() == "tool_use");
  CHECK(msgs[1].at("content").at(1).at("input").at("path").as_string() == "a.txt");
  CHECK(msgs[2].at("content").at(0).at("type").as_string() == "tool_result");
  CHECK(msgs[2].at("content").at(0).at("tool_use_id").as_string() == "call_1");
  CHECK(o.at("tools").at(0).at("input_schema").at("type").as_string() == "object");

  // A tool call whose arguments are not an object cannot be sent: a clear error.
  r.messages[1].parts[1] = tool_call{"call_1", "read_file", "{oops"};
  auto bad = encode_request(api::anthropic, r, "claude-test", false);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find("call_1") != std::string::npos);
}

TEST_CASE("model.codec.anthropic_answers_whole_and_streamed_agree") {
  auto whole = decode_response(api::anthropic, anthropic_tool_answer);
  REQUIRE_MESSAGE(whole.has_value(), whole.error().message());
  CHECK(whole->message.text() == "Let me look.");
  REQUIRE(whole->message.tool_calls().size() == 1);
  CHECK(whole->message.tool_calls()[0].arguments == R"({"path":"src/a.cpp"})");
  CHECK(whole->stop == stop_reason::tool_use);
  CHECK(whole->usage == usage{20, 18, 100, 5});
  for (std::size_t chunk : {1u, 5u, 33u, 100000u}) {
    auto s = run_stream(api::anthropic, anthropic_tool_stream, chunk);
    REQUIRE_MESSAGE(s.final.has_value(), s.final.error().message());
    CHECK(*s.final == *whole);
    CHECK(s.text == "Let me look.");
  }
}

TEST_CASE("model.codec.broken_answers_are_errors_that_say_why") {
  auto not_json = decode_response(api::openai, "<html><body>502 Bad Gateway</body></html>");
  REQUIRE_FALSE(not_json.has_value());
  CHECK(not_json.error().code() == model::error::bad_response);
  CHECK(not_json.error().message().find("not JSON") != std::string::npos);

  auto api_error = decode_response(api::anthropic, R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})");
  REQUIRE_FALSE(api_error.has_value());
  CHECK(api_error.error().message().find("Overloaded") != std::string::npos);

  auto no_choices = decode_response(api::openai, R"({"choices":[]})");
  REQUIRE_FALSE(no_choices.has_value());
  CHECK(no_choices.error().message().find("no choices") != std::string::npos);

  // A stream cut off before its end is not an answer.
  auto cut = std::string(openai_tool_stream.substr(0, openai_tool_stream.find("\"finish_reason\":\"tool_calls\"")));
  auto s = run_stream(api::openai, cut, 50);
  REQUIRE_FALSE(s.final.has_value());
  CHECK(s.final.error().message().find("ended before the answer finished") != std::string::npos);

  auto a_cut = std::string(anthropic_tool_stream.substr(0, anthropic_tool_stream.find("event: message_delta")));
  auto sa = run_stream(api::anthropic, a_cut, 50);
  REQUIRE_FALSE(sa.final.has_value());

  auto overloaded = run_stream(
      api::anthropic, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
      10);
  REQUIRE_FALSE(overloaded.final.has_value());
  CHECK(overloaded.final.error().message().find("Overloaded") != std::string::npos);

  CHECK(error_message(R"({"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}})") ==
        "Incorrect API key provided");
  CHECK(error_message("<html>\n<h1>Bad gateway</h1>") == "<html> <h1>Bad gateway</h1>");
}

TEST_CASE("model.sse.parser_follows_the_event_stream_format") {
  std::vector<sse_event> got;
  sse_parser p([&](const sse_event& e) {
    got.push_back(e);
    return error_info{};
  });
  std::string_view text =
      ": keep-alive comment\n"
      "event: greeting\r\n"
      "id: 7\r\n"
      "data: line one\r\n"
      "data:line two\r\n"
      "\r\n"
      "data: no event name\r"
      "\r"
      "retry: 100\n"
      "\n"
      "data: cut off: no blank line";
  for (char c : text) REQUIRE_FALSE(p.feed(std::string_view(&c, 1)));
  REQUIRE_FALSE(p.finish());
  REQUIRE(got.size() == 2);  // the last event never ended: discarded
  CHECK(got[0].event == "greeting");
  CHECK(got[0].data == "line one\nline two");
  CHECK(got[0].id == "7");
  CHECK(got[1].event == "message");
  CHECK(got[1].data == "no event name");
  CHECK(got[1].id == "7");  // the last id persists

  sse_parser small([](const sse_event&) { return error_info{}; }, 1000);
  auto e = small.feed("data: " + std::string(2000, 'x'));
  REQUIRE(e);
  CHECK(e.message().find("1000 byte limit") != std::string::npos);
  CHECK(small.feed("\n\n"));  // stays failed
}
