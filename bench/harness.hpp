// bench/harness.hpp: how agentcore-bench times things, kept apart from what
// it times. Worker threads start together behind a latch, run for a fixed
// window, and the first error in any of them stops them all and is rethrown
// as a `failure` on the calling thread.
//
//   double rate = commits_per_second(64, 2000ms, [&](int t) { return make_worker(t); });
#pragma once

#include "bench.hpp"

#include <agentcore/core/error.hpp>
#include <agentcore/core/id.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace agentcore::bench {

using steady = std::chrono::steady_clock;

/// The value of a result, or a `failure` naming `what` and the error.
template <class T>
T check(result<T> r, std::string_view what) {
  if (!r) throw failure(fmt::format("{}: {}", what, r.error().message()));
  return std::move(*r);
}

inline double seconds_since(steady::time_point t0) { return std::chrono::duration<double>(steady::now() - t0).count(); }

/// prefix0000, prefix0001, ...: fixed width, so key order is numeric order.
inline std::vector<std::string> key_names(std::string_view prefix, std::size_t n) {
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < n; ++i) keys.push_back(fmt::format("{}{:04}", prefix, i));
  return keys;
}

/// The first error any worker thread hit; it also stops the others, so that
/// one failing thread ends the run instead of leaving it to the timer.
class first_error {
public:
  void set(std::string what) {
    std::lock_guard lk(mu_);
    if (!what_) what_ = std::move(what);
    stop.store(true);
  }
  void rethrow() {
    std::lock_guard lk(mu_);
    if (what_) throw failure(*what_);
  }
  std::atomic<bool> stop{false};

private:
  std::mutex mu_;
  std::optional<std::string> what_;
};

/// Runs `threads` workers for `duration` and returns successful commits per
/// second. make(t) builds thread t's worker on that thread, before the clock
/// starts (a SQLite connection, say); the worker returns true per successful
/// commit. Only commits finished before the stop count, over exactly the
/// timed window, so a thread stuck in a slow call at the end skews nothing.
template <class Make>
double commits_per_second(int threads, std::chrono::milliseconds duration, Make make) {
  first_error err;
  std::atomic<std::uint64_t> total{0};
  std::latch ready(threads), start(1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      bool arrived = false;  // a latch must not be counted down twice by one thread
      try {
        auto work = make(t);
        ready.count_down();
        arrived = true;
        start.wait();
        std::uint64_t mine = 0;
        while (!err.stop.load(std::memory_order_relaxed)) {
          bool ok = work();
          if (err.stop.load(std::memory_order_relaxed)) break;
          mine += ok;
        }
        total += mine;
      } catch (const std::exception& e) {
        err.set(e.what());
        if (!arrived) ready.count_down();
      }
    });
  }
  ready.wait();
  auto t0 = steady::now();
  start.count_down();
  while (!err.stop.load() && steady::now() - t0 < duration) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  err.stop.store(true);
  double elapsed = seconds_since(t0);
  for (auto& th : pool) th.join();
  err.rethrow();
  return static_cast<double>(total.load()) / elapsed;
}

/// What claim_until_empty saw.
struct claim_run {
  std::uint64_t claims = 0;    ///< successful claims, all claimers together
  double to_last_claim_s = 0;  ///< from the start to the last successful claim
  double all_done_s = 0;       ///< until every claimer had seen the board empty
};

/// `claimers` threads, each on a lease of its own, claim from the board `b`
/// (over store `s`) until it has nothing ready. They start together behind a
/// latch; the first error stops them all and is rethrown as a `failure`.
/// The rate that matters runs to the last successful claim: after it, each
/// claimer's final claim() finds nothing and reconciles every claimed task, a
/// one-off cost of emptying the board that says nothing about claiming.
template <class Board, class Store>
claim_run claim_until_empty(Board& b, Store& s, int claimers) {
  first_error err;
  std::atomic<std::uint64_t> total{0};
  std::mutex last_mu;
  steady::time_point last_claim{};
  std::latch ready(claimers), start(1);
  std::vector<std::thread> pool;
  for (int c = 0; c < claimers; ++c) {
    pool.emplace_back([&, c] {
      bool arrived = false;
      try {
        worker_id me{fmt::format("w{}", c)};
        auto lease = check(s.grant(std::chrono::seconds(600)), "store grant");
        ready.count_down();
        arrived = true;
        start.wait();
        std::uint64_t mine = 0;
        steady::time_point my_last{};
        while (!err.stop.load(std::memory_order_relaxed) && check(b.claim(me, lease), "board claim")) {
          ++mine;
          my_last = steady::now();
        }
        total += mine;
        std::lock_guard lk(last_mu);
        last_claim = std::max(last_claim, my_last);
      } catch (const std::exception& e) {
        err.set(e.what());
        if (!arrived) ready.count_down();
      }
    });
  }
  ready.wait();
  auto t0 = steady::now();
  start.count_down();
  for (auto& th : pool) th.join();
  double drained = seconds_since(t0);
  err.rethrow();
  return {total.load(), std::chrono::duration<double>(last_claim - t0).count(), drained};
}

}  // namespace agentcore::bench
