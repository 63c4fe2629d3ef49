// The built-in HTTP clients against a local Beast server speaking both APIs
// with the real APIs' answer shapes: plain, streamed, tool calls, error
// statuses, faults on the wire, TLS and a CONNECT proxy.
#include <agentcore/model/http_clients.hpp>
#include <agentcore/net/error.hpp>

#include "model/codec.hpp"
#include "support/http_test_server.hpp"
#include "support/io_thread.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <future>
#include <thread>

using namespace agentcore;
using namespace agentcore::test;
namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

constexpr const char* secret = "sk-test-7f3a9c-do-not-log";

struct env_var {
  std::string name;
  env_var(std::string n, const std::string& v) : name(std::move(n)) { ::setenv(name.c_str(), v.c_str(), 1); }
  ~env_var() { ::unsetenv(name.c_str()); }
};

constexpr std::string_view openai_answer = R"({"id":"chatcmpl-1","object":"chat.completion","model":"gpt-test-0613",
  "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_9","type":"function",
  "function":{"name":"write_file","arguments":"{\"path\":\"a.txt\",\"content\":\"hi\"}"}}]},"finish_reason":"tool_calls"}],
  "usage":{"prompt_tokens":50,"completion_tokens":12,"total_tokens":62}})";

std::vector<std::string> openai_stream_chunks() {
  return {
      "data: {\"model\":\"gpt-test-0613\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},"
      "\"finish_reason\":null}]}\n\n",
      "data: {\"model\":\"gpt-test-0613\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}"
      "\n\ndata: {\"model\":\"gpt-test-0613\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
      "data: {\"model\":\"gpt-test-0613\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
      "data: [DONE]\n\n"};
}

constexpr std::string_view anthropic_answer = R"({"id":"msg_1","type":"message","role":"assistant","model":"claude-test",
  "content":[{"type":"text","text":"Done."}],"stop_reason":"end_turn","stop_sequence":null,
  "usage":{"input_tokens":30,"output_tokens":3,"cache_read_input_tokens":0,"cache_creation_input_tokens":0}})";

std::vector<std::string> anthropic_stream_chunks() {
  return {"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-test\",\"usage\":{"
          "\"input_tokens\":30,\"output_tokens\":1}}}\n\n",
          "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
          "\"text\",\"text\":\"\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
          "\"delta\":{\"type\":\"text_delta\",\"text\":\"Do\"}}\n\n",
          "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
          "\"text_delta\",\"text\":\"ne.\"}}\n\nevent: content_block_stop\ndata: {\"type\":\"content_block_stop\","
          "\"index\":0}\n\n",
          "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{"
          "\"output_tokens\":3}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"};
}

model::request question() {
  model::request r;
  r.system = "test";
  r.messages.push_back(model::user("hello"));
  return r;
}

model::http_client_options options_for(const http_test_server& s, std::string base_path = "/v1") {
  return {.base_url = s.base_url() + base_path,
          .model = "test-model",
          .api_key_env = "AGENTCORE_TEST_KEY",
          .connect_timeout = milliseconds(2000),
          .first_byte_timeout = milliseconds(3000),
          .total_timeout = milliseconds(10000),
          .proxy_from_env = false};
}

// Streams a request, returning the deltas' text and the outcome.
std::pair<std::string, model::result_type> stream(model::client& c, model::request r) {
  std::promise<model::result_type> done;
  auto text = std::make_shared<std::string>();
  c.async_stream(std::move(r), [text](const model::delta& d) {
    if (d.kind == model::delta::text) *text += d.content;
  }, [&done](model::result_type res) { done.set_value(std::move(res)); });
  auto res = done.get_future().get();
  return {*text, std::move(res)};
}

}  // namespace

