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
  if (kind == metric_kind::histogram) {
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
    series n;
    n.labels = labels;
    if (kind == metric_kind::histogram) n.buckets.assign(f.bounds.size(), 0);
    s = f.by_labels.emplace(std::move(key), std::move(n)).first;
  }
  return s->second;
}

const metrics_registry::series* metrics_registry::find(std::string_view name, const label_set& labels) const {
  auto it = families_.find(name);
  if (it == families_.end()) return nullptr;
  auto s = it->second.by_labels.find(render_labels(labels));
  return s == it->second.by_labels.end() ? nullptr : &s->second;
}

void metrics_registry::add(std::string_view name, const label_set& labels, double v) {
  if (!(v >= 0)) throw std::logic_error(fmt::format("metrics: counter '{}' cannot go down ({})", name, v));
  std::lock_guard lock(mutex_);
  at(name, metric_kind::counter, labels).value += v;
}

void metrics_registry::set(std::string_view name, const label_set& labels, double v) {
  std::lock_guard lock(mutex_);
  at(name, metric_kind::gauge, labels).value = v;
}

void metrics_registry::change(std::string_view name, const label_set& labels, double delta) {
  std::lock_guard lock(mutex_);
  at(name, metric_kind::gauge, labels).value += delta;
}

void metrics_registry::observe(std::string_view name, const label_set& labels, double v) {
  std::lock_guard lock(mutex_);
  auto& s = at(name, metric_kind::histogram, labels);
  const auto& bounds = families_.find(name)->second.bounds;
  auto i = static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
  if (i < s.buckets.size()) ++s.buckets[i];
  ++s.count;
  s.sum += v;
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
    if (!s->fn) return s->value;
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
          out += fmt::format("{}{} {}\n", name, braces, number(s.value));
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
        double v = s.value;
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
}

void metrics_sink::write(const event_view& e) {
  auto& r = *registry_;
  const json::value& d = e.data ? *e.data : json::value();
  r.add("agentcore_events_total", {{"type", std::string(e.type)}});
  if (e.type == "board.task_transition") {
    auto from = str(d, "from"), to = str(d, "to");
    bool created = d.is_object() && d.get_object().if_contains("created") &&
                   d.get_object().at("created").is_bool() && d.get_object().at("created").get_bool();
    if (!created && from != to) r.change("agentcore_tasks", {{"state", std::string(from)}}, -1);
    if (created || from != to) r.change("agentcore_tasks", {{"state", std::string(to)}}, +1);
    r.add("agentcore_task_transitions_total", {{"to", std::string(to)}});
    if (to == "claimed") {
      r.add("agentcore_claims_total", {});
      claimed_at_.emplace(std::string(e.task), e.time_us);  // the first claim stays
    } else if (final_task_state(to)) {
      if (auto it = claimed_at_.find(e.task); it != claimed_at_.end()) {
        r.observe("agentcore_task_seconds", {{"outcome", std::string(to)}},
                  static_cast<double>(e.time_us - it->second) / 1e6);
        claimed_at_.erase(it);
      }
    }
  } else if (e.type == "gate.verdict") {
    auto verdict = str(d, "verdict");
    auto change = str(d, "change");
    r.add("agentcore_gate_verdicts_total", {{"verdict", std::string(verdict)}});
    if (verdict == "merged") r.add("agentcore_merges_total", {});
    if (verdict == "queued") {
      if (queued_at_.emplace(std::string(change), e.time_us).second) r.change("agentcore_queue_depth", {}, +1);
    } else if (final_verdict(verdict)) {
      if (auto it = queued_at_.find(change); it != queued_at_.end()) {
        r.observe("agentcore_queue_wait_seconds", {}, static_cast<double>(e.time_us - it->second) / 1e6);
        queued_at_.erase(it);
        r.change("agentcore_queue_depth", {}, -1);
      }
    }
    if (d.is_object())
      if (auto* checks = d.get_object().if_contains("checks"); checks && checks->is_array())
        for (const auto& c : checks->get_array())
          r.observe("agentcore_check_seconds", {{"command", std::string(str(c, "command"))}}, num(c, "duration_ms") / 1e3);
  } else if (e.type == "agent.turn") {
    std::string role(e.role), model(str(d, "model"));
    r.add("agentcore_model_calls_total", {{"role", role}, {"model", model}});
    r.add("agentcore_tokens_total", {{"role", role}, {"model", model}, {"kind", "input"}}, num(d, "input_tokens"));
    r.add("agentcore_tokens_total", {{"role", role}, {"model", model}, {"kind", "output"}}, num(d, "output_tokens"));
    if (double c = num(d, "cost"); c > 0) r.add("agentcore_cost_total", {{"role", role}, {"model", model}}, c);
    r.observe("agentcore_model_seconds", {{"role", role}}, num(d, "seconds"));
  } else if (e.type == "agent.tool_call") {
    bool failed = d.is_object() && d.get_object().if_contains("is_error") &&
                  d.get_object().at("is_error").is_bool() && d.get_object().at("is_error").get_bool();
    r.add("agentcore_tool_calls_total", {{"tool", std::string(str(d, "tool"))}, {"error", failed ? "true" : "false"}});
  } else if (e.type == "roles.worker_phase") {
    std::string phase(str(d, "phase"));
    auto [it, fresh] = phase_of_.try_emplace(std::string(e.worker), phase);
    if (!fresh) {
      if (it->second == phase) return;
      r.change("agentcore_workers", {{"phase", it->second}}, -1);
      it->second = phase;
    }
    r.change("agentcore_workers", {{"phase", phase}}, +1);
  } else if (e.type == "roles.judgement") {
    r.set("agentcore_cycle", {}, num(d, "cycle"));
  }
}

}  // namespace agentcore::observe
