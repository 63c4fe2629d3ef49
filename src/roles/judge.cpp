#include <agentcore/roles/judge.hpp>

#include <agentcore/agent/loop.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"
#include "detail/offload.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>

#include <mutex>
#include <set>

namespace agentcore::roles {

namespace {
using detail::offload;
using clock = std::chrono::steady_clock;
}  // namespace

std::string_view to_string(decision d) noexcept {
  switch (d) {
    case decision::continue_cycle: return "continue";
    case decision::restart: return "restart";
    case decision::stop: return "stop";
  }
  return "continue";
}

void tag_invoke(json::value_from_tag, json::value& v, const cycle_figures& f) {
  v = {{"merged", f.merged},
       {"rejected", f.rejected},
       {"conflicts", f.conflicts},
       {"contract_violations", f.contract_violations},
       {"checks_failed", f.checks_failed},
       {"reverted", f.reverted},
       {"stalls", f.stalls},
       {"abandoned", f.abandoned},
       {"changed_lines", f.changed_lines},
       {"churn_lines", f.churn_lines},
       {"input_tokens", f.input_tokens},
       {"output_tokens", f.output_tokens},
       {"cost", f.cost},
       {"duration_ms", f.duration.count()}};
}

void tag_invoke(json::value_from_tag, json::value& v, const judge_event& e) {
  v = {{"cycle", e.cycle},
       {"decision", e.decision},
       {"reason", e.reason},
       {"figures", json::value_from(e.figures)},
       {"goal_met", e.goal_met}};
}

struct judge::state : std::enable_shared_from_this<state> {
  event_bus& bus;
  board::task_board& board;
  std::filesystem::path repo_path;
  git::worktree_pool& pool;
  judge_options o;
  asio::strand<asio::any_io_executor> strand;

  mutable std::mutex m;
  cycle_figures figures;
  std::vector<std::pair<git::oid, git::oid>> moves;  // branch moves of this cycle, in order
  static constexpr std::size_t max_moves = 4096;
  clock::time_point started = clock::now();
  int cycle = 1;
  std::vector<event_bus::subscription> subs;
  // The convergence trend: per closed cycle, what it merged, how many goal
  // checks passed at its end, and its churn share.
  struct past_cycle {
    std::uint64_t merged = 0;
    std::size_t passed = 0;
    double churn = 0;
  };
  std::vector<past_cycle> past;  // the last converge_cycles + 1
  bool restarted_for_trend = false;

  state(event_bus& b, board::task_board& bd, std::filesystem::path r, git::worktree_pool& p, judge_options opts)
      : bus(b), board(bd), repo_path(std::move(r)), pool(p), o(std::move(opts)),
        strand(asio::make_strand(o.executor ? o.executor : asio::any_io_executor(asio::system_executor()))) {}

  void subscribe() {
    subs.push_back(bus.subscribe<gate::gate_event>([this](const gate::gate_event& e) {
      std::lock_guard lock(m);
      using enum gate::verdict_kind;
      switch (e.verdict.kind) {
        case merged: ++figures.merged; break;
        case queued: break;
        case contract_violated: ++figures.contract_violations; ++figures.rejected; break;
        case checks_failed:
        case deep_checks_failed: ++figures.checks_failed; ++figures.rejected; break;
        case conflict: ++figures.conflicts; ++figures.rejected; break;
        case reverted: ++figures.reverted; ++figures.rejected; break;
        case error: ++figures.rejected; break;
      }
    }));
    subs.push_back(bus.subscribe<gate::branch_moved>([this](const gate::branch_moved& e) {
      std::lock_guard lock(m);
      if (e.branch != o.branch) return;
      if (moves.size() >= max_moves) {
        // A cycle that never closes (no merges_per_cycle, no cycle_time) must
        // not grow without end: consecutive moves are joined in pairs (the
        // diff of a joined pair is their net change: churn within it is lost).
        std::size_t kept = 0;
        for (std::size_t i = 0; i < moves.size(); i += 2)
          moves[kept++] = {moves[i].first, i + 1 < moves.size() ? moves[i + 1].second : moves[i].second};
        moves.resize(kept);
      }
      moves.emplace_back(e.from, e.to);
    }));
    subs.push_back(bus.subscribe<agent::outcome_event>([this](const agent::outcome_event& e) {
      std::lock_guard lock(m);
      if (e.kind == "stalled" || e.kind == "time_box") ++figures.stalls;
    }));
    // Every model call (agents' turns, planners, the reviewer) publishes one.
    subs.push_back(bus.subscribe<agent::turn_event>([this](const agent::turn_event& e) {
      std::lock_guard lock(m);
      figures.input_tokens += e.usage.input_tokens;
      figures.output_tokens += e.usage.output_tokens;
      figures.cost += e.cost;
    }));
    subs.push_back(bus.subscribe<board::task_transition>([this](const board::task_transition& e) {
      std::lock_guard lock(m);
      if (e.to == board::task_state::abandoned) ++figures.abandoned;
    }));
  }

