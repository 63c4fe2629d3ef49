// agentcore/observe/progress.hpp: what a person watching a run sees, and
// what a run's event log says afterwards.
//
// progress_view: a sink for a terminal. Live (on a terminal) it keeps a block
// at the bottom, one line per worker with its task, phase and time in it,
// under a line with the cycle, queue depth, merges, tokens and cost, redrawn
// in place; notable events (claims, verdicts, gate rejections, the run's
// course) scroll above it. Not live (a pipe, a file) it prints those notable
// events as plain lines, one per event.
//
// task timelines: `agentcore replay-log` reads an event log back and prints,
// per task and attempt, claim to verdict with the time spent in each phase.
#pragma once

#include <agentcore/observe/events.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace agentcore::observe {

struct progress_options {
  std::FILE* out = stdout;
  /// Redraw in place (a terminal) or print plain lines; default: whether
  /// `out` is a terminal.
  std::optional<bool> live;
  /// At most one redraw per this interval (a flush() redraws at once).
  std::chrono::milliseconds refresh{250};
};

class progress_view final : public sink {
public:
  explicit progress_view(progress_options options = {});
  /// Leaves the last block on the screen.
  ~progress_view() override;

  void write(const event_view& e) override;
  /// Live: redraws now (the clock on each worker's line moves even when no
  /// event arrives; a host calls this on a timer).
  void flush() override;

  bool live() const { return live_; }
  /// The block as it would be drawn now: the summary line, then one line per worker.
  std::vector<std::string> block() const;
  /// The plain line an event prints, or "" when it is not notable.
  static std::string plain_line(const event_view& e);

private:
  struct worker_state {
    std::string task, phase;
    std::int64_t since_us = 0;
  };
  void redraw_locked(bool force);
  std::vector<std::string> block_locked(std::int64_t now_us) const;

  progress_options options_;
  bool live_ = false;
  mutable std::mutex mutex_;
  std::map<std::string, worker_state> workers_;
  std::string run_;
  std::uint64_t cycle_ = 0, merged_ = 0, tokens_ = 0;
  std::int64_t queue_ = 0, started_us_ = 0, last_event_us_ = 0;
  double cost_ = 0;
  std::map<std::string, bool> queued_;
  std::size_t drawn_ = 0;  // lines of the block on screen
  std::chrono::steady_clock::time_point last_draw_{};
};

struct phase_time {
  std::string phase;
  double seconds = 0;
};

/// One attempt at a task: one claim, to the worker's result.
struct task_attempt {
  std::string worker;
  std::int64_t claimed_us = 0, ended_us = 0;  ///< ended_us 0: the log ends before it did
  std::string result;                          ///< merged, rejected, abandoned, released, ...; "" when unfinished
  std::vector<phase_time> phases;              ///< in the order first entered, time summed per phase
};

struct task_timeline {
  std::string task, title;
  std::vector<task_attempt> attempts;
  std::string final_state;  ///< the board's last state for it in the log
};

/// Timelines in the order tasks were first claimed.
std::vector<task_timeline> task_timelines(const std::vector<event_record>& events);
std::string format_timelines(const std::vector<task_timeline>& timelines);

/// Reads an event log: `path` and, when `with_rotated`, its rotated parts
/// (path.N ... path.1, oldest first) before it. Lines that do not parse (a
/// line cut short by a crash) are skipped and counted in `skipped`.
result<std::vector<event_record>> read_event_log(const std::filesystem::path& path, bool with_rotated = true,
                                                 std::size_t* skipped = nullptr);

/// "2m31s", "12.0s", "0.4s", "1h02m".
std::string format_duration(double seconds);

}  // namespace agentcore::observe
