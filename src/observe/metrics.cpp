#include <agentcore/observe/metrics.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace agentcore::observe {

namespace {

const std::vector<double>& latency_buckets() {
  static const std::vector<double> b = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5,
                                        5,     10,   30,    60,   120, 300,  600};
  return b;
}

bool valid_name(std::string_view n) {
  if (n.empty()) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void append_label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

std::string render_labels(const label_set& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    if (!valid_name(k)) throw std::logic_error(fmt::format("metrics: '{}' is not a label name", k));
    if (!out.empty()) out += ',';
    out += k;
    out += "=\"";
    append_label_value(out, v);
    out += '"';
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{}", v);
}

std::string_view kind_name(metric_kind k) {
  switch (k) {
    case metric_kind::counter: return "counter";
    case metric_kind::gauge: return "gauge";
    case metric_kind::histogram: return "histogram";
  }
  return "untyped";
}

}  // namespace

void metrics_registry::describe(std::string_view name, metric_kind kind, std::string help, std::vector<double> buckets) {
  if (!valid_name(name)) throw std::logic_error(fmt::format("metrics: '{}' is not a metric name", name));
  std::lock_guard lock(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), family{}).first;
  else if (it->second.kind != kind && !it->second.by_labels.empty())
    throw std::logic_error(fmt::format("metrics: '{}' is a {}, not a {}", name, kind_name(it->second.kind), kind_name(kind)));
  it->second.kind = kind;
  it->second.help = std::move(help);
  if (kind == metric_kind::histogram && it->second.by_labels.empty()) {  // series made keep their buckets
    std::sort(buckets.begin(), buckets.end());
    it->second.bounds = buckets.empty() ? latency_buckets() : std::move(buckets);
  }
}

metrics_registry::series& metrics_registry::at(std::string_view name, metric_kind kind, const label_set& labels) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    if (!valid_name(name)) throw std::logic_error(fmt::format("metrics: '{}' is not a metric name", name));
    family f;
    f.kind = kind;
    if (kind == metric_kind::histogram) f.bounds = latency_buckets();
    it = families_.emplace(std::string(name), std::move(f)).first;
  } else if (it->second.kind != kind) {
    throw std::logic_error(fmt::format("metrics: '{}' is a {}, not a {}", name, kind_name(it->second.kind), kind_name(kind)));
  }
  family& f = it->second;
  std::string key = render_labels(labels);
  auto s = f.by_labels.find(key);
  if (s == f.by_labels.end()) {
    s = f.by_labels.try_emplace(std::move(key)).first;  // made in place: a series holds an atomic
    series& n = s->second;
    n.labels = labels;
    if (kind == metric_kind::histogram) {
      n.buckets.assign(f.bounds.size(), 0);
      n.bounds = &f.bounds;
    }
  }
  return s->second;
}

const metrics_registry::series* metrics_registry::find(std::string_view name, const label_set& labels) const {
  auto it = families_.find(name);
  if (it == families_.end()) return nullptr;
  auto s = it->second.by_labels.find(render_labels(labels));
  return s == it->second.by_labels.end() ? nullptr : &s->second;
}

// Counters and gauges are atomics: updating one takes no lock.
void metric::add(double v) {
  if (!(v >= 0)) throw std::logic_error(fmt::format("metrics: a counter cannot go down ({})", v));
  static_cast<metrics_registry::series*>(series_)->value.fetch_add(v, std::memory_order_relaxed);
}

void metric::set(double v) {
  static_cast<metrics_registry::series*>(series_)->value.store(v, std::memory_order_relaxed);
}

void metric::change(double delta) {
  static_cast<metrics_registry::series*>(series_)->value.fetch_add(delta, std::memory_order_relaxed);
}

void metric::observe(double v) {
  std::lock_guard lock(registry_->mutex_);
  auto& s = *static_cast<metrics_registry::series*>(series_);
  if (!s.bounds) return;
  auto i = static_cast<std::size_t>(std::lower_bound(s.bounds->begin(), s.bounds->end(), v) - s.bounds->begin());
  if (i < s.buckets.size()) ++s.buckets[i];
  ++s.count;
  s.sum += v;
}

metric metrics_registry::counter(std::string_view name, const label_set& labels) {
  std::lock_guard lock(mutex_);
  return {this, &at(name, metric_kind::counter, labels)};
}

metric metrics_registry::gauge(std::string_view name, const label_set& labels) {
  std::lock_guard lock(mutex_);
  return {this, &at(name, metric_kind::gauge, labels)};
}

