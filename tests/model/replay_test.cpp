#include <agentcore/model/replay.hpp>

#include "support/temp_dir.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <fstream>
#include <map>

using namespace agentcore;
using agentcore::test::temp_dir;
namespace asio = boost::asio;

namespace {

// A host's own backend: answers from the request alone, so that a recorded
// answer can be told apart from a fresh one by `calls`.
class echo_client final : public model::client {
public:
  std::atomic<int> calls{0};
  std::string name() const override { return "echo"; }

protected:
  void do_chat(model::request req, model::delta_handler on_delta,
               asio::any_completion_handler<model::chat_signature> handler) override {
    int n = ++calls;
    model::response r;
    r.message = model::assistant("echo " + std::to_string(n) + ": " + req.messages.back().text());
    if (req.messages.back().text().find("tool") != std::string::npos) {
      r.message.parts.push_back(model::tool_call{"c" + std::to_string(n), "read_file", R"({"path":"a"})"});
      r.stop = model::stop_reason::tool_use;
    }
    r.usage = {10u * n, 2, 0, 0};
    r.model_name = "echo-1";
    stream_whole(r, on_delta);
    complete(std::move(handler), std::move(r));
  }
};

model::request ask(std::string role, std::string text) {
  model::request r;
  r.system = "test";
  r.messages.push_back(model::user(std::move(text)));
  r.tags.role = std::move(role);
  return r;
}

}  // namespace

TEST_CASE("model.replay.record_then_replay_by_role_and_turn") {
  temp_dir dir("replay");
  auto path = dir / "run.jsonl";
  auto live = std::make_shared<echo_client>();
  std::vector<model::response> recorded;
  {
    auto rec = model::recorder::open(live, path).value();
    recorded.push_back(rec->chat(ask("planner", "plan the work")).value());
    recorded.push_back(rec->chat(ask("worker", "use a tool")).value());
    recorded.push_back(rec->chat(ask("worker", "finish")).value());
    CHECK(rec->name() == "record:echo");
  }
  CHECK(live->calls == 3);

  auto replay = model::replay_client::open(path).value();
  CHECK(replay->remaining() == 3);
  // Roles interleave differently and the prompts changed: role and turn decide.
  auto w0 = replay->chat(ask("worker", "use a tool, at 10:42"));
  REQUIRE_MESSAGE(w0.has_value(), w0.error().message());
  CHECK(*w0 == recorded[1]);
  CHECK(w0->message.tool_calls().size() == 1);
  CHECK(replay->chat(ask("planner", "plan")).value() == recorded[0]);

  // Streaming delivers the same answer as deltas, then completes with it.
  asio::io_context io;
  std::string streamed;
  std::optional<model::result_type> done;
  replay->async_stream(ask("worker", "finish"), [&](const model::delta& d) {
    if (d.kind == model::delta::text) streamed += d.content;
  }, asio::bind_executor(io, [&](model::result_type r) { done = std::move(r); }));
  CHECK_FALSE(done.has_value());  // never completes inside the initiating call
  io.run();
  REQUIRE(done.has_value());
  REQUIRE(done->has_value());
  CHECK(**done == recorded[2]);
  CHECK(streamed == recorded[2].message.text());
  CHECK(replay->remaining() == 0);
  CHECK(live->calls == 3);  // nothing reached the live client

  // A fourth worker turn was never recorded.
  auto extra = replay->chat(ask("worker", "one more"));
  REQUIRE_FALSE(extra.has_value());
  CHECK(extra.error().code() == model::error::not_covered);
  CHECK(extra.error().message().find("role 'worker' turn 2") != std::string::npos);
}

TEST_CASE("model.replay.by_request_hash_and_nearest_request") {
  temp_dir dir("replay");
  auto path = dir / "run.jsonl";
  auto live = std::make_shared<echo_client>();
  auto rec = model::recorder::open(live, path).value();
  auto a1 = rec->chat(ask("worker", "alpha")).value();
  auto b = rec->chat(ask("worker", "beta")).value();
  auto a2 = rec->chat(ask("worker", "alpha")).value();
  CHECK_FALSE(a1 == a2);  // the live client answered the same question twice, differently

  auto replay = model::replay_client::open(path, {.by = model::replay_options::match::request_hash}).value();
  CHECK(replay->chat(ask("other-role", "beta")).value() == b);  // tags are not part of the hash
  CHECK(replay->chat(ask("worker", "alpha")).value() == a1);
  CHECK(replay->chat(ask("worker", "alpha")).value() == a2);  // the same request again: the next answer
  auto third = replay->chat(ask("worker", "alpha"));
  REQUIRE_FALSE(third.has_value());
  CHECK(third.error().message().find("recorded 2 time(s)") != std::string::npos);

  // An uncovered request names the nearest recorded one and where it differs.
  auto off = replay->chat(ask("worker", "betamax"));
  REQUIRE_FALSE(off.has_value());
  CHECK(off.error().code() == model::error::not_covered);
  auto msg = off.error().message();
  INFO(msg);
  CHECK(msg.find("line 2") != std::string::npos);
  CHECK(msg.find("messages[0].parts[0].text") != std::string::npos);
  CHECK(msg.find("\"beta\"") != std::string::npos);
  CHECK(msg.find("\"betamax\"") != std::string::npos);
  CHECK(model::request_hash(ask("a", "x")) == model::request_hash(ask("b", "x")));
  CHECK(model::request_hash(ask("a", "x")) != model::request_hash(ask("a", "y")));
}

