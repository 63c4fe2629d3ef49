// agentcore/contract/diff.hpp: what a change did, file by file: the input of
// a contract check. The git module computes it from two commits; hosts and
// tests can build one by hand.
//
//   contract::diff d{.files = {{.path = "src/a.cpp", .status = contract::change_status::modified,
//                               .additions = 3, .deletions = 1}}};
#pragma once

#include <agentcore/core/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace agentcore::contract {

enum class change_status { added, deleted, modified, renamed, copied, type_changed };

std::string_view to_string(change_status s) noexcept;

struct file_change {
  std::string path;      ///< the path after the change (for deleted: the removed path)
  std::string old_path;  ///< for renamed and copied: where it came from; else empty
  change_status status = change_status::modified;
  std::uint32_t old_mode = 0;  ///< git file mode before (0100644, 0100755, 0120000, ...); 0 if added
  std::uint32_t new_mode = 0;  ///< and after; 0 if deleted
  std::size_t additions = 0;   ///< lines added (0 for binary files)
  std::size_t deletions = 0;   ///< lines removed
  bool binary = false;
  friend bool operator==(const file_change&, const file_change&) = default;
};

struct diff {
  std::vector<file_change> files;
  std::size_t changed_lines() const noexcept;
  friend bool operator==(const diff&, const diff&) = default;
};

void tag_invoke(json::value_from_tag, json::value& v, const file_change& f);
void tag_invoke(json::value_from_tag, json::value& v, const diff& d);

}  // namespace agentcore::contract
