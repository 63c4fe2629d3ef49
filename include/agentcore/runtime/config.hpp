// agentcore/runtime/config.hpp: a swarm's configuration, as code (an
// aggregate) or as JSON (what `agentcore init` writes and `agentcore run`
// reads). A field with a wrong type or value is an error naming the field and
// what it should be; an unknown field is an error too (a typo is not silently
// ignored).
//
//   auto cfg = runtime::config_from_json(json::parse(text), "/srv/project").value();
//   cfg.workers = 8;
//
// JSON schema 1 (every field but "schema" and "repository" optional):
//   {"schema":1, "repository":".", "branch":"refs/heads/main", "goal":"...", "goal_checks":["make test"],
//    "store":"memory:" | "file:.agentcore/store" | "etcd://HOST:PORT/PREFIX",
//    "worktrees":{"root":".agentcore/slots", "slots":8},
//    "planners":1, "workers":4, "threads":2,
//    "models":{"planner":"replay:t.jsonl", "worker":"openai:gpt-4o", "judge":""},
//    "model_options":{ registry options (see model/registry.hpp) },
//    "gate":{"policy":"batch", "batch_size":8, "batch_wait_ms":0, "deep_checks":["make test"]},
//    "contract":{ a task contract (contract.hpp): the default for every task },
//    "ceiling":{ the most a planner's contract may get (contract/ceiling.hpp): allowed, forbidden and
//               protected paths, limits, permissions },
//    "subsystems":[{"name":"parser", "paths":["src/parser/**"], "description":"...", "model":""}],
//    "planning":{"max_open_tasks":32, "max_new_tasks":8, "when":"finished" | "drained", "keep_finished":1000},
//    "judge":{"merges_per_cycle":10, "cycle_seconds":0, "max_cycles":0, "review":false, "restart_stalls":3,
//             "converge_cycles":4},
//    "budgets":{"run":{"tokens":N, "cost":X}, "roles":{"planner":{...}, "worker":{...}, "judge":{...}},
//               "task":{...}},
//    "lease_seconds":30, "sandbox":"required" | "unconfined-host-access"}
// Relative paths are relative to the directory the configuration came from.
#pragma once

#include <agentcore/contract/ceiling.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/core/error.hpp>
#include <agentcore/core/json.hpp>
#include <agentcore/gate/checks.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/model/middleware.hpp>
#include <agentcore/roles/planner.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace agentcore::runtime {

inline constexpr int config_schema = 1;

struct role_models {
  std::string planner = "replay:transcript.jsonl";
  std::string worker = "replay:transcript.jsonl";
  std::string judge;  ///< empty: the judge decides by its rules alone
};

/// Token and money budgets (money in the unit of model_options' "prices").
/// Every model call is charged to its task's budget, its role's and the
/// run's; one with nothing left refuses the call. What runs out stops what it
/// covers: the run's or the worker role's ends the run with the budget named
/// in the report; the planners' stops planning; a task's abandons that task
/// (for a planner to split) with why. Budgets count what this process spent
/// since it started.
struct run_budgets {
  model::budget_limits run;
  std::map<std::string, model::budget_limits> roles;  ///< "planner", "worker", "judge"
  model::budget_limits task;                          ///< each task's, over all its attempts in this process
  bool any() const;
};