metric metrics_registry::histogram_series(std::string_view name, const label_set& labels) {
  std::lock_guard lock(mutex_);
  return {this, &at(name, metric_kind::histogram, labels)};
}

void metrics_registry::add(std::string_view name, const label_set& labels, double v) {
  if (!(v >= 0)) throw std::logic_error(fmt::format("metrics: counter '{}' cannot go down ({})", name, v));
  counter(name, labels).add(v);
}

void metrics_registry::set(std::string_view name, const label_set& labels, double v) { gauge(name, labels).set(v); }

void metrics_registry::change(std::string_view name, const label_set& labels, double delta) {
  gauge(name, labels).change(delta);
}

void metrics_registry::observe(std::string_view name, const label_set& labels, double v) {
  histogram_series(name, labels).observe(v);
}

void metrics_registry::gauge_fn(std::string_view name, std::string help, label_set labels, std::function<double()> f) {
  describe(name, metric_kind::gauge, std::move(help));
  std::lock_guard lock(mutex_);
  at(name, metric_kind::gauge, labels).fn = std::move(f);
}

double metrics_registry::value(std::string_view name, const label_set& labels) const {
  std::function<double()> fn;
  {
    std::lock_guard lock(mutex_);
    auto* s = find(name, labels);
    if (!s) return 0;
    if (!s->fn) return s->value.load(std::memory_order_relaxed);
    fn = s->fn;
  }
  return fn();  // outside the lock: it may read anything
}

histogram_snapshot metrics_registry::histogram(std::string_view name, const label_set& labels) const {
  std::lock_guard lock(mutex_);
  histogram_snapshot out;
  auto it = families_.find(name);
  if (it == families_.end() || it->second.kind != metric_kind::histogram) return out;
  out.bounds = it->second.bounds;
  out.counts.assign(out.bounds.size(), 0);
  auto* s = find(name, labels);
  if (!s) return out;
  std::uint64_t run = 0;
  for (std::size_t i = 0; i < s->buckets.size(); ++i) out.counts[i] = run += s->buckets[i];
  out.count = s->count;
  out.sum = s->sum;
  return out;
}

std::string metrics_registry::prometheus() const {
  // Computed gauges are read outside the lock (they may take locks of their own).
  struct computed {
    std::string line_head;
    std::function<double()> fn;
  };
  std::string out;
  std::vector<std::pair<std::size_t, computed>> later;  // insertion offset in `out`
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, f] : families_) {
      if (f.by_labels.empty()) continue;
      if (!f.help.empty()) {
        out += fmt::format("# HELP {} ", name);
        for (char c : f.help) out += c == '\n' ? std::string("\\n") : c == '\\' ? std::string("\\\\") : std::string(1, c);
        out += '\n';
      }
      out += fmt::format("# TYPE {} {}\n", name, kind_name(f.kind));
      for (const auto& [key, s] : f.by_labels) {
        auto braces = key.empty() ? std::string() : "{" + key + "}";
        if (f.kind != metric_kind::histogram) {
          if (s.fn) {
            later.push_back({out.size(), {name + braces + " ", s.fn}});
            continue;
          }
          out += fmt::format("{}{} {}\n", name, braces, number(s.value.load(std::memory_order_relaxed)));
          continue;
        }
        std::uint64_t run = 0;
        auto sep = key.empty() ? "" : ",";
        for (std::size_t i = 0; i < f.bounds.size(); ++i) {
          run += s.buckets[i];
          out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, key, sep, number(f.bounds[i]), run);
        }
        out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, key, sep, s.count);
        out += fmt::format("{}_sum{} {}\n", name, braces, number(s.sum));
        out += fmt::format("{}_count{} {}\n", name, braces, s.count);
      }
    }
  }
  // Insert computed values back to front so earlier offsets stay valid.
  for (auto it = later.rbegin(); it != later.rend(); ++it) {
    double v = 0;
    try {
      v = it->second.fn();
    } catch (...) {
      v = std::nan("");
    }
    out.insert(it->first, it->second.line_head + number(v) + "\n");
  }
  return out;
}

