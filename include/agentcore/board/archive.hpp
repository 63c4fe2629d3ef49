// agentcore/board/archive.hpp: where finished tasks go so that the live board
// stays the size of the work in flight. A run of weeks finishes hundreds of
// thousands of tasks; kept on the board, every one of them stays in a file
// store's memory and in every planning round's read of the board. Archived,
// a merged or superseded task leaves the store's keyspace and is still
// found: task_board::get, a proposal under its id or title, a dependency on
// it, a revert of its merge and `agentcore status` / `task show` all look in
// the archive too.
//
//   auto archive = board::open_sqlite_archive(dir / "archive.sqlite").value();
//   board::task_board board(*store, {.archive = archive});
//   board.archive_finished(1000);   // all but the newest 1000 finished tasks
//
// Two kinds: a SQLite file (for a file store: the tasks are on disk, indexed
// by id and title, and only SQLite's page cache is in memory), and the store
// itself under another prefix (for etcd, which holds its keyspace outside the
// process; the planner's reads of the board still skip them).
#pragma once

#include <agentcore/board/task.hpp>
#include <agentcore/store/store.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::board {

/// A title as the board compares titles: lower case, runs of white space as
/// one space, none at either end. Two tasks whose keys are equal would do
/// the same work.
std::string title_key(std::string_view title);

struct archive_query {
  std::optional<task_state> state;  ///< only tasks in this state
  std::size_t limit = 100;          ///< at most this many, newest first
  std::size_t offset = 0;           ///< after skipping this many
};

class task_archive {
public:
  virtual ~task_archive() = default;
  /// Adds (or replaces, by id) tasks; durable when it returns.
  virtual result<void> put(const std::vector<task>& tasks) = 0;
  virtual result<std::optional<task>> get(const task_id& id) = 0;
  /// An archived task in `state` whose title_key is `key`, if any.
  virtual result<std::optional<task>> find_title(std::string_view key, task_state state) = 0;
  /// Archived tasks, newest (last archived) first.
  virtual result<std::vector<task>> list(const archive_query& q) = 0;
  /// How many tasks are archived, in all or in `state`.
  virtual result<std::size_t> count(std::optional<task_state> state = std::nullopt) = 0;
  /// Takes a task out (its merge was reverted: it is back on the board).
  virtual result<void> remove(const task_id& id) = 0;
  /// Where it is, for messages: a file name, or "store prefix '...'".
  virtual std::string where() const = 0;
  /// What this archive is, made at random when it was created: the board
  /// records it with the first task it archives, so an archive deleted or
  /// replaced later is an error, not work silently forgotten (and done again).
  /// Empty for a read-only archive that does not exist.
  virtual result<std::string> identity() = 0;
};

struct sqlite_archive_options {
  /// Opens an existing archive for reading only (`status`, `task show`):
  /// nothing is written, and a missing file is not created (an empty archive).
  bool read_only = false;
};
/// An archive in a SQLite file (created with its directory when missing).
/// Errors name the file and what SQLite said.
result<std::shared_ptr<task_archive>> open_sqlite_archive(const std::filesystem::path& file,
                                                          sqlite_archive_options options = {});

/// An archive kept in `s` under `prefix` (e.g. "board/archive/"): for stores
/// that hold their data outside the process.
std::shared_ptr<task_archive> make_store_archive(store::store& s, std::string prefix);

}  // namespace agentcore::board
