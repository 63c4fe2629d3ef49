// agentcore: the command line over the library.
//
//   agentcore init [--repository PATH] [--config FILE] [--force]
//   agentcore run [--config FILE] [--model SPEC] [--role ROLES] [--store URI] [--remote REPO] [--name NAME]
//                 [--log FILE|off] [--serve HOST:PORT] [--serve-allow-host NAME[,NAME...]]
//   agentcore serve [--config FILE] [--store URI] [--serve HOST:PORT] [--serve-allow-host NAME[,NAME...]]
//   agentcore replay-log FILE
//   agentcore status [--config FILE]
//   agentcore task show ID [--config FILE]
//   agentcore gate submit BRANCH [--config FILE] [--task ID]
//   agentcore sim CONFIG [--json] [--out DIR]
//   agentcore sim --from EVENT_LOG [CONFIG] [--json] [--out DIR]
//
//   agentcore demo [--dir DIR] [--model SPEC | --config FILE]   (a live run: the config's models)
//
// The configuration defaults to ./agentcore.json.
#include "demo_assets.hpp"

#include <agentcore/agent/loop.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/observe/dashboard.hpp>
#include <agentcore/core/memory.hpp>
#include <agentcore/runtime/dashboard_controls.hpp>
#include <agentcore/observe/events.hpp>
#include <agentcore/observe/metrics.hpp>
#include <agentcore/observe/jsonl_sink.hpp>
#include <agentcore/observe/progress.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/runtime/config.hpp>
#include <agentcore/runtime/swarm.hpp>
#include <agentcore/sim/sim.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <csignal>
#include <pthread.h>
#include <set>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

using namespace agentcore;
namespace fs = std::filesystem;

namespace {

struct args {
  std::vector<std::string> words;            // positional
  std::map<std::string, std::string> flags;  // --name value (or "" for switches)
};

const std::set<std::string> switches{"--force", "--help", "--json"};

result<args> parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    if (s.starts_with("--")) {
      if (switches.count(s)) {
        a.flags[s] = "";
        continue;
      }
      if (i + 1 >= argc) return fail(error::invalid_argument, fmt::format("{} needs a value", s));
      a.flags[s] = argv[++i];
    } else {
      a.words.push_back(s);
    }
  }
  return a;
}

int usage(std::ostream& out, int code) {
  out << "usage:\n"
         "  agentcore init [--repository PATH] [--config FILE] [--force]   write a commented configuration\n"
         "  agentcore demo [--dir DIR] [--model SPEC | --config FILE]      a sample project built by a swarm\n"
         "  agentcore run [--config FILE] [--model SPEC]                   run the swarm until its goal is met\n"
         "      [--role planner,worker,gate,judge] [--store URI] [--remote REPO] [--name NAME]\n"
         "                                                                 this process's share of a swarm across\n"
         "                                                                 processes (etcd://... store, shared repository)\n"
         "      [--log FILE|off]                                           the event log (default\n"
         "                                                                 REPOSITORY/.agentcore/events.jsonl)\n"
         "      [--serve HOST:PORT]                                        the live dashboard (127.0.0.1:8080)\n"
         "      [--serve-allow-host NAME[,NAME...]]                        more names the dashboard answers to (a\n"
         "                                                                 reverse proxy, a DNS name); NAME or NAME:PORT\n"
         "  agentcore serve [--config FILE] [--store URI] [--serve HOST:PORT]  the dashboard over a board\n"
         "      [--serve-allow-host NAME[,NAME...]]\n"
         "  agentcore replay-log FILE                                      a run's timeline from its event log\n"
         "  agentcore sim CONFIG [--json] [--out DIR]                      capacity planning: workers, designs, gate\n"
         "                                                                 policies on a simulated run (sim/sim.hpp)\n"
         "      [--from REPOSITORY/.agentcore/events.jsonl]                fitted to a real run's event log\n"
         "  agentcore status [--config FILE]                               the board: counts and tasks\n"
         "  agentcore task show ID [--config FILE]                         one task, as JSON\n"
         "  agentcore gate submit BRANCH [--config FILE] [--task ID]       gate a hand-made branch\n"
         "The configuration defaults to ./agentcore.json.\n";
  return code;
}

int fail_with(const error_info& e) {
  std::cerr << "agentcore: " << e.message() << "\n";
  return 1;
}

fs::path config_path(const args& a) {
  auto it = a.flags.find("--config");
  return it == a.flags.end() ? fs::path("agentcore.json") : fs::path(it->second);
}

result<runtime::swarm_config> load_config(const args& a) {
  auto path = config_path(a);
  std::ifstream f(path);
  if (!f)
    return fail(error::not_found, fmt::format("no configuration at '{}'; write one with 'agentcore init' or name it "
                                              "with --config",
                                              path.string()));
  std::stringstream text;
  text << f.rdbuf();
  auto c = runtime::config_from_text(text.str(), fs::absolute(path).parent_path());
  if (!c) return error_info(c.error().code(), fmt::format("{}: {}", path.string(), c.error().message()));
  return c;
}

