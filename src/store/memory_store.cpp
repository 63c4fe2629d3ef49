#include <agentcore/store/memory_store.hpp>

#include "store/engine.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

namespace agentcore::store {

// Expires leases on the host's executor. It holds the engine weakly and stops
// re-arming once the store is gone; the timer itself is only touched on its
// executor (timers are not thread-safe).
struct memory_store::ticker : std::enable_shared_from_this<ticker> {
  ticker(boost::asio::any_io_executor ex, std::weak_ptr<detail::engine> e, std::chrono::milliseconds every)
      : timer(std::move(ex)), engine(std::move(e)), interval(every) {}

  void arm() {
    timer.expires_after(interval);
    timer.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->stopped) return;
      auto e = self->engine.lock();
      if (!e) return;
      e->expire();
      self->arm();
    });
  }

  boost::asio::steady_timer timer;
  std::weak_ptr<detail::engine> engine;
  std::chrono::milliseconds interval;
  std::atomic<bool> stopped{false};
};

std::unique_ptr<memory_store> memory_store::create(memory_store_options options) {
  auto e = std::make_shared<detail::engine>(detail::engine_options{std::move(options.clock), options.history_limit});
  std::unique_ptr<memory_store> s(new memory_store(e));
  if (options.executor) {
    auto every = std::max(options.expiry_interval, std::chrono::milliseconds(1));
    s->ticker_ = std::make_shared<ticker>(options.executor, e, every);
    boost::asio::post(options.executor, [t = s->ticker_] { t->arm(); });
  }
  return s;
}

memory_store::memory_store(std::shared_ptr<detail::engine> e) : engine_(std::move(e)) {}
memory_store::~memory_store() {
  engine_->close(fail(error::closed, "store: the memory store was destroyed"));
  if (ticker_) {
    ticker_->stopped = true;
    boost::asio::post(ticker_->timer.get_executor(), [t = ticker_] { t->timer.cancel(); });
  }
}

result<std::optional<key_value>> memory_store::do_get(std::string_view key) { return engine_->get(key); }
result<range_result> memory_store::do_range(std::string_view prefix, range_options options) {
  return engine_->range(prefix, options);
}
result<commit_result> memory_store::do_commit(const txn& t) {
  auto r = engine_->commit(t);
  if (!r) return r.error();
  return std::move(r->result);
}
result<revision> memory_store::do_current_revision() { return engine_->current_revision(); }
result<lease_id> memory_store::do_grant(std::chrono::seconds ttl) {
  auto r = engine_->grant(ttl);
  if (!r) return r.error();
  return r->first;
}
result<lease_status> memory_store::do_keep_alive(lease_id id) { return engine_->keep_alive(id); }
result<void> memory_store::do_revoke(lease_id id) {
  auto r = engine_->revoke(id);
  if (!r) return r.error();
  return {};
}
result<lease_status> memory_store::do_lease_info(lease_id id) { return engine_->lease_info(id); }
result<std::unique_ptr<watcher>> memory_store::do_watch(std::string prefix, revision from) {
  return engine_->watch(std::move(prefix), from);
}
void memory_store::do_close() { engine_->close(fail(error::closed, "store: the memory store was closed")); }

}  // namespace agentcore::store
