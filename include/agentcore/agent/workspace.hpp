// agentcore/agent/workspace.hpp: a task's worktree as the agent's tools see
// it: every path is confined to the worktree (no "..", no absolute paths, no
// symbolic link out of it, nothing under .git) and every write to the task's
// contract, refused at once with a reason the model can act on.
//
//   auto ws = agent::workspace::open(wt.path(), contract).value();
//   auto text = ws.read("src/lexer.cpp");                  // result<std::string>
//   auto w = ws.write("docs/notes.md", "...");             // error: path_not_allowed, with the contract's reason
//   if (!w) tell_model(w.error().message());
//
// Writes never follow a symbolic link (a link the agent made with a command
// cannot carry a write out of the worktree) and never write into a file's
// existing inode (a hard link to a file elsewhere is replaced, not written
// through). Reads follow links only while they stay inside the worktree.
#pragma once

#include <agentcore/contract/contract.hpp>
#include <agentcore/core/error.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::agent {

/// Refusals and failures of the agent module ("agentcore.agent"). A tool turns
/// them into a message for the model; they are never thrown.
enum class error {
  success = 0,
  path_refused = 1,     ///< the path leaves the worktree, goes through a link, or into .git
  path_not_allowed,     ///< the task's contract does not allow writing the path
  not_found,            ///< no such file or directory
  too_large,            ///< a file or content over the workspace's size limit
  binary,               ///< binary content where text is needed (or the contract forbids binaries)
  search_text_missing,  ///< edit: the text to replace is not in the file
  search_text_ambiguous,///< edit: the text to replace is there more than once
  bad_arguments,        ///< a tool call's arguments are missing, mistyped or not JSON
};

const boost::system::error_category& agent_category() noexcept;
inline error_code make_error_code(error e) noexcept { return {static_cast<int>(e), agent_category()}; }
inline error_info fail(error e, std::string message) { return {make_error_code(e), std::move(message)}; }

}  // namespace agentcore::agent

template <>
struct boost::system::is_error_code_enum<agentcore::agent::error> : std::true_type {};

namespace agentcore::agent {

struct workspace_options {
  /// The largest file the tools read or write whole.
  std::size_t max_file_bytes = 4u << 20;
  /// Honour .gitignore when listing and searching (needs the worktree to be a
  /// git worktree; otherwise nothing is ignored but .git).
  bool honour_gitignore = true;
  /// The git directory the ignore rules are read through, with the root as its
  /// working directory (a pool slot's: git::worktree::admin_dir()). Empty: the
  /// root's `.git`, which commands run in the root could have replaced.
  std::filesystem::path git_dir;
};

/// A listed file or directory, relative to the worktree root.
struct entry {
  std::string path;
  bool directory = false;
  bool link = false;
  std::uint64_t size = 0;
};

class workspace {
public:
  /// Opens `root` (an existing directory) for a task bound by `terms`.
  static result<workspace> open(const std::filesystem::path& root, contract::task_contract terms = {},
                                workspace_options options = {});
  workspace(workspace&&) noexcept;
  workspace& operator=(workspace&&) noexcept;
  ~workspace();

  const std::filesystem::path& root() const noexcept;
  const contract::compiled_contract& terms() const noexcept;
  const workspace_options& options() const noexcept;

  /// The worktree-relative form of a path a model gave ("./src/a.cpp" and
  /// "<root>/src/a.cpp" are accepted as "src/a.cpp"), or why it is refused.
  /// An empty path or "." is the root itself ("").
  result<std::string> relative(std::string_view given) const;

  /// A file's whole content. Refused: outside the worktree, a directory,
  /// larger than max_file_bytes.
  result<std::string> read(std::string_view path) const;
  /// Creates or replaces a file (and any missing directories), after the
  /// confinement and contract checks; keeps an existing file's mode.
  result<void> write(std::string_view path, std::string_view content);
  /// Files (and, when not recursive, directories) under `dir`, sorted, at most
  /// `limit`; `truncated` says whether more were left out. Ignored paths and
  /// .git are skipped; links are listed, never followed.
  result<std::vector<entry>> list(std::string_view dir, bool recursive, std::size_t limit, bool& truncated) const;
  /// Whether .gitignore rules ignore a relative path (directories: trailing '/').
  bool is_ignored(std::string_view path) const;

  /// A fingerprint of every file's path, size, mode and modification time:
  /// it changes when a command changed a file. Costs a stat per file.
  std::uint64_t fingerprint() const;
  /// Counts changes the tools made or observed (writes, commands that changed
  /// files): the agent loop's measure of progress.
  std::uint64_t changes() const noexcept;
  void note_change() noexcept;
  /// The paths written through write(), in order of first write.
  const std::vector<std::string>& written() const noexcept;
  /// Says the worktree may have changed other than through write() (a
  /// command ran): written() is then not the whole story. A tool that changes
  /// files without write() must call it.
  void note_untracked_change() noexcept;
  bool untracked_changes() const noexcept;

private:
  struct impl;
  explicit workspace(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

/// True when the content looks binary (a NUL in its first 8000 bytes, git's rule).
bool looks_binary(std::string_view content) noexcept;

}  // namespace agentcore::agent
