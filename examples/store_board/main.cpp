// The store and the board, end to end, in one process:
//  - a durable file store in a scratch directory,
//  - a planner proposing tasks, some depending on others,
//  - three workers claiming tasks under leases, one of which dies mid-task,
//  - a "gate" merging what workers submit, which makes dependents ready,
//  - every transition printed from the event bus.
// Run it twice with the same directory argument to see the board survive a restart.
#include <agentcore/board/task_board.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/store/file_store.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

using namespace agentcore;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  bool scratch = argc < 2;
  fs::path dir = scratch ? fs::temp_directory_path() / fmt::format("agentcore-example-{}", ::getpid()) : fs::path(argv[1]);

  // 1. Open (or recover) the store. Errors say what was wrong and what to do.
  auto opened = store::file_store::open(dir);
  if (!opened) {
    std::fprintf(stderr, "%s\n", opened.error().message().c_str());
    return 1;
  }
  auto& s = **opened;
  fmt::print("store '{}': revision {} after replaying {} records\n", dir.string(), s.recovery().rev,
             s.recovery().records);

  // 2. Everything the board does is an event on the bus.
  event_bus bus;
  auto printer = bus.subscribe<board::task_transition>([](const board::task_transition& t) {
    fmt::print("  rev {:>3}  {:<10} {:>9} -> {:<9} {}\n", t.rev, t.id.str(), board::to_string(t.from),
               board::to_string(t.to), t.worker ? "by " + t.worker->str() : "");
  });
  board::task_board tasks(s, {.events = &bus});

  // 3. A planner proposes work. Proposing is idempotent, so a rerun changes nothing.
  auto propose = [&](const char* id, int prio, std::vector<task_id> deps = {}) {
    auto r = tasks.propose({.id = task_id{id}, .title = id, .priority = prio, .dependencies = std::move(deps)});
    if (!r) throw agentcore::exception(r.error());
  };
  propose("lexer", 5);
  propose("parser", 4, {task_id{"lexer"}});
  propose("docs", 1);
  propose("tests", 2, {task_id{"parser"}});

  // 4. Workers: claim, work, submit. The "gate" merges every submission.
  auto work = [&](const char* name, bool dies) {
    worker_id me{name};
    auto lease = s.grant(dies ? 1s : 10s).value();
    while (auto t = tasks.claim(me, lease).value()) {
      if (dies) {
        fmt::print("  {} crashes while holding '{}'\n", name, t->id.str());
        return;  // no heartbeat, no release: the lease will expire
      }
      std::this_thread::sleep_for(20ms);  // the agent loop would run here
      tasks.submit(t->id, me, json::object{{"summary", fmt::format("{} done by {}", t->id.str(), name)}}).value();
      tasks.finish(t->id, board::task_state::merged).value();
      tasks.heartbeat(lease).value();
    }
  };
  std::thread doomed(work, "w-doomed", true);
  doomed.join();
  std::thread w1(work, "w-1", false), w2(work, "w-2", false);
  w1.join();
  w2.join();

  // 5. The doomed worker's task comes back once its lease expires.
  std::this_thread::sleep_for(1100ms);
  std::thread w3(work, "w-3", false);
  w3.join();

  // 6. The board at the end.
  fmt::print("board:\n");
  int merged = 0;
  for (const auto& t : tasks.list().value()) {
    fmt::print("  {:<8} {:<7} attempts {}\n", t.id.str(), board::to_string(t.state), t.attempts);
    merged += t.state == board::task_state::merged;
  }
  auto st = s.stats();
  fmt::print("{} of 4 tasks merged; {} log records, {} syncs\n", merged, st.records_written, st.syncs);
  s.close();
  if (scratch) fs::remove_all(dir);
  return merged == 4 ? 0 : 1;
}
