// The swarm area: whole task lifecycles through the runtime (propose, claim,
// prepare a worktree, edit, commit, contract check, merge, finish) with a
// zero-latency model and no-op checks on a 20,000-file repository; memory per
// idle worker; and tasks lost when leases expire at random.
#include "bench.hpp"
#include "harness.hpp"

#include <agentcore/board/task_board.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/runtime/swarm.hpp>
#include <agentcore/store/memory_store.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <future>
#include <random>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/resource.h>

namespace agentcore::bench {

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

std::size_t rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with("VmRSS:")) return static_cast<std::size_t>(std::strtoull(line.c_str() + 6, nullptr, 10));
  return 0;
}

// Answers at once: the planner proposes `total` one-file tasks, `per_round` at
// a time; a worker writes its task's file, then finishes.
class instant_model final : public model::client {
public:
  instant_model(std::size_t total, std::size_t per_round) : total_(total), per_round_(per_round) {}
  std::string name() const override { return "instant"; }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    model::response r;
    r.model_name = "instant";
    if (req.tags.role.starts_with("planner")) {
      // As a model would, it proposes no more than the planner asks for.
      std::size_t asked = per_round_;
      auto text = req.messages.back().text();
      if (auto at = text.find("with at most "); at != std::string::npos)
        asked = std::min<std::size_t>(asked, std::strtoull(text.c_str() + at + 13, nullptr, 10));
      std::string tasks;
      std::lock_guard lock(m_);
      for (std::size_t i = 0; i < asked && next_ < total_; ++i, ++next_)
        tasks += fmt::format(R"({}{{"id":"t{}","title":"Task {}","description":"write tasks/t{}.txt"}})",
                             tasks.empty() ? "" : ",", next_, next_, next_);
      r.message = model::assistant("{\"tasks\":[" + tasks + "]}");
    } else if (req.messages.size() == 1) {
      r.message.parts.push_back(model::tool_call{
          "1", "write_file", fmt::format(R"({{"path":"tasks/{}.txt","content":"done\n"}})", req.tags.task)});
    } else {
      r.message.parts.push_back(model::tool_call{"2", "finish", R"({"summary":"done"})"});
    }
    complete(std::move(h), std::move(r));
  }

private:
  std::mutex m_;
  std::size_t total_, per_round_, next_ = 0;
};

// A repository of `files` small files in directories of 50, on main.
void make_repository(const fs::path& dir, std::size_t files) {
  auto repo = check(git::repository::init(dir, false, {.fsync = false}), "swarm: init");
  std::map<std::string, std::optional<git::tree_entry>> all;
  for (std::size_t i = 0; i < files; ++i) {
    auto path = fmt::format("src/d{:03}/f{:02}.c", i / 50, i % 50);
    all.emplace(path, git::tree_entry{check(repo.write_blob(fmt::format("int f{};\n", i)), "swarm: blob")});
  }
  auto tree = check(repo.edit_tree(std::nullopt, all), "swarm: tree");
  auto root = check(repo.create_commit(tree, {}, "root", {"bench", "bench@agentcore.invalid", 0, 0}), "swarm: commit");
  check(repo.advance("refs/heads/main", std::nullopt, root, "bench"), "swarm: main");
  if (std::system(fmt::format("git -C '{}' symbolic-ref HEAD refs/heads/main", dir.string()).c_str()) != 0)
    throw failure("swarm: git symbolic-ref failed (git must be on PATH)");
}

runtime::swarm_config base_config(const fs::path& repo, const fs::path& slots, std::size_t n_slots) {
  runtime::swarm_config c;
  c.repository = repo;
  c.worktrees = slots;
  c.slots = n_slots;
  c.gate_policy = gate::policy::batch;
  c.batch_size = 16;
  c.contract.allowed_paths = {"tasks/**"};
  c.merges_per_cycle = 0;  // one cycle: the judge closes it when the board drains
  c.sandbox = process::sandbox_mode::unconfined_host_access;  // no-op checks: nothing runs
  c.threads = 2;
  return c;
}

struct lifecycle_figures {
  double per_s = 0, cpu_us = 0;
  std::size_t merged = 0;
};

