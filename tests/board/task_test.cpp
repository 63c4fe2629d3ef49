// task: states, legal transitions, and the JSON form (schema 1).
#include <agentcore/board/task.hpp>

#include <doctest/doctest.h>

using namespace agentcore;
using namespace agentcore::board;

TEST_CASE("board.task.json_round_trip") {
  task t{.id = task_id{"fix-parser"},
         .title = "Fix the parser",
         .description = "Handle nested comments",
         .subsystem = "frontend",
         .priority = 7,
         .dependencies = {task_id{"lexer"}, task_id{"ast"}},
         .contract = json::object{{"allowed", json::array{"src/parser/**"}}},
         .state = task_state::claimed,
         .attempts = 2,
         .parent = task_id{"frontend"},
         .claimed_by = worker_id{"w-3"},
         .ready_since_us = 123456,
         .notes = {{"planner", "split from frontend", 42}},
         .result = json::object{{"summary", "done"}}};
  auto text = to_json(t);
  auto back = task_from_json(std::string_view(text));
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(*back == t);
  auto v = parse_json(text).value();
  CHECK(v.as_object().at("schema").as_int64() == 1);
  CHECK(v.as_object().at("state").as_string() == "claimed");
}

TEST_CASE("board.task.minimal_json_gets_defaults") {
  auto t = task_from_json(std::string_view(R"({"schema":1,"id":"a"})"));
  REQUIRE(t.has_value());
  CHECK(t->state == task_state::proposed);
  CHECK(t->priority == 0);
  CHECK(t->dependencies.empty());
  CHECK_FALSE(t->parent);
}

TEST_CASE("board.task.invalid_json_is_a_clear_error") {
  struct bad_case {
    const char* json;
    error code;
    const char* mentions;
  };
  bad_case cases[] = {
      {R"({"schema":1,"id":"a",)", error::invalid_task, "not valid JSON"},
      {R"([1,2])", error::invalid_task, "object"},
      {R"({"id":"a"})", error::invalid_task, "\"schema\""},
      {R"({"schema":2,"id":"a"})", error::unsupported_format, "schema 2"},
      {R"({"schema":1})", error::invalid_task, "\"id\""},
      {R"({"schema":1,"id":"a b"})", error::invalid_task, "' '"},
      {R"({"schema":1,"id":"a","state":"done"})", error::invalid_task, "'done'"},
      {R"({"schema":1,"id":"a","priority":"high"})", error::invalid_task, "\"priority\""},
      {R"({"schema":1,"id":"a","priority":5000})", error::invalid_task, "5000"},
      {R"({"schema":1,"id":"a","dependencies":["a"]})", error::invalid_task, "itself"},
      {R"({"schema":1,"id":"a","dependencies":["b","b"]})", error::invalid_task, "twice"},
      {R"({"schema":1,"id":"a","dependencies":"b"})", error::invalid_task, "\"dependencies\""},
      {R"({"schema":1,"id":"a","notes":[1]})", error::invalid_task, "note"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.json);
    auto r = task_from_json(std::string_view(c.json));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == c.code);
    CHECK_MESSAGE(r.error().message().find(c.mentions) != std::string::npos, r.error().message());
  }
}

TEST_CASE("board.task.state_machine") {
  using enum task_state;
  CHECK(is_legal(proposed, ready));
  CHECK(is_legal(ready, claimed));
  CHECK(is_legal(claimed, submitted));
  CHECK(is_legal(submitted, merged));
  CHECK(is_legal(claimed, ready));  // lease expiry or release
  CHECK(is_legal(abandoned, ready));
  CHECK_FALSE(is_legal(proposed, claimed));
  CHECK_FALSE(is_legal(ready, merged));
  CHECK_FALSE(is_legal(merged, ready));
  CHECK(is_legal(merged, reverted));  // its merge taken back out
  CHECK(is_legal(reverted, ready));
  CHECK_FALSE(is_legal(ready, reverted));
  CHECK_FALSE(is_legal(reverted, merged));
  CHECK_FALSE(is_legal(superseded, ready));
  for (auto to : {proposed, ready, claimed, submitted, merged, rejected, failed, abandoned, superseded}) {
    CHECK_FALSE(is_legal(merged, to));
    CHECK_FALSE(is_legal(superseded, to));
  }
  auto e = illegal(task_id{"x"}, merged, ready);
  CHECK(e == error::illegal_transition);
  CHECK(e.message() == "board: task 'x' cannot go from merged to ready");
  for (auto s : {proposed, ready, claimed, submitted, merged, rejected, failed, abandoned, superseded})
    CHECK(parse_task_state(to_string(s)) == s);
  CHECK_FALSE(parse_task_state("nope"));
}
