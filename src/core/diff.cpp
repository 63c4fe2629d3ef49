// The diff vocabulary: names, totals, JSON.
#include <agentcore/core/diff.hpp>

namespace agentcore {

std::string_view to_string(change_status s) noexcept {
  switch (s) {
    case change_status::added: return "added";
    case change_status::deleted: return "deleted";
    case change_status::modified: return "modified";
    case change_status::renamed: return "renamed";
    case change_status::copied: return "copied";
    case change_status::type_changed: return "type_changed";
  }
  return "unknown";
}

std::size_t diff::changed_lines() const noexcept {
  std::size_t n = 0;
  for (const auto& f : files) n += f.additions + f.deletions;
  return n;
}

std::uint64_t diff::added_bytes() const noexcept {
  std::uint64_t n = 0;
  for (const auto& f : files) n += f.added_bytes;
  return n;
}

void tag_invoke(json::value_from_tag, json::value& v, const file_change& f) {
  json::object o{{"path", f.path},         {"status", to_string(f.status)}, {"old_mode", f.old_mode},
                 {"new_mode", f.new_mode}, {"additions", f.additions},      {"deletions", f.deletions},
                 {"binary", f.binary},     {"added_bytes", f.added_bytes}};
  if (!f.old_path.empty()) o["old_path"] = f.old_path;
  if (f.new_mode == mode_link) o["link_target"] = f.link_target;
  v = std::move(o);
}

void tag_invoke(json::value_from_tag, json::value& v, const diff& d) {
  json::array a;
  for (const auto& f : d.files) a.push_back(json::value_from(f));
  v = {{"files", std::move(a)}, {"changed_lines", d.changed_lines()}, {"added_bytes", d.added_bytes()}};
}

}  // namespace agentcore
