// The merge queue's decisions (queue_policy.hpp): pure functions of what they
// are told, shared by the merge gate and the simulator.
#include <agentcore/gate/queue_policy.hpp>

#include <agentcore/gate/merge_gate.hpp>

#include <algorithm>
#include <utility>

namespace agentcore::gate {

queue_policy_options policy_of(const gate_options& o) {
  return {.mode = o.mode, .batch_size = o.batch_size, .batch_wait = o.batch_wait, .optimistic_every = o.optimistic_every};
}

queue_policy::queue_policy(queue_policy_options o) : o_(std::move(o)) {}

int queue_policy::rank(int priority) noexcept { return 2000 - std::clamp(priority, -1000, 1000); }

bool queue_policy::before(const queued_change& a, const queued_change& b) noexcept {
  int ra = rank(a.priority), rb = rank(b.priority);
  if (ra != rb) return ra < rb;
  if (a.arrival != b.arrival) return a.arrival < b.arrival;
  return a.id < b.id;
}

std::size_t queue_policy::most() const noexcept {
  return o_.mode == policy::batch ? std::max<std::size_t>(o_.batch_size, 1) : 1;
}

std::size_t queue_policy::take(std::size_t queued, std::chrono::milliseconds oldest_wait) const noexcept {
  std::size_t n = std::min(queued, most());
  if (n == 0) return 0;
  // A batch not full yet waits for company until its oldest has waited batch_wait.
  if (o_.mode == policy::batch && o_.batch_wait.count() > 0 && n < most() && oldest_wait < o_.batch_wait) return 0;
  return n;
}

bool queue_policy::check_due(std::size_t since_green) const noexcept {
  return o_.mode == policy::optimistic && since_green >= std::max<std::size_t>(o_.optimistic_every, 1);
}

// ---- batch_landing -----------------------------------------------------------

batch_landing::batch_landing(std::vector<std::string> changes) {
  stack_.push_back(std::move(changes));
  pop_empty();
}

void batch_landing::pop_empty() {
  while (!stack_.empty() && stack_.back().empty()) stack_.pop_back();
}

std::optional<std::vector<std::string>> batch_landing::next() const {
  if (stack_.empty()) return std::nullopt;
  return stack_.back();
}

void batch_landing::drop(const std::string& id) {
  if (stack_.empty()) return;
  std::erase(stack_.back(), id);
  pop_empty();
}

void batch_landing::retest(std::vector<std::string> group) {
  if (!group.empty()) stack_.push_back(std::move(group));
}

batch_landing::outcome batch_landing::tested(bool passed) {
  outcome o;
  if (stack_.empty()) return o;
  std::vector<std::string> g = std::move(stack_.back());
  stack_.pop_back();
  if (passed) {
    o.land = std::move(g);
  } else if (g.size() == 1) {
    o.reject = std::move(g.front());
  } else {
    // The first half is tested (and landed) before the second, which is
    // then tested on top of it: push the second half first.
    auto half = g.begin() + static_cast<std::ptrdiff_t>(g.size() / 2);
    stack_.emplace_back(half, g.end());
    stack_.emplace_back(g.begin(), half);
    o.split = true;
  }
  pop_empty();
  return o;
}

// ---- culprit_search ----------------------------------------------------------

culprit_search::culprit_search(std::size_t merges) : lo_(0), hi_(merges == 0 ? 0 : merges - 1) {}

std::optional<std::size_t> culprit_search::probe() const noexcept {
  if (lo_ >= hi_) return std::nullopt;
  return (lo_ + hi_) / 2;
}

void culprit_search::tested(bool passed) noexcept {
  auto mid = probe();
  if (!mid) return;
  if (passed) lo_ = *mid + 1;
  else hi_ = *mid;
}

std::size_t culprit_search::max_probes(std::size_t merges) noexcept {
  std::size_t n = 0;
  for (std::size_t span = merges; span > 1; span = (span + 1) / 2) ++n;
  return n;
}

}  // namespace agentcore::gate
