// The soak area: a long run in one process, and runs killed and resumed.
//
// - rss_growth_kib_per_1k_lifecycles: one swarm (zero-latency model, no-op
//   checks, file store and repository on /dev/shm where it exists) takes
//   tasks through their whole lifecycle; the process's RSS (malloc_trim
//   first), sampled some thirty times from `first` lifecycles to `total`,
//   gives the growth per thousand as the slope of a least-squares line (one
//   sample is +-10 MiB of noise: what is in flight). What a finished task
//   leaves behind shows here; heap_growth_kib_per_1k_lifecycles, the same
//   slope of the heap in use (all arenas), tells memory kept from the
//   allocator's fragmentation. The bench tunes glibc's allocator as the
//   agentcore program does (core/memory.hpp); AGENTCORE_BENCH_DEFAULT_MALLOC=1
//   leaves glibc's defaults, under which the RSS creeps while the heap stays
//   flat.
// - lifecycles_per_s of that run, beside the swarm area's figure.
// - resume_failures, lost_tasks, double_merges: runs on a file store killed
//   with SIGKILL at random moments (a forked child), each resumed by a new
//   swarm on the same store and repository, which must finish the run with
//   every task merged exactly once.
#include "bench.hpp"
#include "harness.hpp"

#include <agentcore/board/task_board.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/runtime/swarm.hpp>

#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <cstdlib>
#include <fstream>
#include <malloc.h>
#include <random>
#include <signal.h>
#include <spawn.h>
#include <cstring>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace agentcore::bench {

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;

std::size_t rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.starts_with("VmRSS:")) return static_cast<std::size_t>(std::strtoull(line.c_str() + 6, nullptr, 10));
  return 0;
}

// The RSS by kind (anonymous, file, shared memory) and the thread count, from
// /proc/self/status: tells the heap from mapped files and thread stacks.
std::string rss_kinds() {
  std::ifstream f("/proc/self/status");
  std::string line, out;
  for (std::string_view key : {"RssAnon:", "RssFile:", "RssShmem:", "Threads:"}) {
    f.clear();
    f.seekg(0);
    while (std::getline(f, line))
      if (line.starts_with(key)) {
        auto v = line.substr(key.size());
        v.erase(0, v.find_first_not_of(" \t"));
        out += fmt::format(" {} {}", key.substr(0, key.size() - 1), v);
      }
  }
  return out;
}

// The heap in use in every arena (mallinfo2 counts the main arena alone, and
// the swarm's threads allocate in arenas of their own): malloc_info's totals,
// the memory the arenas hold less what is free in them, plus mmapped blocks.
std::size_t heap_in_use_kib() {
  char* buf = nullptr;
  std::size_t len = 0;
  FILE* f = ::open_memstream(&buf, &len);
  if (!f) return 0;
  ::malloc_info(0, f);
  ::fclose(f);
  std::string xml(buf, len);
  ::free(buf);
  // The totals follow the last </heap>.
  auto tail = xml.rfind("</heap>");
  std::string_view t(xml);
  if (tail != std::string::npos) t = t.substr(tail);
  auto field = [&](std::string_view tag) -> std::size_t {
    auto at = t.find(tag);
    if (at == std::string_view::npos) return 0;
    auto size = t.find("size=\"", at);
    if (size == std::string_view::npos) return 0;
    return static_cast<std::size_t>(std::strtoull(t.data() + size + 6, nullptr, 10));
  };
  auto current = field("<system type=\"current\"");
  auto free_fast = field("<total type=\"fast\"");
  auto free_rest = field("<total type=\"rest\"");
  auto mmapped = field("<total type=\"mmap\"");
  return (current + mmapped - std::min(current, free_fast + free_rest)) / 1024;
}

// Each arena's size and free bytes (MiB), from malloc_info's <heap> blocks:
// "size/free" per arena, for telling which thread's arena grows.
std::string arena_summary() {
  char* buf = nullptr;
  std::size_t len = 0;
  FILE* f = ::open_memstream(&buf, &len);
  if (!f) return {};
  ::malloc_info(0, f);
  ::fclose(f);
  std::string xml(buf, len);
  ::free(buf);
  std::string out;
  for (std::size_t at = xml.find("<heap nr="); at != std::string::npos; at = xml.find("<heap nr=", at + 1)) {
    auto end = xml.find("</heap>", at);
    std::string_view h = std::string_view(xml).substr(at, end - at);
    auto field = [&](std::string_view tag) -> double {
      auto t = h.find(tag);
      if (t == std::string_view::npos) return 0;
      auto size = h.find("size=\"", t);
      return size == std::string_view::npos ? 0 : std::strtod(h.data() + size + 6, nullptr) / (1 << 20);
    };
    out += fmt::format(" {:.1f}/{:.1f}", field("<system type=\"current\""),
                       field("<total type=\"fast\"") + field("<total type=\"rest\""));
  }
  return out;
}

