#include <agentcore/contract/glob.hpp>

#include "contract/split_path.hpp"

#include <fmt/format.h>

namespace agentcore::contract {
namespace {

using detail::split_path;

// Matches one character class starting at p[i] == '['. Sets `end` to the
// index after ']'. Returns whether c is in the class.
bool match_class(std::string_view p, std::size_t i, char c, std::size_t& end) {
  std::size_t j = i + 1;
  bool negate = j < p.size() && (p[j] == '!' || p[j] == '^');
  if (negate) ++j;
  bool in = false;
  bool first = true;
  while (j < p.size() && (p[j] != ']' || first)) {
    first = false;
    char lo = p[j];
    if (lo == '\\' && j + 1 < p.size()) lo = p[++j];
    char hi = lo;
    if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
      hi = p[j + 2];
      if (hi == '\\' && j + 3 < p.size()) {
        hi = p[j + 3];
        ++j;
      }
      j += 2;
    }
    if (static_cast<unsigned char>(c) >= static_cast<unsigned char>(lo) &&
        static_cast<unsigned char>(c) <= static_cast<unsigned char>(hi))
      in = true;
    ++j;
  }
  end = j + 1;  // past ']' (compile() guarantees it exists)
  return in != negate;
}

// fnmatch within one path segment: '*' and '?' never cross '/', since a
// segment has none.
bool match_segment(std::string_view p, std::string_view s) {
  std::size_t pi = 0, si = 0;
  std::size_t star_p = std::string_view::npos, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size()) {
      char pc = p[pi];
      if (pc == '*') {
        star_p = pi++;
        star_s = si;
        continue;
      }
      if (pc == '?') {
        ++pi;
        ++si;
        continue;
      }
      if (pc == '[') {
        std::size_t end = 0;
        if (match_class(p, pi, s[si], end)) {
          pi = end;
          ++si;
          continue;
        }
      } else {
        if (pc == '\\' && pi + 1 < p.size()) pc = p[pi + 1];
        if (pc == s[si]) {
          pi += p[pi] == '\\' ? 2 : 1;
          ++si;
          continue;
        }
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p + 1;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool has_wildcard(std::string_view seg) {
  for (std::size_t i = 0; i < seg.size(); ++i) {
    if (seg[i] == '\\') {
      ++i;
      continue;
    }
    if (seg[i] == '*' || seg[i] == '?' || seg[i] == '[') return true;
  }
  return false;
}

std::string unescape(std::string_view seg) {
  std::string out;
  for (std::size_t i = 0; i < seg.size(); ++i) {
    if (seg[i] == '\\' && i + 1 < seg.size()) ++i;
    out += seg[i];
  }
  return out;
}

}  // namespace

result<glob> glob::compile(std::string_view pattern) {
  std::string_view p = pattern;
  if (p.empty()) return fail(error::invalid_argument, "contract: empty path glob; use \"**\" to mean everything");
  // Validate escapes and classes.
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\') {
      if (i + 1 == p.size())
        return fail(error::invalid_argument, fmt::format("contract: glob '{}' ends with a lone backslash", pattern));
      ++i;
    } else if (p[i] == '[') {
      std::size_t j = i + 1;
      if (j < p.size() && (p[j] == '!' || p[j] == '^')) ++j;
      if (j < p.size() && p[j] == ']') ++j;  // a leading ']' is literal
      while (j < p.size() && p[j] != ']') {
        if (p[j] == '/')
          return fail(error::invalid_argument,
                      fmt::format("contract: glob '{}' has a '/' inside a character class at {}", pattern, j));
        if (p[j] == '\\') ++j;
        ++j;
      }
      if (j >= p.size())
        return fail(error::invalid_argument,
                    fmt::format("contract: glob '{}' has an unclosed '[' at {}; escape it as \\[", pattern, i));
      i = j;
    }
  }
  glob g;
  g.pattern_ = std::string(pattern);
  while (p.starts_with('/')) p.remove_prefix(1);
  while (p.ends_with('/')) p.remove_suffix(1);  // "dir/" means the directory: same as "dir"
  if (p.empty()) return fail(error::invalid_argument, fmt::format("contract: glob '{}' names no path", pattern));
  for (auto part : split_path(p)) {
    if (part.empty()) continue;  // "a//b" is "a/b"
    if (part == "**") {
      if (!g.segments_.empty() && g.segments_.back().globstar) continue;  // "**/**" is "**"
      g.segments_.push_back({true, {}});
    } else {
      g.segments_.push_back({false, std::string(part)});
    }
  }
  return g;
}

bool glob::match_from(std::size_t si, const std::vector<std::string_view>& parts, std::size_t pi) const {
  if (si == segments_.size()) return true;  // matched a directory prefix (or the whole path): inside it
  const segment& seg = segments_[si];
  if (seg.globstar) {
    // Zero or more whole segments.
    for (std::size_t k = pi; k <= parts.size(); ++k)
      if (match_from(si + 1, parts, k)) return true;
    return false;
  }
  if (pi == parts.size()) return false;
  if (!match_segment(seg.text, parts[pi])) return false;
  return match_from(si + 1, parts, pi + 1);
}

bool glob::matches(std::string_view path) const {
  while (path.starts_with('/')) path.remove_prefix(1);
  if (path.empty()) return false;
  auto parts = split_path(path);
  // A trailing "**" must match at least something below: "a/**" is inside a.
  return match_from(0, parts, 0);
}

// Whether outer's segments from oi match every path that inner's segments
// from ii match. A matched directory matches everything under it, so an outer
// that runs out first covers the rest.
bool glob::covers(const glob& outer, std::size_t oi, const glob& inner, std::size_t ii) {
  if (oi == outer.segments_.size()) return true;
  const segment& o = outer.segments_[oi];
  if (o.globstar) {
    for (std::size_t k = ii; k <= inner.segments_.size(); ++k)
      if (covers(outer, oi + 1, inner, k)) return true;
    return false;
  }
  if (ii == inner.segments_.size()) return false;  // inner matches a directory outer only matches parts of
  const segment& i = inner.segments_[ii];
  if (i.globstar) return false;
  bool ok = has_wildcard(i.text) ? (o.text == i.text || o.text == "*") : match_segment(o.text, unescape(i.text));
  return ok && covers(outer, oi + 1, inner, ii + 1);
}

bool glob::within(const glob& outer) const { return covers(outer, 0, *this, 0); }


}  // namespace agentcore::contract
