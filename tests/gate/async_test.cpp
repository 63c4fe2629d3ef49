// The gate's asynchronous operations: submitting, waiting for a verdict on a
// store watch, a step of the queue, the branch's tip, without blocking the
// caller's thread.
#include "gate/gate_fixture.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/json/serialize.hpp>

#include <doctest/doctest.h>

#include <atomic>
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

namespace {

// A check that waits on something else: its answer comes from another
// thread (a review service's reply), after the call has returned.
class review_check final : public gate::check {
public:
  explicit review_check(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
  std::string name() const override { return "api review"; }
  std::atomic<int> calls{0};

protected:
  void do_async_run(std::filesystem::path worktree, gate::check_options,
                    boost::asio::any_completion_handler<run_signature> handler) override {
    ++calls;
    boost::asio::post(ex_, [worktree, h = std::move(handler)]() mutable {
      gate::check_result r;
      r.command = "api review";
      r.exit_code = std::filesystem::exists(worktree / "POISON") ? 1 : 0;
      r.log = r.exit_code ? "review: POISON must not be added\n" : "review: fine\n";
      std::move(h)(result<gate::check_result>(std::move(r)));
    });
  }

private:
  boost::asio::any_io_executor ex_;
};

// A blocking one.
class count_check final : public gate::check {
public:
  std::string name() const override { return "count"; }
  result<gate::check_result> run(const std::filesystem::path& worktree, const gate::check_options&) override {
    gate::check_result r;
    r.command = "count";
    r.exit_code = std::filesystem::is_directory(worktree) ? 0 : 1;
    return r;
  }
};

class nothing_check final : public gate::check {
public:
  std::string name() const override { return "nothing"; }
};

}  // namespace

TEST_CASE("gate.async.a_check_that_waits_on_a_service_judges_changes") {
  gate_fixture fx;
  boost::asio::thread_pool service(1);
  auto review = std::make_shared<review_check>(service.get_executor());
  gate::gate_options o{.mode = gate::policy::serial};
  o.host_fast_checks = {review};
  auto g = fx.open_gate(std::move(o));
  auto good = g->submit(fx.make_change("good")).value();
  CHECK(good.kind == gate::verdict_kind::queued);
  auto bad = g->submit(fx.make_change("bad", /*poison=*/true)).value();
  CHECK(bad.kind == gate::verdict_kind::checks_failed);
  REQUIRE(bad.checks.size() == 1);
  CHECK(bad.checks[0].command == "api review");
  CHECK(bad.checks[0].log.find("POISON must not be added") != std::string::npos);
  CHECK(review->calls == 2);

  // Asynchronously too.
  waiting<gate::check_result> direct;
  review->async_run(fx.dir.path(), {}, direct.handler());
  CHECK(direct.get().value().passed());
}

TEST_CASE("gate.async.a_blocking_check_runs_asynchronously_and_one_of_neither_kind_says_so") {
  gate_fixture fx;
  count_check counting;
  waiting<gate::check_result> r;
  counting.async_run(fx.dir.path(), {}, r.handler());
  auto got = r.get();
  REQUIRE(got.has_value());
  CHECK(got->passed());
  CHECK(got->command == "count");

  nothing_check nothing;
  auto blocked = nothing.run(fx.dir.path(), {});
  REQUIRE_FALSE(blocked.has_value());
  CHECK(blocked.error().message().find("'nothing' overrides neither") != std::string::npos);
  waiting<gate::check_result> r2;
  nothing.async_run(fx.dir.path(), {}, r2.handler());
  CHECK_FALSE(r2.get().has_value());
}

// A deciding gate that recorded its verdict but never told the board (it
// died, or its board update failed) must not leave a waiter stuck: the wait
// makes the pending update itself, and the task says what the verdict says.
TEST_CASE("gate.async.a_wait_makes_a_board_update_the_deciding_gate_left_pending") {
  gate_fixture fx;
  board::task_board board(*fx.store);
  REQUIRE(board.propose(board::task{.id = task_id{"t1"}, .title = "t1"}).has_value());
  auto lease = fx.store->grant(std::chrono::seconds(30)).value();
  REQUIRE(board.claim(worker_id{"w1"}, lease).value().has_value());
  REQUIRE(board.submit(task_id{"t1"}, worker_id{"w1"}, json::object{{"change", "t1-1-0"}}).has_value());
  auto g = fx.open_gate({.mode = gate::policy::serial, .board = &board});

  // What a deciding gate writes in one transaction, before it tells the board.
  gate::change_verdict v{.change_id = "t1-1-0", .kind = gate::verdict_kind::checks_failed, .detail = "'make': exit 2"};
  auto verdict = json::serialize(json::value_from(v));
  REQUIRE(fx.store
              ->commit(store::txn()
                           .put("gate/main/verdict/t1-1-0", verdict)
                           .put("gate/main/board_pending/t1-1-0",
                                json::serialize(json::object{{"task", "t1"}, {"verdict", json::value_from(v)}})))
              .value()
              .succeeded);
  REQUIRE(board.get(task_id{"t1"}).value().value().state == board::task_state::submitted);

  waiting<gate::change_verdict> w;
  g->async_wait_verdict("t1-1-0", w.handler());
  auto got = w.get();
  REQUIRE_MESSAGE(got.has_value(), got.error().message());
  CHECK(got->kind == gate::verdict_kind::checks_failed);
  CHECK(board.get(task_id{"t1"}).value().value().state == board::task_state::rejected);
  CHECK_FALSE(fx.store->get("gate/main/board_pending/t1-1-0").value().has_value());
}
