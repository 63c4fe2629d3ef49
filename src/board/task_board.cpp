#include <agentcore/board/task_board.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <set>

namespace agentcore::board {

namespace {


std::string last_component(std::string_view key) {
  auto slash = key.rfind('/');
  return std::string(slash == std::string_view::npos ? key : key.substr(slash + 1));
}

bool same_content(const task& a, const task& b) {
  return a.title == b.title && a.description == b.description && a.subsystem == b.subsystem &&
         a.priority == b.priority && a.dependencies == b.dependencies && a.contract == b.contract &&
         a.parent == b.parent;
}

error_info gave_up(std::string_view what, const task_id& id, int attempts) {
  return fail(error::too_many_attempts,
              fmt::format("board: {} of task '{}' lost {} optimistic races in a row; the board is too contended: "
                          "retry later or raise board_options::max_attempts",
                          what, id.str(), attempts));
}

// What one try of a compare-and-swap loop came to: the answer (a value or an
// error), or `again` when a compare failed because someone wrote meanwhile.
template <class T>
struct attempt {
  std::optional<result<T>> answer;
  attempt(std::nullopt_t) {}
  attempt(error_info e) : answer(result<T>(std::move(e))) {}
  attempt(T v) : answer(result<T>(std::move(v))) {}
};
constexpr std::nullopt_t again = std::nullopt;

// The board's compare-and-swap loop: `once` reads what it needs, checks it
// and commits a transaction guarded by the versions it read; a try lost to
// a concurrent writer runs again on fresh reads, `attempts` times at most.
template <class T, class F>
result<T> until_committed(int attempts, std::string_view what, const task_id& id, F once) {
  for (int i = 0; i < attempts; ++i)
    if (attempt<T> a = once(); a.answer) return std::move(*a.answer);
  return gave_up(what, id, attempts);
}

error_info too_big(std::string_view what, const task_id& id, const store::txn& x) {
  return fail(error::invalid_argument,
              fmt::format("board: {} of task '{}' touches {} keys in one transaction; the store allows {}: "
                          "use fewer children or dependents",
                          what, id.str(), x.ops.size(), store::max_txn_ops));
}

}  // namespace

void tag_invoke(json::value_from_tag, json::value& v, const task_transition& t) {
  v = {{"id", t.id.str()},
       {"from", to_string(t.from)},
       {"to", to_string(t.to)},
       {"worker", t.worker ? json::value(t.worker->str()) : json::value(nullptr)},
       {"revision", t.rev},
       {"created", t.created}};
}

task_board::task_board(store::store& s, board_options options) : store_(s), options_(std::move(options)) {
  if (options_.shards == 0) options_.shards = 1;
  if (options_.shards > 256) options_.shards = 256;
  if (options_.claim_window == 0) options_.claim_window = 1;
  if (options_.max_attempts < 1) options_.max_attempts = 1;
  rng_.seed(options_.seed ? *options_.seed : std::random_device{}());
}

std::int64_t task_board::now_us() const {
  if (options_.clock)
    return std::chrono::duration_cast<std::chrono::microseconds>(options_.clock->now().time_since_epoch()).count();
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

board_stats task_board::stats() const noexcept { return {claims_.load(), conflicts_.load()}; }

std::uint64_t task_board::random(std::uint64_t bound) {
  std::lock_guard lock(rng_mutex_);
  return std::uniform_int_distribution<std::uint64_t>(0, bound - 1)(rng_);
}

std::string task_board::ready_key(const task& t) const {
  // FNV-1a, not std::hash: every process sharing a board must agree on the key.
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : t.id.str()) h = (h ^ c) * 0x100000001b3ULL;
  auto shard = h % options_.shards;
  return fmt::format("{}ready/{:04}/{:02x}/{:016x}/{}", options_.prefix, max_priority - t.priority, shard,
                     static_cast<std::uint64_t>(t.ready_since_us), t.id.str());
}

void task_board::add_ready(store::txn& x, task& t) {
  t.ready_since_us = now_us();
  x.put(ready_key(t), "");
}

void task_board::publish(const task_id& id, task_state from, task_state to, const std::optional<worker_id>& w,
                         store::revision rev, bool created) {
  if (options_.events) options_.events->publish(task_transition{id, from, to, w, rev, created});
}

result<std::optional<task_board::loaded>> task_board::load(const task_id& id) {
  auto kv = store_.get(task_key(id));
  if (!kv) return kv.error();
  if (!*kv) return std::optional<loaded>();
  auto t = task_from_json(std::string_view((*kv)->value));
  if (!t)
    return error_info(t.error().code(), fmt::format("board: stored task '{}' (key '{}') does not parse: {}", id.str(),
                                              (*kv)->key, t.error().message()));
  return std::optional<loaded>(loaded{std::move(*t), (*kv)->version});
}

result<std::optional<task>> task_board::get(const task_id& id) {
  auto l = load(id);
  if (!l) return l.error();
  if (!*l) {
    if (options_.archive) return options_.archive->get(id);
    return std::optional<task>();
  }
  return std::optional<task>(std::move((*l)->t));
}

result<std::optional<task>> task_board::archived_merge_titled(std::string_view title) {
  if (!options_.archive) return std::optional<task>();
  return options_.archive->find_title(title_key(title), task_state::merged);
}

result<void> task_board::verify_archive() {
  if (!options_.archive) return {};
  auto recorded = store_.get(archive_key());
  if (!recorded) return recorded.error();
  if (!*recorded) return {};
  auto id = options_.archive->identity();
  if (!id) return id.error();
  if (*id == (*recorded)->value) return {};
  return fail(error::corrupt,
              fmt::format("board: the archive {} is not the one this board moved its finished tasks to ({} is {}, "
                          "the board's was {}): it was deleted or replaced, and the tasks it held (merged work the "
                          "planners must not redo) are gone from view. Restore it from a backup",
                          options_.archive->where(), options_.archive->where(), id->empty() ? "missing" : *id,
                          (*recorded)->value));
}

result<std::size_t> task_board::archive_finished(std::size_t keep) {
  if (!options_.archive) return std::size_t{0};
  if (auto ok = verify_archive(); !ok) return ok.error();
  auto identity = options_.archive->identity();
  if (!identity) return identity.error();
  auto r = store_.range(options_.prefix + "task/");
  if (!r) return r.error();
  struct finished {
    task t;
    std::string key;
    std::int64_t version;
    store::revision mod;
  };
  std::vector<finished> done;
  for (auto& kv : r->kvs) {
    auto t = task_from_json(std::string_view(kv.value));
    if (!t)
      return error_info(t.error().code(), fmt::format("board: stored task at key '{}' does not parse: {}", kv.key,
                                                      t.error().message()));
    if (t->state != task_state::merged && t->state != task_state::superseded) continue;
    done.push_back({std::move(*t), kv.key, kv.version, kv.mod_revision});
  }
  if (done.size() <= keep) return std::size_t{0};
  // The oldest first (by the revision that finished them); the newest `keep` stay.
  std::sort(done.begin(), done.end(), [](const auto& a, const auto& b) { return a.mod < b.mod; });
  done.resize(done.size() - keep);
  std::size_t moved = 0;
  for (std::size_t at = 0; at < done.size();) {
    std::size_t end = std::min(done.size(), at + 256);
    std::vector<task> batch;
    for (std::size_t i = at; i < end; ++i) batch.push_back(done[i].t);
    // In the archive first: a crash after this leaves a task in both, and
    // the board's copy wins until the next pass moves it again.
    if (auto put = options_.archive->put(batch); !put) return put.error();
    for (std::size_t i = at; i < end; ++i) {
      store::txn x;
      x.if_version(done[i].key, done[i].version);  // unless it moved on meanwhile (a revert)
      x.erase(done[i].key);
      x.put(archive_key(), *identity);  // which archive holds what left the board
      if (auto marker = store_.get(dependents_key(done[i].t.id)); marker && *marker) x.erase(dependents_key(done[i].t.id));
      auto c = store_.commit(x);
      if (!c) return c.error();
      if (c->succeeded) {
        ++moved;
      } else if (auto now = load(done[i].t.id); now && *now) {
        // It moved on: the board's copy is the task; the archive's goes.
        if (auto gone = options_.archive->remove(done[i].t.id); !gone) return gone.error();
      }
    }
    at = end;
  }
  return moved;
}

result<std::vector<task>> task_board::list(std::optional<task_state> state) {
  auto r = store_.range(options_.prefix + "task/");
  if (!r) return r.error();
  std::vector<task> out;
  for (auto& kv : r->kvs) {
    auto t = task_from_json(std::string_view(kv.value));
    if (!t)
      return error_info(t.error().code(), fmt::format("board: stored task at key '{}' does not parse: {}", kv.key,
                                                t.error().message()));
    if (!state || t->state == *state) out.push_back(std::move(*t));
  }
  return out;
}

result<std::unique_ptr<store::watcher>> task_board::watch(store::revision from) {
  return store_.watch(options_.prefix + "task/", from);
}

result<store::lease_status> task_board::heartbeat(store::lease_id lease) { return store_.keep_alive(lease); }

error_info task_board::compare_dependents(store::txn& x, const task_id& id) {
  auto marker = store_.get(dependents_key(id));
  if (!marker) return marker.error();
  x.if_version(dependents_key(id), *marker ? (*marker)->version : 0);
  return {};
}

result<task> task_board::stage_new(store::txn& x, const task& t, const std::set<std::string>& siblings) {
  // Created only if absent; every dependency's version is compared, so one
  // merging meanwhile cannot leave this task waiting on it forever.
  x.if_absent(task_key(t.id));
  bool all_merged = true;
  for (const auto& d : t.dependencies) {
    if (!siblings.contains(d.str())) {  // siblings are created in this same transaction
      auto dl = load(d);
      if (!dl) return dl.error();
      x.if_version(task_key(d), *dl ? (*dl)->version : 0);
      if (*dl && (*dl)->t.state == task_state::merged) continue;
      if (!*dl && options_.archive) {  // finished long ago: archived
        auto archived = options_.archive->get(d);
        if (!archived) return archived.error();
        if (*archived && (*archived)->state == task_state::merged) continue;
        if (*archived && (*archived)->state == task_state::superseded)
          return fail(error::invalid_task,
                      fmt::format("board: task '{}' depends on '{}', which was split; depend on its children",
                                  t.id.str(), d.str()));
      }
      if (*dl && (*dl)->t.state == task_state::superseded)
        return fail(error::invalid_task,
                    fmt::format("board: task '{}' depends on '{}', which was split; depend on its children", t.id.str(),
                                d.str()));
      // finish() and split() of d compare this key, so a dependent added
      // while d is being merged or split makes one of the two retry.
      x.put(dependents_key(d), t.id.str());
    }
    all_merged = false;
    x.put(waiting_key(d, t.id), "");
    x.put(blocked_key(t.id, d), "");
  }
  task stored = t;
  if (all_merged) {
    stored.state = task_state::ready;
    add_ready(x, stored);
  }
  x.put(task_key(t.id), to_json(stored));
  return stored;
}

result<task> task_board::propose(task t) {
  if (auto e = validate(t)) return e;
  t.state = task_state::proposed;
  t.claimed_by.reset();
  return until_committed<task>(options_.max_attempts, "proposal", t.id, [&]() -> attempt<task> {
    auto existing = load(t.id);
    if (!existing) return existing.error();
    if (*existing) {
      if (same_content((*existing)->t, t)) return std::move((*existing)->t);
      return fail(error::already_exists,
                  fmt::format("board: task '{}' already exists with different content; propose it under a new id",
                              t.id.str()));
    }
    if (options_.archive) {  // finished and archived: the id is taken all the same
      auto archived = options_.archive->get(t.id);
      if (!archived) return archived.error();
      if (*archived) {
        if (same_content(**archived, t)) return std::move(**archived);
        return fail(error::already_exists,
                    fmt::format("board: task '{}' already exists ({}, archived) with different content; propose it "
                                "under a new id",
                                t.id.str(), to_string((*archived)->state)));
      }
    }
    store::txn x;
    auto staged = stage_new(x, t, {});
    if (!staged) return staged.error();
    task stored = std::move(*staged);
    if (x.ops.size() > store::max_txn_ops) return too_big("proposal", t.id, x);
    auto c = store_.commit(x);
    if (!c) return c.error();
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(t.id, task_state::proposed, stored.state, std::nullopt, c->rev, true);
    return stored;
  });
}

result<std::optional<task>> task_board::claim(const worker_id& worker, store::lease_id lease) {
  if (auto why = validate_id(worker.str()); !why.empty())
    return fail(error::invalid_argument, fmt::format("board: worker id: {}", why));
  bool reconciled = false;
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    bool conflict = false;
    auto r = try_claim_once(worker, lease, conflict);
    if (!r) return r.error();
    if (*r) {
      ++claims_;
      return r;
    }
    if (conflict) {
      ++conflicts_;
      continue;
    }
    if (reconciled) return r;
    reconciled = true;
    auto n = reconcile();
    if (!n) return n.error();
    if (*n == 0) return r;
  }
  return fail(error::too_many_attempts,
              fmt::format("board: worker '{}' lost {} claim races in a row; the board is too contended: retry "
                          "later, or raise board_options::claim_window or max_attempts",
                          worker.str(), options_.max_attempts));
}