// Where task t<n> writes: one of 1000 files (ten directories of a hundred),
// task n rewriting the file task n-1000 wrote. The repository then stays the
// same size however many tasks run (a growing tree would grow every slot's
// index and every merge's trees), so the RSS figure shows what the library
// keeps per task; tasks n and n+1000 are never in flight together (at most
// max_open_tasks are), so no two changes in flight touch one file.
std::string task_file(std::string_view task) {
  auto n = std::strtoull(std::string(task.substr(task.starts_with('t') ? 1 : 0)).c_str(), nullptr, 10) % 1000;
  return fmt::format("tasks/{}/f{:03}.txt", n / 100, n);
}

// Answers at once: the planner proposes tasks t<first>.. up to `total`, as
// many as it is asked for; a worker writes its task's file, then finishes.
// Tasks already on the board (a resumed run) are proposed again by id and
// dropped by the planner, as a model that does not know would.
class instant_model final : public model::client {
public:
  explicit instant_model(std::size_t total) : total_(total) {}
  std::string name() const override { return "instant"; }

protected:
  void do_chat(model::request req, model::delta_handler, asio::any_completion_handler<model::chat_signature> h) override {
    model::response r;
    r.model_name = "instant";
    r.usage = {100, 20};
    if (req.tags.role.starts_with("planner")) {
      std::size_t asked = 8;
      auto text = req.messages.back().text();
      if (auto at = text.find("with at most "); at != std::string::npos)
        asked = std::strtoull(text.c_str() + at + 13, nullptr, 10);
      std::string tasks;
      std::lock_guard lock(m_);
      for (std::size_t i = 0; i < asked && next_ < total_; ++i, ++next_)
        tasks += fmt::format(R"({}{{"id":"t{}","title":"Task {}","description":"write {}"}})",
                             tasks.empty() ? "" : ",", next_, next_, task_file(fmt::format("t{}", next_)));
      r.message = model::assistant("{\"tasks\":[" + tasks + "]}");
    } else if (req.messages.size() == 1) {
      r.message.parts.push_back(model::tool_call{
          "1", "write_file", fmt::format(R"({{"path":"{}","content":"done by {}\n"}})", task_file(req.tags.task), req.tags.task)});
    } else {
      r.message.parts.push_back(model::tool_call{"2", "finish", R"({"summary":"done"})"});
    }
    complete(std::move(h), std::move(r));
  }

private:
  std::mutex m_;
  std::size_t total_, next_ = 0;
};

void make_repository(const fs::path& dir, std::size_t files) {
  auto repo = check(git::repository::init(dir, false, {.fsync = false}), "soak: init");
  std::map<std::string, std::optional<git::tree_entry>> all;
  for (std::size_t i = 0; i < files; ++i)
    all.emplace(fmt::format("src/d{:03}/f{:02}.c", i / 50, i % 50),
                git::tree_entry{check(repo.write_blob(fmt::format("int f{};\n", i)), "soak: blob")});
  auto tree = check(repo.edit_tree(std::nullopt, all), "soak: tree");
  auto root = check(repo.create_commit(tree, {}, "root", {"bench", "bench@agentcore.invalid", 0, 0}), "soak: commit");
  check(repo.advance("refs/heads/main", std::nullopt, root, "bench"), "soak: main");
}

runtime::swarm_config config(const fs::path& dir) {
  runtime::swarm_config c;
  c.repository = dir / "repo";
  c.worktrees = dir / "slots";
  c.store = "file:" + (dir / "store").string();
  c.slots = 10;
  c.workers = 8;
  c.threads = 2;
  c.gate_policy = gate::policy::batch;
  c.batch_size = 16;
  c.max_open_tasks = 32;
  c.max_new_tasks = 16;
  c.contract.allowed_paths = {"tasks/**"};
  c.merges_per_cycle = 0;
  c.sandbox = process::sandbox_mode::unconfined_host_access;  // no-op checks: nothing runs
  c.lease = std::chrono::seconds(2);
  return c;
}

struct soak_figures {
  double per_s = 0;
  double growth_per_1k = 0;       // slope of the trimmed RSS from `first` on
  double heap_growth_per_1k = 0;  // slope of the heap in use (all arenas) over the same samples
  std::size_t rss_first = 0, rss_end = 0;
};

