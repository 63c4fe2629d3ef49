// Writes loose objects straight into a repository's object directory.
//
// libgit2's git_odb_write first "freshens" the object, and when it is new
// (always, for a merge's trees and commit) rescans the pack directory before
// writing it through a lock-file buffer: about twenty system calls and a new
// zlib stream per object, most of a merge's cost. This writer hashes and
// deflates into a reused stream, then writes a temporary file and links it
// into place: five system calls. The files are git's own loose-object format,
// which libgit2 and git read as usual.
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/git/types.hpp>

#include <git2/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace agentcore::git::detail {

class object_writer {
public:
  object_writer();
  ~object_writer();
  object_writer(const object_writer&) = delete;
  object_writer& operator=(const object_writer&) = delete;

  /// Opens `objects_dir` (the repository's common objects directory).
  error_info open(const std::filesystem::path& objects_dir);
  bool is_open() const noexcept { return dir_fd_ >= 0; }

  /// Writes one object; with `durable`, the file and its directory are
  /// synced before this returns. An object that exists already is left as it
  /// is (its modification time refreshed, as git does). `present`, when
  /// given, is asked first (with the object's id) whether the repository has
  /// it already, loose or packed: then nothing is written at all.
  result<oid> write(git_object_t type, std::string_view data, bool durable,
                    const std::function<bool(const oid&)>& present = {});

private:
  std::filesystem::path dir_;
  int dir_fd_ = -1;
  std::string deflated_;
};

/// Whether object and ref writes are synced when a repository's options do
/// not say: the process-wide setting agentcore last gave libgit2.
bool fsync_default() noexcept;
void set_fsync_default(bool on) noexcept;

/// The bytes of a tree object holding `entries` (any order; sorted here the
/// way git sorts them, a directory as if its name ended in '/').
struct raw_entry {
  std::string name;
  oid id;
  unsigned mode;
};
std::string serialize_tree(std::vector<raw_entry> entries);

}  // namespace agentcore::git::detail