result<std::optional<task>> task_board::try_claim_once(const worker_id& worker, store::lease_id lease, bool& conflict) {
  const std::string ready_prefix = options_.prefix + "ready/";
  auto top = store_.range(ready_prefix, {.limit = 1});
  if (!top) return top.error();
  if (top->kvs.empty()) return std::optional<task>();
  // ready/<prio>/...: the first key has the highest priority present.
  std::string_view rest = std::string_view(top->kvs[0].key).substr(ready_prefix.size());
  std::string prio(rest.substr(0, rest.find('/')));

  std::vector<store::key_value> window;
  auto start = random(options_.shards);
  for (unsigned i = 0; i < options_.shards && window.empty(); ++i) {
    auto shard = (start + i) % options_.shards;
    auto r = store_.range(fmt::format("{}{}/{:02x}/", ready_prefix, prio, shard), {.limit = options_.claim_window});
    if (!r) return r.error();
    window = std::move(r->kvs);
  }
  if (window.empty()) {  // another claimer took the last ones meanwhile
    conflict = true;
    return std::optional<task>();
  }
  const store::key_value& pick = window[random(window.size())];
  task_id id(last_component(pick.key));
  auto l = load(id);
  if (!l) return l.error();
  if (!*l || (*l)->t.state != task_state::ready) {
    conflict = true;  // the index moved on under us
    return std::optional<task>();
  }
  task t = std::move((*l)->t);
  t.state = task_state::claimed;
  t.attempts += 1;
  t.claimed_by = worker;
  store::txn x;
  x.if_version(task_key(id), (*l)->version).if_version(pick.key, pick.version).if_absent(claim_key(id));
  x.erase(pick.key);
  stage_claim(x, t, worker, lease);
  auto c = store_.commit(x);
  if (!c) {
    if (c.error() == error::lease_not_found)
      return fail(error::lease_not_found,
                  fmt::format("board: worker '{}' cannot claim: its lease {} has expired; grant a new lease",
                              worker.str(), lease));
    return c.error();
  }
  if (!c->succeeded) {
    conflict = true;
    return std::optional<task>();
  }
  publish(id, task_state::ready, task_state::claimed, worker, c->rev);
  return std::optional<task>(std::move(t));
}

