// agentcore/observe/metrics.hpp: a metrics registry (counters, gauges,
// histograms with labels) with Prometheus text exposition, and the sink that
// keeps agentcore's own metrics from the event stream.
//
//   auto reg = std::make_shared<agentcore::observe::metrics_registry>();
//   hub.add(std::make_shared<agentcore::observe::metrics_sink>(reg));
//   reg->gauge_fn("agentcore_claim_conflicts", "CAS conflicts while claiming", {},
//                 [&board] { return double(board.stats().claim_conflicts); });
//   std::string text = reg->prometheus();    // what /metrics serves
//
// The metrics the sink keeps (names, labels and meaning) are listed in
// docs/events.md beside the events they come from.
#pragma once

#include <agentcore/core/json.hpp>
#include <agentcore/observe/events.hpp>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace agentcore::observe {

using label_set = std::vector<std::pair<std::string, std::string>>;

enum class metric_kind { counter, gauge, histogram };

struct histogram_snapshot {
  std::vector<double> bounds;          ///< upper bounds, ascending (+Inf implied)
  std::vector<std::uint64_t> counts;   ///< per bound, cumulative, as Prometheus has them
  std::uint64_t count = 0;
  double sum = 0;
};

/// Thread-safe. A family (a name) has one kind, one help text and, for a
/// histogram, one set of buckets; a series is a family with a label set.
/// Names and label names must match [a-zA-Z_][a-zA-Z0-9_]*; using a name with
/// another kind than it was made with is a programming error (std::logic_error).
class metrics_registry {
public:
  /// Declares a family's kind and help (and a histogram's buckets) before its
  /// first use; a family used without it gets an empty help text and, for a
  /// histogram, latency buckets from 5 ms to 10 min.
  void describe(std::string_view name, metric_kind kind, std::string help, std::vector<double> buckets = {});

  void add(std::string_view name, const label_set& labels, double v = 1);      ///< a counter; v >= 0
  void set(std::string_view name, const label_set& labels, double v);          ///< a gauge
  void change(std::string_view name, const label_set& labels, double delta);   ///< a gauge, relative
  void observe(std::string_view name, const label_set& labels, double v);      ///< a histogram
  /// A gauge computed when read (at each scrape): a board's counters, a queue's length.
  void gauge_fn(std::string_view name, std::string help, label_set labels, std::function<double()> f);

  /// A counter's or gauge's value (0 when absent).
  double value(std::string_view name, const label_set& labels = {}) const;
  histogram_snapshot histogram(std::string_view name, const label_set& labels = {}) const;

  /// Prometheus text exposition format 0.0.4, families sorted by name.
  std::string prometheus() const;
  /// {"name": {"kind": "...", "help": "...", "series": [{"labels": {...}, "value": v} | histogram]}}
  json::value to_json() const;

private:
  struct series {
    label_set labels;
    double value = 0;
    std::vector<std::uint64_t> buckets;  // per bound, not cumulative
    std::uint64_t count = 0;
    double sum = 0;
    std::function<double()> fn;
  };
  struct family {
    metric_kind kind = metric_kind::counter;
    std::string help;
    std::vector<double> bounds;
    std::map<std::string, series, std::less<>> by_labels;  // key: rendered labels
  };
  series& at(std::string_view name, metric_kind kind, const label_set& labels);
  const series* find(std::string_view name, const label_set& labels) const;

  mutable std::mutex mutex_;
  std::map<std::string, family, std::less<>> families_;
};

/// Keeps agentcore's metrics from the events it sees: tasks by state,
/// transitions and claims, gate verdicts by kind, merges, queue depth and
/// wait, model calls, tokens and cost by role and model, model and check
/// latencies, tool calls, workers by phase, cycles.
class metrics_sink final : public sink {
public:
  explicit metrics_sink(std::shared_ptr<metrics_registry> registry);
  void write(const event_view& e) override;
  const std::shared_ptr<metrics_registry>& registry() const { return registry_; }

private:
  std::shared_ptr<metrics_registry> registry_;
  std::map<std::string, std::int64_t, std::less<>> claimed_at_;  // task -> first claim (us)
  std::map<std::string, std::int64_t, std::less<>> queued_at_;   // change -> queued (us)
  std::map<std::string, std::string, std::less<>> phase_of_;     // worker -> phase
};

}  // namespace agentcore::observe
