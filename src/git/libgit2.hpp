// libgit2 behind RAII, for the git module's sources only.
#pragma once

#include <agentcore/git/types.hpp>

#include <git2.h>

#include <cstring>
#include <memory>
#include <string_view>

namespace agentcore::git::detail {

template <class T, void (*Free)(T*)>
struct deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T*)>
using handle = std::unique_ptr<T, deleter<T, Free>>;

using repo_ptr = handle<git_repository, git_repository_free>;
using tree_ptr = handle<git_tree, git_tree_free>;
using blob_ptr = handle<git_blob, git_blob_free>;
using commit_ptr = handle<git_commit, git_commit_free>;
using object_ptr = handle<git_object, git_object_free>;
using ref_ptr = handle<git_reference, git_reference_free>;
using builder_ptr = handle<git_treebuilder, git_treebuilder_free>;
using diff_ptr = handle<git_diff, git_diff_free>;
using patch_ptr = handle<git_patch, git_patch_free>;
using signature_ptr = handle<git_signature, git_signature_free>;
using odb_ptr = handle<git_odb, git_odb_free>;
using revwalk_ptr = handle<git_revwalk, git_revwalk_free>;

inline git_oid to_git(const oid& o) {
  git_oid g;
  std::memcpy(g.id, o.bytes.data(), 20);
  return g;
}
inline oid from_git(const git_oid& g) {
  oid o;
  std::memcpy(o.bytes.data(), g.id, 20);
  return o;
}

/// An error from the libgit2 call that just failed: its code in the git
/// category, its message after what we were doing.
error_info last_error(int rc, std::string_view what);

/// Keeps libgit2 initialised while any repository lives.
struct library {
  library();
  ~library();
  library(const library&) = delete;
  library& operator=(const library&) = delete;
};

}  // namespace agentcore::git::detail
