#include <agentcore/contract/contract.hpp>

#include "contract/split_path.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

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

// ".gitmodules" as some file system may read a name (see is_git_alias), or
// one of its NTFS short names ("GITMOD~1", ...).
bool is_gitmodules_alias(std::string_view name) {
  std::vector<char32_t> cps;
  if (!decode_utf8(name, cps)) return false;
  std::u32string folded;
  for (char32_t c : cps) {
    if (ignorable(c)) continue;
    folded.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
  }
  while (!folded.empty() && (folded.back() == '.' || folded.back() == ' ')) folded.pop_back();
  return folded == U".gitmodules" || (folded.size() == 8 && folded.starts_with(U"gitmod~"));
}

std::string_view last_segment(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

using detail::split_path;

std::string unescape_glob(std::string_view seg) {
  std::string out;
  for (std::size_t i = 0; i < seg.size(); ++i) {
    if (seg[i] == '\\' && i + 1 < seg.size()) ++i;
    out += seg[i];
  }
  return out;
}

std::string mode_text(std::uint32_t mode) { return fmt::format("{:06o}", mode); }

std::string human_bytes(std::uint64_t n) {
  if (n >= (1ull << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1 << 20));
  if (n >= (1ull << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(n) / (1 << 10));
  return fmt::format("{} bytes", n);
}

// A violation of a link's target, or empty. `policy` decides only whether
// absolute and outside targets are fine; into .git never is.
std::string link_target_problem(std::string_view path, std::string_view target, link_policy policy) {
  if (target.empty()) return fmt::format("'{}' is a symbolic link with an empty target", path);
  if (target.size() > max_link_target)
    return fmt::format("'{}' is a symbolic link whose target is longer than {} bytes", path, max_link_target);
  for (unsigned char c : target) {
    if (c < 0x20 || c == 0x7f)
      return fmt::format("'{}' is a symbolic link whose target contains control character \\x{:02x}", path, c);
    if (c == '\\')
      return fmt::format("'{}' is a symbolic link whose target '{}' contains a backslash (a directory separator "
                         "on Windows); write the target with '/'",
                         path, target);
  }
  bool drive = target.size() >= 2 && target[1] == ':' &&
               ((target[0] >= 'a' && target[0] <= 'z') || (target[0] >= 'A' && target[0] <= 'Z'));
  if (target.front() == '/' || drive) {
    if (policy == link_policy::any) return {};
    return fmt::format("'{}' is a symbolic link to the absolute path '{}'; a link may only point inside the "
                       "repository, relative to its own directory: link to the file in the repository, or copy "
                       "what you need into it",
                       path, target);
  }
  // Resolve the target from the link's directory, by text: a link may not
  // climb out of the repository, nor into its .git directory.
  std::vector<std::string_view> at;
  if (auto slash = path.rfind('/'); slash != std::string_view::npos) at = split_path(path.substr(0, slash));
  for (auto seg : split_path(target)) {
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (at.empty()) {
        if (policy == link_policy::any) return {};
        return fmt::format("'{}' is a symbolic link to '{}', which leaves the repository; a link may only point "
                           "to a path inside it",
                           path, target);
      }
      at.pop_back();
      continue;
    }
    at.push_back(seg);
  }
  for (auto seg : at)
    if (is_git_alias(seg))
      return fmt::format("'{}' is a symbolic link to '{}', which is inside the repository's .git directory; "
                         "nothing may point there",
                         path, target);
  if (at.empty())
    return fmt::format("'{}' is a symbolic link to '{}', the repository's root itself; link to what you need in it",
                       path, target);
  return {};
}

const char* list_name(int list) {
  return list == 0 ? "allowed_paths" : list == 1 ? "forbidden_paths" : "protected_paths";
}

}  // namespace

