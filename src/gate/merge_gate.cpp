#include <agentcore/gate/merge_gate.hpp>

#include <agentcore/git/repository.hpp>

#include "detail/complete.hpp"
#include "detail/spawn.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <functional>

#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <unistd.h>

namespace agentcore::gate {

namespace {

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.push_back(json::value(s));
  return a;
}

result<git::oid> oid_field(const json::object& o, std::string_view key) {
  auto s = json_field<std::string>(o, key, "gate");
  if (!s) return s.error();
  return git::oid::from_hex(*s);
}

/// An object id that may be absent (null, missing or empty).
result<std::optional<git::oid>> optional_oid_field(const json::object& o, std::string_view key, std::string_view what) {
  auto s = json_field_or<std::string>(o, key, {}, what);
  if (!s) return s.error();
  if (s->empty()) return std::optional<git::oid>();
  auto id = git::oid::from_hex(*s);
  if (!id) return id.error();
  return std::optional<git::oid>(*id);
}

constexpr std::array<std::string_view, 8> verdict_names = {"queued",   "merged",   "contract_violated",
                                                           "checks_failed", "conflict", "deep_checks_failed",
                                                           "reverted", "error"};

}  // namespace

std::string_view to_string(verdict_kind k) noexcept { return verdict_names[static_cast<std::size_t>(k)]; }

// --- JSON ---

void tag_invoke(json::value_from_tag, json::value& v, const change& c) {
  json::object o{{"id", c.id},
                 {"base", c.base.hex()},
                 {"head", c.head.hex()},
                 {"priority", c.priority},
                 {"contract", contract::to_json_value(c.contract)},
                 {"checks", strings(c.checks)}};
  o["task"] = c.task ? json::value(c.task->str()) : json::value(nullptr);
  o["revert_of"] = c.revert_of ? json::value(c.revert_of->hex()) : json::value(nullptr);
  v = std::move(o);
}

result<change> change_from_json(const json::value& v) {
  if (!v.is_object()) return fail(error::invalid_argument, "gate: a change must be a JSON object");
  const auto& o = v.as_object();
  change c;
  auto id = json_field<std::string>(o, "id", "gate: change");
  if (!id) return id.error();
  c.id = *id;
  auto base = oid_field(o, "base");
  if (!base) return base.error();
  c.base = *base;
  auto head = oid_field(o, "head");
  if (!head) return head.error();
  c.head = *head;
  auto prio = json_field_or<int>(o, "priority", 0, "gate: change");
  if (!prio) return prio.error();
  c.priority = *prio;
  auto checks = json_field_or<std::vector<std::string>>(o, "checks", {}, "gate: change");
  if (!checks) return checks.error();
  c.checks = std::move(*checks);
  if (auto it = o.find("contract"); it != o.end() && !it->value().is_null()) {
    auto k = contract::contract_from_json(it->value());
    if (!k) return k.error();
    c.contract = std::move(*k);
  }
  auto task = json_field_or<std::string>(o, "task", {}, "gate: change");
  if (!task) return task.error();
  if (!task->empty()) c.task = task_id(*task);
  auto rev = optional_oid_field(o, "revert_of", "gate: change");
  if (!rev) return rev.error();
  c.revert_of = *rev;
  return c;
}

void tag_invoke(json::value_from_tag, json::value& v, const change_verdict& c) {
  json::array checks;
  for (const auto& r : c.checks) checks.push_back(json::value_from(r));
  v = {{"change", c.change_id},
       {"verdict", to_string(c.kind)},
       {"detail", c.detail},
       {"paths", strings(c.paths)},
       {"contract", json::value_from(c.contract)},
       {"checks", std::move(checks)},
       {"merged_as", c.merged_as ? json::value(c.merged_as->hex()) : json::value(nullptr)}};
}

