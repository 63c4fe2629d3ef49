// agentcore/core/clock.hpp: the time source that leases, time boxes and
// heartbeats read. Production uses steady_clock; tests and simulations use
// virtual_clock and move time by hand.
//
//   auto clk = std::make_shared<agentcore::virtual_clock>();
//   auto store = agentcore::store::memory_store::create({.clock = clk});
//   clk->advance(std::chrono::seconds(31));   // a 30 s lease is now expired
#pragma once

#include <atomic>
#include <chrono>
#include <memory>

namespace agentcore {

class clock {
public:
  using duration = std::chrono::nanoseconds;
  using time_point = std::chrono::time_point<std::chrono::steady_clock, duration>;

  virtual ~clock() = default;
  virtual time_point now() const noexcept = 0;
};

/// The real monotonic clock.
class steady_clock final : public clock {
public:
  time_point now() const noexcept override { return std::chrono::steady_clock::now(); }
};

/// A clock that moves only when told to. Thread-safe.
class virtual_clock final : public clock {
public:
  time_point now() const noexcept override { return time_point(duration(ns_.load(std::memory_order_acquire))); }
  void advance(duration d) noexcept { ns_.fetch_add(d.count(), std::memory_order_acq_rel); }

private:
  // Starts away from zero so that "time_point{}" never looks like a real time.
  std::atomic<duration::rep> ns_{std::chrono::duration_cast<duration>(std::chrono::hours(1)).count()};
};

/// The process-wide steady clock, for options that leave the clock unset.
std::shared_ptr<clock> default_clock();

}  // namespace agentcore
