// Internal to the contract module: a '/'-separated path or glob in segments.
#pragma once

#include <string_view>
#include <vector>

namespace agentcore::contract::detail {

/// "a/b//c" -> {"a", "b", "", "c"}; "" -> {""}. Views into `s`.
inline std::vector<std::string_view> split_path(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '/') {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

}  // namespace agentcore::contract::detail
