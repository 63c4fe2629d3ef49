#pragma once
#include "store/backends.hpp"

#include <agentcore/board/task_board.hpp>

namespace agentcore::test {

inline board::task make_task(std::string id, int priority = 0, std::vector<std::string> deps = {}) {
  board::task t{.id = task_id{id}, .title = "task " + id, .priority = priority};
  for (auto& d : deps) t.dependencies.emplace_back(d);
  return t;
}

}  // namespace agentcore::test