std::vector<std::string> default_protected_paths() {
  return {
      // CI configuration
      ".ci/**", ".github/**", ".gitlab-ci.yml", ".gitlab/**", ".circleci/**", ".buildkite/**", ".travis.yml",
      "Jenkinsfile", "azure-pipelines.yml",
      // top-level build configuration and build scripts
      "CMakeLists.txt", "CMakePresets.json", "CMakeUserPresets.json", "cmake/**", "Makefile", "GNUmakefile",
      "makefile", "meson.build", "meson_options.txt", "configure", "configure.ac", "BUILD", "BUILD.bazel",
      "WORKSPACE", "WORKSPACE.bazel", "MODULE.bazel", ".bazelrc", "scripts/**",
      // git's own configuration in the tree
      ".gitmodules", "**/.gitattributes",
      // agentcore's configuration and state
      "agentcore.json", ".agentcore/**",
      // what runs by itself on a developer's machine
      ".pre-commit-config.yaml", ".husky/**", ".envrc"};
}

std::string_view to_string(link_policy p) noexcept {
  switch (p) {
    case link_policy::none: return "none";
    case link_policy::inside: return "inside";
    case link_policy::any: return "any";
  }
  return "none";
}

std::optional<link_policy> parse_link_policy(std::string_view s) noexcept {
  if (s == "none") return link_policy::none;
  if (s == "inside") return link_policy::inside;
  if (s == "any") return link_policy::any;
  return std::nullopt;
}

std::string check_contract_glob(std::string_view pattern) {
  if (pattern.starts_with('/'))
    return fmt::format("'{}' is absolute; contract globs name paths inside the repository, from its root (write "
                       "'{}' for the repository's own directory)",
                       pattern, pattern.substr(std::min(pattern.find_first_not_of('/'), pattern.size())));
  if (pattern.size() >= 2 && pattern[1] == ':' && std::isalpha(static_cast<unsigned char>(pattern[0])))
    return fmt::format("'{}' is an absolute Windows path; contract globs name paths inside the repository", pattern);
  for (auto raw : split_path(pattern)) {
    std::string seg = unescape_glob(raw);
    if (seg == "..")
      return fmt::format("'{}' contains '..'; contract globs name paths inside the repository, from its root",
                         pattern);
    if (seg == ".") return fmt::format("'{}' contains a '.' segment; write the path from the repository root", pattern);
    if (is_git_alias(seg))
      return fmt::format("'{}' names the repository's .git directory ('{}'); nothing there belongs in a contract",
                         pattern, std::string(raw));
    // A wildcard segment aimed at .git (".gi?", "[.]git"); "*" and ".*" also
    // match other names and are fine: .git stays forbidden whatever they say.
    if (raw.find('*') == std::string_view::npos && raw != "**" && !raw.empty()) {
      if (auto g = glob::compile(raw); g)
        for (const char* alias : {".git", ".GIT", ".Git", ".git.", ".git ", "git~1", "GIT~1"})
          if (g->matches(alias))
            return fmt::format("'{}' names the repository's .git directory ('{}' matches '{}'); nothing there "
                               "belongs in a contract",
                               pattern, std::string(raw), alias);
    }
  }
  return {};
}

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
  for (int list = 0; list < 3; ++list) {
    const auto& globs = list == 0 ? c.allowed_paths : list == 1 ? c.forbidden_paths : c.protected_paths;
    auto& into = list == 0 ? out.allowed_ : list == 1 ? out.forbidden_ : out.protected_;
    for (const auto& p : globs) {
      auto g = glob::compile(p);
      if (!g) return fail(error::invalid_argument, fmt::format("{} (in {})", g.error().message(), list_name(list)));
      bool canonical_git = list == 1 && (p == ".git/**" || p == ".git");
      if (auto why = check_contract_glob(p); !why.empty() && !canonical_git)
        return fail(error::invalid_argument, fmt::format("contract: {} (in {})", why, list_name(list)));
      into.push_back(std::move(*g));
    }
  }
  out.contract_ = std::move(c);
  return out;
}