json::value metrics_registry::to_json() const {
  json::object out;
  std::vector<std::pair<json::object*, std::function<double()>>> later;
  std::lock_guard lock(mutex_);
  for (const auto& [name, f] : families_) {
    json::array series;
    for (const auto& [key, s] : f.by_labels) {
      json::object labels;
      for (const auto& [k, v] : s.labels) labels[k] = v;
      json::object one{{"labels", std::move(labels)}};
      if (f.kind == metric_kind::histogram) {
        json::array buckets;
        std::uint64_t run = 0;
        for (std::size_t i = 0; i < f.bounds.size(); ++i)
          buckets.push_back(json::object{{"le", f.bounds[i]}, {"count", run += s.buckets[i]}});
        one["buckets"] = std::move(buckets);
        one["count"] = s.count;
        one["sum"] = s.sum;
      } else {
        double v = s.value.load(std::memory_order_relaxed);
        if (s.fn) {
          try {
            v = s.fn();
          } catch (...) {
            v = 0;
          }
        }
        one["value"] = v;
      }
      series.push_back(std::move(one));
    }
    out[name] = json::object{{"kind", kind_name(f.kind)}, {"help", f.help}, {"series", std::move(series)}};
  }
  return out;
}

// --- the sink ---

namespace {

std::string_view str(const json::value& d, std::string_view key) {
  if (!d.is_object()) return {};
  auto* m = d.get_object().if_contains(key);
  return m && m->is_string() ? std::string_view(m->get_string()) : std::string_view();
}

double num(const json::value& d, std::string_view key) {
  if (!d.is_object()) return 0;
  auto* m = d.get_object().if_contains(key);
  if (!m) return 0;
  if (m->is_double()) return m->get_double();
  if (m->is_int64()) return static_cast<double>(m->get_int64());
  if (m->is_uint64()) return static_cast<double>(m->get_uint64());
  return 0;
}

bool final_task_state(std::string_view s) {
  return s == "merged" || s == "abandoned" || s == "failed" || s == "superseded";
}

bool final_verdict(std::string_view v) { return !v.empty() && v != "queued"; }

}  // namespace

metrics_sink::metrics_sink(std::shared_ptr<metrics_registry> registry) : registry_(std::move(registry)) {
  auto& r = *registry_;
  using k = metric_kind;
  r.describe("agentcore_tasks", k::gauge, "Tasks on the board by state, as the events seen so far say");
  r.describe("agentcore_task_transitions_total", k::counter, "Task state changes by the state entered");
  r.describe("agentcore_claims_total", k::counter, "Tasks claimed by workers");
  r.describe("agentcore_task_seconds", k::histogram, "Time from a task's first claim to its final state");
  r.describe("agentcore_gate_verdicts_total", k::counter, "Gate verdicts by kind");
  r.describe("agentcore_merges_total", k::counter, "Changes the gate landed");
  r.describe("agentcore_queue_depth", k::gauge, "Changes waiting in the merge queue");
  r.describe("agentcore_queue_wait_seconds", k::histogram, "Time a change waited in the queue for its verdict");
  r.describe("agentcore_check_seconds", k::histogram, "Gate check run times");
  r.describe("agentcore_model_calls_total", k::counter, "Model turns by role and model");
  r.describe("agentcore_tokens_total", k::counter, "Tokens by role, model and kind (input, output)");
  r.describe("agentcore_cost_total", k::counter, "Cost by role and model, by the loop's price table");
  r.describe("agentcore_model_seconds", k::histogram, "Model answer latency by role");
  r.describe("agentcore_tool_calls_total", k::counter, "Tool calls by tool and whether they failed");
  r.describe("agentcore_workers", k::gauge, "Workers by their current phase");
  r.describe("agentcore_cycle", k::gauge, "The run's last judged cycle");
  r.describe("agentcore_events_total", k::counter, "Events seen by type");
  claims_ = r.counter("agentcore_claims_total");
  merges_ = r.counter("agentcore_merges_total");
  queue_depth_ = r.gauge("agentcore_queue_depth");
  queue_wait_ = r.histogram_series("agentcore_queue_wait_seconds");
  cycle_ = r.gauge("agentcore_cycle");
}

metric& metrics_sink::cached(text_map<metric>& cache, std::string_view value,
                             metric (metrics_registry::*make)(std::string_view, const label_set&),
                             std::string_view name, std::string_view label) {
  auto it = cache.find(value);
  if (it == cache.end())
    it = cache.emplace(std::string(value), (registry_.get()->*make)(name, {{std::string(label), std::string(value)}}))
             .first;
  return it->second;
}

