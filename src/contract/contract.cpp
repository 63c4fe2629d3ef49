#include <agentcore/contract/contract.hpp>

#include <fmt/format.h>

namespace agentcore::contract {
namespace {

// Decodes UTF-8; false on malformed input (overlong forms, surrogates, > U+10FFFF).
bool decode_utf8(std::string_view s, std::vector<char32_t>& out) {
  out.clear();
  for (std::size_t i = 0; i < s.size();) {
    auto b = static_cast<unsigned char>(s[i]);
    int n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    char32_t cp = n == 1 ? b : n == 2 ? (b & 0x1f) : n == 3 ? (b & 0x0f) : (b & 0x07);
    for (int k = 1; k < n; ++k) {
      auto c = static_cast<unsigned char>(s[i + k]);
      if ((c >> 6) != 0x2) return false;
      cp = (cp << 6) | (c & 0x3f);
    }
    static constexpr char32_t min_for[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    out.push_back(cp);
    i += static_cast<std::size_t>(n);
  }
  return true;
}

// Code points some file systems ignore in names (HFS+ drops them): a name made
// of ".git" plus these is ".git" there. Git itself refuses such paths.
bool ignorable(char32_t c) {
  return (c >= 0x200b && c <= 0x200f) || (c >= 0x202a && c <= 0x202e) || (c >= 0x2060 && c <= 0x206f) ||
         c == 0xfeff || c == 0x00ad;
}

// ".git" as some file system may read a path segment: case-folded (Windows,
// macOS), with ignorable code points dropped (HFS+), with trailing dots and
// spaces dropped (NTFS), or as the NTFS short name "git~1".
bool is_git_alias(std::string_view segment) {
  std::vector<char32_t> cps;
  if (!decode_utf8(segment, cps)) return false;
  std::u32string folded;
  for (char32_t c : cps) {
    if (ignorable(c)) continue;
    folded.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  while (!folded.empty() && (folded.back() == '.' || folded.back() == ' ')) folded.pop_back();
  return folded == U".git" || folded == U"git~1";
}

std::string_view first_segment_git_alias(std::string_view path) {
  std::size_t start = 0;
  for (std::size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      auto seg = path.substr(start, i - start);
      if (is_git_alias(seg)) return seg;
      start = i + 1;
    }
  }
  return {};
}

const char* list_name(bool allowed) { return allowed ? "allowed_paths" : "forbidden_paths"; }

}  // namespace

std::string verdict::summary() const {
  if (violations.empty()) return "the change keeps its contract";
  std::string out;
  for (const auto& v : violations) {
    if (!out.empty()) out += '\n';
    out += v.path.empty() ? fmt::format("{}: {}", v.rule, v.detail) : fmt::format("{} {}: {}", v.rule, v.path, v.detail);
  }
  return out;
}

result<compiled_contract> compiled_contract::compile(task_contract c) {
  compiled_contract out;
  bool has_git = false;
  for (const auto& f : c.forbidden_paths) has_git = has_git || f == ".git/**" || f == ".git";
  if (!has_git) c.forbidden_paths.insert(c.forbidden_paths.begin(), ".git/**");
  for (bool allowed : {true, false}) {
    const auto& list = allowed ? c.allowed_paths : c.forbidden_paths;
    auto& into = allowed ? out.allowed_ : out.forbidden_;
    for (const auto& p : list) {
      auto g = glob::compile(p);
      if (!g) return fail(error::invalid_argument, fmt::format("{} (in {})", g.error().message(), list_name(allowed)));
      into.push_back(std::move(*g));
    }
  }
  out.contract_ = std::move(c);
  return out;
}

std::string compiled_contract::may_write(std::string_view path) const {
  if (auto why = check_relative_path(path); !why.empty()) return why;
  std::vector<char32_t> cps;
  if (!decode_utf8(path, cps)) return "the path is not valid UTF-8";
  if (auto seg = first_segment_git_alias(path); !seg.empty())
    return fmt::format("'{}' is inside the repository's .git directory (segment '{}'); it is never writable", path, seg);
  for (const auto& g : forbidden_)
    if (g.matches(path)) return fmt::format("'{}' matches forbidden path '{}'", path, g.pattern());
  if (allowed_.empty()) return {};
  for (const auto& g : allowed_)
    if (g.matches(path)) return {};
  std::string list;
  for (const auto& g : allowed_) list += (list.empty() ? "" : ", ") + g.pattern();
  return fmt::format("'{}' is outside the allowed paths ({})", path, list);
}

verdict compiled_contract::check(const diff& d) const {
  verdict v;
  auto check_path = [&](std::string_view path) {
    if (auto why = check_relative_path(path); !why.empty()) {
      v.violations.push_back({std::string(path), "path_invalid", why});
      return;
    }
    std::string why = may_write(path);
    if (why.empty()) return;
    std::string rule = why.find("outside the allowed") != std::string::npos ? "path_not_allowed"
                       : why.find("UTF-8") != std::string::npos         ? "path_invalid"
                                                                        : "path_forbidden";
    v.violations.push_back({std::string(path), std::move(rule), std::move(why)});
  };
  for (const auto& f : d.files) {
    check_path(f.path);
    // A rename also removes the old path: that is a change there too.
    if (!f.old_path.empty() && f.old_path != f.path && f.status == change_status::renamed) check_path(f.old_path);
    if (f.binary && !contract_.binary_allowed)
      v.violations.push_back({f.path, "binary", "binary files are not allowed by this contract"});
  }
  if (contract_.max_files && d.files.size() > contract_.max_files)
    v.violations.push_back({{}, "max_files",
                            fmt::format("the change touches {} files; the contract allows {}", d.files.size(),
                                        contract_.max_files)});
  if (contract_.max_changed_lines && d.changed_lines() > contract_.max_changed_lines)
    v.violations.push_back({{}, "max_changed_lines",
                            fmt::format("the change adds and removes {} lines; the contract allows {}",
                                        d.changed_lines(), contract_.max_changed_lines)});
  return v;
}

result<verdict> check(const task_contract& c, const diff& d) {
  auto cc = compiled_contract::compile(c);
  if (!cc) return cc.error();
  return cc->check(d);
}

// --- JSON ---

json::value to_json_value(const task_contract& c) {
  auto strings = [](const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) a.push_back(json::value(s));
    return a;
  };
  return json::object{{"schema", contract_schema},
                      {"goal", c.goal},
                      {"acceptance_criteria", strings(c.acceptance_criteria)},
                      {"acceptance_checks", strings(c.acceptance_checks)},
                      {"allowed_paths", strings(c.allowed_paths)},
                      {"forbidden_paths", strings(c.forbidden_paths)},
                      {"max_files", c.max_files},
                      {"max_changed_lines", c.max_changed_lines},
                      {"binary_allowed", c.binary_allowed},
                      {"time_box", json::object{{"wall_seconds", c.time.wall.count()},
                                                {"model_turns", c.time.model_turns},
                                                {"tokens", c.time.tokens},
                                                {"cost", c.time.cost}}}};
}

void tag_invoke(json::value_from_tag, json::value& v, const task_contract& c) { v = to_json_value(c); }

result<task_contract> contract_from_json(const json::value& v) {
  if (!v.is_object())
    return fail(error::invalid_argument,
                fmt::format("contract: must be a JSON object, got {}", agentcore::detail::json_kind_name(v)));
  const auto& o = v.as_object();
  auto schema = json_field<std::int64_t>(o, "schema", "contract");
  if (!schema) return schema.error();
  if (*schema > contract_schema)
    return fail(error::unsupported_format, fmt::format("contract: schema {} is newer than this build's {}; read it "
                                                       "with a newer agentcore",
                                                       *schema, contract_schema));
  if (*schema < 1) return fail(error::invalid_argument, fmt::format("contract: schema {}; schemas start at 1", *schema));
  task_contract c;
  // Reads an optional field of `obj` into `target`, or returns its error.
#define AGENTCORE_FIELD(obj, name, type, target)                   \
  {                                                                \
    auto r = json_field_or<type>(obj, name, type{}, "contract");   \
    if (!r) return r.error();                                      \
    target = std::move(*r);                                        \
  }
  AGENTCORE_FIELD(o, "goal", std::string, c.goal)
  AGENTCORE_FIELD(o, "acceptance_criteria", std::vector<std::string>, c.acceptance_criteria)
  AGENTCORE_FIELD(o, "acceptance_checks", std::vector<std::string>, c.acceptance_checks)
  AGENTCORE_FIELD(o, "allowed_paths", std::vector<std::string>, c.allowed_paths)
  AGENTCORE_FIELD(o, "forbidden_paths", std::vector<std::string>, c.forbidden_paths)
  AGENTCORE_FIELD(o, "max_files", std::uint64_t, c.max_files)
  AGENTCORE_FIELD(o, "max_changed_lines", std::uint64_t, c.max_changed_lines)
  AGENTCORE_FIELD(o, "binary_allowed", bool, c.binary_allowed)
  if (auto it = o.find("time_box"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_object())
      return fail(error::invalid_argument, "contract: field \"time_box\" is not an object");
    const auto& t = it->value().as_object();
    std::int64_t wall = 0;
    AGENTCORE_FIELD(t, "wall_seconds", std::int64_t, wall)
    c.time.wall = std::chrono::seconds(wall);
    AGENTCORE_FIELD(t, "model_turns", std::int64_t, c.time.model_turns)
    AGENTCORE_FIELD(t, "tokens", std::int64_t, c.time.tokens)
    AGENTCORE_FIELD(t, "cost", double, c.time.cost)
  }
#undef AGENTCORE_FIELD
  if (c.time.wall.count() < 0 || c.time.model_turns < 0 || c.time.tokens < 0 || c.time.cost < 0)
    return fail(error::invalid_argument, "contract: time_box limits must be >= 0 (0 means no limit)");
  // Reject malformed globs now, not at the first check.
  if (auto cc = compiled_contract::compile(c); !cc) return cc.error();
  return c;
}

void tag_invoke(json::value_from_tag, json::value& v, const violation& x) {
  v = {{"path", x.path}, {"rule", x.rule}, {"detail", x.detail}};
}

void tag_invoke(json::value_from_tag, json::value& v, const verdict& x) {
  json::array a;
  for (const auto& viol : x.violations) a.push_back(json::value_from(viol));
  v = {{"ok", x.ok()}, {"violations", std::move(a)}};
}

// --- diff ---

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

void tag_invoke(json::value_from_tag, json::value& v, const file_change& f) {
  json::object o{{"path", f.path},         {"status", to_string(f.status)}, {"old_mode", f.old_mode},
                 {"new_mode", f.new_mode}, {"additions", f.additions},      {"deletions", f.deletions},
                 {"binary", f.binary}};
  if (!f.old_path.empty()) o["old_path"] = f.old_path;
  v = std::move(o);
}

void tag_invoke(json::value_from_tag, json::value& v, const diff& d) {
  json::array a;
  for (const auto& f : d.files) a.push_back(json::value_from(f));
  v = {{"files", std::move(a)}, {"changed_lines", d.changed_lines()}};
}

}  // namespace agentcore::contract