compiled_contract::refusal compiled_contract::why_not(std::string_view path) const {
  if (auto why = check_relative_path(path); !why.empty()) return {"path_invalid", std::move(why)};
  std::vector<char32_t> cps;
  if (!decode_utf8(path, cps)) return {"path_invalid", "the path is not valid UTF-8"};
  if (auto seg = first_segment_git_alias(path); !seg.empty())
    return {"path_forbidden",
            fmt::format("'{}' is inside the repository's .git directory (segment '{}'); it is never writable", path, seg)};
  for (const auto& g : forbidden_)
    if (g.matches(path)) return {"path_forbidden", fmt::format("'{}' matches forbidden path '{}'", path, g.pattern())};
  if (!contract_.submodules_allowed && is_gitmodules_alias(last_segment(path)))
    return {"gitmodules", fmt::format("'{}' declares submodules; this contract allows no submodule changes: leave "
                                      "it as it is (a host can allow submodules with submodules_allowed)",
                                      path)};
  if (!contract_.protected_allowed)
    for (const auto& g : protected_)
      if (g.matches(path))
        return {"protected_path",
                fmt::format("'{}' is protected (it matches '{}'): only a task the host allows to change protected "
                            "paths may change it; leave it as it is and say in your report what it needs",
                            path, g.pattern())};
  if (allowed_.empty()) return {};
  for (const auto& g : allowed_)
    if (g.matches(path)) return {};
  std::string list;
  for (const auto& g : allowed_) list += (list.empty() ? "" : ", ") + g.pattern();
  return {"path_not_allowed", fmt::format("'{}' is outside the allowed paths ({})", path, list)};
}

std::string compiled_contract::may_write(std::string_view path) const { return why_not(path).detail; }