TEST_CASE("model.http.openai_plain_and_streamed") {
  env_var key("AGENTCORE_TEST_KEY", secret);
  http_test_server server;
  io_thread io;
  auto client = model::make_openai_client(io.io.get_executor(), options_for(server)).value();
  CHECK(client->name() == "openai:test-model");

  server.push({200, {{"Content-Type", "application/json"}}, std::string(openai_answer)});
  auto r = client->chat(question());
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->stop == model::stop_reason::tool_use);
  REQUIRE(r->message.tool_calls().size() == 1);
  CHECK(r->message.tool_calls()[0].name == "write_file");
  CHECK(r->usage.input_tokens == 50);
  CHECK(r->model_name == "gpt-test-0613");
  auto req = server.requests().back();
  CHECK(req.method == "POST");
  CHECK(req.target == "/v1/chat/completions");
  CHECK(req.header("authorization") == std::string("Bearer ") + secret);
  CHECK(req.header("content-type") == "application/json");
  CHECK(json::parse(req.body).at("model").as_string() == "test-model");

  scripted_response sse{200, {{"Content-Type", "text/event-stream"}}, {}, openai_stream_chunks()};
  sse.pause = milliseconds(5);
  server.push(sse);
  auto [text, streamed] = stream(*client, question());
  REQUIRE_MESSAGE(streamed.has_value(), streamed.error().message());
  CHECK(text == "Hello");
  CHECK(streamed->message.text() == "Hello");
  CHECK(streamed->usage.output_tokens == 2);
  CHECK(json::parse(server.requests().back().body).at("stream").as_bool());

  // Deltas arrive as the server sends them, not when the answer is complete.
  scripted_response slow{200, {{"Content-Type", "text/event-stream"}}, {}, openai_stream_chunks()};
  slow.pause = milliseconds(400);
  server.push(slow);
  std::promise<model::result_type> done;
  auto first_delta = std::make_shared<std::optional<std::chrono::steady_clock::time_point>>();
  client->async_stream(question(), [first_delta](const model::delta&) {
    if (!*first_delta) *first_delta = std::chrono::steady_clock::now();
  }, [&done](model::result_type res) { done.set_value(std::move(res)); });
  auto slow_result = done.get_future().get();
  auto finished = std::chrono::steady_clock::now();
  REQUIRE(slow_result.has_value());
  REQUIRE(first_delta->has_value());
  CHECK(finished - **first_delta >= milliseconds(600));  // three 400 ms pauses came after the first delta
  // Every exchange went over one kept-alive connection.
  CHECK(server.connections() == 1);
}

TEST_CASE("model.http.anthropic_plain_and_streamed") {
  env_var key("AGENTCORE_TEST_KEY", secret);
  http_test_server server;
  io_thread io;
  auto client = model::make_anthropic_client(io.io.get_executor(), options_for(server, "")).value();
  server.push({200, {{"Content-Type", "application/json"}}, std::string(anthropic_answer)});
  auto r = client->chat(question());
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->message.text() == "Done.");
  auto req = server.requests().back();
  CHECK(req.target == "/v1/messages");
  CHECK(req.header("x-api-key") == secret);
  CHECK(req.header("anthropic-version") == "2023-06-01");
  CHECK(req.header("authorization").empty());

  server.push({200, {{"Content-Type", "text/event-stream"}}, {}, anthropic_stream_chunks()});
  auto [text, streamed] = stream(*client, question());
  REQUIRE_MESSAGE(streamed.has_value(), streamed.error().message());
  CHECK(text == "Done.");
  streamed->latency = r->latency;
  CHECK(*streamed == *r);  // the same answer, streamed or not
}

TEST_CASE("model.http.error_statuses_and_faults_name_endpoint_status_and_cause") {
  env_var key("AGENTCORE_TEST_KEY", secret);
  http_test_server server;
  io_thread io;
  auto opts = options_for(server);
  opts.first_byte_timeout = milliseconds(300);
  opts.max_response_bytes = 4096;
  auto client = model::make_openai_client(io.io.get_executor(), opts).value();
  std::string endpoint = "POST " + server.base_url() + "/v1/chat/completions";
  std::vector<std::string> messages;
  auto expect_error = [&](scripted_response s, error_code code, std::string_view needle) {
    server.push(std::move(s));
    auto r = client->chat(question());
    REQUIRE_FALSE(r.has_value());
    auto msg = r.error().message();
    INFO(msg);
    CHECK(r.error().code() == code);
    CHECK(msg.find(needle) != std::string::npos);
    messages.push_back(msg);
    return msg;
  };
  using fault = scripted_response::fault_kind;
  auto m429 = expect_error({429, {{"Retry-After", "7"}}, R"({"error":{"message":"Rate limit reached for requests"}})"},
                           model::error::rate_limited, "status 429");
  CHECK(m429.find("Rate limit reached") != std::string::npos);
  CHECK(m429.find("retry after 7000 ms") != std::string::npos);
  CHECK(m429.find(endpoint) != std::string::npos);
  expect_error({500, {}, "<html><body>Internal Server Error</body></html>"}, model::error::unavailable,
               "status 500: <html>");
  expect_error({401, {}, R"({"error":{"message":"Incorrect API key provided"}})"}, model::error::http_status,
               "status 401: Incorrect API key provided");
  // After an error status the client goes on serving.
  server.push({200, {}, std::string(openai_answer)});
  CHECK(client->chat(question()).has_value());

  expect_error({200, {}, "{\"choices\": [", {}}, model::error::bad_response, "not JSON");
  expect_error({200, {}, std::string(openai_answer), {}, {}, {}, fault::truncated_body}, net::error::connection_lost,
               "closed while reading the body");
  expect_error({200, {}, std::string(openai_answer), {}, {}, {}, fault::close_before_answer},
               net::error::connection_lost, endpoint);
  expect_error({200, {}, {}, {}, {}, {}, fault::not_http}, net::error::protocol, "not valid HTTP");
  expect_error({200, {}, std::string(openai_answer), {}, milliseconds(1500)}, net::error::timed_out,
               "waiting for the answer");
  expect_error({200, {}, std::string(8000, ' ') + std::string(openai_answer)}, net::error::too_large, "4096 byte");

  // A stream dropped mid-way.
  server.push({200, {}, {}, openai_stream_chunks(), {}, milliseconds(5), fault::close_mid_body});
  auto [text, cut] = stream(*client, question());
  REQUIRE_FALSE(cut.has_value());
  CHECK(cut.error().code() == net::error::connection_lost);
  CHECK(text == "Hel");  // what arrived was delivered
  messages.push_back(cut.error().message());

  // The key never appears in an error.
  for (const auto& m : messages) CHECK(m.find(secret) == std::string::npos);
  for (const auto& m : messages) CHECK(m.find("model: openai: ") == 0);
}

