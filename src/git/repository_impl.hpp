// The state behind git::repository, shared by its source files.
#pragma once

#include <agentcore/git/repository.hpp>

#include "git/libgit2.hpp"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace agentcore::git {

class repository::impl {
public:
  detail::library lib;  // first: outlives every handle below
  detail::repo_ptr repo;
  repository_options options;

  result<detail::commit_ptr> lookup_commit(const oid& id);
  result<detail::tree_ptr> lookup_tree(const oid& id);
  result<detail::blob_ptr> lookup_blob(const oid& id);
  /// A commit's tree, or the tree itself.
  result<detail::tree_ptr> peel_tree(const oid& id);
  result<oid> write_blob(std::string_view content);
  result<oid> empty_tree();

  /// Applies `changes` (paths relative to `tree`) and writes the trees that
  /// changed. nullopt: the result is empty. Path clashes between a file and a
  /// directory are reported in `conflicts` (and nothing is written for them).
  result<std::optional<oid>> rebuild(std::optional<oid> tree, const std::map<std::string, std::optional<tree_entry>>& changes,
                                     std::vector<merge_conflict>& conflicts, const std::string& prefix = {});

  result<merge_result> merge(const oid& base, const oid& ours, const oid& theirs);

  /// A file that differs between two trees (a side of a merge, or a worktree move).
  struct change {
    std::optional<tree_entry> before, after;
  };
  using change_map = std::map<std::string, change>;
  /// Every file that differs between `a` and `b` (either may be null: empty),
  /// reading only the subtrees whose ids differ.
  error_info collect(const git_tree* a, const git_tree* b, const std::string& prefix, change_map& out);
};

struct repository_access {
  static repository::impl& of(repository& r) { return *r.impl_; }
};

}  // namespace agentcore::git