result<task> task_board::leave_claim(const task_id& id, const worker_id& worker, task_state to, json::value report,
                                     std::string note) {
  return until_committed<task>(options_.max_attempts, to_string(to), id, [&]() -> attempt<task> {
    auto l = load(id);
    if (!l) return l.error();
    if (!*l) return fail(error::not_found, fmt::format("board: no task '{}'", id.str()));
    task t = std::move((*l)->t);
    auto ck = store_.get(claim_key(id));
    if (!ck) return ck.error();
    if (t.state != task_state::claimed || t.claimed_by != worker || !*ck || (*ck)->value != worker.str()) {
      if (t.state != task_state::claimed && t.state != task_state::ready && t.claimed_by == worker)
        return illegal(id, t.state, to);
      return fail(error::claim_lost,
                  fmt::format("board: worker '{}' no longer holds task '{}' (it is {}{}): its claim was lost, "
                              "probably because its lease expired; stop work on it",
                              worker.str(), id.str(), to_string(t.state),
                              t.claimed_by && t.claimed_by != worker ? fmt::format(", held by '{}'", t.claimed_by->str())
                                                                     : std::string()));
    }
    task_state from = t.state;
    t.state = to;
    if (to != task_state::submitted) t.claimed_by.reset();
    if (!report.is_null()) t.result = report;  // a copy: a try lost to a writer runs again
    if (!note.empty()) t.notes.push_back({worker.str(), note, now_ms()});
    store::txn x;
    x.if_version(task_key(id), (*l)->version).if_version(claim_key(id), (*ck)->version);
    x.erase(claim_key(id)).erase(claimed_key(id));
    if (to == task_state::ready) add_ready(x, t);
    x.put(task_key(id), to_json(t));
    auto c = store_.commit(x);
    if (!c) return c.error();
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(id, from, to, worker, c->rev);
    return t;
  });
}

