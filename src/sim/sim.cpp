// The capacity simulator (sim.hpp): a discrete-event simulation in which the
// task board, the contract check and the merge queue's policy are the real
// ones, and models, checks and the repository are drawn from distributions.
#include <agentcore/sim/sim.hpp>

#include <agentcore/board/task_board.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/core/clock.hpp>
#include <agentcore/store/memory_store.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <queue>
#include <random>
#include <set>
#include <unordered_map>

namespace agentcore::sim {

std::string_view to_string(design d) noexcept {
  switch (d) {
    case design::strict_locks: return "strict_locks";
    case design::flat_optimistic: return "flat_optimistic";
    case design::planner_worker: return "planner_worker";
  }
  return "?";
}

std::optional<design> parse_design(std::string_view s) noexcept {
  for (design d : {design::strict_locks, design::flat_optimistic, design::planner_worker})
    if (to_string(d) == s) return d;
  return std::nullopt;
}

namespace {

using rng_t = std::mt19937_64;
using ns = std::chrono::nanoseconds;

double draw(const lognormal& d, rng_t& rng) {
  if (d.p90 <= d.median) return d.median;
  double mu = std::log(d.median);
  double sigma = (std::log(d.p90) - mu) / 1.2815515655446004;  // the normal's 90th percentile
  return std::exp(mu + sigma * std::normal_distribution<double>(0, 1)(rng));
}

bool chance(double p, rng_t& rng) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < p; }

/// Draws 0..n-1 with weights 1/(i+1)^s.
class zipf {
public:
  zipf(int n, double s) {
    double sum = 0;
    for (int i = 0; i < n; ++i) cdf_.push_back(sum += 1.0 / std::pow(i + 1.0, s));
    for (auto& c : cdf_) c /= sum;
  }
  int operator()(rng_t& rng) const {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    auto it = std::lower_bound(cdf_.begin(), cdf_.end(), u);
    return static_cast<int>(std::min<std::ptrdiff_t>(it - cdf_.begin(), static_cast<std::ptrdiff_t>(cdf_.size()) - 1));
  }

private:
  std::vector<double> cdf_;
};

struct task_info {
  int feature = -1;  // -1: a follow-up
  double units = 1;
  int subsystem = 0;
  std::vector<int> files;  // global file numbers
  double last_attempt_work = 0;  // worker-seconds of the attempt that landed it (for churn on a revert)
};

struct change_rec {
  std::string task;
  int worker = -1;
  std::uint64_t base = 0;  // landings the work started from
  bool bad = false;
  double submitted_at = 0;
  std::uint64_t arrival = 0;
  int priority = 0;
};

struct worker_state {
  enum class phase { idle, working, waiting } at = phase::idle;
  double since = 0;
  store::lease_id lease = 0;
  std::string task;
  std::uint64_t base = 0;   // the landings its current work started from
  double attempt_work = 0;  // worker-seconds on the current task's attempt so far
};

struct feature_state {
  double units = 0;
  int subsystem = 0;
  int open = 0;  // tasks not merged
  bool hard = false;
  bool done = false;
};

class simulation {
public:
  explicit simulation(const scenario& s)
      : s_(s),
        rng_(s.seed),
        goal_rng_(s.seed ^ 0x9e3779b97f4a7c15ULL),
        clock_(std::make_shared<virtual_clock>()),
        store_(store::memory_store::create({.clock = clock_})),
        board_(*store_, {.claim_window = 1, .shards = 1, .clock = clock_, .seed = s.seed}),
        policy_(s.gate),
        subsystems_(s.repository.subsystems, s.repository.subsystem_hotness),
        files_(s.repository.files_per_subsystem, s.repository.file_hotness) {}

