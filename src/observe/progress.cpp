#include <agentcore/observe/progress.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include <sys/ioctl.h>
#include <unistd.h>

namespace agentcore::observe {

namespace {

std::int64_t wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view str(const json::value* d, std::string_view key) {
  if (!d || !d->is_object()) return {};
  auto* m = d->get_object().if_contains(key);
  return m && m->is_string() ? std::string_view(m->get_string()) : std::string_view();
}

double num(const json::value* d, std::string_view key) {
  if (!d || !d->is_object()) return 0;
  auto* m = d->get_object().if_contains(key);
  if (!m) return 0;
  if (m->is_double()) return m->get_double();
  if (m->is_int64()) return static_cast<double>(m->get_int64());
  if (m->is_uint64()) return static_cast<double>(m->get_uint64());
  return 0;
}

std::string first_line(std::string_view s) { return std::string(s.substr(0, s.find('\n'))); }

bool notable_phase(std::string_view p) {
  return p == "claimed" || p == "merged" || p == "rejected" || p == "abandoned" || p == "resolving" ||
         p == "released" || p == "claim_lost";
}

bool worker_result(std::string_view p) {
  return p == "merged" || p == "rejected" || p == "abandoned" || p == "released" || p == "claim_lost" ||
         p == "submitted" || p == "idle";
}

std::string human_count(double n) {
  if (n >= 1e6) return fmt::format("{:.1f}M", n / 1e6);
  if (n >= 1e4) return fmt::format("{:.0f}k", n / 1e3);
  return fmt::format("{:.0f}", n);
}

std::size_t terminal_width(std::FILE* f) {
  winsize ws{};
  if (::ioctl(::fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10) return ws.ws_col;
  return 100;
}

}  // namespace

std::string format_duration(double s) {
  if (s < 0) s = 0;
  if (s < 60) return fmt::format("{:.1f}s", s);
  auto whole = static_cast<long long>(s);
  if (whole < 3600) return fmt::format("{}m{:02}s", whole / 60, whole % 60);
  return fmt::format("{}h{:02}m", whole / 3600, whole % 3600 / 60);
}

// --- the live view ---

progress_view::progress_view(progress_options options) : options_(std::move(options)) {
  live_ = options_.live ? *options_.live : ::isatty(::fileno(options_.out)) == 1;
}

progress_view::~progress_view() {
  std::lock_guard lock(mutex_);
  if (live_) redraw_locked(true);
  std::fflush(options_.out);
}

std::string progress_view::plain_line(const event_view& e) {
  const json::value* d = e.data;
  if (e.type == "roles.worker_phase") {
    auto phase = str(d, "phase");
    if (!notable_phase(phase)) return {};
    auto detail = first_line(str(d, "detail"));
    return fmt::format("{:>6} {:<10} {}{}", str(d, "worker"), phase, str(d, "task"),
                       detail.empty() ? "" : " - " + detail);
  }
  if (e.type == "agent.tool_call") {
    auto head = str(d, "answer_head");
    auto* err = d && d->is_object() ? d->get_object().if_contains("is_error") : nullptr;
    if (err && err->is_bool() && err->get_bool() && head.find("not allowed by the task's contract") != std::string_view::npos)
      return fmt::format("  tool   refused    {} - {}", str(d, "task"), head);
    return {};
  }
  if (e.type == "gate.step") {
    if (str(d, "step") != "bisect") return {};
    std::string changes;
    if (d && d->is_object())
      if (auto* c = d->get_object().if_contains("changes"); c && c->is_array())
        for (const auto& x : c->get_array())
          if (x.is_string()) changes += (changes.empty() ? "" : " ") + std::string(x.get_string());
    return fmt::format("  gate   bisect     {} - {}", changes, str(d, "detail"));
  }
  if (e.type == "gate.verdict") {
    auto v = str(d, "verdict");
    if (v == "merged" || v == "queued" || v.empty()) return {};
    return fmt::format("  gate   {:<10} {} - {}", v, str(d, "change"), first_line(str(d, "detail")));
  }
  if (e.type == "runtime.swarm") return fmt::format("swarm  {:<10} {}", str(d, "what"), str(d, "detail"));
  return {};
}

void progress_view::write(const event_view& e) {
  std::lock_guard lock(mutex_);
  const json::value* d = e.data;
  last_event_us_ = e.time_us;
  if (run_.empty() && !e.run.empty()) run_ = std::string(e.run);
  if (e.cycle) cycle_ = e.cycle;
  if (e.type == "runtime.swarm" && str(d, "what") == "started" && !started_us_) started_us_ = e.time_us;
  if (!started_us_) started_us_ = e.time_us;
  if (e.type == "roles.worker_phase") {
    auto& w = workers_[std::string(str(d, "worker"))];
    auto phase = str(d, "phase");
    if (worker_result(phase)) {
      w = {"", phase == "idle" ? "idle" : "idle (" + std::string(phase) + ")", e.time_us};
    } else {
      w.task = std::string(str(d, "task"));
      if (w.phase != phase) {
        w.phase = std::string(phase);
        w.since_us = e.time_us;
      }
    }
  } else if (e.type == "gate.verdict") {
    auto v = str(d, "verdict");
    std::string change(str(d, "change"));
    if (v == "merged") ++merged_;
    if (v == "queued") {
      if (queued_.emplace(change, true).second) ++queue_;
    } else if (!v.empty() && queued_.erase(change)) {
      --queue_;
    }
  } else if (e.type == "agent.turn") {
    tokens_ += static_cast<std::uint64_t>(num(d, "input_tokens") + num(d, "output_tokens"));
    cost_ += num(d, "cost");
  }
  auto line = plain_line(e);
  if (!live_) {
    if (!line.empty()) {
      std::fputs(line.c_str(), options_.out);
      std::fputc('\n', options_.out);
      std::fflush(options_.out);
    }
    return;
  }
  if (!line.empty()) {
    // The notable line goes above the block: clear the block, print, redraw.
    if (drawn_) fmt::print(options_.out, "\x1b[{}F\x1b[J", drawn_);
    drawn_ = 0;
    auto width = terminal_width(options_.out);
    if (line.size() >= width) line.resize(width - 1);
    std::fputs(line.c_str(), options_.out);
    std::fputc('\n', options_.out);
    redraw_locked(true);
    return;
  }
  redraw_locked(false);
}

void progress_view::flush() {
  std::lock_guard lock(mutex_);
  if (live_) redraw_locked(true);
  std::fflush(options_.out);
}

std::vector<std::string> progress_view::block() const {
  std::lock_guard lock(mutex_);
  return block_locked(wall_us());
}

std::vector<std::string> progress_view::block_locked(std::int64_t now_us) const {
  std::vector<std::string> out;
  out.push_back(fmt::format("{}cycle {} | {} | merged {} | queue {} | tokens {} | cost {:.4f}",
                            run_.empty() ? "" : "run " + run_ + " | ", cycle_,
                            format_duration(static_cast<double>(now_us - started_us_) / 1e6), merged_,
                            std::max<std::int64_t>(queue_, 0), human_count(static_cast<double>(tokens_)), cost_));
  for (const auto& [name, w] : workers_)
    out.push_back(fmt::format("  {:<10} {:<24} {:<12} {}", name, w.task.empty() ? "-" : w.task, w.phase,
                              w.task.empty() ? "" : format_duration(static_cast<double>(now_us - w.since_us) / 1e6)));
  return out;
}

void progress_view::redraw_locked(bool force) {
  auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < options_.refresh) return;
  last_draw_ = now;
  auto lines = block_locked(wall_us());
  auto width = terminal_width(options_.out);
  std::string buf;
  if (drawn_) buf += fmt::format("\x1b[{}F\x1b[J", drawn_);
  for (auto& l : lines) {
    if (l.size() >= width) l.resize(width - 1);
    buf += l;
    buf += '\n';
  }
  std::fputs(buf.c_str(), options_.out);
  std::fflush(options_.out);
  drawn_ = lines.size();
}

// --- timelines ---

std::vector<task_timeline> task_timelines(const std::vector<event_record>& events) {
  std::vector<task_timeline> out;
  std::map<std::string, std::size_t> index;  // task -> out[i]
  auto timeline = [&](const std::string& task) -> task_timeline& {
    auto [it, fresh] = index.emplace(task, out.size());
    if (fresh) out.push_back({task, {}, {}, {}});
    return out[it->second];
  };
  // The open phase of each attempt: (task) -> (phase, since).
  std::map<std::string, std::pair<std::string, std::int64_t>> open;
  auto close = [&](task_attempt& a, const std::string& task, std::int64_t at) {
    auto it = open.find(task);
    if (it == open.end()) return;
    auto& [phase, since] = it->second;
    auto p = std::find_if(a.phases.begin(), a.phases.end(), [&](const phase_time& x) { return x.phase == phase; });
    if (p == a.phases.end()) p = a.phases.insert(a.phases.end(), {phase, 0});
    p->seconds += static_cast<double>(at - since) / 1e6;
    open.erase(it);
  };
  for (const auto& e : events) {
    const json::value* d = &e.data;
    if (e.type == "roles.worker_phase") {
      std::string task(str(d, "task"));
      if (task.empty()) continue;
      std::string phase(str(d, "phase"));
      auto& t = timeline(task);
      if (phase == "claimed") {
        if (!t.attempts.empty()) close(t.attempts.back(), task, e.time_us);
        t.attempts.push_back({std::string(str(d, "worker")), e.time_us, 0, {}, {}});
        if (t.title.empty()) t.title = std::string(str(d, "detail"));
        open[task] = {"claimed", e.time_us};
        continue;
      }
      if (t.attempts.empty()) continue;  // the log starts mid-attempt
      auto& a = t.attempts.back();
      close(a, task, e.time_us);
      if (worker_result(phase)) {
        a.result = phase;
        a.ended_us = e.time_us;
      } else {
        open[task] = {phase, e.time_us};
      }
    } else if (e.type == "board.task_transition") {
      std::string task(str(d, "id"));
      if (task.empty()) continue;
      auto it = index.find(task);
      if (it != index.end()) out[it->second].final_state = std::string(str(d, "to"));
    }
  }
  return out;
}

std::string format_timelines(const std::vector<task_timeline>& timelines) {
  std::string out;
  for (const auto& t : timelines) {
    out += fmt::format("task {}{}{}\n", t.task, t.title.empty() ? "" : " (" + t.title + ")",
                       t.final_state.empty() ? "" : ": " + t.final_state);
    int n = 0;
    for (const auto& a : t.attempts) {
      ++n;
      auto from = format_time(a.claimed_us).substr(11, 8);
      if (a.ended_us)
        out += fmt::format("  attempt {} by {}: claimed {}, {} after {}\n", n, a.worker, from, a.result,
                           format_duration(static_cast<double>(a.ended_us - a.claimed_us) / 1e6));
      else
        out += fmt::format("  attempt {} by {}: claimed {}, unfinished when the log ends\n", n, a.worker, from);
      std::string phases;
      for (const auto& p : a.phases)
        phases += fmt::format("{}{} {}", phases.empty() ? "" : ", ", p.phase, format_duration(p.seconds));
      if (!phases.empty()) out += "    " + phases + "\n";
    }
  }
  return out;
}

result<std::vector<event_record>> read_event_log(const std::filesystem::path& path, bool with_rotated,
                                                 std::size_t* skipped) {
  std::vector<std::filesystem::path> files;
  if (with_rotated) {
    std::vector<std::filesystem::path> older;
    for (unsigned i = 1;; ++i) {
      auto p = path;
      p += fmt::format(".{}", i);
      if (!std::filesystem::exists(p)) break;
      older.push_back(p);
    }
    files.assign(older.rbegin(), older.rend());
  }
  if (!std::filesystem::exists(path) && files.empty())
    return fail(error::not_found, fmt::format("event log '{}' does not exist", path.string()));
  if (std::filesystem::exists(path)) files.push_back(path);
  std::vector<event_record> out;
  std::size_t bad = 0;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) return fail(error::io_error, fmt::format("event log '{}' cannot be read", f.string()));
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      auto e = parse_event_line(line);
      if (!e) {
        // A version this library does not read is not a torn line: say so.
        if (e.error().message().find("schema version") != std::string::npos)
          return fail(error::invalid_argument, fmt::format("event log '{}': {}", f.string(), e.error().message()));
        ++bad;
        continue;
      }
      out.push_back(std::move(*e));
    }
  }
  if (skipped) *skipped = bad;
  return out;
}

}  // namespace agentcore::observe