// The least-squares slope of y over x, per 1,000 x.
double slope_per_1k(const std::vector<std::pair<double, double>>& xy) {
  if (xy.size() < 2) return 0;
  double n = static_cast<double>(xy.size()), sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (auto [x, y] : xy) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  double d = n * sxx - sx * sx;
  return d == 0 ? 0 : (n * sxy - sx * sy) / d * 1000.0;
}

soak_figures long_run(const fs::path& dir, std::size_t first, std::size_t total) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  make_repository(dir / "repo", 200);
  // For experiments: libgit2's object cache is most of the heap.
  if (const char* c = std::getenv("AGENTCORE_SOAK_GIT_CACHE_BYTES")) git::set_object_cache_limit(std::strtoull(c, nullptr, 10));
  fmt::print(stderr, "  allocator: {}\n", std::getenv("AGENTCORE_BENCH_DEFAULT_MALLOC")
                                                ? "glibc's defaults (AGENTCORE_BENCH_DEFAULT_MALLOC)"
                                                : "tuned as the agentcore program does (core/memory.hpp)");
  auto model = std::make_shared<instant_model>(total);
  auto s = check(runtime::swarm::create(config(dir), {.client_for = [&](std::string_view) { return model; }}),
                 "soak: create");
  std::atomic<std::size_t> merged{0};
  std::atomic<std::size_t> rss_first{0};
  // From `first` on, every `step` lifecycles: the RSS after malloc_trim and
  // the heap in use. A single sample is noisy (tasks in flight, the gate's
  // batch, caches come and go: +-10 MiB); the growth is the slope of a
  // least-squares line through some thirty of them and the run's end.
  std::mutex samples_mutex;
  std::vector<std::pair<double, double>> rss_samples, heap_samples;
  const std::size_t step = std::max<std::size_t>(500, (total - first) / 30);
  auto t0 = steady::now();
  // The samples are taken on a thread of their own: malloc_trim walks every
  // arena, and on the swarm's threads it stalled them long enough for
  // 2-second leases to expire now and then.
  std::condition_variable wake;
  std::deque<std::size_t> due;
  bool sampling_done = false;
  std::thread sampler([&] {
    for (;;) {
      std::size_t n = 0;
      {
        std::unique_lock lock(samples_mutex);
        wake.wait(lock, [&] { return sampling_done || !due.empty(); });
        if (due.empty()) return;
        n = due.front();
        due.pop_front();
      }
      ::malloc_trim(0);
      auto rss = rss_kib();
      auto heap = heap_in_use_kib();
      if (n == first) rss_first = rss;
      {
        std::lock_guard lock(samples_mutex);
        rss_samples.emplace_back(static_cast<double>(n), static_cast<double>(rss));
        heap_samples.emplace_back(static_cast<double>(n), static_cast<double>(heap));
      }
      if (n == first || (n - first) % (step * 5) == 0) {
        fmt::print(stderr, "  {} lifecycles in {:.1f} s, RSS {} KiB (trimmed), heap in use {} KiB (all arenas)\n", n,
                   seconds_since(t0), rss, heap);
        if (std::getenv("AGENTCORE_SOAK_ARENAS"))  // each arena's size/free, MiB
          fmt::print(stderr, "    arenas:{}\n   {}\n", arena_summary(), rss_kinds());
      }
    }
  });
  auto stop_sampling = [&] {
    {
      std::lock_guard lock(samples_mutex);
      sampling_done = true;
    }
    wake.notify_all();
    if (sampler.joinable()) sampler.join();
  };
  struct at_exit {
    decltype(stop_sampling)& f;
    ~at_exit() { f(); }
  } join_sampler{stop_sampling};
  auto sub = s->events().subscribe<board::task_transition>([&](const board::task_transition& t) {
    if (t.to != board::task_state::merged) return;
    auto n = ++merged;
    if (n < first || (n - first) % step != 0) return;
    {
      std::lock_guard lock(samples_mutex);
      due.push_back(n);
    }
    wake.notify_one();
  });
  auto errors = s->events().subscribe<runtime::swarm_event>([](const runtime::swarm_event& e) {
    if (e.what == "error") fmt::print(stderr, "  soak: {}\n", e.detail);
  });
  auto ran = s->run();
  stop_sampling();
  auto r = check(std::move(ran), "soak: run");
  // For a heap profiler: end here with the swarm still alive, so that all it
  // holds shows as not freed (compare the profiles of two run lengths).
  auto end_sample = [&] {
    ::malloc_trim(0);
    auto rss = rss_kib();
    auto heap = heap_in_use_kib();
    std::lock_guard lock(samples_mutex);
    rss_samples.emplace_back(static_cast<double>(total), static_cast<double>(rss));
    heap_samples.emplace_back(static_cast<double>(total), static_cast<double>(heap));
    return std::pair{rss, heap};
  };
  if (std::getenv("AGENTCORE_SOAK_EXIT_AFTER_RUN")) {
    auto [rss, heap] = end_sample();
    fmt::print(stderr, "  the run ended (the swarm alive): RSS {} KiB, heap in use {} KiB (all arenas); growth {:.1f} KiB "
                       "(heap {:.1f}) per 1k lifecycles after the first {}\n",
               rss, heap, slope_per_1k(rss_samples), slope_per_1k(heap_samples), first);
    std::exit(0);
  }
  double secs = seconds_since(t0);
  if (r.tasks_by_state["merged"] != total)
    throw failure(fmt::format("soak: {} of {} tasks merged ({}; {})", r.tasks_by_state["merged"], total, r.reason,
                              json::serialize(json::value_from(r.tasks_by_state))));
  soak_figures f;
  auto [rss_end, heap_end] = end_sample();
  f.rss_end = rss_end;
  fmt::print(stderr, "  the run ended: RSS {} KiB (trimmed), heap in use {} KiB (all arenas)\n", f.rss_end, heap_end);
  {
    // What the board and the gate keep per task (the store holds it all in memory).
    auto st = check(runtime::open_store("file:" + (dir / "store").string(), {.read_only = true}), "soak: reopen");
    auto all = check(st->range("", {}), "soak: range");
    std::map<std::string, std::pair<std::size_t, std::size_t>> by_prefix;
    for (const auto& kv : all.kvs) {
      auto& [n, bytes] = by_prefix[kv.key.substr(0, kv.key.find('/', kv.key.find('/') + 1))];
      ++n;
      bytes += kv.key.size() + kv.value.size();
    }
    for (const auto& [p, nb] : by_prefix)
      if (nb.second > 100'000)
        fmt::print(stderr, "  store: {:<28} {:>7} keys {:>8} KiB ({:.0f} bytes a task)\n", p, nb.first, nb.second / 1024,
                   static_cast<double>(nb.second) / static_cast<double>(total));
  }
  f.rss_first = rss_first;
  f.per_s = static_cast<double>(total) / secs;
  f.growth_per_1k = slope_per_1k(rss_samples);
  f.heap_growth_per_1k = slope_per_1k(heap_samples);
  return f;
}

