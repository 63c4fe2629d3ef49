// agentcore/sim/sim.hpp: capacity planning. "Ten workers or a hundred? Which
// gate policy?" answered by running the real task board (on a memory store
// and a virtual clock), the real contract check and the real merge-queue
// policy (gate/queue_policy.hpp) against simulated parts: models per role,
// a synthetic repository, checks with durations and failure rates.
//
//   sim::scenario s;                       // defaults: a plausible team
//   s.workers = 50;
//   s.gate = {.mode = gate::policy::batch, .batch_size = 8};
//   auto r = sim::run(s).value();          // a week of simulated time in seconds
//   fmt::print("{} merges/h, queue wait {} s\n", r.merges_per_hour, r.queue_wait_median_s);
//
// The same seed gives the same report. What is simulated, and how:
//   - Work comes as features of a size (units of work; lognormal). Under
//     planner_worker, planners (model turns per unit) split each feature into
//     tasks of at most max_task_units; under flat_optimistic and
//     strict_locks, each feature is one task, and the agent that takes it
//     plans for itself (planner turns before its work).
//   - A worker's attempt takes turns (per unit of size) times a turn's
//     latency; it succeeds with success_per_unit^size, stalls (silent until
//     its lease expires and the board gives the task back), writes outside
//     its contract (the real contract check refuses it), or breaks the build
//     (the fast checks catch a share of those; the deep checks the rest).
//   - A task touches files of one subsystem, drawn by hotness (Zipf); two
//     changes conflict (with same_file_conflict's chance, for overlapping
//     hunks) when one lands a file the other touched after the other started. A conflicted worker rebases (a few turns) and submits again.
//   - The gate is one server: the queue policy decides; deep checks take
//     their duration and fail when a change in the tested group broke the
//     build (or flake). Workers wait for their verdict, as agentcore's do.
//   - Agents who choose their own work (flat_optimistic, strict_locks) take
//     the smallest task first. Merged work uncovers follow-up tasks (small).
//   - strict_locks: one lock over the task list, taken to choose a task and
//     held through lock_hold_fraction of its work (agents update the list
//     as they go); the checks and the wait for the gate are outside it. A
//     holder that stalls keeps it until lock_timeout.
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/core/json.hpp>
#include <agentcore/gate/queue_policy.hpp>

#include <chrono>
#include <iosfwd>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace agentcore::sim {

/// A positive quantity drawn from a lognormal given by its median and 90th
/// percentile (p90 <= median: always the median).
struct lognormal {
  double median = 1;
  double p90 = 1;
};

/// A model in one role: how long a turn takes, how many tokens it uses, what
/// a million tokens cost.
struct model_profile {
  lognormal turn_seconds{20, 60};
  lognormal tokens_per_turn{8000, 20000};
  double cost_per_million_tokens = 3.0;
};

struct worker_profile {
  model_profile model;
  lognormal turns_per_unit{8, 20};  ///< turns an attempt takes per unit of task size
  double success_per_unit = 0.93;   ///< an attempt succeeds with this to the power of the size
  double stall = 0.02;              ///< an attempt stalls (no answer until its lease ends)
  double out_of_contract = 0.02;    ///< an attempt writes outside its contract
  double breaks_build = 0.08;       ///< a finished attempt breaks the build
  double rebase_turns = 3;          ///< turns to rebase after a conflict
};

struct repository_profile {
  int subsystems = 20;
  int files_per_subsystem = 200;
  double subsystem_hotness = 1.1;  ///< Zipf exponent over subsystems (0: uniform)
  double file_hotness = 1.0;       ///< Zipf exponent over a subsystem's files
  double files_per_unit = 3;       ///< files a task touches per unit of size
  /// Two changes to one file conflict with this chance (their hunks overlap).
  double same_file_conflict = 0.3;
};

struct check_profile {
  lognormal fast_seconds{60, 180};
  lognormal deep_seconds{600, 900};
  double fast_catches = 0.5;  ///< share of build breaks the fast checks catch (the worker fixes them)
  double flake = 0.01;        ///< a deep check fails with nothing wrong
};

struct work_profile {
  int features = 200;             ///< the goal: features to build (0: endless, for throughput)
  lognormal feature_units{3, 12}; ///< a feature's size
  double hard_units = 8;          ///< features at least this size count as hard
  int max_task_units = 2;         ///< planner_worker: the largest task a planner makes
  double follow_up = 0.2;         ///< a merged task uncovers a small follow-up task
};

enum class design { strict_locks, flat_optimistic, planner_worker };

/// Which merge queue integrates the changes.
///   agentcore:           agentcore's gate, one server, deciding by `scenario::gate`
///                        (gate/queue_policy.hpp).
///   github_merge_queue:  a model of GitHub's merge queue, for comparison: the
///                        first `github_builds` entries each build speculatively
///                        on top of those ahead of it, at once; the head merges
///                        when its build passes; a failing head is removed and
///                        the builds behind it start again.
enum class queue_kind { agentcore, github_merge_queue };
std::string_view to_string(design d) noexcept;
std::optional<design> parse_design(std::string_view s) noexcept;

struct scenario {
  design coordination = design::planner_worker;
  int workers = 10;
  int planners = 2;  ///< planner_worker: planners and sub-planners splitting features at once
  gate::queue_policy_options gate{.mode = gate::policy::batch, .batch_size = 8};
  queue_kind queue = queue_kind::agentcore;
  int github_builds = 5;  ///< github_merge_queue: builds at once
  model_profile planner;
  double planner_turns_per_unit = 2;
  worker_profile worker;
  repository_profile repository;
  check_profile checks;
  work_profile work;
  /// strict_locks: the share of a task's work its agent holds the lock
  /// (choosing, then updating the list as it goes).
  double lock_hold_fraction = 0.5;
  std::chrono::seconds lock_timeout{900};     ///< strict_locks: a dead holder's lock frees after this
  std::chrono::seconds lease{1800};           ///< a worker's claim lease: a stalled attempt ends with it
  std::chrono::hours horizon{24 * 7};         ///< simulated time at most
  bool stop_at_goal = true;                   ///< end when every feature is merged
  std::uint64_t seed = 1;
};

