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

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <unordered_map>
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

class metrics_registry;

/// One series of a family (a counter, gauge or histogram with its labels),
/// found once and updated many times without looking it up again. Valid as
/// long as its registry.
class metric {
public:
  metric() = default;
  void add(double v = 1);      ///< a counter; v >= 0
  void set(double v);          ///< a gauge
  void change(double delta);   ///< a gauge, relative
  void observe(double v);      ///< a histogram
  explicit operator bool() const noexcept { return series_ != nullptr; }

private:
  friend class metrics_registry;
  metric(metrics_registry* r, void* s) : registry_(r), series_(s) {}
  metrics_registry* registry_ = nullptr;
  void* series_ = nullptr;
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
  /// The series, made if absent, as a handle for many updates.
  metric counter(std::string_view name, const label_set& labels = {});
  metric gauge(std::string_view name, const label_set& labels = {});
  metric histogram_series(std::string_view name, const label_set& labels = {});

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
  friend class metric;
  struct series {
    label_set labels;
    std::atomic<double> value{0};
    std::vector<std::uint64_t> buckets;  // per bound, not cumulative
    std::uint64_t count = 0;
    double sum = 0;
    std::function<double()> fn;
    const std::vector<double>* bounds = nullptr;  // the family's, for histograms
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
  struct text_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  template <class V>
  using text_map = std::unordered_map<std::string, V, text_hash, std::equal_to<>>;

  /// The series for one label value, found once.
  metric& cached(text_map<metric>& cache, std::string_view value,
                 metric (metrics_registry::*make)(std::string_view, const label_set&), std::string_view name,
                 std::string_view label);

  std::shared_ptr<metrics_registry> registry_;
  text_map<metric> events_by_type_, tasks_by_state_, transitions_to_, verdicts_, workers_by_phase_, checks_,
      model_seconds_, tool_calls_, task_seconds_;
  text_map<std::array<metric, 4>> by_role_model_;  // calls, input tokens, output tokens, cost
  metric claims_, merges_, queue_depth_, queue_wait_, cycle_;
  text_map<std::int64_t> claimed_at_;  // task -> first claim (us)
  text_map<std::int64_t> queued_at_;   // change -> queued (us)
  text_map<std::string> phase_of_;     // worker -> phase
  std::string scratch_;                                           // lookup keys, without an allocation each
};

}  // namespace agentcore::observe