int cmd_init(const args& a) {
  auto path = config_path(a);
  if (fs::exists(path) && !a.flags.count("--force"))
    return fail_with(fail(error::already_exists,
                          fmt::format("'{}' exists; pass --force to overwrite it", path.string())));
  runtime::swarm_config c;
  auto repo = a.flags.count("--repository") ? a.flags.at("--repository") : std::string(".");
  c.repository = repo;
  c.worktrees = fs::path(".agentcore") / "slots";
  c.store = "file:.agentcore/store";
  c.goal = "Describe what the swarm should build here.";
  c.goal_checks = {"make test"};
  c.contract.max_files = 20;
  c.contract.max_changed_lines = 800;
  c.contract.time.wall = std::chrono::minutes(30);
  c.contract.time.model_turns = 60;
  std::ofstream out(path);
  out << runtime::commented_config(c);
  if (!out) return fail_with(fail(error::io_error, fmt::format("cannot write '{}'", path.string())));
  std::cout << "wrote " << path.string() << "; edit the goal and models, then: agentcore run\n";
  return 0;
}

// SIGINT and SIGTERM are taken by a thread of their own with sigwait (stop()
// is not async-signal-safe), blocked everywhere else.
class signal_watch {
public:
  signal_watch() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    sigaddset(&set_, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // before any thread exists: they inherit it
  }
  void start(runtime::swarm& s) {
    thread_ = std::thread([this, &s] {
      for (;;) {
        int sig = 0;
        if (sigwait(&set_, &sig) != 0 || sig == SIGUSR1) return;
        std::cerr << "\nagentcore: stopping (agents stop, claims are released)...\n";
        s.stop();
      }
    });
  }
  ~signal_watch() {
    if (thread_.joinable()) {
      pthread_kill(thread_.native_handle(), SIGUSR1);
      thread_.join();
    }
    pthread_sigmask(SIG_UNBLOCK, &set_, nullptr);
  }

private:
  sigset_t set_;
  std::thread thread_;
};

// What a run did beyond the swarm's report, counted from the bus for the summary.
struct run_counts {
  std::atomic<int> bisects{0}, gate_rejections{0}, restarts{0};
};

/// --serve-allow-host NAME[,NAME...]: the dashboard's allowed_hosts.
std::vector<std::string> serve_allowed_hosts(const args& a) {
  std::vector<std::string> out;
  auto it = a.flags.find("--serve-allow-host");
  if (it == a.flags.end()) return out;
  std::string_view rest = it->second;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    if (auto name = rest.substr(0, comma); !name.empty()) out.emplace_back(name);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  return out;
}

// Creates and runs a swarm with its progress on the terminal (a live block on
// a terminal, plain lines otherwise) and its events in the event log; SIGINT stops it.
result<runtime::swarm_report> run_with_progress(const runtime::swarm_config& c,
                                                const std::vector<std::string>& serve_hosts, run_counts& counts,
                                                const fs::path& log_path) {
  signal_watch signals;
  auto s = runtime::swarm::create(c);
  if (!s) return s.error();
  auto& bus = (*s)->events();
  observe::hub hub(bus, {.run = c.name.empty() ? "run" : c.name});
  if (!log_path.empty()) {
    auto log = observe::jsonl_sink::open({.path = log_path});
    if (!log) return log.error();
    hub.add(*log);
  }
  auto metrics = std::make_shared<observe::metrics_registry>();
  hub.add(std::make_shared<observe::metrics_sink>(metrics));
  std::shared_ptr<observe::dashboard> dash;
  if (!c.serve.empty()) {
    auto where = observe::parse_listen_address(c.serve);
    if (!where) return where.error();
    auto board_stats = [&b = (*s)->board()] { return b.stats(); };
    metrics->gauge_fn("agentcore_claim_conflicts_total", "CAS conflicts while claiming (this process)", {},
                      [board_stats] { return static_cast<double>(board_stats().claim_conflicts); });
    auto d = observe::dashboard::start(
        {.address = where->first, .port = where->second, .token = c.serve_token, .allowed_hosts = serve_hosts},
        {.controls = runtime::make_dashboard_controls(&(*s)->board(), &(*s)->gate()), .metrics = metrics});
    if (!d) return d.error();
    dash = *d;
    hub.add(dash);
    std::cout << "dashboard: " << dash->url() << "\n" << std::flush;
  }
  hub.add(std::make_shared<observe::progress_view>());
  auto steps = bus.subscribe<gate::gate_step>([&](const gate::gate_step& e) {
    if (e.step == "bisect") ++counts.bisects;
  });
  auto verdicts = bus.subscribe<gate::gate_event>([&](const gate::gate_event& e) {
    using enum gate::verdict_kind;
    if (e.verdict.kind != merged && e.verdict.kind != queued && e.verdict.kind != conflict) ++counts.gate_rejections;
  });
  auto swarm_events = bus.subscribe<runtime::swarm_event>([&](const runtime::swarm_event& e) {
    if (e.what == "restart") ++counts.restarts;
  });
  // Once a second: the log's buffered lines go to the file, the live view's clocks move.
  std::atomic<bool> done{false};
  std::thread ticker([&] {
    while (!done) {
      for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      hub.flush();
    }
  });
  signals.start(**s);
  auto r = (*s)->run();
  done = true;
  ticker.join();
  return r;
}

