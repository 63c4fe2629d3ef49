#include <agentcore/roles/worker.hpp>

#include <agentcore/git/repository.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"
#include "detail/offload.hpp"
#include "roles/what_happened.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <mutex>

namespace agentcore::roles {

namespace {

using detail::offload;

std::string tail(std::string_view s, std::size_t n) {
  if (s.size() <= n) return std::string(s);
  return "[...]\n" + std::string(s.substr(s.size() - n));
}

bool has_conflict_markers(std::string_view text) {
  for (std::size_t p = 0; p < text.size();) {
    auto nl = text.find('\n', p);
    auto line = text.substr(p, nl == std::string_view::npos ? std::string_view::npos : nl - p);
    if (line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ") || line == "=======") return true;
    if (nl == std::string_view::npos) break;
    p = nl + 1;
  }
  return false;
}

// What an agent's run did, for a task's report.
json::object outcome_report(const agent::outcome& o) {
  json::array files;
  for (const auto& f : o.files_written) files.emplace_back(f);
  // The model's last words: where it was when it stopped.
  std::string last;
  for (auto it = o.messages.rbegin(); it != o.messages.rend() && last.empty(); ++it)
    if (it->role == model::role::assistant) last = it->text();
  return {{"kind", to_string(o.kind)}, {"summary", o.summary},
          {"turns", o.turns},           {"tool_calls", o.tool_calls},
          {"tool_errors", o.tool_errors}, {"files_written", std::move(files)},
          {"input_tokens", o.usage.input_tokens}, {"output_tokens", o.usage.output_tokens},
          {"cost", o.cost},             {"last_words", tail(last, 1000)}};
}

// (Built outside the coroutines: GCC 12 mishandles braced lists of string
// literals inside a co_await expression.)
json::object bad_contract(const error_info& e) {
  json::object o;
  o["kind"] = "bad_contract";
  o["summary"] = e.message();
  return o;
}

contract::time_box remaining(const contract::time_box& box, const work_report& used,
                             std::chrono::steady_clock::time_point started) {
  contract::time_box r = box;
  if (box.model_turns > 0) r.model_turns = std::max<std::int64_t>(box.model_turns - used.turns, 1);
  if (box.tokens > 0) {
    auto spent = static_cast<std::int64_t>(used.usage.input_tokens + used.usage.output_tokens);
    r.tokens = std::max<std::int64_t>(box.tokens - spent, 1);
  }
  if (box.cost > 0) r.cost = std::max(box.cost - used.cost, 1e-9);
  if (box.wall.count() > 0) {
    auto left = box.wall - std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started);
    r.wall = std::max(left, std::chrono::seconds(1));
  }
  return r;
}

}  // namespace

std::string_view to_string(work_result r) noexcept {
  switch (r) {
    case work_result::idle: return "idle";
    case work_result::merged: return "merged";
    case work_result::rejected: return "rejected";
    case work_result::abandoned: return "abandoned";
    case work_result::released: return "released";
    case work_result::claim_lost: return "claim_lost";
    case work_result::submitted: return "submitted";
  }
  return "idle";
}

std::string task_statement(const board::task& t) {
  std::string s = fmt::format("Task {}: {}\n", t.id.str(), t.title);
  if (!t.description.empty()) s += "\n" + t.description + "\n";
  if (!t.notes.empty()) {
    s += "\nNotes on this task:\n";
    for (const auto& n : t.notes) s += fmt::format("- ({}) {}\n", n.author, n.text);
  }
  if (auto before = detail::what_happened(t.result, 6000); !before.empty())
    s += "\nAn earlier attempt at this task did not land. " + before +
         "Do not repeat what failed: read the output above and fix its cause.\n";
  return s;
}

void tag_invoke(json::value_from_tag, json::value& v, const worker_phase& e) {
  v = {{"worker", e.worker}, {"task", e.task}, {"phase", e.phase}, {"detail", e.detail}};
}

struct worker::state : std::enable_shared_from_this<state> {
  board::task_board& board;
  store::store& store;
  std::filesystem::path repo_path;
  git::worktree_pool& pool;
  gate::merge_gate& gate;
  model::client& model;
  worker_options o;
  asio::strand<asio::any_io_executor> strand;
  std::atomic<bool> stopping{false};
  std::mutex loop_mutex;
  agent::agent_loop* current = nullptr;  // the loop running now, for stop()
  // The wait for the gate's verdict, for stop(): used on the strand only.
  std::optional<asio::cancellation_signal> verdict_wait;

