// The merge gate's leadership of its queue: one gate at a time runs the
// queue (a key under a lease); a new leader first finishes what its
// predecessor left in flight.
#include "gate/merge_gate_impl.hpp"

#include <fmt/format.h>

namespace agentcore::gate {

/// Takes or keeps the queue's leadership. On taking it, finishes what a
/// previous leader left in flight.
result<void> merge_gate::impl::ensure_leader() {
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
result<void> merge_gate::impl::finish_predecessor() {
  if (auto r = sync_from_remote(); !r) return r;
  if (auto r = recover(); !r) return r;
  if (auto r = redo_board_updates(); !r) return r;
  recovered_ = true;
  return {};
}

void merge_gate::impl::resign() {
  if (lease_) (void)store_.revoke(lease_);
  lease_ = 0;
}

/// Finishes a landing a crash interrupted: if the branch contains it, record
/// it; otherwise drop the record and let the changes run again.
result<void> merge_gate::impl::recover() {
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

/// The board updates a crashed leader had not made yet.
result<void> merge_gate::impl::redo_board_updates() {
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

}  // namespace agentcore::gate
