// task_board: the board's semantics, on every store backend.
#include "board/board_backends.hpp"

#include <doctest/doctest.h>

#include <fmt/format.h>

#include <set>

using namespace agentcore;
using namespace agentcore::board;
using namespace std::chrono_literals;
using agentcore::test::make_task;

#define BACKENDS test::memory_backend, test::file_backend

namespace {
task state_of(task_board& b, const char* id) {
  auto t = b.get(task_id{id});
  REQUIRE(t.has_value());
  REQUIRE(t->has_value());
  return **t;
}
}  // namespace

TEST_CASE_TEMPLATE("board.propose_is_idempotent_by_id", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  auto a = board.propose(make_task("a", 3));
  REQUIRE(a.has_value());
  CHECK(a->state == task_state::ready);
  auto again = board.propose(make_task("a", 3));
  REQUIRE(again.has_value());
  CHECK(*again == *a);
  auto rev = s->current_revision().value();
  CHECK(board.propose(make_task("a", 3)).has_value());
  CHECK(s->current_revision().value() == rev);  // nothing written
  auto different = board.propose(make_task("a", 4));
  REQUIRE_FALSE(different.has_value());
  CHECK(different.error() == error::already_exists);
  auto bad = board.propose(make_task("bad id!"));
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == error::invalid_task);
}

TEST_CASE_TEMPLATE("board.claim_submit_finish", B, BACKENDS) {
  B be;
  auto s = be.make();
  event_bus bus;
  std::vector<task_transition> seen;
  auto sub = bus.subscribe<task_transition>([&](const task_transition& t) { seen.push_back(t); });
  task_board board(*s, {.events = &bus});
  REQUIRE(board.propose(make_task("low", 1)).has_value());
  REQUIRE(board.propose(make_task("high", 9)).has_value());
  auto lease = s->grant(30s).value();
  worker_id w{"w1"};

  auto c = board.claim(w, lease);
  REQUIRE(c.has_value());
  REQUIRE(c->has_value());
  CHECK((*c)->id == task_id{"high"});  // priority first
  CHECK((*c)->state == task_state::claimed);
  CHECK((*c)->attempts == 1);
  CHECK((*c)->claimed_by == w);
  CHECK(s->get("board/claim/high").value()->lease == lease);

  auto other = board.submit(task_id{"high"}, worker_id{"w2"});
  REQUIRE_FALSE(other.has_value());
  CHECK(other.error() == error::claim_lost);
  CHECK(other.error().message().find("'w1'") != std::string::npos);

  auto sub_r = board.submit(task_id{"high"}, w, json::object{{"commit", "abc"}});
  REQUIRE(sub_r.has_value());
  CHECK(sub_r->state == task_state::submitted);
  CHECK_FALSE(s->get("board/claim/high").value().has_value());

  auto early = board.finish(task_id{"low"}, task_state::merged);
  REQUIRE_FALSE(early.has_value());
  CHECK(early.error() == error::illegal_transition);
  CHECK(early.error().message() == "board: task 'low' cannot go from ready to merged");

  auto done = board.finish(task_id{"high"}, task_state::merged);
  REQUIRE(done.has_value());
  CHECK(done->state == task_state::merged);
  auto twice = board.finish(task_id{"high"}, task_state::rejected);
  REQUIRE_FALSE(twice.has_value());
  CHECK(twice.error().message().find("from merged to rejected") != std::string::npos);

  REQUIRE(seen.size() == 5);  // 2 proposals, claim, submit, finish
  CHECK(seen[2].to == task_state::claimed);
  CHECK(seen[2].worker == w);
  CHECK(seen[4].to == task_state::merged);

  auto last = board.claim(w, lease).value();
  REQUIRE(last.has_value());
  CHECK(last->id == task_id{"low"});
  CHECK_FALSE(board.claim(w, lease).value().has_value());  // nothing ready
}

