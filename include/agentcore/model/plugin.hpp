// agentcore/model/plugin.hpp: writing a plugin, a shared library that adds a
// model backend. Build it against the same agentcore (headers and version)
// as the host; the host must export agentcore's symbols to it (link the host
// with -rdynamic: CMake's ENABLE_EXPORTS), and the plugin must not link its
// own copy of agentcore.
//
//   static agentcore::error_info register_backend(agentcore::model::plugin_registrar& r) {
//     return r.add([](std::string_view model, const agentcore::model::client_context& ctx,
//                     agentcore::json::object& unread) -> agentcore::result<std::shared_ptr<agentcore::model::client>> {
//       return std::make_shared<my_client>(std::string(model));
//     });
//   }
//   AGENTCORE_PLUGIN("mine", register_backend)   // specs "plugin:mine:MODEL"
#pragma once

#include <agentcore/model/middleware.hpp>
#include <agentcore/model/registry.hpp>
#include <agentcore/model/replay.hpp>

#include <cstdint>
#include <string>

/// Bumped whenever a type a plugin shares with its host changes.
#define AGENTCORE_PLUGIN_ABI_VERSION 1

namespace agentcore::model {

/// What a plugin's registration function receives.
class plugin_registrar {
public:
  plugin_registrar(registry& r, std::string name) : registry_(r), name_(std::move(name)) {}
  /// Registers the plugin's backend as "plugin:<name>".
  error_info add(client_factory factory) { return registry_.add("plugin:" + name_, std::move(factory)); }
  const std::string& name() const noexcept { return name_; }

private:
  registry& registry_;
  std::string name_;
};

namespace detail {
/// Sizes of the types host and plugin share: a plugin compiled with other
/// headers (or another standard library) is caught even at the same ABI number.
constexpr std::uint64_t plugin_layout() {
  return (sizeof(request) * 1000003u) ^ (sizeof(response) * 10007u) ^ (sizeof(client_context) * 101u) ^
         (sizeof(error_info) * 7u) ^ sizeof(delta) ^ (sizeof(std::string) << 32);
}
}  // namespace detail

}  // namespace agentcore::model

extern "C" {
struct agentcore_plugin_info {
  unsigned abi_version;
  unsigned long long layout;
  const char* name;
};
}

#define AGENTCORE_PLUGIN(NAME, REGISTER)                                                                       \
  extern "C" __attribute__((visibility("default"))) const agentcore_plugin_info* agentcore_plugin_info_v1() {  \
    static const agentcore_plugin_info info{AGENTCORE_PLUGIN_ABI_VERSION,                                      \
                                            ::agentcore::model::detail::plugin_layout(), NAME};                \
    return &info;                                                                                              \
  }                                                                                                            \
  extern "C" __attribute__((visibility("default"))) void agentcore_plugin_register(                            \
      ::agentcore::model::plugin_registrar& r, ::agentcore::error_info& out) {                                 \
    try {                                                                                                      \
      out = REGISTER(r);                                                                                       \
    } catch (const std::exception& e) {                                                                        \
      out = ::agentcore::error_info(::agentcore::error::invalid_argument,                                      \
                                    std::string("plugin registration threw: ") + e.what());                    \
    }                                                                                                          \
  }
