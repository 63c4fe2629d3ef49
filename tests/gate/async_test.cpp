// The gate's asynchronous operations: submitting, waiting for a verdict on a
// store watch, a step of the queue, the branch's tip, without blocking the
// caller's thread.
#include "gate/gate_fixture.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/thread_pool.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <future>

using namespace agentcore;
using namespace agentcore::test;
using namespace std::chrono_literals;

namespace {

// A completion handler that hands its result to a future.
template <class T>
struct waiting {
  std::promise<result<T>> p;
  std::future<result<T>> f = p.get_future();
  auto handler() {
    return [this](result<T> r) { p.set_value(std::move(r)); };
  }
  bool ready_within(std::chrono::milliseconds d) { return f.wait_for(d) == std::future_status::ready; }
  result<T> get() {
    REQUIRE(ready_within(30s));
    return f.get();
  }
};

}  // namespace

TEST_CASE("gate.async.a_wait_completes_when_the_change_lands_and_not_before") {
  gate_fixture fx;
  boost::asio::thread_pool blocking(2);
  auto g = fx.open_gate({.mode = gate::policy::serial, .blocking = blocking.get_executor()});
  auto x = fx.make_change("x");
  waiting<gate::change_verdict> submitted;
  g->async_submit(x, submitted.handler());
  auto v = submitted.get();
  REQUIRE_MESSAGE(v.has_value(), v.error().message());
  REQUIRE(v->kind == gate::verdict_kind::queued);

  // Another change whose id starts with this one's: its verdict is not x's.
  auto x2 = fx.make_change("x-2");
  REQUIRE(g->submit(x2).value().kind == gate::verdict_kind::queued);

  waiting<gate::change_verdict> decided;
  g->async_wait_verdict("x", decided.handler());
  CHECK_FALSE(decided.ready_within(200ms));  // queued is not a verdict to wait for

  waiting<std::vector<gate::change_verdict>> step;
  g->async_run_once(step.handler());
  auto landed = step.get();
  REQUIRE_MESSAGE(landed.has_value(), landed.error().message());
  REQUIRE(landed->size() == 1);
  REQUIRE(landed->front().change_id == "x");
  auto final = decided.get();
  REQUIRE_MESSAGE(final.has_value(), final.error().message());
  CHECK(final->change_id == "x");
  CHECK(final->kind == gate::verdict_kind::merged);
  CHECK(final->merged_as == fx.main_tip());

  // Decided already: at once. Never submitted: not_found, naming the change.
  waiting<gate::change_verdict> again;
  g->async_wait_verdict("x", again.handler());
  CHECK(again.get().value().kind == gate::verdict_kind::merged);
  waiting<gate::change_verdict> unknown;
  g->async_wait_verdict("nobody", unknown.handler());
  auto u = unknown.get();
  REQUIRE_FALSE(u.has_value());
  CHECK(u.error() == error::not_found);
  CHECK(u.error().message().find("'nobody'") != std::string::npos);
}

// The wait is on the store: a gate in another process (here another gate
// object on the same store) deciding the change ends it.
TEST_CASE("gate.async.a_wait_ends_with_a_verdict_another_gate_makes") {
  gate_fixture fx;
  auto submitter = fx.open_gate({.mode = gate::policy::serial});  // its own pool for the async work
  auto runner = fx.open_gate({.mode = gate::policy::serial});
  auto bad = fx.make_change("bad", /*poison=*/true);
  REQUIRE(submitter->submit(bad).value().kind == gate::verdict_kind::queued);
  waiting<gate::change_verdict> decided;
  submitter->async_wait_verdict("bad", decided.handler());
  CHECK_FALSE(decided.ready_within(100ms));
  auto made = runner->run_until_empty();
  REQUIRE_MESSAGE(made.has_value(), made.error().message());
  auto v = decided.get();
  REQUIRE_MESSAGE(v.has_value(), v.error().message());
  CHECK(v->kind == gate::verdict_kind::deep_checks_failed);
  CHECK(v->detail.find("POISON") != std::string::npos);
}

TEST_CASE("gate.async.a_canceled_wait_leaves_the_change_queued") {
  gate_fixture fx;
  auto g = fx.open_gate({.mode = gate::policy::serial});
  auto c = fx.make_change("c");
  REQUIRE(g->submit(c).value().kind == gate::verdict_kind::queued);
  boost::asio::cancellation_signal cancel;
  waiting<gate::change_verdict> w;
  g->async_wait_verdict("c", boost::asio::bind_cancellation_slot(cancel.slot(), w.handler()));
  CHECK_FALSE(w.ready_within(100ms));
  cancel.emit(boost::asio::cancellation_type::terminal);
  auto r = w.get();
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == error::canceled);
  CHECK(g->queued().value() == 1);
  // A later wait finds the verdict.
  waiting<gate::change_verdict> later;
  g->async_wait_verdict("c", later.handler());
  REQUIRE(g->run_until_empty().has_value());
  CHECK(later.get().value().kind == gate::verdict_kind::merged);
}

TEST_CASE("gate.async.tip_reads_the_shared_branch") {
  gate_fixture fx;
  temp_dir shared_dir("shared");
  (void)git::repository::init(shared_dir.path(), true).value();
  REQUIRE(fx.repo.push(shared_dir.path().string(), {"refs/heads/main:refs/heads/main"}));
  auto g = fx.open_gate({.remote = shared_dir.path().string()});
  // Someone moves the shared branch: the submitters' tip follows it.
  auto moved = fx.commit(fx.main_tip(), {{"ELSEWHERE", file_spec{"x\n"}}}, "elsewhere");
  auto shared = git::repository::open(shared_dir.path()).value();
  REQUIRE(fx.repo.advance("refs/heads/elsewhere", std::nullopt, moved, "elsewhere").value().advanced);
  REQUIRE(fx.repo.push(shared_dir.path().string(), {"refs/heads/elsewhere:refs/heads/main"}));
  waiting<git::oid> tip;
  g->async_tip(tip.handler());
  auto t = tip.get();
  REQUIRE_MESSAGE(t.has_value(), t.error().message());
  CHECK(*t == moved);
  CHECK(shared.ref_target("refs/heads/main").value() == moved);
}
