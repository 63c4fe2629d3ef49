#include <agentcore/runtime/swarm.hpp>

#include <agentcore/agent/loop.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/model/registry.hpp>
#include <agentcore/roles/planner.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/store/etcd_store.hpp>
#include <agentcore/store/file_store.hpp>
#include <agentcore/store/memory_store.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"
#include "detail/offload.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>

#include <deque>
#include <fstream>
#include <future>
#include <list>

namespace agentcore::runtime {

namespace {

using detail::offload;
using namespace std::chrono_literals;
constexpr auto plan_interval = std::chrono::seconds(1);

bool is_open(board::task_state s) {
  using enum board::task_state;
  return s == proposed || s == ready || s == claimed || s == submitted;
}

// Which file store each run on this repository used, by directory, kept in
// the repository's git directory (GIT_DIR/agentcore/stores: "<id> <path>"
// lines): a store that was deleted or replaced, and so opened as a new empty
// one, would otherwise make the run do its work a second time.
error_info check_store_identity(const git::repository& repo, const store::file_store& s) {
  std::error_code ec;
  auto dir = std::filesystem::weakly_canonical(s.directory(), ec);
  if (ec) dir = std::filesystem::absolute(s.directory());
  auto file = repo.git_dir() / "agentcore" / "stores";
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    auto space = line.find(' ');
    if (space == std::string::npos || line.substr(space + 1) != dir.string()) continue;
    if (line.substr(0, space) == s.id()) return {};
    return fail(error::corrupt,
                fmt::format("runtime: the store at '{}' is not the one earlier runs on '{}' used (that one was {}, this "
                            "is {}): it was deleted or replaced, and the board it held (what was merged, what was "
                            "in flight) is gone. Restore it from a backup; or, to start over and do the work again, "
                            "remove its line from '{}'",
                            dir.string(), repo.workdir().string(), line.substr(0, space), s.id(), file.string()));
  }
  std::filesystem::create_directories(file.parent_path(), ec);
  std::ofstream out(file, std::ios::app);
  out << s.id() << ' ' << dir.string() << '\n';
  out.flush();
  if (!out)
    return fail(error::io_error, fmt::format("runtime: cannot record the store's identity in '{}'", file.string()));
  return {};
}

}  // namespace

result<std::unique_ptr<store::store>> open_store(const std::string& uri, store_open_options options) {
  if (uri == "memory:") return std::unique_ptr<store::store>(store::memory_store::create());
  if (uri.starts_with("file:")) {
    auto s = store::file_store::open(uri.substr(5), {.read_only = options.read_only});
    if (!s) return s.error();
    return std::unique_ptr<store::store>(std::move(*s));
  }
  if (uri.starts_with("etcd://") || uri.starts_with("etcds://")) {
    auto o = store::parse_etcd_url(uri);
    if (!o) return o.error();
    auto s = store::etcd_store::connect(std::move(*o));
    if (!s) return s.error();
    return std::unique_ptr<store::store>(std::move(*s));
  }
  return fail(error::invalid_argument,
              fmt::format("runtime: store '{}' is not one this agentcore opens: use \"memory:\", \"file:DIR\" or "
                          "\"etcd://HOST:PORT[,HOST:PORT...]/PREFIX\"",
                          uri));
}

result<std::shared_ptr<board::task_archive>> open_archive(const std::string& uri, store::store& s,
                                                          store_open_options options) {
  if (uri.starts_with("file:"))
    return board::open_sqlite_archive(std::filesystem::path(uri.substr(5)) / "archive.sqlite",
                                      {.read_only = options.read_only});
  if (uri.starts_with("etcd://") || uri.starts_with("etcds://")) return board::make_store_archive(s, "board/archive/");
  return std::shared_ptr<board::task_archive>();
}

void tag_invoke(json::value_from_tag, json::value& v, const swarm_event& e) {
  v = {{"what", e.what}, {"detail", e.detail}};
}

void tag_invoke(json::value_from_tag, json::value& v, const swarm_report& r) {
  json::object states;
  for (const auto& [k, n] : r.tasks_by_state) states[k] = n;
  json::array judgements;
  for (const auto& j : r.judgements)
    judgements.push_back(json::object{{"cycle", j.cycle},
                                      {"decision", to_string(j.verdict)},
                                      {"reason", j.reason},
                                      {"figures", json::value_from(j.figures)},
                                      {"goal_met", j.goal_met}});
  v = {{"cycles", r.cycles},
       {"merged", r.merged},
       {"rejected", r.rejected},
       {"conflicts_resolved", r.conflicts_resolved},
       {"contract_violations", r.contract_violations},
       {"abandoned", r.abandoned},
       {"stalls", r.stalls},
       {"split", r.split},
       {"refused_writes", r.refused_writes},
       {"tasks_total", r.tasks_total},
       {"tasks_by_state", std::move(states)},
       {"input_tokens", r.usage.input_tokens},
       {"output_tokens", r.usage.output_tokens},
       {"cost", r.cost},
       {"elapsed_ms", r.elapsed.count()},
       {"goal_met", r.goal_met},
       {"stopped", r.stopped},
       {"reason", r.reason},
       {"budget_exhausted", r.budget_exhausted},
       {"judgements", std::move(judgements)}};
}

