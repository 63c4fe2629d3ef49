// agentcore/contract/glob.hpp: path globs for task contracts, with the
// semantics of .gitignore patterns anchored at the repository root.
//
//   auto g = agentcore::contract::glob::compile("src/**/*.cpp").value();
//   g.matches("src/parser/lexer.cpp");   // true
//   g.matches("tests/x.cpp");            // false
//
// Syntax, for repository-relative paths with '/' separators:
//   *        any run of characters except '/'
//   ?        one character except '/'
//   [abc] [a-z] [!a-z] [^a-z]   one character from (or not from) a class; never '/'
//   **       as a whole segment: zero or more directories ("**/x", "a/**/b", "a/**")
//   \c       the character c itself
// Every pattern is anchored at the root: "*.md" matches "README.md" but not
// "docs/a.md" (write "**/*.md" for that). A leading '/' is ignored. A pattern
// that matches a directory matches everything under it: "build" and "build/"
// both match "build/x/y.o". Matching is byte-wise and case-sensitive.
#pragma once

#include <agentcore/core/path.hpp>

#include <agentcore/core/error.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace agentcore::contract {

class glob {
public:
  /// Compiles a pattern; an error names what is malformed (an unclosed class,
  /// a trailing backslash, an empty pattern).
  static result<glob> compile(std::string_view pattern);

  bool matches(std::string_view path) const;
  const std::string& pattern() const noexcept { return pattern_; }

  /// Whether every path this glob matches, `outer` matches too. A sound test,
  /// not a complete one: true is a proof, false means "not proven" (globs
  /// whose wildcards differ in form, like "src/a*.c" inside "src/*.c", are
  /// not compared). "src/lexer/**" is within "src/**"; "**" is within "**"
  /// only; "src/**" is not within "src/*.cpp".
  bool within(const glob& outer) const;
  /// Matches everything ("**").
  bool matches_everything() const noexcept { return segments_.size() == 1 && segments_[0].globstar; }

private:
  struct segment {
    bool globstar = false;  // "**"
    std::string text;       // the segment pattern (with escapes kept)
  };
  bool match_from(std::size_t si, const std::vector<std::string_view>& parts, std::size_t pi) const;
  static bool covers(const glob& outer, std::size_t oi, const glob& inner, std::size_t ii);

  std::string pattern_;
  std::vector<segment> segments_;
};

/// Checks a repository-relative path an agent produced (core's; see core/path.hpp).
using agentcore::check_relative_path;

}  // namespace agentcore::contract
