// Fitting a scenario to a real run's event log (sim.hpp: calibrate).
#include <agentcore/sim/sim.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <istream>
#include <map>
#include <set>

namespace agentcore::sim {

namespace {

// "2026-12-08T00:00:33.928663Z" -> seconds since the epoch; nullopt if not that shape.
std::optional<double> event_seconds(std::string_view t) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double s = 0;
  std::string text(t);
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%lfZ", &y, &mo, &d, &h, &mi, &s) != 6) return std::nullopt;
  auto days = std::chrono::sys_days(std::chrono::year(y) / std::chrono::month(static_cast<unsigned>(mo)) /
                                    std::chrono::day(static_cast<unsigned>(d)));
  return static_cast<double>(days.time_since_epoch().count()) * 86400 + h * 3600 + mi * 60 + s;
}

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))];
}

double number_at(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : 0;
}

struct fitter {
  calibration& out;
  static constexpr std::size_t enough = 3;  // fewer samples than this fit nothing

  /// `floor`: a median below it is not a real measurement (a model that
  /// answers in under a millisecond is a replayed transcript).
  void dist(std::string_view what, const std::vector<double>& samples, lognormal& into, std::string_view unit,
            double floor = 0) {
    if (samples.size() < enough) {
      out.notes.push_back(fmt::format("{}: {} samples, too few; kept {:g} (median), {:g} (p90)", what, samples.size(),
                                      into.median, into.p90));
      return;
    }
    double median = quantile(samples, 0.5), p90 = quantile(samples, 0.9);
    if (!(median > floor)) {
      out.notes.push_back(fmt::format("{}: the log's median is {:.3g}{}, not a real one (a replayed transcript?); kept "
                                      "{:g}{} (median)",
                                      what, median, unit, into.median, unit));
      return;
    }
    into = {median, std::max(p90, median)};
    out.notes.push_back(fmt::format("{}: median {:.3g}{}, p90 {:.3g}{} from {} samples", what, median, unit, into.p90, unit,
                                    samples.size()));
  }
  void rate(std::string_view what, double hits, double of, double& into) {
    if (of < enough) {
      out.notes.push_back(fmt::format("{}: {} cases, too few; kept {:g}", what, of, into));
      return;
    }
    into = std::clamp(hits / of, 0.0, 1.0);
    out.notes.push_back(fmt::format("{}: {:.3g} ({} of {})", what, into, hits, of));
  }
};

}  // namespace

