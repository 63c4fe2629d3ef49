#include <agentcore/core/error.hpp>
#include <agentcore/core/id.hpp>
#include <agentcore/core/clock.hpp>

#include <doctest/doctest.h>

#include <unordered_set>

using namespace agentcore;

TEST_CASE("core.error.category_and_messages") {
  error_code ec = error::corrupt;
  CHECK(ec.category().name() == std::string("agentcore"));
  CHECK(ec.message() == "stored data is corrupt");
  CHECK(ec == error::corrupt);
  CHECK(ec != error::io_error);
  CHECK_FALSE(error_code(error::success));
  // Every enumerator has its own text.
  std::unordered_set<std::string> texts;
  for (int e = 1; e <= static_cast<int>(error::claim_lost); ++e) texts.insert(error_code(static_cast<error>(e)).message());
  CHECK(texts.size() == static_cast<std::size_t>(error::claim_lost));
}

TEST_CASE("core.error.result_carries_the_detailed_message") {
  auto parse = [](int x) -> result<int> {
    if (x < 0) return fail(error::invalid_argument, "port -1 is negative; use 1 to 65535");
    return x;
  };
  auto ok = parse(80);
  REQUIRE(ok.has_value());
  CHECK(*ok == 80);
  auto bad = parse(-1);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == error::invalid_argument);
  CHECK(bad.error().message() == "port -1 is negative; use 1 to 65535");
  // value() throws an agentcore::exception whose what() is that message.
  try {
    (void)bad.value();
    FAIL("value() did not throw");
  } catch (const agentcore::exception& e) {
    CHECK(std::string(e.what()).find("port -1 is negative") != std::string::npos);
    CHECK(e.code() == error::invalid_argument);
  }
  // Without a message, the category's text.
  CHECK(error_info(error::closed).message() == "object is closed");
}

TEST_CASE("core.id.strong_ids_and_validation") {
  task_id a{"a"}, b{"b"};
  CHECK(a < b);
  CHECK(a == task_id{"a"});
  CHECK(std::hash<task_id>{}(a) == std::hash<task_id>{}(task_id{"a"}));
  static_assert(!std::is_convertible_v<task_id, worker_id>);
  static_assert(!std::is_convertible_v<std::string, task_id>);
  CHECK(validate_id("fix-parser_2.v1").empty());
  CHECK(validate_id("").find("empty") != std::string::npos);
  CHECK(validate_id("a/b").find("'/'") != std::string::npos);
  CHECK(validate_id("a\nb").find("\\x0a") != std::string::npos);
  CHECK(validate_id(std::string(201, 'x')).find("201") != std::string::npos);
}

TEST_CASE("core.clock.virtual_clock_moves_only_when_told") {
  virtual_clock c;
  auto t0 = c.now();
  CHECK(c.now() == t0);
  c.advance(std::chrono::seconds(5));
  CHECK(c.now() - t0 == std::chrono::seconds(5));
  steady_clock s;
  auto a = s.now();
  CHECK(s.now() >= a);
  CHECK(default_clock() == default_clock());
}