verdict compiled_contract::check(const diff& d) const {
  verdict v;
  auto check_path = [&](std::string_view path) {
    auto r = why_not(path);
    if (r.rule) v.violations.push_back({std::string(path), r.rule, std::move(r.detail)});
  };
  for (const auto& f : d.files) {
    check_path(f.path);
    // A rename also removes the old path: that is a change there too.
    if (!f.old_path.empty() && f.old_path != f.path && f.status == change_status::renamed) check_path(f.old_path);
    if (f.binary && !contract_.binary_allowed)
      v.violations.push_back({f.path, "binary", "binary files are not allowed by this contract"});
    // What goes away carries no danger in its mode; a diff built by hand may
    // leave modes out (0).
    if (f.status == change_status::deleted || f.new_mode == 0) continue;
    const auto nm = f.new_mode;
    if (nm != mode_file && nm != mode_executable && nm != mode_link && nm != mode_gitlink) {
      v.violations.push_back({f.path, "mode",
                              fmt::format("'{}' has mode {}, which is not a mode git writes for a file; commit it "
                                          "as {} (or {} for a program the contract lets you add)",
                                          f.path, mode_text(nm), mode_text(mode_file), mode_text(mode_executable))});
    } else if (nm == mode_executable && !contract_.executable_allowed &&
               (f.old_mode != mode_executable || f.status == change_status::added ||
                f.status == change_status::copied)) {
      v.violations.push_back({f.path, "mode",
                              fmt::format("'{}' is made executable (mode {}, was {}); this contract allows no new "
                                          "executables: commit it as {}",
                                          f.path, mode_text(nm), f.old_mode ? mode_text(f.old_mode) : "absent",
                                          mode_text(mode_file))});
    } else if (nm == mode_link) {
      auto policy = contract_.links;
      if (auto why = link_target_problem(f.path, f.link_target, policy); !why.empty())
        v.violations.push_back({f.path, "link_target", std::move(why)});
      else if (policy == link_policy::none)
        v.violations.push_back({f.path, "link",
                                fmt::format("'{}' is a symbolic link (to '{}'); this contract allows no links: "
                                            "commit a regular file instead",
                                            f.path, f.link_target)});
    } else if (nm == mode_gitlink && !contract_.submodules_allowed) {
      v.violations.push_back({f.path, "gitlink",
                              fmt::format("'{}' is a submodule (a gitlink, mode {}); this contract allows no "
                                          "submodules: add the files themselves, or leave the dependency out",
                                          f.path, mode_text(nm))});
    }
  }
  if (contract_.max_files && d.files.size() > contract_.max_files)
    v.violations.push_back({{}, "max_files",
                            fmt::format("the change touches {} files; the contract allows {}", d.files.size(),
                                        contract_.max_files)});
  if (contract_.max_changed_lines && d.changed_lines() > contract_.max_changed_lines)
    v.violations.push_back({{}, "max_changed_lines",
                            fmt::format("the change adds and removes {} lines; the contract allows {}",
                                        d.changed_lines(), contract_.max_changed_lines)});
  if (contract_.max_added_bytes && d.added_bytes() > contract_.max_added_bytes) {
    const file_change* biggest = nullptr;
    for (const auto& f : d.files)
      if (!biggest || f.added_bytes > biggest->added_bytes) biggest = &f;
    v.violations.push_back(
        {{}, "max_added_bytes",
         fmt::format("the change writes {} bytes of new content ({}; the largest is '{}', {}); the contract allows "
                     "{} ({}): leave generated or downloaded data out of the repository, or write less",
                     d.added_bytes(), human_bytes(d.added_bytes()), biggest->path, human_bytes(biggest->added_bytes),
                     contract_.max_added_bytes, human_bytes(contract_.max_added_bytes))});
  }
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
                      {"protected_paths", strings(c.protected_paths)},
                      {"protected_allowed", c.protected_allowed},
                      {"max_files", c.max_files},
                      {"max_changed_lines", c.max_changed_lines},
                      {"max_added_bytes", c.max_added_bytes},
                      {"binary_allowed", c.binary_allowed},
                      {"executable_allowed", c.executable_allowed},
                      {"links", to_string(c.links)},
                      {"submodules_allowed", c.submodules_allowed},
                      {"time_box", json::object{{"wall_seconds", c.time.wall.count()},
                                                {"model_turns", c.time.model_turns},
                                                {"tokens", c.time.tokens},
                                                {"cost", c.time.cost}}}};
}

void tag_invoke(json::value_from_tag, json::value& v, const task_contract& c) { v = to_json_value(c); }

result<task_contract> contract_from_json(const json::value& v) {
  if (!v.is_object())
    return fail(error::invalid_argument,
                fmt::format("contract: must be a JSON object, got {}", agentcore::json_kind_name(v)));
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
  {
    auto r = json_field_or<std::vector<std::string>>(o, "protected_paths", default_protected_paths(), "contract");
    if (!r) return r.error();
    c.protected_paths = std::move(*r);
  }
  AGENTCORE_FIELD(o, "protected_allowed", bool, c.protected_allowed)
  AGENTCORE_FIELD(o, "max_files", std::uint64_t, c.max_files)
  AGENTCORE_FIELD(o, "max_changed_lines", std::uint64_t, c.max_changed_lines)
  AGENTCORE_FIELD(o, "max_added_bytes", std::uint64_t, c.max_added_bytes)
  AGENTCORE_FIELD(o, "binary_allowed", bool, c.binary_allowed)
  AGENTCORE_FIELD(o, "executable_allowed", bool, c.executable_allowed)
  AGENTCORE_FIELD(o, "submodules_allowed", bool, c.submodules_allowed)
  {
    std::string links;
    AGENTCORE_FIELD(o, "links", std::string, links)
    if (!links.empty()) {
      auto p = parse_link_policy(links);
      if (!p)
        return fail(error::invalid_argument,
                    fmt::format("contract: field \"links\" is '{}'; write \"none\", \"inside\" or \"any\"", links));
      c.links = *p;
    }
  }
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

}  // namespace agentcore::contract
