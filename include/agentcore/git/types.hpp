// agentcore/git/types.hpp: the value types of the git module: object ids,
// signatures, tree entries, merge results. No libgit2 type appears here.
//
//   auto id = agentcore::git::oid::from_hex("4b825dc642cb6eb9a060e54bf8d69288fbee4904").value();
//   fmt::print("{}\n", id.hex());
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/core/json.hpp>

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::git {

/// The `git` error category: values are libgit2's error codes (GIT_ENOTFOUND
/// is -3, ...); the error_info message keeps libgit2's own text.
const boost::system::error_category& git_category() noexcept;

/// A SHA-1 object id.
struct oid {
  std::array<unsigned char, 20> bytes{};

  static result<oid> from_hex(std::string_view hex);
  std::string hex() const;
  bool is_zero() const noexcept;
  friend auto operator<=>(const oid&, const oid&) = default;
};

struct signature {
  std::string name;
  std::string email;
  std::int64_t time = 0;       ///< seconds since the epoch; 0 means now
  int offset_minutes = 0;      ///< time zone offset
};

/// Git file modes as stored in trees.
enum class file_mode : std::uint32_t {
  tree = 0040000,
  blob = 0100644,
  blob_executable = 0100755,
  link = 0120000,
  commit = 0160000,  ///< a submodule
};

/// A file's content and mode, as the merge sees a path on one side.
struct tree_entry {
  oid id;
  file_mode mode = file_mode::blob;
  friend bool operator==(const tree_entry&, const tree_entry&) = default;
};

enum class conflict_kind {
  content,         ///< both sides changed the same lines (or a binary file, a link, a submodule)
  add_add,         ///< both sides added the path with different contents
  modify_delete,   ///< one side changed the path, the other deleted it
  rename,          ///< a rename on one side meets a delete, a different rename, or an add
  directory_file,  ///< one side has a file where the other has a directory
  mode,            ///< both sides changed the file mode differently
};
std::string_view to_string(conflict_kind k) noexcept;

struct merge_conflict {
  std::string path;
  conflict_kind kind = conflict_kind::content;
  std::string detail;
  friend bool operator==(const merge_conflict&, const merge_conflict&) = default;
};

/// The outcome of an in-memory merge: a tree when clean, else every conflict.
/// Conflicts are an expected outcome, not an error.
struct merge_result {
  std::optional<oid> tree;
  std::vector<merge_conflict> conflicts;  ///< sorted by path
  bool clean() const noexcept { return conflicts.empty(); }
};

/// The outcome of a compare-and-swap on a ref.
struct advance_result {
  bool advanced = false;
  std::optional<oid> current;  ///< where the ref points now (the winner's commit when it moved)
};

void tag_invoke(json::value_from_tag, json::value& v, const oid& id);
void tag_invoke(json::value_from_tag, json::value& v, const merge_conflict& c);
void tag_invoke(json::value_from_tag, json::value& v, const merge_result& r);

}  // namespace agentcore::git
