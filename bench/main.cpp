// agentcore-bench: measures agentcore against its performance targets.
//
//   agentcore-bench store                 # a table: figure, value, target
//   agentcore-bench store --json --quick  # one JSON object on stdout (CI smoke test)
//   agentcore-bench gate --json           # the merge gate against git and libgit2
//   agentcore-bench model --json          # the HTTP model client against a local server
//   agentcore-bench swarm --json          # task lifecycles through the swarm runtime
//   agentcore-bench etcd --json           # the etcd store on a local etcd it starts
//
// Each area (`store`, `gate`) is run --runs times and every figure is
// reported as its median over the runs: one slow run (another build on the
// machine, a disk hiccup) then moves nothing. Progress goes to stderr so that
// stdout stays machine-readable.
#include "bench.hpp"

#include <agentcore/core/memory.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace bench = agentcore::bench;
namespace fs = std::filesystem;

namespace {

struct area {
  std::string_view name;
  std::string_view what;
  std::function<std::vector<bench::figure>(const bench::run_options&)> run;
};

const std::vector<area>& areas() {
  static const std::vector<area> all = {
      {"store", "memory and file store commits, SQLite comparison, board claims, reopen time", bench::run_store},
      {"gate", "merge a one-file change into main on 20k/100k-file repos, vs git CLI/libgit2; worktree slots; queue",
       bench::run_gate},
      {"model", "OpenAI-compatible client against a local server: overhead per request, concurrent streams",
       bench::run_model},
      {"swarm", "task lifecycles through the runtime on a 20k-file repo, memory per idle worker, lost tasks",
       bench::run_swarm},
      {"etcd", "the etcd store on a local etcd: CAS commits at 1/16/64 in flight, board claims, etcdctl check perf",
       bench::run_etcd},
      {"observe", "events through the bus to the JSONL event log and the metrics sink; the bus alone for reference",
       bench::run_observe},
      {"security", "a no-op command through the sandbox vs unsandboxed; hostile commands, counting escapes",
       bench::run_security},
      {"soak", "a long run's RSS growth per 1k task lifecycles (10k to 100k, /dev/shm), kill -9 and resume trials",
       bench::run_soak},
      {"sim", "the capacity simulator: a week of 500 agents, agentcore's queue vs GitHub's on its example, lock cliff",
       bench::run_sim},
  };
  return all;
}

void usage(std::FILE* out) {
  fmt::print(out,
             "usage: agentcore-bench <area> [--json] [--quick] [--runs N] [--dir PATH]\n"
             "  --json      print one JSON object of figures on stdout (progress goes to stderr)\n"
             "  --quick     small sizes, a few seconds in all (CI smoke test; figures are rough)\n"
             "  --runs N    repeat N times and report each figure's median (default 3)\n"
             "  --dir PATH  make the scratch directory under PATH (default $TMPDIR or /tmp); it is removed at the end\n"
             "areas:\n");
  for (const auto& a : areas()) fmt::print(out, "  {:<10}{}\n", a.name, a.what);
}

struct cli {
  const area* chosen = nullptr;
  bool json = false;
  bool quick = false;
  int runs = 3;
  fs::path dir_base = fs::temp_directory_path();
};

// Returns an empty string on success, else what was wrong with the command line.
std::string parse(int argc, char** argv, cli& c) {
  if (argc < 2) return "no area given";
  std::string_view name = argv[1];
  for (const auto& a : areas())
    if (a.name == name) c.chosen = &a;
  if (!c.chosen) return fmt::format("unknown area '{}'", name);
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--json") {
      c.json = true;
    } else if (arg == "--quick") {
      c.quick = true;
    } else if (arg == "--runs" || arg == "--dir") {
      if (i + 1 == argc) return fmt::format("{} needs a value", arg);
      std::string_view v = argv[++i];
      if (arg == "--dir") {
        c.dir_base = fs::path(v);
        continue;
      }
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), c.runs);
      if (ec != std::errc() || end != v.data() + v.size() || c.runs < 1)
        return fmt::format("--runs wants a whole number >= 1, got '{}'", v);
    } else {
      return fmt::format("unknown option '{}'", arg);
    }
  }
  return {};
}

