// Reads loose objects for libgit2, with fewer system calls than its own
// loose backend (which checks, stats, opens and reads each file by its full
// path, and starts a new inflate stream per object): openat relative to the
// object directory, fstat, read, close, and one inflate stream per thread.
// Added to a repository's object database beside libgit2's backends; anything
// it does not read cleanly (absent, packed, damaged) it leaves to them, so
// errors are still libgit2's, and libgit2 still verifies every object's hash.
#pragma once

#include <agentcore/core/error.hpp>

#include <git2/types.h>

#include <filesystem>

namespace agentcore::git::detail {

error_info add_loose_reader(git_repository* repo, const std::filesystem::path& objects_dir);

}  // namespace agentcore::git::detail