struct swarm_config {
  std::filesystem::path repository;  ///< required: a git repository with `branch`
  std::string branch = "refs/heads/main";
  std::string goal;
  std::vector<std::string> goal_checks;  ///< run on the branch at each cycle's end; all pass: stop
  std::string store = "memory:";         ///< "memory:", "file:DIR" or "etcd://HOST:PORT[,HOST:PORT...]/PREFIX"
  std::filesystem::path worktrees;       ///< slot directory; empty: <repository>/.agentcore/slots
  std::size_t slots = 8;
  std::size_t planners = 1;
  std::size_t workers = 4;
  std::size_t threads = 2;  ///< the blocking pool (libgit2, store, processes)
  role_models models;
  json::object model_options;
  run_budgets budgets;
  gate::policy gate_policy = gate::policy::batch;
  std::size_t batch_size = 8;
  std::chrono::milliseconds batch_wait{0};  ///< see gate_options::batch_wait
  std::vector<std::string> deep_checks;
  contract::task_contract contract;  ///< every task's defaults
  contract::ceiling ceiling;         ///< the bounds of every contract a planner makes
  std::vector<roles::subsystem> subsystems;
  std::size_t max_open_tasks = 32;  ///< planners propose nothing while this many tasks are open
  std::size_t max_new_tasks = 8;    ///< per planning round
  /// When planners plan: `finished` (after tasks finish, at most once a
  /// second, and when a worker is idle) or `drained` (in waves: only when no
  /// task is open; each wave is a judge's cycle; deterministic, for replays).
  enum class plan_schedule { finished, drained } plan_when = plan_schedule::finished;
  /// Finished tasks (merged, superseded) kept on the board; older ones move to
  /// the store's archive (runtime::open_archive), so the board, a file store's
  /// memory and each planning round stay the size of the recent work; the
  /// gate keeps as many decided changes' records (merge_gate::prune).
  std::size_t keep_finished = 1000;
  std::size_t merges_per_cycle = 10;
  std::chrono::seconds cycle_time{0};
  std::size_t max_cycles = 0;  ///< 0: until the goal is met or nothing is left
  bool review = false;         ///< the judge asks its model to review each cycle
  std::size_t restart_stalls = 3;  ///< the judge restarts after this many stalls in a cycle (0: never)
  /// Cycles of merges with no more goal checks passing and heavy churn before
  /// the judge restarts (and, again after that restart, stops): see
  /// roles::judge_options::converge_cycles. 0: not watched.
  std::size_t converge_cycles = 4;
  std::chrono::seconds lease{30};
  process::sandbox_mode sandbox = process::sandbox_mode::required;

  /// What this process runs. All four by default. A swarm across processes
  /// (or machines) shares one store (etcd) and one `remote`, and gives each
  /// process its part: typically one coordinator (planner, judge, gate),
  /// processes of workers, and more gates on standby (one leads the queue,
  /// elected with a lease; another takes over when it dies).
  struct role_set {
    bool planner = true, worker = true, gate = true, judge = true;
    bool all() const { return planner && worker && gate && judge; }
    friend bool operator==(const role_set&, const role_set&) = default;
  };
  role_set roles;
  /// The shared repository (a path, or a URL git understands) code travels
  /// through between processes: workers push their changes there, the gate
  /// fetches them and moves the branch there. Empty: one repository, one process.
  std::string remote;
  /// This process's name on the board: its workers are "<name>-w1"..., its
  /// gate is "<name>". Empty: "w1"... and the process id (one process).
  std::string name;
  /// The live dashboard during a run: "HOST:PORT" ("127.0.0.1:8080"; PORT 0
  /// picks a free one), or "" for none. See observe/dashboard.hpp.
  std::string serve;
  /// The dashboard's bearer token: needed to serve any address but loopback,
  /// and for changes through it (requeue, abandon, revert) on any address.
  std::string serve_token;
};

/// "planner,worker", ["gate"], ...: the roles a process runs; the error names the word that is none.
result<swarm_config::role_set> parse_roles(std::string_view list);

/// Reads a configuration; relative paths are resolved against `base_dir`.
result<swarm_config> config_from_json(const json::value& v, const std::filesystem::path& base_dir);
json::value to_json_value(const swarm_config& c);
/// A configuration file with a comment on every field, for `agentcore init`
/// (JSON with // comments, which config_from_text accepts).
std::string commented_config(const swarm_config& c);
/// Parses configuration text (JSON, // comments allowed).
result<swarm_config> config_from_text(std::string_view text, const std::filesystem::path& base_dir);

}  // namespace agentcore::runtime
