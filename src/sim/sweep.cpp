// Sweeps of the capacity simulator, the answer in words, and SVG plots (sim.hpp).
#include <agentcore/sim/sim.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

namespace agentcore::sim {

std::string describe(const gate::queue_policy_options& p) {
  switch (p.mode) {
    case gate::policy::serial: return "serial";
    case gate::policy::batch: return fmt::format("batch {}", p.batch_size);
    case gate::policy::optimistic: return fmt::format("optimistic every {}", p.optimistic_every);
  }
  return "?";
}

namespace {

scenario at(const scenario& base, int workers) {
  scenario s = base;
  s.workers = workers;
  double per_worker = static_cast<double>(base.planners) / std::max(1, base.workers);
  s.planners = std::max(1, static_cast<int>(std::lround(per_worker * workers)));
  return s;
}

double kept_per_hour(const report& r) { return static_cast<double>(r.merges - r.reverts) / std::max(r.hours, 1e-9); }

std::string label(const report& r) {
  if (r.queue == queue_kind::github_merge_queue) return "github merge queue";
  return describe({.mode = r.policy, .batch_size = r.batch_size, .optimistic_every = r.optimistic_every});
}

struct series {
  std::string name;
  std::vector<std::pair<double, double>> points;
};

// A line chart: x on a log scale (workers), y linear from 0.
std::string chart(std::string_view title, std::string_view y_label, const std::vector<series>& lines) {
  constexpr double w = 640, h = 400, left = 70, right = 180, top = 40, bottom = 50;
  double xmin = 1e300, xmax = 0, ymax = 0;
  for (const auto& s : lines)
    for (auto [x, y] : s.points) xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymax = std::max(ymax, y);
  if (xmax <= 0) xmin = 1, xmax = 2;
  if (xmax <= xmin) xmax = xmin * 2;
  if (ymax <= 0) ymax = 1;
  ymax *= 1.1;
  auto px = [&](double x) { return left + (std::log(x) - std::log(xmin)) / (std::log(xmax) - std::log(xmin)) * (w - left - right); };
  auto py = [&](double y) { return h - bottom - y / ymax * (h - top - bottom); };
  static const char* colours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n",
      w, h, left, title);
  out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", left, h - bottom, w - right, h - bottom);
  out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", left, top, left, h - bottom);
  std::vector<double> xs;
  for (const auto& s : lines)
    for (auto [x, y] : s.points) xs.push_back(x);
  std::sort(xs.begin(), xs.end());
  xs.erase(std::unique(xs.begin(), xs.end()), xs.end());
  for (double x : xs)
    out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:g}</text>\n", px(x), h - bottom + 16, x);
  for (int i = 0; i <= 4; ++i) {
    double y = ymax * i / 4;
    out += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n", left - 6, py(y) + 4, y);
    out += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", left, py(y), w - right, py(y));
  }
  out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">workers</text>\n", (left + w - right) / 2, h - 12);
  out += fmt::format("<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">{}</text>\n",
                     (top + h - bottom) / 2, (top + h - bottom) / 2, y_label);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const char* c = colours[i % std::size(colours)];
    std::string pts;
    for (auto [x, y] : lines[i].points) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    out += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", c, pts);
    for (auto [x, y] : lines[i].points)
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", px(x), py(y), c);
    double ly = top + 14 + 18 * static_cast<double>(i);
    out += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2\"/>\n", w - right + 12, ly - 4,
                       w - right + 32, ly - 4, c);
    out += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", w - right + 38, ly, lines[i].name);
  }
  out += "</svg>\n";
  return out;
}

}  // namespace

result<sweep_result> sweep(const scenario& base, const sweep_options& o) {
  if (auto e = validate(base)) return e;
  if (o.workers.empty()) return fail(error::invalid_argument, "sim: a sweep needs at least one worker count");
  sweep_result out;
  out.base = base;
  for (design d : o.designs)
    for (int w : o.workers) {
      auto s = at(base, w);
      s.coordination = d;
      auto r = run(s);
      if (!r) return r.error();
      out.by_design.push_back(*r);
    }
  for (const auto& p : o.policies)
    for (int w : o.workers) {
      auto s = at(base, w);
      s.gate = p;
      auto r = run(s);
      if (!r) return r.error();
      out.by_policy.push_back(*r);
    }
  return out;
}