void task_board::stage_claim(store::txn& x, const task& t, const worker_id& worker, store::lease_id lease) const {
  x.put(task_key(t.id), to_json(t));
  x.put(claim_key(t.id), worker.str(), lease);
  x.put(claimed_key(t.id), worker.str());
}

result<task> task_board::reclaim(const task_id& id, const worker_id& worker, store::lease_id lease) {
  return until_committed<task>(options_.max_attempts, "reclaim", id, [&]() -> attempt<task> {
    auto l = load(id);
    if (!l) return l.error();
    if (!*l) return fail(error::not_found, fmt::format("board: no task '{}'", id.str()));
    task t = std::move((*l)->t);
    if (t.state != task_state::rejected || t.claimed_by != worker)
      return fail(error::claim_lost,
                  fmt::format("board: worker '{}' cannot take task '{}' back: it is {}{}; only the worker whose "
                              "submission was rejected can",
                              worker.str(), id.str(), to_string(t.state),
                              t.claimed_by ? fmt::format(" (last held by '{}')", t.claimed_by->str()) : std::string()));
    t.state = task_state::claimed;
    store::txn x;
    x.if_version(task_key(id), (*l)->version).if_absent(claim_key(id));
    stage_claim(x, t, worker, lease);
    auto c = store_.commit(x);
    if (!c) {
      if (c.error() == error::lease_not_found)
        return fail(error::lease_not_found,
                    fmt::format("board: worker '{}' cannot take task '{}' back: its lease {} has expired", worker.str(),
                                id.str(), lease));
      return c.error();
    }
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(id, task_state::rejected, task_state::claimed, worker, c->rev);
    return t;
  });
}