  // Keeps one lease alive until `done`; `lost` when it could not.
  struct heartbeat {
    std::atomic<bool> done{false}, lost{false};
    std::optional<asio::steady_timer> timer;
  };

  state(board::task_board& b, store::store& s, std::filesystem::path repo, git::worktree_pool& p, gate::merge_gate& g,
        model::client& m, worker_options opts)
      : board(b), store(s), repo_path(std::move(repo)), pool(p), gate(g), model(m), o(std::move(opts)),
        strand(asio::make_strand(o.loop.executor)) {}

  asio::any_io_executor blocking() const { return o.loop.blocking; }
  event_bus* events() const { return o.events ? o.events : o.loop.events; }

  void phase(const task_id& t, std::string_view name, std::string detail = {}) {
    if (auto* bus = events()) bus->publish(worker_phase{o.id.str(), t.str(), std::string(name), std::move(detail)});
  }

  std::string interrupted;  // loop_mutex: why the attempt in hand was ended (interrupt())
  void stop_current() {
    {
      std::lock_guard lock(loop_mutex);
      if (current) current->stop();
    }
    // A wait for a verdict ends too (on the strand, where it was started).
    asio::post(strand, [self = shared_from_this()] {
      if (self->verdict_wait) self->verdict_wait->emit(asio::cancellation_type::terminal);
    });
  }
  std::string take_interrupted() {
    std::lock_guard lock(loop_mutex);
    return std::exchange(interrupted, {});
  }

  asio::awaitable<void> beat(std::shared_ptr<heartbeat> hb, store::lease_id lease) {
    auto self = shared_from_this();
    auto every = std::max<std::chrono::milliseconds>(std::chrono::duration_cast<std::chrono::milliseconds>(o.lease_ttl) / 3,
                                                     std::chrono::milliseconds(10));
    while (!hb->done) {
      hb->timer->expires_after(every);
      boost::system::error_code ec;
      co_await hb->timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (hb->done) break;
      auto r = co_await offload(blocking(), [&] { return board.heartbeat(lease); });
      if (!r) {
        hb->lost = true;
        stop_current();
        break;
      }
    }
  }

  std::shared_ptr<heartbeat> start_heartbeat(store::lease_id lease) {
    auto hb = std::make_shared<heartbeat>();
    hb->timer.emplace(strand);
    asio::co_spawn(strand, beat(hb, lease), asio::detached);
    return hb;
  }
  void end_heartbeat(const std::shared_ptr<heartbeat>& hb) {
    if (!hb) return;
    hb->done = true;
    asio::post(strand, [hb] { hb->timer->cancel(); });
  }

  asio::awaitable<agent::outcome> run_loop(agent::agent_loop& loop, std::vector<model::message> conversation,
                                           std::string message) {
    {
      std::lock_guard lock(loop_mutex);
      current = &loop;
    }
    if (stopping) loop.stop();
    agent::outcome out;
    if (conversation.empty())
      out = co_await loop.async_run(std::move(message), asio::use_awaitable);
    else
      out = co_await loop.async_continue(std::move(conversation), std::move(message), asio::use_awaitable);
    std::lock_guard lock(loop_mutex);
    current = nullptr;
    co_return out;
  }

  /// The branch's tip to start from: the gate's view (the shared
  /// repository's branch, when the gate has one).
  asio::awaitable<result<git::oid>> tip() { co_return co_await gate.async_tip(asio::use_awaitable); }