  result<report> run();

private:
  // --- the event loop ---
  struct event {
    std::int64_t at;
    std::uint64_t seq;
    std::function<void()> fn;
    bool operator>(const event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  static std::int64_t to_ns(double seconds) { return static_cast<std::int64_t>(std::llround(seconds * 1e9)); }
  double now() const { return static_cast<double>(now_ns_) / 1e9; }
  void after(double seconds, std::function<void()> fn) {
    events_.push({now_ns_ + to_ns(std::max(0.0, seconds)), seq_++, std::move(fn)});
  }
  template <class T>
  bool ok(const result<T>& r) {
    if (!r && !failed_) failed_ = r.error();
    return static_cast<bool>(r);
  }

  // --- work ---
  bool more_features() const { return s_.work.features == 0 || features_made_ < s_.work.features; }
  int new_feature();
  void propose(const std::string& id, task_info info, int priority);
  int priority_for(double units, bool follow_up) const;
  std::vector<int> pick_files(int subsystem, double units);
  void wake_idle(std::size_t n);
  void planner_next(int p);

  // --- workers ---
  void set_phase(int w, worker_state::phase p);
  void worker_next(int w);
  void claim(int w);
  void attempt(int w, const std::string& id);
  void keep_alive_during(int w, double seconds);
  bool live_lease(int w);
  void finish_attempt(int w, bool bad, bool out_of_contract);
  static worker_id worker_name(int w) { return worker_id(fmt::format("w{}", w)); }
  void submit(int w, bool bad, bool out_of_contract);
  void end_attempt(int w, bool landed);
  double spend(const model_profile& m, double turns);
  void acquire_lock(int w, std::function<void()> then);
  void release_lock(int w);

  // --- the gate ---
  void enqueue(change_rec c);
  void gate_kick();
  void gh_fill();
  void gh_done(std::uint64_t gen);
  void gate_next_group();
  void land(const change_rec& c);
  void verdict_conflict(const change_rec& c);
  void verdict_rejected(const change_rec& c);
  void optimistic(change_rec c);
  void check_branch(int round);
  bool conflicts(const change_rec& c, const std::set<int>& pending);
  void record_wait(const change_rec& c) { waits_.push_back(now() - c.submitted_at); }

  const scenario& s_;
  rng_t rng_;
  rng_t goal_rng_;  // the goal's own stream: every design gets the same features
  std::shared_ptr<virtual_clock> clock_;
  std::unique_ptr<store::memory_store> store_;
  board::task_board board_;
  gate::queue_policy policy_;
  zipf subsystems_, files_;
  std::vector<contract::compiled_contract> contracts_;  // one per subsystem

  std::int64_t now_ns_ = 0;
  std::uint64_t seq_ = 0;
  std::priority_queue<event, std::vector<event>, std::greater<event>> events_;
  error_info failed_;
  bool stop_ = false;

  std::unordered_map<std::string, task_info> tasks_;
  std::uint64_t open_tasks_ = 0;  // proposed and not merged (planner_worker plans while it is low)
  std::uint64_t task_seq_ = 0;
  std::vector<feature_state> features_;
  int features_made_ = 0, features_done_ = 0;
  std::deque<int> feature_queue_;  // planner_worker: features waiting for a planner
  std::vector<bool> planner_busy_;

  std::vector<worker_state> workers_;
  std::deque<int> idle_;
  std::vector<double> work_s_, wait_s_;

  int lock_holder_ = -1;
  std::deque<std::pair<int, std::function<void()>>> lock_waiters_;

  // gate
  std::vector<change_rec> queue_;
  std::uint64_t arrivals_ = 0;
  bool gate_busy_ = false;
  double gate_busy_s_ = 0;
  std::optional<gate::batch_landing> landing_;
  bool first_test_ = false;  // the landing's next test is of the whole batch
  std::map<std::string, change_rec> in_landing_;
  std::vector<change_rec> since_green_;
  std::uint64_t landed_ = 0;
  std::unordered_map<int, std::uint64_t> file_landed_;  // file -> the landing that last changed it

  // github_merge_queue
  struct gh_entry {
    change_rec c;
    std::uint64_t gen = 0;  // its build (0: none running)
    bool passed = false, done = false;
  };
  std::deque<gh_entry> gh_;
  std::uint64_t gh_gen_ = 0;

  // figures
  report r_;
  std::vector<double> waits_;
  double churn_s_ = 0;
  double goal_at_ = -1;
};

// ---- work --------------------------------------------------------------------

int simulation::priority_for(double units, bool follow_up) const {
  if (s_.coordination == design::planner_worker) return follow_up ? -1 : 0;
  // Agents who choose their own work take the smallest first.
  return std::clamp(1000 - static_cast<int>(std::lround(units * 10)), -1000, 1000);
}

std::vector<int> simulation::pick_files(int subsystem, double units) {
  int n = std::max(1, static_cast<int>(std::lround(units * s_.repository.files_per_unit)));
  n = std::min(n, s_.repository.files_per_subsystem);
  std::set<int> picked;
  for (int tries = 0; static_cast<int>(picked.size()) < n && tries < n * 20; ++tries) picked.insert(files_(rng_));
  std::vector<int> out;
  for (int f : picked) out.push_back(subsystem * s_.repository.files_per_subsystem + f);
  return out;
}

int simulation::new_feature() {
  feature_state f;
  f.units = std::max(1.0, std::round(draw(s_.work.feature_units, goal_rng_)));
  f.subsystem = subsystems_(goal_rng_);
  f.hard = f.units >= s_.work.hard_units;
  features_.push_back(f);
  ++features_made_;
  return static_cast<int>(features_.size()) - 1;
}

void simulation::propose(const std::string& id, task_info info, int priority) {
  board::task t;
  t.id = task_id(id);
  t.title = id;
  t.subsystem = fmt::format("s{}", info.subsystem);
  t.priority = priority;
  tasks_.emplace(id, std::move(info));
  if (!ok(board_.propose(std::move(t)))) return;
  ++open_tasks_;
  wake_idle(1);
}

void simulation::wake_idle(std::size_t n) {
  for (; n > 0 && !idle_.empty(); --n) {
    int w = idle_.front();
    idle_.pop_front();
    after(0, [this, w] { worker_next(w); });
  }
}

void simulation::planner_next(int p) {
  // Plan when the board runs low: a backlog of about two tasks per worker.
  if (feature_queue_.empty() && more_features() && s_.work.features == 0) {
    if (open_tasks_ < static_cast<std::uint64_t>(2 * s_.workers)) feature_queue_.push_back(new_feature());
  }
  if (feature_queue_.empty()) {
    planner_busy_[p] = false;
    return;
  }
  planner_busy_[p] = true;
  int f = feature_queue_.front();
  feature_queue_.pop_front();
  double turns = std::max(1.0, s_.planner_turns_per_unit * features_[f].units);
  double took = spend(s_.planner, turns);
  after(took, [this, p, f] {
    auto& ft = features_[f];
    int pieces = std::max(1, static_cast<int>(std::ceil(ft.units / std::max(1, s_.work.max_task_units))));
    ft.open = pieces;
    for (int i = 0; i < pieces; ++i) {
      task_info info;
      info.feature = f;
      info.units = ft.units / pieces;
      // Most of a feature's tasks are in its subsystem; some reach elsewhere.
      info.subsystem = chance(0.7, rng_) ? ft.subsystem : subsystems_(rng_);
      info.files = pick_files(info.subsystem, info.units);
      propose(fmt::format("f{:06}-{:03}", f, i), std::move(info), priority_for(0, false));
    }
    planner_next(p);
  });
}

double simulation::spend(const model_profile& m, double turns) {
  double tokens = turns * draw(m.tokens_per_turn, rng_);
  r_.cost += tokens / 1e6 * m.cost_per_million_tokens;
  return turns * draw(m.turn_seconds, rng_);
}

// ---- workers -----------------------------------------------------------------

void simulation::set_phase(int w, worker_state::phase p) {
  auto& ws = workers_[w];
  double spent = now() - ws.since;
  if (ws.at == worker_state::phase::working) work_s_[w] += spent;
  else if (ws.at == worker_state::phase::waiting) wait_s_[w] += spent;
  ws.at = p;
  ws.since = now();
}

void simulation::worker_next(int w) {
  if (stop_) return;
  if (s_.coordination == design::strict_locks) {
    set_phase(w, worker_state::phase::waiting);
    acquire_lock(w, [this, w] { claim(w); });
    return;
  }
  claim(w);
}

bool simulation::live_lease(int w) {
  // A worker that sat idle (or waited for a verdict) longer than its lease
  // has lost it; the runtime grants a new one (its claims were none then).
  auto& ws = workers_[w];
  if (store_->keep_alive(ws.lease)) return true;
  auto lease = store_->grant(s_.lease);
  if (!ok(lease)) return false;
  ws.lease = *lease;
  return true;
}

void simulation::claim(int w) {
  if (!live_lease(w)) return;
  auto& ws = workers_[w];
  auto t = board_.claim(worker_name(w), ws.lease);
  if (!ok(t)) return;
  if (!*t && s_.coordination != design::planner_worker && more_features()) {
    // No planner: the agent makes itself a task from the goal.
    int f = new_feature();
    features_[f].open = 1;
    task_info info{f, features_[f].units, features_[f].subsystem, pick_files(features_[f].subsystem, features_[f].units)};
    std::string id = fmt::format("f{:06}", f);
    tasks_.emplace(id, info);
    board::task nt;
    nt.id = task_id(id);
    nt.title = id;
    nt.priority = priority_for(info.units, false);
    if (!ok(board_.propose(std::move(nt)))) return;
    t = board_.claim(worker_name(w), ws.lease);
    if (!ok(t)) return;
  }
  if (!*t) {
    if (lock_holder_ == w) release_lock(w);
    set_phase(w, worker_state::phase::idle);
    idle_.push_back(w);
    return;
  }
  attempt(w, (*t)->id.str());
}

void simulation::keep_alive_during(int w, double seconds) {
  // A live worker renews its lease as it goes, as the runtime does: now,
  // and every half lease through this phase.
  double step = static_cast<double>(s_.lease.count()) / 2;
  store::lease_id lease = workers_[w].lease;
  (void)store_->keep_alive(lease);
  for (double t = step; t < seconds; t += step)
    after(t, [this, lease] { (void)store_->keep_alive(lease); });
}

void simulation::attempt(int w, const std::string& id) {
  auto& ws = workers_[w];
  ws.task = id;
  ws.base = landed_;  // it starts from the branch as it is now
  ws.attempt_work = 0;
  set_phase(w, worker_state::phase::working);
  const auto& info = tasks_.at(id);
  double turns = info.units * draw(s_.worker.turns_per_unit, rng_);
  double took = 0;
  if (s_.coordination != design::planner_worker)  // it plans for itself first
    took += spend(s_.planner, std::max(1.0, s_.planner_turns_per_unit * info.units));
  took += spend(s_.worker.model, turns);

  if (chance(s_.worker.stall, rng_)) {
    // Silent from some point on: the lease runs out, the board gives the task back.
    ++r_.stalls;
    double silent_from = std::uniform_real_distribution<double>(0, took)(rng_);
    keep_alive_during(w, silent_from);
    double lease = static_cast<double>(s_.lease.count());
    double last_renewal = std::floor(silent_from / (lease / 2)) * (lease / 2);
    double expires = last_renewal + lease + 1;
    bool holds_lock = lock_holder_ == w;
    if (holds_lock) {
      // A holder that dies keeps the lock until its time-out.
      after(static_cast<double>(s_.lock_timeout.count()), [this, w] {
        if (lock_holder_ == w) release_lock(w);
      });
    }
    after(expires, [this, w] {
      auto& ws = workers_[w];
      churn_s_ += now() - ws.since;
      if (!ok(board_.reconcile())) return;
      wake_idle(1);
      // The runtime replaces the agent: a new session, a new lease.
      auto lease = store_->grant(s_.lease);
      if (!ok(lease)) return;
      ws.lease = *lease;
      ws.task.clear();
      worker_next(w);
    });
    return;
  }
  keep_alive_during(w, took);
  if (lock_holder_ == w) {
    after(took * s_.lock_hold_fraction, [this, w] {
      if (lock_holder_ == w) release_lock(w);
    });
  }
  bool success = chance(std::pow(s_.worker.success_per_unit, info.units), rng_);
  bool out = success && chance(s_.worker.out_of_contract, rng_);
  bool bad = success && chance(s_.worker.breaks_build, rng_);
  after(took, [this, w, success, out, bad, took] {
    workers_[w].attempt_work += took;
    if (!success) {
      auto& ws = workers_[w];
      if (!ok(board_.abandon(task_id(ws.task), worker_name(w), json::object{{"sim", "gave up"}}))) return;
      if (!ok(board_.requeue(task_id(ws.task)))) return;
      wake_idle(1);
      end_attempt(w, false);
      return;
    }
    finish_attempt(w, bad, out);
  });
}

void simulation::finish_attempt(int w, bool bad, bool out_of_contract) {
  // The fast checks: a share of build breaks shows here, and the worker fixes it.
  double took = draw(s_.checks.fast_seconds, rng_);
  if (bad && chance(s_.checks.fast_catches, rng_)) {
    took += spend(s_.worker.model, s_.worker.rebase_turns);
    bad = false;
  }
  keep_alive_during(w, took);
  after(took, [this, w, bad, out_of_contract, took] {
    workers_[w].attempt_work += took;
    submit(w, bad, out_of_contract);
  });
}

void simulation::submit(int w, bool bad, bool out_of_contract) {
  auto& ws = workers_[w];
  const auto& info = tasks_.at(ws.task);
  if (!ok(board_.submit(task_id(ws.task), worker_name(w)))) return;
  ++r_.submissions;
  // The real contract check, on the paths the change touched.
  contract::diff d;
  for (int f : info.files)
    d.files.push_back({.path = fmt::format("s{}/f{}.cpp", f / s_.repository.files_per_subsystem,
                                           f % s_.repository.files_per_subsystem),
                       .status = change_status::modified,
                       .old_mode = mode_file,
                       .new_mode = mode_file,
                       .additions = 10,
                       .deletions = 2,
                       .added_bytes = 400});
  if (out_of_contract)
    d.files.push_back({.path = fmt::format("s{}/outside.cpp", (info.subsystem + 1) % s_.repository.subsystems),
                       .status = change_status::added,
                       .new_mode = mode_file,
                       .additions = 5,
                       .added_bytes = 100});
  if (!contracts_[info.subsystem].check(d).ok()) {
    ++r_.contract_violations;
    if (!ok(board_.finish(task_id(ws.task), board::task_state::rejected, json::object{{"sim", "contract"}}))) return;
    if (!ok(board_.requeue(task_id(ws.task)))) return;
    wake_idle(1);
    end_attempt(w, false);
    return;
  }
  set_phase(w, worker_state::phase::waiting);
  change_rec c;
  c.task = ws.task;
  c.worker = w;
  c.base = ws.base;
  c.bad = bad;
  c.submitted_at = now();
  c.priority = priority_for(info.units, info.feature < 0);
  c.arrival = ++arrivals_;
  enqueue(std::move(c));
}

void simulation::end_attempt(int w, bool landed) {
  auto& ws = workers_[w];
  if (!landed) churn_s_ += ws.attempt_work;
  else tasks_.at(ws.task).last_attempt_work = ws.attempt_work;
  ws.task.clear();
  ws.attempt_work = 0;
  set_phase(w, worker_state::phase::idle);
  worker_next(w);
}

void simulation::acquire_lock(int w, std::function<void()> then) {
  if (lock_holder_ < 0) {
    lock_holder_ = w;
    then();
    return;
  }
  lock_waiters_.emplace_back(w, std::move(then));
}

void simulation::release_lock(int w) {
  if (lock_holder_ != w) return;
  lock_holder_ = -1;
  if (lock_waiters_.empty()) return;
  auto [next, then] = std::move(lock_waiters_.front());
  lock_waiters_.pop_front();
  lock_holder_ = next;
  after(0, std::move(then));
}

// ---- the gate ----------------------------------------------------------------

void simulation::enqueue(change_rec c) {
  if (s_.queue == queue_kind::github_merge_queue) {
    gh_.push_back({std::move(c)});
    gh_fill();
    return;
  }
  queue_.push_back(std::move(c));
  gate_kick();
}

// ---- GitHub's merge queue (a model, for comparison) --------------------------

void simulation::gh_fill() {
  // The first github_builds entries build, each on top of those ahead of it.
  std::set<int> ahead;
  for (std::size_t i = 0; i < gh_.size() && i < static_cast<std::size_t>(s_.github_builds);) {
    auto& e = gh_[i];
    if (e.gen == 0) {
      if (conflicts(e.c, ahead)) {  // does not merge on top of the entries ahead: removed
        change_rec c = e.c;
        gh_.erase(gh_.begin() + static_cast<std::ptrdiff_t>(i));
        verdict_conflict(c);
        continue;
      }
      bool passed = !chance(s_.checks.flake, rng_);
      for (std::size_t j = 0; j <= i; ++j) passed = passed && !gh_[j].c.bad;
      double took = draw(s_.checks.deep_seconds, rng_);
      gate_busy_s_ += took / s_.github_builds;
      e.gen = ++gh_gen_;
      e.passed = passed;
      e.done = false;
      std::uint64_t gen = e.gen;
      after(took, [this, gen] { gh_done(gen); });
    }
    for (int f : tasks_.at(e.c.task).files) ahead.insert(f);
    ++i;
  }
}

void simulation::gh_done(std::uint64_t gen) {
  auto it = std::find_if(gh_.begin(), gh_.end(), [&](const gh_entry& e) { return e.gen == gen; });
  if (it == gh_.end()) return;  // a build that was started again
  it->done = true;
  // The head merges when its build passes; builds behind it that finished wait their turn.
  while (!gh_.empty() && gh_.front().done) {
    gh_entry head = std::move(gh_.front());
    gh_.pop_front();
    if (head.passed) {
      land(head.c);
      continue;
    }
    verdict_rejected(head.c);
    for (auto& e : gh_) e.gen = 0;  // they built on top of the failed head: again
    break;
  }
  gh_fill();
}

bool simulation::conflicts(const change_rec& c, const std::set<int>& pending) {
  // Two changes to one file conflict when their hunks overlap: the same
  // file changed since the change's base conflicts with that chance.
  for (int f : tasks_.at(c.task).files) {
    auto it = file_landed_.find(f);
    bool touched = pending.count(f) || (it != file_landed_.end() && it->second > c.base);
    if (touched && chance(s_.repository.same_file_conflict, rng_)) return true;
  }
  return false;
}

void simulation::gate_kick() {
  if (gate_busy_ || queue_.empty() || stop_) return;
  std::sort(queue_.begin(), queue_.end(), [](const change_rec& a, const change_rec& b) {
    return gate::queue_policy::before({a.task, a.priority, a.arrival}, {b.task, b.priority, b.arrival});
  });
  std::size_t n = std::min(queue_.size(), policy_.most());
  double oldest = now();
  for (std::size_t i = 0; i < n; ++i) oldest = std::min(oldest, queue_[i].submitted_at);
  auto waited = std::chrono::milliseconds(static_cast<std::int64_t>((now() - oldest) * 1000));
  std::size_t take = policy_.take(queue_.size(), waited);
  if (take == 0) {
    // A batch waiting for company: look again when the oldest has waited long enough.
    double wake = oldest + static_cast<double>(s_.gate.batch_wait.count()) / 1000 - now();
    gate_busy_ = true;
    after(std::max(wake, 0.001), [this] {
      gate_busy_ = false;
      gate_kick();
    });
    return;
  }
  std::vector<change_rec> taken(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
  queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(take));
  gate_busy_ = true;
  if (s_.gate.mode == gate::policy::optimistic) {
    optimistic(std::move(taken.front()));
    return;
  }
  std::vector<std::string> ids;
  in_landing_.clear();
  for (auto& c : taken) {
    ids.push_back(c.task);
    in_landing_.emplace(c.task, std::move(c));
  }
  landing_.emplace(std::move(ids));
  first_test_ = true;
  gate_next_group();
}

void simulation::gate_next_group() {
  for (;;) {
    auto group = landing_->next();
    if (!group) {
      landing_.reset();
      gate_busy_ = false;
      gate_kick();
      return;
    }
    // Merge the group in order on the branch: what conflicts drops out.
    std::set<int> pending;
    bool dropped = false;
    for (const auto& id : *group) {
      const auto& c = in_landing_.at(id);
      if (conflicts(c, pending)) {
        landing_->drop(id);
        verdict_conflict(c);
        dropped = true;
        break;
      }
      for (int f : tasks_.at(id).files) pending.insert(f);
    }
    if (dropped) continue;
    double took = draw(s_.checks.deep_seconds, rng_);
    gate_busy_s_ += took;
    bool passed = !chance(s_.checks.flake, rng_);
    for (const auto& id : *group) passed = passed && !in_landing_.at(id).bad;
    bool whole = std::exchange(first_test_, false);
    after(took, [this, passed, whole] {
      if (whole) {
        ++r_.batches;
        r_.batches_failed += !passed;
      }
      auto o = landing_->tested(passed);
      for (const auto& id : o.land) land(in_landing_.at(id));
      if (o.reject) verdict_rejected(in_landing_.at(*o.reject));
      gate_next_group();
    });
    return;
  }
}

void simulation::land(const change_rec& c) {
  ++landed_;
  ++r_.merges;
  for (int f : tasks_.at(c.task).files) file_landed_[f] = landed_;
  record_wait(c);
  if (!ok(board_.finish(task_id(c.task), board::task_state::merged))) return;
  ++r_.tasks_merged;
  --open_tasks_;
  auto& info = tasks_.at(c.task);
  if (info.feature >= 0) {
    auto& f = features_[info.feature];
    if (--f.open == 0 && !f.done) {
      f.done = true;
      ++features_done_;
      if (s_.work.features > 0 && features_done_ == s_.work.features) {
        goal_at_ = now();
        if (s_.stop_at_goal) stop_ = true;
      }
    }
  }
  if (chance(s_.work.follow_up, rng_)) {
    task_info fu;
    fu.units = 1;
    fu.subsystem = info.subsystem;
    fu.files = pick_files(fu.subsystem, 1);
    propose(fmt::format("u{:08}", ++task_seq_), std::move(fu), priority_for(1, true));
  }
  if (s_.coordination == design::planner_worker)
    for (int p = 0; p < s_.planners; ++p)
      if (!planner_busy_[p]) planner_next(p);
  end_attempt(c.worker, true);
}

void simulation::verdict_conflict(const change_rec& c) {
  ++r_.conflicts;
  int w = c.worker;
  auto& ws = workers_[w];
  worker_id wid = worker_name(w);
  if (!live_lease(w)) return;
  if (!ok(board_.finish(task_id(c.task), board::task_state::rejected, json::object{{"sim", "conflict"}}))) return;
  if (!ok(board_.reclaim(task_id(c.task), wid, ws.lease))) return;
  // Back to its worker: rebase on the branch as it is, check again, resubmit.
  set_phase(w, worker_state::phase::working);
  ws.base = landed_;
  double took = spend(s_.worker.model, s_.worker.rebase_turns) + draw(s_.checks.fast_seconds, rng_);
  keep_alive_during(w, took);
  bool bad = c.bad;
  after(took, [this, w, bad, took] {
    workers_[w].attempt_work += took;
    submit(w, bad, false);
  });
}

void simulation::verdict_rejected(const change_rec& c) {
  ++r_.rejected;
  record_wait(c);
  if (!ok(board_.finish(task_id(c.task), board::task_state::rejected, json::object{{"sim", "deep checks"}}))) return;
  if (!ok(board_.requeue(task_id(c.task)))) return;
  wake_idle(1);
  end_attempt(c.worker, false);
}

void simulation::optimistic(change_rec c) {
  if (conflicts(c, {})) {
    verdict_conflict(c);
    gate_busy_ = false;
    gate_kick();
    return;
  }
  since_green_.push_back(c);
  land(c);
  if (!policy_.check_due(since_green_.size())) {
    gate_busy_ = false;
    gate_kick();
    return;
  }
  check_branch(0);
}

void simulation::check_branch(int round) {
  // The deep checks on the branch; when they fail, find the culprit among
  // the merges since they last passed and revert it.
  auto broken_at = [this](std::size_t upto) {
    for (std::size_t i = 0; i <= upto && i < since_green_.size(); ++i)
      if (since_green_[i].bad) return true;
    return false;
  };
  double took = draw(s_.checks.deep_seconds, rng_);
  bool passed = !since_green_.empty() && !broken_at(since_green_.size() - 1) && !chance(s_.checks.flake, rng_);
  if (since_green_.empty()) passed = true;
  if (passed || round >= 8) {
    gate_busy_s_ += took;
    after(took, [this] {
      since_green_.clear();
      gate_busy_ = false;
      gate_kick();
    });
    return;
  }
  gate::culprit_search search(since_green_.size());
  while (auto mid = search.probe()) {
    took += draw(s_.checks.deep_seconds, rng_);
    search.tested(!broken_at(*mid));
  }
  gate_busy_s_ += took;
  std::size_t culprit = search.culprit();
  after(took, [this, culprit, round] {
    change_rec c = since_green_[culprit];
    since_green_.erase(since_green_.begin() + static_cast<std::ptrdiff_t>(culprit));
    ++r_.reverts;
    ++landed_;  // the revert is a landing too: it changes the culprit's files
    for (int f : tasks_.at(c.task).files) file_landed_[f] = landed_;
    auto& info = tasks_.at(c.task);
    churn_s_ += info.last_attempt_work;
    if (!ok(board_.revert(task_id(c.task), json::object{{"sim", "reverted"}}))) return;
    ++open_tasks_;
    if (!ok(board_.requeue(task_id(c.task)))) return;
    if (info.feature >= 0) {
      auto& f = features_[info.feature];
      ++f.open;
      if (f.done) {
        f.done = false;
        --features_done_;
      }
    }
    wake_idle(1);
    check_branch(round + 1);
  });
}

// ---- the run -----------------------------------------------------------------

result<report> simulation::run() {
  auto started = std::chrono::steady_clock::now();
  for (int k = 0; k < s_.repository.subsystems; ++k) {
    auto c = contract::compiled_contract::compile({.allowed_paths = {fmt::format("s{}/**", k)}});
    if (!c) return c.error();
    contracts_.push_back(std::move(*c));
  }
  workers_.resize(static_cast<std::size_t>(s_.workers));
  work_s_.assign(workers_.size(), 0);
  wait_s_.assign(workers_.size(), 0);
  for (auto& ws : workers_) {
    auto lease = store_->grant(s_.lease);
    if (!lease) return lease.error();
    ws.lease = *lease;
  }
  if (s_.coordination == design::planner_worker) {
    if (s_.work.features > 0)
      while (more_features()) feature_queue_.push_back(new_feature());
    planner_busy_.assign(static_cast<std::size_t>(s_.planners), false);
    for (int p = 0; p < s_.planners; ++p) planner_next(p);
  } else {
    // Agents on their own: the goal goes on the board as it is (feature = task).
    while (s_.work.features > 0 && more_features()) {
      int f = new_feature();
      features_[f].open = 1;
      task_info info{f, features_[f].units, features_[f].subsystem, pick_files(features_[f].subsystem, features_[f].units)};
      board::task t;
      t.id = task_id(fmt::format("f{:06}", f));
      t.title = t.id.str();
      t.priority = priority_for(info.units, false);
      tasks_.emplace(t.id.str(), std::move(info));
      if (auto r = board_.propose(std::move(t)); !r) return r.error();
    }
  }
  for (int w = 0; w < s_.workers; ++w) after(0, [this, w] { worker_next(w); });
  const std::int64_t horizon = to_ns(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(s_.horizon).count()));
  while (!events_.empty() && !stop_ && !failed_) {
    event e = events_.top();
    if (e.at > horizon) break;
    events_.pop();
    if (e.at > now_ns_) {
      clock_->advance(ns(e.at - now_ns_));
      now_ns_ = e.at;
    }
    e.fn();
  }
  if (failed_) return failed_;
  if (!stop_ && !events_.empty()) now_ns_ = std::max(now_ns_, horizon);  // ran to the horizon
  for (int w = 0; w < s_.workers; ++w) set_phase(w, workers_[w].at);  // count the last phases

