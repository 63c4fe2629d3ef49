#include <agentcore/model/http_clients.hpp>
#include <agentcore/model/middleware.hpp>
#include <agentcore/net/error.hpp>

#include "support/http_test_server.hpp"
#include "support/io_thread.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <doctest/doctest.h>

#include <deque>
#include <future>
#include <thread>

using namespace agentcore;
using namespace agentcore::test;
namespace asio = boost::asio;
using std::chrono::milliseconds;
using steady = std::chrono::steady_clock;

namespace {

// A backend following a script: each call takes the next outcome, after a
// delay on the io thread; it honours cancellation.
class scripted_client final : public model::client {
public:
  struct step {
    model::result_type outcome;
    milliseconds delay{0};
    bool delta_first = false;  ///< deliver a text delta before the outcome
  };
  explicit scripted_client(asio::any_io_executor ex) : ex_(std::move(ex)) {}
  std::string name() const override { return "scripted"; }
  void push(model::result_type r, milliseconds delay = milliseconds(0), bool delta_first = false) {
    std::lock_guard lock(mutex_);
    steps_.push_back({std::move(r), delay, delta_first});
  }
  std::atomic<int> calls{0}, in_flight{0}, most_in_flight{0};
  std::vector<model::request> seen;

protected:
  void do_chat(model::request req, model::delta_handler on_delta,
               asio::any_completion_handler<model::chat_signature> handler) override {
    step s{fail(agentcore::error::invalid_argument, "script ran out"), milliseconds(0)};
    {
      std::lock_guard lock(mutex_);
      seen.push_back(req);
      if (!steps_.empty()) {
        s = std::move(steps_.front());
        steps_.pop_front();
      }
    }
    ++calls;
    int now = ++in_flight;
    for (int m = most_in_flight; now > m && !most_in_flight.compare_exchange_weak(m, now);) {
    }
    auto timer = std::make_shared<asio::steady_timer>(ex_, s.delay);
    auto slot = asio::get_associated_cancellation_slot(handler);
    // The slot's handler must not own the timer: the caller's cancellation
    // signal may outlive this operation (and the io_context the timer is on).
    if (slot.is_connected())
      slot.assign([weak = std::weak_ptr<asio::steady_timer>(timer)](asio::cancellation_type) {
        if (auto t = weak.lock()) t->cancel();
      });
    if (s.delta_first && on_delta) on_delta({model::delta::text, 0, "partial", {}, {}});
    timer->async_wait([this, timer, s = std::move(s), on_delta, h = std::move(handler)](
                          boost::system::error_code ec) mutable {
      --in_flight;
      if (ec) return complete(std::move(h), fail(agentcore::error::canceled, "scripted: canceled"));
      if (s.outcome && on_delta) stream_whole(*s.outcome, on_delta);
      complete(std::move(h), std::move(s.outcome));
    });
  }

private:
  asio::any_io_executor ex_;
  std::mutex mutex_;
  std::deque<step> steps_;
};

model::response answer(std::uint64_t tokens = 10, std::string model_name = "gpt-test") {
  model::response r;
  r.message = model::assistant("ok");
  r.usage = {tokens, 0, 0, 0};
  r.model_name = std::move(model_name);
  return r;
}

error_info status_error(model::error code, std::optional<milliseconds> retry_after = std::nullopt) {
  auto e = model::fail(code, "scripted status");
  if (retry_after) e.set_retry_after(*retry_after);
  return e;
}

model::request ask(std::string role = "worker", std::string task = "") {
  model::request r;
  r.messages.push_back(model::user("hi"));
  r.tags = {std::move(role), std::move(task)};
  return r;
}

}  // namespace

namespace {

// An inner client that keeps the delta handlers it was given after their
// calls end (as a client keeping a connection's state may): whatever a
// middleware's call keeps in them lives on, past the caller's io_context.
class keeping_client final : public model::client {
public:
  std::string name() const override { return "keeping"; }
  std::vector<model::delta_handler> kept;
  std::atomic<int> unavailable{0};  ///< calls to fail first (retryable)

protected:
  void do_chat(model::request, model::delta_handler on_delta,
               asio::any_completion_handler<model::chat_signature> handler) override {
    if (on_delta) kept.push_back(std::move(on_delta));
    if (unavailable > 0 && unavailable-- > 0) return complete(std::move(handler), status_error(model::error::unavailable));
    complete(std::move(handler), answer());
  }
};

}  // namespace