  /// Waits for the gate's final verdict on a queued change; empty when the
  /// worker was stopped first (the change stays with the gate).
  asio::awaitable<result<std::optional<gate::change_verdict>>> wait_verdict(const std::string& change_id) {
    if (stopping) co_return std::optional<gate::change_verdict>();
    verdict_wait.emplace();  // a stop from now on emits it (stop_current, on the strand)
    auto v = co_await gate.async_wait_verdict(
        change_id, asio::bind_cancellation_slot(verdict_wait->slot(), asio::use_awaitable));
    verdict_wait.reset();
    if (!v && v.error() == error::canceled && stopping) co_return std::optional<gate::change_verdict>();
    if (!v) co_return v.error();
    co_return std::optional<gate::change_verdict>(std::move(*v));
  }

  asio::awaitable<result<work_report>> run_one() {
    (void)take_interrupted();  // meant for an attempt that had ended already
    work_report rep;
    auto lease = co_await offload(blocking(), [&] { return store.grant(o.lease_ttl); });
    if (!lease) co_return lease.error();
    auto claimed = co_await offload(blocking(), [&] { return board.claim(o.id, *lease); });
    if (!claimed || !*claimed) {
      co_await offload(blocking(), [&] { return store.revoke(*lease); });
      if (!claimed) co_return claimed.error();
      co_return rep;  // idle
    }
    board::task t = std::move(**claimed);
    rep.task = t.id;
    phase(t.id, "claimed", t.title);
    auto hb = start_heartbeat(*lease);
    std::vector<store::lease_id> leases{*lease};
    auto r = co_await work(t, leases, hb, rep);
    end_heartbeat(hb);
    // Whatever still holds a lease (nothing, normally) goes with it.
    for (auto l : leases) co_await offload(blocking(), [&] { return store.revoke(l); });
    if (!r) co_return r.error();
    phase(t.id, to_string(rep.result), rep.detail);
    co_return rep;
  }

  // The end of leaving a claim: a claim already lost is a result, not an error.
  static result<void> left(const result<board::task>& r, work_report& rep) {
    if (r) return {};
    if (r.error() != error::claim_lost) return r.error();
    rep.result = work_result::claim_lost;
    return {};
  }

  // Hands the task back (claimed -> ready) with a note.
  asio::awaitable<result<void>> release(const board::task& t, work_report& rep, std::string why) {
    rep.result = work_result::released;
    rep.detail = why;
    co_return left(co_await offload(blocking(), [&] { return board.release(t.id, o.id, why); }), rep);
  }

  asio::awaitable<result<void>> abandon(const board::task& t, work_report& rep, json::object report) {
    rep.result = work_result::abandoned;
    if (auto* s = report.if_contains("summary"); s && s->is_string()) rep.detail = std::string(s->get_string());
    co_return left(co_await offload(blocking(), [&] { return board.abandon(t.id, o.id, std::move(report)); }), rep);
  }

  void account(work_report& rep, const agent::outcome& out) {
    rep.turns += out.turns;
    rep.usage += out.usage;
    rep.cost += out.cost;
    for (const auto& f : out.files_written)
      if (std::find(rep.files_written.begin(), rep.files_written.end(), f) == rep.files_written.end())
        rep.files_written.push_back(f);
  }