struct report {
  design coordination = design::planner_worker;
  int workers = 0;
  queue_kind queue = queue_kind::agentcore;
  gate::policy policy = gate::policy::batch;
  std::size_t batch_size = 0;
  std::size_t optimistic_every = 0;

  double hours = 0;                 ///< simulated time covered
  std::uint64_t merges = 0;         ///< changes landed (reverted ones included)
  double merges_per_hour = 0;
  double cost = 0;                  ///< model cost, all roles
  double cost_per_hour = 0;
  double queue_wait_median_s = 0;   ///< submission to final verdict
  double queue_wait_p90_s = 0;
  std::optional<double> time_to_goal_h;  ///< when the last feature merged
  std::uint64_t submissions = 0;
  std::uint64_t conflicts = 0;
  double conflict_rate = 0;         ///< conflicts per submission
  std::uint64_t reverts = 0;
  double revert_rate = 0;           ///< reverts per merge
  std::uint64_t rejected = 0;       ///< deep checks failed (flakes included)
  std::uint64_t batches = 0;        ///< serial and batch: steps the queue took (a batch of one under serial)
  std::uint64_t batches_failed = 0; ///< of them, those whose first test failed (then bisected)
  double batch_failure_rate = 0;
  std::uint64_t contract_violations = 0;
  std::uint64_t stalls = 0;
  double churn = 0;                 ///< share of worker time spent on attempts that did not land
  double worker_utilisation = 0;    ///< share of worker time working (not idle, not waiting)
  double worker_waiting = 0;        ///< share of worker time waiting for a verdict or the lock
  double gate_utilisation = 0;      ///< share of time the gate ran deep checks
  int features_done = 0, features = 0;
  int hard_done = 0, hard = 0;      ///< of the features that count as hard
  std::uint64_t tasks_merged = 0;
  double wall_seconds = 0;          ///< how long the simulation took
};

/// Runs one scenario. Errors name the field that is out of range.
result<report> run(const scenario& s);

/// The scenario's fields checked: what is out of range and what to use.
error_info validate(const scenario& s);

/// A scenario fitted to a real run's event log (docs/events.md): model
/// latency and tokens per role (agent.turn), turns per task and the shares of
/// attempts that finish or stall (agent.outcome), tasks per plan (roles.plan),
/// the shares of changes out of contract or breaking the build and how many
/// of those the fast checks catch (gate.verdict), check durations (the fast
/// checks' in gate.verdict, the deep checks' from gate.step), workers and
/// planners. A run's task counts as one unit of work. What the log has too
/// little of keeps the base scenario's value; `notes` says, for each, what
/// was fitted from how many samples, or why not.
struct calibration {
  scenario fitted;
  std::vector<std::string> notes;
  std::size_t events = 0;   ///< events read
  std::size_t skipped = 0;  ///< lines that were not JSON (a torn last line)
};
result<calibration> calibrate(std::istream& event_log, const scenario& base);

/// A sweep: the base scenario at each worker count, under each design (with
/// the base policy) and under each policy (with the base design).
struct sweep_options {
  std::vector<int> workers{1, 2, 5, 10, 20, 50, 100};
  std::vector<design> designs{design::strict_locks, design::flat_optimistic, design::planner_worker};
  std::vector<gate::queue_policy_options> policies{
      {.mode = gate::policy::serial},
      {.mode = gate::policy::batch, .batch_size = 4},
      {.mode = gate::policy::batch, .batch_size = 8},
      {.mode = gate::policy::batch, .batch_size = 16},
      {.mode = gate::policy::optimistic, .optimistic_every = 10}};
};

struct sweep_result {
  scenario base;
  std::vector<report> by_design;  ///< each design x workers, the base policy
  std::vector<report> by_policy;  ///< each policy x workers, the base design
};

/// Runs the sweep (planners scale with workers: the base ratio, at least one).
result<sweep_result> sweep(const scenario& base, const sweep_options& options = {});
/// The answer in words: where the gate saturates with the base policy, the
/// policy to use beyond that, and the merges and cost an hour to expect.
std::string answer(const sweep_result& r);
/// SVG line charts: merges an hour against workers, one line per design;
/// the median queue wait against workers, one line per policy.
std::string throughput_svg(const sweep_result& r);
std::string queue_wait_svg(const sweep_result& r);
/// "batch 8", "optimistic every 10", "serial".
std::string describe(const gate::queue_policy_options& p);

void tag_invoke(json::value_from_tag, json::value& v, const report& r);
void tag_invoke(json::value_from_tag, json::value& v, const scenario& s);
void tag_invoke(json::value_from_tag, json::value& v, const sweep_result& r);
/// Reads a scenario (the JSON tag_invoke writes): a missing field keeps its
/// default; a field of the wrong kind, out of range or unknown is an error
/// naming it by its path ("worker.stall"). Durations: "lease_s",
/// "lock_timeout_s", "horizon_h"; distributions: {"median": M, "p90": P} or
/// a number; "gate": {"mode": "batch", "batch_size": 8, "batch_wait_s": 0,
/// "optimistic_every": 10}.
result<scenario> scenario_from_json(const json::value& v);
result<gate::queue_policy_options> policy_from_json(const json::value& v);
json::object policy_to_json(const gate::queue_policy_options& p);

}  // namespace agentcore::sim
