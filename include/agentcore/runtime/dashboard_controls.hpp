// agentcore/runtime/dashboard_controls.hpp: the dashboard's reads and actions
// over a task board and a merge gate (observe knows neither).
//
//   auto d = observe::dashboard::start({.port = 8080},
//                                      {.controls = runtime::make_dashboard_controls(&board, &gate)});
#pragma once

#include <agentcore/observe/dashboard.hpp>

#include <memory>

namespace agentcore::board {
class task_board;
}
namespace agentcore::gate {
class merge_gate;
}

namespace agentcore::runtime {

/// Tasks and their requeue and abandon from `board`, the queue's depth and
/// reverts from `gate`. Either may be null: its part then answers
/// error::unavailable ("no board/gate behind this dashboard"). Both must
/// outlive the controls.
std::shared_ptr<observe::dashboard_controls> make_dashboard_controls(board::task_board* board, gate::merge_gate* gate);

}  // namespace agentcore::runtime
