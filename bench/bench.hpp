// bench/bench.hpp: what a benchmark area hands back to agentcore-bench's
// driver: named figures, each with the target it is judged against. The
// driver (main.cpp) owns repetition, medians and output; an area only measures.
//
//   std::vector<bench::figure> run_store(const bench::run_options& o);  // one run
#pragma once

#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace agentcore::bench {

/// A target a figure should meet: `value >= limit` or `value <= limit`.
struct bound {
  bool at_least = true;
  double limit = 0;

  bool met(double v) const { return at_least ? v >= limit : v <= limit; }
};

struct figure {
  std::string name;
  double value = 0;
  int decimals = 0;  ///< digits printed after the point: rates are whole numbers, ratios are not
  std::optional<bound> target;
  /// Set for a ratio of two other figures (numerator, denominator): the driver
  /// recomputes it from their medians, so the ratio printed is the ratio of
  /// the values printed, not a median of per-run ratios.
  std::optional<std::pair<std::string, std::string>> ratio_of;
};

struct run_options {
  bool quick = false;          ///< smaller sizes and shorter durations (CI smoke test)
  std::filesystem::path dir;   ///< scratch directory; exists, owned by the driver
};

/// Any failure that makes a run's figures meaningless (a store error, a lost
/// claim). The driver prints what() and exits 1.
struct failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// One run of the store area. Throws `failure`.
std::vector<figure> run_store(const run_options& options);
/// One run of the gate area (merge, commit, advance main on large repositories). Throws `failure`.
std::vector<figure> run_gate(const run_options& options);
/// One run of the model area (the HTTP client against a local server). Throws `failure`.
std::vector<figure> run_model(const run_options& options);
/// One run of the swarm area (task lifecycles through the runtime, idle workers, lost tasks). Throws `failure`.
std::vector<figure> run_swarm(const run_options& options);
/// One run of the etcd area (the etcd store on a local etcd it starts). Throws `failure`.
std::vector<figure> run_etcd(const run_options& options);
/// One run of the observe area (events through the bus to the event log and metrics). Throws `failure`.
std::vector<figure> run_observe(const run_options& options);
std::vector<figure> run_security(const run_options& options);
/// One run of the soak area (RSS growth over a long run, kill -9 and resume). Throws `failure`.
std::vector<figure> run_soak(const run_options& options);
/// One run of the sim area (the capacity simulator's speed and its comparisons). Throws `failure`.
std::vector<figure> run_sim(const run_options& options);

}  // namespace agentcore::bench
