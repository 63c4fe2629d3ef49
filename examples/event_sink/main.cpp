// An event sink of your own: everything agentcore does is an event on one
// bus, each with a JSON form. subscribe_all sees them all, in one order; here
// they become JSON lines on standard output and a count by type, the start of
// a log or a metrics exporter.
#include <agentcore/board/task_board.hpp>
#include <agentcore/store/memory_store.hpp>

#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <map>

using namespace agentcore;
using namespace std::chrono_literals;

int main() {
  event_bus bus;
  std::map<std::string, int> by_type;
  auto sink = bus.subscribe_all([&](const event& e) {
    fmt::print("{{\"seq\":{},\"type\":\"{}\",\"body\":{}}}\n", e.seq, e.type, json::serialize(e.body));
    ++by_type[std::string(e.type)];
  });

  // Some work to watch: a task proposed, claimed, submitted and merged.
  auto store = store::memory_store::create();
  board::task_board board(*store, {.events = &bus});
  board.propose({.id = task_id{"hello"}, .title = "Say hello"}).value();
  auto lease = store->grant(30s).value();
  auto t = board.claim(worker_id{"w1"}, lease).value().value();
  board.submit(t.id, worker_id{"w1"}).value();
  board.finish(t.id, board::task_state::merged).value();

  for (const auto& [type, n] : by_type) fmt::print("{}: {}\n", type, n);
  return by_type["board.task_transition"] == 4 ? 0 : 1;
}