TEST_CASE_TEMPLATE("board.lease_expiry_returns_claims", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  REQUIRE(board.propose(make_task("a")).has_value());
  REQUIRE(board.propose(make_task("b")).has_value());
  auto dying = s->grant(10s).value();
  auto c1 = board.claim(worker_id{"dead"}, dying).value();
  auto c2 = board.claim(worker_id{"dead"}, dying).value();
  REQUIRE(c1);
  REQUIRE(c2);
  auto alive = s->grant(60s).value();
  CHECK_FALSE(board.claim(worker_id{"w2"}, alive).value().has_value());

  be.advance(11s);  // the dead worker never heartbeats
  auto got = board.claim(worker_id{"w2"}, alive).value();  // claim reconciles when nothing is ready
  REQUIRE(got.has_value());
  CHECK(got->attempts == 2);
  CHECK(got->notes.back().text.find("'dead'") != std::string::npos);
  auto other = board.claim(worker_id{"w2"}, alive).value();
  REQUIRE(other.has_value());
  CHECK(other->id != got->id);

  // The dead worker finds out it lost the task when it tries to submit.
  auto late = board.submit(c1->id, worker_id{"dead"});
  REQUIRE_FALSE(late.has_value());
  CHECK(late.error() == error::claim_lost);
  CHECK(late.error().message().find("held by 'w2'") != std::string::npos);

  // A heartbeat keeps claims alive (60 s lease, 11 s gone already).
  be.advance(40s);
  REQUIRE(board.heartbeat(alive).has_value());
  be.advance(40s);
  CHECK(board.reconcile().value() == 0);
  CHECK(state_of(board, "a").state == task_state::claimed);
}

TEST_CASE_TEMPLATE("board.release_abandon_requeue", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  REQUIRE(board.propose(make_task("a")).has_value());
  auto lease = s->grant(30s).value();
  worker_id w{"w"};
  REQUIRE(board.claim(w, lease).value());
  auto rel = board.release(task_id{"a"}, w, "need a bigger model");
  REQUIRE(rel.has_value());
  CHECK(rel->state == task_state::ready);
  CHECK(rel->notes.back().text == "need a bigger model");
  REQUIRE(board.claim(w, lease).value());
  auto ab = board.abandon(task_id{"a"}, w, json::object{{"stuck_at", "linker error"}});
  REQUIRE(ab.has_value());
  CHECK(ab->state == task_state::abandoned);
  CHECK(ab->result.as_object().at("stuck_at").as_string() == "linker error");
  CHECK_FALSE(board.claim(w, lease).value().has_value());
  auto rq = board.requeue(task_id{"a"}, "retry smaller");
  REQUIRE(rq.has_value());
  CHECK(rq->state == task_state::ready);
  auto again = board.claim(w, lease).value();
  REQUIRE(again);
  CHECK(again->attempts == 3);  // claimed, released, claimed, abandoned, claimed
  auto bad = board.requeue(task_id{"a"});  // claimed: only its worker may release it
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error() == error::illegal_transition);
  auto missing = board.requeue(task_id{"zzz"});
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error() == error::not_found);
}

TEST_CASE_TEMPLATE("board.dependencies_gate_readiness", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  // c depends on a and b; b is proposed after c (planners need not order them).
  REQUIRE(board.propose(make_task("a")).has_value());
  auto c = board.propose(make_task("c", 0, {"a", "b"}));
  REQUIRE(c.has_value());
  CHECK(c->state == task_state::proposed);
  REQUIRE(board.propose(make_task("b")).has_value());
  auto lease = s->grant(60s).value();
  worker_id w{"w"};
  std::set<std::string> claimed;
  for (int i = 0; i < 2; ++i) {
    auto t = board.claim(w, lease).value();
    REQUIRE(t);
    claimed.insert(t->id.str());
  }
  CHECK(claimed == std::set<std::string>{"a", "b"});
  CHECK_FALSE(board.claim(w, lease).value().has_value());  // c waits

  REQUIRE(board.submit(task_id{"a"}, w).has_value());
  REQUIRE(board.finish(task_id{"a"}, task_state::merged).has_value());
  CHECK(state_of(board, "c").state == task_state::proposed);  // b not merged yet
  REQUIRE(board.submit(task_id{"b"}, w).has_value());
  REQUIRE(board.finish(task_id{"b"}, task_state::rejected).has_value());
  CHECK(state_of(board, "c").state == task_state::proposed);  // rejected is not merged
  REQUIRE(board.requeue(task_id{"b"}).has_value());
  REQUIRE(board.claim(w, lease).value());
  REQUIRE(board.submit(task_id{"b"}, w).has_value());
  REQUIRE(board.finish(task_id{"b"}, task_state::merged).has_value());
  CHECK(state_of(board, "c").state == task_state::ready);
  auto t = board.claim(w, lease).value();
  REQUIRE(t);
  CHECK(t->id == task_id{"c"});

  // A task whose dependencies are already merged starts ready.
  auto d = board.propose(make_task("d", 0, {"a", "b"}));
  REQUIRE(d.has_value());
  CHECK(d->state == task_state::ready);
}

