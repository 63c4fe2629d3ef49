#include <agentcore/contract/glob.hpp>

#include <doctest/doctest.h>

using namespace agentcore;
using agentcore::contract::glob;

namespace {
bool m(const char* pattern, const char* path) {
  auto g = glob::compile(pattern);
  REQUIRE_MESSAGE(g.has_value(), g.error().message());
  return g->matches(path);
}
}  // namespace

TEST_CASE("contract.glob.star_stays_in_its_segment") {
  CHECK(m("*.md", "README.md"));
  CHECK_FALSE(m("*.md", "docs/a.md"));  // anchored at the root
  CHECK(m("src/*.cpp", "src/a.cpp"));
  CHECK_FALSE(m("src/*.cpp", "src/x/a.cpp"));
  CHECK(m("src/*", "src/a.cpp"));
  CHECK(m("a*b", "ab"));
  CHECK(m("a*b", "axxxb"));
  CHECK_FALSE(m("a*b", "axxxc"));
  CHECK(m("*", "anything"));
  CHECK(m("*", "dir/inside"));  // "*" matches the directory, so everything in it
}

TEST_CASE("contract.glob.globstar") {
  CHECK(m("**/*.md", "README.md"));
  CHECK(m("**/*.md", "docs/deep/a.md"));
  CHECK(m("src/**/*.cpp", "src/a.cpp"));
  CHECK(m("src/**/*.cpp", "src/x/y/z.cpp"));
  CHECK_FALSE(m("src/**/*.cpp", "lib/src/a.cpp"));
  CHECK(m("src/**", "src/a/b/c"));
  CHECK(m("**", "any/path/at/all"));
  CHECK(m("a/**/b", "a/b"));
  CHECK(m("a/**/b", "a/x/y/b"));
  CHECK_FALSE(m("a/**/b", "a/x/y/c"));
  CHECK(m("**/**/x", "x"));
  CHECK(m("a**b", "axyb"));  // not a whole segment: a plain star
  CHECK_FALSE(m("a**b", "ax/yb"));
}

TEST_CASE("contract.glob.question_classes_escapes") {
  CHECK(m("file?.txt", "file1.txt"));
  CHECK_FALSE(m("file?.txt", "file10.txt"));
  CHECK_FALSE(m("a?b", "a/b"));
  CHECK(m("[abc].h", "b.h"));
  CHECK_FALSE(m("[abc].h", "d.h"));
  CHECK(m("v[0-9].txt", "v7.txt"));
  CHECK(m("v[!0-9].txt", "vx.txt"));
  CHECK(m("v[^0-9].txt", "vx.txt"));
  CHECK_FALSE(m("v[!0-9].txt", "v1.txt"));
  CHECK(m("[]]x", "]x"));
  CHECK(m("\\*literal", "*literal"));
  CHECK_FALSE(m("\\*literal", "xliteral"));
  CHECK(m("a\\[b", "a[b"));
}

TEST_CASE("contract.glob.directories_match_their_contents") {
  CHECK(m("build", "build/x/y.o"));
  CHECK(m("build/", "build/x/y.o"));
  CHECK(m("/build", "build/y.o"));
  CHECK_FALSE(m("build", "src/build/y.o"));
  CHECK_FALSE(m("build", "builds/y.o"));
  CHECK(m(".ci/**", ".ci/run"));
  CHECK(m(".git/**", ".git/config"));
}

TEST_CASE("contract.glob.malformed_patterns_are_errors") {
  for (const char* bad : {"", "/", "a[bc", "x\\", "a[b/c]d"}) {
    CAPTURE(bad);
    auto g = glob::compile(bad);
    REQUIRE_FALSE(g.has_value());
    CHECK(g.error() == error::invalid_argument);
    CHECK(g.error().message().find("contract: ") == 0);
  }
}

TEST_CASE("contract.glob.relative_path_check") {
  using agentcore::contract::check_relative_path;
  CHECK(check_relative_path("src/a.cpp").empty());
  CHECK(check_relative_path("").find("empty") != std::string::npos);
  CHECK(check_relative_path("/etc/passwd").find("absolute") != std::string::npos);
  CHECK(check_relative_path("../x").find("'..'") != std::string::npos);
  CHECK(check_relative_path("a/../../b").find("'..'") != std::string::npos);
  CHECK(check_relative_path("a/./b").find("'.'") != std::string::npos);
  CHECK(check_relative_path("a//b").find("empty segment") != std::string::npos);
  CHECK(check_relative_path("a/").find("empty segment") != std::string::npos);
  CHECK(check_relative_path("a\\..\\b").find("backslash") != std::string::npos);
  CHECK(check_relative_path(std::string("a\0b", 3)).find("\\x00") != std::string::npos);
  CHECK(check_relative_path("a\nb").find("\\x0a") != std::string::npos);
}

TEST_CASE("contract.glob.within_proves_containment_or_says_not_proven") {
  auto within = [](const char* inner, const char* outer) {
    return glob::compile(inner).value().within(glob::compile(outer).value());
  };
  CHECK(within("src/lexer/**", "src/**"));
  CHECK(within("src/a.c", "src/**"));
  CHECK(within("src/*.c", "src/**"));
  CHECK(within("src/*.c", "src/*.c"));
  CHECK(within("src", "src/**"));
  CHECK(within("src/**", "src"));  // a directory holds everything under it
  CHECK(within("docs/**/*.md", "docs/**"));
  CHECK(within("a/b", "*/b"));
  CHECK(within("a/*", "*/*"));
  CHECK(within("**", "**"));
  CHECK(within("x/**", "**"));
  CHECK(within("a\\*b/x", "a\\*b"));  // escapes are the characters themselves
  CHECK_FALSE(within("**", "src/**"));
  CHECK_FALSE(within("src/**", "src/lexer/**"));
  CHECK_FALSE(within("src/**", "src/*.cpp"));
  CHECK_FALSE(within("**/*.md", "docs/**"));
  CHECK_FALSE(within("a", "a/b"));
  CHECK_FALSE(within("src2/**", "src/**"));
  CHECK_FALSE(within("src/a*.c", "src/*.c"));  // true, but not proven: false is "not proven"
  CHECK(glob::compile("**").value().matches_everything());
  CHECK_FALSE(glob::compile("src/**").value().matches_everything());
}