result<task> task_board::release(const task_id& id, const worker_id& worker, std::string note) {
  return leave_claim(id, worker, task_state::ready, nullptr, std::move(note));
}
result<task> task_board::submit(const task_id& id, const worker_id& worker, json::value report) {
  return leave_claim(id, worker, task_state::submitted, std::move(report), {});
}
result<task> task_board::abandon(const task_id& id, const worker_id& worker, json::value report) {
  return leave_claim(id, worker, task_state::abandoned, std::move(report), {});
}

result<task> task_board::finish(const task_id& id, task_state outcome, json::value report) {
  if (outcome != task_state::merged && outcome != task_state::rejected && outcome != task_state::failed)
    return fail(error::invalid_argument, fmt::format("board: finish task '{}' as {}: the outcome must be merged, "
                                                     "rejected or failed",
                                                     id.str(), to_string(outcome)));
  return until_committed<task>(options_.max_attempts, "finish", id, [&]() -> attempt<task> {
    auto l = load(id);
    if (!l) return l.error();
    if (!*l) return fail(error::not_found, fmt::format("board: no task '{}'", id.str()));
    task t = std::move((*l)->t);
    task_state from = t.state;
    if (!is_legal(from, outcome) || (outcome != task_state::failed && from != task_state::submitted))
      return illegal(id, from, outcome);
    std::optional<worker_id> worker = t.claimed_by;
    t.state = outcome;
    if (!report.is_null()) t.result = report;
    store::txn x;
    x.if_version(task_key(id), (*l)->version);
    if (from == task_state::claimed) x.erase(claim_key(id)).erase(claimed_key(id));
    std::vector<task_id> promoted;
    if (outcome == task_state::merged) {
      if (auto e = compare_dependents(x, id)) return e;
      auto waiting = store_.range(options_.prefix + "waiting/" + id.str() + "/");
      if (!waiting) return waiting.error();
      for (const auto& w : waiting->kvs) {
        task_id dep(last_component(w.key));
        x.erase(w.key).erase(blocked_key(dep, id));
        auto blocked = store_.range(options_.prefix + "blocked/" + dep.str() + "/");
        if (!blocked) return blocked.error();
        // Compare every unmet-dependency key we counted, so two dependencies
        // merging at once cannot both think the other is still pending.
        for (const auto& b : blocked->kvs) x.if_version(b.key, b.version);
        if (blocked->kvs.size() != 1) continue;
        auto dl = load(dep);
        if (!dl) return dl.error();
        if (!*dl) continue;
        // Compared whatever its state: a requeue racing this finish must not
        // leave it proposed with no blocker left.
        x.if_version(task_key(dep), (*dl)->version);
        if ((*dl)->t.state != task_state::proposed) continue;
        task d = std::move((*dl)->t);
        d.state = task_state::ready;
        add_ready(x, d);
        x.put(task_key(dep), to_json(d));
        promoted.push_back(dep);
      }
    }
    x.put(task_key(id), to_json(t));
    if (x.ops.size() > store::max_txn_ops) return too_big("finish", id, x);
    auto c = store_.commit(x);
    if (!c) return c.error();
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(id, from, outcome, worker, c->rev);
    for (const auto& p : promoted) publish(p, task_state::proposed, task_state::ready, std::nullopt, c->rev);
    return t;
  });
}