void print_summary(const runtime::swarm_report& r, const run_counts& counts) {
  std::cout << fmt::format(
      "\n{} after {} cycles in {:.1f} s: {} merged, {} rejected by the gate ({} batches bisected), {} conflicts "
      "resolved, {} writes refused by the tool box, {} stalls, {} tasks split, {} judge restarts, {} tokens, "
      "cost {:.4f}\n",
      r.goal_met ? "goal met" : (r.stopped ? "stopped" : "ended"), r.cycles,
      static_cast<double>(r.elapsed.count()) / 1000.0, r.merged, counts.gate_rejections.load(), counts.bisects.load(),
      r.conflicts_resolved, r.refused_writes, r.stalls, r.split, counts.restarts.load(),
      r.usage.input_tokens + r.usage.output_tokens, r.cost);
  std::cout << "reason: " << r.reason << "\n";
}

void ignore_state_dir(const fs::path& repository);

int cmd_run(const args& a) {
  auto c = load_config(a);
  if (!c) return fail_with(c.error());
  if (a.flags.count("--model")) {
    c->models.planner = a.flags.at("--model");
    c->models.worker = a.flags.at("--model");
  }
  // One process's share of a swarm across processes (see swarm_config::roles).
  if (a.flags.count("--role")) {
    auto roles = runtime::parse_roles(a.flags.at("--role"));
    if (!roles) return fail_with(roles.error());
    c->roles = *roles;
  }
  if (a.flags.count("--store")) c->store = a.flags.at("--store");
  if (a.flags.count("--serve")) c->serve = a.flags.at("--serve");
  if (a.flags.count("--remote")) c->remote = a.flags.at("--remote");
  if (a.flags.count("--name")) {
    c->name = a.flags.at("--name");
    if (c->name.empty() || c->name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                               std::string::npos)
      return fail_with(fail(error::invalid_argument,
                            fmt::format("--name '{}': use letters, digits, '.', '_' or '-' (it names this process's "
                                        "workers and gate on the board)",
                                        c->name)));
  }
  if (a.flags.count("--repository")) {
    // Its slots go with it, unless the configuration put them elsewhere.
    fs::path before = c->repository;
    c->repository = fs::absolute(a.flags.at("--repository"));
    if (c->worktrees == before / ".agentcore" / "slots") c->worktrees = c->repository / ".agentcore" / "slots";
  }
  if (!c->roles.all() && c->name.empty()) c->name = fmt::format("p{}", ::getpid());
  // The event log: --log FILE, or --log off; by default beside the run's other state.
  fs::path log_path = c->repository / ".agentcore" / "events.jsonl";
  if (a.flags.count("--log")) log_path = a.flags.at("--log") == "off" ? fs::path() : fs::absolute(a.flags.at("--log"));
  ignore_state_dir(c->repository);
  run_counts counts;
  auto r = run_with_progress(*c, serve_allowed_hosts(a), counts, log_path);
  if (!r) return fail_with(r.error());
  print_summary(*r, counts);
  if (!c->roles.judge) return 0;  // a share of a run: it ended with the run, or was stopped
  return r->goal_met || r->stopped ? 0 : 2;
}

// The run's state beside the code (REPOSITORY/.agentcore: store, slots, event
// log) is ignored by git, so a `git add -A` in the checkout never commits it
// (the gate would refuse such a change: .agentcore/** is a protected path).
void ignore_state_dir(const fs::path& repository) {
  std::error_code ec;
  auto dir = repository / ".agentcore";
  fs::create_directories(dir, ec);
  if (!ec && !fs::exists(dir / ".gitignore", ec))
    std::ofstream(dir / ".gitignore") << "# agentcore's run state (store, worktree slots, event log): never committed\n*\n";
}

