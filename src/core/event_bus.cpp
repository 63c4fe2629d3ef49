#include <agentcore/core/event_bus.hpp>

#include <chrono>

namespace agentcore {

void event_bus::subscription::reset() {
  if (bus_ && sub_) bus_->remove(sub_);
  bus_ = nullptr;
  sub_.reset();
}

event_bus::subscription event_bus::add(std::type_index type, std::function<void(const void*)> f) {
  auto s = std::make_shared<subscriber>();
  s->type = type;
  s->typed = std::move(f);
  std::lock_guard lock(mutex_);
  auto next = std::make_shared<subscriber_list>(*subscribers_);
  next->push_back(s);
  subscribers_ = std::move(next);
  return {this, std::move(s)};
}

event_bus::subscription event_bus::subscribe_all(std::function<void(const event&)> f) {
  auto s = std::make_shared<subscriber>();
  s->untyped = std::move(f);
  std::lock_guard lock(mutex_);
  auto next = std::make_shared<subscriber_list>(*subscribers_);
  next->push_back(s);
  subscribers_ = std::move(next);
  return {this, std::move(s)};
}

void event_bus::remove(const std::shared_ptr<subscriber>& s) {
  std::unique_lock lock(mutex_);
  s->active = false;
  auto next = std::make_shared<subscriber_list>(*subscribers_);
  std::erase(*next, s);
  subscribers_ = std::move(next);
  // Wait out a delivery to this subscriber on another thread, so the caller may
  // destroy what the callback captured. From inside the callback, do not wait.
  idle_.wait(lock, [&] { return current_ != s.get() || deliverer_ == std::this_thread::get_id(); });
}

std::int64_t event_bus::now_us() noexcept {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::uint64_t event_bus::published() const {
  std::lock_guard lock(mutex_);
  return next_seq_ - 1;
}

void event_bus::enqueue(delivery d, std::shared_ptr<const void> (*hold)(void*)) {
  std::unique_lock lock(mutex_);
  d.seq = next_seq_++;
  // One thread delivers at a time; the others leave their event in the queue
  // and return. That gives one global order and no concurrent callbacks,
  // and a publish from inside a callback is simply queued behind.
  if (delivering_) {
    auto h = hold(const_cast<void*>(d.payload));
    d.payload = h.get();
    queue_.push_back({d, std::move(h)});
    return;
  }
  delivering_ = true;
  deliverer_ = std::this_thread::get_id();
  // Nobody was delivering, so the queue is empty: this event is next.
  deliver(d, lock);
  while (!queue_.empty()) {
    queued item = std::move(queue_.front());
    queue_.pop_front();
    deliver(item.d, lock);
  }
  delivering_ = false;
  deliverer_ = {};
}

void event_bus::deliver(const delivery& d, std::unique_lock<std::mutex>& lock) {
  // Subscribers present at publish time: those still active now. A
  // subscriber added after this event's seq still gets it; that is harmless
  // and simpler than versioning the list.
  std::shared_ptr<const subscriber_list> subs = subscribers_;
  std::optional<event> untyped;
  for (const auto& s : *subs) {
    if (!s->active) continue;
    if (s->type && *s->type != d.type) continue;
    current_ = s.get();
    lock.unlock();
    try {
      if (s->type) {
        s->typed(d.payload);
      } else {
        if (!untyped) untyped = event{d.seq, d.name, d.to_json(d.payload), d.time_us};
        s->untyped(*untyped);
      }
    } catch (...) {
      // A subscriber's exception (or an event that fails to convert to
      // JSON) must not stop delivery to the others, nor unwind into the
      // publisher; it is dropped here by design.
    }
    lock.lock();
    current_ = nullptr;
    idle_.notify_all();
  }
}

}  // namespace agentcore
