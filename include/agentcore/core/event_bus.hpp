// agentcore/core/event_bus.hpp: the one bus every agentcore event goes over.
// The log, metrics, dashboard and judge all subscribe here.
//
//   agentcore::event_bus bus;
//   auto sub = bus.subscribe<task_transition>([](const task_transition& t) { ... });
//   auto all = bus.subscribe_all([](const agentcore::event& e) { log(e.type, e.body); });
//   bus.publish(task_transition{...});
//
// Guarantees: every published event reaches every subscriber that was
// subscribed when it was published; all subscribers see events in one global
// order (`event::seq`); a subscriber is never called concurrently with another
// delivery; publishing from inside a subscriber is allowed (the event is
// delivered after the current one). Delivery runs on a publishing thread.
// An event type E names itself with `static constexpr std::string_view event_type`
// and converts to JSON with Boost.JSON's value_from.
#pragma once

#include <agentcore/core/json.hpp>

#include <concepts>
#include <condition_variable>
#include <optional>
#include <thread>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <typeindex>
#include <vector>

namespace agentcore {

/// An event as untyped subscribers see it.
struct event {
  std::uint64_t seq = 0;       ///< position in the bus's global order, from 1
  std::string_view type;       ///< E::event_type
  json::value body;            ///< json::value_from(E)
  std::int64_t time_us = 0;    ///< when it was published: microseconds since the Unix epoch (system clock)
};

template <class E>
concept bus_event = requires {
  { E::event_type } -> std::convertible_to<std::string_view>;
} && requires(const E& e) { json::value_from(e); };

class event_bus {
  struct subscriber;

public:
  /// Keeps a subscription alive; destroying or reset() unsubscribes. After
  /// reset() returns, the callback is not running and will not run again,
  /// unless reset() is called from inside that callback.
  class subscription {
  public:
    subscription() = default;
    subscription(subscription&&) noexcept = default;
    subscription& operator=(subscription&& o) noexcept {
      if (this != &o) { reset(); bus_ = o.bus_; sub_ = std::move(o.sub_); o.bus_ = nullptr; }
      return *this;
    }
    ~subscription() { reset(); }
    void reset();

  private:
    friend class event_bus;
    subscription(event_bus* bus, std::shared_ptr<subscriber> s) : bus_(bus), sub_(std::move(s)) {}
    event_bus* bus_ = nullptr;
    std::shared_ptr<subscriber> sub_;
  };

  event_bus() = default;
  event_bus(const event_bus&) = delete;
  event_bus& operator=(const event_bus&) = delete;

  template <bus_event E, std::invocable<const E&> F>
  [[nodiscard]] subscription subscribe(F f) {
    return add(std::type_index(typeid(E)), [f = std::move(f)](const void* p) { f(*static_cast<const E*>(p)); });
  }

  [[nodiscard]] subscription subscribe_all(std::function<void(const event&)> f);

  template <bus_event E>
  void publish(E e) {
    delivery d{std::type_index(typeid(E)), E::event_type, &e,
               [](const void* p) { return json::value_from(*static_cast<const E*>(p)); }, 0, now_us()};
    // The event is delivered from here when no other thread is delivering;
    // else it is moved into the queue, for the delivering thread.
    enqueue(d, [](void* p) -> std::shared_ptr<const void> { return std::make_shared<E>(std::move(*static_cast<E*>(p))); });
  }

  /// Number of events published so far.
  std::uint64_t published() const;

private:
  struct delivery {
    std::type_index type;
    std::string_view name;
    const void* payload = nullptr;  // an E
    json::value (*to_json)(const void*) = nullptr;
    std::uint64_t seq = 0;
    std::int64_t time_us = 0;
  };
  struct queued {
    delivery d;
    std::shared_ptr<const void> holder;  // owns d.payload
  };
  static std::int64_t now_us() noexcept;
  struct subscriber {
    std::optional<std::type_index> type;  // empty: all events
    std::function<void(const void*)> typed;
    std::function<void(const event&)> untyped;
    bool active = true;  // guarded by event_bus::mutex_
  };

  subscription add(std::type_index type, std::function<void(const void*)> f);
  void enqueue(delivery d, std::shared_ptr<const void> (*hold)(void*));
  void deliver(const delivery& d, std::unique_lock<std::mutex>& lock);
  void remove(const std::shared_ptr<subscriber>& s);

  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::deque<queued> queue_;
  // Copy-on-write: a delivery takes the list with one reference count, and
  // subscribing or unsubscribing makes a new list.
  using subscriber_list = std::vector<std::shared_ptr<subscriber>>;
  std::shared_ptr<const subscriber_list> subscribers_ = std::make_shared<subscriber_list>();
  std::uint64_t next_seq_ = 1;
  bool delivering_ = false;
  std::thread::id deliverer_;
  subscriber* current_ = nullptr;
};

}  // namespace agentcore
