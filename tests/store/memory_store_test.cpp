// memory_store specifics: lease expiry on the host's executor.
#include <agentcore/store/memory_store.hpp>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

using namespace agentcore;
using namespace agentcore::store;
using namespace std::chrono_literals;

TEST_CASE("store.memory.expiry_timer_tells_watchers_without_other_traffic") {
  boost::asio::io_context io;
  auto clk = std::make_shared<virtual_clock>();
  auto s = memory_store::create({.clock = clk, .executor = io.get_executor(), .expiry_interval = 5ms});
  auto lease = s->grant(5s).value();
  REQUIRE(s->commit(txn().put("claim/a", "w", lease)).value().succeeded);
  auto w = s->watch("claim/", s->current_revision().value() + 1).value();
  std::vector<watch_event> got;
  w->async_next(boost::asio::bind_executor(io, [&](result<std::vector<watch_event>> ev) {
    REQUIRE(ev);
    got = std::move(*ev);
  }));
  clk->advance(6s);  // no store call after this: only the timer can notice
  for (int i = 0; i < 200 && got.empty(); ++i) io.run_for(10ms);
  REQUIRE(got.size() == 1);
  CHECK(got[0].type == watch_event::kind::erase);
  CHECK(got[0].kv.key == "claim/a");
  s.reset();  // stops the timer; the io_context then runs out of work
  io.run_for(100ms);
  CHECK(io.stopped());
}
