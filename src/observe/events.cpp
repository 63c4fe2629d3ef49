#include <agentcore/observe/events.hpp>

#include <boost/json/serializer.hpp>
#include <fmt/format.h>

#include <charconv>
#include <ctime>
#include <limits>

namespace agentcore::observe {

namespace {

void append_quoted(std::string& out, std::string_view s) {
  out += '"';
  std::size_t run = 0;  // the start of the stretch that needs no escaping
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_number(std::string& out, std::uint64_t n) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, p);
}

void append_value(std::string& out, const json::value& v) {
  thread_local json::serializer sr;
  sr.reset(&v);
  char buf[2048];
  while (!sr.done()) out.append(sr.read(buf, sizeof buf));
}

/// The role an event type speaks for, when its payload does not say.
std::string_view role_of_type(std::string_view type) {
  if (type.starts_with("board.")) return "board";
  if (type.starts_with("gate.")) return "gate";
  if (type == "roles.worker_phase" || type == "agent.command") return "worker";
  if (type == "roles.plan") return "planner";
  if (type == "roles.judgement") return "judge";
  if (type.starts_with("runtime.")) return "runtime";
  if (type.starts_with("model.")) return "model";
  return {};
}

std::string_view string_member(const json::value& v, std::string_view key) {
  if (!v.is_object()) return {};
  auto* m = v.get_object().if_contains(key);
  return m && m->is_string() ? std::string_view(m->get_string()) : std::string_view();
}

error_info bad_event(std::string_view why) {
  return fail(error::invalid_argument, fmt::format("event: {}", why));
}

}  // namespace

std::string format_time(std::int64_t time_us) {
  std::int64_t secs = time_us >= 0 ? time_us / 1'000'000 : (time_us - 999'999) / 1'000'000;
  auto micros = time_us - secs * 1'000'000;
  std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, micros);
}

result<std::int64_t> parse_time(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.ffffff]Z
  auto bad = [&] {
    return fail(error::invalid_argument,
                fmt::format("'{}' is not a UTC time like 2026-11-28T13:12:07.123456Z", s));
  };
  if (s.size() < 20 || s.back() != 'Z' || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
      s[16] != ':')
    return bad();
  auto num = [&](std::size_t at, std::size_t len, int& out) {
    auto [p, ec] = std::from_chars(s.data() + at, s.data() + at + len, out);
    return ec == std::errc() && p == s.data() + at + len;
  };
  std::tm tm{};
  int y, mo, d, h, mi, sec;
  if (!num(0, 4, y) || !num(5, 2, mo) || !num(8, 2, d) || !num(11, 2, h) || !num(14, 2, mi) || !num(17, 2, sec))
    return bad();
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return bad();
  std::int64_t micros = 0;
  std::string_view frac = s.substr(19, s.size() - 20);
  if (!frac.empty()) {
    if (frac[0] != '.' || frac.size() < 2 || frac.size() > 7) return bad();
    int digits = 0;
    for (char c : frac.substr(1)) {
      if (c < '0' || c > '9') return bad();
      micros = micros * 10 + (c - '0');
      ++digits;
    }
    for (; digits < 6; ++digits) micros *= 10;
  }
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  std::int64_t secs = ::timegm(&tm);
  return secs * 1'000'000 + micros;
}