// A call's timers (the retry's back-off, the time limits) go when the call
// completes: the call's state may live on in the inner client's handlers,
// after the io_context the timers were made on (under ASan, destroying such
// a timer then was a heap-use-after-free: CI, retry_backs_off_...).
TEST_CASE("model.middleware.a_calls_timers_go_when_it_completes") {
  auto inner = std::make_shared<keeping_client>();
  {
    asio::io_context io;
    // The retry waits once (a back-off timer that has waited is one whose
    // destruction reaches its io_context's scheduler).
    inner->unavailable = 1;
    auto retried = model::with_retry(io.get_executor(), inner, {.initial_delay = milliseconds(1)});
    auto timed = model::with_timeouts(io.get_executor(), inner, {.first_byte = milliseconds(10'000), .total = milliseconds(10'000)});
    std::promise<model::result_type> a, b;
    auto fa = a.get_future(), fb = b.get_future();
    auto ignore = [](const model::delta&) {};
    retried->async_stream(ask(), ignore, [&](model::result_type r) { a.set_value(std::move(r)); });
    timed->async_stream(ask(), ignore, [&](model::result_type r) { b.set_value(std::move(r)); });
    for (auto until = steady::now() + milliseconds(10'000);
         steady::now() < until && (fa.wait_for(milliseconds(0)) != std::future_status::ready ||
                                   fb.wait_for(milliseconds(0)) != std::future_status::ready);) {
      io.restart();
      io.run_for(milliseconds(5));
    }
    auto ra = fa.get(), rb = fb.get();
    REQUIRE_MESSAGE(ra.has_value(), ra.error().message());
    REQUIRE_MESSAGE(rb.has_value(), rb.error().message());
    CHECK(inner->kept.size() == 3);
  }  // the io_context is gone; the inner client still holds both calls' state
  inner->kept.clear();
}

TEST_CASE("model.middleware.retry_backs_off_and_honours_retry_after") {
  io_thread io;
  auto inner = std::make_shared<scripted_client>(io.io.get_executor());
  auto c = model::with_retry(io.io.get_executor(), inner, {.initial_delay = milliseconds(1), .max_delay = milliseconds(5)});

  inner->push(status_error(model::error::unavailable));
  inner->push(status_error(model::error::rate_limited, milliseconds(60)));
  inner->push(answer());
  auto t0 = steady::now();
  auto r = c->chat(ask());
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(inner->calls == 3);
  CHECK(steady::now() - t0 >= milliseconds(60));  // waited what the server asked

  // Not retryable: returned at once.
  inner->calls = 0;
  inner->push(status_error(model::error::http_status));
  CHECK(c->chat(ask()).error().code() == model::error::http_status);
  CHECK(inner->calls == 1);

  // Gives up after max_attempts, saying so.
  auto three = model::with_retry(io.io.get_executor(), inner, {.max_attempts = 3, .initial_delay = milliseconds(1)});
  inner->calls = 0;
  for (int i = 0; i < 3; ++i) inner->push(net::fail(net::error::connection_lost, "reset"));
  auto gave_up = three->chat(ask());
  REQUIRE_FALSE(gave_up.has_value());
  CHECK(inner->calls == 3);
  CHECK(gave_up.error().message().find("gave up after 3 attempts") != std::string::npos);

  // A server asking for longer than max_retry_after is not waited for.
  auto impatient = model::with_retry(io.io.get_executor(), inner, {.max_retry_after = milliseconds(100)});
  inner->calls = 0;
  inner->push(status_error(model::error::rate_limited, milliseconds(60'000)));
  auto t1 = steady::now();
  CHECK(impatient->chat(ask()).error().code() == model::error::rate_limited);
  CHECK(steady::now() - t1 < milliseconds(5'000));
  CHECK(inner->calls == 1);

  // A stream that already delivered a delta is not retried.
  inner->calls = 0;
  inner->push(status_error(model::error::unavailable), milliseconds(0), true);
  std::promise<model::result_type> done;
  c->async_stream(ask(), [](const model::delta&) {}, [&](model::result_type res) { done.set_value(std::move(res)); });
  CHECK(done.get_future().get().error().code() == model::error::unavailable);
  CHECK(inner->calls == 1);
}

TEST_CASE("model.middleware.retry_cancels_while_backing_off") {
  io_thread io;
  auto inner = std::make_shared<scripted_client>(io.io.get_executor());
  auto c = model::with_retry(io.io.get_executor(), inner, {.initial_delay = milliseconds(5'000)});
  inner->push(status_error(model::error::unavailable));
  asio::cancellation_signal cancel;
  std::promise<model::result_type> done;
  auto t0 = steady::now();
  c->async_chat(ask(), asio::bind_cancellation_slot(cancel.slot(), [&](model::result_type r) { done.set_value(std::move(r)); }));
  std::this_thread::sleep_for(milliseconds(50));
  asio::post(io.io, [&] { cancel.emit(asio::cancellation_type::terminal); });
  auto r = done.get_future().get();
  CHECK(r.error().code() == agentcore::error::canceled);
  CHECK(steady::now() - t0 < milliseconds(3'000));
}

TEST_CASE("model.middleware.retry_over_http_500_then_success") {
  ::setenv("AGENTCORE_TEST_KEY", "k", 1);
  http_test_server server;
  io_thread io;
  auto http = model::make_openai_client(io.io.get_executor(), {.base_url = server.base_url() + "/v1",
                                                               .model = "m",
                                                               .api_key_env = "AGENTCORE_TEST_KEY",
                                                               .proxy_from_env = false})
                  .value();
  auto c = model::with_retry(io.io.get_executor(), std::shared_ptr<model::client>(std::move(http)),
                             {.initial_delay = milliseconds(1)});
  server.push({500, {}, R"({"error":{"message":"The server had an error"}})"});
  server.push({429, {{"retry-after-ms", "40"}}, R"({"error":{"message":"Rate limit"}})"});
  server.push({200, {}, R"({"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"fine"},)"
                        R"("finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}})"});
  auto r = c->chat(ask());
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->message.text() == "fine");
  CHECK(server.requests().size() == 3);
  ::unsetenv("AGENTCORE_TEST_KEY");
}

TEST_CASE("model.middleware.limits_bound_requests_in_flight_and_per_second") {
  io_thread io;
  auto inner = std::make_shared<scripted_client>(io.io.get_executor());
  auto c = model::with_limits(io.io.get_executor(), inner, {.max_in_flight = 2});
  for (int i = 0; i < 6; ++i) inner->push(answer(), milliseconds(20));
  std::vector<std::future<model::result_type>> all;
  for (int i = 0; i < 6; ++i) {
    auto p = std::make_shared<std::promise<model::result_type>>();
    all.push_back(p->get_future());
    c->async_chat(ask(), [p](model::result_type r) { p->set_value(std::move(r)); });
  }
  for (auto& f : all) CHECK(f.get().has_value());
  CHECK(inner->most_in_flight == 2);

  auto rated = model::with_limits(io.io.get_executor(), inner, {.requests_per_second = 20, .burst = 1});
  for (int i = 0; i < 5; ++i) inner->push(answer());
  auto t0 = steady::now();
  for (int i = 0; i < 5; ++i) CHECK(rated->chat(ask()).has_value());
  CHECK(steady::now() - t0 >= milliseconds(150));  // four waits of 50 ms, at least
}

TEST_CASE("model.middleware.timeouts_cancel_slow_calls") {
  io_thread io;
  auto inner = std::make_shared<scripted_client>(io.io.get_executor());
  auto c = model::with_timeouts(io.io.get_executor(), inner, {.total = milliseconds(50)});
  inner->push(answer(), milliseconds(2'000));
  auto t0 = steady::now();
  auto r = c->chat(ask());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code() == net::error::timed_out);
  CHECK(r.error().message().find("no answer within 50 ms") != std::string::npos);
  CHECK(steady::now() - t0 < milliseconds(1'500));
  inner->push(answer(), milliseconds(1));
  CHECK(c->chat(ask()).has_value());
}

TEST_CASE("model.middleware.budgets_by_run_role_and_task") {
  io_thread io;
  auto inner = std::make_shared<scripted_client>(io.io.get_executor());
  auto run = model::budget::make("run", {.tokens = 100});
  model::price_table prices{{"gpt-", {.input_per_mtok = 2.0}}, {"*", {.input_per_mtok = 1.0}}};
  auto c = model::with_budget(inner, model::budget_by_role_and_task(run, {{"worker", {.tokens = 60}}}), prices);
  for (int i = 0; i < 3; ++i) inner->push(answer(25));
  for (int i = 0; i < 3; ++i) CHECK(c->chat(ask("worker", "t1")).has_value());  // 25, 50, 75: the third starts under 60
  auto refused = c->chat(ask("worker", "t2"));
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().code() == model::error::budget_exhausted);
  CHECK(refused.error().message().find("'role worker'") != std::string::npos);
  CHECK(refused.error().message().find("75 of its 60 tokens") != std::string::npos);
  CHECK(inner->calls == 3);  // the refused call never reached the model
  CHECK(run->tokens_used() == 75);
  CHECK(run->cost_used() == doctest::Approx(75 * 2.0 / 1e6));

  // The planner has no limit of its own, but only what the run has left:
  // max_tokens is lowered to it, then the run is spent.
  inner->push(answer(30, "claude-x"));
  auto p = ask("planner");
  p.max_tokens = 1000;
  CHECK(c->chat(p).has_value());
  CHECK(inner->seen.back().max_tokens == 25);
  auto spent = c->chat(ask("planner"));
  REQUIRE_FALSE(spent.has_value());
  CHECK(spent.error().message().find("budget 'run'") != std::string::npos);
  CHECK(run->cost_used() == doctest::Approx((75 * 2.0 + 30 * 1.0) / 1e6));  // "*" priced the unknown model

  // Money limits too.
  auto cheap = model::budget::make("task t9", {.cost = 0.00001});
  auto by_cost = model::with_budget(inner, [cheap](const model::request&) { return cheap; }, prices);
  inner->push(answer(10));
  CHECK(by_cost->chat(ask()).has_value());  // 10 tokens at 2/M: 0.00002, over the limit afterwards
  CHECK(by_cost->chat(ask()).error().code() == model::error::budget_exhausted);
}

TEST_CASE("model.middleware.one_limiter_shared_by_clients_of_an_endpoint") {
  io_thread io;
  auto a = std::make_shared<scripted_client>(io.io.get_executor());
  auto b = std::make_shared<scripted_client>(io.io.get_executor());
  auto shared = model::limiter::make(io.io.get_executor(), {.max_in_flight = 1});
  auto ca = model::with_limits(a, shared), cb = model::with_limits(b, shared);
  for (auto* s : {a.get(), b.get()})
    for (int i = 0; i < 3; ++i) s->push(answer(), milliseconds(30));
  auto t0 = steady::now();
  std::vector<std::future<model::result_type>> all;
  for (int i = 0; i < 3; ++i)
    for (auto* c : {&ca, &cb}) {
      auto p = std::make_shared<std::promise<model::result_type>>();
      all.push_back(p->get_future());
      (*c)->async_chat(ask(), [p](model::result_type r) { p->set_value(std::move(r)); });
    }
  for (auto& f : all) CHECK(f.get().has_value());
  // One call at a time across both clients: six 30 ms calls one after the
  // other (two limiters of one each would have taken half as long).
  CHECK(steady::now() - t0 >= milliseconds(170));
  CHECK(a->most_in_flight == 1);
  CHECK(b->most_in_flight == 1);
}