TEST_CASE("model.http.unreachable_endpoint_missing_key_and_cancel") {
  // Nothing listens on a port just released.
  std::uint16_t dead_port;
  { dead_port = http_test_server().port(); }
  io_thread io;
  model::http_client_options o{.base_url = "http://127.0.0.1:" + std::to_string(dead_port) + "/v1", .model = "m",
                               .proxy_from_env = false};
  auto client = model::make_openai_client(io.io.get_executor(), o).value();
  auto r = client->chat(question());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code() == net::error::connect_failed);
  CHECK(r.error().message().find("127.0.0.1:" + std::to_string(dead_port)) != std::string::npos);

  o.api_key_env = "AGENTCORE_TEST_UNSET_KEY";
  auto no_key = model::make_openai_client(io.io.get_executor(), o);
  REQUIRE_FALSE(no_key.has_value());
  CHECK(no_key.error().code() == model::error::no_api_key);
  CHECK(no_key.error().message().find("AGENTCORE_TEST_UNSET_KEY") != std::string::npos);

  auto bad_url = model::make_openai_client(io.io.get_executor(), {.base_url = "ftp://x", .model = "m"});
  REQUIRE_FALSE(bad_url.has_value());
  CHECK(bad_url.error().code() == net::error::bad_url);

  // Cancellation through the completion token's slot.
  env_var key("AGENTCORE_TEST_KEY", secret);
  http_test_server server;
  auto slow = model::make_openai_client(io.io.get_executor(), options_for(server)).value();
  server.push({200, {}, std::string(openai_answer), {}, milliseconds(2000)});
  asio::cancellation_signal cancel;
  std::promise<model::result_type> done;
  auto started = std::chrono::steady_clock::now();
  slow->async_chat(question(), asio::bind_cancellation_slot(cancel.slot(), [&](model::result_type res) {
                     done.set_value(std::move(res));
                   }));
  std::this_thread::sleep_for(milliseconds(100));
  asio::post(io.io, [&] { cancel.emit(asio::cancellation_type::terminal); });
  auto res = done.get_future().get();
  REQUIRE_FALSE(res.has_value());
  CHECK(res.error().code() == agentcore::error::canceled);
  CHECK(std::chrono::steady_clock::now() - started < milliseconds(1500));
}

TEST_CASE("model.http.tls_verification_and_connect_proxy") {
  env_var key("AGENTCORE_TEST_KEY", secret);
  http_test_server server(http_test_server::mode::tls);
  io_thread io;
  auto opts = options_for(server);
  // Without trusting the test certificate: refused, saying why.
  auto untrusting = model::make_openai_client(io.io.get_executor(), opts).value();
  auto refused = untrusting->chat(question());
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code() == net::error::tls_failed);
  CHECK(refused.error().message().find("certificate verify failed") != std::string::npos);

  opts.ca_file = server.ca_file();
  auto trusting = model::make_openai_client(io.io.get_executor(), opts).value();
  server.push({200, {}, std::string(openai_answer)});
  auto ok = trusting->chat(question());
  REQUIRE_MESSAGE(ok.has_value(), ok.error().message());
  CHECK(server.requests().back().header("authorization") == std::string("Bearer ") + secret);

  // Through HTTPS_PROXY: a CONNECT tunnel, TLS end to end.
  http_test_server proxy(http_test_server::mode::connect_proxy);
  env_var https_proxy("HTTPS_PROXY", "http://127.0.0.1:" + std::to_string(proxy.port()));
  opts.proxy_from_env = true;
  auto proxied = model::make_openai_client(io.io.get_executor(), opts).value();
  server.push({200, {}, std::string(openai_answer)});
  auto via = proxied->chat(question());
  REQUIRE_MESSAGE(via.has_value(), via.error().message());
  REQUIRE(proxy.requests().size() == 1);
  CHECK(proxy.requests()[0].method == "CONNECT");
  CHECK(proxy.requests()[0].target == "127.0.0.1:" + std::to_string(server.port()));
  // The proxy saw only the tunnel request: no key in it.
  auto tunnel = proxy.requests()[0];
  for (const auto& [k, v] : tunnel.headers) CHECK(v.find(secret) == std::string::npos);
}