void metrics_sink::write(const event_view& e) {
  auto& r = *registry_;
  const json::value& d = e.data ? *e.data : json::value();
  constexpr auto counter = &metrics_registry::counter;
  constexpr auto gauge = &metrics_registry::gauge;
  constexpr auto histogram = &metrics_registry::histogram_series;
  cached(events_by_type_, e.type, counter, "agentcore_events_total", "type").add();
  if (e.type == "board.task_transition") {
    auto from = str(d, "from"), to = str(d, "to");
    auto* created_v = d.is_object() ? d.get_object().if_contains("created") : nullptr;
    bool created = created_v && created_v->is_bool() && created_v->get_bool();
    if (!created && from != to) cached(tasks_by_state_, from, gauge, "agentcore_tasks", "state").change(-1);
    if (created || from != to) cached(tasks_by_state_, to, gauge, "agentcore_tasks", "state").change(+1);
    cached(transitions_to_, to, counter, "agentcore_task_transitions_total", "to").add();
    if (to == "claimed") {
      claims_.add();
      if (claimed_at_.find(e.task) == claimed_at_.end()) claimed_at_.emplace(std::string(e.task), e.time_us);
    } else if (final_task_state(to)) {
      if (auto it = claimed_at_.find(e.task); it != claimed_at_.end()) {
        cached(task_seconds_, to, histogram, "agentcore_task_seconds", "outcome")
            .observe(static_cast<double>(e.time_us - it->second) / 1e6);
        claimed_at_.erase(it);
      }
    }
  } else if (e.type == "gate.verdict") {
    auto verdict = str(d, "verdict");
    auto change = str(d, "change");
    cached(verdicts_, verdict, counter, "agentcore_gate_verdicts_total", "verdict").add();
    if (verdict == "merged") merges_.add();
    if (verdict == "queued") {
      if (queued_at_.emplace(std::string(change), e.time_us).second) queue_depth_.change(+1);
    } else if (final_verdict(verdict)) {
      if (auto it = queued_at_.find(change); it != queued_at_.end()) {
        queue_wait_.observe(static_cast<double>(e.time_us - it->second) / 1e6);
        queued_at_.erase(it);
        queue_depth_.change(-1);
      }
    }
    if (d.is_object())
      if (auto* checks = d.get_object().if_contains("checks"); checks && checks->is_array())
        for (const auto& c : checks->get_array())
          cached(checks_, str(c, "command"), histogram, "agentcore_check_seconds", "command")
              .observe(num(c, "duration_ms") / 1e3);
  } else if (e.type == "agent.turn") {
    auto model = str(d, "model");
    scratch_.assign(e.role);
    scratch_ += '\n';
    scratch_ += model;
    auto it = by_role_model_.find(scratch_);
    if (it == by_role_model_.end()) {
      std::string key = scratch_;
      label_set rm{{"role", std::string(e.role)}, {"model", std::string(model)}};
      auto in = rm, out = rm;
      in.emplace_back("kind", "input");
      out.emplace_back("kind", "output");
      it = by_role_model_
               .emplace(std::move(key), std::array<metric, 4>{r.counter("agentcore_model_calls_total", rm),
                                                              r.counter("agentcore_tokens_total", in),
                                                              r.counter("agentcore_tokens_total", out),
                                                              r.counter("agentcore_cost_total", rm)})
               .first;
    }
    auto& m = it->second;
    m[0].add();
    m[1].add(num(d, "input_tokens"));
    m[2].add(num(d, "output_tokens"));
    if (double c = num(d, "cost"); c > 0) m[3].add(c);
    cached(model_seconds_, e.role, histogram, "agentcore_model_seconds", "role").observe(num(d, "seconds"));
  } else if (e.type == "agent.tool_call") {
    auto* err = d.is_object() ? d.get_object().if_contains("is_error") : nullptr;
    bool failed = err && err->is_bool() && err->get_bool();
    auto tool = str(d, "tool");
    scratch_.assign(tool);
    scratch_ += failed ? "\ntrue" : "\nfalse";
    auto it = tool_calls_.find(scratch_);
    if (it == tool_calls_.end())
      it = tool_calls_
               .emplace(scratch_, r.counter("agentcore_tool_calls_total",
                                            {{"tool", std::string(tool)}, {"error", failed ? "true" : "false"}}))
               .first;
    it->second.add();
  } else if (e.type == "roles.worker_phase") {
    auto phase = str(d, "phase");
    auto it = phase_of_.find(e.worker);
    if (it != phase_of_.end()) {
      if (it->second == phase) return;
      cached(workers_by_phase_, it->second, gauge, "agentcore_workers", "phase").change(-1);
      it->second = std::string(phase);
    } else {
      phase_of_.emplace(std::string(e.worker), std::string(phase));
    }
    cached(workers_by_phase_, phase, gauge, "agentcore_workers", "phase").change(+1);
  } else if (e.type == "roles.judgement") {
    cycle_.set(num(d, "cycle"));
  }
}

}  // namespace agentcore::observe
