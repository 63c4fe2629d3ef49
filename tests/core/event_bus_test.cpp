#include <agentcore/core/event_bus.hpp>

#include <doctest/doctest.h>

#include <set>

using namespace agentcore;

namespace {
struct ping {
  static constexpr std::string_view event_type = "test.ping";
  int publisher = 0;
  int n = 0;
};
void tag_invoke(json::value_from_tag, json::value& v, const ping& p) { v = {{"publisher", p.publisher}, {"n", p.n}}; }

struct pong {
  static constexpr std::string_view event_type = "test.pong";
  std::string text;
};
void tag_invoke(json::value_from_tag, json::value& v, const pong& p) { v = {{"text", p.text}}; }
}  // namespace

TEST_CASE("core.event_bus.typed_and_untyped_subscribers") {
  event_bus bus;
  std::vector<int> pings;
  std::vector<std::string> all;
  auto s1 = bus.subscribe<ping>([&](const ping& p) { pings.push_back(p.n); });
  auto s2 = bus.subscribe_all([&](const event& e) { all.push_back(std::string(e.type) + " " + to_json_string(e.body)); });
  bus.publish(ping{0, 1});
  bus.publish(pong{"hi"});
  CHECK(pings == std::vector<int>{1});
  REQUIRE(all.size() == 2);
  CHECK(all[0] == R"(test.ping {"publisher":0,"n":1})");
  CHECK(all[1] == R"(test.pong {"text":"hi"})");
  s1.reset();
  bus.publish(ping{0, 2});
  CHECK(pings.size() == 1);  // unsubscribed
  CHECK(all.size() == 3);
  CHECK(bus.published() == 3);
}

TEST_CASE("core.event_bus.reentrant_publish_is_delivered_after") {
  event_bus bus;
  std::vector<std::string> order;
  auto s1 = bus.subscribe<ping>([&](const ping& p) {
    order.push_back("ping" + std::to_string(p.n));
    if (p.n == 1) bus.publish(pong{"from-ping"});
  });
  auto s2 = bus.subscribe<pong>([&](const pong& p) { order.push_back(p.text); });
  auto s3 = bus.subscribe<ping>([&](const ping& p) { order.push_back("second-ping" + std::to_string(p.n)); });
  bus.publish(ping{0, 1});
  CHECK(order == std::vector<std::string>{"ping1", "second-ping1", "from-ping"});
}

TEST_CASE("core.event_bus.no_lost_events_under_concurrent_publishers") {
  event_bus bus;
  constexpr int publishers = 4, per = 20'000;
  std::vector<int> last(publishers, -1);
  std::atomic<int> in_callback{0};
  bool overlapped = false, out_of_order = false;
  std::uint64_t last_seq = 0;
  std::size_t received = 0;
  auto sub = bus.subscribe_all([&](const event& e) {
    if (in_callback.fetch_add(1) != 0) overlapped = true;
    if (e.seq <= last_seq) out_of_order = true;
    last_seq = e.seq;
    int p = static_cast<int>(e.body.as_object().at("publisher").as_int64());
    int n = static_cast<int>(e.body.as_object().at("n").as_int64());
    if (n != last[p] + 1) out_of_order = true;  // per publisher, in its own order
    last[p] = n;
    ++received;
    in_callback.fetch_sub(1);
  });
  std::vector<std::thread> ts;
  for (int p = 0; p < publishers; ++p)
    ts.emplace_back([&, p] {
      for (int n = 0; n < per; ++n) bus.publish(ping{p, n});
    });
  for (auto& t : ts) t.join();
  CHECK(received == publishers * per);
  CHECK_FALSE(overlapped);
  CHECK_FALSE(out_of_order);
}

TEST_CASE("core.event_bus.throwing_subscriber_does_not_stop_delivery") {
  event_bus bus;
  int got = 0;
  auto bad = bus.subscribe<ping>([](const ping&) { throw std::runtime_error("boom"); });
  auto good = bus.subscribe<ping>([&](const ping&) { ++got; });
  CHECK_NOTHROW(bus.publish(ping{0, 1}));
  CHECK(got == 1);
}
