#include <agentcore/model/plugin.hpp>
#include <agentcore/model/registry.hpp>

#include "support/http_test_server.hpp"
#include "support/io_thread.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <thread>

using namespace agentcore;
using namespace agentcore::test;
namespace asio = boost::asio;

namespace {

model::request ask(std::string text) {
  model::request r;
  r.messages.push_back(model::user(std::move(text)));
  r.tags.role = "worker";
  return r;
}

json::object options(std::string_view text) { return json::parse(text).as_object(); }

constexpr std::string_view answer = R"({"model":"m","choices":[{"index":0,"message":{"role":"assistant",)"
                                    R"("content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,)"
                                    R"("completion_tokens":1}})";

}  // namespace

TEST_CASE("model.registry.specs_options_and_middleware") {
  io_thread io;
  auto reg = model::registry::with_builtins();
  CHECK(reg.backends() == std::vector<std::string>{"anthropic", "cli", "openai", "replay"});

  http_test_server server;
  temp_dir dir("registry");
  auto transcript = (dir / "run.jsonl").string();
  auto opts = options(R"({"proxy_from_env": false, "retry": {"max_attempts": 3, "initial_delay_ms": 1},
                          "limits": {"max_in_flight": 4}, "timeouts": {"total_ms": 5000}})");
  opts["base_url"] = server.base_url() + "/v1";
  opts["record"] = transcript;
  auto c = reg.make("openai:test-model", {io.io.get_executor(), opts});
  REQUIRE_MESSAGE(c.has_value(), c.error().message());
  server.push({503, {}, R"({"error":{"message":"overloaded"}})"});
  server.push({200, {}, std::string(answer)});
  auto r = (*c)->chat(ask("hello"));
  REQUIRE_MESSAGE(r.has_value(), r.error().message());  // retried past the 503
  CHECK(server.requests().size() == 2);
  CHECK(json::parse(server.requests().back().body).at("model").as_string() == "test-model");

  // Prices and budgets from the options: the client's own, and the host's.
  auto run = model::budget::make("run", {.tokens = 1000});
  auto priced = options(R"({"proxy_from_env": false, "prices": {"m": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}},
                            "budget": {"tokens": 5}})");
  priced["base_url"] = server.base_url() + "/v1";
  auto b = reg.make("openai:m", {io.io.get_executor(), priced, model::budget_by_role_and_task(run, {})});
  REQUIRE_MESSAGE(b.has_value(), b.error().message());
  server.push({200, {}, std::string(answer)});
  REQUIRE((*b)->chat(ask("hello")).has_value());  // 3 input + 1 output tokens
  CHECK(run->tokens_used() == 4);
  CHECK(run->cost_used() == doctest::Approx((3 * 3.0 + 1 * 15.0) / 1e6));
  server.push({200, {}, std::string(answer)});
  REQUIRE((*b)->chat(ask("again")).has_value());  // 4 < 5: allowed, now 8
  auto over = (*b)->chat(ask("more"));
  REQUIRE_FALSE(over.has_value());
  CHECK(over.error().message().find("budget 'client openai:m'") != std::string::npos);
  auto bad_price = reg.make("openai:m", {io.io.get_executor(), options(R"({"prices": {"m": {"input": 1}}})")});
  REQUIRE_FALSE(bad_price.has_value());
  CHECK(bad_price.error().message().find("'input' in 'prices.m'") != std::string::npos);

  // The recorded answer replays without the server.
  auto replay = reg.make("replay:" + transcript, {io.io.get_executor(), {}});
  REQUIRE_MESSAGE(replay.has_value(), replay.error().message());
  auto again = (*replay)->chat(ask("hello"));
  REQUIRE(again.has_value());
  CHECK(again->message.text() == "fine");
}

