// agentcore/store/memory_store.hpp: the in-process store. Nothing survives
// the process; use it for tests, simulations and single-run swarms. It
// creates no threads; give it an executor to have leases expire on a timer.
//
//   auto clk = std::make_shared<agentcore::virtual_clock>();
//   auto s = agentcore::store::memory_store::create({.clock = clk});
//   auto lease = s->grant(std::chrono::seconds(10)).value();
#pragma once

#include <agentcore/core/clock.hpp>
#include <agentcore/store/store.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>

namespace agentcore::store {

namespace detail {
class engine;
}

struct memory_store_options {
  /// Clock for lease expiry; the process's steady clock when null.
  std::shared_ptr<agentcore::clock> clock;
  /// Watch events retained (each holds its key and value); a watcher further
  /// behind gets `compacted`. Memory follows this, not the run's length.
  std::size_t history_limit = 10'000;
  /// When set, a timer on this executor expires leases every
  /// `expiry_interval`, so watchers see expiries even when nothing else
  /// touches the store. Without it, expiry happens at the next operation.
  /// The executor must outlive the store.
  boost::asio::any_io_executor executor;
  std::chrono::milliseconds expiry_interval{100};
};

class memory_store final : public store {
public:
  static std::unique_ptr<memory_store> create(memory_store_options options = {});
  ~memory_store() override;

private:
  struct ticker;
  explicit memory_store(std::shared_ptr<detail::engine> e);

  result<std::optional<key_value>> do_get(std::string_view key) override;
  result<range_result> do_range(std::string_view prefix, range_options options) override;
  result<commit_result> do_commit(const txn& t) override;
  result<revision> do_current_revision() override;
  result<lease_id> do_grant(std::chrono::seconds ttl) override;
  result<lease_status> do_keep_alive(lease_id id) override;
  result<void> do_revoke(lease_id id) override;
  result<lease_status> do_lease_info(lease_id id) override;
  result<std::unique_ptr<watcher>> do_watch(std::string prefix, revision from) override;
  void do_close() override;

  std::shared_ptr<detail::engine> engine_;
  std::shared_ptr<ticker> ticker_;
};

}  // namespace agentcore::store
