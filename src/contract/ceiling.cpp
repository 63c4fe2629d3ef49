#include <agentcore/contract/ceiling.hpp>

#include <fmt/format.h>

#include <algorithm>

namespace agentcore::contract {
namespace {

const char* ceiling_list_name(int list) {
  return list == 0 ? "allowed_paths" : list == 1 ? "forbidden_paths" : "protected_paths";
}

bool is_canonical_git(std::string_view p) { return p == ".git/**" || p == ".git"; }

std::string quoted_list(const std::vector<std::string>& xs, std::size_t max = 6) {
  std::string out;
  for (std::size_t i = 0; i < xs.size() && i < max; ++i) out += (i ? ", '" : "'") + xs[i] + "'";
  if (xs.size() > max) out += fmt::format(" and {} more", xs.size() - max);
  return out.empty() ? std::string("(none)") : out;
}

// "./src/**" is how models often write "src/**": read it so, and say so.
std::vector<std::string> tidy(const std::vector<std::string>& globs, const char* list, std::vector<std::string>& notes) {
  std::vector<std::string> out;
  for (const auto& g : globs) {
    std::string_view v = g;
    while (v.starts_with("./")) v.remove_prefix(2);
    if (v.size() != g.size() && !v.empty()) notes.push_back(fmt::format("{} '{}' read as '{}'", list, g, v));
    out.emplace_back(v.empty() ? std::string_view(g) : v);
  }
  return out;
}

template <class T>
T min_limit(T a, T b) {
  if (a == 0) return b;
  if (b == 0) return a;
  return std::min(a, b);
}

}  // namespace

error_info validate(const ceiling& c) {
  for (int list = 0; list < 3; ++list) {
    const auto& globs = list == 0 ? c.allowed_paths : list == 1 ? c.forbidden_paths : c.protected_paths;
    for (const auto& p : globs) {
      auto g = glob::compile(p);
      if (!g)
        return fail(error::invalid_argument,
                    fmt::format("ceiling: {} (in {})", g.error().message(), ceiling_list_name(list)));
      if (list == 1 && is_canonical_git(p)) continue;
      if (auto why = check_contract_glob(p); !why.empty())
        return fail(error::invalid_argument, fmt::format("ceiling: {} (in {})", why, ceiling_list_name(list)));
    }
  }
  return {};
}

result<narrowing> narrow(const task_contract& proposed, const ceiling& c) {
  if (auto e = validate(c)) return e;
  auto compile_all = [](const std::vector<std::string>& xs) {
    std::vector<glob> out;
    for (const auto& x : xs) out.push_back(glob::compile(x).value());  // validated above
    return out;
  };
  const auto top = compile_all(c.allowed_paths);
  const auto guarded = compile_all(c.protected_paths);

  narrowing n;
  n.contract = proposed;
  auto& out = n.contract;
  auto& notes = n.notes;

  // Protected paths: the ceiling's, plus any the proposal adds. Never granted.
  out.protected_paths = c.protected_paths;
  for (const auto& p : tidy(proposed.protected_paths, "protected path", notes)) {
    if (std::find(out.protected_paths.begin(), out.protected_paths.end(), p) != out.protected_paths.end()) continue;
    auto g = glob::compile(p);
    std::string why = g ? check_contract_glob(p) : g.error().message();
    if (!why.empty()) {
      notes.push_back(fmt::format("protected path '{}' dropped: {}", p, why));
      continue;
    }
    out.protected_paths.push_back(p);
  }
  if (proposed.protected_allowed)
    notes.push_back("protected_allowed cleared: only the host lets a task change protected paths");
  out.protected_allowed = false;
  auto all_guarded = guarded;
  for (std::size_t i = c.protected_paths.size(); i < out.protected_paths.size(); ++i)
    all_guarded.push_back(glob::compile(out.protected_paths[i]).value());

  // Allowed paths: each proposed glob inside the ceiling, or cut to it.
  std::vector<std::string> allowed;
  std::vector<std::string> allowed_notes;
  auto keep = [&](const std::string& p) {
    if (std::find(allowed.begin(), allowed.end(), p) == allowed.end()) allowed.push_back(p);
  };
  for (const auto& p : tidy(proposed.allowed_paths, "allowed path", allowed_notes)) {
    auto g = glob::compile(p);
    if (!g) {
      allowed_notes.push_back(fmt::format("allowed path '{}' dropped: {}", p, g.error().message()));
      continue;
    }
    if (auto why = check_contract_glob(p); !why.empty()) {
      allowed_notes.push_back(fmt::format("allowed path '{}' dropped: {}", p, why));
      continue;
    }
    if (auto it = std::find_if(all_guarded.begin(), all_guarded.end(), [&](const glob& x) { return g->within(x); });
        it != all_guarded.end()) {
      allowed_notes.push_back(fmt::format("allowed path '{}' dropped: it is protected ('{}'); only the host lets a "
                                          "task change protected paths",
                                          p, it->pattern()));
      continue;
    }
    std::vector<std::string> now;  // what p becomes
    if (top.empty() || std::any_of(top.begin(), top.end(), [&](const glob& x) { return g->within(x); })) {
      now.push_back(p);
    } else {
      for (const auto& x : top)
        if (x.within(*g)) now.push_back(x.pattern());
      if (now.empty()) {
        allowed_notes.push_back(fmt::format("allowed path '{}' dropped: it is not inside the ceiling's allowed paths "
                                            "({})",
                                            p, quoted_list(c.allowed_paths)));
        continue;
      }
      allowed_notes.push_back(fmt::format("allowed path '{}' narrowed to the ceiling's {}", p, quoted_list(now)));
    }
    for (const auto& x : now) {
      keep(x);
      auto xg = glob::compile(x).value();
      std::vector<std::string> inside;
      for (const auto& pg : all_guarded)
        if (pg.within(xg)) inside.push_back(pg.pattern());
      if (!inside.empty())
        notes.push_back(fmt::format("allowed path '{}' includes protected paths ({}); they stay closed to this task",
                                    x, quoted_list(inside)));
    }
  }
  notes.insert(notes.begin(), allowed_notes.begin(), allowed_notes.end());
  if (!proposed.allowed_paths.empty() && allowed.empty()) {
    std::string why;
    for (const auto& a : allowed_notes) why += (why.empty() ? "" : "; ") + a;
    n.refused = fmt::format("none of its allowed paths can stand: {}", why);
    return n;
  }
  out.allowed_paths = proposed.allowed_paths.empty() ? c.allowed_paths : std::move(allowed);

  // Forbidden paths: the proposal's (those that name something) and the ceiling's.
  out.forbidden_paths.clear();
  for (const auto& p : tidy(proposed.forbidden_paths, "forbidden path", notes)) {
    auto g = glob::compile(p);
    std::string why = !g ? g.error().message() : is_canonical_git(p) ? std::string() : check_contract_glob(p);
    if (!why.empty()) {
      notes.push_back(fmt::format("forbidden path '{}' dropped: {}", p, why));
      continue;
    }
    if (std::find(out.forbidden_paths.begin(), out.forbidden_paths.end(), p) == out.forbidden_paths.end())
      out.forbidden_paths.push_back(p);
  }
  for (const auto& p : c.forbidden_paths)
    if (std::find(out.forbidden_paths.begin(), out.forbidden_paths.end(), p) == out.forbidden_paths.end())
      out.forbidden_paths.push_back(p);

  // Limits: the smaller; a proposal that asked for more is told.
  auto limit = [&](auto& field, auto top_value, const char* name) {
    auto was = field;
    field = min_limit(field, top_value);
    if (was != 0 && was != field) notes.push_back(fmt::format("{} {} lowered to the ceiling's {}", name, was, field));
  };
  limit(out.max_files, c.max_files, "max_files");
  limit(out.max_changed_lines, c.max_changed_lines, "max_changed_lines");
  limit(out.max_added_bytes, c.max_added_bytes, "max_added_bytes");

  auto permission = [&](bool& field, bool top_value, const char* name) {
    if (field && !top_value) notes.push_back(fmt::format("{} cleared: the ceiling does not allow it", name));
    field = field && top_value;
  };
  permission(out.binary_allowed, c.binary_allowed, "binary_allowed");
  permission(out.executable_allowed, c.executable_allowed, "executable_allowed");
  permission(out.submodules_allowed, c.submodules_allowed, "submodules_allowed");
  if (static_cast<int>(out.links) > static_cast<int>(c.links)) {
    notes.push_back(fmt::format("links '{}' narrowed to the ceiling's '{}'", to_string(out.links), to_string(c.links)));
    out.links = c.links;
  }
  // The result must compile; if the ceiling and the proposal together do
  // not, nothing of it can stand.
  if (auto cc = compiled_contract::compile(out); !cc) n.refused = cc.error().message();
  return n;
}

// --- JSON ---

json::value to_json_value(const ceiling& c) {
  auto strings = [](const std::vector<std::string>& v) {
    json::array a;
    for (const auto& s : v) a.push_back(json::value(s));
    return a;
  };
  return json::object{{"allowed_paths", strings(c.allowed_paths)},
                      {"forbidden_paths", strings(c.forbidden_paths)},
                      {"protected_paths", strings(c.protected_paths)},
                      {"max_files", c.max_files},
                      {"max_changed_lines", c.max_changed_lines},
                      {"max_added_bytes", c.max_added_bytes},
                      {"binary_allowed", c.binary_allowed},
                      {"executable_allowed", c.executable_allowed},
                      {"links", to_string(c.links)},
                      {"submodules_allowed", c.submodules_allowed}};
}

void tag_invoke(json::value_from_tag, json::value& v, const ceiling& c) { v = to_json_value(c); }

result<ceiling> ceiling_from_json(const json::value& v) {
  if (!v.is_object())
    return fail(error::invalid_argument,
                fmt::format("ceiling: must be a JSON object, got {}", agentcore::json_kind_name(v)));
  const auto& o = v.as_object();
  static constexpr std::string_view known[] = {"allowed_paths",     "forbidden_paths", "protected_paths",
                                               "max_files",         "max_changed_lines", "max_added_bytes",
                                               "binary_allowed",    "executable_allowed", "links",
                                               "submodules_allowed"};
  for (const auto& kv : o)
    if (std::find(std::begin(known), std::end(known), std::string_view(kv.key())) == std::end(known))
      return fail(error::invalid_argument,
                  fmt::format("ceiling: unknown field '{}'; remove it or check its spelling", std::string_view(kv.key())));
  ceiling c;
#define AGENTCORE_FIELD(name, type, target)                      \
  {                                                              \
    auto r = json_field_or<type>(o, name, target, "ceiling");    \
    if (!r) return r.error();                                    \
    target = std::move(*r);                                      \
  }
  AGENTCORE_FIELD("allowed_paths", std::vector<std::string>, c.allowed_paths)
  AGENTCORE_FIELD("forbidden_paths", std::vector<std::string>, c.forbidden_paths)
  AGENTCORE_FIELD("protected_paths", std::vector<std::string>, c.protected_paths)
  AGENTCORE_FIELD("max_files", std::uint64_t, c.max_files)
  AGENTCORE_FIELD("max_changed_lines", std::uint64_t, c.max_changed_lines)
  AGENTCORE_FIELD("max_added_bytes", std::uint64_t, c.max_added_bytes)
  AGENTCORE_FIELD("binary_allowed", bool, c.binary_allowed)
  AGENTCORE_FIELD("executable_allowed", bool, c.executable_allowed)
  AGENTCORE_FIELD("submodules_allowed", bool, c.submodules_allowed)
  std::string links(to_string(c.links));
  AGENTCORE_FIELD("links", std::string, links)
#undef AGENTCORE_FIELD
  auto p = parse_link_policy(links);
  if (!p)
    return fail(error::invalid_argument,
                fmt::format("ceiling: field \"links\" is '{}'; write \"none\", \"inside\" or \"any\"", links));
  c.links = *p;
  if (auto e = validate(c)) return e;
  return c;
}

}  // namespace agentcore::contract
