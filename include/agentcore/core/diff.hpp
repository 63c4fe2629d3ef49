// agentcore/core/diff.hpp: what a change did, file by file: the vocabulary
// the git module computes from two commits and a contract check reads (so
// neither depends on the other); hosts and tests can build one by hand.
// The contract module names these types too (contract::diff, ...).
//
//   contract::diff d{.files = {{.path = "src/a.cpp", .status = contract::change_status::modified,
//                               .old_mode = contract::mode_file, .new_mode = contract::mode_file,
//                               .additions = 3, .deletions = 1, .added_bytes = 2048}}};
//
// Besides paths and line counts it carries what makes a change dangerous
// beyond its paths: the modes (links, submodules, executables), where a link
// points, and how many bytes of new content the change writes.
#pragma once

#include <agentcore/core/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace agentcore {

enum class change_status { added, deleted, modified, renamed, copied, type_changed };

std::string_view to_string(change_status s) noexcept;

/// Git file modes as trees store them (the modes a change may produce).
inline constexpr std::uint32_t mode_file = 0100644;
inline constexpr std::uint32_t mode_executable = 0100755;
inline constexpr std::uint32_t mode_link = 0120000;     ///< a symbolic link: the blob is its target
inline constexpr std::uint32_t mode_gitlink = 0160000;  ///< a submodule: the entry is a commit of another repository

/// The longest link target the git module reads (and a contract check accepts).
inline constexpr std::size_t max_link_target = 4096;

struct file_change {
  std::string path;      ///< the path after the change (for deleted: the removed path)
  std::string old_path;  ///< for renamed and copied: where it came from; else empty
  change_status status = change_status::modified;
  std::uint32_t old_mode = 0;  ///< git file mode before (mode_file, mode_executable, mode_link, ...); 0 if added
  std::uint32_t new_mode = 0;  ///< and after; 0 if deleted
  std::size_t additions = 0;   ///< lines added (0 for binary files)
  std::size_t deletions = 0;   ///< lines removed
  bool binary = false;
  /// For a symbolic link after the change (new_mode == mode_link): where it
  /// points, as stored (the blob's bytes; at most max_link_target + 1 of them,
  /// so a longer one shows as too long). Empty otherwise.
  std::string link_target;
  /// Bytes of new content the change writes here: the size of the new blob
  /// when the content changed (added, modified, copied, type-changed, renamed
  /// with edits); 0 when only the name or mode changed, for deletions and for
  /// gitlinks.
  std::uint64_t added_bytes = 0;
  friend bool operator==(const file_change&, const file_change&) = default;
};

struct diff {
  std::vector<file_change> files;
  std::size_t changed_lines() const noexcept;
  /// Sum of the files' added_bytes.
  std::uint64_t added_bytes() const noexcept;
  friend bool operator==(const diff&, const diff&) = default;
};

void tag_invoke(json::value_from_tag, json::value& v, const file_change& f);
void tag_invoke(json::value_from_tag, json::value& v, const diff& d);

}  // namespace agentcore