TEST_CASE("model.registry.bad_specs_and_options_are_named") {
  io_thread io;
  auto reg = model::registry::with_builtins();
  auto ex = io.io.get_executor();
  auto no_colon = reg.make("gpt-4o", {ex, {}});
  REQUIRE_FALSE(no_colon.has_value());
  CHECK(no_colon.error().message().find("BACKEND:ARGUMENT") != std::string::npos);

  auto unknown_backend = reg.make("mistral:large", {ex, {}});
  REQUIRE_FALSE(unknown_backend.has_value());
  CHECK(unknown_backend.error().message().find("no backend 'mistral' (known: anthropic, cli, openai, replay)") !=
        std::string::npos);

  auto typo = reg.make("openai:m", {ex, options(R"({"base_ur": "http://x"})")});
  REQUIRE_FALSE(typo.has_value());
  CHECK(typo.error().message().find("unknown option 'base_ur'") != std::string::npos);

  auto nested_typo = reg.make("openai:m", {ex, options(R"({"retry": {"max_attempt": 3}})")});
  REQUIRE_FALSE(nested_typo.has_value());
  CHECK(nested_typo.error().message().find("'max_attempt' in 'retry'") != std::string::npos);

  auto wrong_type = reg.make("openai:m", {ex, options(R"({"verify_tls": "yes"})")});
  REQUIRE_FALSE(wrong_type.has_value());
  CHECK(wrong_type.error().message().find("option 'verify_tls' has the wrong type") != std::string::npos);

  auto no_model = reg.make("anthropic:", {ex, {}});
  REQUIRE_FALSE(no_model.has_value());
  CHECK(no_model.error().message().find("name the model") != std::string::npos);

  auto bad_match = reg.make("replay:/nonexistent.jsonl", {ex, options(R"({"match": "fuzzy"})")});
  REQUIRE_FALSE(bad_match.has_value());
  CHECK(bad_match.error().message().find("'fuzzy'") != std::string::npos);

  CHECK(reg.add("openai", [](std::string_view, const model::client_context&, json::object&)
                              -> result<std::shared_ptr<model::client>> { return nullptr; }) ==
        agentcore::error::already_exists);
}

#ifdef AGENTCORE_EXAMPLE_PLUGIN
TEST_CASE("model.registry.plugins_load_and_wrong_ones_are_refused") {
  io_thread io;
  auto reg = model::registry::with_builtins();
  auto loaded = reg.load_plugin(AGENTCORE_EXAMPLE_PLUGIN);
  REQUIRE_MESSAGE(!loaded, loaded.message());
  CHECK(reg.has("plugin:echo"));
  auto c = reg.make("plugin:echo:shout", {io.io.get_executor(), options(R"({"greeting": "hi"})")});
  REQUIRE_MESSAGE(c.has_value(), c.error().message());
  CHECK((*c)->name() == "plugin:echo:shout");
  auto r = (*c)->chat(ask("make it loud"));
  REQUIRE(r.has_value());
  CHECK(r->message.text() == "echo: MAKE IT LOUD");

  auto wrong = reg.load_plugin(AGENTCORE_TEST_WRONG_ABI_PLUGIN);
  REQUIRE(wrong);
  CHECK(wrong == agentcore::error::unsupported_format);
  CHECK(wrong.message().find("built for agentcore plugin ABI 999; this agentcore speaks 1") != std::string::npos);
  CHECK_FALSE(reg.has("plugin:future"));

  temp_dir dir("plugins");
  std::ofstream(dir / "fake.so") << "not a shared library";
  auto fake = reg.load_plugin(dir / "fake.so");
  REQUIRE(fake);
  CHECK(fake.message().find("does not load") != std::string::npos);

  auto missing = reg.make("plugin:nothere:m", {io.io.get_executor(), {}});
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message().find("AGENTCORE_PLUGIN_PATH") != std::string::npos);

  // From AGENTCORE_PLUGIN_PATH, into a fresh registry.
  auto fresh = model::registry::with_builtins();
  auto plugin_dir = std::filesystem::path(AGENTCORE_EXAMPLE_PLUGIN).parent_path().string();
  ::setenv("AGENTCORE_PLUGIN_PATH", (plugin_dir + ":/nonexistent-agentcore-dir").c_str(), 1);
  auto e = fresh.load_plugins_from_env();
  ::unsetenv("AGENTCORE_PLUGIN_PATH");
  CHECK(fresh.has("plugin:echo"));
  REQUIRE(e);  // the missing directory is reported, the plugin still loaded
  CHECK(e.message().find("/nonexistent-agentcore-dir") != std::string::npos);
}
#endif