TEST_CASE("model.replay.recorder_appends_and_turns_go_on") {
  temp_dir dir("replay");
  auto path = dir / "run.jsonl";
  auto live = std::make_shared<echo_client>();
  model::response first, second;
  {
    auto rec = model::recorder::open(live, path).value();
    first = rec->chat(ask("worker", "one")).value();
  }
  {
    auto rec = model::recorder::open(live, path).value();
    second = rec->chat(ask("worker", "two")).value();
  }
  auto replay = model::replay_client::open(path).value();
  CHECK(replay->chat(ask("worker", "x")).value() == first);
  CHECK(replay->chat(ask("worker", "y")).value() == second);
}

TEST_CASE("model.replay.bad_transcripts_are_clear_errors") {
  temp_dir dir("replay");
  auto missing = model::replay_client::open(dir / "none.jsonl");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error() == error::not_found);
  CHECK(missing.error().message().find("none.jsonl") != std::string::npos);

  auto write = [&](std::string name, std::string text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  };
  auto live = std::make_shared<echo_client>();
  auto good = dir / "good.jsonl";
  model::recorder::open(live, good).value()->chat(ask("worker", "hello")).value();
  std::string line;
  std::getline(std::ifstream(good) >> std::ws, line);

  auto garbage = model::replay_client::open(write("garbage.jsonl", line + "\n{not json\n"));
  REQUIRE_FALSE(garbage.has_value());
  CHECK(garbage.error() == error::corrupt);
  CHECK(garbage.error().message().find("line 2") != std::string::npos);

  auto future = line;
  future.replace(future.find("\"v\":1"), 5, "\"v\":9");
  auto newer = model::replay_client::open(write("newer.jsonl", future + "\n"));
  REQUIRE_FALSE(newer.has_value());
  CHECK(newer.error() == error::unsupported_format);
  CHECK(newer.error().message().find("version 9") != std::string::npos);

  auto no_response = model::replay_client::open(write("half.jsonl", R"({"v":1,"role":"w","turn":0,"request":{"messages":[]}})"
                                                                    "\n"));
  REQUIRE_FALSE(no_response.has_value());
  CHECK(no_response.error().message().find("'response'") != std::string::npos);

  // Appending to a transcript that does not read back is refused, and the
  // file is left as it was.
  auto bad = write("bad.jsonl", "{not json\n");
  auto rec = model::recorder::open(live, bad);
  REQUIRE_FALSE(rec.has_value());
  CHECK(rec.error() == error::corrupt);
  std::ifstream in(bad);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  CHECK(all == "{not json\n");
}

TEST_CASE("model.replay.by_task_and_turn_for_concurrent_workers") {
  temp_dir dir("replay");
  auto path = dir / "run.jsonl";
  auto live = std::make_shared<echo_client>();
  auto for_task = [](std::string task, std::string text) {
    auto r = ask("worker", std::move(text));
    r.tags.task = std::move(task);
    return r;
  };
  std::map<std::string, model::response> recorded;
  {
    auto rec = model::recorder::open(live, path).value();
    // Two workers, their calls interleaved one way when recorded...
    recorded["a0"] = rec->chat(for_task("a", "a first")).value();
    recorded["b0"] = rec->chat(for_task("b", "b first")).value();
    recorded["a1"] = rec->chat(for_task("a", "a second")).value();
    recorded["b1"] = rec->chat(for_task("b", "b second")).value();
  }
  auto replay = model::replay_client::open(path, {.by = model::replay_options::match::task_and_turn}).value();
  // ...and another way when replayed: each task still gets its own answers, in order.
  CHECK(replay->chat(for_task("b", "b, asked first now")).value() == recorded["b0"]);
  CHECK(replay->chat(for_task("b", "b again")).value() == recorded["b1"]);
  CHECK(replay->chat(for_task("a", "a at last")).value() == recorded["a0"]);
  CHECK(replay->chat(for_task("a", "a again")).value() == recorded["a1"]);
  auto extra = replay->chat(for_task("a", "a third"));
  REQUIRE_FALSE(extra.has_value());
  CHECK(extra.error().message().find("role 'worker' task 'a' turn 2") != std::string::npos);
  auto unknown = replay->chat(for_task("c", "c"));
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().message().find("task 'c' turn 0") != std::string::npos);
}
