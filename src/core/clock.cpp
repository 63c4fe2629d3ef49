#include <agentcore/core/clock.hpp>
#include <agentcore/core/id.hpp>

#include <fmt/format.h>

namespace agentcore {

std::shared_ptr<clock> default_clock() {
  static const auto instance = std::make_shared<steady_clock>();
  return instance;
}

std::string validate_id(std::string_view id) {
  if (id.empty()) return "id is empty; use 1 to 200 characters from [A-Za-z0-9._-]";
  if (id.size() > 200) return fmt::format("id is {} characters long; the limit is 200", id.size());
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok)
      return fmt::format("id '{}' contains '{}'; use only characters from [A-Za-z0-9._-]", id,
                         (c >= 0x20 && c < 0x7f) ? std::string(1, c) : fmt::format("\\x{:02x}", static_cast<unsigned char>(c)));
  }
  return {};
}

}  // namespace agentcore
