// A plugin built for another plugin ABI: the registry must refuse it.
#include <agentcore/model/plugin.hpp>

#undef AGENTCORE_PLUGIN_ABI_VERSION
#define AGENTCORE_PLUGIN_ABI_VERSION 999

namespace {
agentcore::error_info register_nothing(agentcore::model::plugin_registrar&) { return {}; }
}  // namespace

AGENTCORE_PLUGIN("future", register_nothing)