  bool over() const {
    std::lock_guard lock(m);
    if (o.merges_per_cycle > 0 && figures.merged >= o.merges_per_cycle) return true;
    if (o.cycle_time.count() > 0 && clock::now() - started >= o.cycle_time) return true;
    return false;
  }

  cycle_figures snapshot() const {
    std::lock_guard lock(m);
    auto f = figures;
    f.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started);
    return f;
  }

  asio::awaitable<result<judgement>> close() {
    judgement j;
    std::vector<std::pair<git::oid, git::oid>> cycle_moves;
    {
      std::lock_guard lock(m);
      j.cycle = cycle;
      j.figures = figures;
      j.figures.duration = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - started);
      cycle_moves = moves;
      // The next cycle starts now: what happens while this one is judged counts there.
      figures = {};
      moves.clear();
      started = clock::now();
      ++cycle;
    }
    // Churn: lines changed again in files an earlier merge of the cycle changed.
    auto churn = co_await offload(o.blocking, [&]() -> error_info {
      if (cycle_moves.empty()) return {};
      auto repo = git::repository::open(repo_path);
      if (!repo) return repo.error();
      std::set<std::string> touched;
      for (const auto& [from, to] : cycle_moves) {
        auto d = repo->diff(from, to);
        if (!d) return d.error();
        for (const auto& f : d->files) {
          auto lines = f.additions + f.deletions;
          j.figures.changed_lines += lines;
          if (touched.count(f.path)) j.figures.churn_lines += lines;
          touched.insert(f.path);
        }
      }
      return {};
    });
    if (churn) co_return churn;

    // The goal's checks, on the branch's tip.
    if (!o.goal_checks.empty()) {
      auto ran = co_await offload(o.blocking, [&]() -> error_info {
        auto repo = git::repository::open(repo_path);
        if (!repo) return repo.error();
        auto tip = repo->resolve(o.branch);
        if (!tip) return tip.error();
        auto wt = pool.acquire(*tip, std::chrono::minutes(10));
        if (!wt) return wt.error();
        j.goal_met = true;
        for (const auto& cmd : o.goal_checks) {
          gate::check_options co = o.checks;
          co.working_directory = wt->path();
          co.sandbox.read_only.push_back(wt->git_dir());
          auto r = process::run(cmd, co);
          if (!r) return r.error();
          j.goal_met = j.goal_met && r->passed();
          j.goal_checks.push_back(std::move(*r));
        }
        return {};
      });
      if (ran) co_return ran;
    }

    const auto& f = j.figures;
    std::uint64_t verdicts = f.merged + f.rejected;
    if (j.goal_met) {
      j.verdict = decision::stop;
      j.reason = "the goal's acceptance checks pass on " + o.branch;
    } else if (verdicts >= 4 && static_cast<double>(f.rejected) > o.restart_rejection_rate * static_cast<double>(verdicts)) {
      j.verdict = decision::restart;
      j.reason = fmt::format("{} of {} changes were rejected this cycle: the plan is not working", f.rejected, verdicts);
    } else if (o.restart_stalls > 0 && f.stalls >= o.restart_stalls) {
      j.verdict = decision::restart;
      j.reason = fmt::format("{} agents stalled this cycle", f.stalls);
    } else if (o.restart_when_nothing_lands && f.merged == 0 && (f.rejected + f.abandoned) > 0) {
      j.verdict = decision::restart;
      j.reason = fmt::format("nothing landed this cycle ({} rejected, {} abandoned)", f.rejected, f.abandoned);
    } else {
      j.verdict = decision::continue_cycle;
      j.reason = fmt::format("{} merged, {} rejected: progress", f.merged, f.rejected);
    }

