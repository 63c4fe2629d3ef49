// A small scripted run for the observe tests: a real board on a memory store
// and the events the roles, the gate and the runtime publish, in the order a
// run has them.
#pragma once

#include <agentcore/agent/loop.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/roles/judge.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/runtime/swarm.hpp>
#include <agentcore/store/memory_store.hpp>

#include <doctest/doctest.h>

namespace agentcore::test {

/// A small run: two tasks proposed, one claimed by w1, worked, submitted,
/// queued and merged; the other claimed by w2 and abandoned; one judgement.
inline void scripted_run(event_bus& bus, store::store& s, board::task_board& b) {
  bus.publish(runtime::swarm_event{"started", "1 planner, 2 workers"});
  REQUIRE(b.propose(board::task{.id = task_id{"t1"}, .title = "one"}));
  REQUIRE(b.propose(board::task{.id = task_id{"t2"}, .title = "two"}));
  auto lease = s.grant(std::chrono::seconds(30)).value();
  auto first = b.claim(worker_id{"w1"}, lease).value().value();
  auto second = b.claim(worker_id{"w2"}, lease).value().value();
  const auto& t1 = first.id;
  const auto& t2 = second.id;
  bus.publish(roles::worker_phase{"w1", t1.str(), "claimed", first.title});
  bus.publish(roles::worker_phase{"w2", t2.str(), "claimed", second.title});
  bus.publish(roles::worker_phase{"w1", t1.str(), "working", ""});
  agent::turn_event turn{"worker", t1.str(), 1, {"read_file"}, model::usage{100, 20, 0, 0}, "tool_use",
                         "model-a", 0.5, 0.25};
  bus.publish(turn);
  bus.publish(agent::tool_call_event{"worker", t1.str(), "read_file", false, "ok"});
  bus.publish(roles::worker_phase{"w1", t1.str(), "submitting", ""});
  REQUIRE(b.submit(t1, worker_id{"w1"}));
  gate::change_verdict queued;
  queued.change_id = "c1";
  queued.kind = gate::verdict_kind::queued;
  bus.publish(gate::gate_event{queued, t1});
  gate::change_verdict merged = queued;
  merged.kind = gate::verdict_kind::merged;
  gate::check_result check;
  check.command = "make test";
  check.exit_code = 0;
  check.duration = std::chrono::milliseconds(1500);
  merged.checks.push_back(check);
  bus.publish(gate::gate_event{merged, t1});
  REQUIRE(b.finish(t1, board::task_state::merged));
  bus.publish(roles::worker_phase{"w1", t1.str(), "merged", "landed"});
  bus.publish(roles::worker_phase{"w2", t2.str(), "working", ""});
  REQUIRE(b.abandon(t2, worker_id{"w2"}, nullptr));
  bus.publish(roles::worker_phase{"w2", t2.str(), "abandoned", "stalled"});
  roles::judge_event j;
  j.cycle = 1;
  j.decision = "continue";
  bus.publish(j);
  bus.publish(roles::worker_phase{"w1", "", "idle", ""});
}

inline void scripted_run(event_bus& bus) {
  auto store = store::memory_store::create();
  board::task_board b(*store, {.events = &bus});
  scripted_run(bus, *store, b);
}


}  // namespace agentcore::test
