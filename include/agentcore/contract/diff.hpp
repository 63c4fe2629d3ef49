// agentcore/contract/diff.hpp: the diff a contract check reads. The type is
// core's (agentcore/core/diff.hpp), shared with the git module that computes
// it; the contract module names it too.
#pragma once

#include <agentcore/core/diff.hpp>

namespace agentcore::contract {

using agentcore::change_status;
using agentcore::diff;
using agentcore::file_change;
using agentcore::max_link_target;
using agentcore::mode_executable;
using agentcore::mode_file;
using agentcore::mode_gitlink;
using agentcore::mode_link;
using agentcore::to_string;

}  // namespace agentcore::contract
