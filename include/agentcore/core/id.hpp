// agentcore/core/id.hpp: strong identifiers, so a task id cannot be passed
// where a worker id is expected.
//
//   agentcore::task_id t{"parser-fix-12"};
//   agentcore::worker_id w{"worker-3"};
//   // board.claim(t) does not compile: claim takes a worker_id.
#pragma once

#include <compare>
#include <cstddef>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

namespace agentcore {

/// A string identifier tagged with what it identifies.
template <class Tag>
class basic_id {
public:
  basic_id() = default;
  explicit basic_id(std::string value) : value_(std::move(value)) {}
  explicit basic_id(std::string_view value) : value_(value) {}
  explicit basic_id(const char* value) : value_(value) {}

  const std::string& str() const noexcept { return value_; }
  bool empty() const noexcept { return value_.empty(); }

  friend auto operator<=>(const basic_id&, const basic_id&) = default;
  friend bool operator==(const basic_id&, const basic_id&) = default;
  friend std::ostream& operator<<(std::ostream& os, const basic_id& id) { return os << id.value_; }

private:
  std::string value_;
};

struct task_id_tag {};
struct worker_id_tag {};

using task_id = basic_id<task_id_tag>;
using worker_id = basic_id<worker_id_tag>;

/// Checks an id for use inside a store key: 1 to 200 characters from
/// [A-Za-z0-9._-]. Returns an empty string when valid, else what is wrong.
std::string validate_id(std::string_view id);

}  // namespace agentcore

template <class Tag>
struct std::hash<agentcore::basic_id<Tag>> {
  std::size_t operator()(const agentcore::basic_id<Tag>& id) const noexcept {
    return std::hash<std::string>{}(id.str());
  }
};