result<change_verdict> verdict_from_json(const json::value& v) {
  if (!v.is_object()) return fail(error::invalid_argument, "gate: a verdict must be a JSON object");
  const auto& o = v.as_object();
  change_verdict out;
  auto id = json_field<std::string>(o, "change", "gate: verdict");
  if (!id) return id.error();
  out.change_id = *id;
  auto kind = json_field<std::string>(o, "verdict", "gate: verdict");
  if (!kind) return kind.error();
  bool known = false;
  for (std::size_t i = 0; i < verdict_names.size(); ++i)
    if (verdict_names[i] == *kind) {
      out.kind = static_cast<verdict_kind>(i);
      known = true;
    }
  if (!known) return fail(error::invalid_argument, fmt::format("gate: unknown verdict '{}'", *kind));
  auto detail = json_field_or<std::string>(o, "detail", {}, "gate: verdict");
  if (!detail) return detail.error();
  out.detail = *detail;
  auto paths = json_field_or<std::vector<std::string>>(o, "paths", {}, "gate: verdict");
  if (!paths) return paths.error();
  out.paths = *paths;
  auto merged = optional_oid_field(o, "merged_as", "gate: verdict");
  if (!merged) return merged.error();
  out.merged_as = *merged;
  // The checks and the contract's findings, read leniently: what a next
  // attempt needs to be told, from verdicts older versions wrote too.
  auto str = [](const json::object& x, const char* k) {
    auto* f = x.if_contains(k);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  auto flag = [](const json::object& x, const char* k) {
    auto* f = x.if_contains(k);
    return f && f->is_bool() && f->get_bool();
  };
  auto number = [](const json::object& x, const char* k) -> std::int64_t {
    auto* f = x.if_contains(k);
    return f && f->is_int64() ? f->get_int64() : f && f->is_uint64() ? static_cast<std::int64_t>(f->get_uint64()) : 0;
  };
  if (auto* checks = o.if_contains("checks"); checks && checks->is_array())
    for (const auto& c : checks->get_array()) {
      if (!c.is_object()) continue;
      const auto& co = c.get_object();
      check_result r;
      r.command = str(co, "command");
      r.exit_code = static_cast<int>(co.contains("exit_code") ? number(co, "exit_code") : -1);
      r.timed_out = flag(co, "timed_out");
      r.duration = std::chrono::milliseconds(number(co, "duration_ms"));
      r.log = str(co, "log");
      r.output_bytes = static_cast<std::size_t>(number(co, "output_bytes"));
      r.truncated = flag(co, "truncated");
      r.sandboxed = flag(co, "sandboxed");
      r.warning = str(co, "warning");
      r.limit_exceeded = str(co, "limit_exceeded");
      out.checks.push_back(std::move(r));
    }
  if (auto* k = o.if_contains("contract"); k && k->is_object())
    if (auto* vs = k->get_object().if_contains("violations"); vs && vs->is_array())
      for (const auto& x : vs->get_array())
        if (x.is_object())
          out.contract.violations.push_back(
              {str(x.get_object(), "path"), str(x.get_object(), "rule"), str(x.get_object(), "detail")});
  return out;
}

std::string explain(const change_verdict& v, std::size_t max_bytes) {
  std::string s = fmt::format("The gate's verdict: {}", to_string(v.kind));
  if (!v.detail.empty()) s += ": " + v.detail;
  s += "\n";
  if (!v.contract.ok()) s += "The change broke its contract:\n" + v.contract.summary() + "\n";
  if (!v.paths.empty()) s += fmt::format("It conflicts with the branch in: {}\n", fmt::join(v.paths, ", "));
  const check_result* failed = nullptr;
  for (const auto& c : v.checks)
    if (!c.passed()) failed = &c;
  if (failed) {
    s += fmt::format("The check '{}' {}", failed->command, failed->outcome());
    std::string log = failed->log;
    while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
    if (log.empty()) {
      s += " and printed nothing.\n";
    } else {
      // The end of the output is where compilers and test runners say what failed.
      std::size_t room = max_bytes > s.size() + 64 ? max_bytes - s.size() - 64 : 256;
      bool cut = log.size() > room;
      if (cut) {
        log = log.substr(log.size() - room);
        if (auto nl = log.find('\n'); nl != std::string::npos && nl < 200) log = log.substr(nl + 1);  // whole lines
      }
      s += fmt::format("; {} of its output:\n{}\n", cut ? "the end" : "all", log);
    }
  }
  return s;
}

void tag_invoke(json::value_from_tag, json::value& v, const gate_event& e) {
  v = json::value_from(e.verdict, v.storage());
  if (e.task) v.as_object()["task"] = e.task->str();
}
void tag_invoke(json::value_from_tag, json::value& v, const gate_step& e) {
  v = {{"step", e.step}, {"changes", strings(e.changes)}, {"detail", e.detail}};
}
void tag_invoke(json::value_from_tag, json::value& v, const branch_moved& e) {
  v = {{"branch", e.branch}, {"from", e.from.hex()}, {"to", e.to.hex()}, {"changes", strings(e.changes)}};
}

// --- the gate ---

class merge_gate::impl {
public:
  impl(store::store& s, git::worktree_pool& pool, gate_options o, git::repository queue_repo, git::repository submit_repo,
       git::repository tip_repo)
      : store_(s), pool_(pool), options_(std::move(o)), repo_(std::move(queue_repo)), submit_repo_(std::move(submit_repo)),
        tip_repo_(std::move(tip_repo)) {
    std::string name = options_.branch;
    if (name.starts_with("refs/heads/")) name = name.substr(11);
    for (char& ch : name)
      if (ch == '/') ch = '_';
    root_ = options_.prefix + name + "/";
    // Unique even where pids are not: two containers' gates are both pid 1,
    // and a restarted process may get the pid of the one that died.
    instance_ = options_.instance.empty()
                    ? fmt::format("pid-{}-{:08x}", ::getpid(), static_cast<std::uint32_t>(std::random_device{}()))
                    : options_.instance;
    if (options_.leader_ttl.count() < 1) options_.leader_ttl = std::chrono::seconds(1);
  }
  ~impl() { resign(); }

  std::string queue_prefix() const { return root_ + "queue/"; }
  std::string verdict_key(const std::string& id) const { return root_ + "verdict/" + id; }
  std::string landing_key() const { return root_ + "landing"; }
  std::string leader_key() const { return root_ + "leader"; }

  /// Takes or keeps the queue's leadership. On taking it, finishes what a
  /// previous leader left in flight.
  result<void> ensure_leader() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (lease_ == 0) {
        auto l = store_.grant(options_.leader_ttl);
        if (!l) return l.error();
        lease_ = *l;
      }
      auto kv = store_.get(leader_key());
      if (!kv) return kv.error();
      if (*kv && (*kv)->value == instance_ && (*kv)->lease == lease_) {
        auto ka = store_.keep_alive(lease_);
        if (ka) return recovered_ ? result<void>() : finish_predecessor();
        lease_ = 0;  // expired under us: take it again, as a newcomer
        continue;
      }
      if (*kv)
        return fail(error::in_use,
                    fmt::format("gate: the queue of '{}' is run by '{}'; if that gate died, its lease ends within "
                                "{} s and this one takes over",
                                options_.branch, (*kv)->value, options_.leader_ttl.count()));
      auto c = store_.commit(store::txn().if_absent(leader_key()).put(leader_key(), instance_, lease_));
      if (!c && c.error() == error::lease_not_found) {  // ours ran out while we waited: a new one
        lease_ = 0;
        continue;
      }
      if (!c) return c.error();
      if (!c->succeeded) continue;
      recovered_ = false;
      return finish_predecessor();
    }
    return fail(error::too_many_attempts, fmt::format("gate: could not take the queue of '{}'", options_.branch));
  }

  /// What a new leader does before its first landing. A failure is retried
  /// at the next call: the queue does not run past an unfinished landing.
  result<void> finish_predecessor() {
    if (auto r = sync_from_remote(); !r) return r;
    if (auto r = recover(); !r) return r;
    if (auto r = redo_board_updates(); !r) return r;
    recovered_ = true;
    return {};
  }

  void resign() {
    if (lease_) (void)store_.revoke(lease_);
    lease_ = 0;
  }
  std::string since_green_prefix() const { return root_ + "since_green/"; }
  /// landed/<commit>: the change and task a merge commit landed, so that a
  /// revert of it (rollback, optimistic auto-revert) reaches the task.
  std::string landed_key(const git::oid& commit) const { return root_ + "landed/" + commit.hex(); }

  /// The change and the task whose landing made `commit`. Merges older than
  /// the landed/ records are found on the board by their merged_as.
  std::pair<std::string, std::optional<task_id>> landed_by(const git::oid& commit) {
    if (auto kv = store_.get(landed_key(commit)); kv && *kv)
      if (auto j = parse_json((*kv)->value); j && j->is_object()) {
        auto change = json_field_or<std::string>(j->as_object(), "change", {});
        auto task = json_field_or<std::string>(j->as_object(), "task", {});
        return {change ? *change : std::string(), task && !task->empty() ? std::optional<task_id>(*task) : std::nullopt};
      }
    // The record was pruned (or the merge is older than the records): the
    // gate's own merge message names the change and the task.
    if (auto msg = repo_.commit_message(commit); msg && msg->starts_with("Merge ")) {
      std::string_view line(*msg);
      line = line.substr(6, line.find('\n') == std::string_view::npos ? std::string_view::npos : line.find('\n') - 6);
      auto space = line.find(' ');
      std::string change(line.substr(0, space));
      std::optional<task_id> task;
      if (space != std::string_view::npos) {
        auto rest = line.substr(space + 1);
        if (rest.starts_with("(task ") && rest.ends_with(")")) task = task_id(std::string(rest.substr(6, rest.size() - 7)));
      }
      if (validate_id(change).empty()) return {change, task};
    }
    return {};
  }

  /// What prune() forgets: see merge_gate::prune.
  result<prune_report> prune(std::size_t keep) {
    auto all = store_.range(root_ + "verdict/");
    if (!all) return all.error();
    auto pending = store_.range(root_ + "board_pending/");
    if (!pending) return pending.error();
    std::set<std::string> waited_for;  // changes the board has not heard of, or a worker waits on
    for (const auto& kv : pending->kvs) waited_for.insert(kv.key.substr(kv.key.rfind('/') + 1));
    if (options_.board) {
      auto submitted = options_.board->list(board::task_state::submitted);
      if (!submitted) return submitted.error();
      for (const auto& t : *submitted)
        if (t.result.is_object())
          if (auto* c = t.result.as_object().if_contains("change"); c && c->is_string())
            waited_for.insert(std::string(c->get_string()));
    }
    struct candidate {
      const store::key_value* kv;
      std::optional<git::oid> merged_as;
    };
    std::vector<candidate> decided;
    for (const auto& kv : all->kvs) {
      auto id = kv.key.substr(root_.size() + 8);
      if (waited_for.count(id)) continue;
      auto j = parse_json(kv.value);
      if (!j) continue;
      auto v = verdict_from_json(*j);
      if (!v || v->kind == verdict_kind::queued) continue;
      decided.push_back({&kv, v->merged_as});
    }
    prune_report out;
    if (decided.size() <= keep) return out;
    std::sort(decided.begin(), decided.end(),
              [](const candidate& a, const candidate& b) { return a.kv->mod_revision < b.kv->mod_revision; });
    decided.resize(decided.size() - keep);  // the oldest
    constexpr std::size_t chunk = store::max_txn_ops / 2;  // two operations each, at most
    for (std::size_t at = 0; at < decided.size(); at += chunk) {
      store::txn x;
      std::size_t verdicts = 0, landed = 0;
      for (std::size_t i = at; i < std::min(decided.size(), at + chunk); ++i) {
        // Only as read: a verdict rewritten since (a merge reverted) stays.
        x.if_version(decided[i].kv->key, decided[i].kv->version);
        x.erase(decided[i].kv->key);
        ++verdicts;
        if (decided[i].merged_as) {
          x.erase(landed_key(*decided[i].merged_as));
          ++landed;
        }
      }
      auto r = store_.commit(x);
      if (!r) return r.error();
      if (!r->succeeded) continue;  // changed under us: the next prune looks again
      out.verdicts += verdicts;
      out.landed += landed;
    }
    return out;
  }

  struct item {
    change c;
    std::string key;  // its queue key
  };

  // --- verdicts and events ---

  void step(std::string name, std::vector<std::string> changes, std::string detail = {}) {
    if (options_.events) options_.events->publish(gate_step{std::move(name), std::move(changes), std::move(detail)});
  }
  template <class Items>
  static std::vector<std::string> ids(const Items& items) {
    std::vector<std::string> out;
    for (const auto& x : items) out.push_back(x.it.c.id);
    return out;
  }

  std::string board_pending_key(const std::string& id) const { return root_ + "board_pending/" + id; }

  bool for_board(const change_verdict& v, const std::optional<task_id>& task) const {
    return options_.board && task && v.kind != verdict_kind::queued;
  }

  /// Adds to a verdict's transaction a note that the board still has to hear
  /// of it: a crash before announce() is finished by the next leader.
  void note_for_board(store::txn& x, const change_verdict& v, const std::optional<task_id>& task) const {
    if (for_board(v, task))
      x.put(board_pending_key(v.change_id),
            json::serialize(json::object{{"task", task->str()}, {"verdict", json::value_from(v)}}));
  }

  void tell_board(const task_id& task, const change_verdict& v) {
    board::task_state outcome = v.kind == verdict_kind::merged  ? board::task_state::merged
                                : v.kind == verdict_kind::error ? board::task_state::failed
                                                                : board::task_state::rejected;
    auto r = v.kind == verdict_kind::reverted ? options_.board->revert(task, json::value_from(v))
                                              : options_.board->finish(task, outcome, json::value_from(v));
    // Done, or not the board's to take (a task the host never submitted, or
    // already finished): either way there is nothing left to retry.
    if (r || r.error() == error::illegal_transition || r.error() == error::not_found)
      (void)store_.commit(store::txn().erase(board_pending_key(v.change_id)));
  }

  void announce(const change_verdict& v, const std::optional<task_id>& task) {
    if (options_.events) options_.events->publish(gate_event{v, task});
    if (for_board(v, task)) tell_board(*task, v);
  }

  /// Makes the board update noted for one change, if it is still pending.
  result<void> tell_board_if_pending(const std::string& id) {
    auto kv = store_.get(board_pending_key(id));
    if (!kv) return kv.error();
    if (!*kv) return {};
    auto j = parse_json((**kv).value);
    if (!j || !j->is_object()) return {};
    auto task = json_field<std::string>(j->as_object(), "task");
    auto it = j->as_object().find("verdict");
    if (!task || it == j->as_object().end()) return {};
    auto v = verdict_from_json(it->value());
    if (!v) return {};
    tell_board(task_id(*task), *v);
    return {};
  }

  /// The board updates a crashed leader had not made yet.
  result<void> redo_board_updates() {
    if (!options_.board) return {};
    auto pending = store_.range(root_ + "board_pending/");
    if (!pending) return pending.error();
    for (const auto& kv : pending->kvs) {
      auto j = parse_json(kv.value);
      if (!j || !j->is_object()) continue;
      auto task = json_field<std::string>(j->as_object(), "task");
      auto it = j->as_object().find("verdict");
      if (!task || it == j->as_object().end()) continue;
      auto v = verdict_from_json(it->value());
      if (!v) continue;
      tell_board(task_id(*task), *v);
    }
    return {};
  }

  /// Records a final verdict for a change that is not (or no longer) queued.
  result<change_verdict> decide(const change& c, change_verdict v, const std::string& queue_key = {}) {
    v.change_id = c.id;
    store::txn x;
    if (queue_key.empty()) {
      // From submit(): the first verdict for this id wins; a concurrent
      // submit of the same id must not overwrite it.
      x.if_absent(verdict_key(c.id));
    } else {
      // From the queue: only while the change is still queued.
      auto q = store_.get(queue_key);
      if (!q) return q.error();
      x.if_version(queue_key, *q ? (*q)->version : 0);
      x.erase(queue_key);
    }
    x.put(verdict_key(c.id), json::serialize(json::value_from(v)));
    note_for_board(x, v, c.task);
    auto r = store_.commit(x);
    if (!r) return r.error();
    if (!r->succeeded) {
      auto existing = verdict(c.id);
      if (!existing) return existing.error();
      if (*existing) return **existing;
      return fail(error::too_many_attempts, fmt::format("gate: the verdict for '{}' changed under us", c.id));
    }
    announce(v, c.task);
    return v;
  }

  result<std::vector<check_result>> run_checks(const std::vector<std::string>& commands, const git::oid& at, bool& passed,
                                               const std::vector<std::shared_ptr<check>>& host = {}) {
    passed = true;
    std::vector<check_result> out;
    if (commands.empty() && host.empty()) return out;
    auto wt = pool_.acquire(at, std::chrono::minutes(10));
    if (!wt) return wt.error();
    auto record = [&](result<check_result> r) -> error_info {
      if (!r) return r.error();
      passed = passed && r->passed();
      out.push_back(std::move(*r));
      return {};
    };
    check_options o = options_.check;
    o.working_directory = wt->path();
    o.sandbox.read_only.push_back(wt->git_dir());  // git works in the slot wherever the repository is
    for (const auto& cmd : commands) {
      if (lease_) (void)store_.keep_alive(lease_);  // a long run of checks keeps the queue's leadership
      if (auto e = record(process::run(cmd, o))) return e;
      if (!passed) return out;  // later checks would only repeat the bad news
    }
    for (const auto& h : host) {
      if (lease_) (void)store_.keep_alive(lease_);
      if (auto e = record(h->run(wt->path(), o))) return e;
      if (!passed) return out;
    }
    return out;
  }

  // The ceiling as a contract a change must also keep; its protected paths
  // open only where the change's own contract has the host's grant.
  result<contract::task_contract> ceiling_contract(const contract::task_contract& own) const {
    auto n = contract::narrow({}, *options_.ceiling);
    if (!n) return fail(error::invalid_argument, fmt::format("gate: the ceiling: {}", n.error().message()));
    auto bounds = std::move(n->contract);
    bounds.protected_allowed = own.protected_allowed;
    return bounds;
  }

  // --- submit ---

  result<change_verdict> submit(change c) {
    if (auto why = validate_id(c.id); !why.empty())
      return fail(error::invalid_argument, fmt::format("gate: change id: {}", why));
    if (auto existing = verdict(c.id); !existing) return existing.error();
    else if (*existing) return **existing;  // submitted before: idempotent
    change_verdict v;
    contract::diff d;
    {
      std::lock_guard lk(submit_mutex_);
      auto tip = submit_repo_.ref_target(options_.branch);
      if (!tip) return tip.error();
      if (!*tip)
        return fail(error::not_found, fmt::format("gate: branch '{}' does not exist", options_.branch));
      for (const auto* id : {&c.base, &c.head}) {
        if (auto t = submit_repo_.commit_tree(*id); !t)
          return decide(c, {c.id, verdict_kind::error,
                            fmt::format("commit {} cannot be read: {}", id->hex(), t.error().message())});
      }
      auto anc = submit_repo_.is_ancestor(c.base, **tip);
      if (!anc) return decide(c, {c.id, verdict_kind::error, anc.error().message()});
      if (!*anc)
        return decide(c, {c.id, verdict_kind::error,
                          fmt::format("base {} is not an ancestor of '{}' ({}); rebase the change onto the branch",
                                      c.base.hex(), options_.branch, tip->value().hex())});
      if (c.head != c.base) {
        // Landed before, under this id, and its verdict since pruned: it must
        // not land twice.
        auto landed = submit_repo_.is_ancestor(c.head, **tip);
        if (!landed) return decide(c, {c.id, verdict_kind::error, landed.error().message()});
        if (*landed)
          return decide(c, {c.id, verdict_kind::error,
                            fmt::format("commit {} is already on '{}': the change landed before (its verdict is no "
                                        "longer kept); make a new commit to change the branch again",
                                        c.head.hex(), options_.branch)});
      }
      auto diff = submit_repo_.diff(c.base, c.head);
      if (!diff) return decide(c, {c.id, verdict_kind::error, diff.error().message()});
      d = std::move(*diff);
    }
    auto cv = contract::check(c.contract, d);
    if (!cv) return decide(c, {c.id, verdict_kind::error, cv.error().message()});
    if (options_.ceiling && !c.revert_of) {  // a revert takes back what the gate landed
      auto bounds = ceiling_contract(c.contract);
      if (!bounds) return decide(c, {c.id, verdict_kind::error, bounds.error().message()});
      auto outside = contract::check(*bounds, d);
      if (!outside) return decide(c, {c.id, verdict_kind::error, outside.error().message()});
      for (auto& x : outside->violations) {
        bool known = std::find(cv->violations.begin(), cv->violations.end(), x) != cv->violations.end();
        if (known) continue;
        x.detail = "outside the host's ceiling: " + x.detail;
        cv->violations.push_back(std::move(x));
      }
    }
    step("contract_checked", {c.id}, fmt::format("{} files, {} lines, {} bytes written{}", d.files.size(),
                                                  d.changed_lines(), d.added_bytes(), cv->ok() ? "" : ": " + cv->summary()));
    if (!cv->ok()) {
      v.kind = verdict_kind::contract_violated;
      v.detail = cv->summary();
      v.contract = std::move(*cv);
      return decide(c, std::move(v));
    }
    bool passed = false;
    auto checks = run_checks(c.checks, c.head, passed, options_.host_fast_checks);
    if (!checks) return decide(c, {c.id, verdict_kind::error, checks.error().message()});
    if (!c.checks.empty()) step("fast_checks", {c.id}, passed ? "passed" : "failed");
    v.checks = std::move(*checks);
    if (!passed) {
      v.kind = verdict_kind::checks_failed;
      v.detail = fmt::format("'{}': {}", v.checks.back().command, v.checks.back().outcome());
      return decide(c, std::move(v));
    }
    // Only a change that passed here goes where the queue's leader finds it.
    if (auto r = publish_change(c); !r) return r.error();
    return enqueue(std::move(c), std::move(v));
  }

  // --- the change-ref protocol and the submitters' view of the branch ---

  static std::string change_ref(const std::string& id) { return "refs/agentcore/changes/" + id; }

  /// Puts a change's commit where a gate in another process finds it: the
  /// shared repository's refs/agentcore/changes/<id>. Nothing without a remote.
  result<void> publish_change(const change& c) {
    if (options_.remote.empty()) return {};
    std::lock_guard lk(submit_mutex_);
    const std::string ref = change_ref(c.id);
    auto made = submit_repo_.advance(ref, std::nullopt, c.head, "agentcore: change " + c.id);
    if (!made) return made.error();
    if (!made->advanced && made->current != c.head) {  // left by an earlier try of the same submission
      auto again = submit_repo_.advance(ref, made->current, c.head, "agentcore: change " + c.id);
      if (!again) return again.error();
    }
    auto pushed = submit_repo_.push(options_.remote, {"+" + ref + ":" + ref});
    if (!pushed)
      return error_info(pushed.error().code(), fmt::format("gate: publishing change '{}' to the shared repository '{}': {}",
                                                     c.id, options_.remote, pushed.error().message()));
    return {};
  }

  result<git::oid> tip() {
    // A handle of its own: a worker starting a task does not wait behind
    // another's submission (which holds submit_repo_ for its diff).
    std::lock_guard lk(tip_mutex_);
    if (!options_.remote.empty())  // the branch is the shared repository's
      if (auto f = tip_repo_.fetch(options_.remote, {"+" + options_.branch + ":" + options_.branch}); !f)
        return error_info(f.error().code(), fmt::format("gate: fetching '{}' from the shared repository '{}': {}",
                                                  options_.branch, options_.remote, f.error().message()));
    auto t = tip_repo_.ref_target(options_.branch);
    if (!t) return t.error();
    if (!*t) return fail(error::not_found, fmt::format("gate: branch '{}' does not exist", options_.branch));
    return **t;
  }

  // --- the async operations ---

  /// The executor of the blocking work: the host's, or a pool of the gate's own.
  asio::any_io_executor blocking_executor() {
    if (options_.blocking) return options_.blocking;
    std::lock_guard lk(pool_mutex_);
    if (!own_pool_) own_pool_ = std::make_unique<asio::thread_pool>(std::max(2u, std::thread::hardware_concurrency()));
    return own_pool_->get_executor();
  }

  asio::awaitable<result<change_verdict>> submit_op(change c) { co_return submit(std::move(c)); }
  asio::awaitable<result<std::vector<change_verdict>>> run_once_op() { co_return run_once(); }
  asio::awaitable<result<git::oid>> tip_op() { co_return tip(); }

  /// What a wait's cancellation reaches: the watcher it waits on.
  struct wait_state {
    std::mutex m;
    std::atomic<bool> canceled{false};
    store::watcher* watcher = nullptr;  // m
    void cancel() {
      std::lock_guard lk(m);
      canceled = true;
      if (watcher) watcher->cancel();
    }
  };

  static error_info wait_canceled(const std::string& id) {
    return fail(error::canceled, fmt::format("gate: the wait for change '{}' was canceled (the change stays with the "
                                             "gate; wait again for its verdict)",
                                             id));
  }

  /// The verdict a key-value holds (from a range or a watch), if it is final.
  static result<std::optional<change_verdict>> final_in(const store::key_value& kv) {
    auto j = parse_json(kv.value);
    if (!j) return j.error();
    auto v = verdict_from_json(*j);
    if (!v) return v.error();
    if (v->kind == verdict_kind::queued) return std::optional<change_verdict>();
    return std::optional<change_verdict>(std::move(*v));
  }

  /// Waits until the value at `key` (nullptr: absent) is `done`; the store
  /// is read once, then watched from there (read again when the watch falls
  /// behind the store's history).
  asio::awaitable<result<void>> wait_for_key(const std::string& key, wait_state& ws, const std::string& id,
                                             std::function<result<bool>(const store::key_value*)> done) {
    for (;;) {
      auto now = store_.range(key, {.limit = 1});
      if (!now) co_return now.error();
      bool here = !now->kvs.empty() && now->kvs.front().key == key;
      auto ok = done(here ? &now->kvs.front() : nullptr);
      if (!ok) co_return ok.error();
      if (*ok) co_return result<void>();
      auto w = store_.watch(key, now->rev + 1);
      if (!w) co_return w.error();
      {
        std::lock_guard lk(ws.m);
        if (ws.canceled) co_return wait_canceled(id);
        ws.watcher = w->get();
      }
      struct unhook {
        wait_state& s;
        ~unhook() {
          std::lock_guard lk(s.m);
          s.watcher = nullptr;
        }
      } unhooked{ws};
      for (bool behind = false; !behind;) {
        auto events = co_await (*w)->async_next(asio::use_awaitable);
        if (!events && events.error() == error::compacted) {
          behind = true;
          continue;
        }
        if (!events) co_return ws.canceled ? wait_canceled(id) : events.error();
        for (const auto& e : *events) {
          if (e.kv.key != key) continue;  // another key with this one as its prefix
          auto d = done(e.type == store::watch_event::kind::erase ? nullptr : &e.kv);
          if (!d) co_return d.error();
          if (*d) co_return result<void>();
        }
      }
    }
  }

  asio::awaitable<result<change_verdict>> wait_op(std::string id, std::shared_ptr<wait_state> ws) {
    std::optional<change_verdict> decided;
    auto got = co_await wait_for_key(verdict_key(id), *ws, id, [&](const store::key_value* kv) -> result<bool> {
      if (!kv)
        return result<bool>(boost::system::in_place_error,
                            fail(error::not_found, fmt::format("gate: no verdict for change '{}': it was never "
                                                               "submitted, or it was decided long ago and its record "
                                                               "pruned",
                                                               id)));
      auto d = final_in(*kv);
      if (!d) return result<bool>(boost::system::in_place_error, d.error());
      decided = std::move(*d);
      return decided.has_value();
    });
    if (!got) co_return got.error();
    // With a board, the wait ends once the board has the verdict too (the
    // waiter then reads a task that says what the verdict says): an update
    // the deciding gate has not made yet (it is on its way, or that gate
    // died or failed to make it), this one makes (the same update, once
    // either way), never waiting on another process for it.
    if (options_.board)
      if (auto r = tell_board_if_pending(id); !r) co_return r.error();
    co_return std::move(*decided);
  }

  result<change_verdict> enqueue(change c, change_verdict v) {
    v.change_id = c.id;
    v.kind = verdict_kind::queued;
    std::string key = fmt::format("{}{:04}/{:016x}/{}", queue_prefix(), 2000 - std::clamp(c.priority, -1000, 1000),
                                  static_cast<std::uint64_t>(now_us()), c.id);
    store::txn x;
    x.if_absent(verdict_key(c.id));
    x.put(key, json::serialize(json::value_from(c)));
    x.put(verdict_key(c.id), json::serialize(json::value_from(v)));
    auto r = store_.commit(x);
    if (!r) return r.error();
    if (!r->succeeded) {  // submitted concurrently under the same id
      auto existing = verdict(c.id);
      if (!existing) return existing.error();
      if (*existing) return **existing;
    }
    announce(v, c.task);
    return v;
  }

  result<std::optional<change_verdict>> verdict(const std::string& id) {
    auto kv = store_.get(verdict_key(id));
    if (!kv) return kv.error();
    if (!*kv) return std::optional<change_verdict>();
    auto j = parse_json((*kv)->value);
    if (!j) return j.error();
    auto v = verdict_from_json(*j);
    if (!v) return v.error();
    return std::optional<change_verdict>(std::move(*v));
  }

  result<std::vector<item>> read_queue(std::size_t limit) {
    auto r = store_.range(queue_prefix(), {.limit = limit});
    if (!r) return r.error();
    std::vector<item> out;
    for (auto& kv : r->kvs) {
      auto j = parse_json(kv.value);
      if (!j) return fail(error::corrupt, fmt::format("gate: queue entry '{}': {}", kv.key, j.error().message()));
      auto c = change_from_json(*j);
      if (!c) return fail(error::corrupt, fmt::format("gate: queue entry '{}': {}", kv.key, c.error().message()));
      out.push_back({std::move(*c), kv.key});
    }
    return out;
  }

  // --- landing ---

  struct built {
    item it;
    git::oid commit;
  };

  /// Applies `items` in order on top of `tip` in memory; conflicts get their
  /// verdict at once and drop out.
  result<std::vector<built>> build_chain(git::oid tip, std::vector<item>& items, std::vector<change_verdict>& out) {
    std::vector<built> chain;
    for (auto& it : items) {
      git::merge_result m;
      std::vector<git::oid> parents{tip};
      std::string message;
      if (it.c.revert_of) {
        auto ps = repo_.commit_parents(*it.c.revert_of);
        if (!ps || ps->empty()) {
          auto v = decide(it.c, {it.c.id, verdict_kind::error,
                                 fmt::format("cannot revert {}: it cannot be read or has no parent", it.c.revert_of->hex())},
                          it.key);
          if (!v) return v.error();
          out.push_back(std::move(*v));
          continue;
        }
        auto r = repo_.merge(*it.c.revert_of, tip, ps->front());
        if (!r) {
          auto v = decide(it.c, {it.c.id, verdict_kind::error, r.error().message()}, it.key);
          if (!v) return v.error();
          out.push_back(std::move(*v));
          continue;
        }
        m = std::move(*r);
        message = fmt::format("Revert {}\n\nchange: {}", it.c.revert_of->hex(), it.c.id);
      } else {
        auto r = repo_.merge(it.c.base, tip, it.c.head);
        if (!r) {
          auto v = decide(it.c, {it.c.id, verdict_kind::error, r.error().message()}, it.key);
          if (!v) return v.error();
          out.push_back(std::move(*v));
          continue;
        }
        m = std::move(*r);
        parents.push_back(it.c.head);
        message = fmt::format("Merge {}{}", it.c.id, it.c.task ? " (task " + it.c.task->str() + ")" : "");
      }
      if (!m.clean()) {
        change_verdict v{it.c.id, verdict_kind::conflict, {}};
        for (const auto& c : m.conflicts) v.paths.push_back(c.path);
        v.detail = fmt::format("{} conflicting paths, first '{}' ({})", m.conflicts.size(), m.conflicts[0].path,
                               git::to_string(m.conflicts[0].kind));
        auto d = decide(it.c, std::move(v), it.key);
        if (!d) return d.error();
        out.push_back(std::move(*d));
        continue;
      }
      auto commit = repo_.create_commit(*m.tree, parents, message, options_.committer);
      if (!commit) return commit.error();
      tip = *commit;
      chain.push_back({std::move(it), *commit});
    }
    return chain;
  }

  /// Moves the branch from `from` to the end of `chain`, recording the landing
  /// first so a crash in between is finished by recover().
  // (Not result<bool>: bool is constructible from error_info, which makes
  // boost::system::result<bool, error_info> unable to take an error implicitly.)
  enum class landed { yes, branch_moved };
  result<landed> advance(const git::oid& from, const std::vector<built>& chain, std::vector<change_verdict>& out,
                         bool optimistic) {
    const git::oid& to = chain.back().commit;
    json::array entries;
    for (const auto& b : chain)
      entries.push_back(json::object{{"change", b.it.c.id}, {"key", b.it.key}, {"commit", b.commit.hex()}});
    json::object landing{{"from", from.hex()}, {"to", to.hex()}, {"changes", entries}, {"optimistic", optimistic}};
    // Checks can outlast the leader lease: renew (or re-take) leadership now,
    // and write the landing only while the leader key is still ours.
    if (auto r = ensure_leader(); !r) return r.error();
    auto leader = store_.get(leader_key());
    if (!leader) return leader.error();
    if (!*leader || (*leader)->value != instance_)
      return fail(error::in_use, fmt::format("gate: lost the queue of '{}' during checks", options_.branch));
    auto put = store_.commit(store::txn()
                                 .if_version(leader_key(), (*leader)->version)
                                 .put(landing_key(), json::serialize(landing)));
    if (!put) return put.error();
    if (!put->succeeded)
      return fail(error::in_use, fmt::format("gate: lost the queue of '{}' during checks", options_.branch));
    step("landing", ids(chain), fmt::format("{} -> {}", from.hex(), to.hex()));
    auto moved = move_branch(from, to, fmt::format("gate: {} change(s)", chain.size()));
    if (!moved) return moved.error();
    if (!moved->advanced) {
      if (auto r = store_.commit(store::txn().erase(landing_key())); !r) return r.error();
      return landed::branch_moved;  // the caller rebuilds on the new tip
    }
    auto done = finish_landing(landing, out);
    if (!done) return done.error();
    return landed::yes;
  }

  result<void> finish_landing(const json::object& landing, std::vector<change_verdict>& out) {
    // The record is ours, but it came from disk: a damaged one is a clear
    // error, not an exception out of the queue.
    try {
      return finish_landing_checked(landing, out);
    } catch (const std::exception& e) {
      return fail(error::corrupt, fmt::format("gate: landing record '{}' is damaged ({}); inspect it, then erase it "
                                              "to let the queue run again",
                                              landing_key(), e.what()));
    }
  }

  result<void> finish_landing_checked(const json::object& landing, std::vector<change_verdict>& out) {
    store::txn x;
    std::vector<std::pair<change_verdict, std::optional<task_id>>> made, reverted;
    branch_moved ev{options_.branch, {}, {}, {}};
    ev.from = git::oid::from_hex(landing.at("from").as_string()).value();
    ev.to = git::oid::from_hex(landing.at("to").as_string()).value();
    bool optimistic = landing.at("optimistic").as_bool();
    for (const auto& e : landing.at("changes").as_array()) {
      const auto& o = e.as_object();
      std::string id(o.at("change").as_string());
      std::string key(o.at("key").as_string());
      auto commit = git::oid::from_hex(o.at("commit").as_string()).value();
      std::optional<task_id> task;
      std::optional<git::oid> revert_of;
      if (auto kv = store_.get(key); kv && *kv) {
        if (auto j = parse_json((*kv)->value); j)
          if (auto c = change_from_json(*j); c) task = c->task, revert_of = c->revert_of;
      }
      change_verdict v{id, verdict_kind::merged, fmt::format("landed on '{}'", options_.branch)};
      v.merged_as = commit;
      x.erase(key);
      x.put(verdict_key(id), json::serialize(json::value_from(v)));
      note_for_board(x, v, task);
      if (task) x.put(landed_key(commit), json::serialize(json::object{{"change", id}, {"task", task->str()}}));
      if (revert_of) {
        // A rollback landed: the task whose merge it takes back says so.
        auto [original, original_task] = landed_by(*revert_of);
        std::string reason;
        if (auto before = verdict(id); before && *before) reason = (*before)->detail;
        change_verdict rv{original.empty() ? "merge-" + revert_of->hex().substr(0, 12) : original,
                          verdict_kind::reverted,
                          fmt::format("its merge {} was reverted by {}{}", revert_of->hex(), commit.hex(),
                                      reason.empty() ? std::string() : ": " + reason)};
        rv.merged_as = commit;
        note_for_board(x, rv, original_task);
        reverted.emplace_back(std::move(rv), original_task);
      }
      if (optimistic) x.put(fmt::format("{}{:016x}/{}", since_green_prefix(), static_cast<std::uint64_t>(now_us()), id), commit.hex());
      ev.changes.push_back(id);
      made.emplace_back(std::move(v), task);
    }
    x.erase(landing_key());
    auto r = store_.commit(x);
    if (!r) return r.error();
    if (options_.events) options_.events->publish(ev);
    for (auto& [v, task] : made) {
      announce(v, task);
      out.push_back(v);
    }
    for (auto& [v, task] : reverted) announce(v, task);  // news of earlier changes, not verdicts of this landing
    return {};
  }

  /// serial and batch: land `items` with deep checks, bisecting on failure.
  result<git::oid> branch_tip() {
    auto tip = repo_.ref_target(options_.branch);
    if (!tip) return tip.error();
    if (!*tip) return fail(error::not_found, fmt::format("gate: branch '{}' does not exist", options_.branch));
    return **tip;
  }

  result<void> land(std::vector<item> items, std::vector<change_verdict>& out, int depth = 0) {
    for (int attempt = 0; attempt < 16 && !items.empty(); ++attempt) {
      auto tip = repo_.ref_target(options_.branch);
      if (!tip) return tip.error();
      if (!*tip) return fail(error::not_found, fmt::format("gate: branch '{}' does not exist", options_.branch));
      auto chain = build_chain(**tip, items, out);
      if (!chain) return chain.error();
      if (chain->empty()) return {};
      step("merged_in_memory", ids(*chain), chain->back().commit.hex());
      bool passed = false;
      auto checks = run_checks(options_.deep_checks, chain->back().commit, passed, options_.host_deep_checks);
      if (!checks) return checks.error();
      if (!options_.deep_checks.empty() || !options_.host_deep_checks.empty()) step("deep_checks", ids(*chain), passed ? "passed" : "failed");
      if (passed) {
        auto moved = advance(**tip, *chain, out, false);
        if (!moved) return moved.error();
        if (*moved == landed::yes) return {};
        items.clear();  // the branch moved: merge the same changes onto the new tip
        for (auto& b : *chain) items.push_back(std::move(b.it));
        continue;
      }
      if (chain->size() == 1) {
        change_verdict v{chain->front().it.c.id, verdict_kind::deep_checks_failed, {}};
        v.detail = fmt::format("'{}': {}", checks->back().command, checks->back().outcome());
        v.checks = std::move(*checks);
        auto d = decide(chain->front().it.c, std::move(v), chain->front().it.key);
        if (!d) return d.error();
        out.push_back(std::move(*d));
        return {};
      }
      step("bisect", ids(*chain), fmt::format("{} changes failed together: splitting", chain->size()));
      // Bisect: land the first half (itself bisected if need be), then the rest.
      std::vector<item> left, right;
      for (std::size_t i = 0; i < chain->size(); ++i)
        (i < chain->size() / 2 ? left : right).push_back(std::move((*chain)[i].it));
      if (auto r = land(std::move(left), out, depth + 1); !r) return r;
      return land(std::move(right), out, depth + 1);
    }
    return {};
  }

  /// optimistic: land one change without deep checks; every K merges check
  /// the branch and revert the culprit of a failure.
  result<void> land_optimistic(item it, std::vector<change_verdict>& out) {
    std::vector<item> items{std::move(it)};
    for (int attempt = 0; attempt < 16 && !items.empty(); ++attempt) {
      auto tip = branch_tip();
      if (!tip) return tip.error();
      auto chain = build_chain(*tip, items, out);
      if (!chain) return chain.error();
      if (chain->empty()) return {};
      auto moved = advance(*tip, *chain, out, true);
      if (!moved) return moved.error();
      if (*moved == landed::yes) break;
      items.clear();
      for (auto& b : *chain) items.push_back(std::move(b.it));
    }
    auto since = store_.range(since_green_prefix());
    if (!since) return since.error();
    if (since->kvs.size() < std::max<std::size_t>(options_.optimistic_every, 1)) return {};
    return check_branch(out);
  }

  result<void> check_branch(std::vector<change_verdict>& out) {
    for (int round = 0; round < 8; ++round) {
      auto tip_r = branch_tip();
      if (!tip_r) return tip_r.error();
      std::optional<git::oid> tip = *tip_r;
      auto since = store_.range(since_green_prefix());
      if (!since) return since.error();
      bool passed = false;
      auto checks = run_checks(options_.deep_checks, *tip, passed, options_.host_deep_checks);
      if (!checks) return checks.error();
      if (passed) {
        store::txn x;
        for (const auto& kv : since->kvs) x.erase(kv.key);
        if (!x.ops.empty())
          if (auto r = store_.commit(x); !r) return r.error();
        return {};
      }
      if (since->kvs.empty()) return {};  // broken before any optimistic merge: nothing to revert
      // Bisect the merges since the last green commit for the first bad one.
      std::size_t lo = 0, hi = since->kvs.size() - 1;
      while (lo < hi) {
        std::size_t mid = (lo + hi) / 2;
        auto at = git::oid::from_hex(since->kvs[mid].value);
        if (!at) return at.error();
        bool ok = false;
        auto c = run_checks(options_.deep_checks, *at, ok, options_.host_deep_checks);
        if (!c) return c.error();
        if (ok) lo = mid + 1;
        else hi = mid;
      }
      const auto& culprit = since->kvs[lo];
      auto culprit_commit = git::oid::from_hex(culprit.value);
      if (!culprit_commit) return culprit_commit.error();
      std::string culprit_id = culprit.key.substr(culprit.key.rfind('/') + 1);
      auto ps = repo_.commit_parents(*culprit_commit);
      if (!ps) return ps.error();
      auto r = repo_.merge(*culprit_commit, *tip, ps->front());
      if (!r) return r.error();
      if (!r->clean())
        return fail(error::invalid_argument,
                    fmt::format("gate: the culprit {} ({}) cannot be reverted cleanly; the branch needs a person",
                                culprit_id, culprit_commit->hex()));
      auto revert = repo_.create_commit(*r->tree, {*tip}, fmt::format("Revert {}\n\nchange: {} broke the deep checks",
                                                                       culprit_commit->hex(), culprit_id),
                                        options_.committer);
      if (!revert) return revert.error();
      auto moved = move_branch(*tip, *revert, "gate: revert " + culprit_id);
      if (!moved) return moved.error();
      if (!moved->advanced) continue;  // someone moved the branch: look again
      if (options_.events) options_.events->publish(branch_moved{options_.branch, *tip, *revert, {culprit_id}});
      change_verdict v{culprit_id, verdict_kind::reverted,
                       fmt::format("its merge {} broke the deep checks after landing; reverted by {}",
                                   culprit_commit->hex(), revert->hex())};
      v.merged_as = *revert;
      v.checks = std::move(*checks);
      auto culprit_task = landed_by(*culprit_commit).second;
      store::txn x;
      x.erase(culprit.key);
      x.put(verdict_key(culprit_id), json::serialize(json::value_from(v)));
      note_for_board(x, v, culprit_task);
      if (auto c = store_.commit(x); !c) return c.error();
      announce(v, culprit_task);
      out.push_back(std::move(v));
    }
    return {};
  }

  result<std::vector<change_verdict>> run_once() {
    std::lock_guard lk(run_mutex_);
    if (auto r = ensure_leader(); !r) return r.error();
    if (auto r = sync_from_remote(); !r) return r.error();
    std::size_t take = options_.mode == policy::batch ? std::max<std::size_t>(options_.batch_size, 1) : 1;
    auto items = read_queue(take);
    if (!items) return items.error();
    std::vector<change_verdict> out;
    if (items->empty()) return out;
    if (options_.mode == policy::batch && options_.batch_wait.count() > 0 && items->size() < take) {
      // Not full yet: wait for company until the oldest has waited batch_wait.
      auto now = std::chrono::steady_clock::now();
      auto oldest = now;
      for (const auto& it : *items) oldest = std::min(oldest, first_seen_.try_emplace(it.c.id, now).first->second);
      if (now - oldest < options_.batch_wait) return out;
    }
    for (const auto& it : *items) first_seen_.erase(it.c.id);
    if (options_.mode == policy::optimistic) {
      if (auto r = land_optimistic(std::move(items->front()), out); !r) return r.error();
    } else {
      if (auto r = land(std::move(*items), out); !r) return r.error();
    }
    forget_changes(out);
    return out;
  }

  // --- the shared repository (options_.remote) ---

  std::string remote_tracking_ref() const { return "refs/agentcore/remote/" + options_.branch.substr(5); }

  /// Brings the branch and the submitted changes from the shared repository:
  /// the shared branch is the truth (a landing counts once it is there).
  result<void> sync_from_remote() {
    if (options_.remote.empty()) return {};
    auto f = repo_.fetch(options_.remote, {"+" + options_.branch + ":" + remote_tracking_ref(),
                                           "+refs/agentcore/changes/*:refs/agentcore/changes/*"});
    if (!f) return f.error();
    auto shared = repo_.ref_target(remote_tracking_ref());
    if (!shared) return shared.error();
    if (!*shared)
      return fail(error::not_found, fmt::format("gate: the shared repository '{}' has no branch '{}'; push it there "
                                                "first",
                                                options_.remote, options_.branch));
    auto local = repo_.ref_target(options_.branch);
    if (!local) return local.error();
    if (*local == *shared) return {};
    auto moved = repo_.advance(options_.branch, *local, **shared, "gate: from the shared repository");
    if (!moved) return moved.error();
    return {};
  }

  /// Moves the branch from `from` to `to`: in the shared repository first (a
  /// fast-forward push: refused when it moved meanwhile), then here.
  result<git::advance_result> move_branch(const git::oid& from, const git::oid& to, std::string_view log) {
    if (!options_.remote.empty()) {
      const std::string staging = "refs/agentcore/landing";
      auto cur = repo_.ref_target(staging);
      if (!cur) return cur.error();
      auto set = repo_.advance(staging, *cur, to, log);
      if (!set) return set.error();
      auto pushed = repo_.push(options_.remote, {staging + ":" + options_.branch});
      if (!pushed && pushed.error() == error::already_exists) {
        if (auto r = sync_from_remote(); !r) return r.error();
        auto now = repo_.ref_target(options_.branch);
        if (!now) return now.error();
        return git::advance_result{false, *now};
      }
      if (!pushed) return pushed.error();
    }
    auto moved = repo_.advance(options_.branch, from, to, log);
    // Already there (this process's worker fetched the shared branch): moved.
    if (moved && !moved->advanced && moved->current == to) return git::advance_result{true, to};
    return moved;
  }

  /// Removes decided changes' refs from the shared repository (best effort:
  /// a leftover ref costs a little space, nothing else).
  void forget_changes(const std::vector<change_verdict>& decided) {
    if (options_.remote.empty()) return;
    std::vector<std::string> specs;
    for (const auto& v : decided)
      if (v.kind != verdict_kind::queued) specs.push_back(":refs/agentcore/changes/" + v.change_id);
    if (!specs.empty()) (void)repo_.push(options_.remote, specs);
  }

  /// Finishes a landing a crash interrupted: if the branch contains it, record
  /// it; otherwise drop the record and let the changes run again.
  result<void> recover() {
    auto kv = store_.get(landing_key());
    if (!kv) return kv.error();
    if (!*kv) return {};
    auto j = parse_json((*kv)->value);
    if (!j || !j->is_object()) return fail(error::corrupt, fmt::format("gate: landing record '{}' is not JSON", landing_key()));
    auto to_field = json_field<std::string>(j->as_object(), "to", "gate: landing record");
    if (!to_field) return fail(error::corrupt, to_field.error().message());
    auto to = git::oid::from_hex(*to_field);
    if (!to) return fail(error::corrupt, to.error().message());
    auto tip = repo_.ref_target(options_.branch);
    if (!tip) return tip.error();
    bool landed = false;
    if (*tip) {
      auto a = repo_.is_ancestor(*to, **tip);
      if (!a) return a.error();  // unknown is not "not landed": erasing the record could land it twice
      landed = *a;
    }
    if (!landed) {
      auto r = store_.commit(store::txn().erase(landing_key()));
      if (!r) return r.error();
      return {};
    }
    std::vector<change_verdict> out;
    auto r = finish_landing(j->as_object(), out);
    if (r) step("recovered", [&] {
      std::vector<std::string> v;
      for (const auto& x : out) v.push_back(x.change_id);
      return v;
    }(), "finished a landing a crash interrupted");
    return r;
  }

  store::store& store_;
  git::worktree_pool& pool_;
  gate_options options_;
  git::repository repo_;         // the queue's (run_mutex_)
  git::repository submit_repo_;  // submit()'s (submit_mutex_)
  git::repository tip_repo_;     // tip()'s (tip_mutex_)
  std::mutex run_mutex_, submit_mutex_, tip_mutex_;
  std::string root_;
  std::string instance_;
  store::lease_id lease_ = 0;  // run_mutex_
  bool recovered_ = false;     // run_mutex_: the previous leader's work is finished
  std::map<std::string, std::chrono::steady_clock::time_point> first_seen_;  // run_mutex_: for batch_wait
  std::mutex pool_mutex_;
  std::unique_ptr<asio::thread_pool> own_pool_;  // last: joined before the rest goes
};

