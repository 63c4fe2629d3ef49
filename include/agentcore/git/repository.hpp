// agentcore/git/repository.hpp: a git repository through libgit2, behind
// RAII and agentcore's error handling. Objects are read and written directly;
// merges and reverts happen in memory, and a branch moves only by
// compare-and-swap.
//
//   auto repo = agentcore::git::repository::open("/srv/project").value();
//   auto main = repo.resolve("refs/heads/main").value();
//   auto m = repo.merge(base, main, change).value();        // merge_result
//   if (m.clean()) {
//     auto c = repo.create_commit(*m.tree, {main, change}, "Merge task 12", sig).value();
//     auto r = repo.advance("refs/heads/main", main, c, "gate: merge task 12").value();
//     if (!r.advanced) retry_from(*r.current);             // main moved meanwhile: a result, not an error
//   }
//
// A repository object is not thread-safe: use one per thread or strand.
// Objects and refs are fsynced as they are written (libgit2's
// GIT_OPT_ENABLE_FSYNC_GITDIR), unless an open turns it off with
// `.fsync = false`; that switch is process-wide in libgit2, so it applies to
// every repository of the process from then on.
#pragma once

#include <agentcore/core/diff.hpp>
#include <agentcore/git/types.hpp>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::git {

struct repository_options {
  /// When set, turns libgit2's fsync of objects and refs on or off for the
  /// whole process (GIT_OPT_ENABLE_FSYNC_GITDIR). Unset leaves it as it is:
  /// on, unless something turned it off.
  std::optional<bool> fsync;
  /// A ref's lock file older than this was left by a process that died while
  /// moving the ref; advance() removes it instead of failing forever.
  std::chrono::milliseconds stale_lock_age{2000};
  /// When set, the path opened is a git directory (a linked worktree's admin
  /// directory, say) and this is its working directory: nothing in the
  /// working directory (its `.git`, which a command could have rewritten) is
  /// read to find the repository.
  std::filesystem::path work_tree;
};

struct diff_options {
  bool find_renames = true;      ///< pair deletes with similar adds (git's 50% threshold)
  std::uint16_t rename_threshold = 50;
};

class repository {
public:
  static result<repository> open(const std::filesystem::path& path, repository_options options = {});
  static result<repository> init(const std::filesystem::path& path, bool bare = false,
                                 repository_options options = {});

  repository(repository&&) noexcept;
  repository& operator=(repository&&) noexcept;
  ~repository();

  /// The repository's .git directory (or the bare repository itself).
  std::filesystem::path git_dir() const;
  /// The working directory; empty for a bare repository.
  std::filesystem::path workdir() const;

  /// A revision (a ref name, "HEAD", a hex id, or anything git rev-parse takes) to a commit id.
  result<oid> resolve(std::string_view revision);
  /// Where a ref points, or nullopt when it does not exist.
  result<std::optional<oid>> ref_target(std::string_view refname);
  /// The tree of a commit.
  result<oid> commit_tree(const oid& commit);
  result<std::vector<oid>> commit_parents(const oid& commit);
  result<std::string> commit_message(const oid& commit);

  result<oid> write_blob(std::string_view content);
  result<std::string> read_blob(const oid& blob);
  /// The entry at `path` in a tree, or nullopt.
  result<std::optional<tree_entry>> entry_at(const oid& tree, std::string_view path);
  /// Writes a tree: `base` (or the empty tree) with `changes` applied; a
  /// nullopt change removes the path. Paths use '/'; directories are made and
  /// dropped as needed. Cost grows with the changed paths, not the tree.
  result<oid> edit_tree(std::optional<oid> base, const std::map<std::string, std::optional<tree_entry>>& changes);
  /// Writes a commit object (no ref moves).
  result<oid> create_commit(const oid& tree, const std::vector<oid>& parents, std::string_view message,
                            const signature& author, const std::optional<signature>& committer = std::nullopt);

  /// Moves `refname` to `target` if it points at `expected` (nullopt: if it
  /// does not exist). A ref that moved meanwhile is `advanced == false` with
  /// where it points now.
  result<advance_result> advance(std::string_view refname, std::optional<oid> expected, const oid& target,
                                 std::string_view log_message);

  /// Fetches from `remote` (a URL, or a path to a repository) with git
  /// refspecs such as "+refs/heads/main:refs/remotes/shared/main". Local refs
  /// the refspecs name are updated; nothing else is touched.
  result<void> fetch(std::string_view remote, const std::vector<std::string>& refspecs);

  /// Pushes to `remote` with git refspecs ("<src>:<dst>"; a leading '+'
  /// forces, an empty <src> deletes). Without '+', a ref moves only by fast-
  /// forward: a remote ref that moved elsewhere meanwhile is an error
  /// (`already_exists`) naming it, so a push is a compare-and-swap against
  /// whatever the pusher's history contains.
  result<void> push(std::string_view remote, const std::vector<std::string>& refspecs);

  /// The best common ancestor of two commits, or nullopt when they share none.
  result<std::optional<oid>> merge_base(const oid& a, const oid& b);

  /// Whether `ancestor` is reachable from `descendant` (or equal).
  result<bool> is_ancestor(const oid& ancestor, const oid& descendant);

  /// Every file path (blobs, links, submodules) in a commit's or tree's
  /// tree, sorted.
  result<std::vector<std::string>> list_files(const oid& commit_or_tree);

  /// Whether a working-directory path (relative, '/'-separated; a trailing
  /// '/' asks about a directory) is ignored by .gitignore files,
  /// .git/info/exclude and core.excludesFile.
  result<bool> is_ignored(std::string_view path);

  /// What changed from one commit (or tree) to another, file by file.
  result<agentcore::diff> diff(const oid& from, const oid& to, diff_options options = {});

  /// Three-way merge of commits (or trees) in memory. Cost grows with the
  /// paths that differ, not with the repository: only subtrees that differ
  /// between base, ours and theirs are read. Writes blobs and trees, never refs.
  result<merge_result> merge(const oid& base, const oid& ours, const oid& theirs);
  /// The tree of `onto` with `commit`'s change taken back out (in memory).
  result<merge_result> revert(const oid& commit, const oid& onto);

  class impl;

private:
  friend struct repository_access;  // the library's own modules reach the libgit2 handle
  explicit repository(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// The most libgit2 keeps of small trees and commits it has read, across
/// every repository of the process (default here 16 MiB; libgit2's own is
/// 256 MiB, which a long run fills a few kilobytes per merge). Thread-safe.
void set_object_cache_limit(std::size_t bytes);

}  // namespace agentcore::git
