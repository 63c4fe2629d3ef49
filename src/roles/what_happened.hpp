// What an earlier attempt at a task came to, in words for its next attempt
// and for the planner: from the task's result, which is either the gate's
// verdict (the failing check and the end of its output, the contract's
// findings, the conflicting paths) or the worker's own report.
#pragma once

#include <agentcore/gate/merge_gate.hpp>

#include <string>

namespace agentcore::detail {

inline std::string what_happened(const json::value& result, std::size_t max_bytes) {
  if (!result.is_object()) return {};
  const auto& o = result.get_object();
  if (auto* k = o.if_contains("verdict"); k && k->is_string()) {
    if (auto v = gate::verdict_from_json(result)) return gate::explain(*v, max_bytes);
  }
  auto* k = o.if_contains("kind");
  if (!k || !k->is_string()) return {};
  std::string s = fmt::format("The attempt ended as '{}'", std::string_view(k->get_string()));
  for (const char* f : {"summary", "detail"})
    if (auto* d = o.if_contains(f); d && d->is_string() && !d->get_string().empty()) {
      std::string_view text = d->get_string();
      s += fmt::format(": {}", text.substr(0, max_bytes));
      break;
    }
  return s + "\n";
}

}  // namespace agentcore::detail