  // What is wrong with the change from `base` to `head`, in words for the
  // model; empty when it passes the worker's own checks.
  asio::awaitable<result<std::string>> self_check(const contract::compiled_contract& terms, const git::oid& base,
                                                 const git::oid& head, const std::filesystem::path& dir,
                                                 const std::vector<std::string>& conflicted) {
    co_return co_await offload(blocking(), [&]() -> result<std::string> {
      auto ws = agent::workspace::open(dir);
      if (!ws) return ws.error();
      for (const auto& p : conflicted) {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(dir / p, ec)) continue;
        auto text = ws->read(p);
        if (text && has_conflict_markers(*text))
          return fmt::format("'{}' still has conflict markers (<<<<<<<, =======, >>>>>>>); resolve every conflict "
                             "and remove the markers, then call finish.",
                             p);
      }
      auto repo = git::repository::open(repo_path);
      if (!repo) return repo.error();
      auto d = repo->diff(base, head);
      if (!d) return d.error();
      if (d->files.empty())
        return std::string("You called finish, but the worktree has no change. If the task needs changes, make them; "
                           "then call finish.");
      auto v = terms.check(*d);
      if (!v.ok())
        return "Your change breaks the task's contract; fix it, then call finish:\n" + v.summary();
      for (const auto& cmd : terms.terms().acceptance_checks) {
        process::run_options co = o.loop.commands;
        co.working_directory = dir;
        co.sandbox.read_only.push_back(pool.git_dir());  // git works in the slot wherever the repository is
        auto c = process::run(cmd, co);
        if (!c) return c.error();
        if (!c->passed())
          return fmt::format("The acceptance check '{}' fails ({}):\n{}\nFix it, then call finish.", cmd, c->outcome(),
                             tail(c->log, 4000));
      }
      return std::string();
    });
  }

  // One task in hand, from claim to verdict: what the steps of work() share.
  struct attempt {
    board::task& t;
    std::vector<store::lease_id>& leases;
    std::shared_ptr<heartbeat>& hb;
    work_report& rep;
    std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
    contract::task_contract terms;
    std::optional<contract::compiled_contract> compiled;
    std::optional<git::worktree> wt;
    git::oid change_base;  // the branch's commit the change is on
    std::vector<std::shared_ptr<agent::tool>> tools;
    std::optional<agent::workspace> ws;
    std::unique_ptr<agent::agent_loop> loop;  // refers to ws
    agent::outcome out;                       // the agent's last run
    int fixes = 0, conflicts = 0;
    std::vector<std::string> conflicted;  // paths the last merge left conflict markers in
    git::oid head;                        // the change's commit
    bool fixing = false;                  // the self-check sent the agent back to work
  };
  // What a step of work() says: empty to go on, else work()'s end.
  using step_end = std::optional<result<void>>;
  static step_end ended(error_info e) { return step_end(result<void>(std::move(e))); }

  asio::awaitable<result<void>> work(board::task& t, std::vector<store::lease_id>& leases,
                                     std::shared_ptr<heartbeat>& hb, work_report& rep) {
    attempt a{t, leases, hb, rep};
    if (auto end = co_await prepare(a)) co_return std::move(*end);
    phase(t.id, "working");
    a.out = co_await run_loop(*a.loop, {}, task_statement(t));
    account(rep, a.out);
    for (;;) {
      if (auto end = co_await unless_finished(a)) co_return std::move(*end);
      if (auto end = co_await commit_and_check(a)) co_return std::move(*end);
      if (a.fixing) continue;
      if (auto end = co_await submit_and_wait(a)) co_return std::move(*end);
      if (auto end = co_await take_back_after_conflict(a)) co_return std::move(*end);
    }
  }

  // The task's terms, the branch's tip, a slot and an agent loop.
  asio::awaitable<step_end> prepare(attempt& a) {
    auto& t = a.t;
    // A task claimed again and again without an end (its model calls fail,
    // its worker dies) is given up: abandoned with why, for the planner to
    // split or a person to look at, not claimed forever.
    if (o.max_attempts > 0 && t.attempts > o.max_attempts) {
      json::object gave_up;
      gave_up["kind"] = "too_many_attempts";
      gave_up["summary"] = fmt::format("claimed {} times without an end (the limit is {}); last: {}", t.attempts,
                                       o.max_attempts,
                                       t.notes.empty() ? std::string("nothing noted") : t.notes.back().text);
      co_return co_await abandon(t, a.rep, std::move(gave_up));
    }
    a.terms = o.default_contract;
    if (!t.contract.is_null()) {
      auto c = contract::contract_from_json(t.contract);
      if (!c) co_return co_await abandon(t, a.rep, bad_contract(c.error()));
      a.terms = std::move(*c);
    }
    if (a.terms.time == contract::time_box{}) a.terms.time = o.default_contract.time;
    if (a.terms.time == contract::time_box{}) a.terms.time = o.loop.limits;
    auto compiled = contract::compiled_contract::compile(a.terms);
    if (!compiled) co_return co_await abandon(t, a.rep, bad_contract(compiled.error()));
    a.compiled.emplace(std::move(*compiled));

    phase(t.id, "preparing");
    auto base = co_await tip();
    if (!base) {
      (void)co_await release(t, a.rep, "the worker could not read the branch: " + base.error().message());
      co_return ended(base.error());
    }
    auto wt = co_await offload(blocking(), [&] { return pool.acquire(*base, o.slot_wait); });
    if (!wt) co_return co_await release(t, a.rep, "no worktree slot came free: " + wt.error().message());
    a.wt.emplace(std::move(*wt));
    a.change_base = *base;
    a.tools = agent::standard_tools(o.tools);
    a.tools.insert(a.tools.end(), o.extra_tools.begin(), o.extra_tools.end());
    if (auto e = make_loop(a)) {
      (void)co_await release(t, a.rep, e.message());
      co_return ended(e);
    }
    co_return step_end();
  }

