// agentcore/core/path.hpp: checking a repository-relative path that agent
// output produced, before anything is read or written under it.
//
//   if (auto why = agentcore::check_relative_path(p); !why.empty()) return refuse(why);
#pragma once

#include <string>
#include <string_view>

namespace agentcore {

/// Checks a repository-relative path an agent produced: not empty, not
/// absolute, no "." or ".." segment, no empty segment, no NUL or control
/// characters, no backslash. Returns an empty string when fine, else why not.
std::string check_relative_path(std::string_view path);

}  // namespace agentcore
