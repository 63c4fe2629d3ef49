// agentcore/agentcore.hpp: every public header of agentcore, for hosts that
// prefer one include. The library itself never includes it (compile time).
//
//   #include <agentcore/agentcore.hpp>
//   auto store = agentcore::store::file_store::open("run/store").value();
#pragma once

#include <agentcore/core/clock.hpp>
#include <agentcore/core/diff.hpp>
#include <agentcore/core/error.hpp>
#include <agentcore/core/event_bus.hpp>
#include <agentcore/core/id.hpp>
#include <agentcore/core/json.hpp>
#include <agentcore/core/memory.hpp>
#include <agentcore/core/path.hpp>

#include <agentcore/store/etcd_store.hpp>
#include <agentcore/store/file_store.hpp>
#include <agentcore/store/memory_store.hpp>
#include <agentcore/store/store.hpp>
#include <agentcore/store/types.hpp>

#include <agentcore/board/task.hpp>
#include <agentcore/board/task_board.hpp>

#include <agentcore/process/process.hpp>

#include <agentcore/contract/ceiling.hpp>
#include <agentcore/contract/contract.hpp>
#include <agentcore/contract/diff.hpp>
#include <agentcore/contract/glob.hpp>

#include <agentcore/git/repository.hpp>
#include <agentcore/git/types.hpp>
#include <agentcore/git/worktree_pool.hpp>

#include <agentcore/gate/checks.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/gate/queue_policy.hpp>

#include <agentcore/model/cli.hpp>
#include <agentcore/model/client.hpp>
#include <agentcore/model/http_clients.hpp>
#include <agentcore/model/middleware.hpp>
#include <agentcore/model/plugin.hpp>
#include <agentcore/model/registry.hpp>
#include <agentcore/model/replay.hpp>
#include <agentcore/model/types.hpp>

#include <agentcore/net/error.hpp>
#include <agentcore/agent/loop.hpp>
#include <agentcore/agent/tool.hpp>
#include <agentcore/agent/tools.hpp>
#include <agentcore/agent/workspace.hpp>
#include <agentcore/roles/judge.hpp>
#include <agentcore/roles/planner.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/runtime/config.hpp>
#include <agentcore/runtime/dashboard_controls.hpp>
#include <agentcore/runtime/swarm.hpp>
#include <agentcore/observe/dashboard.hpp>
#include <agentcore/observe/events.hpp>
#include <agentcore/observe/jsonl_sink.hpp>
#include <agentcore/observe/metrics.hpp>
#include <agentcore/observe/progress.hpp>
#include <agentcore/sim/sim.hpp>