  // A fresh agent loop over the slot, with what is left of the time box.
  error_info make_loop(attempt& a) {
    a.loop.reset();  // it refers to the workspace replaced here
    auto w = agent::workspace::open(a.wt->path(), a.terms, {.git_dir = a.wt->admin_dir()});
    if (!w) return w.error();
    a.ws.emplace(std::move(*w));
    agent::loop_options lo = o.loop;
    lo.tags = {.role = "worker", .task = a.t.id.str(), .workdir = a.wt->path().string()};
    lo.commands.sandbox.read_only.push_back(a.wt->git_dir());  // git works in the slot wherever the repository is
    lo.limits = remaining(a.terms.time, a.rep, a.started);
    if (!lo.events) lo.events = events();
    a.loop = std::make_unique<agent::agent_loop>(model, *a.ws, a.tools, std::move(lo));
    return {};
  }

  // The agent's run ended some other way than finishing: what becomes of the task.
  asio::awaitable<step_end> unless_finished(attempt& a) {
    auto& t = a.t;
    auto& out = a.out;
    auto& rep = a.rep;
    if (a.hb && a.hb->lost) {
      rep.result = work_result::claim_lost;
      rep.detail = "the claim's lease expired while the agent worked; the work was dropped";
      co_return result<void>();
    }
    switch (out.kind) {
      case agent::outcome_kind::stopped: {
        // (No ?: of strings inside the co_await: GCC 12 destroys such a temporary twice in a coroutine.)
        std::string why = take_interrupted();
        if (why.empty()) why = "the worker was stopped";
        co_return co_await release(t, rep, std::move(why));
      }
      case agent::outcome_kind::failed:
        if (out.error.code() == model::make_error_code(model::error::budget_exhausted)) {
          rep.budget_exhausted = out.error;
          // The task's own budget is spent: this task is done for, not the
          // worker; a planner may split it. Another budget (the role's, the
          // run's) is the host's to act on: the task goes back untouched.
          if (o.task_budget_exhausted && o.task_budget_exhausted(t.id)) {
            auto report = outcome_report(out);
            report["kind"] = "budget_exhausted";
            report["summary"] = out.error.message();
            co_return co_await abandon(t, rep, std::move(report));
          }
          co_return co_await release(t, rep, out.error.message());
        }
        co_return co_await release(t, rep, "the model could not be asked: " + out.error.message());
      case agent::outcome_kind::time_box:
      case agent::outcome_kind::stalled: co_return co_await abandon(t, rep, outcome_report(out));
      case agent::outcome_kind::finished: break;
    }
    co_return step_end();
  }

