// agentcore/roles/judge.hpp: the judge closes a cycle of the swarm (after N
// merges, a time, or when the board drains) with its figures (merged,
// rejected, conflicts, stalls, contract violations, churn: lines rewritten
// within the cycle) and decides: continue; restart (planners rebuilt from the
// repository's state, not from chat history); or stop (the goal's acceptance
// checks pass on the branch).
//
//   roles::judge j(bus, board, repo_path, *pool, {.merges_per_cycle = 10, .goal_checks = {"make test"},
//                                                 .executor = io.get_executor()});
//   if (j.cycle_over()) j.async_close_cycle([](result<roles::judgement> r) { ... });
//
// The judge counts what it sees on the event bus: verdicts, branch moves,
// agent outcomes, task transitions. Subscribe it before the swarm starts.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/gate/checks.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/model/client.hpp>
#include <agentcore/model/middleware.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace agentcore::roles {

namespace asio = boost::asio;

struct cycle_figures {
  std::uint64_t merged = 0;
  std::uint64_t rejected = 0;             ///< every verdict that is not merged (conflicts included)
  std::uint64_t conflicts = 0;
  std::uint64_t contract_violations = 0;  ///< changes the gate rejected for their contract
  std::uint64_t checks_failed = 0;        ///< fast or deep checks
  std::uint64_t reverted = 0;
  std::uint64_t stalls = 0;               ///< agents that stalled or spent their time box
  std::uint64_t abandoned = 0;
  std::uint64_t changed_lines = 0;        ///< lines added and removed on the branch
  std::uint64_t churn_lines = 0;          ///< of those, in files an earlier merge of the cycle had changed
  std::uint64_t input_tokens = 0, output_tokens = 0;
  double cost = 0;
  std::chrono::milliseconds duration{0};
};
void tag_invoke(json::value_from_tag, json::value& v, const cycle_figures& f);

enum class decision { continue_cycle, restart, stop };
std::string_view to_string(decision d) noexcept;

struct judgement {
  int cycle = 0;
  decision verdict = decision::continue_cycle;
  std::string reason;
  cycle_figures figures;
  bool goal_met = false;
  std::vector<gate::check_result> goal_checks;
  std::string review;  ///< the reviewing model's words, when there is one
  std::size_t goal_checks_passed = 0;  ///< of goal_checks
};

/// Published for every judgement.
struct judge_event {
  static constexpr std::string_view event_type = "roles.judgement";
  int cycle = 0;
  std::string decision, reason;
  cycle_figures figures;
  bool goal_met = false;
};
void tag_invoke(json::value_from_tag, json::value& v, const judge_event& e);

struct judge_options {
  std::size_t merges_per_cycle = 10;   ///< a cycle ends after this many merges (0: not counted)
  std::chrono::seconds cycle_time{0};  ///< or after this long (0: no limit)
  /// Run on the branch's tip at each cycle's end; all passing is the goal met.
  std::vector<std::string> goal_checks;
  std::string goal;  ///< in words, for the reviewer
  std::string branch = "refs/heads/main";
  gate::check_options checks;          ///< limits and sandbox of the goal checks
  /// Restart when more than this share of verdicts (at least 4) were rejections...
  double restart_rejection_rate = 0.5;
  /// ...or this many agents stalled in the cycle (0: never for stalls)...
  std::size_t restart_stalls = 3;
  /// ...or nothing merged while work was rejected or abandoned.
  bool restart_when_nothing_lands = true;
  /// Convergence over cycles: when each of this many cycles in a row merged
  /// work, no more goal checks pass at their end than at the end of the cycle
  /// before them, and at
  /// least `churn_share` of the lines they changed rewrote lines changed
  /// earlier in the same cycle, the run is making commits without
  /// converging: restart; and when that happens again after such a restart,
  /// stop with that reason. 0: not watched.
  std::size_t converge_cycles = 4;
  double churn_share = 0.3;
  /// The host's rules: called with the judgement the built-in rules (and the
  /// reviewer) made, before it is published; may change the decision and its
  /// reason. A stop ends the run whether or not the goal checks pass (the
  /// judgement's goal_met says which).
  std::function<void(judgement&)> rules;
  /// An optional reviewer: asked for {"decision","reason"} over the figures.
  /// It may ask to stop only when the goal checks pass (or there are none).
  model::client* reviewer = nullptr;
  /// Prices the reviewer's calls (its agent.turn events carry the cost).
  model::price_table prices;
  asio::any_io_executor executor;  ///< required
  asio::any_io_executor blocking;  ///< checks, repository and board reads; default: inline
};

class judge {
public:
  /// Subscribes to `bus` at once. Everything passed by reference must outlive the judge.
  judge(event_bus& bus, board::task_board& board, std::filesystem::path repository, git::worktree_pool& pool,
        judge_options options);
  ~judge();
  judge(const judge&) = delete;
  judge& operator=(const judge&) = delete;

  /// Whether the cycle has run its course: enough merges, or enough time.
  /// (A drained board is the runtime's to notice: it knows when workers are idle.)
  bool cycle_over() const;
  /// The figures so far in this cycle (churn is computed at its close).
  cycle_figures current() const;

  /// Where a completion handler that has no executor of its own runs (the
  /// options' executor), as with Asio's I/O objects.
  asio::any_io_executor get_executor() const;

  /// Closes the cycle: figures, goal checks, review, decision; then starts the next.
  template <class CompletionToken>
  auto async_close_cycle(CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(result<judgement>)>(
        [this](auto handler) { start(::agentcore::detail::never_inline(std::move(handler), get_executor())); }, token);
  }

  struct state;

private:
  void start(asio::any_completion_handler<void(result<judgement>)> handler);
  std::shared_ptr<state> state_;
};

}  // namespace agentcore::roles
