#include <agentcore/runtime/config.hpp>

#include <agentcore/model/registry.hpp>
#include <agentcore/observe/dashboard.hpp>
#include <agentcore/store/etcd_store.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <set>

namespace agentcore::runtime {

namespace {

error_info bad(std::string_view field, std::string_view want, const json::value& got) {
  std::string shown = json::serialize(got);
  if (shown.size() > 60) {
    shown.resize(57);
    shown += "...";
  }
  return fail(error::invalid_argument,
              fmt::format("configuration: '{}' must be {}, not {}", field, want, shown));
}

// Reads the fields of one object, remembering which were read so that the
// rest can be reported as unknown.
class reader {
public:
  reader(const json::object& o, std::string prefix) : o_(o), prefix_(std::move(prefix)) {}

  const json::value* get(std::string_view k) {
    seen_.insert(std::string(k));
    auto* v = o_.if_contains(k);
    return v && !v->is_null() ? v : nullptr;
  }
  std::string name(std::string_view k) const { return prefix_ + std::string(k); }

  error_info str(std::string_view k, std::string& out) {
    if (auto* v = get(k)) {
      if (!v->is_string()) return bad(name(k), "a string", *v);
      out = std::string(v->get_string());
    }
    return {};
  }
  error_info strings(std::string_view k, std::vector<std::string>& out) {
    if (auto* v = get(k)) {
      if (!v->is_array()) return bad(name(k), "an array of strings", *v);
      out.clear();
      for (const auto& x : v->as_array()) {
        if (!x.is_string()) return bad(name(k), "an array of strings", *v);
        out.emplace_back(x.get_string());
      }
    }
    return {};
  }
  error_info count(std::string_view k, std::size_t& out, std::size_t min = 0, std::size_t max = 1'000'000) {
    if (auto* v = get(k)) {
      std::int64_t n = -1;
      if (v->is_int64()) n = v->get_int64();
      else if (v->is_uint64() && v->get_uint64() < 1'000'000'000) n = static_cast<std::int64_t>(v->get_uint64());
      if (n < static_cast<std::int64_t>(min) || n > static_cast<std::int64_t>(max))
        return bad(name(k), fmt::format("a whole number from {} to {}", min, max), *v);
      out = static_cast<std::size_t>(n);
    }
    return {};
  }
  error_info boolean(std::string_view k, bool& out) {
    if (auto* v = get(k)) {
      if (!v->is_bool()) return bad(name(k), "true or false", *v);
      out = v->get_bool();
    }
    return {};
  }
  error_info path(std::string_view k, std::filesystem::path& out, const std::filesystem::path& base) {
    std::string s;
    if (auto e = str(k, s)) return e;
    if (!s.empty()) out = std::filesystem::path(s).is_absolute() ? std::filesystem::path(s) : base / s;
    return {};
  }
  error_info unknown() const {
    for (const auto& [k, v] : o_)
      if (!seen_.count(std::string(k)))
        return fail(error::invalid_argument, fmt::format("configuration: unknown field '{}'; remove it or check its "
                                                         "spelling",
                                                         name(k)));
    return {};
  }

private:
  const json::object& o_;
  std::string prefix_;
  std::set<std::string> seen_;
};

#define AGENTCORE_CHECK(expr) \
  if (auto e_ = (expr)) return e_

}  // namespace

namespace {
bool valid_name(std::string_view n) {
  return std::all_of(n.begin(), n.end(), [](unsigned char ch) { return std::isalnum(ch) || ch == '.' || ch == '_' || ch == '-'; });
}
error_info read_limits(const json::value& v, const std::string& field, model::budget_limits& out) {
  if (!v.is_object()) return bad(field, "an object {\"tokens\", \"cost\"}", v);
  reader lr(v.as_object(), field + ".");
  if (auto* t = lr.get("tokens")) {
    std::uint64_t n = t->is_uint64() ? t->get_uint64() : t->is_int64() && t->get_int64() > 0 ? static_cast<std::uint64_t>(t->get_int64()) : 0;
    if (n == 0) return bad(field + ".tokens", "a whole number above 0", *t);
    out.tokens = n;
  }
  if (auto* c = lr.get("cost")) {
    if (!c->is_number() || !(c->to_number<double>() > 0)) return bad(field + ".cost", "a number above 0", *c);
    out.cost = c->to_number<double>();
  }
  return lr.unknown();
}
json::value limits_json(const model::budget_limits& l) {
  json::object o;
  if (l.tokens) o["tokens"] = *l.tokens;
  if (l.cost) o["cost"] = *l.cost;
  return o;
}
json::value budgets_json(const run_budgets& b) {
  json::object roles;
  for (const auto& [k, v] : b.roles) roles[k] = limits_json(v);
  return json::object{{"run", limits_json(b.run)}, {"roles", std::move(roles)}, {"task", limits_json(b.task)}};
}
json::array roles_json(const swarm_config::role_set& r) {
  json::array a;
  if (r.planner) a.emplace_back("planner");
  if (r.worker) a.emplace_back("worker");
  if (r.gate) a.emplace_back("gate");
  if (r.judge) a.emplace_back("judge");
  return a;
}
}  // namespace

result<swarm_config> config_from_json(const json::value& v, const std::filesystem::path& base_dir) {
  if (!v.is_object()) return bad("(the configuration)", "a JSON object", v);
  reader r(v.as_object(), "");
  swarm_config c;
  if (auto* s = r.get("schema")) {
    if (!s->is_int64() || s->get_int64() < 1)
      return bad("schema", fmt::format("{}", config_schema), *s);
    if (s->get_int64() > config_schema)
      return fail(error::unsupported_format,
                  fmt::format("configuration: schema {} is newer than this agentcore reads ({}); upgrade agentcore",
                              s->get_int64(), config_schema));
  } else {
    return fail(error::invalid_argument, "configuration: 'schema' is missing; write \"schema\": 1");
  }
  AGENTCORE_CHECK(r.path("repository", c.repository, base_dir));
  if (c.repository.empty())
    return fail(error::invalid_argument, "configuration: 'repository' is missing; name the git repository to work on");
  AGENTCORE_CHECK(r.str("branch", c.branch));
  if (!c.branch.starts_with("refs/heads/"))
    return bad("branch", "a full branch name like \"refs/heads/main\"", json::value(c.branch));
  AGENTCORE_CHECK(r.str("goal", c.goal));
  AGENTCORE_CHECK(r.strings("goal_checks", c.goal_checks));
  AGENTCORE_CHECK(r.str("store", c.store));
  if (c.store.starts_with("etcd://") || c.store.starts_with("etcds://")) {
    if (auto e = store::parse_etcd_url(c.store); !e)
      return bad("store", "\"etcd://HOST:PORT[,HOST:PORT...]/PREFIX\"", json::value(c.store));
  } else if (c.store != "memory:" && !c.store.starts_with("file:")) {
    return bad("store", "\"memory:\", \"file:DIR\" or \"etcd://HOST:PORT[,HOST:PORT...]/PREFIX\"",
               json::value(c.store));
  }
  if (c.store.starts_with("file:")) {
    std::filesystem::path p = c.store.substr(5);
    if (p.empty()) return bad("store", "\"file:DIR\" with a directory", json::value(c.store));
    c.store = "file:" + (p.is_absolute() ? p : base_dir / p).string();
  }
  if (auto* w = r.get("worktrees")) {
    if (!w->is_object()) return bad("worktrees", "an object {\"root\", \"slots\"}", *w);
    reader wr(w->as_object(), "worktrees.");
    AGENTCORE_CHECK(wr.path("root", c.worktrees, base_dir));
    AGENTCORE_CHECK(wr.count("slots", c.slots, 1, 4096));
    AGENTCORE_CHECK(wr.unknown());
  }
  AGENTCORE_CHECK(r.count("planners", c.planners, 0, 64));
  AGENTCORE_CHECK(r.count("workers", c.workers, 0, 100000));
  AGENTCORE_CHECK(r.count("threads", c.threads, 1, 256));
  if (auto* m = r.get("models")) {
    if (!m->is_object()) return bad("models", "an object {\"planner\", \"worker\", \"judge\"} of model specs", *m);
    reader mr(m->as_object(), "models.");
    AGENTCORE_CHECK(mr.str("planner", c.models.planner));
    AGENTCORE_CHECK(mr.str("worker", c.models.worker));
    AGENTCORE_CHECK(mr.str("judge", c.models.judge));
    AGENTCORE_CHECK(mr.unknown());
  }
  // A transcript is relative to the configuration, the default one too.
  for (auto* spec : {&c.models.planner, &c.models.worker, &c.models.judge})
    if (spec->starts_with("replay:")) {
      std::filesystem::path p = spec->substr(7);
      if (!p.empty() && p.is_relative()) *spec = "replay:" + (base_dir / p).string();
    }
  if (auto* mo = r.get("model_options")) {
    if (!mo->is_object()) return bad("model_options", "an object of model options", *mo);
    c.model_options = mo->as_object();
    if (auto prices = model::prices_from_options(c.model_options); !prices)
      return fail(error::invalid_argument, fmt::format("configuration: {}", prices.error().message()));
  }
  if (auto* b = r.get("budgets")) {
    if (!b->is_object()) return bad("budgets", "an object {\"run\", \"roles\", \"task\"}", *b);
    reader br(b->as_object(), "budgets.");
    if (auto* v = br.get("run")) AGENTCORE_CHECK(read_limits(*v, "budgets.run", c.budgets.run));
    if (auto* v = br.get("task")) AGENTCORE_CHECK(read_limits(*v, "budgets.task", c.budgets.task));
    if (auto* v = br.get("roles")) {
      if (!v->is_object()) return bad("budgets.roles", "an object {\"planner\", \"worker\", \"judge\"}", *v);
      for (const auto& [k, lim] : v->as_object()) {
        std::string role(k);
        if (role != "planner" && role != "worker" && role != "judge")
          return fail(error::invalid_argument,
                      fmt::format("configuration: 'budgets.roles.{}' names no role; use \"planner\", \"worker\" or "
                                  "\"judge\"",
                                  role));
        AGENTCORE_CHECK(read_limits(lim, "budgets.roles." + role, c.budgets.roles[role]));
      }
    }
    AGENTCORE_CHECK(br.unknown());
  }
  if (auto* g = r.get("gate")) {
    if (!g->is_object()) return bad("gate", "an object {\"policy\", \"batch_size\", \"deep_checks\"}", *g);
    reader gr(g->as_object(), "gate.");
    std::string policy;
    AGENTCORE_CHECK(gr.str("policy", policy));
    if (policy == "serial") c.gate_policy = gate::policy::serial;
    else if (policy == "batch" || policy.empty()) c.gate_policy = gate::policy::batch;
    else if (policy == "optimistic") c.gate_policy = gate::policy::optimistic;
    else return bad("gate.policy", "\"serial\", \"batch\" or \"optimistic\"", json::value(policy));
    AGENTCORE_CHECK(gr.count("batch_size", c.batch_size, 1, 1024));
    std::size_t wait = static_cast<std::size_t>(c.batch_wait.count());
    AGENTCORE_CHECK(gr.count("batch_wait_ms", wait, 0, 3'600'000));
    c.batch_wait = std::chrono::milliseconds(wait);
    AGENTCORE_CHECK(gr.strings("deep_checks", c.deep_checks));
    AGENTCORE_CHECK(gr.unknown());
  }
  if (auto* k = r.get("contract")) {
    if (!k->is_object()) return bad("contract", "a task contract object", *k);
    json::object co = k->as_object();
    if (!co.contains("schema")) co["schema"] = contract::contract_schema;
    auto parsed = contract::contract_from_json(co);
    if (!parsed)
      return fail(error::invalid_argument, fmt::format("configuration: 'contract': {}", parsed.error().message()));
    c.contract = std::move(*parsed);
  }
  if (auto* k = r.get("ceiling")) {
    auto parsed = contract::ceiling_from_json(*k);
    if (!parsed)
      return fail(error::invalid_argument, fmt::format("configuration: 'ceiling': {}", parsed.error().message()));
    c.ceiling = std::move(*parsed);
  }
  if (auto* ss = r.get("subsystems")) {
    if (!ss->is_array()) return bad("subsystems", "an array of {\"name\", \"paths\", \"description\", \"model\"}", *ss);
    std::size_t i = 0;
    for (const auto& s : ss->as_array()) {
      auto where = fmt::format("subsystems[{}].", i++);
      if (!s.is_object()) return bad(where.substr(0, where.size() - 1), "an object", s);
      reader sr(s.as_object(), where);
      roles::subsystem sub;
      AGENTCORE_CHECK(sr.str("name", sub.name));
      AGENTCORE_CHECK(sr.strings("paths", sub.paths));
      AGENTCORE_CHECK(sr.str("description", sub.description));
      AGENTCORE_CHECK(sr.str("model", sub.model));
      AGENTCORE_CHECK(sr.unknown());
      if (sub.name.empty()) return bad(where + "name", "a non-empty name", json::value(sub.name));
      if (sub.paths.empty()) return bad(where + "paths", "at least one path glob", json::array());
      for (const auto& p : sub.paths)
        if (auto g = contract::glob::compile(p); !g)
          return fail(error::invalid_argument, fmt::format("configuration: '{}paths': {}", where, g.error().message()));
      c.subsystems.push_back(std::move(sub));
    }
  }
  if (auto* pl = r.get("planning")) {
    if (!pl->is_object()) return bad("planning", "an object {\"max_open_tasks\", \"max_new_tasks\"}", *pl);
    reader pr(pl->as_object(), "planning.");
    AGENTCORE_CHECK(pr.count("max_open_tasks", c.max_open_tasks, 1, 1'000'000));
    AGENTCORE_CHECK(pr.count("max_new_tasks", c.max_new_tasks, 1, 10'000));
    AGENTCORE_CHECK(pr.count("keep_finished", c.keep_finished, 0, 1'000'000'000));
    std::string when;
    AGENTCORE_CHECK(pr.str("when", when));
    if (when == "finished" || when.empty()) c.plan_when = swarm_config::plan_schedule::finished;
    else if (when == "drained") c.plan_when = swarm_config::plan_schedule::drained;
    else return bad("planning.when", "\"finished\" or \"drained\"", json::value(when));
    AGENTCORE_CHECK(pr.unknown());
  }
  if (auto* j = r.get("judge")) {
    if (!j->is_object()) return bad("judge", "an object {\"merges_per_cycle\", \"cycle_seconds\", \"max_cycles\", \"review\"}", *j);
    reader jr(j->as_object(), "judge.");
    std::size_t secs = static_cast<std::size_t>(c.cycle_time.count());
    AGENTCORE_CHECK(jr.count("merges_per_cycle", c.merges_per_cycle, 0, 1'000'000));
    AGENTCORE_CHECK(jr.count("cycle_seconds", secs, 0, 100'000'000));
    AGENTCORE_CHECK(jr.count("max_cycles", c.max_cycles, 0, 1'000'000));
    AGENTCORE_CHECK(jr.boolean("review", c.review));
    AGENTCORE_CHECK(jr.count("restart_stalls", c.restart_stalls, 0, 1'000'000));
    AGENTCORE_CHECK(jr.count("converge_cycles", c.converge_cycles, 0, 1'000'000));
    AGENTCORE_CHECK(jr.unknown());
    c.cycle_time = std::chrono::seconds(secs);
  }
  std::size_t lease = static_cast<std::size_t>(c.lease.count());
  AGENTCORE_CHECK(r.count("lease_seconds", lease, 1, 86400));
  c.lease = std::chrono::seconds(lease);
  std::string sandbox;
  AGENTCORE_CHECK(r.str("sandbox", sandbox));
  if (sandbox == "required" || sandbox.empty()) c.sandbox = process::sandbox_mode::required;
  else if (sandbox == "unconfined-host-access") c.sandbox = process::sandbox_mode::unconfined_host_access;
  else if (sandbox == "off" || sandbox == "automatic")
    return fail(error::invalid_argument,
                fmt::format("configuration: \"sandbox\": \"{}\" is no longer accepted: it let agent commands run with "
                            "the host's powers without saying so. Install bubblewrap (scripts/install-deps.sh) and "
                            "write \"required\" (the default), or write \"unconfined-host-access\" if the host "
                            "confines commands itself",
                            sandbox));
  else return bad("sandbox", "\"required\" or \"unconfined-host-access\"", json::value(sandbox));
  if (auto* rv = r.get("roles")) {
    if (!rv->is_array() || rv->as_array().empty())
      return bad("roles", "a non-empty array of \"planner\", \"worker\", \"gate\", \"judge\"", *rv);
    std::string list;
    for (const auto& x : rv->as_array()) {
      if (!x.is_string()) return bad("roles", "an array of \"planner\", \"worker\", \"gate\", \"judge\"", *rv);
      list += (list.empty() ? "" : ",") + std::string(x.get_string());
    }
    auto roles = parse_roles(list);
    if (!roles) return bad("roles", "an array of \"planner\", \"worker\", \"gate\", \"judge\"", *rv);
    c.roles = *roles;
  }
  AGENTCORE_CHECK(r.str("remote", c.remote));
  if (!c.remote.empty() && c.remote.find("://") == std::string::npos && c.remote.find('@') == std::string::npos) {
    std::filesystem::path p = c.remote;  // a path: relative to the configuration
    c.remote = (p.is_absolute() ? p : base_dir / p).string();
  }
  AGENTCORE_CHECK(r.str("name", c.name));
  if (!c.name.empty() && !valid_name(c.name)) return bad("name", "letters, digits, '.', '_' or '-'", json::value(c.name));
  AGENTCORE_CHECK(r.str("serve", c.serve));
  if (!c.serve.empty() && !observe::parse_listen_address(c.serve))
    return bad("serve", "\"HOST:PORT\", like \"127.0.0.1:8080\"", json::value(c.serve));
  AGENTCORE_CHECK(r.str("serve_token", c.serve_token));
  AGENTCORE_CHECK(r.unknown());
  if (c.review && c.models.judge.empty())
    return fail(error::invalid_argument, "configuration: 'judge.review' is true but 'models.judge' names no model");
  if (c.worktrees.empty()) c.worktrees = c.repository / ".agentcore" / "slots";
  return c;
}

json::value to_json_value(const swarm_config& c) {
  auto arr = [](const std::vector<std::string>& xs) {
    json::array a;
    for (const auto& x : xs) a.emplace_back(x);
    return a;
  };
  json::array subs;
  for (const auto& s : c.subsystems)
    subs.push_back(json::object{{"name", s.name}, {"paths", arr(s.paths)}, {"description", s.description}, {"model", s.model}});
  auto contract = contract::to_json_value(c.contract);
  std::string_view policy = c.gate_policy == gate::policy::serial ? "serial"
                            : c.gate_policy == gate::policy::batch ? "batch"
                                                                   : "optimistic";
  std::string_view sandbox = process::to_string(c.sandbox);
  return json::object{
      {"schema", config_schema},
      {"repository", c.repository.string()},
      {"branch", c.branch},
      {"goal", c.goal},
      {"goal_checks", arr(c.goal_checks)},
      {"store", c.store},
      {"worktrees", {{"root", c.worktrees.string()}, {"slots", c.slots}}},
      {"planners", c.planners},
      {"workers", c.workers},
      {"threads", c.threads},
      {"models", {{"planner", c.models.planner}, {"worker", c.models.worker}, {"judge", c.models.judge}}},
      {"model_options", c.model_options},
      {"budgets", budgets_json(c.budgets)},
      {"gate",
       {{"policy", policy},
        {"batch_size", c.batch_size},
        {"batch_wait_ms", c.batch_wait.count()},
        {"deep_checks", arr(c.deep_checks)}}},
      {"contract", contract},
      {"ceiling", contract::to_json_value(c.ceiling)},
      {"subsystems", std::move(subs)},
      {"planning",
       {{"max_open_tasks", c.max_open_tasks},
        {"max_new_tasks", c.max_new_tasks},
        {"when", c.plan_when == swarm_config::plan_schedule::drained ? "drained" : "finished"},
        {"keep_finished", c.keep_finished}}},
      {"judge",
       {{"merges_per_cycle", c.merges_per_cycle},
        {"cycle_seconds", c.cycle_time.count()},
        {"max_cycles", c.max_cycles},
        {"review", c.review},
        {"restart_stalls", c.restart_stalls},
        {"converge_cycles", c.converge_cycles}}},
      {"lease_seconds", c.lease.count()},
      {"sandbox", sandbox},
      {"roles", roles_json(c.roles)},
      {"remote", c.remote},
      {"name", c.name},
      {"serve", c.serve},
      {"serve_token", c.serve_token}};
}

bool run_budgets::any() const {
  auto set = [](const model::budget_limits& l) { return l.tokens || l.cost; };
  if (set(run) || set(task)) return true;
  for (const auto& [k, v] : roles)
    if (set(v)) return true;
  return false;
}

result<swarm_config::role_set> parse_roles(std::string_view list) {
  swarm_config::role_set out{false, false, false, false};
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    auto word = list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (word == "planner") out.planner = true;
    else if (word == "worker") out.worker = true;
    else if (word == "gate") out.gate = true;
    else if (word == "judge") out.judge = true;
    else
      return fail(error::invalid_argument, fmt::format("roles: '{}' is not a role; write planner, worker, gate or "
                                                       "judge, separated by commas",
                                                       word));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

result<swarm_config> config_from_text(std::string_view text, const std::filesystem::path& base_dir) {
  boost::system::error_code ec;
  json::parse_options po;
  po.allow_comments = true;
  po.allow_trailing_commas = true;
  auto v = json::parse(text, ec, {}, po);
  if (ec) return fail(error::invalid_argument, fmt::format("configuration: not valid JSON: {}", ec.message()));
  return config_from_json(v, base_dir);
}

std::string commented_config(const swarm_config& c) {
  auto q = [](const auto& x) { return json::serialize(json::value_from(x)); };
  auto list = [&](const std::vector<std::string>& xs) {
    json::array a;
    for (const auto& x : xs) a.emplace_back(x);
    return json::serialize(a);
  };
  std::string s;
  s += "// agentcore swarm configuration (JSON; // comments allowed). Run it with: agentcore run --config FILE\n";
  s += "{\n  \"schema\": 1,\n";
  s += "  // The git repository the swarm works on, and the branch it lands changes on.\n";
  s += fmt::format("  \"repository\": {},\n  \"branch\": {},\n", q(c.repository.string()), q(c.branch));
  s += "  // What the swarm is building, in words (for the planners and the judge)...\n";
  s += fmt::format("  \"goal\": {},\n", q(c.goal));
  s += "  // ...and the commands that say it is done: they run on the branch at each cycle's end.\n";
  s += fmt::format("  \"goal_checks\": {},\n", list(c.goal_checks));
  s += "  // Where the board lives: \"memory:\" (this process only), \"file:DIR\" (durable; resumes after a restart)\n"
       "  // or \"etcd://HOST:PORT[,HOST:PORT...]/PREFIX\" (an etcd cluster).\n";
  s += fmt::format("  \"store\": {},\n", q(c.store));
  s += "  // Across processes: the roles this process runs (planner, worker, gate, judge), the shared repository\n"
       "  // code travels through (workers push, the gate fetches), and this process's name on the board.\n";
  s += fmt::format("  \"roles\": {},\n  \"remote\": {},\n  \"name\": {},\n", json::serialize(roles_json(c.roles)),
                   q(c.remote), q(c.name));
  s += "  // The live dashboard during a run (\"127.0.0.1:8080\"; \"\" for none) and its bearer token, needed to\n"
       "  // serve any address but loopback and for changes through it (requeue, abandon, revert).\n";
  s += fmt::format("  \"serve\": {},\n  \"serve_token\": {},\n", q(c.serve), q(c.serve_token));
  s += "  // Worktree slots: a bounded pool that workers take a slot of when they start a task.\n";
  s += fmt::format("  \"worktrees\": {{\"root\": {}, \"slots\": {}}},\n", q(c.worktrees.string()), c.slots);
  s += "  // How many planners and workers, and threads for blocking work (git, store, commands).\n";
  s += fmt::format("  \"planners\": {},\n  \"workers\": {},\n  \"threads\": {},\n", c.planners, c.workers, c.threads);
  s += "  // A model per role: openai:MODEL, anthropic:MODEL, replay:TRANSCRIPT, cli:claude, plugin:NAME:MODEL.\n";
  s += fmt::format("  \"models\": {{\"planner\": {}, \"worker\": {}, \"judge\": {}}},\n", q(c.models.planner),
                   q(c.models.worker), q(c.models.judge));
  s += "  // Options for the model clients: retry, limits, timeouts, record, prices, budget (see model/registry.hpp).\n";
  s += fmt::format("  \"model_options\": {},\n", json::serialize(c.model_options));
  s += "  // Token and money budgets (money in the unit of model_options' prices), for the run, per role (planner,\n"
       "  // worker, judge) and per task: {\"tokens\": N, \"cost\": X}, either or both. One that runs out stops what it\n"
       "  // covers: the run's or the workers' ends the run naming it; a task's abandons that task.\n";
  s += fmt::format("  \"budgets\": {},\n", json::serialize(budgets_json(c.budgets)));
  s += "  // The merge gate: serial, batch (bisects a failing batch) or optimistic; deep checks run on merged results.\n";
  s += fmt::format("  \"gate\": {{\"policy\": {}, \"batch_size\": {}, \"batch_wait_ms\": {}, \"deep_checks\": {}}},\n",
                   q(c.gate_policy == gate::policy::serial ? "serial"
                     : c.gate_policy == gate::policy::batch ? "batch"
                                                            : "optimistic"),
                   c.batch_size, c.batch_wait.count(), list(c.deep_checks));
  s += "  // Every task's default contract: paths, limits, acceptance checks, time box.\n";
  s += fmt::format("  \"contract\": {},\n", json::serialize(contract::to_json_value(c.contract)));
  s += "  // The most a planner's contract may get: its paths are cut to allowed_paths, protected_paths (CI, build\n"
       "  // scripts, this configuration, .gitmodules, ...) stay closed to every planner's task, limits are capped.\n";
  s += fmt::format("  \"ceiling\": {},\n", json::serialize(contract::to_json_value(c.ceiling)));
  s += "  // Subsystems get sub-planners scoped to their paths: [{\"name\", \"paths\", \"description\", \"model\"}].\n";
  s += fmt::format("  \"subsystems\": {},\n", json::serialize(to_json_value(c).as_object().at("subsystems")));
  s += "  // Planners propose nothing while this many tasks are open, and at most max_new_tasks a round; they plan\n"
       "  // when tasks finish (\"finished\") or in waves, when nothing is open (\"drained\": replays need this).\n"
       "  // Finished tasks beyond the newest keep_finished move to the store's archive.\n";
  s += fmt::format("  \"planning\": {{\"max_open_tasks\": {}, \"max_new_tasks\": {}, \"when\": \"{}\", "
                   "\"keep_finished\": {}}},\n",
                   c.max_open_tasks, c.max_new_tasks,
                   c.plan_when == swarm_config::plan_schedule::drained ? "drained" : "finished", c.keep_finished);
  s += "  // The judge closes a cycle after this many merges or seconds; max_cycles 0 runs until the goal is met.\n"
       "  // It restarts planning after restart_stalls stalls in a cycle, and when converge_cycles cycles in a row\n"
       "  // merged work with heavy churn but no more goal checks passing (stopping if that recurs after the restart).\n";
  s += fmt::format(
      "  \"judge\": {{\"merges_per_cycle\": {}, \"cycle_seconds\": {}, \"max_cycles\": {}, \"review\": {}, "
      "\"restart_stalls\": {}, \"converge_cycles\": {}}},\n",
      c.merges_per_cycle, c.cycle_time.count(), c.max_cycles, c.review ? "true" : "false", c.restart_stalls,
      c.converge_cycles);
  s += "  // A worker's claim, and the gate's lead of the queue, live on a lease of this many seconds, renewed\n"
       "  // while the holder works: a dead holder's task or queue passes on this long after it died.\n";
  s += fmt::format("  \"lease_seconds\": {},\n", c.lease.count());
  s += "  // Agent commands and checks run in bubblewrap (no capabilities, an unprivileged user, no network):\n"
       "  // \"required\", or \"unconfined-host-access\" to run them with the host's powers (only where the host\n"
       "  // confines them itself).\n";
  s += fmt::format("  \"sandbox\": {}\n}}\n", q(std::string(process::to_string(c.sandbox))));
  return s;
}

}  // namespace agentcore::runtime