  report& r = r_;
  r.coordination = s_.coordination;
  r.workers = s_.workers;
  r.queue = s_.queue;
  r.policy = s_.gate.mode;
  r.batch_size = s_.gate.batch_size;
  r.optimistic_every = s_.gate.optimistic_every;
  r.hours = now() / 3600;
  double hours = std::max(r.hours, 1e-9);
  r.merges_per_hour = static_cast<double>(r.merges) / hours;
  r.cost_per_hour = r.cost / hours;
  if (!waits_.empty()) {
    std::sort(waits_.begin(), waits_.end());
    r.queue_wait_median_s = waits_[waits_.size() / 2];
    r.queue_wait_p90_s = waits_[std::min(waits_.size() - 1, waits_.size() * 9 / 10)];
  }
  if (goal_at_ >= 0) r.time_to_goal_h = goal_at_ / 3600;
  r.conflict_rate = r.submissions ? static_cast<double>(r.conflicts) / static_cast<double>(r.submissions) : 0;
  r.batch_failure_rate = r.batches ? static_cast<double>(r.batches_failed) / static_cast<double>(r.batches) : 0;
  r.revert_rate = r.merges ? static_cast<double>(r.reverts) / static_cast<double>(r.merges) : 0;
  double work = 0, wait = 0;
  for (int w = 0; w < s_.workers; ++w) work += work_s_[w], wait += wait_s_[w];
  double capacity = std::max(1e-9, now() * s_.workers);
  r.worker_utilisation = work / capacity;
  r.worker_waiting = wait / capacity;
  r.churn = work > 0 ? std::min(1.0, churn_s_ / work) : 0;
  r.gate_utilisation = std::min(1.0, gate_busy_s_ / std::max(1e-9, now()));
  r.features = s_.work.features > 0 ? s_.work.features : features_made_;
  r.features_done = features_done_;
  for (const auto& f : features_) {
    r.hard += f.hard;
    r.hard_done += f.hard && f.done;
  }
  r.wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return r;
}

}  // namespace

// ---- the public API ----------------------------------------------------------

error_info validate(const scenario& s) {
  auto bad = [](std::string_view field, std::string_view rule) {
    return fail(error::invalid_argument, fmt::format("sim: '{}' {}", field, rule));
  };
  auto dist = [&](std::string_view field, const lognormal& d) -> error_info {
    if (!(d.median > 0) || !std::isfinite(d.median) || !std::isfinite(d.p90))
      return bad(field, "needs a positive median (and a p90 at least as large, or none)");
    return {};
  };
  auto prob = [&](std::string_view field, double p) -> error_info {
    if (!(p >= 0 && p <= 1)) return bad(field, "is a probability: between 0 and 1");
    return {};
  };
  if (s.workers < 1 || s.workers > 100'000) return bad("workers", "must be between 1 and 100000");
  if (s.planners < 1 || s.planners > 10'000) return bad("planners", "must be between 1 and 10000");
  if (s.gate.mode == gate::policy::batch && s.gate.batch_size < 1) return bad("gate.batch_size", "must be at least 1");
  if (s.queue == queue_kind::github_merge_queue && (s.github_builds < 1 || s.github_builds > 1000))
    return bad("github_builds", "must be between 1 and 1000");
  if (s.repository.subsystems < 1) return bad("repository.subsystems", "must be at least 1");
  if (s.repository.files_per_subsystem < 1) return bad("repository.files_per_subsystem", "must be at least 1");
  if (!(s.repository.files_per_unit > 0)) return bad("repository.files_per_unit", "must be positive");
  if (s.work.features < 0) return bad("work.features", "must be 0 (endless) or more");
  if (s.work.max_task_units < 1) return bad("work.max_task_units", "must be at least 1");
  if (!(s.planner_turns_per_unit >= 0)) return bad("planner_turns_per_unit", "must not be negative");
  if (!(s.worker.rebase_turns >= 0)) return bad("worker.rebase_turns", "must not be negative");
  if (s.lease.count() < 2) return bad("lease_s", "must be at least 2 seconds");
  if (s.horizon.count() < 1) return bad("horizon_h", "must be at least 1 hour");
  if (auto e = prob("lock_hold_fraction", s.lock_hold_fraction)) return e;
  for (auto [f, d] : {std::pair{"planner.turn_seconds", &s.planner.turn_seconds},
                      {"planner.tokens_per_turn", &s.planner.tokens_per_turn},
                      {"worker.turn_seconds", &s.worker.model.turn_seconds},
                      {"worker.tokens_per_turn", &s.worker.model.tokens_per_turn},
                      {"worker.turns_per_unit", &s.worker.turns_per_unit},
                      {"checks.fast_seconds", &s.checks.fast_seconds},
                      {"checks.deep_seconds", &s.checks.deep_seconds},
                      {"work.feature_units", &s.work.feature_units}})
    if (auto e = dist(f, *d)) return e;
  for (auto [f, p] : {std::pair{"worker.success_per_unit", s.worker.success_per_unit}, {"worker.stall", s.worker.stall},
                      {"worker.out_of_contract", s.worker.out_of_contract},
                      {"worker.breaks_build", s.worker.breaks_build}, {"checks.fast_catches", s.checks.fast_catches},
                      {"checks.flake", s.checks.flake}, {"work.follow_up", s.work.follow_up},
                      {"repository.same_file_conflict", s.repository.same_file_conflict}})
    if (auto e = prob(f, p)) return e;
  if (s.worker.success_per_unit <= 0) return bad("worker.success_per_unit", "must be above 0, or nothing ever lands");
  return {};
}

result<report> run(const scenario& s) {
  if (auto e = validate(s)) return e;
  simulation sim(s);
  return sim.run();
}

void tag_invoke(json::value_from_tag, json::value& v, const report& r) {
  json::object o{{"design", to_string(r.coordination)},
                 {"workers", r.workers},
                 {"queue", r.queue == queue_kind::agentcore ? "agentcore" : "github_merge_queue"},
                 {"policy", r.policy == gate::policy::serial  ? "serial"
                            : r.policy == gate::policy::batch ? "batch"
                                                              : "optimistic"},
                 {"batch_size", r.batch_size},
                 {"optimistic_every", r.optimistic_every},
                 {"hours", r.hours},
                 {"merges", r.merges},
                 {"merges_per_hour", r.merges_per_hour},
                 {"cost", r.cost},
                 {"cost_per_hour", r.cost_per_hour},
                 {"queue_wait_median_s", r.queue_wait_median_s},
                 {"queue_wait_p90_s", r.queue_wait_p90_s},
                 {"submissions", r.submissions},
                 {"conflicts", r.conflicts},
                 {"conflict_rate", r.conflict_rate},
                 {"reverts", r.reverts},
                 {"revert_rate", r.revert_rate},
                 {"rejected", r.rejected},
                 {"batches", r.batches},
                 {"batches_failed", r.batches_failed},
                 {"batch_failure_rate", r.batch_failure_rate},
                 {"contract_violations", r.contract_violations},
                 {"stalls", r.stalls},
                 {"churn", r.churn},
                 {"worker_utilisation", r.worker_utilisation},
                 {"worker_waiting", r.worker_waiting},
                 {"gate_utilisation", r.gate_utilisation},
                 {"features", r.features},
                 {"features_done", r.features_done},
                 {"hard", r.hard},
                 {"hard_done", r.hard_done},
                 {"tasks_merged", r.tasks_merged},
                 {"wall_seconds", r.wall_seconds}};
  if (r.time_to_goal_h) o["time_to_goal_h"] = *r.time_to_goal_h;
  else o["time_to_goal_h"] = nullptr;
  v = std::move(o);
}

}  // namespace agentcore::sim

// ---- scenarios as JSON -------------------------------------------------------

namespace agentcore::sim {

namespace {

// Reads an object's fields into a struct: a missing field keeps its value;
// a field of the wrong kind, out of range, or unknown (a typo) is an error
// naming it by its path ("worker.stall").
class reader {
public:
  reader(const json::object& o, std::string path) : o_(o), path_(std::move(path)) {}

  error_info error() const { return err_; }

  void number(std::string_view key, double& out) {
    if (auto* v = take(key)) {
      if (v->is_number()) out = v->to_number<double>();
      else wrong(key, "a number", *v);
    }
  }
  void integer(std::string_view key, int& out) {
    if (auto* v = take(key)) {
      if (v->is_int64() && v->as_int64() >= INT32_MIN && v->as_int64() <= INT32_MAX) out = static_cast<int>(v->as_int64());
      else if (v->is_uint64() && v->as_uint64() <= INT32_MAX) out = static_cast<int>(v->as_uint64());
      else wrong(key, "an integer", *v);
    }
  }
  void size(std::string_view key, std::size_t& out) {
    int n = static_cast<int>(out);
    integer(key, n);
    if (n < 0) wrong(key, "a count (0 or more)", json::value(n));
    else out = static_cast<std::size_t>(n);
  }
  void seconds(std::string_view key, std::chrono::seconds& out) {
    double v = static_cast<double>(out.count());
    number(key, v);
    out = std::chrono::seconds(static_cast<std::int64_t>(v));
  }
  void boolean(std::string_view key, bool& out) {
    if (auto* v = take(key)) {
      if (v->is_bool()) out = v->as_bool();
      else wrong(key, "true or false", *v);
    }
  }
  /// {"median": M, "p90": P} or a number (always that).
  void dist(std::string_view key, lognormal& out) {
    auto* v = take(key);
    if (!v) return;
    if (v->is_number()) {
      out = {v->to_number<double>(), v->to_number<double>()};
      return;
    }
    if (!v->is_object()) return wrong(key, "a number or {\"median\": ..., \"p90\": ...}", *v);
    reader r(v->as_object(), join(key));
    r.number("median", out.median);
    r.number("p90", out.p90);
    r.finish();
    if (!err_) err_ = r.error();
  }
  template <class F>
  void object(std::string_view key, F&& read) {
    auto* v = take(key);
    if (!v) return;
    if (!v->is_object()) return wrong(key, "an object", *v);
    reader r(v->as_object(), join(key));
    read(r);
    r.finish();
    if (!err_) err_ = r.error();
  }
  template <class E, class Parse>
  void choice(std::string_view key, E& out, Parse parse, std::string_view choices) {
    auto* v = take(key);
    if (!v) return;
    std::optional<E> e;
    if (v->is_string()) e = parse(std::string_view(v->as_string()));
    if (!e) return wrong(key, choices, *v);
    out = *e;
  }
  /// A field read by other means.
  void read_elsewhere(std::string_view key) { seen_.insert(std::string(key)); }
  /// Every field must have been read: anything else is a typo or a field of a newer version.
  void finish() {
    if (err_) return;
    for (const auto& kv : o_)
      if (!seen_.count(std::string(kv.key()))) {
        err_ = fail(error::invalid_argument, fmt::format("sim: unknown field '{}' in the scenario", join(kv.key())));
        return;
      }
  }

private:
  std::string join(std::string_view key) const { return path_.empty() ? std::string(key) : path_ + "." + std::string(key); }
  const json::value* take(std::string_view key) {
    seen_.insert(std::string(key));
    auto* v = o_.if_contains(key);
    return v && !v->is_null() ? v : nullptr;
  }
  void wrong(std::string_view key, std::string_view expected, const json::value& got) {
    if (!err_)
      err_ = fail(error::invalid_argument,
                  fmt::format("sim: '{}' must be {}, got {}", join(key), expected, json_kind_name(got)));
  }
  const json::object& o_;
  std::string path_;
  std::set<std::string> seen_;
  error_info err_;
};

std::optional<gate::policy> parse_policy(std::string_view s) {
  if (s == "serial") return gate::policy::serial;
  if (s == "batch") return gate::policy::batch;
  if (s == "optimistic") return gate::policy::optimistic;
  return std::nullopt;
}

std::string_view policy_name(gate::policy p) {
  return p == gate::policy::serial ? "serial" : p == gate::policy::batch ? "batch" : "optimistic";
}

std::optional<queue_kind> parse_queue(std::string_view s) {
  if (s == "agentcore") return queue_kind::agentcore;
  if (s == "github_merge_queue") return queue_kind::github_merge_queue;
  return std::nullopt;
}

void read_model(reader& r, model_profile& m) {
  r.dist("turn_seconds", m.turn_seconds);
  r.dist("tokens_per_turn", m.tokens_per_turn);
  r.number("cost_per_million_tokens", m.cost_per_million_tokens);
}

json::object dist_json(const lognormal& d) { return {{"median", d.median}, {"p90", d.p90}}; }

json::object model_json(const model_profile& m) {
  return {{"turn_seconds", dist_json(m.turn_seconds)},
          {"tokens_per_turn", dist_json(m.tokens_per_turn)},
          {"cost_per_million_tokens", m.cost_per_million_tokens}};
}

}  // namespace

result<gate::queue_policy_options> policy_from_json(const json::value& v) {
  if (!v.is_object())
    return fail(error::invalid_argument, fmt::format("sim: a gate policy must be an object, got {}", json_kind_name(v)));
  gate::queue_policy_options p;
  reader r(v.as_object(), "gate");
  r.choice("mode", p.mode, parse_policy, "\"serial\", \"batch\" or \"optimistic\"");
  r.size("batch_size", p.batch_size);
  double wait_s = static_cast<double>(p.batch_wait.count()) / 1000;
  r.number("batch_wait_s", wait_s);
  p.batch_wait = std::chrono::milliseconds(static_cast<std::int64_t>(wait_s * 1000));
  r.size("optimistic_every", p.optimistic_every);
  r.finish();
  if (auto e = r.error()) return e;
  return p;
}

json::object policy_to_json(const gate::queue_policy_options& p) {
  return {{"mode", policy_name(p.mode)},
          {"batch_size", p.batch_size},
          {"batch_wait_s", static_cast<double>(p.batch_wait.count()) / 1000},
          {"optimistic_every", p.optimistic_every}};
}

result<scenario> scenario_from_json(const json::value& v) {
  if (!v.is_object())
    return fail(error::invalid_argument, fmt::format("sim: a scenario must be a JSON object, got {}", json_kind_name(v)));
  scenario s;
  reader r(v.as_object(), "");
  r.choice("design", s.coordination, parse_design, "\"strict_locks\", \"flat_optimistic\" or \"planner_worker\"");
  r.integer("workers", s.workers);
  r.integer("planners", s.planners);
  if (auto* g = v.as_object().if_contains("gate"); g && !g->is_null()) {
    auto p = policy_from_json(*g);
    if (!p) return p.error();
    s.gate = *p;
  }
  r.read_elsewhere("gate");
  r.choice("queue", s.queue, parse_queue, "\"agentcore\" or \"github_merge_queue\"");
  r.integer("github_builds", s.github_builds);
  r.object("planner", [&](reader& m) {
    read_model(m, s.planner);
    m.number("turns_per_unit", s.planner_turns_per_unit);
  });
  r.object("worker", [&](reader& w) {
    read_model(w, s.worker.model);
    w.dist("turns_per_unit", s.worker.turns_per_unit);
    w.number("success_per_unit", s.worker.success_per_unit);
    w.number("stall", s.worker.stall);
    w.number("out_of_contract", s.worker.out_of_contract);
    w.number("breaks_build", s.worker.breaks_build);
    w.number("rebase_turns", s.worker.rebase_turns);
  });
  r.object("repository", [&](reader& p) {
    p.integer("subsystems", s.repository.subsystems);
    p.integer("files_per_subsystem", s.repository.files_per_subsystem);
    p.number("subsystem_hotness", s.repository.subsystem_hotness);
    p.number("file_hotness", s.repository.file_hotness);
    p.number("files_per_unit", s.repository.files_per_unit);
    p.number("same_file_conflict", s.repository.same_file_conflict);
  });
  r.object("checks", [&](reader& c) {
    c.dist("fast_seconds", s.checks.fast_seconds);
    c.dist("deep_seconds", s.checks.deep_seconds);
    c.number("fast_catches", s.checks.fast_catches);
    c.number("flake", s.checks.flake);
  });
  r.object("work", [&](reader& w) {
    w.integer("features", s.work.features);
    w.dist("feature_units", s.work.feature_units);
    w.number("hard_units", s.work.hard_units);
    w.integer("max_task_units", s.work.max_task_units);
    w.number("follow_up", s.work.follow_up);
  });
  r.number("lock_hold_fraction", s.lock_hold_fraction);
  r.seconds("lock_timeout_s", s.lock_timeout);
  r.seconds("lease_s", s.lease);
  double hours = static_cast<double>(s.horizon.count());
  r.number("horizon_h", hours);
  s.horizon = std::chrono::hours(static_cast<std::int64_t>(hours));
  r.boolean("stop_at_goal", s.stop_at_goal);
  int seed = static_cast<int>(s.seed);
  r.integer("seed", seed);
  s.seed = static_cast<std::uint64_t>(seed);
  r.finish();
  if (auto e = r.error()) return e;
  if (auto e = validate(s)) return e;
  return s;
}

void tag_invoke(json::value_from_tag, json::value& v, const scenario& s) {
  v = json::object{
      {"design", to_string(s.coordination)},
      {"workers", s.workers},
      {"planners", s.planners},
      {"gate", policy_to_json(s.gate)},
      {"queue", s.queue == queue_kind::agentcore ? "agentcore" : "github_merge_queue"},
      {"github_builds", s.github_builds},
      {"planner", [&] {
         auto o = model_json(s.planner);
         o["turns_per_unit"] = s.planner_turns_per_unit;
         return o;
       }()},
      {"worker", [&] {
         auto o = model_json(s.worker.model);
         o["turns_per_unit"] = dist_json(s.worker.turns_per_unit);
         o["success_per_unit"] = s.worker.success_per_unit;
         o["stall"] = s.worker.stall;
         o["out_of_contract"] = s.worker.out_of_contract;
         o["breaks_build"] = s.worker.breaks_build;
         o["rebase_turns"] = s.worker.rebase_turns;
         return o;
       }()},
      {"repository", json::object{{"subsystems", s.repository.subsystems},
                                  {"files_per_subsystem", s.repository.files_per_subsystem},
                                  {"subsystem_hotness", s.repository.subsystem_hotness},
                                  {"file_hotness", s.repository.file_hotness},
                                  {"files_per_unit", s.repository.files_per_unit},
                                  {"same_file_conflict", s.repository.same_file_conflict}}},
      {"checks", json::object{{"fast_seconds", dist_json(s.checks.fast_seconds)},
                              {"deep_seconds", dist_json(s.checks.deep_seconds)},
                              {"fast_catches", s.checks.fast_catches},
                              {"flake", s.checks.flake}}},
      {"work", json::object{{"features", s.work.features},
                            {"feature_units", dist_json(s.work.feature_units)},
                            {"hard_units", s.work.hard_units},
                            {"max_task_units", s.work.max_task_units},
                            {"follow_up", s.work.follow_up}}},
      {"lock_hold_fraction", s.lock_hold_fraction},
      {"lock_timeout_s", s.lock_timeout.count()},
      {"lease_s", s.lease.count()},
      {"horizon_h", s.horizon.count()},
      {"stop_at_goal", s.stop_at_goal},
      {"seed", s.seed}};
}

}  // namespace agentcore::sim