// A fresh directory under `base`, removed when the bench ends however it
// ends (short of a signal), so that a failed run leaves no gigabyte of log behind.
class scratch_dir {
public:
  explicit scratch_dir(const fs::path& base) {
    std::error_code ec;
    fs::create_directories(base, ec);
    if (ec)
      throw bench::failure(fmt::format("cannot create scratch base '{}': {}; pass --dir with a writable directory",
                                       base.string(), ec.message()));
    std::string templ = (base / "agentcore-bench-XXXXXX").string();
    if (!::mkdtemp(templ.data()))
      throw bench::failure(fmt::format("cannot create a scratch directory in '{}': {}; pass --dir with a "
                                       "writable directory",
                                       base.string(), std::generic_category().message(errno)));
    path_ = templ;
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (ec)
      fmt::print(stderr, "agentcore-bench: could not remove scratch directory '{}': {}; remove it by hand\n",
                 path_.string(), ec.message());
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const fs::path& path() const { return path_; }

private:
  fs::path path_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string target_text(const bench::bound& b) { return fmt::format("{} {}", b.at_least ? ">=" : "<=", b.limit); }

// A non-finite figure (a rate over nothing) has no JSON number: write null
// rather than emit a document no parser accepts.
std::string number_text(const bench::figure& f) {
  if (!std::isfinite(f.value)) return "null";
  return fmt::format("{:.{}f}", f.value, f.decimals);
}

void print_json(const std::vector<bench::figure>& figs, int runs, bool quick) {
  std::string out = "{";
  for (const auto& f : figs) out += fmt::format("\"{}\": {}, ", f.name, number_text(f));
  out += "\"targets\": {";
  bool first = true;
  for (const auto& f : figs) {
    if (!f.target) continue;
    out += fmt::format("{}\"{}\": \"{}\"", first ? "" : ", ", f.name, target_text(*f.target));
    first = false;
  }
  out += fmt::format("}}, \"runs\": {}, \"quick\": {}}}\n", runs, quick ? "true" : "false");
  fmt::print("{}", out);
}

void print_table(const std::vector<bench::figure>& figs, int runs, bool quick) {
  fmt::print("{:<32} {:>14}  {:<14} {}\n", "figure", "value", "target", "");
  for (const auto& f : figs) {
    std::string target = f.target ? target_text(*f.target) : "";
    std::string verdict = f.target ? (f.target->met(f.value) ? "ok" : "MISSED") : "";
    fmt::print("{:<32} {:>14}  {:<14} {}\n", f.name, number_text(f), target, verdict);
  }
  fmt::print("(median of {} run{}{})\n", runs, runs == 1 ? "" : "s", quick ? ", --quick sizes" : "");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
    usage(stdout);
    return 0;
  }
  // As the agentcore program does (core/memory.hpp); AGENTCORE_BENCH_DEFAULT_MALLOC=1
  // measures with glibc's own thresholds instead.
  if (!std::getenv("AGENTCORE_BENCH_DEFAULT_MALLOC")) agentcore::tune_allocator_for_long_runs();
  cli c;
  if (auto why = parse(argc, argv, c); !why.empty()) {
    fmt::print(stderr, "agentcore-bench: {}\n", why);
    usage(stderr);
    return 2;
  }
  try {
    scratch_dir scratch(c.dir_base);
    // Figures keep the order of the first run; values are gathered by name.
    std::vector<bench::figure> shape;
    std::map<std::string, std::vector<double>> values;
    for (int run = 1; run <= c.runs; ++run) {
      fmt::print(stderr, "== {} run {}/{} (scratch {})\n", c.chosen->name, run, c.runs, scratch.path().string());
      auto figs = c.chosen->run({.quick = c.quick, .dir = scratch.path()});
      if (shape.empty()) shape = figs;
      for (auto& f : figs) values[f.name].push_back(f.value);
    }
    for (auto& f : shape) f.value = median(values[f.name]);
    for (auto& f : shape) {
      if (!f.ratio_of) continue;
      auto num = std::find_if(shape.begin(), shape.end(), [&](const auto& g) { return g.name == f.ratio_of->first; });
      auto den = std::find_if(shape.begin(), shape.end(), [&](const auto& g) { return g.name == f.ratio_of->second; });
      if (num != shape.end() && den != shape.end()) f.value = num->value / den->value;
    }
    if (c.json) print_json(shape, c.runs, c.quick);
    else print_table(shape, c.runs, c.quick);
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "agentcore-bench: {}\n", e.what());
    return 1;
  }
}
