#include <agentcore/contract/contract.hpp>

#include <doctest/doctest.h>

using namespace agentcore;
using namespace agentcore::contract;

namespace {
file_change changed(std::string path, std::size_t add = 1, std::size_t del = 0) {
  return {.path = std::move(path), .status = change_status::modified, .old_mode = 0100644, .new_mode = 0100644,
          .additions = add, .deletions = del};
}
std::vector<std::string> rules(const verdict& v) {
  std::vector<std::string> out;
  for (const auto& x : v.violations) out.push_back(x.rule + " " + x.path);
  return out;
}
}  // namespace

TEST_CASE("contract.check.a_change_within_its_contract_passes") {
  task_contract c{.allowed_paths = {"src/lexer/**", "tests/**"}, .max_files = 3, .max_changed_lines = 100};
  diff d{{changed("src/lexer/lex.cpp", 30, 5), changed("tests/lexer_test.cpp", 20)}};
  auto v = check(c, d).value();
  CHECK(v.ok());
  CHECK(v.summary() == "the change keeps its contract");
}

TEST_CASE("contract.check.lists_every_violation_with_path_and_rule") {
  task_contract c{.allowed_paths = {"src/**"},
             .forbidden_paths = {".ci/**", "src/generated/**"},
             .max_files = 3,
             .max_changed_lines = 50,
             .binary_allowed = false};
  file_change bin = changed("src/logo.png", 0, 0);
  bin.binary = true;
  file_change renamed{.path = "src/new.cpp", .old_path = "lib/old.cpp", .status = change_status::renamed};
  diff d{{changed("src/ok.cpp", 40), changed(".ci/run"), changed("src/generated/x.cpp"), changed("docs/a.md", 20),
          bin, renamed}};
  auto v = check(c, d).value();
  CHECK_FALSE(v.ok());
  CHECK(rules(v) == std::vector<std::string>{
                        "path_forbidden .ci/run",
                        "path_forbidden src/generated/x.cpp",
                        "path_not_allowed docs/a.md",
                        "binary src/logo.png",
                        "path_not_allowed lib/old.cpp",  // a rename removes its old path too
                        "max_files ",
                        "max_changed_lines ",
                    });
  CHECK(v.violations[0].detail.find("'.ci/**'") != std::string::npos);
  CHECK(v.violations[2].detail.find("src/**") != std::string::npos);
  CHECK(v.violations[5].detail.find("6 files") != std::string::npos);
  CHECK(v.violations[6].detail.find("62 lines") != std::string::npos);
  CHECK(v.summary().find("path_not_allowed docs/a.md") != std::string::npos);
}

TEST_CASE("contract.check.hostile_paths_are_refused") {
  task_contract c{};  // anywhere not forbidden
  auto cc = compiled_contract::compile(c).value();
  struct hostile {
    std::string path;
    const char* rule;
  };
  hostile cases[] = {
      {"../x", "path_invalid"},
      {"a/../../b", "path_invalid"},
      {"/etc/passwd", "path_invalid"},
      {"./a", "path_invalid"},
      {"a//b", "path_invalid"},
      {"a\\b", "path_invalid"},
      {".git/config", "path_forbidden"},
      {".git/hooks/pre-commit", "path_forbidden"},
      {"sub/.git/config", "path_forbidden"},        // a nested repository's .git
      {".GIT/config", "path_forbidden"},            // case-insensitive file systems
      {".g\u200cit/config", "path_forbidden"},      // HFS+ ignores U+200C
      {"\xef\xbb\xbf.git/config", "path_forbidden"},  // U+FEFF
      {".git./config", "path_forbidden"},           // NTFS drops trailing dots
      {"git~1/config", "path_forbidden"},           // NTFS short name
      {"bad\xff\xfe.txt", "path_invalid"},          // not UTF-8
      {"ov\xc0\xaf" "er", "path_invalid"},             // overlong '/'
  };
  for (const auto& h : cases) {
    CAPTURE(h.path);
    CHECK_FALSE(cc.may_write(h.path).empty());
    auto v = cc.check(diff{{changed(h.path)}});
    REQUIRE(v.violations.size() == 1);
    CHECK(v.violations[0].rule == h.rule);
  }
  // Look-alikes that are really other names are fine.
  CHECK(cc.may_write("docs/\xd0\xb0.md").empty());  // Cyrillic a
  CHECK(cc.may_write(".github/workflows/x.yml").empty());
  CHECK(cc.may_write(".gitignore").empty());
}

TEST_CASE("contract.check.may_write_answers_the_tool_box") {
  auto cc = compiled_contract::compile({.allowed_paths = {"src/**"}, .forbidden_paths = {"src/vendor/**"}}).value();
  CHECK(cc.may_write("src/a.cpp").empty());
  CHECK(cc.may_write("src/vendor/z.h").find("forbidden path 'src/vendor/**'") != std::string::npos);
  CHECK(cc.may_write("README.md").find("outside the allowed paths (src/**)") != std::string::npos);
  auto bad = compiled_contract::compile({.allowed_paths = {"src/[oops"}});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find("allowed_paths") != std::string::npos);
}

TEST_CASE("contract.json.round_trip_and_errors") {
  task_contract c{.goal = "Fix the lexer",
             .acceptance_criteria = {"nested comments lex"},
             .acceptance_checks = {"ctest -R lexer"},
             .allowed_paths = {"src/lexer/**"},
             .forbidden_paths = {".ci/**"},
             .max_files = 5,
             .max_changed_lines = 200,
             .binary_allowed = true,
             .time = {std::chrono::seconds(1800), 60, 2'000'000, 4.5}};
  auto v = to_json_value(c);
  CHECK(v.as_object().at("schema").as_int64() == 1);
  auto back = contract_from_json(v);
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(*back == c);

  auto minimal = contract_from_json(parse_json(R"({"schema":1})").value());
  REQUIRE(minimal.has_value());
  CHECK(minimal->allowed_paths.empty());

  struct bad_case {
    const char* json;
    const char* mentions;
  };
  bad_case cases[] = {
      {R"({"goal":"x"})", "\"schema\""},
      {R"({"schema":2})", "schema 2"},
      {R"({"schema":1,"max_files":"ten"})", "\"max_files\""},
      {R"({"schema":1,"allowed_paths":["src/[x"]})", "unclosed"},
      {R"({"schema":1,"time_box":{"tokens":-1}})", ">= 0"},
      {R"([])", "object"},
  };
  for (const auto& b : cases) {
    CAPTURE(b.json);
    auto r = contract_from_json(parse_json(b.json).value());
    REQUIRE_FALSE(r.has_value());
    CHECK_MESSAGE(r.error().message().find(b.mentions) != std::string::npos, r.error().message());
  }
}