// agentcore demo: a sample project (textkit, C, with a test suite and a goal
// of six features), one planner, six workers, the batch gate and the judge,
// on a file store, with a recorded transcript replayed (or a live model).
int cmd_demo(const args& a) {
  // A live run: the models (and their options: keys, retry, budgets) of a configuration file.
  std::optional<runtime::swarm_config> live_models;
  if (a.flags.count("--config")) {
    auto from = load_config(a);
    if (!from) return fail_with(from.error());
    live_models = std::move(*from);
  }
  fs::path dir = a.flags.count("--dir") ? fs::path(a.flags.at("--dir"))
                                        : fs::temp_directory_path() / fmt::format("agentcore-demo-{}", ::getpid());
  std::error_code ec;
  fs::path repo_dir = dir / "textkit";
  // A demo already there (stopped, or killed) is resumed where it was: its
  // repository, store and transcript are kept.
  const bool resume = fs::exists(repo_dir / ".git", ec) && fs::exists(dir / "store" / "MANIFEST", ec) &&
                      fs::exists(dir / "transcript.jsonl", ec);
  if (!resume && fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    return fail_with(fail(error::already_exists,
                          fmt::format("'{}' exists, is not empty and holds no demo to resume; name another with --dir",
                                      dir.string())));
  if (!resume) {
    auto write = [&](const fs::path& p, std::string_view content) -> error_info {
      fs::create_directories(p.parent_path(), ec);
      std::ofstream out(p, std::ios::binary);
      out << content;
      if (!out) return fail(error::io_error, fmt::format("demo: cannot write '{}'", p.string()));
      return {};
    };
    // The project, committed as main's first commit.
    auto repo = git::repository::init(repo_dir);
    if (!repo) return fail_with(repo.error());
    std::map<std::string, std::optional<git::tree_entry>> files;
    for (const auto& asset : cli::demo_assets()) {
      if (asset.path.starts_with("project/")) {
        std::string rel(asset.path.substr(8));
        if (auto e = write(repo_dir / rel, asset.content)) return fail_with(e);
        auto blob = repo->write_blob(asset.content);
        if (!blob) return fail_with(blob.error());
        files[rel] = git::tree_entry{*blob, git::file_mode::blob};
      } else if (auto e = write(dir / asset.path, asset.content)) {
        return fail_with(e);
      }
    }
    auto tree = repo->edit_tree(std::nullopt, files);
    if (!tree) return fail_with(tree.error());
    auto root = repo->create_commit(*tree, {}, "textkit: reverse, its test, and a goal", {"agentcore demo", "demo@agentcore.invalid"});
    if (!root) return fail_with(root.error());
    if (auto m = repo->advance("refs/heads/main", std::nullopt, *root, "demo"); !m) return fail_with(m.error());
    // HEAD names main (as `git init -b main` would), so that worktrees and git itself agree.
    std::ofstream(repo_dir / ".git/HEAD") << "ref: refs/heads/main\n";
    // Index and files as git expects them after a checkout.
    if (std::system(fmt::format("git -C '{}' reset -q --mixed 2>/dev/null", repo_dir.string()).c_str()) != 0)
      return fail_with(fail(error::io_error, "demo: 'git reset' failed in the sample repository; is git installed?"));
  }

  runtime::swarm_config c;
  c.repository = repo_dir;
  c.worktrees = dir / "slots";
  c.store = "file:" + (dir / "store").string();
  c.goal = "textkit has upper, lower, words (count), trim and palindrome, each with its test, and make test passes";
  c.goal_checks = {"make goal"};
  c.slots = 8;
  c.planners = 1;
  c.workers = 6;
  c.gate_policy = gate::policy::batch;
  c.batch_wait = std::chrono::milliseconds(2000);  // changes submitted together land (and are bisected) together
  c.deep_checks = {"make test"};
  c.contract.acceptance_checks = {"make test"};
  c.contract.time = {.wall = std::chrono::seconds(600), .model_turns = 30};
  c.plan_when = runtime::swarm_config::plan_schedule::drained;
  c.merges_per_cycle = 0;  // a cycle is a wave
  c.restart_stalls = 1;
  c.max_cycles = 6;
  if (live_models) {
    c.models = live_models->models;
    c.model_options = live_models->model_options;
    c.review = live_models->review;
  }
  if (a.flags.count("--model")) {
    c.models.planner = c.models.worker = a.flags.at("--model");
  } else if (!a.flags.count("--config")) {
    c.models.planner = c.models.worker = "replay:" + (dir / "transcript.jsonl").string();
    c.model_options = {{"match", "task_and_turn"}};  // six workers at once: each task gets its own script
  }
  std::cout << (resume ? "resuming the agentcore demo in " : "agentcore demo in ") << dir.string() << ": textkit (C), 1 planner, 6 workers, batch gate, judge; "
            << (a.flags.count("--model")    ? "model " + a.flags.at("--model")
                : a.flags.count("--config") ? "the models of " + a.flags.at("--config")
                                            : std::string("replayed transcript"))
            << "\n\n";
  if (a.flags.count("--serve")) c.serve = a.flags.at("--serve");
  run_counts counts;
  auto r = run_with_progress(c, serve_allowed_hosts(a), counts, dir / "events.jsonl");
  if (!r) return fail_with(r.error());
  print_summary(*r, counts);
  if (!r->judgements.empty())
    for (const auto& chk : r->judgements.back().goal_checks)
      std::cout << fmt::format("main: '{}' {}\n", chk.command, chk.outcome());
  // The demo owns this checkout: show main's files in it, as the swarm left them.
  (void)std::system(fmt::format("git -C '{}' reset -q --hard 2>/dev/null", repo_dir.string()).c_str());
  std::cout << "the repository: " << repo_dir.string() << " (git log --oneline main)\n";
  std::cout << "the event log: " << (dir / "events.jsonl").string() << " (agentcore replay-log FILE)\n";
  return r->goal_met ? 0 : 2;
}

result<std::unique_ptr<store::store>> open_persistent(const runtime::swarm_config& c) {
  if (c.store == "memory:")
    return fail(error::invalid_argument,
                "the configuration's store is \"memory:\", which lives only inside a run; use \"file:DIR\" to look at "
                "a board from outside");
  // Looking never changes the store: no lock taken, no tail repaired, no
  // empty store made where one is missing.
  return runtime::open_store(c.store, {.read_only = true});
}

// The board of a durable store, with its archive of finished tasks, for looking.
result<std::shared_ptr<board::task_archive>> open_archive_for_looking(const runtime::swarm_config& c, store::store& s) {
  auto archive = runtime::open_archive(c.store, s, {.read_only = true});
  if (!archive) return archive.error();
  board::task_board b(s, {.archive = *archive});
  if (auto ok = b.verify_archive(); !ok) return ok.error();
  return archive;
}

int cmd_status(const args& a) {
  auto c = load_config(a);
  if (!c) return fail_with(c.error());
  auto s = open_persistent(*c);
  if (!s) return fail_with(s.error());
  auto archive = open_archive_for_looking(*c, **s);
  if (!archive) return fail_with(archive.error());
  board::task_board b(**s, {.archive = *archive});
  auto tasks = b.list();
  if (!tasks) return fail_with(tasks.error());
  std::map<std::string, std::size_t> by_state, archived;
  std::size_t total = tasks->size(), in_archive = 0;
  for (const auto& t : *tasks) ++by_state[std::string(to_string(t.state))];
  if (*archive)
    for (auto st : {board::task_state::merged, board::task_state::superseded}) {
      auto n = (*archive)->count(st);
      if (!n) return fail_with(n.error());
      if (*n == 0) continue;
      by_state[std::string(to_string(st))] += *n;
      archived[std::string(to_string(st))] = *n;
      total += *n;
      in_archive += *n;
    }
  std::cout << total << " tasks:";
  for (const auto& [k, n] : by_state) std::cout << " " << n << " " << k;
  std::cout << "\n";
  for (const auto& t : *tasks)
    std::cout << fmt::format("  {:<11} {:<24} {}{}\n", to_string(t.state), t.id.str(), t.title,
                             t.claimed_by && t.state == board::task_state::claimed ? " (" + t.claimed_by->str() + ")" : "");
  if (in_archive > 0) {
    std::cout << fmt::format("  ({} finished earlier, in the archive {}:", in_archive, (*archive)->where());
    for (const auto& [k, n] : archived) std::cout << " " << n << " " << k;
    std::cout << "; `agentcore task show ID` shows one)\n";
  }
  return 0;
}

int cmd_task_show(const args& a) {
  if (a.words.size() < 3) return usage(std::cerr, 2);
  auto c = load_config(a);
  if (!c) return fail_with(c.error());
  auto s = open_persistent(*c);
  if (!s) return fail_with(s.error());
  auto archive = open_archive_for_looking(*c, **s);
  if (!archive) return fail_with(archive.error());
  board::task_board b(**s, {.archive = *archive});
  auto t = b.get(task_id{a.words[2]});
  if (!t) return fail_with(t.error());
  if (!*t) return fail_with(fail(error::not_found, fmt::format("no task '{}' on the board", a.words[2])));
  std::cout << json::serialize(board::to_json_value(**t)) << "\n";
  return 0;
}

int cmd_gate_submit(const args& a) {
  if (a.words.size() < 3) return usage(std::cerr, 2);
  auto c = load_config(a);
  if (!c) return fail_with(c.error());
  auto repo = git::repository::open(c->repository);
  if (!repo) return fail_with(repo.error());
  auto head = repo->resolve(a.words[2]);
  if (!head) return fail_with(head.error());
  auto tip = repo->resolve(c->branch);
  if (!tip) return fail_with(tip.error());
  auto base = repo->merge_base(*head, *tip);
  if (!base) return fail_with(base.error());
  if (!*base)
    return fail_with(fail(error::invalid_argument,
                          fmt::format("'{}' shares no history with {}", a.words[2], c->branch)));
  auto s = runtime::open_store(c->store);
  if (!s) return fail_with(s.error());
  auto pool = git::worktree_pool::open(c->repository, {.root = c->worktrees, .slots = std::max<std::size_t>(c->slots, 1)});
  if (!pool) return fail_with(pool.error());
  std::optional<board::task_board> b;
  gate::gate_options go{.branch = c->branch, .mode = c->gate_policy, .batch_size = c->batch_size, .deep_checks = c->deep_checks};
  go.check.sandbox.mode = c->sandbox;
  if (a.flags.count("--task")) {
    b.emplace(**s);
    go.board = &*b;
  }
  auto g = gate::merge_gate::open(c->repository, **s, **pool, go);
  if (!g) return fail_with(g.error());
  std::string id = fmt::format("cli-{}-{}", head->hex().substr(0, 12), std::time(nullptr));
  gate::change ch{.id = id, .base = **base, .head = *head, .contract = c->contract, .checks = c->contract.acceptance_checks};
  if (a.flags.count("--task")) ch.task = task_id{a.flags.at("--task")};
  auto v = (*g)->submit(ch);
  if (!v) return fail_with(v.error());
  if (v->kind == gate::verdict_kind::queued) {
    auto ran = (*g)->run_until_empty();
    if (!ran) return fail_with(ran.error());
    auto final_v = (*g)->verdict(id);
    if (!final_v) return fail_with(final_v.error());
    if (*final_v) v = **final_v;
  }
  std::cout << fmt::format("{}: {}{}\n", id, to_string(v->kind), v->detail.empty() ? "" : " - " + v->detail);
  if (!v->contract.ok()) std::cout << v->contract.summary() << "\n";
  for (const auto& chk : v->checks) std::cout << fmt::format("  check '{}': {}\n", chk.command, chk.outcome());
  if (v->merged_as) std::cout << c->branch << " is now " << v->merged_as->hex() << "\n";
  return v->kind == gate::verdict_kind::merged ? 0 : 3;
}

// agentcore serve: the dashboard over a board in a durable store (a file
// store or etcd) from outside the run. The board's changes, seen through a
// watch, become task transitions for the page and the event stream.
int cmd_serve(const args& a) {
  // SIGINT and SIGTERM wait for sigtimedwait below: block them before any
  // thread starts (the store's, the dashboard's inherit the mask), so that no
  // other thread takes them with the default action.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  auto c = load_config(a);
  if (!c) return fail_with(c.error());
  if (a.flags.count("--store")) c->store = a.flags.at("--store");
  if (a.flags.count("--serve")) c->serve = a.flags.at("--serve");
  if (c->serve.empty()) c->serve = "127.0.0.1:8080";
  auto where = observe::parse_listen_address(c->serve);
  if (!where) return fail_with(where.error());
  auto s = open_persistent(*c);
  if (!s) return fail_with(s.error());
  event_bus bus;
  board::task_board b(**s, {.events = &bus});
  auto metrics = std::make_shared<observe::metrics_registry>();
  observe::hub hub(bus, {.run = c->name.empty() ? "board" : c->name});
  hub.add(std::make_shared<observe::metrics_sink>(metrics));
  auto d = observe::dashboard::start({.address = where->first,
                                      .port = where->second,
                                      .token = c->serve_token,
                                      .allowed_hosts = serve_allowed_hosts(a)},
                                     {.controls = runtime::make_dashboard_controls(&b, nullptr), .metrics = metrics});
  if (!d) return fail_with(d.error());
  hub.add(*d);
  auto rev = (*s)->current_revision();
  if (!rev) return fail_with(rev.error());
  std::map<std::string, board::task_state> known;
  auto tasks = b.list();
  if (!tasks) return fail_with(tasks.error());
  for (const auto& t : *tasks) known[t.id.str()] = t.state;
  auto w = b.watch(*rev + 1);
  if (!w) return fail_with(w.error());
  std::cout << "dashboard: " << (*d)->url() << " (board in " << c->store << "; Ctrl-C stops)\n" << std::flush;
  for (;;) {
    timespec tick{0, 200'000'000};
    if (sigtimedwait(&set, nullptr, &tick) > 0) break;
    auto evs = (*w)->poll();
    if (!evs) return fail_with(evs.error());  // compacted history, a lost cluster: say so
    for (const auto& e : *evs) {
      if (e.type != store::watch_event::kind::put) continue;
      auto t = board::task_from_json(std::string_view(e.kv.value));
      if (!t) continue;
      auto [it, fresh] = known.try_emplace(t->id.str(), t->state);
      if (!fresh && it->second == t->state) continue;
      bus.publish(board::task_transition{t->id, fresh ? board::task_state::proposed : it->second, t->state,
                                         t->claimed_by, e.kv.mod_revision, fresh});
      it->second = t->state;
    }
  }
  return 0;
}

// agentcore sim CONFIG [--json] [--out DIR]: capacity planning (sim/sim.hpp).
// CONFIG is {"scenario": {...}, "sweep": {"workers": [...], "designs": [...],
// "policies": [{...}, ...]}}; without "sweep", the scenario runs once.
int cmd_sim(const args& a) {
  bool from_log = a.flags.count("--from") > 0;
  if (a.words.size() < 2 && !from_log)
    return fail_with(fail(error::invalid_argument,
                          "sim needs a configuration: agentcore sim CONFIG (a JSON file: {\"scenario\": {...}, "
                          "\"sweep\": {\"workers\": [1, 10, 100]}}), or a run's event log: agentcore sim --from "
                          "REPOSITORY/.agentcore/events.jsonl [CONFIG]"));
  fs::path path = a.words.size() >= 2 ? fs::path(a.words[1]) : fs::path(a.flags.at("--from"));
  auto where = [&](const error_info& e) { return fail_with(error_info(e.code(), fmt::format("{}: {}", path.string(), e.message()))); };
  json::object root;
  if (a.words.size() >= 2) {
    std::ifstream f(path);
    if (!f) return fail_with(fail(error::not_found, fmt::format("sim: no configuration at '{}'", path.string())));
    std::stringstream text;
    text << f.rdbuf();
    auto doc = parse_json(text.str());
    if (!doc) return where(doc.error());
    if (!doc->is_object()) return where(fail(error::invalid_argument, "the configuration must be a JSON object"));
    root = doc->as_object();
  }
  for (const auto& kv : root)
    if (kv.key() != "scenario" && kv.key() != "sweep")
      return where(fail(error::invalid_argument,
                        fmt::format("unknown field '{}': the configuration has \"scenario\" and \"sweep\"",
                                    std::string_view(kv.key()))));
  sim::scenario base;
  if (auto* s = root.if_contains("scenario")) {
    auto r = sim::scenario_from_json(*s);
    if (!r) return where(r.error());
    base = *r;
  }
  if (from_log) {
    fs::path log = a.flags.at("--from");
    std::ifstream in(log);
    if (!in) return fail_with(fail(error::not_found, fmt::format("sim: no event log at '{}'", log.string())));
    auto c = sim::calibrate(in, base);
    if (!c) return fail_with(error_info(c.error().code(), fmt::format("{}: {}", log.string(), c.error().message())));
    base = c->fitted;
    std::ostream& notes = a.flags.count("--json") ? std::cerr : std::cout;
    notes << fmt::format("calibrated from {} ({} events{}):\n", log.string(), c->events,
                         c->skipped ? fmt::format(", {} unreadable lines skipped", c->skipped) : std::string());
    for (const auto& n : c->notes) notes << "  " << n << "\n";
    notes << "\n";
  }
  bool json_out = a.flags.count("--json") > 0;
  auto* sw = root.if_contains("sweep");
  if (!sw) {
    auto r = sim::run(base);
    if (!r) return where(r.error());
    if (json_out) {
      std::cout << boost::json::serialize(boost::json::value_from(*r)) << "\n";
      return 0;
    }
    std::cout << fmt::format("{} workers, {}, gate {}: {:.1f} merges/h, {:.2f}/h in model cost, queue wait {:.0f} min "
                             "(median), conflicts {:.0f}%, reverts {:.0f}%, gate busy {:.0f}%{}\n",
                             r->workers, sim::to_string(r->coordination), sim::describe(base.gate), r->merges_per_hour,
                             r->cost_per_hour, r->queue_wait_median_s / 60, 100 * r->conflict_rate,
                             100 * r->revert_rate, 100 * r->gate_utilisation,
                             r->time_to_goal_h ? fmt::format(", goal reached in {:.1f} h", *r->time_to_goal_h)
                                               : std::string());
    return 0;
  }
  if (!sw->is_object()) return where(fail(error::invalid_argument, "'sweep' must be an object"));
  sim::sweep_options o;
  for (const auto& kv : sw->as_object()) {
    std::string_view key = kv.key();
    const auto& v = kv.value();
    if (!v.is_array()) return where(fail(error::invalid_argument, fmt::format("'sweep.{}' must be an array", key)));
    if (key == "workers") {
      o.workers.clear();
      for (const auto& x : v.as_array()) {
        if (!x.is_int64() || x.as_int64() < 1 || x.as_int64() > 100000)
          return where(fail(error::invalid_argument, "'sweep.workers' must list worker counts from 1 to 100000"));
        o.workers.push_back(static_cast<int>(x.as_int64()));
      }
    } else if (key == "designs") {
      o.designs.clear();
      for (const auto& x : v.as_array()) {
        auto d = x.is_string() ? sim::parse_design(std::string_view(x.as_string())) : std::nullopt;
        if (!d)
          return where(fail(error::invalid_argument, "'sweep.designs' lists \"strict_locks\", \"flat_optimistic\" "
                                                     "or \"planner_worker\""));
        o.designs.push_back(*d);
      }
    } else if (key == "policies") {
      o.policies.clear();
      for (const auto& x : v.as_array()) {
        auto p = sim::policy_from_json(x);
        if (!p) return where(p.error());
        o.policies.push_back(*p);
      }
    } else {
      return where(fail(error::invalid_argument,
                        fmt::format("unknown field 'sweep.{}': a sweep has \"workers\", \"designs\" and \"policies\"", key)));
    }
  }
  auto r = sim::sweep(base, o);
  if (!r) return where(r.error());
  fs::path out = a.flags.count("--out") ? fs::path(a.flags.at("--out")) : fs::absolute(path).parent_path();
  std::error_code ec;
  fs::create_directories(out, ec);
  auto write = [&](const fs::path& file, const std::string& content) -> bool {
    std::ofstream of(file, std::ios::binary | std::ios::trunc);
    of << content;
    of.close();
    if (!of) {
      fail_with(fail(error::io_error, fmt::format("sim: could not write '{}'", file.string())));
      return false;
    }
    return true;
  };
  std::string report = boost::json::serialize(boost::json::value_from(*r));
  if (!write(out / "sim-report.json", report + "\n") || !write(out / "sim-throughput.svg", sim::throughput_svg(*r)) ||
      !write(out / "sim-queue-wait.svg", sim::queue_wait_svg(*r)))
    return 1;
  if (json_out) {
    std::cout << report << "\n";
    return 0;
  }
  std::cout << fmt::format("{:<16} {:<22} {:>7} {:>9} {:>9} {:>10} {:>9} {:>7}\n", "design", "gate", "workers", "merges/h",
                           "cost/h", "wait min", "conflict", "gate %");
  for (const auto* rows : {&r->by_design, &r->by_policy})
    for (const auto& x : *rows)
      std::cout << fmt::format("{:<16} {:<22} {:>7} {:>9.1f} {:>9.2f} {:>10.0f} {:>8.0f}% {:>6.0f}%\n",
                               sim::to_string(x.coordination),
                               x.queue == sim::queue_kind::github_merge_queue
                                   ? std::string("github merge queue")
                                   : sim::describe({.mode = x.policy, .batch_size = x.batch_size,
                                                    .optimistic_every = x.optimistic_every}),
                               x.workers, x.merges_per_hour, x.cost_per_hour, x.queue_wait_median_s / 60,
                               100 * x.conflict_rate, 100 * x.gate_utilisation);
  std::cout << "\n" << sim::answer(*r);
  std::cout << fmt::format("\nwrote {}, {} and {}\n", (out / "sim-report.json").string(),
                           (out / "sim-throughput.svg").string(), (out / "sim-queue-wait.svg").string());
  return 0;
}

// agentcore replay-log FILE: a run's timeline from its event log.
int cmd_replay_log(const args& a) {
  if (a.words.size() < 2)
    return fail_with(fail(error::invalid_argument, "replay-log needs the event log: agentcore replay-log FILE"));
  std::size_t skipped = 0;
  auto events = observe::read_event_log(a.words[1], true, &skipped);
  if (!events) return fail_with(events.error());
  auto timelines = observe::task_timelines(*events);
  if (!events->empty())
    std::cout << fmt::format("{} events from {} to {}{}\n\n", events->size(), observe::format_time(events->front().time_us),
                             observe::format_time(events->back().time_us),
                             skipped ? fmt::format(" ({} unreadable lines skipped)", skipped) : "");
  std::cout << observe::format_timelines(timelines);
  if (timelines.empty()) std::cout << "no task was claimed in this log\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  agentcore::tune_allocator_for_long_runs();  // a run goes on for days: RSS must not creep (core/memory.hpp)
  auto a = parse(argc, argv);
  if (!a) return fail_with(a.error());
  if (a->words.empty() || a->flags.count("--help")) return usage(a->words.empty() ? std::cerr : std::cout, a->words.empty() ? 2 : 0);
  const auto& w = a->words;
  if (w[0] == "init") return cmd_init(*a);
  if (w[0] == "run") return cmd_run(*a);
  if (w[0] == "demo") return cmd_demo(*a);
  if (w[0] == "status") return cmd_status(*a);
  if (w[0] == "replay-log") return cmd_replay_log(*a);
  if (w[0] == "sim") return cmd_sim(*a);
  if (w[0] == "serve") return cmd_serve(*a);
  if (w[0] == "task" && w.size() >= 2 && w[1] == "show") return cmd_task_show(*a);
  if (w[0] == "gate" && w.size() >= 2 && w[1] == "submit") return cmd_gate_submit(*a);
  std::cerr << "agentcore: unknown command '" << w[0] << "'\n";
  return usage(std::cerr, 2);
}
