// agentcore/gate/queue_policy.hpp: the merge queue's decisions, with no git,
// no checks and no store: which queued changes form the next step, what a
// failed batch turns into, and which merge broke an optimistic branch. The
// merge gate drives these with real merges and real checks; a simulator
// drives the same code with synthetic ones.
//
//   gate::queue_policy p({.mode = gate::policy::batch, .batch_size = 4});
//   std::size_t take = p.take(queued, oldest_wait);   // 0: wait for company
//   gate::batch_landing b(first_ids);                  // serial and batch
//   while (auto group = b.next()) {
//     // merge *group in order onto the branch; a change that does not merge:
//     //   b.drop(id) (and give it its own verdict), then next() again
//     auto o = b.tested(deep_checks_pass(*group));
//     // o.land: move the branch to the tested result; o.reject: that change failed
//   }
//
// Everything here is a value type with no clock and no randomness: the same
// calls give the same decisions.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace agentcore::gate {

/// How the merge queue lands changes (see merge_gate.hpp and below).
enum class policy { serial, batch, optimistic };

struct queue_policy_options {
  policy mode = policy::serial;
  std::size_t batch_size = 8;
  /// batch: a batch smaller than batch_size waits until its oldest change
  /// has been queued this long. 0: take what is queued at once.
  std::chrono::milliseconds batch_wait{0};
  std::size_t optimistic_every = 10;  ///< optimistic: deep checks after this many merges
};

/// A queued change as the policy sees it: its id, priority and arrival.
struct queued_change {
  std::string id;
  int priority = 0;
  std::uint64_t arrival = 0;  ///< any increasing stamp (the gate: microseconds since the epoch)
};

class queue_policy {
public:
  explicit queue_policy(queue_policy_options o);
  const queue_policy_options& options() const noexcept { return o_; }

  /// Landing order: a higher priority first, then the earlier arrival (then
  /// the id, so that the order is total). The gate's queue keys sort the same way.
  static bool before(const queued_change& a, const queued_change& b) noexcept;
  /// How a priority ranks in the gate's queue keys (ascending = first);
  /// priorities are clamped to [-1000, 1000].
  static int rank(int priority) noexcept;

  /// How many of the first queued changes (in landing order) the next step
  /// takes, given how many are queued and how long the oldest of those it
  /// would take has waited. 0: nothing now (empty, or a batch waiting for
  /// company). serial and optimistic take one; batch up to batch_size.
  std::size_t take(std::size_t queued, std::chrono::milliseconds oldest_wait) const noexcept;
  /// The most a step takes (what to read from the queue).
  std::size_t most() const noexcept;

  /// optimistic: whether the branch is due for its deep checks, with
  /// `since_green` merges on it since they last passed.
  bool check_due(std::size_t since_green) const noexcept;

private:
  queue_policy_options o_;
};

/// Landing one step's changes under the serial and batch policies: they are
/// merged in order and tested together; a group that passes lands; a group
/// of one that fails is rejected; a larger group that fails is split in
/// halves, the first landed (bisected further if need be) before the second
/// is tested on top of it. Every change ends landed, rejected or dropped,
/// exactly once; a change whose tests fail never lands (with deterministic
/// checks).
class batch_landing {
public:
  explicit batch_landing(std::vector<std::string> changes);

  /// The group to merge and test now, in order; nullopt when every change
  /// has its outcome.
  std::optional<std::vector<std::string>> next() const;
  /// `id`, in the current group, dropped out before its test (it does not
  /// merge, or is malformed): the driver gives it its verdict.
  void drop(const std::string& id);

  struct outcome {
    std::vector<std::string> land;      ///< passed: land these, in order
    std::optional<std::string> reject;  ///< a lone change that failed
    bool split = false;                 ///< failed together: bisecting
  };
  /// The current group's test result.
  outcome tested(bool passed);
  /// A group that passed could not land as tested (the branch moved under
  /// it): it becomes the current group again, to merge and test on the new tip.
  void retest(std::vector<std::string> group);

private:
  std::vector<std::vector<std::string>> stack_;  // groups to test; the back is current
  void pop_empty();
};

/// optimistic: after the branch failed its deep checks, finds the first of
/// the `merges` made since they last passed whose result fails (the
/// culprit), by bisection. probe() is the index of the merge whose result to
/// test next; a merge that passes means the culprit is later.
class culprit_search {
public:
  explicit culprit_search(std::size_t merges);
  /// The merge to test next; nullopt when found.
  std::optional<std::size_t> probe() const noexcept;
  void tested(bool passed) noexcept;
  /// The culprit's index, once probe() is nullopt.
  std::size_t culprit() const noexcept { return lo_; }
  /// How many tests a search over `merges` takes at most.
  static std::size_t max_probes(std::size_t merges) noexcept;

private:
  std::size_t lo_ = 0, hi_ = 0;
};

}  // namespace agentcore::gate
