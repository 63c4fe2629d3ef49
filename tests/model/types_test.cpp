#include <agentcore/model/types.hpp>

#include <doctest/doctest.h>

using namespace agentcore;

namespace {

model::request full_request() {
  model::request r;
  r.system = "You edit C++ code.";
  r.messages.push_back(model::user("Rename foo to bar in src/a.cpp"));
  r.messages.push_back({model::role::assistant,
                        {model::text_part{"Reading it first."},
                         model::tool_call{"call_1", "read_file", R"({"path":"src/a.cpp","lines":[1,40]})"}}});
  r.messages.push_back({model::role::user, {model::tool_result{"call_1", "int foo();\n", false},
                                            model::tool_result{"call_2", "no such file", true}}});
  r.tools.push_back({"read_file", "Reads a file of the worktree",
                     json::object{{"type", "object"}, {"properties", json::object{{"path", json::object{{"type", "string"}}}}}}});
  r.max_tokens = 4096;
  r.temperature = 0.25;
  r.stop = {"\nEND"};
  r.response_format = json::object{{"type", "object"}};
  r.tags = {"worker", "t-17"};
  return r;
}

}  // namespace

TEST_CASE("model.types.request_and_response_round_trip_through_json") {
  auto r = full_request();
  auto back = model::request_from_json(parse_json(model::to_json(r)).value());
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(*back == r);
  CHECK(back->messages[1].tool_calls().at(0).name == "read_file");
  CHECK(back->messages[1].text() == "Reading it first.");

  model::response resp;
  resp.message = {model::role::assistant, {model::text_part{"Done."}, model::tool_call{"c9", "finish", R"({"summary":"ok"})"}}};
  resp.stop = model::stop_reason::tool_use;
  resp.usage = {1200, 80, 1000, 200};
  resp.latency = std::chrono::milliseconds(950);
  resp.model_name = "gpt-test";
  auto rb = model::response_from_json(parse_json(model::to_json(resp)).value());
  REQUIRE_MESSAGE(rb.has_value(), rb.error().message());
  CHECK(*rb == resp);

  // A request without optional fields reads back with the defaults.
  auto minimal = model::request_from_json(parse_json(R"({"messages":[]})").value());
  REQUIRE(minimal.has_value());
  CHECK(minimal->max_tokens == 1024);
  CHECK_FALSE(minimal->temperature.has_value());
}

TEST_CASE("model.types.bad_json_is_an_error_naming_what_is_wrong") {
  auto no_messages = model::request_from_json(parse_json(R"({"system":"x"})").value());
  REQUIRE_FALSE(no_messages.has_value());
  CHECK(no_messages.error().message().find("messages") != std::string::npos);

  auto bad_role = model::message_from_json(parse_json(R"({"role":"system","parts":[]})").value());
  REQUIRE_FALSE(bad_role.has_value());
  CHECK(bad_role.error().message().find("'system'") != std::string::npos);

  auto bad_part = model::message_from_json(parse_json(R"({"role":"user","parts":[{"type":"image"}]})").value());
  REQUIRE_FALSE(bad_part.has_value());
  CHECK(bad_part.error().message().find("'image'") != std::string::npos);

  auto bad_call = model::message_from_json(
      parse_json(R"({"role":"assistant","parts":[{"type":"tool_call","id":"1","name":"x","arguments":7}]})").value());
  REQUIRE_FALSE(bad_call.has_value());
  CHECK(bad_call.error().message().find("arguments") != std::string::npos);

  auto bad_stop = model::response_from_json(
      parse_json(R"({"message":{"role":"assistant","parts":[]},"stop":"sleepy"})").value());
  REQUIRE_FALSE(bad_stop.has_value());
  CHECK(bad_stop.error().message().find("sleepy") != std::string::npos);
}

TEST_CASE("model.types.tool_call_arguments_parse_or_say_why_not") {
  auto ok = model::parse_arguments({"1", "write_file", R"({"path":"a.txt","content":"x"})"});
  REQUIRE(ok.has_value());
  CHECK(ok->at("path").as_string() == "a.txt");

  auto broken = model::parse_arguments({"2", "write_file", R"({"path":"a.txt",)"});
  REQUIRE_FALSE(broken.has_value());
  CHECK(broken.error().message().find("'write_file'") != std::string::npos);
  CHECK(broken.error().message().find("not valid JSON") != std::string::npos);

  auto array = model::parse_arguments({"3", "search", R"(["a"])"});
  REQUIRE_FALSE(array.has_value());
  CHECK(array.error().message().find("must be a JSON object") != std::string::npos);
}
