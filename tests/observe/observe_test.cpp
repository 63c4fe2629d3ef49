// observe: the events' JSON form, the hub's context, and each sink against a
// scripted run (a real board on a memory store plus the events the roles,
// the gate and the runtime publish, in the order a run has them).
#include "observe/scripted_run.hpp"
#include "support/temp_dir.hpp"

#include <agentcore/agent/loop.hpp>
#include <agentcore/board/task_board.hpp>
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/observe/events.hpp>
#include <agentcore/observe/jsonl_sink.hpp>
#include <agentcore/observe/metrics.hpp>
#include <agentcore/observe/progress.hpp>
#include <agentcore/roles/judge.hpp>
#include <agentcore/roles/worker.hpp>
#include <agentcore/runtime/swarm.hpp>
#include <agentcore/store/memory_store.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>
#include <sys/stat.h>

using namespace agentcore;
using namespace agentcore::observe;
using agentcore::test::scripted_run;

namespace {

std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("observe.time_format_round_trips") {
  for (std::int64_t t : {0LL, 1'795'958'327'123'456LL, 1'700'000'000'000'001LL, 951'782'400'000'000LL}) {
    auto s = format_time(t);
    CHECK(s.size() == 27);
    CHECK(parse_time(s).value() == t);
  }
  CHECK(format_time(1'795'958'327'123'456LL) == "2026-11-29T13:18:47.123456Z");
  CHECK(parse_time("2026-11-28T13:12:07Z").value() == parse_time("2026-11-28T13:12:07.000000Z").value());
  CHECK(parse_time("2026-11-28T13:12:07.5Z").value() % 1'000'000 == 500'000);
  for (const char* bad : {"", "2026-11-28 13:12:07Z", "2026-13-28T13:12:07Z", "2026-11-28T13:12:07", "yesterday",
                          "2026-11-28T13:12:07.1234567Z", "2026-11-28T13:12:07.12a4Z"}) {
    auto r = parse_time(bad);
    REQUIRE_MESSAGE(!r, bad);
    CHECK(r.error().message().find("UTC time") != std::string::npos);
  }
}

TEST_CASE("observe.event_json_round_trips_and_bad_input_is_named") {
  event_record r{42, 1'795'958'327'123'456LL, "gate.verdict", "run \"x\"\n", 3, "gate", "w1", "t7",
                 json::object{{"verdict", "merged"}, {"paths", json::array{"a", "b\\c"}}, {"n", 1.5}}};
  std::string line;
  append_json(line, r.view());
  CHECK(line.find('\n') == std::string::npos);  // one line, whatever the strings hold
  auto back = parse_event_line(line);
  REQUIRE_MESSAGE(back, back.error().message());
  CHECK(*back == r);
  CHECK(to_json(r.view()).as_object().at("v").as_int64() == event_schema_version);
  CHECK(to_json(r.view()).as_object().at("time").as_string() == "2026-11-29T13:18:47.123456Z");

  auto without = [&](std::string_view key) {
    auto o = to_json(r.view()).as_object();
    o.erase(key);
    return event_from_json(o);
  };
  for (const char* key : {"v", "seq", "time", "type", "run", "cycle", "role", "worker", "task", "data"}) {
    auto e = without(key);
    REQUIRE_MESSAGE(!e, key);
    CHECK_MESSAGE(e.error().message().find(key) != std::string::npos, e.error().message());
  }
  auto o = to_json(r.view()).as_object();
  o["v"] = 2;
  auto newer = event_from_json(o);
  REQUIRE_FALSE(newer);
  CHECK(newer.error().message().find("version 2") != std::string::npos);
  o["v"] = 1;
  o["cycle"] = "three";
  CHECK(event_from_json(o).error().message().find("cycle") != std::string::npos);
  CHECK_FALSE(parse_event_line("{\"v\":1,"));
  CHECK_FALSE(parse_event_line("[]"));
}

TEST_CASE("observe.hub_gives_events_their_context") {
  event_bus bus;
  std::vector<event_record> seen;
  {
    hub h(bus, {.run = "nightly"});
    h.add(std::make_shared<callback_sink>([&](const event_view& e) { seen.push_back(event_record::from(e)); }));
    scripted_run(bus);
    CHECK(h.events_seen() == bus.published());
  }
  REQUIRE(seen.size() == bus.published());
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].seq == i + 1);
    CHECK(seen[i].run == "nightly");
    CHECK(seen[i].time_us > 1'700'000'000'000'000LL);
    if (i) CHECK(seen[i].time_us >= seen[i - 1].time_us);
  }
  auto find = [&](std::string_view type, std::string_view field, std::string_view value) -> const event_record* {
    for (const auto& e : seen)
      if (e.type == type && e.data.is_object() && e.data.as_object().contains(field) &&
          e.data.as_object().at(field).is_string() && e.data.as_object().at(field).as_string() == value)
        return &e;
    return nullptr;
  };
  CHECK(seen.front().type == "runtime.swarm");
  CHECK(seen.front().role == "runtime");
  CHECK(seen.front().cycle == 1);
  auto* claimed = find("board.task_transition", "to", "claimed");
  REQUIRE(claimed);
  CHECK(claimed->role == "board");
  CHECK(claimed->worker == "w1");
  CHECK(!claimed->task.empty());
  // The agent's turn names only its task: the hub knows who claimed it.
  auto* turn = find("agent.turn", "model", "model-a");
  REQUIRE(turn);
  CHECK(turn->role == "worker");
  CHECK(turn->task == claimed->task);
  CHECK(turn->worker == "w1");
  // The board's merge names no worker either.
  auto* merged = find("board.task_transition", "to", "merged");
  REQUIRE(merged);
  CHECK(merged->worker == "w1");
  auto* judged = find("roles.judgement", "decision", "continue");
  REQUIRE(judged);
  CHECK(judged->role == "judge");
  CHECK(judged->cycle == 1);
  CHECK(seen.back().cycle == 2);  // after the judgement, the next cycle
  CHECK(find("gate.verdict", "verdict", "merged")->role == "gate");
}

TEST_CASE("observe.jsonl_sink_writes_every_event_and_rotates") {
  test::temp_dir dir("jsonl");
  SUBCASE("a run's log reads back as the events the hub saw") {
    event_bus bus;
    std::vector<event_record> seen;
    std::shared_ptr<jsonl_sink> log;
    {
      hub h(bus, {.run = "r"});
      log = jsonl_sink::open({.path = dir / "logs" / "run.jsonl"}).value();
      h.add(log);
      h.add(std::make_shared<callback_sink>([&](const event_view& e) { seen.push_back(event_record::from(e)); }));
      scripted_run(bus);
    }  // the hub flushes its sinks
    auto lines = lines_of(dir / "logs" / "run.jsonl");
    REQUIRE(lines.size() == seen.size());
    for (std::size_t i = 0; i < lines.size(); ++i) {
      auto e = parse_event_line(lines[i]);
      REQUIRE_MESSAGE(e, e.error().message());
      CHECK(*e == seen[i]);
    }
    CHECK(log->lines_written() == seen.size());
    CHECK(!log->last_error());
  }
  SUBCASE("rotation by size keeps whole lines and the newest files") {
    auto log = jsonl_sink::open({.path = dir / "run.jsonl", .max_bytes = 4096, .keep = 3, .buffer_bytes = 512}).value();
    json::value data = json::object{{"pad", std::string(150, 'x')}};
    const int n = 400;
    for (int i = 1; i <= n; ++i) {
      event_record r{static_cast<std::uint64_t>(i), 1'795'958'327'000'000LL + i, "test.pad", "", 0, "", "", "", data};
      log->write(r.view());
    }
    REQUIRE(log->sync());
    CHECK(log->rotations() > 3);
    std::vector<std::uint64_t> seqs;
    for (const char* name : {"run.jsonl.3", "run.jsonl.2", "run.jsonl.1", "run.jsonl"}) {
      REQUIRE(std::filesystem::exists(dir / name));
      CHECK(std::filesystem::file_size(dir / name) <= 4096);
      for (const auto& l : lines_of(dir / name)) {
        auto e = parse_event_line(l);
        REQUIRE_MESSAGE(e, l);
        seqs.push_back(e->seq);
      }
    }
    CHECK_FALSE(std::filesystem::exists(dir / "run.jsonl.4"));
    // The kept files hold the newest events, in order, without a gap.
    REQUIRE(!seqs.empty());
    CHECK(seqs.back() == n);
    for (std::size_t i = 1; i < seqs.size(); ++i) CHECK(seqs[i] == seqs[i - 1] + 1);
  }
  SUBCASE("an existing log is appended to") {
    {
      auto a = jsonl_sink::open({.path = dir / "a.jsonl"}).value();
      event_record r{1, 1, "x.y", "", 0, "", "", "", nullptr};
      a->write(r.view());
    }
    auto b = jsonl_sink::open({.path = dir / "a.jsonl"}).value();
    event_record r{2, 2, "x.y", "", 0, "", "", "", nullptr};
    b->write(r.view());
    b->flush();
    CHECK(lines_of(dir / "a.jsonl").size() == 2);
  }
  SUBCASE("bad paths are named") {
    CHECK(jsonl_sink::open({}).error() == error::invalid_argument);
    std::ofstream(dir / "file") << "x";
    auto r = jsonl_sink::open({.path = dir / "file" / "run.jsonl"});
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("file") != std::string::npos);
  }
  SUBCASE("a log that cannot be written keeps its lines and says why") {
    // A device that is always full stands for a full disk.
    std::filesystem::create_symlink("/dev/full", dir / "full.jsonl");
    auto full = jsonl_sink::open({.path = dir / "full.jsonl", .buffer_bytes = 1}).value();
    event_record r{1, 1, "x.y", "", 0, "", "", "", nullptr};
    full->write(r.view());
    full->flush();
    CHECK(full->last_error());
    CHECK(full->last_error().message().find("full.jsonl") != std::string::npos);
    CHECK(full->lines_written() == 0);
    CHECK_FALSE(full->sync());
    CHECK(full->lines_dropped() == 0);
  }
}

TEST_CASE("observe.metrics_from_a_scripted_run") {
  event_bus bus;
  auto reg = std::make_shared<metrics_registry>();
  {
    hub h(bus);
    h.add(std::make_shared<metrics_sink>(reg));
    scripted_run(bus);
  }
  CHECK(reg->value("agentcore_tasks", {{"state", "merged"}}) == 1);
  CHECK(reg->value("agentcore_tasks", {{"state", "abandoned"}}) == 1);
  CHECK(reg->value("agentcore_tasks", {{"state", "ready"}}) == 0);
  CHECK(reg->value("agentcore_tasks", {{"state", "claimed"}}) == 0);
  CHECK(reg->value("agentcore_tasks", {{"state", "proposed"}}) == 0);
  CHECK(reg->value("agentcore_claims_total") == 2);
  CHECK(reg->value("agentcore_merges_total") == 1);
  CHECK(reg->value("agentcore_gate_verdicts_total", {{"verdict", "queued"}}) == 1);
  CHECK(reg->value("agentcore_gate_verdicts_total", {{"verdict", "merged"}}) == 1);
  CHECK(reg->value("agentcore_queue_depth") == 0);
  CHECK(reg->histogram("agentcore_queue_wait_seconds").count == 1);
  auto checks = reg->histogram("agentcore_check_seconds", {{"command", "make test"}});
  CHECK(checks.count == 1);
  CHECK(checks.sum == doctest::Approx(1.5));
  CHECK(reg->value("agentcore_model_calls_total", {{"role", "worker"}, {"model", "model-a"}}) == 1);
  CHECK(reg->value("agentcore_tokens_total", {{"role", "worker"}, {"model", "model-a"}, {"kind", "input"}}) == 100);
  CHECK(reg->value("agentcore_tokens_total", {{"role", "worker"}, {"model", "model-a"}, {"kind", "output"}}) == 20);
  CHECK(reg->value("agentcore_cost_total", {{"role", "worker"}, {"model", "model-a"}}) == doctest::Approx(0.5));
  CHECK(reg->histogram("agentcore_model_seconds", {{"role", "worker"}}).sum == doctest::Approx(0.25));
  CHECK(reg->value("agentcore_tool_calls_total", {{"tool", "read_file"}, {"error", "false"}}) == 1);
  CHECK(reg->value("agentcore_workers", {{"phase", "idle"}}) == 1);       // w1
  CHECK(reg->value("agentcore_workers", {{"phase", "abandoned"}}) == 1);  // w2
  CHECK(reg->value("agentcore_workers", {{"phase", "working"}}) == 0);
  CHECK(reg->value("agentcore_workers", {{"phase", "submitting"}}) == 0);
  CHECK(reg->value("agentcore_cycle") == 1);
  CHECK(reg->histogram("agentcore_task_seconds", {{"outcome", "merged"}}).count == 1);

  auto text = reg->prometheus();
  CHECK(text.find("# TYPE agentcore_claims_total counter\nagentcore_claims_total 2\n") != std::string::npos);
  CHECK(text.find("agentcore_tasks{state=\"merged\"} 1\n") != std::string::npos);
  CHECK(text.find("agentcore_check_seconds_bucket{command=\"make test\",le=\"1\"} 0\n") != std::string::npos);
  CHECK(text.find("agentcore_check_seconds_bucket{command=\"make test\",le=\"2.5\"} 1\n") != std::string::npos);
  CHECK(text.find("agentcore_check_seconds_bucket{command=\"make test\",le=\"+Inf\"} 1\n") != std::string::npos);
  CHECK(text.find("agentcore_check_seconds_count{command=\"make test\"} 1\n") != std::string::npos);
  CHECK(text.find("# HELP agentcore_merges_total ") != std::string::npos);
  auto j = reg->to_json();
  CHECK(j.as_object().at("agentcore_merges_total").as_object().at("kind").as_string() == "counter");
}

TEST_CASE("observe.metrics_registry") {
  metrics_registry r;
  r.add("jobs_total", {{"kind", "a\"b\\c\nd"}}, 2);
  CHECK(r.prometheus().find("jobs_total{kind=\"a\\\"b\\\\c\\nd\"} 2\n") != std::string::npos);
  int calls = 0;
  r.gauge_fn("depth", "computed at scrape", {}, [&] { return double(++calls); });
  CHECK(r.value("depth") == 1);
  CHECK(r.prometheus().find("depth 2\n") != std::string::npos);
  r.set("g", {}, 1.25);
  r.change("g", {}, -0.5);
  CHECK(r.value("g") == 0.75);
  CHECK(r.prometheus().find("g 0.75\n") != std::string::npos);
  r.describe("lat", metric_kind::histogram, "h", {1, 0.1});
  r.observe("lat", {}, 0.05);
  r.observe("lat", {}, 0.5);
  r.observe("lat", {}, 7);
  auto h = r.histogram("lat");
  CHECK(h.bounds == std::vector<double>{0.1, 1});
  CHECK(h.counts == std::vector<std::uint64_t>{1, 2});
  CHECK(h.count == 3);
  CHECK_THROWS_AS(r.set("jobs_total", {}, 1), std::logic_error);   // a counter, not a gauge
  CHECK_THROWS_AS(r.add("jobs_total", {}, -1), std::logic_error);  // counters only go up
  CHECK_THROWS_AS(r.add("bad name", {}), std::logic_error);
  CHECK_THROWS_AS(r.add("x", {{"bad-label", "v"}}), std::logic_error);
  CHECK(r.value("absent") == 0);
}

namespace {
std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  return out;
}
}  // namespace

TEST_CASE("observe.progress_view") {
  SUBCASE("plain lines when the output is not a terminal") {
    std::FILE* f = std::tmpfile();
    REQUIRE(f);
    {
      event_bus bus;
      hub h(bus);
      auto view = std::make_shared<progress_view>(progress_options{.out = f});
      CHECK_FALSE(view->live());
      h.add(view);
      scripted_run(bus);
    }
    auto text = read_all(f);
    std::fclose(f);
    CHECK(text.find("swarm  started    1 planner, 2 workers\n") != std::string::npos);
    CHECK(text.find("    w1 claimed    ") != std::string::npos);
    CHECK(text.find("    w2 abandoned  ") != std::string::npos);
    CHECK(text.find("    w1 working") == std::string::npos);  // phases inside a task are not lines of their own
    CHECK(text.find('\x1b') == std::string::npos);              // no terminal codes in a file
  }
  SUBCASE("a live block of workers, redrawn in place") {
    std::FILE* f = std::tmpfile();
    REQUIRE(f);
    event_bus bus;
    auto view = std::make_shared<progress_view>(progress_options{.out = f, .live = true});
    {
      hub h(bus, {.run = "nightly"});
      h.add(view);
      scripted_run(bus);
      bus.publish(roles::worker_phase{"w3", "t9", "working", ""});
    }
    auto block = view->block();
    REQUIRE(block.size() == 4);  // the summary and w1, w2, w3
    CHECK(block[0].find("run nightly") == 0);
    CHECK(block[0].find("merged 1") != std::string::npos);
    CHECK(block[0].find("queue 0") != std::string::npos);
    CHECK(block[0].find("tokens 120") != std::string::npos);
    CHECK(block[0].find("cost 0.5000") != std::string::npos);
    CHECK(block[1].find("w1") != std::string::npos);
    CHECK(block[1].find("idle") != std::string::npos);
    CHECK(block[2].find("idle (abandoned)") != std::string::npos);
    CHECK(block[3].find("t9") != std::string::npos);
    CHECK(block[3].find("working") != std::string::npos);
    view.reset();  // its last redraw goes to the file before it closes
    auto text = read_all(f);
    std::fclose(f);
    CHECK(text.find("\x1b[") != std::string::npos);  // the block was moved up and redrawn
    CHECK(text.find("swarm  started") != std::string::npos);
  }
}

TEST_CASE("observe.replay_log_timelines") {
  test::temp_dir dir("timeline");
  event_bus bus;
  {
    hub h(bus);
    // Tiny files: the log rotates, and reading it back must join its parts.
    h.add(jsonl_sink::open({.path = dir / "run.jsonl", .max_bytes = 2048, .keep = 50}).value());
    scripted_run(bus);
  }
  REQUIRE(std::filesystem::exists(dir / "run.jsonl.1"));
  {  // a line torn by a crash at the end
    std::ofstream(dir / "run.jsonl", std::ios::app) << "{\"v\":1,\"seq\":99,\"ti";
  }
  std::size_t skipped = 0;
  auto events = read_event_log(dir / "run.jsonl", true, &skipped).value();
  CHECK(events.size() == bus.published());
  CHECK(skipped == 1);
  for (std::size_t i = 0; i < events.size(); ++i) CHECK(events[i].seq == i + 1);
  auto tl = task_timelines(events);
  REQUIRE(tl.size() == 2);
  const auto& first = tl[0];
  REQUIRE(first.attempts.size() == 1);
  CHECK(first.attempts[0].worker == "w1");
  CHECK(first.attempts[0].result == "merged");
  CHECK(first.attempts[0].ended_us >= first.attempts[0].claimed_us);
  CHECK(first.final_state == "merged");
  std::vector<std::string> phases;
  double total = 0;
  for (const auto& p : first.attempts[0].phases) {
    phases.push_back(p.phase);
    total += p.seconds;
  }
  CHECK(phases == std::vector<std::string>{"claimed", "working", "submitting"});
  CHECK(total == doctest::Approx(static_cast<double>(first.attempts[0].ended_us - first.attempts[0].claimed_us) / 1e6));
  CHECK(tl[1].attempts.at(0).result == "abandoned");
  CHECK(tl[1].final_state == "abandoned");
  auto text = format_timelines(tl);
  CHECK(text.find(": merged\n") != std::string::npos);
  CHECK(text.find("attempt 1 by w2: claimed ") != std::string::npos);
  // A log that ends mid-attempt says so.
  std::vector<event_record> cut(events.begin(), events.begin() + 8);
  CHECK(format_timelines(task_timelines(cut)).find("unfinished when the log ends") != std::string::npos);

  // A version this library does not read is an error, not a skipped line.
  std::ofstream(dir / "v2.jsonl") << "{\"v\":2,\"seq\":1}\n";
  auto v2 = read_event_log(dir / "v2.jsonl");
  REQUIRE_FALSE(v2);
  CHECK(v2.error().message().find("schema version 2") != std::string::npos);
  CHECK(read_event_log(dir / "absent.jsonl").error() == error::not_found);
  CHECK(format_duration(0.44) == "0.4s");
  CHECK(format_duration(151) == "2m31s");
  CHECK(format_duration(3725) == "1h02m");
}