struct swarm::state : std::enable_shared_from_this<state> {
  swarm_config cfg;
  swarm_hooks hooks;
  std::unique_ptr<asio::io_context> own_io;  // when the host gave no executor
  asio::any_io_executor ex;
  asio::strand<asio::any_io_executor> strand;
  asio::thread_pool blocking;
  std::unique_ptr<event_bus> own_bus;
  event_bus* bus = nullptr;
  std::unique_ptr<store::store> store;
  std::optional<board::task_board> board;
  std::unique_ptr<git::worktree_pool> pool;
  std::unique_ptr<gate::merge_gate> gate;
  std::map<std::string, std::shared_ptr<model::client>> clients;  // by role
  std::vector<std::unique_ptr<roles::worker>> workers;
  std::vector<std::unique_ptr<roles::planner>> planners;
  std::unique_ptr<roles::judge> judge;
  std::vector<event_bus::subscription> subs;

  // Run state: touched on the strand only (bus callbacks post there).
  std::atomic<bool> stopping{false};
  bool finished = false;
  bool need_plan = true;
  bool worker_went_idle = false;  // since the last planning round
  std::chrono::steady_clock::time_point last_plan{};
  std::size_t worker_tokens = 1;  // workers that may hold a task (and so a slot) at once
  std::size_t total_tokens = 1;
  std::deque<std::shared_ptr<asio::steady_timer>> token_waiters;
  std::list<std::shared_ptr<asio::steady_timer>> idle_waiters;
  std::list<std::shared_ptr<asio::steady_timer>> backoff_waiters;  // cut short only by stop
  std::shared_ptr<asio::steady_timer> wake_main, wake_gate;
  std::size_t loops_running = 0;
  swarm_report report;
  std::atomic<std::size_t> refused{0};
  std::chrono::steady_clock::time_point started;
  git::oid cycle_tip;  // with a remote: the shared branch at the cycle's start (zero: not read yet)
  bool branch_moved = false;  // since cycle_tip
  std::chrono::steady_clock::time_point last_fetch{};
  std::chrono::steady_clock::time_point last_archive{};
  static constexpr const char* run_key = "swarm/run";  // {"state": "running" | "finished", "reason"}

  // Prices and budgets. Every model call is priced (its agent.turn event
  // carries the cost); usage and cost of the report add those events up.
  model::price_table prices;
  std::mutex spent_mutex;
  model::usage spent_usage;
  double spent_cost = 0;
  std::shared_ptr<model::budget> run_budget;  // null: no budgets configured
  std::map<std::string, std::shared_ptr<model::budget>> role_budgets;  // fixed after create()
  std::mutex task_budgets_mutex;
  std::map<std::string, std::shared_ptr<model::budget>> task_budgets;  // dropped when the task is done
  std::string budget_stop;  // on the strand: a budget that ends the run
  error_info store_failed;  // on the strand: the store took no more work (a failed write): the run ends with it

  /// Whether `e` means the store is gone for good (a file store that failed
  /// a write stops taking commits until it is reopened): then the run ends
  /// with that error instead of every loop retrying it forever.
  bool store_gone(const error_info& e) {
    if (!(e == error::closed)) return false;
    auto probe = store->current_revision();
    if (probe || !(probe.error() == error::closed)) return false;
    if (!store_failed) {
      store_failed = probe.error();
      publish("error", "the store takes no more work; the run ends: " + store_failed.message());
      poke_main();
    }
    return true;
  }

  // A judge's restart starts afresh: attempts older than the cycle are ended,
  // and the planners are rebuilt with the judge's findings.
  std::mutex claims_mutex;
  std::map<std::string, std::chrono::steady_clock::time_point> claimed_at;  // by worker id
  std::chrono::steady_clock::time_point cycle_started = std::chrono::steady_clock::now();  // strand
  std::string findings;  // strand
  bool planner_budget_said = false;

  // "planner", "planner-2" and sub-planners are the planner role.
  static std::string budget_role(std::string_view tag) {
    if (tag.starts_with("planner")) return "planner";
    if (tag == "worker" || tag == "judge") return std::string(tag);
    return "other";
  }
  std::shared_ptr<model::budget> pick_budget(const model::request& r) {
    auto role = role_budgets.find(budget_role(r.tags.role));
    auto& rb = role == role_budgets.end() ? role_budgets.at("other") : role->second;
    // A task's budget is its workers' spending (a planner's split of it is the planner's).
    if (r.tags.task.empty() || budget_role(r.tags.role) != "worker" || !(cfg.budgets.task.tokens || cfg.budgets.task.cost))
      return rb;
    std::lock_guard lock(task_budgets_mutex);
    auto& tb = task_budgets[r.tags.task];
    if (!tb) tb = rb->child("task " + r.tags.task, cfg.budgets.task);
    return tb;
  }
  bool task_budget_exhausted(const task_id& id) {
    std::lock_guard lock(task_budgets_mutex);
    auto it = task_budgets.find(id.str());
    return it != task_budgets.end() && it->second->spent();
  }
  // What stops `role` for lack of budget (its own or the run's); none when it may go on.
  error_info budget_left(const char* role) const {
    if (!run_budget) return {};
    return role_budgets.at(role)->check();
  }

  explicit state(swarm_config c, swarm_hooks h)
      : cfg(std::move(c)), hooks(std::move(h)),
        own_io(hooks.executor ? nullptr : std::make_unique<asio::io_context>()),
        ex(hooks.executor ? hooks.executor : own_io->get_executor()), strand(asio::make_strand(ex)),
        blocking(std::max<std::size_t>(cfg.threads, 1)) {}

  void publish(std::string what, std::string detail = {}) { bus->publish(swarm_event{std::move(what), std::move(detail)}); }

