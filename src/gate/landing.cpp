// The merge gate's landing: changes merged in memory on the branch's tip, the
// deep checks on the result (serial and batch: before landing, bisecting a
// failing batch; optimistic: every K merges, reverting the culprit), the
// branch moved and the verdicts recorded, and one step of the queue.
#include "gate/merge_gate_impl.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <map>

namespace agentcore::gate {

using gate_detail::now_us;

/// Applies `items` in order on top of `tip` in memory; conflicts get their
/// verdict at once and drop out.
result<std::vector<merge_gate::impl::built>> merge_gate::impl::build_chain(git::oid tip, std::vector<item>& items,
                                                                           std::vector<change_verdict>& out) {
  std::vector<built> chain;
  // An item that does not merge gets its verdict at once and drops out.
  auto drop = [&](const item& it, change_verdict v) -> error_info {
    auto d = decide(it.c, std::move(v), it.key);
    if (!d) return d.error();
    out.push_back(std::move(*d));
    return {};
  };
  for (auto& it : items) {
    git::merge_result m;
    std::vector<git::oid> parents{tip};
    std::string message;
    if (it.c.revert_of) {
      auto ps = repo_.commit_parents(*it.c.revert_of);
      if (!ps || ps->empty()) {
        if (auto e = drop(it, {it.c.id, verdict_kind::error,
                               fmt::format("cannot revert {}: it cannot be read or has no parent", it.c.revert_of->hex())}))
          return e;
        continue;
      }
      auto r = repo_.merge(*it.c.revert_of, tip, ps->front());
      if (!r) {
        if (auto e = drop(it, {it.c.id, verdict_kind::error, r.error().message()})) return e;
        continue;
      }
      m = std::move(*r);
      message = fmt::format("Revert {}\n\nchange: {}", it.c.revert_of->hex(), it.c.id);
    } else {
      auto r = repo_.merge(it.c.base, tip, it.c.head);
      if (!r) {
        if (auto e = drop(it, {it.c.id, verdict_kind::error, r.error().message()})) return e;
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
      if (auto e = drop(it, std::move(v))) return e;
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
result<merge_gate::impl::landed> merge_gate::impl::advance(const git::oid& from, const std::vector<built>& chain,
                                                           std::vector<change_verdict>& out, bool optimistic) {
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

result<void> merge_gate::impl::finish_landing(const json::object& landing, std::vector<change_verdict>& out) {
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

result<void> merge_gate::impl::finish_landing_checked(const json::object& landing, std::vector<change_verdict>& out) {
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

/// The change and the task whose landing made `commit`. Merges older than
/// the landed/ records are found on the board by their merged_as.
std::pair<std::string, std::optional<task_id>> merge_gate::impl::landed_by(const git::oid& commit) {
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

result<git::oid> merge_gate::impl::branch_tip() {
  auto tip = repo_.ref_target(options_.branch);
  if (!tip) return tip.error();
  if (!*tip) return fail(error::not_found, fmt::format("gate: branch '{}' does not exist", options_.branch));
  return **tip;
}

/// serial and batch: land `items` with deep checks, bisecting on failure
/// (the decisions are batch_landing's; this carries them out with git, the
/// checks and the store).
result<void> merge_gate::impl::land(std::vector<item> items, std::vector<change_verdict>& out) {
  std::map<std::string, item> by_id;
  std::vector<std::string> order;
  for (auto& it : items) {
    order.push_back(it.c.id);
    by_id.emplace(it.c.id, std::move(it));
  }
  batch_landing plan(std::move(order));
  // The branch can move under a tested group (another writer of the
  // branch); the group is then merged and tested again on the new tip, a
  // bounded number of times: what is left stays queued for the next step.
  int moves = 0;
  while (auto group = plan.next()) {
    auto tip = branch_tip();
    if (!tip) return tip.error();
    std::vector<item> members;
    for (const auto& id : *group) members.push_back(by_id.at(id));
    auto chain = build_chain(*tip, members, out);  // what does not merge gets its verdict here
    if (!chain) return chain.error();
    for (const auto& id : *group)
      if (std::none_of(chain->begin(), chain->end(), [&](const built& b) { return b.it.c.id == id; })) plan.drop(id);
    if (chain->empty()) continue;
    step("merged_in_memory", ids(*chain), chain->back().commit.hex());
    bool passed = false;
    auto checks = run_checks(options_.deep_checks, chain->back().commit, passed, options_.host_deep_checks);
    if (!checks) return checks.error();
    if (!options_.deep_checks.empty() || !options_.host_deep_checks.empty())
      step("deep_checks", ids(*chain), passed ? "passed" : "failed");
    auto o = plan.tested(passed);
    if (!o.land.empty()) {
      auto moved = advance(*tip, *chain, out, false);
      if (!moved) return moved.error();
      if (*moved == landed::branch_moved) {
        if (++moves > 16) return {};
        plan.retest(std::move(o.land));
      }
    } else if (o.reject) {
      change_verdict v{*o.reject, verdict_kind::deep_checks_failed, {}};
      v.detail = fmt::format("'{}': {}", checks->back().command, checks->back().outcome());
      v.checks = std::move(*checks);
      const item& failed = by_id.at(*o.reject);
      auto d = decide(failed.c, std::move(v), failed.key);
      if (!d) return d.error();
      out.push_back(std::move(*d));
    } else if (o.split) {
      step("bisect", ids(*chain), fmt::format("{} changes failed together: splitting", chain->size()));
    }
  }
  return {};
}

/// optimistic: land one change without deep checks; every K merges check
/// the branch and revert the culprit of a failure.
result<void> merge_gate::impl::land_optimistic(item it, std::vector<change_verdict>& out) {
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
  if (!policy_.check_due(since->kvs.size())) return {};
  return check_branch(out);
}

result<void> merge_gate::impl::check_branch(std::vector<change_verdict>& out) {
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
    culprit_search search(since->kvs.size());
    while (auto mid = search.probe()) {
      auto at = git::oid::from_hex(since->kvs[*mid].value);
      if (!at) return at.error();
      bool ok = false;
      auto c = run_checks(options_.deep_checks, *at, ok, options_.host_deep_checks);
      if (!c) return c.error();
      search.tested(ok);
    }
    const auto& culprit = since->kvs[search.culprit()];
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

result<std::vector<change_verdict>> merge_gate::impl::run_once() {
  std::lock_guard lk(run_mutex_);
  if (auto r = ensure_leader(); !r) return r.error();
  if (auto r = sync_from_remote(); !r) return r.error();
  auto items = read_queue(policy_.most());
  if (!items) return items.error();
  std::vector<change_verdict> out;
  if (items->empty()) return out;
  // How long the oldest has waited, as this gate saw them come (batch_wait).
  auto now = std::chrono::steady_clock::now();
  auto oldest = now;
  for (const auto& it : *items) oldest = std::min(oldest, first_seen_.try_emplace(it.c.id, now).first->second);
  std::size_t take = policy_.take(items->size(), std::chrono::duration_cast<std::chrono::milliseconds>(now - oldest));
  if (take == 0) return out;
  items->resize(take);
  for (const auto& it : *items) first_seen_.erase(it.c.id);
  if (options_.mode == policy::optimistic) {
    if (auto r = land_optimistic(std::move(items->front()), out); !r) return r.error();
  } else {
    if (auto r = land(std::move(*items), out); !r) return r.error();
  }
  forget_changes(out);
  return out;
}

}  // namespace agentcore::gate
