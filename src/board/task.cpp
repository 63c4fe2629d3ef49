#include <agentcore/board/task.hpp>

#include <fmt/format.h>

#include <array>
#include <unordered_set>

namespace agentcore::board {
namespace {

constexpr std::array<std::string_view, 10> state_names = {"proposed", "ready",  "claimed",   "submitted",  "merged",
                                                          "rejected", "failed", "abandoned", "superseded", "reverted"};

}  // namespace

std::string_view to_string(task_state s) noexcept { return state_names[static_cast<std::size_t>(s)]; }

std::optional<task_state> parse_task_state(std::string_view s) noexcept {
  for (std::size_t i = 0; i < state_names.size(); ++i)
    if (state_names[i] == s) return static_cast<task_state>(i);
  return std::nullopt;
}

bool is_terminal(task_state s) noexcept { return s == task_state::merged || s == task_state::superseded; }

bool is_legal(task_state from, task_state to) noexcept {
  using enum task_state;
  switch (from) {
    case proposed: return to == ready || to == superseded;
    case ready: return to == claimed || to == superseded || to == proposed;
    // claimed -> ready: released, or its lease expired.
    case claimed: return to == submitted || to == ready || to == abandoned || to == failed;
    case submitted: return to == merged || to == rejected || to == failed || to == ready;
    // rejected -> claimed: its worker takes it back to resolve a merge conflict.
    case rejected: return to == ready || to == proposed || to == superseded || to == claimed;
    case failed:
    case abandoned:
    case reverted: return to == ready || to == proposed || to == superseded;
    // merged -> reverted: the gate took its merge back out of the branch.
    case merged: return to == reverted;
    case superseded: return false;
  }
  return false;
}

error_info illegal(const task_id& id, task_state from, task_state to) {
  return fail(error::illegal_transition,
              fmt::format("board: task '{}' cannot go from {} to {}", id.str(), to_string(from), to_string(to)));
}

error_info validate(const task& t) {
  if (auto why = validate_id(t.id.str()); !why.empty())
    return fail(error::invalid_task, fmt::format("board: task id: {}", why));
  if (t.priority < min_priority || t.priority > max_priority)
    return fail(error::invalid_task, fmt::format("board: task '{}' has priority {}; use {} to {}", t.id.str(),
                                                 t.priority, min_priority, max_priority));
  std::unordered_set<std::string_view> seen;
  for (const auto& d : t.dependencies) {
    if (auto why = validate_id(d.str()); !why.empty())
      return fail(error::invalid_task, fmt::format("board: task '{}' dependency: {}", t.id.str(), why));
    if (d == t.id) return fail(error::invalid_task, fmt::format("board: task '{}' depends on itself", t.id.str()));
    if (!seen.insert(d.str()).second)
      return fail(error::invalid_task, fmt::format("board: task '{}' lists dependency '{}' twice", t.id.str(), d.str()));
  }
  if (t.parent) {
    if (auto why = validate_id(t.parent->str()); !why.empty())
      return fail(error::invalid_task, fmt::format("board: task '{}' parent: {}", t.id.str(), why));
  }
  if (t.attempts < 0)
    return fail(error::invalid_task, fmt::format("board: task '{}' has {} attempts", t.id.str(), t.attempts));
  return {};
}

json::value to_json_value(const task& t) {
  json::array deps;
  for (const auto& d : t.dependencies) deps.push_back(json::value(d.str()));
  json::array notes;
  for (const auto& n : t.notes) notes.push_back(json::object{{"author", n.author}, {"text", n.text}, {"at_ms", n.at_ms}});
  json::object o;
  o["schema"] = task_schema;
  o["id"] = t.id.str();
  o["title"] = t.title;
  o["description"] = t.description;
  o["subsystem"] = t.subsystem;
  o["priority"] = t.priority;
  o["dependencies"] = std::move(deps);
  o["contract"] = t.contract;
  o["state"] = to_string(t.state);
  o["attempts"] = t.attempts;
  o["parent"] = t.parent ? json::value(t.parent->str()) : json::value(nullptr);
  o["claimed_by"] = t.claimed_by ? json::value(t.claimed_by->str()) : json::value(nullptr);
  o["ready_since_us"] = t.ready_since_us;
  o["notes"] = std::move(notes);
  o["result"] = t.result;
  return o;
}

std::string to_json(const task& t) { return json::serialize(to_json_value(t)); }

void tag_invoke(json::value_from_tag, json::value& v, const task& t) { v = to_json_value(t); }
void tag_invoke(json::value_from_tag, json::value& v, task_state s) { v = to_string(s); }

result<task> task_from_json(const json::value& v) {
  if (!v.is_object())
    return fail(error::invalid_task, fmt::format("board: a task must be a JSON object, got {}", json_kind_name(v)));
  const auto& o = v.as_object();
  auto schema = json_field<std::int64_t>(o, "schema", "board: task");
  if (!schema) return fail(error::invalid_task, schema.error().message());
  if (*schema > task_schema)
    return fail(error::unsupported_format,
                fmt::format("board: task has schema {}, newer than this build's {}; read it with a newer agentcore",
                            *schema, task_schema));
  if (*schema < 1) return fail(error::invalid_task, fmt::format("board: task has schema {}; schemas start at 1", *schema));
  auto id = json_field<std::string>(o, "id", "board: task");
  if (!id) return fail(error::invalid_task, id.error().message());
  std::string what = fmt::format("board: task '{}'", *id);

  task t;
  t.id = task_id(*id);
  error_info err;
  auto str = [&](std::string_view key, std::string& out) {
    if (err) return;
    auto r = json_field_or<std::string>(o, key, {}, what);
    if (!r) err = fail(error::invalid_task, r.error().message());
    else out = std::move(*r);
  };
  str("title", t.title);
  str("description", t.description);
  str("subsystem", t.subsystem);
  if (err) return err;
  auto prio = json_field_or<int>(o, "priority", 0, what);
  if (!prio) return fail(error::invalid_task, prio.error().message());
  t.priority = *prio;
  auto attempts = json_field_or<int>(o, "attempts", 0, what);
  if (!attempts) return fail(error::invalid_task, attempts.error().message());
  t.attempts = *attempts;
  auto since = json_field_or<std::int64_t>(o, "ready_since_us", 0, what);
  if (!since) return fail(error::invalid_task, since.error().message());
  t.ready_since_us = *since;

  auto deps = json_field_or<std::vector<std::string>>(o, "dependencies", {}, what);
  if (!deps) return fail(error::invalid_task, deps.error().message());
  for (auto& d : *deps) t.dependencies.emplace_back(std::move(d));

  auto state = json_field_or<std::string>(o, "state", "proposed", what);
  if (!state) return fail(error::invalid_task, state.error().message());
  auto st = parse_task_state(*state);
  if (!st)
    return fail(error::invalid_task,
                fmt::format("{}: field \"state\" is '{}'; use one of proposed, ready, claimed, submitted, merged, "
                            "rejected, failed, abandoned, superseded",
                            what, *state));
  t.state = *st;

  auto parent = json_field_or<std::string>(o, "parent", {}, what);
  if (!parent) return fail(error::invalid_task, parent.error().message());
  if (!parent->empty()) t.parent = task_id(*parent);
  auto by = json_field_or<std::string>(o, "claimed_by", {}, what);
  if (!by) return fail(error::invalid_task, by.error().message());
  if (!by->empty()) t.claimed_by = worker_id(*by);

  if (auto it = o.find("contract"); it != o.end()) t.contract = it->value();
  if (auto it = o.find("result"); it != o.end()) t.result = it->value();
  if (auto it = o.find("notes"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array())
      return fail(error::invalid_task, fmt::format("{}: field \"notes\" is not an array", what));
    for (const auto& n : it->value().as_array()) {
      if (!n.is_object()) return fail(error::invalid_task, fmt::format("{}: a note is not an object", what));
      task_note note;
      auto a = json_field_or<std::string>(n.as_object(), "author", {}, what);
      auto x = json_field_or<std::string>(n.as_object(), "text", {}, what);
      auto at = json_field_or<std::int64_t>(n.as_object(), "at_ms", 0, what);
      if (!a || !x || !at) return fail(error::invalid_task, fmt::format("{}: a note has a field of the wrong type", what));
      note.author = std::move(*a);
      note.text = std::move(*x);
      note.at_ms = *at;
      t.notes.push_back(std::move(note));
    }
  }
  if (auto e = validate(t)) return e;
  return t;
}

result<task> task_from_json(std::string_view text) {
  auto v = parse_json(text);
  if (!v) return fail(error::invalid_task, "board: task is not valid JSON: " + v.error().message());
  return task_from_json(*v);
}

}  // namespace agentcore::board