result<task> task_board::revert(const task_id& id, json::value report) {
  return until_committed<task>(options_.max_attempts, "revert", id, [&]() -> attempt<task> {
    auto l = load(id);
    if (!l) return l.error();
    if (!*l && options_.archive) {
      // Merged long ago and archived: it comes back to the board, reverted.
      auto archived = options_.archive->get(id);
      if (!archived) return archived.error();
      if (*archived) {
        task t = std::move(**archived);
        task_state from = t.state;
        if (!is_legal(from, task_state::reverted)) return illegal(id, from, task_state::reverted);
        t.state = task_state::reverted;
        if (!report.is_null()) t.result = report;
        auto c = store_.commit(store::txn().if_absent(task_key(id)).put(task_key(id), to_json(t)));
        if (!c) return c.error();
        if (!c->succeeded) return again;  // on the board again meanwhile: as below
        // Out of the archive (a crash before this leaves a stale copy there; the board's wins).
        if (auto gone = options_.archive->remove(id); !gone) return gone.error();
        publish(id, from, task_state::reverted, std::nullopt, c->rev);
        return t;
      }
    }
    if (!*l) return fail(error::not_found, fmt::format("board: no task '{}'", id.str()));
    task t = std::move((*l)->t);
    task_state from = t.state;
    if (from == task_state::reverted) return t;  // told twice (a gate's crash and its successor)
    if (!is_legal(from, task_state::reverted)) return illegal(id, from, task_state::reverted);
    t.state = task_state::reverted;
    if (!report.is_null()) t.result = report;
    store::txn x;
    x.if_version(task_key(id), (*l)->version);
    x.put(task_key(id), to_json(t));
    auto c = store_.commit(x);
    if (!c) return c.error();
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(id, from, task_state::reverted, std::nullopt, c->rev);
    return t;
  });
}