TEST_CASE_TEMPLATE("board.split_is_atomic", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  REQUIRE(board.propose(make_task("big")).has_value());
  REQUIRE(board.propose(make_task("after", 0, {"big"})).has_value());
  auto rev = s->current_revision().value();

  auto children = board.split(task_id{"big"}, {make_task("part1"), make_task("part2", 0, {"part1"})});
  REQUIRE_MESSAGE(children.has_value(), children.error().message());
  CHECK(s->current_revision().value() == rev + 1);  // one transaction
  CHECK(state_of(board, "big").state == task_state::superseded);
  CHECK(state_of(board, "part1").state == task_state::ready);
  CHECK(state_of(board, "part1").parent == task_id{"big"});
  CHECK(state_of(board, "part2").state == task_state::proposed);
  auto after = state_of(board, "after");
  CHECK(after.dependencies == std::vector<task_id>{task_id{"part1"}, task_id{"part2"}});

  // Only part1 is claimable; finishing both children releases "after".
  auto lease = s->grant(60s).value();
  worker_id w{"w"};
  auto t = board.claim(w, lease).value();
  REQUIRE(t);
  CHECK(t->id == task_id{"part1"});
  CHECK_FALSE(board.claim(w, lease).value().has_value());
  REQUIRE(board.submit(task_id{"part1"}, w).has_value());
  REQUIRE(board.finish(task_id{"part1"}, task_state::merged).has_value());
  auto p2 = board.claim(w, lease).value();
  REQUIRE(p2);
  CHECK(p2->id == task_id{"part2"});
  REQUIRE(board.submit(task_id{"part2"}, w).has_value());
  REQUIRE(board.finish(task_id{"part2"}, task_state::merged).has_value());
  CHECK(state_of(board, "after").state == task_state::ready);

  // A split that cannot happen changes nothing.
  auto rev2 = s->current_revision().value();
  REQUIRE(board.propose(make_task("x")).has_value());
  REQUIRE(board.propose(make_task("taken")).has_value());
  auto dup = board.split(task_id{"x"}, {make_task("y"), make_task("taken")});  // "taken" exists
  REQUIRE_FALSE(dup.has_value());
  CHECK(state_of(board, "x").state == task_state::ready);
  CHECK_FALSE(board.get(task_id{"y"}).value().has_value());
  CHECK(s->current_revision().value() == rev2 + 2);
  auto merged = board.split(task_id{"part1"}, {make_task("z")});
  REQUIRE_FALSE(merged.has_value());
  CHECK(merged.error() == error::illegal_transition);
  // Depending on a task that was split is refused: depend on its children.
  auto late = board.propose(make_task("late", 0, {"big"}));
  REQUIRE_FALSE(late.has_value());
  CHECK(late.error() == error::invalid_task);
  CHECK(late.error().message().find("split") != std::string::npos);
}

TEST_CASE_TEMPLATE("board.corrupt_task_in_store_is_a_clear_error", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  REQUIRE(s->commit(store::txn().put("board/task/evil", R"({"schema":1,"id":"evil","state":"bogus"})")).has_value());
  auto g = board.get(task_id{"evil"});
  REQUIRE_FALSE(g.has_value());
  CHECK(g.error().message().find("board/task/evil") != std::string::npos);
  auto l = board.list();
  REQUIRE_FALSE(l.has_value());
  CHECK(l.error().message().find("'bogus'") != std::string::npos);
  // Nothing was lost or rewritten.
  CHECK(s->get("board/task/evil").value()->version == 1);
}

TEST_CASE_TEMPLATE("board.list_and_watch", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  auto from = s->current_revision().value() + 1;
  auto w = board.watch(from).value();
  REQUIRE(board.propose(make_task("a")).has_value());
  REQUIRE(board.propose(make_task("b", 0, {"a"})).has_value());
  CHECK(board.list().value().size() == 2);
  CHECK(board.list(task_state::proposed).value().size() == 1);
  auto ev = w->poll().value();
  REQUIRE(ev.size() == 2);
  auto t = task_from_json(std::string_view(ev[1].kv.value));
  REQUIRE(t.has_value());
  CHECK(t->id == task_id{"b"});
}