  // Commits the work, then checks it as the gate will; a failure goes back
  // to the agent (a.fixing) for at most fix_rounds rounds.
  asio::awaitable<step_end> commit_and_check(attempt& a) {
    auto& t = a.t;
    auto& out = a.out;
    auto& rep = a.rep;
    a.fixing = false;
    phase(t.id, "self_check");
    std::string message = fmt::format("task {}: {}\n\n{}", t.id.str(), t.title, out.summary);
    // Every write went through the workspace and no command ran: the slot
    // need only look at those paths (commit and clean-up cost follow the change).
    if (a.ws && !a.ws->untracked_changes() && a.conflicted.empty() && rep.conflicts_resolved == 0)
      a.wt->only_changed(a.ws->written());
    else
      a.wt->anything_changed();
    auto head = co_await offload(blocking(), [&] { return a.wt->commit_all(message, o.author); });
    if (!head) {
      (void)co_await release(t, rep, "committing the work failed: " + head.error().message());
      co_return ended(head.error());
    }
    a.head = *head;
    auto wrong = co_await self_check(*a.compiled, a.change_base, a.head, a.wt->path(), a.conflicted);
    if (!wrong) {
      (void)co_await release(t, rep, "the self-check could not run: " + wrong.error().message());
      co_return ended(wrong.error());
    }
    if (wrong->empty()) co_return step_end();
    if (a.fixes >= o.fix_rounds || stopping) {
      auto report = outcome_report(out);
      report["kind"] = "self_check_failed";
      report["summary"] = *wrong;
      co_return co_await abandon(t, rep, std::move(report));
    }
    rep.fix_rounds_used = ++a.fixes;
    if (auto e = make_loop(a)) co_return ended(e);  // a new run, with what is left of the time box
    phase(t.id, "working", "fixing: " + wrong->substr(0, wrong->find('\n')));
    out = co_await run_loop(*a.loop, std::move(out.messages), *wrong);
    account(rep, out);
    a.fixing = true;
    co_return step_end();
  }

  // Submits the change (the board first: the claim ends; then the gate) and
  // waits for the verdict. Goes on only for a conflict the worker may resolve.
  asio::awaitable<step_end> submit_and_wait(attempt& a) {
    auto& t = a.t;
    auto& rep = a.rep;
    phase(t.id, "submitting");
    json::object report = outcome_report(a.out);
    report["head"] = a.head.hex();
    report["base"] = a.change_base.hex();
    // The change's id with it: a restart finds a submission a crash kept
    // from reaching the gate, and hands it over (runtime::swarm).
    std::string change_id = fmt::format("{}-{}-{}", t.id.str(), t.attempts, a.conflicts);
    report["change"] = change_id;
    auto sub = co_await offload(blocking(), [&] { return board.submit(t.id, o.id, report); });
    if (!sub) {
      if (sub.error() != error::claim_lost) co_return ended(sub.error());
      rep.result = work_result::claim_lost;
      rep.detail = sub.error().message();
      co_return result<void>();
    }
    end_heartbeat(a.hb);
    a.hb.reset();
    gate::change c{.id = change_id,
                   .task = t.id,
                   .base = a.change_base,
                   .head = a.head,
                   .priority = t.priority,
                   .contract = a.terms,
                   .checks = a.terms.acceptance_checks};
    a.loop.reset();
    a.ws.reset();
    a.wt->release();  // the gate checks the change in a slot of its own (maybe this one)
    auto v = co_await gate.async_submit(c, asio::use_awaitable);
    if (!v) co_return ended(v.error());
    gate::change_verdict verdict = std::move(*v);
    if (verdict.kind == gate::verdict_kind::queued) {
      phase(t.id, "waiting");
      auto decided = co_await wait_verdict(c.id);
      if (!decided) co_return ended(decided.error());
      if (!*decided) {  // the change stays queued in the store; the gate (this run's or the next) decides
        rep.result = work_result::submitted;
        rep.detail = "stopped while the gate had the change";
        co_return result<void>();
      }
      verdict = std::move(**decided);
    }
    rep.verdicts.push_back(verdict);
    rep.detail = verdict.detail;
    if (verdict.kind == gate::verdict_kind::merged) {
      rep.result = work_result::merged;
      co_return result<void>();
    }
    if (verdict.kind != gate::verdict_kind::conflict || a.conflicts >= o.conflict_rounds || stopping) {
      rep.result = work_result::rejected;
      co_return result<void>();
    }
    co_return step_end();
  }