result<task> task_board::requeue(const task_id& id, std::string note) {
  return until_committed<task>(options_.max_attempts, "requeue", id, [&]() -> attempt<task> {
    auto l = load(id);
    if (!l) return l.error();
    if (!*l) return fail(error::not_found, fmt::format("board: no task '{}'", id.str()));
    task t = std::move((*l)->t);
    task_state from = t.state;
    if (from == task_state::claimed || !is_legal(from, task_state::ready)) return illegal(id, from, task_state::ready);
    auto blocked = store_.range(options_.prefix + "blocked/" + id.str() + "/", {.limit = 1});
    if (!blocked) return blocked.error();
    store::txn x;
    x.if_version(task_key(id), (*l)->version);
    t.claimed_by.reset();
    if (!note.empty()) t.notes.push_back({"board", note, now_ms()});  // a copy: a try may run again
    if (blocked->kvs.empty()) {
      t.state = task_state::ready;
      add_ready(x, t);
    } else {
      t.state = task_state::proposed;
      x.if_version(blocked->kvs[0].key, blocked->kvs[0].version);
    }
    x.put(task_key(id), to_json(t));
    auto c = store_.commit(x);
    if (!c) return c.error();
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(id, from, t.state, std::nullopt, c->rev);
    return t;
  });
}