lifecycle_figures lifecycles(const run_options& o, const fs::path& repo, std::size_t workers, std::size_t tasks,
                             std::size_t n_slots) {
  auto slots = o.dir / "slots";
  {
    // Untimed: every slot's first checkout of the whole tree.
    auto pool = check(git::worktree_pool::open(repo, {.root = slots, .slots = n_slots}), "swarm: pool");
    auto tip = check(check(git::repository::open(repo), "swarm: open").resolve("refs/heads/main"), "swarm: tip");
    std::vector<git::worktree> held;
    for (std::size_t i = 0; i < n_slots; ++i) held.push_back(check(pool->acquire(tip), "swarm: warm a slot"));
  }
  auto cfg = base_config(repo, slots, n_slots);
  cfg.workers = workers;
  cfg.max_open_tasks = 4 * n_slots;
  cfg.max_new_tasks = 2 * n_slots;
  auto model = std::make_shared<instant_model>(tasks, cfg.max_new_tasks);
  auto s = check(runtime::swarm::create(cfg, {.client_for = [&](std::string_view) { return model; }}), "swarm: create");
  auto cpu0 = cpu_seconds();
  auto t0 = steady::now();
  auto r = check(s->run(), "swarm: run");
  double secs = seconds_since(t0);
  double cpu = cpu_seconds() - cpu0;
  if (r.merged != tasks)
    throw failure(fmt::format("swarm: {} of {} tasks merged ({}; {})", r.merged, tasks, r.reason,
                              json::serialize(json::value_from(r.tasks_by_state))));
  return {static_cast<double>(r.merged) / secs, cpu * 1e6 / static_cast<double>(r.merged), r.merged};
}