TEST_CASE_TEMPLATE("board.reclaim_after_a_rejected_submission", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board board(*s);
  REQUIRE(board.propose(make_task("a")).has_value());
  auto lease = s->grant(30s).value();
  auto t = board.claim(worker_id{"w1"}, lease).value();
  REQUIRE(t);
  REQUIRE(board.submit(t->id, worker_id{"w1"}).has_value());
  // Only a rejected task can be taken back, and only by its worker.
  auto early = board.reclaim(t->id, worker_id{"w1"}, lease);
  REQUIRE_FALSE(early.has_value());
  CHECK(early.error() == error::claim_lost);
  REQUIRE(board.finish(t->id, task_state::rejected, json::object{{"kind", "conflict"}}).has_value());
  auto other_lease = s->grant(30s).value();
  auto stranger = board.reclaim(t->id, worker_id{"w2"}, other_lease);
  REQUIRE_FALSE(stranger.has_value());
  CHECK(stranger.error().message().find("last held by 'w1'") != std::string::npos);
  auto back = board.reclaim(t->id, worker_id{"w1"}, lease);
  REQUIRE_MESSAGE(back.has_value(), back.error().message());
  CHECK(back->state == task_state::claimed);
  CHECK(back->attempts == 1);  // the same attempt, continued
  CHECK(state_of(board, "a").claimed_by == worker_id{"w1"});
  // It is a claim like any other: submit works, and a lost lease returns it.
  REQUIRE(board.submit(t->id, worker_id{"w1"}).has_value());
  REQUIRE(board.finish(t->id, task_state::rejected).has_value());
  auto short_lease = s->grant(5s).value();
  REQUIRE(board.reclaim(t->id, worker_id{"w1"}, short_lease).has_value());
  be.advance(6s);
  CHECK(board.reconcile().value() == 1);
  CHECK(state_of(board, "a").state == task_state::ready);
}

TEST_CASE_TEMPLATE("board.a_merged_task_can_be_reverted_and_requeued", B, BACKENDS) {
  B be;
  auto s = be.make();
  task_board b(*s);
  REQUIRE(b.propose({.id = task_id{"a"}, .title = "A"}).has_value());
  auto lease = s->grant(std::chrono::seconds(30)).value();
  REQUIRE(b.claim(worker_id{"w"}, lease).value());
  // Only a merged task is reverted.
  CHECK(b.revert(task_id{"a"}, nullptr).error() == error::illegal_transition);
  REQUIRE(b.submit(task_id{"a"}, worker_id{"w"}).has_value());
  REQUIRE(b.finish(task_id{"a"}, task_state::merged).has_value());
  auto r = b.revert(task_id{"a"}, json::object{{"verdict", "reverted"}, {"detail", "taken back"}});
  REQUIRE(r.has_value());
  CHECK(r->state == task_state::reverted);
  CHECK(b.get(task_id{"a"}).value()->result.as_object().at("detail").as_string() == "taken back");
  CHECK(b.revert(task_id{"a"}, nullptr).value().state == task_state::reverted);  // told twice: no harm
  CHECK(b.finish(task_id{"a"}, task_state::merged).error() == error::illegal_transition);
  CHECK(b.requeue(task_id{"a"}).value().state == task_state::ready);
  CHECK(to_string(task_state::reverted) == "reverted");
  CHECK(parse_task_state("reverted") == task_state::reverted);
}