result<std::vector<task>> task_board::split(const task_id& parent, std::vector<task> children) {
  if (children.empty())
    return fail(error::invalid_argument, fmt::format("board: split of task '{}' names no children", parent.str()));
  std::set<std::string> child_ids;
  for (auto& c : children) {
    c.parent = parent;
    c.state = task_state::proposed;
    c.claimed_by.reset();
    c.attempts = 0;
    if (auto e = validate(c)) return e;
    if (c.id == parent) return fail(error::invalid_task, fmt::format("board: task '{}' cannot be its own child", parent.str()));
    if (!child_ids.insert(c.id.str()).second)
      return fail(error::invalid_task, fmt::format("board: split of '{}' names child '{}' twice", parent.str(), c.id.str()));
  }
  return until_committed<std::vector<task>>(options_.max_attempts, "split", parent, [&]() -> attempt<std::vector<task>> {
    auto pl = load(parent);
    if (!pl) return pl.error();
    if (!*pl) return fail(error::not_found, fmt::format("board: no task '{}' to split", parent.str()));
    task p = std::move((*pl)->t);
    task_state from = p.state;
    if (!is_legal(from, task_state::superseded)) return illegal(parent, from, task_state::superseded);
    store::txn x;
    x.if_version(task_key(parent), (*pl)->version);
    if (from == task_state::ready) x.erase(ready_key(p));
    // The parent's own unmet dependencies go away with it.
    auto pblocked = store_.range(options_.prefix + "blocked/" + parent.str() + "/");
    if (!pblocked) return pblocked.error();
    for (const auto& b : pblocked->kvs) {
      x.erase(b.key);
      x.erase(waiting_key(task_id(last_component(b.key)), parent));
    }
    // Children: like propose, in the same transaction.
    std::vector<task> stored;
    for (const auto& c : children) {
      if (std::find(c.dependencies.begin(), c.dependencies.end(), parent) != c.dependencies.end())
        return fail(error::invalid_task,
                    fmt::format("board: child '{}' depends on '{}', the task it replaces", c.id.str(), parent.str()));
      auto staged = stage_new(x, c, child_ids);
      if (!staged) return staged.error();
      stored.push_back(std::move(*staged));
    }
    // Dependents of the parent now wait for every child instead.
    if (auto e = compare_dependents(x, parent)) return e;
    auto dependents = store_.range(options_.prefix + "waiting/" + parent.str() + "/");
    if (!dependents) return dependents.error();
    for (const auto& w : dependents->kvs) {
      task_id did(last_component(w.key));
      auto dl = load(did);
      if (!dl) return dl.error();
      x.erase(w.key).erase(blocked_key(did, parent));
      if (!*dl) continue;
      task d = std::move((*dl)->t);
      x.if_version(task_key(did), (*dl)->version);
      std::erase(d.dependencies, parent);
      for (const auto& c : children) {
        if (std::find(d.dependencies.begin(), d.dependencies.end(), c.id) == d.dependencies.end())
          d.dependencies.push_back(c.id);
        x.put(waiting_key(c.id, did), "");
        x.put(blocked_key(did, c.id), "");
      }
      x.put(task_key(did), to_json(d));
    }
    p.state = task_state::superseded;
    p.notes.push_back({"board", fmt::format("split into {} tasks", children.size()), now_ms()});
    x.put(task_key(parent), to_json(p));
    if (x.ops.size() > store::max_txn_ops) return too_big("split", parent, x);
    auto c = store_.commit(x);
    if (!c) return c.error();
    if (!c->succeeded) return again;  // written meanwhile: read again
    publish(parent, from, task_state::superseded, std::nullopt, c->rev);
    for (const auto& s : stored) publish(s.id, task_state::proposed, s.state, std::nullopt, c->rev);
    return stored;
  });
}

result<std::size_t> task_board::reconcile() {
  auto claimed = store_.range(options_.prefix + "claimed/");
  if (!claimed) return claimed.error();
  auto claims = store_.range(options_.prefix + "claim/");
  if (!claims) return claims.error();
  std::set<std::string> live;
  for (const auto& kv : claims->kvs) live.insert(last_component(kv.key));
  std::size_t moved = 0;
  for (const auto& ckv : claimed->kvs) {
    task_id id(last_component(ckv.key));
    if (live.contains(id.str())) continue;
    for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
      auto l = load(id);
      if (!l) return l.error();
      auto idx = store_.get(ckv.key);
      if (!idx) return idx.error();
      if (!*idx) break;  // someone else reconciled it
      store::txn x;
      x.if_version(ckv.key, (*idx)->version).if_absent(claim_key(id)).erase(ckv.key);
      if (!*l || (*l)->t.state != task_state::claimed) {
        // A stale index entry: drop it.
        auto c = store_.commit(x);
        if (!c) return c.error();
        if (c->succeeded) break;
        continue;
      }
      task t = std::move((*l)->t);
      std::optional<worker_id> lost = t.claimed_by;
      t.notes.push_back({"board",
                         fmt::format("claim by '{}' lost: its lease expired; back to ready",
                                     lost ? lost->str() : std::string("unknown")),
                         now_ms()});
      t.state = task_state::ready;
      t.claimed_by.reset();
      x.if_version(task_key(id), (*l)->version);
      add_ready(x, t);
      x.put(task_key(id), to_json(t));
      auto c = store_.commit(x);
      if (!c) return c.error();
      if (c->succeeded) {
        ++moved;
        publish(id, task_state::claimed, task_state::ready, lost, c->rev);
        break;
      }
    }
  }
  return moved;
}

}  // namespace agentcore::board