// RSS of a running swarm whose workers are all idle (nothing is ever ready).
std::size_t idle_rss(const run_options& o, const fs::path& repo, std::size_t workers) {
  auto cfg = base_config(repo, o.dir / "idle-slots", 2);
  cfg.workers = workers;
  cfg.planners = 0;
  auto model = std::make_shared<instant_model>(0, 0);
  auto s = check(runtime::swarm::create(cfg, {.client_for = [&](std::string_view) { return model; }}), "swarm: create");
  // A task that never becomes ready keeps the board from draining.
  check(s->board().propose({.id = task_id{"blocked"}, .title = "never ready", .dependencies = {task_id{"nothing"}}}),
        "swarm: propose");
  std::promise<void> done;
  std::thread runner([&] {
    (void)s->run();
    done.set_value();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // every worker has looked and gone idle
  auto m = rss_kib();
  s->stop();
  done.get_future().wait();
  runner.join();
  return m;
}

// RSS per idle worker, measured in a child process forked before anything
// else: in this process, idle workers would reuse pages the lifecycles freed
// and RSS would not see them.
double idle_kib_per_worker(const run_options& o, std::size_t workers) {
  int fds[2];
  if (::pipe(fds) != 0) throw failure("swarm: pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw failure("swarm: fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    double per = -1;
    try {
      auto repo = o.dir / "idle-repo";
      fs::remove_all(repo);
      make_repository(repo, 200);
      auto base = idle_rss(o, repo, 1);
      auto many = idle_rss(o, repo, workers + 1);
      per = many > base ? static_cast<double>(many - base) / static_cast<double>(workers) : 0.0;
      fmt::print(stderr, "  rss_kib_per_idle_worker: {:.2f} ({} KiB with 1 worker, {} KiB with {})\n", per, base, many,
                 workers + 1);
    } catch (const std::exception& e) {
      fmt::print(stderr, "  rss_kib_per_idle_worker: {}\n", e.what());
    }
    (void)!::write(fds[1], &per, sizeof per);
    ::_exit(per < 0 ? 1 : 0);
  }
  ::close(fds[1]);
  double per = -1;
  auto got = ::read(fds[0], &per, sizeof per);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (got != sizeof per || per < 0) throw failure("swarm: the idle-worker measurement failed (see above)");
  return per;
}

// 10,000 tasks through the board by `claimers` simulated workers, a share of
// which die holding their claim (their lease expires); every task must still
// end merged exactly once.
std::size_t lost_tasks(std::size_t tasks, std::size_t claimers, double die_rate) {
  auto clk = std::make_shared<virtual_clock>();
  auto store = store::memory_store::create({.clock = clk});
  board::task_board board(*store, {.claim_window = 64});
  for (std::size_t i = 0; i < tasks; ++i)
    check(board.propose({.id = task_id{fmt::format("t{}", i)}, .title = "t"}), "swarm: propose");
  std::atomic<std::size_t> merged{0}, deaths{0}, double_merges{0};
  std::mutex clock_mutex;
  first_error err;
  std::vector<std::thread> ts;
  for (std::size_t c = 0; c < claimers; ++c)
    ts.emplace_back([&, c] {
      std::mt19937_64 rng(c + 1);
      std::bernoulli_distribution dies(die_rate);
      auto lease = store->grant(std::chrono::seconds(30));
      int idle = 0;
      while (!err.stop && merged < tasks) {
        if (!lease) return err.set("grant: " + lease.error().message());
        auto t = board.claim(worker_id{fmt::format("w{}", c)}, *lease);
        if (!t && t.error() == error::lease_not_found) {  // time jumped past this live worker's lease too
          lease = store->grant(std::chrono::seconds(30));
          continue;
        }
        if (!t) return err.set("claim: " + t.error().message());
        if (!*t) {
          // Nothing ready: time passes, dead workers' leases run out.
          if (++idle > 3) {
            std::lock_guard lock(clock_mutex);
            clk->advance(std::chrono::seconds(31));
            (void)board.reconcile();
            idle = 0;
          }
          std::this_thread::yield();
          continue;
        }
        if (dies(rng)) {  // this worker dies holding the claim; a new one starts with a new lease
          ++deaths;
          lease = store->grant(std::chrono::seconds(30));
          continue;
        }
        auto sub = board.submit((*t)->id, worker_id{fmt::format("w{}", c)});
        if (!sub) {
          if (sub.error() == error::claim_lost) {  // its lease ran out meanwhile: the task went back
            lease = store->grant(std::chrono::seconds(30));
            continue;
          }
          return err.set("submit: " + sub.error().message());
        }
        auto fin = board.finish((*t)->id, board::task_state::merged);
        if (!fin) {
          ++double_merges;
          return err.set("finish: " + fin.error().message());
        }
        ++merged;
        (void)board.heartbeat(*lease);
      }
    });
  for (auto& t : ts) t.join();
  err.rethrow();
  auto all = check(board.list(), "swarm: list");
  std::size_t lost = 0;
  for (const auto& t : all) lost += t.state != board::task_state::merged;
  fmt::print(stderr, "  lost_tasks: {} tasks, {} claimers, {} died holding a claim, {} lost, {} merged twice\n", tasks,
             claimers, deaths.load(), lost, double_merges.load());
  return lost + double_merges;
}

}  // namespace

std::vector<figure> run_swarm(const run_options& o) {
  std::size_t files = o.quick ? 2000 : 20000;
  std::size_t workers = o.quick ? 100 : 1000;
  std::size_t tasks = o.quick ? 100 : 600;
  std::size_t slots = o.quick ? 8 : 64;
  auto repo = o.dir / "repo";
  // Runs share the scratch directory: each starts from nothing.
  for (const char* d : {"repo", "slots", "idle-slots"}) fs::remove_all(o.dir / d);
  // Measured once, in the first run, before this process has a heap to
  // reuse (a child forked later would inherit one); later runs report it too.
  static std::optional<double> per_worker_measured;
  if (!per_worker_measured) per_worker_measured = idle_kib_per_worker(o, o.quick ? 200 : 1000);
  double per_worker = *per_worker_measured;
  auto t_gen = steady::now();
  make_repository(repo, files);
  fmt::print(stderr, "  generated {} files in {:.2f} s\n", files, seconds_since(t_gen));

  auto lc = lifecycles(o, repo, workers, tasks, slots);
  fmt::print(stderr, "  lifecycles_per_s: {:.1f} ({} tasks, {} workers, {} slots, {:.0f} us CPU each)\n", lc.per_s,
             lc.merged, workers, slots, lc.cpu_us);


  auto lost = lost_tasks(o.quick ? 2000 : 10000, o.quick ? 16 : 64, 0.05);

  return {
      {"lifecycles_per_s", lc.per_s, 1, bound{true, 50}},
      {"cpu_us_per_lifecycle", lc.cpu_us, 0, std::nullopt},
      {"rss_kib_per_idle_worker", per_worker, 2, bound{false, 64}},
      {"lost_tasks", static_cast<double>(lost), 0, bound{false, 0}},
  };
}

}  // namespace agentcore::bench
