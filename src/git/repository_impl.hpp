// The state behind git::repository, shared by its source files.
#pragma once

#include <agentcore/git/repository.hpp>

#include "git/libgit2.hpp"
#include "git/object_writer.hpp"

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace agentcore::git {

class repository::impl {
public:
  detail::library lib;  // first: outlives every handle below
  detail::repo_ptr repo;
  repository_options options;
  detail::object_writer writer;  // opened at the first write

  /// Objects this handle has read or written: a commit naming one needs no
  /// existence check. A fixed table (each id in the slot its hash picks; a
  /// newer id takes the slot): its memory is the same from the first object
  /// on, over any run's length (a set that filled and was cleared made the
  /// process's memory saw-tooth). Forgetting only costs a check.
  struct known_objects {
    static constexpr std::size_t slots = 8192;  // 160 KiB, made at the first use
    std::unique_ptr<oid[]> table;
    static std::size_t slot(const oid& o) noexcept {
      std::size_t h;
      std::memcpy(&h, o.bytes.data(), sizeof h);
      return h & (slots - 1);
    }
    bool contains(const oid& id) const noexcept { return table && !id.is_zero() && table[slot(id)] == id; }
    void insert(const oid& id) {
      if (!table) table = std::make_unique<oid[]>(slots);
      table[slot(id)] = id;
    }
  } known;
  void remember(const oid& id) { known.insert(id); }

  /// Writes an object with agentcore's loose-object writer.
  result<oid> write_object(git_object_t type, std::string_view data);
  /// Writes the tree a treebuilder holds.
  result<oid> write_tree(git_treebuilder* builder, std::string_view what);

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
  ///
  /// `reuse` (full directory paths ending in '/') names directories whose
  /// result is already known as a whole: that subtree (nullopt: none) is put
  /// in place of the directory without reading or rewriting it.
  using reuse_map = std::map<std::string, std::optional<oid>>;
  result<std::optional<oid>> rebuild(std::optional<oid> tree, const std::map<std::string, std::optional<tree_entry>>& changes,
                                     std::vector<merge_conflict>& conflicts, const std::string& prefix = {},
                                     const reuse_map* reuse = nullptr);

  result<merge_result> merge(const oid& base, const oid& ours, const oid& theirs);

  /// A file that differs between two trees (a side of a merge, or a worktree move).
  struct change {
    std::optional<tree_entry> before, after;
  };
  using change_map = std::map<std::string, change>;
  /// A directory that differs between `a` and `b`: its tree on each side
  /// (nullopt: not a directory there). Keyed by full path ending in '/'.
  struct dir_change {
    std::optional<oid> before, after;
  };
  using dir_map = std::map<std::string, dir_change>;
  /// Every file that differs between `a` and `b` (either may be null: empty),
  /// reading only the subtrees whose ids differ; with `dirs`, also every
  /// directory it descended into.
  error_info collect(const git_tree* a, const git_tree* b, const std::string& prefix, change_map& out,
                     dir_map* dirs = nullptr);
};

struct repository_access {
  static repository::impl& of(repository& r) { return *r.impl_; }
};

}  // namespace agentcore::git