  // Wakes the main loop (from any thread).
  void poke_main() {
    asio::post(strand, [s = shared_from_this()] {
      if (s->wake_main) s->wake_main->cancel();
    });
  }
  void poke_workers() {
    asio::post(strand, [s = shared_from_this()] {
      for (auto& t : s->idle_waiters) t->cancel();
      s->idle_waiters.clear();
    });
  }
  void poke_gate() {
    asio::post(strand, [s = shared_from_this()] {
      if (s->wake_gate) s->wake_gate->cancel();
    });
  }

  // Waits `d`; a timer in `cut_short` (cancelled by a wake-up or by stop) ends it early.
  asio::awaitable<void> nap(std::chrono::milliseconds d, std::list<std::shared_ptr<asio::steady_timer>>* cut_short) {
    auto t = std::make_shared<asio::steady_timer>(strand, d);
    if (cut_short) cut_short->push_back(t);
    boost::system::error_code ec;
    co_await t->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (cut_short) cut_short->remove(t);
  }

  asio::awaitable<void> sleep(std::shared_ptr<asio::steady_timer>& slot, std::chrono::milliseconds d) {
    slot = std::make_shared<asio::steady_timer>(strand, d);
    boost::system::error_code ec;
    co_await slot->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    slot.reset();
  }