result<calibration> calibrate(std::istream& log, const scenario& base) {
  calibration c;
  c.fitted = base;
  scenario& s = c.fitted;
  std::vector<double> worker_turn_s, planner_turn_s, worker_tokens, planner_tokens, attempt_turns, plan_sizes, fast_s,
      deep_s;
  double worker_cost = 0, worker_tok = 0, planner_cost = 0, planner_tok = 0;
  double outcomes = 0, finished = 0, stalled = 0;
  std::map<std::string, double> verdicts;
  std::set<std::string> workers, planners;
  std::optional<double> merged_in_memory_at;
  std::string line;
  std::size_t number = 0;
  while (std::getline(log, line)) {
    ++number;
    if (line.empty()) continue;
    auto j = parse_json(line);
    if (!j || !j->is_object()) {
      ++c.skipped;
      continue;
    }
    const auto& e = j->as_object();
    if (number_at(e, "v") != 1)
      return fail(error::unsupported_format,
                  fmt::format("sim: event log line {} is not a version-1 event (docs/events.md); calibrate from a log "
                              "agentcore wrote",
                              number));
    ++c.events;
    std::string type = string_at(e, "type"), role = string_at(e, "role");
    const json::object* data = object_at(e, "data");
    if (!data) continue;
    if (type == "agent.turn") {
      double tokens = number_at(*data, "input_tokens") + number_at(*data, "output_tokens");
      if (role == "worker") {
        worker_turn_s.push_back(number_at(*data, "seconds"));
        worker_tokens.push_back(tokens);
        worker_cost += number_at(*data, "cost"), worker_tok += tokens;
      } else if (role == "planner") {
        planner_turn_s.push_back(number_at(*data, "seconds"));
        planner_tokens.push_back(tokens);
        planner_cost += number_at(*data, "cost"), planner_tok += tokens;
      }
    } else if (type == "agent.outcome" && role == "worker") {
      ++outcomes;
      std::string kind = string_at(*data, "kind");
      finished += kind == "finished";
      stalled += kind == "stalled";
      attempt_turns.push_back(number_at(*data, "turns"));
    } else if (type == "roles.plan") {
      if (auto* p = array_at(*data, "proposed"); p && !p->empty()) plan_sizes.push_back(static_cast<double>(p->size()));
      planners.insert(string_at(*data, "planner"));
    } else if (type == "roles.worker_phase") {
      workers.insert(string_at(*data, "worker"));
    } else if (type == "gate.verdict") {
      std::string v = string_at(*data, "verdict");
      verdicts[v] += 1;
      if (v == "queued" || v == "checks_failed")
        if (auto* checks = array_at(*data, "checks"))
          for (const auto& ch : *checks)
            if (ch.is_object()) fast_s.push_back(number_at(ch.as_object(), "duration_ms") / 1000);
    } else if (type == "gate.step") {
      std::string step = string_at(*data, "step");
      auto at = event_seconds(string_at(e, "time"));
      if (step == "merged_in_memory") merged_in_memory_at = at;
      if (step == "deep_checks" && at && merged_in_memory_at) deep_s.push_back(*at - *merged_in_memory_at);
    }
  }
  if (c.events == 0) return fail(error::invalid_argument, "sim: the event log has no events to calibrate from");
  fitter f{c};
  f.dist("worker turn latency", worker_turn_s, s.worker.model.turn_seconds, " s", 0.001);
  f.dist("worker tokens per turn", worker_tokens, s.worker.model.tokens_per_turn, "");
  f.dist("planner turn latency", planner_turn_s, s.planner.turn_seconds, " s", 0.001);
  f.dist("planner tokens per turn", planner_tokens, s.planner.tokens_per_turn, "");
  if (worker_cost > 0 && worker_tok > 0) s.worker.model.cost_per_million_tokens = worker_cost / worker_tok * 1e6;
  if (planner_cost > 0 && planner_tok > 0) s.planner.cost_per_million_tokens = planner_cost / planner_tok * 1e6;
  c.notes.push_back(worker_cost > 0 ? fmt::format("worker cost: {:.3g} per million tokens", s.worker.model.cost_per_million_tokens)
                                    : "worker cost: none in the log; kept the scenario's price");
  // The run's tasks are the unit of work: one unit each, a plan's tasks one feature.
  s.work.max_task_units = 1;
  f.dist("worker turns per task", attempt_turns, s.worker.turns_per_unit, "");
  f.dist("tasks per plan", plan_sizes, s.work.feature_units, "");
  f.rate("attempts that finish", finished, outcomes, s.worker.success_per_unit);
  f.rate("attempts that stall", stalled, outcomes, s.worker.stall);
  double submitted = verdicts["queued"] + verdicts["contract_violated"] + verdicts["checks_failed"];
  double broke = verdicts["checks_failed"] + verdicts["deep_checks_failed"] + verdicts["reverted"];
  f.rate("changes out of contract", verdicts["contract_violated"], submitted, s.worker.out_of_contract);
  f.rate("changes that break the build", broke, submitted, s.worker.breaks_build);
  f.rate("build breaks the fast checks catch", verdicts["checks_failed"], broke, s.checks.fast_catches);
  f.dist("fast checks", fast_s, s.checks.fast_seconds, " s");
  f.dist("deep checks", deep_s, s.checks.deep_seconds, " s");
  if (!workers.empty()) s.workers = static_cast<int>(workers.size());
  if (!planners.empty()) s.planners = static_cast<int>(planners.size());
  c.notes.push_back(fmt::format("the run had {} workers and {} planners", s.workers, s.planners));
  if (!plan_sizes.empty()) s.work.features = static_cast<int>(plan_sizes.size());
  if (auto e = validate(s)) return e;
  return c;
}

}  // namespace agentcore::sim