  // A conflict: take the task back, merge the branch in, let the model resolve it.
  asio::awaitable<step_end> take_back_after_conflict(attempt& a) {
    auto& t = a.t;
    auto& rep = a.rep;
    ++a.conflicts;
    const auto& paths_in_conflict = rep.verdicts.back().paths;
    phase(t.id, "resolving", fmt::format("conflict in {}", fmt::join(paths_in_conflict, ", ")));
    auto lease = co_await offload(blocking(), [&] { return store.grant(o.lease_ttl); });
    if (!lease) co_return ended(lease.error());
    auto back = co_await offload(blocking(), [&] { return board.reclaim(t.id, o.id, *lease); });
    if (!back) {
      rep.result = work_result::rejected;
      rep.detail = back.error().message();
      co_return result<void>();
    }
    a.leases.push_back(*lease);
    a.hb = start_heartbeat(*lease);
    auto new_tip = co_await tip();
    if (!new_tip) {
      (void)co_await release(t, rep, "the worker could not read the branch: " + new_tip.error().message());
      co_return ended(new_tip.error());
    }
    auto wt = co_await offload(blocking(), [&] { return pool.acquire(a.head, o.slot_wait); });
    if (!wt) co_return co_await release(t, rep, "no worktree slot came free: " + wt.error().message());
    a.wt.emplace(std::move(*wt));
    auto paths = co_await offload(blocking(), [&] { return a.wt->merge_in(*new_tip); });
    if (!paths) {
      (void)co_await release(t, rep, "merging the branch in failed: " + paths.error().message());
      co_return ended(paths.error());
    }
    a.change_base = *new_tip;
    a.conflicted = *paths;
    ++rep.conflicts_resolved;
    if (auto e = make_loop(a)) co_return ended(e);
    if (a.conflicted.empty()) {
      a.out.kind = agent::outcome_kind::finished;  // merged cleanly: nothing for the model to do
      co_return step_end();
    }
    std::string ask = fmt::format(
        "Your change could not be merged: the branch moved on and conflicts with it in: {}. The branch's new tip is "
        "now merged into your worktree; those files contain git conflict markers (<<<<<<<, =======, >>>>>>>). "
        "Resolve each conflict so that both your change and the branch's change do what they meant, remove every "
        "marker, run the checks, then call finish.",
        fmt::join(a.conflicted, ", "));
    phase(t.id, "working", "resolving conflicts");
    a.out = co_await run_loop(*a.loop, std::move(a.out.messages), std::move(ask));
    account(rep, a.out);
    co_return step_end();
  }
};

worker::worker(board::task_board& board, store::store& s, std::filesystem::path repository, git::worktree_pool& pool,
               gate::merge_gate& gate, model::client& model, worker_options options)
    : state_(std::make_shared<state>(board, s, std::move(repository), pool, gate, model, std::move(options))) {}

worker::~worker() = default;

const worker_options& worker::options() const noexcept { return state_->o; }

void worker::stop() {
  state_->stopping = true;
  state_->stop_current();
}

void worker::interrupt(std::string why) {
  std::lock_guard lock(state_->loop_mutex);
  if (!state_->current) return;
  state_->interrupted = std::move(why);
  state_->current->stop();
}

asio::any_io_executor worker::get_executor() const { return state_->o.loop.executor; }

void worker::start(asio::any_completion_handler<void(result<work_report>)> handler) {
  auto s = state_;
  if (!s->o.loop.executor || s->o.id.str().empty()) {
    detail::post_completion(std::move(handler),
                            result<work_report>(fail(error::invalid_argument,
                                                     "roles: worker_options needs an id and loop.executor")));
    return;
  }
  detail::spawn_operation(s->strand, s->o.loop.executor, s->run_one(), std::move(handler),
                          [s](const std::string& what) -> result<work_report> {
                            return fail(error::io_error, fmt::format("roles: worker '{}' failed: {}", s->o.id.str(), what));
                          });
}

}  // namespace agentcore::roles