  // Waits for a free slot token; false when the swarm stops first.
  asio::awaitable<bool> take_token() {
    while (worker_tokens == 0) {
      if (stopping || finished) co_return false;
      auto t = std::make_shared<asio::steady_timer>(strand, std::chrono::steady_clock::time_point::max());
      token_waiters.push_back(t);
      boost::system::error_code ec;
      co_await t->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    --worker_tokens;
    co_return true;
  }
  void give_token() {
    ++worker_tokens;
    if (!token_waiters.empty()) {
      token_waiters.front()->cancel();
      token_waiters.pop_front();
    }
  }

  asio::awaitable<void> worker_loop(roles::worker& w) {
    auto self = shared_from_this();
    ++loops_running;
    auto idle = 20ms;
    std::chrono::milliseconds release_backoff = 1s;
    while (!stopping && !finished) {
      if (auto spent = budget_left("worker")) {
        // No new claims once the workers' budget (or the run's) is spent: the run ends, naming it.
        if (budget_stop.empty()) {
          budget_stop = spent.message();
          publish("budget", budget_stop);
          poke_main();
        }
        break;
      }
      if (!co_await take_token()) break;
      if (stopping || finished) {
        give_token();
        break;
      }
      auto r = co_await w.async_run_one(asio::use_awaitable);
      give_token();
      if (!r) {
        if (store_gone(r.error())) break;
        publish("error", fmt::format("worker '{}': {}", w.options().id.str(), r.error().message()));
        co_await nap(1s, nullptr);
        continue;
      }
      if (r->result == roles::work_result::idle) {
        if (!worker_went_idle) {
          worker_went_idle = true;
          if (need_plan) poke_main();
        }
        co_await nap(idle, &idle_waiters);
        idle = std::min<std::chrono::milliseconds>(idle * 2, 1000ms);
        continue;
      }
      idle = 20ms;
      if (r->result == roles::work_result::released && r->budget_exhausted && budget_left("worker")) {
        continue;  // the loop's head ends it, naming the budget
      }
      if (r->result == roles::work_result::released) {
        // Handed back untouched (the model failed, no slot): the next try
        // would likely fail the same way; wait before it, longer each time.
        publish("error", fmt::format("worker '{}' released {}: {}", w.options().id.str(),
                                     r->task ? r->task->str() : "", r->detail));
        co_await nap(release_backoff, &backoff_waiters);
        release_backoff = std::min<std::chrono::milliseconds>(release_backoff * 2, 30s);
      } else {
        release_backoff = 1s;
      }
      report.conflicts_resolved += static_cast<std::size_t>(r->conflicts_resolved);
      poke_main();
    }
    --loops_running;
    poke_main();
  }

  asio::awaitable<void> gate_loop() {
    auto self = shared_from_this();
    ++loops_running;
    bool standby = false, leading = false;
    while (!finished) {
      // Stopping ends the loop between steps: what is still queued stays in
      // the store, and the next run's gate goes on with it.
      if (stopping) break;
      auto queued = co_await offload(blocking.get_executor(), [&] { return gate->queued(); });
      if (queued && *queued > 0) {
        auto r = co_await gate->async_run_once(asio::use_awaitable);
        if (!r && r.error() == error::in_use) {
          // Another process leads the queue: stand by, and take over when its lease ends.
          if (!standby) publish("gate_standby", r.error().message());
          standby = true;
          leading = false;
          co_await sleep(wake_gate, 1000ms);
          continue;
        }
        if (r && !leading) {
          leading = true;
          standby = false;
          publish("gate_leading", fmt::format("this process runs the queue of {}", cfg.branch));
        }
        if (!r && store_gone(r.error())) break;
        if (!r) publish("error", "gate: " + r.error().message());
        if (r && !r->empty()) {
          poke_main();
          continue;
        }
        // An error, or a batch waiting for company (batch_wait): look again shortly.
      }
      co_await sleep(wake_gate, 50ms);
    }
    --loops_running;
    poke_main();
  }

  void make_planners() {
    planners.clear();
    roles::planner_options base{.name = "planner",
                                .goal = cfg.goal,
                                .branch = cfg.branch,
                                .subsystems = cfg.subsystems,
                                .default_contract = cfg.contract,
                                .ceiling = cfg.ceiling,
                                .max_new_tasks = cfg.max_new_tasks,
                                .max_open_tasks = cfg.max_open_tasks,
                                .findings = findings,
                                .prices = prices,
                                .executor = strand,
                                .blocking = blocking.get_executor(),
                                .events = bus};
    for (std::size_t i = 0; i < cfg.planners; ++i) {
      auto o = base;
      if (i > 0) o.name = fmt::format("planner-{}", i + 1);
      planners.push_back(std::make_unique<roles::planner>(*board, cfg.repository, *clients.at("planner"), o));
    }
    for (const auto& sub : cfg.subsystems) {
      auto o = base;
      o.name = "planner-" + sub.name;
      o.scope = sub;
      o.subsystems.clear();
      planners.push_back(std::make_unique<roles::planner>(*board, cfg.repository, *clients.at("sub:" + sub.name), o));
    }
  }

  // Tasks a crash left `submitted` whose change never reached the gate (the
  // worker died between the board's submit and the gate's): the change is
  // handed to the gate again from what the task's report names, or, where
  // the report does not say (a run before change ids were kept), the task
  // is requeued with why. Without this they would wait for a verdict forever.
  result<std::size_t> recover_submissions() {
    auto submitted = board->list(board::task_state::submitted);
    if (!submitted) return submitted.error();
    std::size_t handed = 0;
    for (const auto& t : *submitted) {
      const json::object* r = t.result.is_object() ? &t.result.as_object() : nullptr;
      auto str = [&](const char* k) {
        auto* f = r ? r->if_contains(k) : nullptr;
        return f && f->is_string() ? std::string(f->get_string()) : std::string();
      };
      auto id = str("change");
      auto head = git::oid::from_hex(str("head")), base = git::oid::from_hex(str("base"));
      if (id.empty() || !head || !base) {
        auto q = board->requeue(t.id, "requeued at a restart: its submission never reached the gate");
        if (!q && q.error() != error::illegal_transition) return q.error();
        publish("recovered", fmt::format("{}: requeued (its submission never reached the gate)", t.id.str()));
        ++handed;
        continue;
      }
      auto known = gate->verdict(id);
      if (!known) return known.error();
      if (*known) continue;  // the gate has it; a decided one's board update is the gate's to redo
      contract::task_contract terms = cfg.contract;
      if (!t.contract.is_null())
        if (auto c = contract::contract_from_json(t.contract)) terms = std::move(*c);
      gate::change c{.id = id, .task = t.id, .base = *base, .head = *head, .priority = t.priority, .contract = terms,
                     .checks = terms.acceptance_checks};
      auto v = gate->submit(std::move(c));
      if (!v) return v.error();
      publish("recovered", fmt::format("{}: change {} handed to the gate after a restart ({})", t.id.str(), id,
                                       gate::to_string(v->kind)));
      ++handed;
    }
    return handed;
  }

  asio::awaitable<result<std::size_t>> open_tasks() {
    co_return co_await offload(blocking.get_executor(), [&]() -> result<std::size_t> {
      auto all = board->list();
      if (!all) return all.error();
      std::size_t n = 0;
      for (const auto& t : *all) n += is_open(t.state);
      return n;
    });
  }

  // --- the parts, made by swarm::create ---

  // The store, the board and its archive, the slots and the gate, over the repository.
  error_info open_parts() {
    const auto& c = cfg;
    auto repo = git::repository::open(c.repository);
    if (!repo)
      return fail(error::invalid_argument,
                  fmt::format("runtime: cannot open the repository '{}': {}", c.repository.string(), repo.error().message()));
    if (auto tip = repo->resolve(c.branch); !tip)
      return fail(error::invalid_argument, fmt::format("runtime: the repository '{}' has no branch '{}': {}",
                                                       c.repository.string(), c.branch, tip.error().message()));
    auto st = open_store(c.store);
    if (!st) return st.error();
    store = std::move(*st);
    if (auto* fst = dynamic_cast<store::file_store*>(store.get()))
      if (auto e = check_store_identity(*repo, *fst)) return e;
    auto archived = open_archive(c.store, *store);
    if (!archived) return archived.error();
    board.emplace(*store, board::board_options{.events = bus, .archive = *archived});
    if (auto ok = board->verify_archive(); !ok) return ok.error();
    auto slots = git::worktree_pool::open(c.repository, {.root = c.worktrees, .slots = c.slots});
    if (!slots) return slots.error();
    pool = std::move(*slots);
    gate::gate_options go{.branch = c.branch,
                          .mode = c.gate_policy,
                          .batch_size = c.batch_size,
                          .batch_wait = c.batch_wait,
                          .deep_checks = c.deep_checks,
                          .events = bus,
                          .board = &*board};
    go.check.sandbox.mode = c.sandbox;
    go.ceiling = c.ceiling;  // the gate holds every change to it, whatever its contract says
    go.remote = c.remote;
    go.blocking = blocking.get_executor();
    go.leader_ttl = c.lease;  // a dead gate's queue passes on as soon as a dead worker's task does
    if (!c.name.empty()) go.instance = c.name;
    auto g = gate::merge_gate::open(c.repository, *store, *pool, std::move(go));
    if (!g) return g.error();
    gate = std::move(*g);
    return {};
  }

  // Prices and budgets: every client, the host's too, is charged to them.
  model::budget_picker picker;
  error_info make_budgets() {
    auto priced = model::prices_from_options(cfg.model_options);
    if (!priced) return fail(error::invalid_argument, "runtime: model_options: " + priced.error().message());
    prices = std::move(*priced);
    if (!cfg.budgets.any()) return {};
    run_budget = model::budget::make("run", cfg.budgets.run);
    for (const char* role : {"planner", "worker", "judge", "other"}) {
      auto it = cfg.budgets.roles.find(role);
      role_budgets[role] = run_budget->child(fmt::format("{} role", role),
                                             it == cfg.budgets.roles.end() ? model::budget_limits{} : it->second);
    }
    picker = [this](const model::request& r) { return pick_budget(r); };
    return {};
  }

  // Model clients, one per spec (the host's hook first), for the roles this process runs.
  error_info make_clients() {
    const auto& c = cfg;
    auto reg = model::registry::with_builtins();
    if (auto e = reg.load_plugins_from_env()) return e;
    std::map<std::string, std::shared_ptr<model::client>> by_spec;
    auto client = [&](std::string_view role, const std::string& spec) -> result<std::shared_ptr<model::client>> {
      if (hooks.client_for)
        if (auto hc = hooks.client_for(role)) return picker ? model::with_budget(std::move(hc), picker, prices) : hc;
      if (auto it = by_spec.find(spec); it != by_spec.end()) return it->second;
      auto made = reg.make(spec, {.executor = ex, .options = c.model_options, .budgets = picker});
      if (!made)
        return fail(error::invalid_argument,
                    fmt::format("runtime: the {} model '{}': {}", role, spec, made.error().message()));
      by_spec[spec] = *made;
      return *made;
    };
    auto add = [&](const std::string& key, std::string_view role, const std::string& spec) -> error_info {
      auto m = client(role, spec);
      if (!m) return m.error();
      clients[key] = *m;
      return {};
    };
    if (c.roles.planner && (c.planners > 0 || !c.subsystems.empty())) {
      if (auto e = add("planner", "planner", c.models.planner)) return e;
      for (const auto& sub : c.subsystems)
        if (auto e = add("sub:" + sub.name, sub.name, sub.model.empty() ? c.models.planner : sub.model)) return e;
    }
    if (c.roles.worker && c.workers > 0)
      if (auto e = add("worker", "worker", c.models.worker)) return e;
    if (!c.models.judge.empty())
      if (auto e = add("judge", "judge", c.models.judge)) return e;
    if (c.review && !clients.count("judge"))
      return fail(error::invalid_argument, "runtime: review is on but no judge model is configured (models.judge)");
    return {};
  }

  // Slots: workers take one each while they hold a task; the gate and the judge keep theirs.
  void make_workers() {
    const auto& c = cfg;
    worker_tokens = total_tokens = c.slots > 2 ? c.slots - 2 : 1;
    const std::size_t n = c.roles.worker ? c.workers : 0;
    for (std::size_t i = 0; i < n; ++i) {
      roles::worker_options wo{.id = worker_id(c.name.empty() ? fmt::format("w{}", i + 1)
                                                              : fmt::format("{}-w{}", c.name, i + 1)),
                               .branch = c.branch,
                               .lease_ttl = c.lease,
                               .default_contract = c.contract,
                               .events = bus};
      wo.loop.executor = strand;
      wo.loop.blocking = blocking.get_executor();
      wo.loop.commands.sandbox.mode = c.sandbox;
      wo.loop.events = bus;
      wo.loop.prices = prices;
      if (run_budget) wo.task_budget_exhausted = [this](const task_id& id) { return task_budget_exhausted(id); };
      workers.push_back(std::make_unique<roles::worker>(*board, *store, c.repository, *pool, *gate,
                                                        *clients.at("worker"), std::move(wo)));
    }
  }

  void make_judge() {
    const auto& c = cfg;
    roles::judge_options jo{.merges_per_cycle = c.merges_per_cycle,
                            .cycle_time = c.cycle_time,
                            .goal_checks = c.goal_checks,
                            .goal = c.goal,
                            .branch = c.branch,
                            .restart_stalls = c.restart_stalls,
                            .converge_cycles = c.converge_cycles,
                            .reviewer = c.review ? clients.at("judge").get() : nullptr,
                            .executor = strand,
                            .blocking = blocking.get_executor()};
    jo.checks.sandbox.mode = c.sandbox;
    jo.prices = prices;
    jo.rules = hooks.judge;
    judge = std::make_unique<roles::judge>(*bus, *board, c.repository, *pool, std::move(jo));
  }

  // Wake-ups: tasks finishing wake the planners, ready tasks the workers,
  // submissions the gate; spending and refused writes are counted for the report.
  void subscribe() {
    auto* raw = this;
    subs.push_back(bus->subscribe<board::task_transition>([raw](const board::task_transition& t) {
      using enum board::task_state;
      if (t.to == ready) raw->poke_workers();
      if (t.to == submitted) raw->poke_gate();
      if (t.to == merged || t.to == rejected || t.to == abandoned || t.to == failed || t.to == reverted) {
        asio::post(raw->strand, [raw] { raw->need_plan = true; });
        raw->poke_main();
      }
    }));
    subs.push_back(bus->subscribe<roles::worker_phase>([raw](const roles::worker_phase& p) {
      std::lock_guard lock(raw->claims_mutex);
      if (p.phase == "claimed") raw->claimed_at[p.worker] = std::chrono::steady_clock::now();
      else if (p.phase == "merged" || p.phase == "rejected" || p.phase == "abandoned" || p.phase == "released" ||
               p.phase == "claim_lost" || p.phase == "submitted" || p.phase == "idle")
        raw->claimed_at.erase(p.worker);
    }));
    subs.push_back(bus->subscribe<agent::turn_event>([raw](const agent::turn_event& e) {
      std::lock_guard lock(raw->spent_mutex);
      raw->spent_usage += e.usage;
      raw->spent_cost += e.cost;
    }));
    if (run_budget)  // a finished task's budget is not needed again
      subs.push_back(bus->subscribe<board::task_transition>([raw](const board::task_transition& t) {
        using enum board::task_state;
        if (t.to == merged || t.to == superseded || t.to == failed) {  // an abandoned task may be requeued: it keeps its budget
          std::lock_guard lock(raw->task_budgets_mutex);
          raw->task_budgets.erase(t.id.str());
        }
      }));
    subs.push_back(bus->subscribe<agent::tool_call_event>([raw](const agent::tool_call_event& e) {
      if (e.is_error && (e.answer_head.find("not allowed by the task's contract") != std::string::npos ||
                         e.answer_head.find("refused") != std::string::npos))
        ++raw->refused;
    }));
  }

  // --- the run: begin, the main loop's rounds, wind down, the report ---

  std::size_t empty_drains = 0;     // strand: drained looks in a row with nothing done
  store::revision start_rev = 0;    // the store's revision when this process's run began
  store::revision last_seen_rev = 0;

  asio::awaitable<result<swarm_report>> run() {
    auto self = shared_from_this();
    if (auto began = co_await begin(); !began) co_return began.error();
    error_info failure = co_await main_loop();
    if (store_failed) failure = store_failed;
    co_await wind_down(failure);
    if (failure) co_return failure;
    co_await final_report();
    publish("finished", report.reason);
    co_return report;
  }

  // What a previous run left (claims, submissions), then the loops.
  asio::awaitable<result<void>> begin() {
    started = std::chrono::steady_clock::now();
    publish("started", fmt::format("{} planners, {} workers, {} slots, gate {}", planners.size(), workers.size(),
                                   cfg.slots, cfg.gate_policy == gate::policy::batch ? "batch" : "serial/optimistic"));
    // Leftovers of a previous run: claims whose leases are gone come back.
    co_await offload(blocking.get_executor(), [&] { return board->reconcile(); });
    if (cfg.roles.gate) {
      auto recovered = co_await offload(blocking.get_executor(), [&] { return recover_submissions(); });
      if (!recovered) publish("error", "recovering submissions a crash left behind: " + recovered.error().message());
    }
    // Processes that do not judge end when the one that does says the run is
    // over (a record newer than this process's start).
    auto rev = co_await offload(blocking.get_executor(), [&] { return store->current_revision(); });
    if (!rev) co_return rev.error();
    start_rev = last_seen_rev = *rev;
    if (cfg.roles.judge && !cfg.roles.all()) {
      auto w = co_await offload(blocking.get_executor(), [&] {
        return store->commit(store::txn().put(run_key, json::serialize(json::object{{"state", "running"}})));
      });
      if (!w) co_return w.error();
    }
    if (cfg.roles.gate) asio::co_spawn(strand, gate_loop(), asio::detached);
    for (auto& w : workers) asio::co_spawn(strand, worker_loop(*w), asio::detached);
    co_return result<void>();
  }

  // Until the run is over: the run's error, if it ends with one.
  asio::awaitable<error_info> main_loop() {
    while (!finished) {
      if (stopping) {
        report.stopped = true;
        report.reason = "stopped";
        break;
      }
      if (store_failed) break;  // wound down, then the error
      if (!budget_stop.empty()) {
        report.budget_exhausted = budget_stop;
        report.reason = "a budget ran out: " + budget_stop;
        break;
      }
      result<bool> round = false;  // (no ?: inside co_await: GCC 12 destroys its temporary twice)
      if (cfg.roles.judge)
        round = co_await judged_round();
      else
        round = co_await share_round();
      if (!round) co_return round.error();
      if (*round) break;
    }
    co_return error_info();
  }

  // One round of a process without the judge (its share of a split run):
  // plan when the board moved, end with the run. True: the run is over.
  asio::awaitable<result<bool>> share_round() {
    auto kv = co_await offload(blocking.get_executor(), [&] { return store->get(run_key); });
    if (kv && *kv && (*kv)->mod_revision > start_rev) {
      auto j = parse_json((*kv)->value);
      if (j && j->is_object() && j->as_object().contains("reason")) {
        report.reason = "the run is over: " + std::string(j->as_object().at("reason").as_string());
        co_return true;
      }
    }
    if (cfg.roles.planner) {
      auto rev = co_await offload(blocking.get_executor(), [&] { return store->current_revision(); });
      if (rev && *rev != last_seen_rev) {
        last_seen_rev = *rev;
        need_plan = true;
      }
      auto since = std::chrono::steady_clock::now() - last_plan;
      if (need_plan && since >= plan_interval) co_await plan();
    }
    co_await sleep(wake_main, 500ms);
    co_return false;
  }

  // One round of the process that judges. True: the run is over.
  asio::awaitable<result<bool>> judged_round() {
    const bool waves = cfg.plan_when == swarm_config::plan_schedule::drained;
    // Planning rounds: when tasks finish, at most one a second unless a
    // worker found nothing to do (each round reads the whole board).
    auto since = std::chrono::steady_clock::now() - last_plan;
    if (!waves && need_plan && (since >= plan_interval || worker_went_idle)) co_await plan();
    // A board with nothing left on it (looked at only while no worker holds a task).
    bool drained = false;
    if (worker_tokens == total_tokens) {
      auto open = co_await open_tasks();
      if (!open) co_return result<bool>(boost::system::in_place_error, open.error());
      auto queued = co_await offload(blocking.get_executor(), [&] { return gate->queued(); });
      drained = *open == 0 && queued && *queued == 0;
    }
    auto now = judge->current();
    bool activity = now.merged + now.rejected + now.abandoned > 0;
    co_await housekeeping();
    activity = activity || branch_moved;
    if (waves && drained) {
      // A wave is over: it is a cycle for the judge, then the next wave is planned.
      if (activity) co_return co_await close_cycle();
      if (need_plan && co_await plan() > 0) co_return false;
      co_return co_await nothing_left();
    }
    // Cycle's end: the judge's count, or a drained board.
    if (judge->cycle_over() || drained) {
      if (drained && !activity && ++empty_drains > 1) co_return co_await nothing_left();
      co_return co_await close_cycle();
    }
    co_await sleep(wake_main, 250ms);
    co_return false;
  }

  // Finished tasks beyond the newest keep_finished leave the board for the
  // archive, and the gate forgets as many decided changes (at most every 5 s:
  // each look reads the board and the gate's records). Split across
  // processes, the branch here follows the shared one (at most once a
  // second), and its moves count as the cycle's activity.
  asio::awaitable<void> housekeeping() {
    if (std::chrono::steady_clock::now() - last_archive >= 5s) {
      last_archive = std::chrono::steady_clock::now();
      if (board->options().archive) {
        auto moved = co_await offload(blocking.get_executor(), [&] { return board->archive_finished(cfg.keep_finished); });
        if (!moved) publish("error", "archiving finished tasks: " + moved.error().message());
      }
      auto pruned = co_await offload(blocking.get_executor(), [&] { return gate->prune(cfg.keep_finished); });
      if (!pruned) publish("error", "pruning the gate's records: " + pruned.error().message());
    }
    if (!cfg.remote.empty() && std::chrono::steady_clock::now() - last_fetch >= 1s) {
      last_fetch = std::chrono::steady_clock::now();
      auto tip = co_await gate->async_tip(asio::use_awaitable);
      if (tip && *tip != cycle_tip) {
        if (!cycle_tip.is_zero()) branch_moved = true;
        else cycle_tip = *tip;
      }
    }
  }

  // One planning round over every planner; how many tasks they proposed.
  asio::awaitable<std::size_t> plan() {
    need_plan = false;
    worker_went_idle = false;
    last_plan = std::chrono::steady_clock::now();
    std::size_t proposed = 0;
    if (auto spent = budget_left("planner")) {
      // The planners' budget (or the run's) is spent: no more planning;
      // what is on the board is still worked, and then the run ends.
      if (!planner_budget_said) publish("budget", spent.message());
      planner_budget_said = true;
      co_return proposed;
    }
    for (auto& p : planners) {
      auto r = co_await p->async_plan(asio::use_awaitable);
      if (!r) {
        if (store_gone(r.error())) break;
        publish("error", fmt::format("planner '{}': {}", p->options().name, r.error().message()));
        continue;
      }
      proposed += r->proposed.size();
      report.split += r->split.size();
    }
    if (proposed > 0) {
      empty_drains = 0;
      poke_workers();
    }
    co_return proposed;
  }

  // Closes the judge's cycle; true when the run is over.
  asio::awaitable<result<bool>> close_cycle() {
    // The goal checks run on the branch here: with a shared repository, as it is there now.
    if (!cfg.remote.empty()) {
      auto synced = co_await gate->async_tip(asio::use_awaitable);
      if (!synced) publish("error", "cannot fetch the shared branch before the goal checks: " + synced.error().message());
    }
    auto j = co_await judge->async_close_cycle(asio::use_awaitable);
    if (!j) co_return result<bool>(boost::system::in_place_error, j.error());
    ++report.cycles;
    report.judgements.push_back(*j);
    cycle_tip = git::oid();  // the next cycle's activity starts from the branch as it is then
    branch_moved = false;
    publish("cycle", fmt::format("cycle {}: {} ({})", j->cycle, to_string(j->verdict), j->reason));
    if (j->verdict == roles::decision::stop) {
      report.goal_met = j->goal_met;
      report.reason = j->reason;
      co_return true;
    }
    if (cfg.max_cycles > 0 && report.cycles >= cfg.max_cycles) {
      report.reason = fmt::format("max_cycles ({}) reached", cfg.max_cycles);
      co_return true;
    }
    if (j->verdict == roles::decision::restart) restart_fresh(*j);
    cycle_started = std::chrono::steady_clock::now();
    need_plan = true;
    co_return false;
  }

  // The judge's restart. Fresh context: planners rebuilt from the
  // repository's state and the judge's findings (not from any history), and
  // attempts that began before this cycle ended (their tasks go back with
  // why), so that no agent carries on from a plan the judge gave up.
  void restart_fresh(const roles::judgement& j) {
    publish("restart", j.reason);
    const auto& f = j.figures;
    findings = fmt::format("{} (cycle {}: {} merged, {} rejected, {} stalls, {} abandoned, {} of {} changed lines "
                           "rewritten within the cycle)",
                           j.reason, j.cycle, f.merged, f.rejected, f.stalls, f.abandoned, f.churn_lines,
                           f.changed_lines);
    if (cfg.roles.planner) make_planners();
    std::vector<std::string> stale;
    {
      std::lock_guard lock(claims_mutex);
      for (const auto& [w, at] : claimed_at)
        if (at < cycle_started) stale.push_back(w);
    }
    for (auto& w : workers)
      if (std::find(stale.begin(), stale.end(), w->options().id.str()) != stale.end())
        w->interrupt("ended by the judge's restart (the attempt began before the cycle): " + j.reason);
  }

  // The run ends with nothing to do (always true: over). A run that judged
  // nothing yet (a restart of one that had already finished, say) runs the
  // goal checks first: its report says whether the goal is met, not just
  // that it idled.
  asio::awaitable<result<bool>> nothing_left() {
    if (report.cycles == 0 && cfg.roles.judge) {
      auto over = co_await close_cycle();
      if (!over) co_return over;
      if (*over) co_return true;
    }
    if (auto spent = budget_left("planner"))
      report.reason = "nothing left to do: the planners' budget is spent (" + spent.message() + ")";
    else
      report.reason = "nothing left to do: the planners propose no more tasks";
    co_return true;
  }

  // Agents stop, their tasks go back; the gate ends its step.
  asio::awaitable<void> wind_down(const error_info& failure) {
    // The judge's process tells the others (not when it was merely stopped).
    if (cfg.roles.judge && !cfg.roles.all() && !report.stopped && !failure)
      (void)co_await offload(blocking.get_executor(), [&] {
        return store->commit(store::txn().put(
            run_key, json::serialize(json::object{{"state", "finished"}, {"reason", report.reason}})));
      });
    publish("stopping", failure ? failure.message() : report.reason);
    stopping = true;
    for (auto& w : workers) w->stop();
    for (auto& t : token_waiters) t->cancel();
    token_waiters.clear();
    for (auto& t : idle_waiters) t->cancel();
    idle_waiters.clear();
    for (auto& t : backoff_waiters) t->cancel();
    if (wake_gate) wake_gate->cancel();
    while (loops_running > 0) co_await sleep(wake_main, 50ms);
    finished = true;
  }

  // The report's counts: the board's (and the archive's), the judgements'.
  asio::awaitable<void> final_report() {
    auto all = co_await offload(blocking.get_executor(), [&] { return board->list(); });
    if (all) {
      report.tasks_total = all->size();
      for (const auto& t : *all) ++report.tasks_by_state[std::string(to_string(t.state))];
    }
    if (auto& archive = board->options().archive) {  // and the finished tasks archived
      for (auto st : {board::task_state::merged, board::task_state::superseded}) {
        auto n = co_await offload(blocking.get_executor(), [&] { return archive->count(st); });
        if (!n || *n == 0) continue;
        report.tasks_total += *n;
        report.tasks_by_state[std::string(to_string(st))] += *n;
      }
    }
    auto add = [&](const roles::cycle_figures& f) {
      report.merged += f.merged;
      report.rejected += f.rejected;
      report.contract_violations += f.contract_violations;
      report.stalls += f.stalls;
      report.abandoned += f.abandoned;
    };
    for (const auto& j : report.judgements) add(j.figures);
    add(judge->current());  // what happened after the last judgement
    // Split across processes, merges happen in other processes' gates: the
    // board's count is the run's.
    if (!cfg.roles.all()) report.merged = std::max(report.merged, report.tasks_by_state["merged"]);
    report.refused_writes = refused;
    {
      std::lock_guard lock(spent_mutex);
      report.usage = spent_usage;
      report.cost = spent_cost;
    }
    report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  }
};

swarm::swarm(std::shared_ptr<state> s) : state_(std::move(s)) {}

swarm::~swarm() {
  if (!state_) return;
  state_->subs.clear();
  state_->blocking.join();
  // Handlers that arrived after the run (a heartbeat's answer, a wake-up)
  // wait in our own io_context holding what they refer to: let them finish.
  // (The context itself goes last, after every strand made on it.)
  if (state_->own_io) {
    state_->own_io->restart();
    state_->own_io->poll();
  }
}

result<std::unique_ptr<swarm>> swarm::create(swarm_config cfg, swarm_hooks hooks) {
  auto s = std::make_shared<state>(std::move(cfg), std::move(hooks));
  if (s->cfg.repository.empty()) return fail(error::invalid_argument, "runtime: swarm_config::repository is empty");
  if (s->hooks.events) s->bus = s->hooks.events;
  else {
    s->own_bus = std::make_unique<event_bus>();
    s->bus = s->own_bus.get();
  }
  if (auto e = s->open_parts()) return e;
  if (auto e = s->make_budgets()) return e;
  if (auto e = s->make_clients()) return e;
  s->make_workers();
  if (s->cfg.roles.planner) s->make_planners();
  s->make_judge();
  s->subscribe();
  return std::unique_ptr<swarm>(new swarm(std::move(s)));
}

asio::any_io_executor swarm::get_executor() const { return state_->ex; }

void swarm::start(asio::any_completion_handler<void(result<swarm_report>)> handler) {
  auto s = state_;
  detail::spawn_operation(s->strand, s->ex, s->run(), std::move(handler),
                          [](const std::string& what) -> result<swarm_report> {
                            return fail(error::io_error, fmt::format("runtime: the swarm failed: {}", what));
                          });
}

result<swarm_report> swarm::run() {
  std::promise<result<swarm_report>> p;
  auto f = p.get_future();
  if (!state_->own_io) {
    async_run([&](result<swarm_report> r) { p.set_value(std::move(r)); });
    return f.get();
  }
  // The io_context must not run out of work while coroutines wait on the blocking pool.
  auto guard = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(state_->own_io->get_executor());
  async_run(asio::bind_executor(state_->own_io->get_executor(), [&, guard](result<swarm_report> r) {
    p.set_value(std::move(r));
    guard->reset();
  }));
  state_->own_io->run();
  state_->own_io->restart();
  return f.get();
}

void swarm::stop() {
  state_->stopping = true;
  for (auto& w : state_->workers) w->stop();
  state_->poke_main();
}

event_bus& swarm::events() { return *state_->bus; }
board::task_board& swarm::board() { return *state_->board; }
gate::merge_gate& swarm::gate() { return *state_->gate; }
const swarm_config& swarm::config() const { return state_->cfg; }

}  // namespace agentcore::runtime
