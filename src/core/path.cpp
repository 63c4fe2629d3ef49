// Checking a repository-relative path.
#include <agentcore/core/path.hpp>

#include <fmt/format.h>

namespace agentcore {

std::string check_relative_path(std::string_view path) {
  if (path.empty()) return "the path is empty";
  if (path.front() == '/') return fmt::format("'{}' is absolute; use a path relative to the repository root", path);
  for (unsigned char c : path) {
    if (c < 0x20 || c == 0x7f) return fmt::format("the path contains control character \\x{:02x}", c);
    if (c == '\\') return fmt::format("'{}' contains a backslash; use '/' between directories", path);
  }
  for (std::size_t at = 0;;) {
    auto slash = path.find('/', at);
    auto part = path.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
    if (part.empty()) return fmt::format("'{}' has an empty segment ('//' or a trailing '/')", path);
    if (part == "." || part == "..")
      return fmt::format("'{}' contains '{}'; name the file directly from the repository root", path, part);
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  return {};
}

}  // namespace agentcore