struct trial_figures {
  std::size_t resume_failures = 0, lost = 0, double_merges = 0;
};

// A swarm run to its end; 0 when every task merged, 1 otherwise (why on stderr).
int child_run(const fs::path& dir, std::size_t total) {
  try {
    auto model = std::make_shared<instant_model>(total);
    auto s = runtime::swarm::create(config(dir), {.client_for = [&](std::string_view) { return model; }});
    if (!s) {
      fmt::print(stderr, "  soak child: {}\n", s.error().message());
      return 1;
    }
    auto r = (*s)->run();
    if (!r) {
      fmt::print(stderr, "  soak child: {}\n", r.error().message());
      return 1;
    }
    if (r->tasks_by_state["merged"] == total) return 0;
    fmt::print(stderr, "  soak child: {} of {} merged: {}\n", r->tasks_by_state["merged"], total, r->reason);
  } catch (const std::exception& e) {
    fmt::print(stderr, "  soak child: {}\n", e.what());
  }
  return 1;
}

// The bench itself again, running child_run (a fresh process: forking this
// one, which has had threads, could inherit a lock some thread held).
pid_t run_child(const fs::path& dir, std::size_t total) {
  std::string exe = fs::read_symlink("/proc/self/exe").string();
  std::string area = "soak", runs = "--runs", one = "1", dir_flag = "--dir", where = dir.string();
  // (--dir: the driver's scratch directory goes where the trial's does, removed with it.)
  char* argv[] = {exe.data(), area.data(), runs.data(), one.data(), dir_flag.data(), where.data(), nullptr};
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e)
    if (!std::string_view(*e).starts_with("AGENTCORE_SOAK_CHILD=")) env_store.emplace_back(*e);
  env_store.push_back(fmt::format("AGENTCORE_SOAK_CHILD={}|{}", total, dir.string()));
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  if (int rc = ::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data()); rc != 0)
    throw failure(fmt::format("soak: cannot start '{}': {}", exe, std::strerror(rc)));
  return pid;
}

