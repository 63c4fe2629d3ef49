// The merge gate and the shared repository (options_.remote): submitted
// changes published as refs/agentcore/changes/<id>, the branch fetched from
// it and moved there first.
#include "gate/merge_gate_impl.hpp"

#include <fmt/format.h>

namespace agentcore::gate {

/// Puts a change's commit where a gate in another process finds it: the
/// shared repository's refs/agentcore/changes/<id>. Nothing without a remote.
result<void> merge_gate::impl::publish_change(const change& c) {
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

result<git::oid> merge_gate::impl::tip() {
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

/// Brings the branch and the submitted changes from the shared repository:
/// the shared branch is the truth (a landing counts once it is there).
result<void> merge_gate::impl::sync_from_remote() {
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
result<git::advance_result> merge_gate::impl::move_branch(const git::oid& from, const git::oid& to,
                                                          std::string_view log) {
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
void merge_gate::impl::forget_changes(const std::vector<change_verdict>& decided) {
  if (options_.remote.empty()) return;
  std::vector<std::string> specs;
  for (const auto& v : decided)
    if (v.kind != verdict_kind::queued) specs.push_back(":refs/agentcore/changes/" + v.change_id);
  if (!specs.empty()) (void)repo_.push(options_.remote, specs);
}

}  // namespace agentcore::gate
