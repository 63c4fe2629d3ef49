#include <agentcore/roles/planner.hpp>

#include <agentcore/agent/loop.hpp>
#include <agentcore/git/repository.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"
#include "detail/offload.hpp"
#include "roles/what_happened.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

namespace agentcore::roles {

namespace {

using detail::offload;

bool is_open(board::task_state s) {
  using enum board::task_state;
  return s == proposed || s == ready || s == claimed || s == submitted;
}

std::string slug(std::string_view title) {
  std::string out;
  for (char c : title) {
    if (std::isalnum(static_cast<unsigned char>(c))) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    else if (!out.empty() && out.back() != '-') out += '-';
    if (out.size() >= 48) break;
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out.empty() ? "task" : out;
}

std::string first_line(std::string_view s, std::size_t n = 200) {
  auto line = s.substr(0, s.find('\n'));
  return std::string(line.substr(0, n));
}

// What went wrong, short: the first line of what_happened, then the end of
// the failing check's output on one line, `n` bytes at most.
std::string report_summary(const json::value& r, std::size_t n = 600) {
  auto text = detail::what_happened(r, n + 200);
  if (text.starts_with("The gate's verdict: ")) text = text.substr(20);
  else if (text.starts_with("The attempt ended as ")) text = text.substr(21);
  std::string out;
  for (char c : text) out += c == '\n' ? ' ' : c;
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > n) out = out.substr(0, n - 3) + "...";
  return out;
}

bool reverted_for_failing_checks(const json::value& result) {
  auto v = gate::verdict_from_json(result);
  if (!v || v->kind != gate::verdict_kind::reverted) return false;
  for (const auto& c : v->checks)
    if (!c.passed()) return true;
  return false;
}

// The model's answer may wrap its JSON in prose or a code fence.
std::string_view json_part(std::string_view text) {
  auto open = text.find('{');
  auto close = text.rfind('}');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return text;
  return text.substr(open, close - open + 1);
}

const char* system_text =
    "You are the planner of a team of software engineers (agents) working on one repository at the same time. You "
    "never write code. You split the goal into small, independent tasks that one engineer can finish in one sitting "
    "and that rarely touch the same files; each task has a contract: which paths it may change, which commands "
    "must pass, and what done means. Prefer several small tasks to one big one. Answer with JSON only.";

std::string answer_format(std::size_t max) {
  return fmt::format(
      "Answer with one JSON object and nothing else: {{\"tasks\": [...]}} with at most {} tasks, each "
      "{{\"id\": \"short-slug\", \"title\": \"...\", \"description\": \"what to do and why, precisely\", "
      "\"priority\": 0, \"dependencies\": [\"id of a task that must land first\"], \"contract\": {{\"allowed_paths\": "
      "[\"src/x/**\"], \"acceptance_checks\": [\"shell command that must pass\"], \"acceptance_criteria\": [\"in "
      "words\"], \"max_files\": 5, \"max_changed_lines\": 300}}}}. Propose no task that repeats an open or merged one. "
      "An empty list is fine when nothing is left to do.",
      max);
}

}  // namespace

json::object proposal_schema() {
  json::object contract{{"type", "object"},
                        {"properties",
                         {{"allowed_paths", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                          {"forbidden_paths", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                          {"acceptance_checks", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                          {"acceptance_criteria", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                          {"max_files", {{"type", "integer"}}},
                          {"max_changed_lines", {{"type", "integer"}}}}}};
  json::object task{{"type", "object"},
                    {"properties",
                     {{"id", {{"type", "string"}}},
                      {"title", {{"type", "string"}}},
                      {"description", {{"type", "string"}}},
                      {"priority", {{"type", "integer"}}},
                      {"dependencies", {{"type", "array"}, {"items", {{"type", "string"}}}}},
                      {"contract", contract}}},
                    {"required", {"title", "description"}}};
  return {{"type", "object"},
          {"properties", {{"tasks", {{"type", "array"}, {"items", task}}}}},
          {"required", {"tasks"}}};
}

std::vector<board::task> parse_proposals(std::string_view answer, const planner_options& o,
                                         std::vector<std::string>& dropped, error_info& parse_error) {
  std::vector<board::task> out;
  boost::system::error_code ec;
  auto v = json::parse(json_part(answer), ec);
  if (ec || !v.is_object() || !v.as_object().contains("tasks") || !v.as_object().at("tasks").is_array()) {
    parse_error = fail(error::invalid_argument,
                       ec ? fmt::format("the answer is not valid JSON ({})", ec.message())
                          : std::string("the answer is not an object with a \"tasks\" array"));
    return out;
  }
  std::size_t n = 0;
  for (const auto& item : v.as_object().at("tasks").as_array()) {
    ++n;
    auto where = fmt::format("task {}", n);
    if (!item.is_object()) {
      dropped.push_back(where + ": not an object");
      continue;
    }
    const auto& p = item.as_object();
    auto str = [&](const char* k) -> std::string {
      auto* f = p.if_contains(k);
      return f && f->is_string() ? std::string(f->get_string()) : std::string();
    };
    board::task t;
    t.title = str("title");
    if (t.title.empty()) {
      dropped.push_back(where + ": no title");
      continue;
    }
    where = fmt::format("task '{}'", first_line(t.title, 80));
    t.description = str("description");
    std::string id = str("id");
    t.id = task_id(id.empty() ? slug(t.title) : id);
    if (auto* pr = p.if_contains("priority"); pr && pr->is_int64())
      t.priority = static_cast<int>(std::clamp<std::int64_t>(pr->get_int64(), board::min_priority, board::max_priority));
    if (auto* deps = p.if_contains("dependencies"); deps && deps->is_array())
      for (const auto& d : deps->as_array())
        if (d.is_string()) t.dependencies.emplace_back(std::string(d.get_string()));
    // The contract: the proposal's fields over the defaults, then narrowed.
    contract::task_contract c = o.default_contract;
    c.protected_paths.clear();  // the ceiling's apply
    c.protected_allowed = false;
    std::vector<std::string> notes;
    if (auto* cv = p.if_contains("contract"); cv && cv->is_object()) {
      json::object co = cv->as_object();
      co["schema"] = contract::contract_schema;
      // Path lists are narrowed glob by glob below, each with its reason: a
      // glob that names no path in the repository costs the task that glob.
      std::vector<std::string> lists[3];
      const char* keys[3] = {"allowed_paths", "forbidden_paths", "protected_paths"};
      std::string bad_list;
      for (int k = 0; k < 3; ++k) {
        auto* a = co.if_contains(keys[k]);
        if (!a) continue;
        if (!a->is_null()) {
          auto r = json::try_value_to<std::vector<std::string>>(*a);
          if (!r) {
            bad_list = keys[k];
            break;
          }
          lists[k] = std::move(*r);
        }
        co.erase(keys[k]);
      }
      if (!bad_list.empty()) {
        dropped.push_back(fmt::format("{}: its contract is not valid: \"{}\" is not a list of path globs", where,
                                      bad_list));
        continue;
      }
      auto parsed = contract::contract_from_json(co);
      if (!parsed) {
        dropped.push_back(fmt::format("{}: its contract is not valid: {}", where, parsed.error().message()));
        continue;
      }
      auto& pc = *parsed;
      if (!lists[0].empty()) c.allowed_paths = lists[0];
      for (auto& f : lists[1]) c.forbidden_paths.push_back(f);
      c.protected_paths = lists[2];  // more protection is welcome; the ceiling's come on top
      if (!pc.acceptance_checks.empty()) c.acceptance_checks = pc.acceptance_checks;
      if (!pc.acceptance_criteria.empty()) c.acceptance_criteria = pc.acceptance_criteria;
      auto at_most = [](auto proposed, auto fallback) {
        return proposed && fallback ? std::min(proposed, fallback) : proposed ? proposed : fallback;
      };
      c.max_files = at_most(pc.max_files, o.default_contract.max_files);
      c.max_changed_lines = at_most(pc.max_changed_lines, o.default_contract.max_changed_lines);
      c.max_added_bytes = at_most(pc.max_added_bytes, o.default_contract.max_added_bytes);
      // Permissions are the host's to give: a model asking for them is told no.
      std::vector<std::string> asked;
      if (pc.protected_allowed) asked.push_back("protected_allowed");
      if (pc.binary_allowed && !c.binary_allowed) asked.push_back("binary_allowed");
      if (pc.executable_allowed && !c.executable_allowed) asked.push_back("executable_allowed");
      if (pc.submodules_allowed && !c.submodules_allowed) asked.push_back("submodules_allowed");
      if (static_cast<int>(pc.links) > static_cast<int>(c.links)) asked.push_back("links");
      if (!asked.empty())
        notes.push_back(fmt::format("contract: the proposal's {} ignored: permissions come from the host, not from "
                                    "a planner",
                                    fmt::join(asked, ", ")));
    }
    c.goal = t.title;
    // Narrowed to the subsystem (for a sub-planner), then to the host's ceiling.
    if (o.scope) {
      contract::ceiling scope{.allowed_paths = o.scope->paths,
                              .protected_paths = {},
                              .max_added_bytes = 0,
                              .links = contract::link_policy::any,
                              .submodules_allowed = true};
      auto n = contract::narrow(c, scope);
      if (!n) {
        dropped.push_back(fmt::format("{}: subsystem '{}': {}", where, o.scope->name, n.error().message()));
        continue;
      }
      if (!n->ok()) {
        dropped.push_back(fmt::format("{}: outside the subsystem '{}' ({}): {}", where, o.scope->name,
                                      fmt::join(o.scope->paths, ", "), n->refused));
        continue;
      }
      for (auto& x : n->notes) notes.push_back(fmt::format("contract narrowed to subsystem '{}': {}", o.scope->name, x));
      c = std::move(n->contract);
      t.subsystem = o.scope->name;
    }
    auto n = contract::narrow(c, o.ceiling);
    if (!n) {
      dropped.push_back(fmt::format("{}: the host's ceiling is not valid: {}", where, n.error().message()));
      continue;
    }
    if (!n->ok()) {
      dropped.push_back(fmt::format("{}: its contract does not fit the host's ceiling: {}", where, n->refused));
      continue;
    }
    for (auto& x : n->notes) notes.push_back("contract narrowed by the host's ceiling: " + x);
    c = std::move(n->contract);
    if (auto compiled = contract::compiled_contract::compile(c); !compiled) {
      dropped.push_back(fmt::format("{}: {}", where, compiled.error().message()));
      continue;
    }
    for (auto& x : notes) t.notes.push_back({o.name, std::move(x), 0});
    t.contract = contract::to_json_value(c);
    if (auto e = board::validate(t)) {
      dropped.push_back(fmt::format("{}: {}", where, e.message()));
      continue;
    }
    out.push_back(std::move(t));
  }
  return out;
}

void tag_invoke(json::value_from_tag, json::value& v, const plan_event& e) {
  auto arr = [](const std::vector<std::string>& xs) {
    json::array a;
    for (const auto& x : xs) a.emplace_back(x);
    return a;
  };
  v = {{"planner", e.planner}, {"proposed", arr(e.proposed)}, {"split", arr(e.split)}, {"dropped", arr(e.dropped)}};
}

struct planner::state : std::enable_shared_from_this<state> {
  board::task_board& board;
  std::filesystem::path repo_path;
  model::client& model;
  planner_options o;
  asio::strand<asio::any_io_executor> strand;

  state(board::task_board& b, std::filesystem::path r, model::client& m, planner_options opts)
      : board(b), repo_path(std::move(r)), model(m), o(std::move(opts)),
        strand(asio::make_strand(o.executor ? o.executor : asio::any_io_executor(asio::system_executor()))) {}

  // A sub-planner owns its subsystem's tasks; the main planner the rest
  // (subsystems listed in its options have planners of their own).
  bool mine(const board::task& t) const {
    if (o.scope) return t.subsystem == o.scope->name;
    return std::none_of(o.subsystems.begin(), o.subsystems.end(), [&](const subsystem& s) { return s.name == t.subsystem; });
  }

  result<std::string> snapshot() {
    std::string s;
    if (!o.goal.empty()) s += "# Goal\n" + o.goal + "\n\n";
    if (!o.findings.empty())
      s += "# Why planning starts afresh\nThe judge of this run restarted planning: " + o.findings +
           "\nPlan from the repository as it is now; do not repeat what did not work.\n\n";
    if (o.scope)
      s += fmt::format("# Your scope\nYou plan only the subsystem '{}' ({}): every task you propose may change only "
                       "paths there.\n{}\n\n",
                       o.scope->name, fmt::join(o.scope->paths, ", "), o.scope->description);
    // The bounds stated, so that proposals fit them; code enforces them (parse_proposals).
    s += "# Limits of every task's contract\n";
    if (!o.ceiling.allowed_paths.empty())
      s += fmt::format("Tasks may change only: {}.\n", fmt::join(o.ceiling.allowed_paths, ", "));
    if (!o.ceiling.protected_paths.empty())
      s += fmt::format("Protected (no task you propose may change them; name them in no contract): {}.\n",
                       fmt::join(o.ceiling.protected_paths, ", "));
    s += "Paths are relative to the repository root: no absolute paths, no '..', nothing in .git.\n\n";
    auto repo = git::repository::open(repo_path);
    if (!repo) return repo.error();
    auto tip = repo->resolve(o.branch);
    if (!tip) return tip.error();
    auto files = repo->list_files(*tip);
    if (!files) return files.error();
    std::map<std::string, std::vector<std::string>> dirs;
    for (const auto& f : *files) {
      auto slash = f.rfind('/');
      dirs[slash == std::string::npos ? std::string(".") : f.substr(0, slash)].push_back(
          slash == std::string::npos ? f : f.substr(slash + 1));
    }
    s += fmt::format("# Files (branch {} at {}, {} files)\n", o.branch, tip->hex().substr(0, 12), files->size());
    std::size_t shown = 0;
    for (const auto& [d, names] : dirs) {
      if (++shown > 150) {
        s += fmt::format("... and {} more directories\n", dirs.size() - 150);
        break;
      }
      s += fmt::format("{}/ ({} files): ", d, names.size());
      for (std::size_t i = 0; i < names.size() && i < 10; ++i) s += (i ? ", " : "") + names[i];
      s += names.size() > 10 ? ", ...\n" : "\n";
    }
    for (const char* readme : {"README.md", "README"}) {
      auto tree = repo->commit_tree(*tip);
      if (!tree) break;
      auto e = repo->entry_at(*tree, readme);
      if (!e || !*e) continue;
      auto text = repo->read_blob((*e)->id);
      if (!text) continue;
      s += fmt::format("\n# {}\n{}\n", readme, text->substr(0, 3000));
      break;
    }
    if (!o.subsystems.empty()) {
      s += "\n# Subsystems\n";
      for (const auto& sub : o.subsystems)
        s += fmt::format("- {} ({}): {}\n", sub.name, fmt::join(sub.paths, ", "), sub.description);
    }
    auto tasks = board.list();
    if (!tasks) return tasks.error();
    std::string open, merged, troubled;
    std::size_t n_merged = 0;
    for (const auto& t : *tasks) {
      if (is_open(t.state))
        open += fmt::format("- [{}] {}: {}\n", to_string(t.state), t.id.str(), first_line(t.title));
      else if (t.state == board::task_state::merged && ++n_merged <= 60)
        merged += fmt::format("- {}: {}\n", t.id.str(), first_line(t.title));
      else if (t.state == board::task_state::rejected || t.state == board::task_state::failed ||
               t.state == board::task_state::abandoned || t.state == board::task_state::reverted)
        troubled += fmt::format("- [{}] {}: {} -- {}\n", to_string(t.state), t.id.str(), first_line(t.title),
                                report_summary(t.result));
    }
    s += "\n# Open tasks\n" + (open.empty() ? std::string("(none)\n") : open);
    std::size_t archived = 0;  // merged long ago: in the board's archive, not in this list
    if (board.options().archive)
      if (auto n = board.options().archive->count(board::task_state::merged)) archived = *n;
    std::size_t unlisted = (n_merged > 60 ? n_merged - 60 : 0) + archived;
    if (unlisted > 0) merged += fmt::format("(and {} merged earlier, not listed)\n", unlisted);
    s += "\n# Merged tasks\n" + (merged.empty() ? std::string("(none)\n") : merged);
    if (!troubled.empty())
      s += "\n# Rejected, failed, abandoned and reverted tasks (with what went wrong; a reverted task's work was "
           "taken back out of main: propose it again, differently, if it is still needed)\n" + troubled;
    return s;
  }

  // A split child does part of its parent's work: its paths stay inside the
  // parent's. Returns why not, or an empty string (the child narrowed, with notes).
  std::string within_parent(board::task& child, const board::task& parent) const {
    if (parent.contract.is_null()) return {};
    auto pc = contract::contract_from_json(parent.contract);
    if (!pc || pc->allowed_paths.empty()) return {};
    auto cc = contract::contract_from_json(child.contract);
    if (!cc) return cc.error().message();
    contract::ceiling bound{.allowed_paths = pc->allowed_paths,
                            .protected_paths = {},
                            .max_added_bytes = 0,
                            .links = contract::link_policy::any,
                            .submodules_allowed = true};
    auto n = contract::narrow(*cc, bound);
    if (!n) return n.error().message();
    if (!n->ok()) return fmt::format("outside its parent's paths ({}): {}", fmt::join(pc->allowed_paths, ", "), n->refused);
    for (auto& x : n->notes)
      child.notes.push_back({o.name, fmt::format("contract narrowed to the parent '{}': {}", parent.id.str(), x), 0});
    child.contract = contract::to_json_value(n->contract);
    return {};
  }

  // Asks the model for tasks; one more try when the answer is not JSON.
  // `task`: the task being split, if any (in the request's tags: events,
  // recordings and replays tell the split of one task from another).
  asio::awaitable<result<std::vector<board::task>>> ask(std::string prompt, plan_report& rep, std::string task) {
    model::request req;
    req.system = system_text;
    req.max_tokens = o.max_tokens;
    req.response_format = proposal_schema();
    req.tags = {.role = o.name, .task = std::move(task)};
    req.messages.push_back(model::user(std::move(prompt)));
    for (int attempt = 0;; ++attempt) {
      auto asked = std::chrono::steady_clock::now();
      auto r = co_await model.async_chat(req, asio::use_awaitable);
      ++rep.model_calls;
      if (!r) co_return r.error();
      rep.usage += r->usage;
      double cost = model::cost_of(r->usage, r->model_name, o.prices);
      rep.cost += cost;
      if (o.events)  // the same event as an agent's turn: metrics, dashboard and judge count every call alike
        o.events->publish(agent::turn_event{
            o.name, req.tags.task, rep.model_calls, {}, r->usage, std::string(model::to_string(r->stop)), r->model_name, cost,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count()});
      std::string text = r->message.text();
      error_info bad;
      auto tasks = parse_proposals(text, o, rep.dropped, bad);
      if (!bad) co_return tasks;
      if (attempt == 1)
        co_return fail(error::invalid_argument, fmt::format("roles: planner '{}': {} twice; nothing proposed", o.name,
                                                            bad.message()));
      req.messages.push_back(model::assistant(text));
      req.messages.push_back(model::user(fmt::format("{}. {}", bad.message(), answer_format(o.max_new_tasks))));
    }
  }

  // Why a proposal repeats archived work (empty when it does not): its id,
  // or its title, is an archived task's.
  result<std::string> archived(const board::task& p) {
    auto by_id = board.get(p.id);  // the board's own are in known_ids: this finds an archived one
    if (!by_id) return by_id.error();
    if (*by_id)
      return fmt::format("'{}': a task with this id exists ({}, archived)", p.id.str(), to_string((*by_id)->state));
    auto by_title = board.archived_merge_titled(p.title);
    if (!by_title) return by_title.error();
    if (*by_title)
      return fmt::format("'{}': duplicates merged task '{}' ('{}', archived)", p.id.str(), (*by_title)->id.str(), p.title);
    return std::string();
  }

  asio::awaitable<result<plan_report>> run() {
    plan_report rep;
    auto tasks = co_await offload(o.blocking, [&] { return board.list(); });
    if (!tasks) co_return tasks.error();
    std::set<std::string> known_ids;
    std::set<std::string> open_titles;
    std::size_t open = 0;
    for (const auto& t : *tasks) {
      known_ids.insert(t.id.str());
      if (is_open(t.state) || t.state == board::task_state::merged) open_titles.insert(board::title_key(t.title));
      if (is_open(t.state) && mine(t)) ++open;
    }

    // Failing work first: retry what failed once, split what keeps failing or stalled.
    for (const auto& t : *tasks) {
      if (!mine(t)) continue;
      // A merge the gate reverted because it broke the deep checks is a
      // failure like a rejection; one a person or the host rolled back is
      // theirs to requeue (or the model's to propose again, seeing it).
      bool troubled = t.state == board::task_state::rejected || t.state == board::task_state::failed ||
                      (t.state == board::task_state::reverted && reverted_for_failing_checks(t.result));
      bool split = t.state == board::task_state::abandoned || (troubled && t.attempts >= o.split_after);
      if (troubled && !split) {
        auto r = co_await offload(o.blocking, [&] {
          return board.requeue(t.id, fmt::format("requeued by {} after: {}", o.name, report_summary(t.result)));
        });
        if (!r && r.error() != error::illegal_transition) co_return r.error();
        continue;
      }
      if (!split) continue;
      std::string prompt = fmt::format(
          "This task did not get done:\n\nTask {}: {}\n{}\n\nContract: {}\n\nWhat happened (attempt {}): {}\n\nSplit it "
          "into at most {} smaller tasks that together do the same, each small enough to finish easily, with ids not "
          "used yet. {}",
          t.id.str(), t.title, t.description, json::serialize(t.contract), t.attempts, detail::what_happened(t.result, 4000),
          o.max_children, answer_format(o.max_children));
      auto children = co_await ask(std::move(prompt), rep, t.id.str());
      if (!children) {
        rep.dropped.push_back(fmt::format("split of '{}': {}", t.id.str(), children.error().message()));
        continue;
      }
      std::vector<board::task> kids;
      std::set<std::string> ids = known_ids;
      for (auto& c : *children) {
        if (kids.size() >= o.max_children) break;
        if (auto why = within_parent(c, t); !why.empty()) {
          rep.dropped.push_back(fmt::format("split of '{}': '{}': {}", t.id.str(), c.id.str(), why));
          continue;
        }
        // A child that is a task the board has (open or merged, by its
        // title) would do that work twice: dropped, whatever its id.
        if (open_titles.count(board::title_key(c.title))) {
          rep.dropped.push_back(fmt::format("split of '{}': '{}': the board has a task titled '{}' already", t.id.str(),
                                            c.id.str(), c.title));
          continue;
        }
        if (board.options().archive) {
          auto done = co_await offload(o.blocking, [&] { return board.archived_merge_titled(c.title); });
          if (!done || *done) {
            rep.dropped.push_back(done ? fmt::format("split of '{}': '{}': merged task '{}' (archived) did that already",
                                                     t.id.str(), c.id.str(), (*done)->id.str())
                                       : fmt::format("split of '{}': '{}': {}", t.id.str(), c.id.str(),
                                                     done.error().message()));
            continue;
          }
        }
        std::string base = c.id.str();
        for (int i = 2; ids.count(c.id.str()); ++i) c.id = task_id(fmt::format("{}-{}", base, i));
        ids.insert(c.id.str());
        std::erase_if(c.dependencies, [&](const task_id& d) { return !ids.count(d.str()) || d == t.id; });
        if (c.subsystem.empty()) c.subsystem = t.subsystem;
        c.priority = t.priority;
        open_titles.insert(board::title_key(c.title));  // (and no two children alike)
        kids.push_back(std::move(c));
      }
      if (kids.empty()) {
        rep.dropped.push_back(fmt::format("split of '{}': no usable smaller task came back", t.id.str()));
        continue;
      }
      auto r = co_await offload(o.blocking, [&] { return board.split(t.id, kids); });
      if (!r) {
        rep.dropped.push_back(fmt::format("split of '{}': {}", t.id.str(), r.error().message()));
        continue;
      }
      rep.split.push_back(t.id);
      for (const auto& k : *r) {
        known_ids.insert(k.id.str());
        open_titles.insert(board::title_key(k.title));
        rep.proposed.push_back(k.id);
        ++open;
      }
    }

    // Then new work, if the board has room.
    if (open < o.max_open_tasks) {
      auto snap = co_await offload(o.blocking, [&] { return snapshot(); });
      if (!snap) co_return snap.error();
      auto proposals =
          co_await ask(*snap + "\n\n" + answer_format(std::min(o.max_new_tasks, o.max_open_tasks - open)), rep, {});
      if (!proposals) co_return proposals.error();
      std::set<std::string> batch;
      for (const auto& p : *proposals) batch.insert(p.id.str());
      std::size_t added = 0;
      for (auto& p : *proposals) {
        if (added >= o.max_new_tasks || open >= o.max_open_tasks) {
          rep.dropped.push_back(fmt::format("'{}': over the limit of new or open tasks", p.id.str()));
          continue;
        }
        if (known_ids.count(p.id.str())) {
          rep.dropped.push_back(fmt::format("'{}': a task with this id exists", p.id.str()));
          continue;
        }
        if (open_titles.count(board::title_key(p.title))) {
          rep.dropped.push_back(fmt::format("'{}': duplicates an open or merged task ('{}')", p.id.str(), p.title));
          continue;
        }
        if (board.options().archive) {
          // Finished long ago and archived: neither on the board nor in its snapshot.
          auto seen = co_await offload(o.blocking, [&] { return archived(p); });
          if (!seen || !seen->empty()) {
            rep.dropped.push_back(seen ? *seen : fmt::format("'{}': {}", p.id.str(), seen.error().message()));
            continue;
          }
        }
        for (const auto& d : p.dependencies)
          if (!known_ids.count(d.str()) && !batch.count(d.str()))
            rep.dropped.push_back(fmt::format("'{}': dependency '{}' does not exist; dropped", p.id.str(), d.str()));
        std::erase_if(p.dependencies, [&](const task_id& d) { return !known_ids.count(d.str()) && !batch.count(d.str()); });
        p.notes.push_back({o.name, "proposed by " + o.name, 0});
        auto r = co_await offload(o.blocking, [&] { return board.propose(p); });
        if (!r) {
          rep.dropped.push_back(fmt::format("'{}': {}", p.id.str(), r.error().message()));
          continue;
        }
        known_ids.insert(p.id.str());
        open_titles.insert(board::title_key(p.title));
        rep.proposed.push_back(p.id);
        ++added;
        ++open;
      }
    }
    if (o.events) {
      plan_event e{o.name, {}, {}, rep.dropped};
      for (const auto& id : rep.proposed) e.proposed.push_back(id.str());
      for (const auto& id : rep.split) e.split.push_back(id.str());
      o.events->publish(std::move(e));
    }
    co_return rep;
  }
};

planner::planner(board::task_board& board, std::filesystem::path repository, model::client& model,
                 planner_options options)
    : state_(std::make_shared<state>(board, std::move(repository), model, std::move(options))) {}
planner::~planner() = default;

const planner_options& planner::options() const noexcept { return state_->o; }
result<std::string> planner::snapshot() { return state_->snapshot(); }
asio::any_io_executor planner::get_executor() const { return state_->o.executor; }

void planner::start(asio::any_completion_handler<void(result<plan_report>)> handler) {
  auto s = state_;
  if (!s->o.executor) {
    detail::post_completion(std::move(handler), result<plan_report>(fail(
                                                    error::invalid_argument, "roles: planner_options::executor is not set")));
    return;
  }
  detail::spawn_operation(s->strand, s->o.executor, s->run(), std::move(handler),
                          [s](const std::string& what) -> result<plan_report> {
                            return fail(error::io_error, fmt::format("roles: planner '{}' failed: {}", s->o.name, what));
                          });
}

}  // namespace agentcore::roles
