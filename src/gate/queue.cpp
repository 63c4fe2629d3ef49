// The merge gate's queue in the store: submitting a change (its contract and
// fast checks), queue entries and verdicts, waiting for a verdict, and
// telling the event bus and the board.
#include "gate/merge_gate_impl.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <set>

namespace agentcore::gate {

using gate_detail::now_us;

// --- verdicts and events ---

/// Adds to a verdict's transaction a note that the board still has to hear
/// of it: a crash before announce() is finished by the next leader.
void merge_gate::impl::note_for_board(store::txn& x, const change_verdict& v,
                                      const std::optional<task_id>& task) const {
  if (for_board(v, task))
    x.put(board_pending_key(v.change_id),
          json::serialize(json::object{{"task", task->str()}, {"verdict", json::value_from(v)}}));
}

void merge_gate::impl::tell_board(const task_id& task, const change_verdict& v) {
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

void merge_gate::impl::announce(const change_verdict& v, const std::optional<task_id>& task) {
  if (options_.events) options_.events->publish(gate_event{v, task});
  if (for_board(v, task)) tell_board(*task, v);
}

/// Makes the board update noted for one change, if it is still pending.
result<void> merge_gate::impl::tell_board_if_pending(const std::string& id) {
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

/// Records a final verdict for a change that is not (or no longer) queued.
result<change_verdict> merge_gate::impl::decide(const change& c, change_verdict v, const std::string& queue_key) {
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

result<std::vector<check_result>> merge_gate::impl::run_checks(const std::vector<std::string>& commands,
                                                               const git::oid& at, bool& passed,
                                                               const std::vector<std::shared_ptr<check>>& host) {
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
result<contract::task_contract> merge_gate::impl::ceiling_contract(const contract::task_contract& own) const {
  auto n = contract::narrow({}, *options_.ceiling);
  if (!n) return fail(error::invalid_argument, fmt::format("gate: the ceiling: {}", n.error().message()));
  auto bounds = std::move(n->contract);
  bounds.protected_allowed = own.protected_allowed;
  return bounds;
}

// --- submit ---

result<change_verdict> merge_gate::impl::submit(change c) {
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

result<change_verdict> merge_gate::impl::enqueue(change c, change_verdict v) {
  v.change_id = c.id;
  v.kind = verdict_kind::queued;
  std::string key = fmt::format("{}{:04}/{:016x}/{}", queue_prefix(), queue_policy::rank(c.priority),
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

result<std::optional<change_verdict>> merge_gate::impl::verdict(const std::string& id) {
  auto kv = store_.get(verdict_key(id));
  if (!kv) return kv.error();
  if (!*kv) return std::optional<change_verdict>();
  auto j = parse_json((*kv)->value);
  if (!j) return j.error();
  auto v = verdict_from_json(*j);
  if (!v) return v.error();
  return std::optional<change_verdict>(std::move(*v));
}

result<std::vector<merge_gate::impl::item>> merge_gate::impl::read_queue(std::size_t limit) {
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

/// What prune() forgets: see merge_gate::prune.
result<prune_report> merge_gate::impl::prune(std::size_t keep) {
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

// --- waiting for a verdict ---

error_info merge_gate::impl::wait_canceled(const std::string& id) {
  return fail(error::canceled, fmt::format("gate: the wait for change '{}' was canceled (the change stays with the "
                                           "gate; wait again for its verdict)",
                                           id));
}

/// The verdict a key-value holds (from a range or a watch), if it is final.
result<std::optional<change_verdict>> merge_gate::impl::final_in(const store::key_value& kv) {
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
asio::awaitable<result<void>> merge_gate::impl::wait_for_key(
    const std::string& key, wait_state& ws, const std::string& id,
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

asio::awaitable<result<change_verdict>> merge_gate::impl::wait_op(std::string id, std::shared_ptr<wait_state> ws) {
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

}  // namespace agentcore::gate
