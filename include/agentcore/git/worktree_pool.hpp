// agentcore/git/worktree_pool.hpp: a bounded pool of git worktrees, one per
// worker slot, reused across tasks. The first use of a slot checks out every
// file; after that, moving a slot to a new base commit writes only the files
// that differ between its last commit and the new base.
//
//   auto pool = agentcore::git::worktree_pool::open("/srv/project", {.root = "/srv/slots", .slots = 8}).value();
//   auto wt = pool->acquire(main_tip).value();       // a worktree at main's tip, for one task
//   ... the agent edits files under wt.path() ...
//   auto commit = wt.commit_all("task 12: fix the lexer", sig).value();
//   auto changes = wt.diff_from_base().value();      // for the contract check
//   // wt going out of scope cleans the slot and gives it back
//
// Slots are linked worktrees of the repository (like `git worktree add`) with
// a detached HEAD, in <root>/slot-<n>, named in the repository after their
// directory, so pools with different roots share a repository safely. Opening
// a pool reuses existing slots and resets each to its last commit, so a crash
// never leaves a dirty slot behind.
//
// Whatever ran in a slot is untrusted: the pool never opens a slot through
// its `.git` (it opens the admin directory it made, in the repository's git
// directory), checks the slot's git link on every acquire, release and
// reopen and makes the slot again when it was changed, and writes and
// removes files without following links.
#pragma once

#include <agentcore/core/diff.hpp>
#include <agentcore/git/types.hpp>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::git {

struct worktree_pool_options {
  std::filesystem::path root;  ///< where slot directories live (created if missing); required
  std::size_t slots = 4;
};

class worktree_pool;
namespace detail {
struct pool_state;
struct slot;
}  // namespace detail

/// A slot on loan to one task. Move-only; destroying it (or release())
/// resets the slot to its last commit and returns it to the pool.
class worktree {
public:
  worktree(worktree&&) noexcept;
  worktree& operator=(worktree&&) noexcept;
  ~worktree();

  const std::filesystem::path& path() const noexcept;
  /// The repository's git directory, which git commands in the worktree read
  /// (a sandbox binds it read-only: process::sandbox_options::read_only).
  const std::filesystem::path& git_dir() const noexcept;
  /// The worktree's own git directory (HEAD, index), inside git_dir(): open
  /// it with repository_options::work_tree = path() to read the worktree
  /// without trusting its `.git` (agent::workspace_options::git_dir does).
  std::filesystem::path admin_dir() const;
  /// The commit the slot was prepared at.
  const oid& base() const noexcept;
  /// The slot's current commit (base, or the last commit_all).
  const oid& head() const noexcept;

  /// Stages every change in the worktree (honouring .gitignore) and commits it
  /// on top of head(). With nothing to commit, returns head() unchanged.
  /// After only_changed(), only the declared paths are staged.
  result<oid> commit_all(std::string_view message, const signature& author);

  /// Declares that since the slot was lent only these paths were changed
  /// (written, created or deleted): commit_all and the clean-up on release
  /// then touch those paths alone instead of looking at every file, so their
  /// cost follows the change, not the repository. Only for a borrower that
  /// knows (every write went through one place, no command ran); a wrong
  /// declaration leaves the undeclared changes in the slot. Cumulative.
  void only_changed(std::vector<std::string> paths);
  /// Says something undeclared may have changed (a command ran): for the rest
  /// of this lease every file is looked at, and only_changed() is ignored.
  void anything_changed();
  /// Merges commit `other` (typically the branch's new tip) into the slot's
  /// files: what merges cleanly is merged, each conflicting file is written
  /// with git's conflict markers. Returns the conflicting paths (empty: a
  /// clean merge, or `other` was already in). The next commit_all records a
  /// merge commit (parents: head() and `other`).
  result<std::vector<std::string>> merge_in(const oid& other);

  /// What changed between base() and head().
  result<agentcore::diff> diff_from_base();

  /// Gives the slot back now (cleaning uncommitted changes away).
  void release();

private:
  friend class worktree_pool;
  worktree(std::shared_ptr<detail::pool_state> pool, detail::slot* s);
  std::shared_ptr<detail::pool_state> pool_;
  detail::slot* slot_ = nullptr;
};

struct worktree_pool_stats {
  std::size_t slots = 0, free = 0;
  std::uint64_t full_checkouts = 0;   ///< slots made from scratch
  std::uint64_t files_written = 0;    ///< by incremental prepares
};

class worktree_pool {
public:
  static result<std::unique_ptr<worktree_pool>> open(const std::filesystem::path& repository,
                                                     worktree_pool_options options);
  ~worktree_pool();

  /// A free slot prepared at `base`; waits up to `timeout` for one to free up.
  /// Error `too_many_attempts` names the slot count when none did.
  result<worktree> acquire(const oid& base, std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

  worktree_pool_stats stats() const;
  /// The repository's git directory (see worktree::git_dir).
  const std::filesystem::path& git_dir() const noexcept;

private:
  explicit worktree_pool(std::shared_ptr<detail::pool_state> s);
  std::shared_ptr<detail::pool_state> state_;
};

}  // namespace agentcore::git
