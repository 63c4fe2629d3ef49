#include <agentcore/core/json.hpp>
#include <agentcore/store/types.hpp>

#include <doctest/doctest.h>

using namespace agentcore;

TEST_CASE("core.json.parse_errors_name_the_offset") {
  auto ok = parse_json(R"({"a":1})");
  REQUIRE(ok.has_value());
  CHECK(ok->as_object().at("a").as_int64() == 1);
  auto bad = parse_json(R"({"a":})");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == error::invalid_argument);
  CHECK(bad.error().message().find("byte 5") != std::string::npos);
  auto trailing = parse_json(R"({"a":1} x)");
  REQUIRE_FALSE(trailing.has_value());
  auto empty = parse_json("");
  REQUIRE_FALSE(empty.has_value());
}

TEST_CASE("core.json.fields_name_what_was_wrong") {
  auto v = parse_json(R"({"name":"x","count":"three","n":3})").value();
  const auto& o = v.as_object();
  CHECK(json_field<std::string>(o, "name").value() == "x");
  CHECK(json_field<int>(o, "n").value() == 3);
  auto wrong = json_field<int>(o, "count", "config");
  REQUIRE_FALSE(wrong.has_value());
  CHECK(wrong.error().message() == R"(config: field "count" is not of the right type: got a string "three")");
  auto missing = json_field<int>(o, "size", "config");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message() == R"(config: field "size" is missing)");
  CHECK(json_field_or<int>(o, "size", 7).value() == 7);
}

TEST_CASE("core.json.ids_and_store_types_convert") {
  task_id id{"t1"};
  auto v = json::value_from(id);
  CHECK(v.as_string() == "t1");
  CHECK(json::value_to<task_id>(v) == id);

  store::key_value kv{"k", "v", 1, 2, 3, 4};
  auto kj = json::value_from(kv);
  CHECK(kj.as_object().at("mod_revision").as_int64() == 2);
  store::commit_result conflict{false, 9, "k", 3};
  auto cj = json::value_from(conflict);
  CHECK(cj.as_object().at("conflict_key").as_string() == "k");
  store::txn t;
  t.if_absent("a").put("a", "1", 5).erase("b");
  auto tj = json::value_from(t);
  CHECK(tj.as_object().at("ops").as_array().size() == 2);
  CHECK(to_json_string(tj).find(R"("absent":true)") != std::string::npos);
  store::range_result rr{{kv}, 7, true};
  CHECK(to_json_string(json::value_from(rr)) ==
        R"({"kvs":[{"key":"k","value":"v","create_revision":1,"mod_revision":2,"version":3,"lease":4}],"revision":7,"more":true})");
  store::lease_status ls{5, std::chrono::seconds(30), std::chrono::milliseconds(1500)};
  CHECK(to_json_string(json::value_from(ls)) == R"({"id":5,"ttl_s":30,"remaining_ms":1500})");
}

TEST_CASE("core.json.kind_names_read_as_a_message_says_them") {
  CHECK(json_kind_name(json::value(nullptr)) == "null");
  CHECK(json_kind_name(json::value(true)) == "a boolean");
  CHECK(json_kind_name(json::value(-3)) == "an integer");
  CHECK(json_kind_name(json::value(3u)) == "an integer");
  CHECK(json_kind_name(json::value(0.5)) == "a number");
  CHECK(json_kind_name(json::value("x")) == "a string");
  CHECK(json_kind_name(json::array{}) == "an array");
  CHECK(json_kind_name(json::object{}) == "an object");
}