trial_figures kill_and_resume(const fs::path& dir, std::size_t trials, std::size_t total) {
  trial_figures f;
  std::mt19937 rng(20261206);
  for (std::size_t trial = 0; trial < trials; ++trial) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    make_repository(dir / "repo", 50);
    auto git_dir = dir / "repo" / ".git";
    pid_t first = run_child(dir, total);
    std::uniform_int_distribution<int> ms(20, 1500);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
    ::kill(first, SIGKILL);
    int status = 0;
    ::waitpid(first, &status, 0);
    pid_t again = run_child(dir, total);
    ::waitpid(again, &status, 0);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    // Count what landed: each task's file must be on main once, and the board must say merged.
    auto repo = check(git::repository::open(dir / "repo"), "soak: open");
    auto tip = check(repo.resolve("refs/heads/main"), "soak: main");
    std::map<std::string, int> landed;
    std::optional<git::oid> c = tip;
    while (c) {  // first-parent history: each gate merge adds the files of its changes
      auto parents = check(repo.commit_parents(*c), "soak: parents");
      if (parents.empty()) break;
      auto d = check(repo.diff(parents[0], *c), "soak: diff");
      for (const auto& file : d.files) ++landed[file.path];
      c = parents[0];
    }
    std::size_t lost = 0, twice = 0;
    for (std::size_t i = 0; i < total; ++i) {
      auto it = landed.find(task_file(fmt::format("t{}", i)));
      if (it == landed.end()) ++lost;
      else if (it->second > 1) ++twice;
    }
    f.resume_failures += !ok;
    f.lost += lost;
    f.double_merges += twice;
    if (!ok || lost || twice) {
      fmt::print(stderr, "  trial {}: resumed run {}, {} tasks lost, {} merged twice\n", trial + 1,
                 ok ? "finished" : "failed", lost, twice);
      // What became of the tasks that did not merge, for whoever looks into it.
      if (auto st = runtime::open_store("file:" + (dir / "store").string(), {.read_only = true})) {
        board::task_board b(**st);
        if (auto all = b.list())
          for (const auto& t : *all)
            if (t.state != board::task_state::merged)
              fmt::print(stderr, "    {} {}: {}\n", t.id.str(), board::to_string(t.state),
                         json::serialize(t.result).substr(0, 2000));
      }
    }
  }
  fmt::print(stderr, "  kill -9 and resume: {} trials of {} tasks: {} resume failures, {} lost, {} merged twice\n", trials,
             total, f.resume_failures, f.lost, f.double_merges);
  return f;
}

}  // namespace

std::vector<figure> run_soak(const run_options& o) {
  if (const char* child = std::getenv("AGENTCORE_SOAK_CHILD")) {  // one of kill_and_resume's runs
    std::string_view c(child);
    auto bar = c.find('|');
    std::_Exit(child_run(fs::path(c.substr(bar + 1)), std::strtoull(child, nullptr, 10)));
  }
  // The issue's setting: /dev/shm where there is one (the figures measure
  // memory and the runtime, not the disk).
  fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") / fmt::format("agentcore-soak-{}", ::getpid()) : o.dir;
  fmt::print(stderr, "  scratch: {}{}\n", base.string(), base.string().starts_with("/dev/shm") ? " (tmpfs)" : "");
  std::size_t first = o.quick ? 500 : 10000, total = o.quick ? 1500 : 100000;
  if (const char* e = std::getenv("AGENTCORE_SOAK_LIFECYCLES")) total = std::max<std::size_t>(std::strtoull(e, nullptr, 10), 2);
  first = std::min(first, total / 2);
  struct cleanup {
    fs::path p;
    ~cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } clean{base};
  auto lr = long_run(base / "long", first, total);
  fmt::print(stderr,
             "  rss_growth_kib_per_1k_lifecycles: {:.1f} (slope of the trimmed RSS from {} to {}; {} KiB after {}, {} KiB "
             "after {}); heap in use: {:.1f} KiB per 1k; {:.0f} lifecycles/s\n",
             lr.growth_per_1k, first, total, lr.rss_first, first, lr.rss_end, total, lr.heap_growth_per_1k, lr.per_s);
  auto tr = kill_and_resume(base / "trials", o.quick ? 3 : 30, 24);
  return {
      {"rss_growth_kib_per_1k_lifecycles", lr.growth_per_1k, 1, bound{false, 16}},
      {"heap_growth_kib_per_1k_lifecycles", lr.heap_growth_per_1k, 1, std::nullopt},
      {"lifecycles_per_s", lr.per_s, 1, std::nullopt},
      {"resume_failures", static_cast<double>(tr.resume_failures), 0, bound{false, 0}},
      {"lost_tasks", static_cast<double>(tr.lost), 0, bound{false, 0}},
      {"double_merges", static_cast<double>(tr.double_merges), 0, bound{false, 0}},
  };
}

}  // namespace agentcore::bench