std::string answer(const sweep_result& r) {
  // With the base policy and design: where throughput stops growing.
  const auto& base = r.base;
  std::vector<const report*> own;
  for (const auto& x : r.by_policy)
    if (x.policy == base.gate.mode && x.batch_size == base.gate.batch_size &&
        x.optimistic_every == base.gate.optimistic_every)
      own.push_back(&x);
  if (own.empty())
    for (const auto& x : r.by_design)
      if (x.coordination == base.coordination) own.push_back(&x);
  if (own.empty()) return "nothing was simulated\n";
  double top = 0;
  for (auto* x : own) top = std::max(top, kept_per_hour(*x));
  const report* saturated = nullptr;
  for (auto* x : own)
    if (kept_per_hour(*x) >= 0.9 * top && x->gate_utilisation >= 0.85) {
      saturated = x;
      break;
    }
  // At the most workers simulated: the policy that keeps the most merges.
  int most = 0;
  for (const auto& x : r.by_policy) most = std::max(most, x.workers);
  const report* best = nullptr;
  for (const auto& x : r.by_policy)
    if (x.workers == most && (!best || kept_per_hour(x) > kept_per_hour(*best))) best = &x;
  std::string checks = fmt::format("deep checks of {:.0f} min (median), {:.0f}% of changes breaking the build",
                                   base.checks.deep_seconds.median / 60, base.worker.breaks_build * 100);
  std::string out;
  if (saturated)
    out += fmt::format("With {}, the gate ({}) saturates at {} workers: about {:.1f} merges an hour, the queue busy {:.0f}% "
                       "of the time.",
                       checks, describe(base.gate), saturated->workers, kept_per_hour(*saturated),
                       100 * saturated->gate_utilisation);
  else
    out += fmt::format("With {}, the gate ({}) does not saturate up to {} workers: throughput still grows with workers.",
                       checks, describe(base.gate), own.back()->workers);
  if (best)
    out += fmt::format(" {} {} workers, use {}: expect {:.1f} merges an hour (median queue wait {:.0f} min) at {:.2f} an "
                       "hour in model cost.",
                       saturated ? "Beyond that, at" : "At", best->workers, label(*best), kept_per_hour(*best),
                       best->queue_wait_median_s / 60, best->cost_per_hour);
  return out + "\n";
}

std::string throughput_svg(const sweep_result& r) {
  std::map<design, series> by;
  for (const auto& x : r.by_design) {
    auto& s = by[x.coordination];
    s.name = std::string(to_string(x.coordination));
    s.points.emplace_back(x.workers, kept_per_hour(x));
  }
  std::vector<series> lines;
  for (auto& [d, s] : by) lines.push_back(std::move(s));
  return chart(fmt::format("Merges an hour by workers ({})", describe(r.base.gate)), "merges / hour", lines);
}

std::string queue_wait_svg(const sweep_result& r) {
  std::vector<series> lines;
  for (const auto& x : r.by_policy) {
    std::string name = label(x);
    if (lines.empty() || lines.back().name != name) lines.push_back({name, {}});
    lines.back().points.emplace_back(x.workers, x.queue_wait_median_s / 60);
  }
  return chart(fmt::format("Queue wait by workers ({})", to_string(r.base.coordination)), "median queue wait (min)",
               lines);
}

void tag_invoke(json::value_from_tag, json::value& v, const sweep_result& r) {
  json::array designs, policies;
  for (const auto& x : r.by_design) designs.push_back(json::value_from(x));
  for (const auto& x : r.by_policy) policies.push_back(json::value_from(x));
  v = json::object{{"base", json::value_from(r.base)}, {"by_design", designs}, {"by_policy", policies},
                   {"answer", answer(r)}};
}

}  // namespace agentcore::sim