/// The time's text, formatting the date only when the second changes (events
/// come in bursts within one second; gmtime and formatting are not free).
static void append_time(std::string& out, std::int64_t time_us) {
  thread_local std::int64_t cached_second = std::numeric_limits<std::int64_t>::min();
  thread_local std::string cached;  // "YYYY-MM-DDTHH:MM:SS."
  std::int64_t secs = time_us >= 0 ? time_us / 1'000'000 : (time_us - 999'999) / 1'000'000;
  if (secs != cached_second) {
    cached = format_time(secs * 1'000'000);
    cached.resize(cached.size() - 7);  // keep "...SS."
    cached_second = secs;
  }
  out += cached;
  auto micros = static_cast<unsigned>(time_us - secs * 1'000'000);
  char digits[6];
  for (int i = 5; i >= 0; --i, micros /= 10) digits[i] = static_cast<char>('0' + micros % 10);
  out.append(digits, 6);
  out += 'Z';
}

void append_json(std::string& out, const event_view& e) {
  out += "{\"v\":";
  append_number(out, static_cast<std::uint64_t>(event_schema_version));
  out += ",\"seq\":";
  append_number(out, e.seq);
  out += ",\"time\":\"";
  append_time(out, e.time_us);
  out += "\",\"type\":";
  append_quoted(out, e.type);
  out += ",\"run\":";
  append_quoted(out, e.run);
  out += ",\"cycle\":";
  append_number(out, e.cycle);
  out += ",\"role\":";
  append_quoted(out, e.role);
  out += ",\"worker\":";
  append_quoted(out, e.worker);
  out += ",\"task\":";
  append_quoted(out, e.task);
  out += ",\"data\":";
  if (e.data) append_value(out, *e.data);
  else out += "null";
  out += '}';
}

json::value to_json(const event_view& e) {
  std::string s;
  append_json(s, e);
  return parse_json(s).value();
}

event_record event_record::from(const event_view& v) {
  return {v.seq,         v.time_us,           std::string(v.type), std::string(v.run),  v.cycle,
          std::string(v.role), std::string(v.worker), std::string(v.task), v.data ? *v.data : json::value()};
}

result<event_record> event_from_json(const json::value& v) {
  if (!v.is_object()) return bad_event("not a JSON object");
  const auto& o = v.get_object();
  auto version = json_field<std::int64_t>(o, "v", "event");
  if (!version) return version.error();
  if (*version != event_schema_version)
    return bad_event(fmt::format("schema version {} (this library reads version {}); read it with the agentcore "
                                 "that wrote it",
                                 *version, event_schema_version));
  event_record r;
  auto seq = json_field<std::uint64_t>(o, "seq", "event");
  if (!seq) return seq.error();
  r.seq = *seq;
  auto time = json_field<std::string>(o, "time", "event");
  if (!time) return time.error();
  auto t = parse_time(*time);
  if (!t) return t.error();
  r.time_us = *t;
  for (auto [key, out] : {std::pair{"type", &r.type}, std::pair{"run", &r.run}, std::pair{"role", &r.role},
                          std::pair{"worker", &r.worker}, std::pair{"task", &r.task}}) {
    auto s = json_field<std::string>(o, key, "event");
    if (!s) return s.error();
    *out = std::move(*s);
  }
  if (r.type.empty()) return bad_event("\"type\" is empty");
  auto cycle = json_field<std::uint64_t>(o, "cycle", "event");
  if (!cycle) return cycle.error();
  r.cycle = *cycle;
  auto* data = o.if_contains("data");
  if (!data) return bad_event("no \"data\"");
  r.data = *data;
  return r;
}

result<event_record> parse_event_line(std::string_view line) {
  auto v = parse_json(line);
  if (!v) return v.error();
  return event_from_json(*v);
}

// --- hub ---

hub::hub(event_bus& bus, hub_options options) : options_(std::move(options)) {
  sub_ = bus.subscribe_all([this](const event& e) { on_event(e); });
}

hub::~hub() {
  sub_.reset();
  flush();
}

void hub::add(std::shared_ptr<sink> s) {
  std::lock_guard lock(mutex_);
  sinks_.push_back(std::move(s));
}

void hub::flush() {
  std::lock_guard lock(mutex_);
  for (auto& s : sinks_) s->flush();
}

std::uint64_t hub::events_seen() const {
  std::lock_guard lock(mutex_);
  return seen_;
}

void hub::on_event(const event& e) {
  std::lock_guard lock(mutex_);
  ++seen_;
  const json::value& d = e.body;
  std::string_view role = string_member(d, "role");
  if (role.empty()) role = role_of_type(e.type);
  std::string_view task = string_member(d, "task");
  std::string_view worker = string_member(d, "worker");
  std::uint64_t cycle = cycle_;
  if (e.type == "board.task_transition") {
    task = string_member(d, "id");
    auto to = string_member(d, "to");
    if (to == "claimed" && !worker.empty()) {
      auto it = worker_of_task_.find(task);
      if (it == worker_of_task_.end()) worker_of_task_.emplace(std::string(task), std::string(worker));
      else if (it->second != worker) it->second = std::string(worker);
    } else if (to == "merged" || to == "abandoned" || to == "failed") {
      if (worker.empty())
        if (auto it = worker_of_task_.find(task); it != worker_of_task_.end()) worker = it->second;
    }
  } else if (e.type == "runtime.swarm") {
    if (string_member(d, "what") == "started" && cycle_ == 0) cycle = cycle_ = 1;
  } else if (e.type == "roles.judgement") {
    // The judgement closes its cycle; what follows is the next one.
    if (d.is_object())
      if (auto* c = d.get_object().if_contains("cycle"); c && c->is_int64() && c->get_int64() > 0) {
        cycle = static_cast<std::uint64_t>(c->get_int64());
        cycle_ = cycle + 1;
      }
  }
  if (worker.empty() && !task.empty())
    if (auto it = worker_of_task_.find(task); it != worker_of_task_.end()) worker = it->second;
  event_view v{e.seq, e.time_us, e.type, options_.run, cycle, role, worker, task, &d};
  for (auto& s : sinks_) s->write(v);
  if (e.type == "board.task_transition") {
    auto to = string_member(d, "to");
    if (to == "merged" || to == "abandoned" || to == "failed") worker_of_task_.erase(std::string(task));
  }
}

}  // namespace agentcore::observe
