// agentcore/observe/jsonl_sink.hpp: the event log. One event per line in its
// JSON form (events.hpp), appended to a file that is rotated by size:
// run.jsonl -> run.jsonl.1 -> ... -> run.jsonl.<keep>, the oldest dropped.
// A rotated file is fsynced before it is renamed, so a finished file is on
// disk whole; lines are never split across files.
//
//   auto log = agentcore::observe::jsonl_sink::open({.path = "logs/run.jsonl"});
//   if (!log) ...;                       // the error names the path
//   hub.add(*log);
#pragma once

#include <agentcore/observe/events.hpp>

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

namespace agentcore::observe {

struct jsonl_options {
  std::filesystem::path path;
  /// A file is rotated before a line would take it past this size (0: never).
  std::uint64_t max_bytes = 64u << 20;
  /// Rotated files kept beside the current one.
  unsigned keep = 5;
  /// Lines are buffered up to this many bytes before they are written.
  std::size_t buffer_bytes = 64u << 10;
  /// Lines older than this are written when the next event arrives; a quiet
  /// run's last lines wait for flush() (the hub's, which a host calls on a
  /// timer; `agentcore run` flushes every second).
  std::chrono::milliseconds max_delay{200};
};

class jsonl_sink final : public sink {
public:
  /// Opens (appends to) the file, making its directory. An existing file's
  /// size counts towards rotation.
  static result<std::shared_ptr<jsonl_sink>> open(jsonl_options options);
  ~jsonl_sink() override;

  void write(const event_view& e) override;
  /// Writes the buffered lines to the file (no fsync).
  void flush() override;
  /// flush(), then fsync.
  result<void> sync();

  /// The first error writing or rotating (a full disk, a removed directory),
  /// or none. Lines that could not be written stay buffered (up to 64 MiB,
  /// past which the oldest are dropped and counted) and are retried.
  error_info last_error() const;
  std::uint64_t lines_written() const;
  std::uint64_t lines_dropped() const;
  std::uint64_t rotations() const;

private:
  explicit jsonl_sink(jsonl_options o, int fd, std::uint64_t size);
  void write_buffer_locked();
  bool rotate_locked();

  jsonl_options options_;
  mutable std::mutex mutex_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  std::string buffer_;
  std::chrono::steady_clock::time_point first_buffered_{};
  error_info error_;
  std::uint64_t written_ = 0, dropped_ = 0, rotations_ = 0, buffered_lines_ = 0;
};

}  // namespace agentcore::observe