namespace {
// A store on which the first transaction that writes a key ending in `key`
// loses a race: just before it commits, another writer rewrites that key
// (same value, new version), so the board's compare fails and it tries again.
class racing_store final : public agentcore::store::store {
public:
  racing_store(std::unique_ptr<agentcore::store::store> inner, std::string key) : inner_(std::move(inner)), key_(std::move(key)) {}
  int races = 0;

protected:
  result<std::optional<agentcore::store::key_value>> do_get(std::string_view k) override { return inner_->get(k); }
  result<agentcore::store::range_result> do_range(std::string_view p, agentcore::store::range_options o) override { return inner_->range(p, o); }
  result<agentcore::store::commit_result> do_commit(const agentcore::store::txn& t) override {
    if (races == 0)
      for (const auto& op : t.ops)
        if (op.type == agentcore::store::op::kind::put && op.key.ends_with(key_)) {
          auto now = inner_->get(op.key).value();
          if (!now) continue;  // a key the transaction makes
          ++races;
          REQUIRE(inner_->commit(agentcore::store::txn().put(op.key, now->value)).value().succeeded);
          break;
        }
    return inner_->commit(t);
  }
  result<agentcore::store::revision> do_current_revision() override { return inner_->current_revision(); }
  result<agentcore::store::lease_id> do_grant(std::chrono::seconds ttl) override { return inner_->grant(ttl); }
  result<agentcore::store::lease_status> do_keep_alive(agentcore::store::lease_id id) override { return inner_->keep_alive(id); }
  result<void> do_revoke(agentcore::store::lease_id id) override { return inner_->revoke(id); }
  result<agentcore::store::lease_status> do_lease_info(agentcore::store::lease_id id) override { return inner_->lease_info(id); }
  result<std::unique_ptr<agentcore::store::watcher>> do_watch(std::string p, agentcore::store::revision from) override {
    return inner_->watch(std::move(p), from);
  }
  void do_close() override { inner_->close(); }

private:
  std::unique_ptr<agentcore::store::store> inner_;
  std::string key_;
};
}  // namespace

// A transition whose first try loses a race to another writer runs again on
// fresh reads, and what it carries (a submission's report, a requeue's note)
// is written all the same: nothing the caller handed over is lost on a retry.
TEST_CASE("board.a_retried_transition_keeps_its_report_and_note") {
  auto inner = store::memory_store::create();
  auto* raw_inner = inner.get();
  board::task_board setup(*raw_inner);
  REQUIRE(setup.propose(make_task("t1")).has_value());
  auto lease = raw_inner->grant(std::chrono::seconds(30)).value();
  REQUIRE(setup.claim(worker_id{"w1"}, lease).value().has_value());

  racing_store racing(std::move(inner), "/t1");
  board::task_board b(racing);
  json::object report{{"summary", "the work"}, {"head", "abc"}};
  auto sub = b.submit(task_id{"t1"}, worker_id{"w1"}, report);
  REQUIRE_MESSAGE(sub.has_value(), sub.error().message());
  CHECK(racing.races == 1);
  auto t = b.get(task_id{"t1"}).value().value();
  CHECK(t.state == board::task_state::submitted);
  REQUIRE(t.result.is_object());
  CHECK(t.result.as_object().at("summary") == "the work");

  REQUIRE(b.finish(task_id{"t1"}, board::task_state::rejected, nullptr).has_value());
  racing.races = 0;
  REQUIRE(b.requeue(task_id{"t1"}, "try again: the tests failed").has_value());
  CHECK(racing.races == 1);
  t = b.get(task_id{"t1"}).value().value();
  REQUIRE_FALSE(t.notes.empty());
  CHECK(t.notes.back().text == "try again: the tests failed");
}

TEST_CASE("board.a_virtual_clock_and_a_seed_make_claims_reproducible") {
  // What a simulation relies on: ages from its clock, not the wall clock,
  // and the claim window's choice from a seed.
  auto claims = [](std::uint64_t seed) {
    auto clk = std::make_shared<virtual_clock>();
    auto s = store::memory_store::create({.clock = clk});
    task_board b(*s, {.claim_window = 8, .shards = 1, .clock = clk, .seed = seed});
    for (int i = 0; i < 40; ++i) {
      REQUIRE(b.propose(make_task(fmt::format("t{:02}", i))));
      clk->advance(1s);
    }
    auto first = b.get(task_id("t00")).value().value();
    auto last = b.get(task_id("t39")).value().value();
    // The ready index's ages are the virtual clock's: 39 s apart.
    CHECK(last.ready_since_us - first.ready_since_us == 39'000'000);
    auto lease = s->grant(60s).value();
    std::vector<std::string> order;
    while (auto t = b.claim(worker_id("w"), lease).value()) order.push_back(t->id.str());
    CHECK(order.size() == 40);
    return order;
  };
  auto a = claims(7), b = claims(7), c = claims(8);
  CHECK(a == b);
  CHECK(a != c);
}
