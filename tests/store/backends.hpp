// The backends the store conformance suite runs on. A backend fixture makes
// stores and moves their lease clock; the suite uses nothing else, so a new
// backend joins by adding a fixture here.
#pragma once

#include "support/etcd_cluster.hpp"
#include "support/temp_dir.hpp"

#include <agentcore/core/clock.hpp>
#include <agentcore/store/etcd_store.hpp>
#include <agentcore/store/file_store.hpp>
#include <agentcore/store/memory_store.hpp>

#include <doctest/doctest.h>

#include <thread>

namespace agentcore::test {

struct memory_backend {
  static constexpr const char* name = "memory";
  std::shared_ptr<virtual_clock> clock = std::make_shared<virtual_clock>();
  std::unique_ptr<store::store> make(std::size_t history_limit = 100'000) {
    return store::memory_store::create({.clock = clock, .history_limit = history_limit});
  }
  void advance(std::chrono::seconds d) { clock->advance(d); }
};

struct file_backend {
  static constexpr const char* name = "file";
  std::shared_ptr<virtual_clock> clock = std::make_shared<virtual_clock>();
  temp_dir dir{"conformance"};
  std::unique_ptr<store::store> make(std::size_t history_limit = 100'000) {
    auto r = store::file_store::open(dir.path(), {.clock = clock, .history_limit = history_limit});
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
    return std::move(*r);
  }
  void advance(std::chrono::seconds d) { clock->advance(d); }
};

/// A real single-member etcd, started fresh for each test case; the lease
/// clock is etcd's own, so advancing it waits, with a margin for etcd's
/// expiry sweep (every 500 ms), the revoke's trip through raft and the delete
/// event's to the watcher on a loaded machine.
struct etcd_backend {
  static constexpr const char* name = "etcd";
  etcd_cluster cluster{1};
  std::unique_ptr<store::store> make(std::size_t history_limit = 100'000) {
    store::etcd_options o;
    o.endpoints = cluster.endpoints();
    o.prefix = "conformance/";
    o.history_limit = static_cast<std::int64_t>(history_limit);
    auto r = store::etcd_store::connect(o);
    REQUIRE_MESSAGE(r.has_value(), r.error().message());
    return std::move(*r);
  }
  void advance(std::chrono::seconds d) { std::this_thread::sleep_for(d + std::chrono::milliseconds(1500)); }
};

}  // namespace agentcore::test