    if (o.reviewer) {
      model::request req;
      req.system =
          "You review a cycle of a team of coding agents working towards a goal. Decide whether they should "
          "continue, restart planning from the repository's current state, or stop because the goal is met. Answer "
          "with JSON only: {\"decision\": \"continue\" | \"restart\" | \"stop\", \"reason\": \"...\"}.";
      std::string checks;
      for (const auto& c : j.goal_checks) checks += fmt::format("- {}: {}\n", c.command, c.outcome());
      req.messages.push_back(model::user(fmt::format(
          "Goal: {}\n\nFigures of cycle {}: {}\n\nGoal checks on {}:\n{}\nThe rules say: {} ({}).", o.goal, j.cycle,
          json::serialize(json::value_from(f)), o.branch, checks.empty() ? std::string("(none)\n") : checks,
          to_string(j.verdict), j.reason)));
      req.max_tokens = 1024;
      req.tags = {.role = "judge"};
      auto asked = std::chrono::steady_clock::now();
      auto r = co_await o.reviewer->async_chat(req, asio::use_awaitable);
      if (r)
        bus.publish(agent::turn_event{"judge", {}, 1, {}, r->usage, std::string(model::to_string(r->stop)), r->model_name,
                                      model::cost_of(r->usage, r->model_name, o.prices),
                                      std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count()});
      if (r) {
        j.review = r->message.text();
        boost::system::error_code ec;
        auto text = std::string_view(j.review);
        auto open = text.find('{'), close = text.rfind('}');
        auto v = open != std::string_view::npos && close != std::string_view::npos && close > open
                     ? json::parse(text.substr(open, close - open + 1), ec)
                     : json::value();
        if (!ec && v.is_object()) {
          auto* d = v.as_object().if_contains("decision");
          auto* why = v.as_object().if_contains("reason");
          std::string said = d && d->is_string() ? std::string(d->get_string()) : "";
          std::string because = why && why->is_string() ? std::string(why->get_string()) : "";
          if (said == "restart") {
            j.verdict = decision::restart;
            j.reason = "the reviewer asked for a restart: " + because;
          } else if (said == "stop" && (o.goal_checks.empty() || j.goal_met)) {
            j.verdict = decision::stop;
            j.reason = "the reviewer judged the goal met: " + because;
          } else if (said == "continue" && j.verdict == decision::restart) {
            j.verdict = decision::continue_cycle;
            j.reason = "the reviewer asked to continue: " + because;
          }
        }
      }
    }
    // The trend over cycles: commits without convergence.
    for (const auto& c : j.goal_checks) j.goal_checks_passed += c.passed();
    past.push_back({f.merged, j.goal_checks_passed,
                    f.changed_lines ? static_cast<double>(f.churn_lines) / static_cast<double>(f.changed_lines) : 0.0});
    // The window: the last n cycles, measured against the cycle before them.
    const std::size_t n = o.converge_cycles;
    if (past.size() > n + 1) past.erase(past.begin());
    if (n > 0 && !o.goal_checks.empty() && !j.goal_met && j.verdict != decision::stop && past.size() == n + 1) {
      std::size_t first = 1;
      std::size_t before = past[0].passed;
      bool merging = true, churning = true;
      std::size_t best = 0;
      for (std::size_t i = first; i < past.size(); ++i) {
        merging = merging && past[i].merged > 0;
        churning = churning && past[i].churn >= o.churn_share;
        best = std::max(best, past[i].passed);
      }
      if (merging && churning && best <= before) {
        auto why = fmt::format("not converging: {} cycles merged work, rewrote at least {:.0f}% of what they changed, "
                               "and no more goal checks pass ({} of {})",
                               n, o.churn_share * 100, j.goal_checks_passed, o.goal_checks.size());
        j.verdict = restarted_for_trend ? decision::stop : decision::restart;
        j.reason = restarted_for_trend ? why + "; a restart did not help" : why;
        restarted_for_trend = true;
        past.erase(past.begin(), past.end() - 1);  // this cycle is the next window's baseline
      }
    }
    if (o.rules) {
      try {
        o.rules(j);
      } catch (const std::exception& e) {
        j.reason += fmt::format(" (the host's judge rules threw: {})", e.what());
      }
      if (j.reason.empty()) j.reason = "decided by the host's rules";
    }
    bus.publish(judge_event{j.cycle, std::string(to_string(j.verdict)), j.reason, j.figures, j.goal_met});
    co_return j;
  }
};

judge::judge(event_bus& bus, board::task_board& board, std::filesystem::path repository, git::worktree_pool& pool,
             judge_options options)
    : state_(std::make_shared<state>(bus, board, std::move(repository), pool, std::move(options))) {
  state_->subscribe();
}

judge::~judge() {
  state_->subs.clear();  // no callback runs after this
}

bool judge::cycle_over() const { return state_->over(); }
cycle_figures judge::current() const { return state_->snapshot(); }
asio::any_io_executor judge::get_executor() const { return state_->o.executor; }

void judge::start(asio::any_completion_handler<void(result<judgement>)> handler) {
  auto s = state_;
  if (!s->o.executor) {
    detail::post_completion(std::move(handler),
                            result<judgement>(fail(error::invalid_argument, "roles: judge_options::executor is not set")));
    return;
  }
  detail::spawn_operation(s->strand, s->o.executor, s->close(), std::move(handler),
                          [](const std::string& what) -> result<judgement> {
                            return fail(error::io_error, fmt::format("roles: the judge failed: {}", what));
                          });
}

}  // namespace agentcore::roles