result<std::unique_ptr<merge_gate>> merge_gate::open(const std::filesystem::path& repository, store::store& s,
                                                     git::worktree_pool& pool, gate_options options) {
  auto a = git::repository::open(repository);
  if (!a) return a.error();
  auto b = git::repository::open(repository);
  if (!b) return b.error();
  auto c = git::repository::open(repository);
  if (!c) return c.error();
  auto p = std::make_unique<impl>(s, pool, std::move(options), std::move(*a), std::move(*b), std::move(*c));
  return std::unique_ptr<merge_gate>(new merge_gate(std::move(p)));
}

merge_gate::merge_gate(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
merge_gate::~merge_gate() = default;

result<change_verdict> merge_gate::submit(change c) { return impl_->submit(std::move(c)); }
result<std::vector<change_verdict>> merge_gate::run_once() { return impl_->run_once(); }

result<std::vector<change_verdict>> merge_gate::run_until_empty() {
  std::vector<change_verdict> all;
  for (;;) {
    auto r = impl_->run_once();
    if (!r) return r.error();
    if (r->empty()) {
      auto left = queued();
      if (!left) return left.error();
      if (*left == 0) return all;
      // A batch waiting for company (batch_wait): look again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (auto& v : *r) all.push_back(std::move(v));
  }
}

result<change_verdict> merge_gate::rollback(const git::oid& merged, std::string reason) {
  change c;
  c.id = fmt::format("revert-{}-{:x}", merged.hex().substr(0, 12), static_cast<std::uint64_t>(now_us()));
  c.base = merged;
  c.head = merged;
  c.priority = 1000;  // ahead of normal work
  c.revert_of = merged;
  change_verdict v;
  v.detail = std::move(reason);
  return impl_->enqueue(std::move(c), std::move(v));
}

result<std::optional<change_verdict>> merge_gate::verdict(const std::string& change_id) {
  return impl_->verdict(change_id);
}

result<prune_report> merge_gate::prune(std::size_t keep) { return impl_->prune(keep); }

result<git::oid> merge_gate::tip() { return impl_->tip(); }

namespace {
template <class R>
auto on_exception(std::string what_op) {
  return [what_op = std::move(what_op)](const std::string& what) -> R {
    return fail(error::io_error, fmt::format("gate: {} failed: {}", what_op, what));
  };
}
}  // namespace

void merge_gate::do_async_submit(change c, asio::any_completion_handler<verdict_signature> handler) {
  auto ex = impl_->blocking_executor();
  detail::spawn_operation(ex, ex, impl_->submit_op(std::move(c)), std::move(handler),
                          on_exception<result<change_verdict>>("submitting"));
}

void merge_gate::do_async_run_once(asio::any_completion_handler<step_signature> handler) {
  auto ex = impl_->blocking_executor();
  detail::spawn_operation(ex, ex, impl_->run_once_op(), std::move(handler),
                          on_exception<result<std::vector<change_verdict>>>("a step of the queue"));
}

void merge_gate::do_async_tip(asio::any_completion_handler<tip_signature> handler) {
  auto ex = impl_->blocking_executor();
  detail::spawn_operation(ex, ex, impl_->tip_op(), std::move(handler), on_exception<result<git::oid>>("reading the branch"));
}

void merge_gate::do_async_wait_verdict(std::string id, asio::any_completion_handler<verdict_signature> handler) {
  auto ex = impl_->blocking_executor();
  auto ws = std::make_shared<impl::wait_state>();
  // The handler's cancellation reaches the watcher (the change stays queued).
  auto slot = asio::get_associated_cancellation_slot(handler);
  if (slot.is_connected()) slot.assign([ws](asio::cancellation_type) { ws->cancel(); });
  auto op = impl_->wait_op(id, ws);
  detail::spawn_operation(ex, ex, std::move(op), std::move(handler),
                          on_exception<result<change_verdict>>("waiting for a verdict"));
}

result<std::size_t> merge_gate::queued() const {
  auto r = impl_->store_.range(impl_->queue_prefix());
  if (!r) return r.error();
  return r->kvs.size();
}

}  // namespace agentcore::gate
