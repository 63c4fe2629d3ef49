// The store conformance suite: the semantics every backend must have. It runs
// unchanged on each backend in backends.hpp.
#include "store/backends.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <doctest/doctest.h>

#include <set>

using namespace agentcore;
using namespace agentcore::store;
using namespace std::chrono_literals;

#define BACKENDS test::memory_backend, test::file_backend, test::etcd_backend

namespace {
commit_result must_commit(store::store& s, const txn& t) {
  auto r = s.commit(t);
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  return *r;
}
}  // namespace

TEST_CASE_TEMPLATE("store.conformance.put_get_versions", B, BACKENDS) {
  B b;
  auto s = b.make();
  CHECK(s->current_revision().value() == 0);
  CHECK_FALSE(s->get("a").value().has_value());

  auto c1 = must_commit(*s, txn().put("a", "1"));
  CHECK(c1.succeeded);
  CHECK(c1.rev == 1);
  auto c2 = must_commit(*s, txn().put("a", "2"));
  CHECK(c2.rev == 2);
  auto kv = s->get("a").value();
  REQUIRE(kv);
  CHECK(kv->value == "2");
  CHECK(kv->version == 2);
  CHECK(kv->create_revision == 1);
  CHECK(kv->mod_revision == 2);

  auto c3 = must_commit(*s, txn().erase("a"));
  CHECK(c3.succeeded);
  CHECK(c3.rev == 3);
  CHECK_FALSE(s->get("a").value().has_value());
  // Re-creating starts a new life: version 1, new create_revision.
  must_commit(*s, txn().put("a", "again"));
  kv = s->get("a").value();
  CHECK(kv->version == 1);
  CHECK(kv->create_revision == 4);
}

TEST_CASE_TEMPLATE("store.conformance.one_revision_per_commit", B, BACKENDS) {
  B b;
  auto s = b.make();
  auto c = must_commit(*s, txn().put("x", "1").put("y", "2").put("z", "3"));
  CHECK(c.rev == 1);
  for (auto k : {"x", "y", "z"}) CHECK(s->get(k).value()->mod_revision == 1);
  // A transaction with no operations changes nothing and bumps nothing.
  auto empty = must_commit(*s, txn().if_version("x", 1));
  CHECK(empty.succeeded);
  CHECK(s->current_revision().value() == 1);
  // Erasing an absent key succeeds and changes nothing, so no new revision (as in etcd).
  auto no_op = must_commit(*s, txn().erase("nope"));
  CHECK(no_op.succeeded);
  CHECK(no_op.rev == 1);
  CHECK(must_commit(*s, txn().erase("nope").put("x", "2")).rev == 2);
}

TEST_CASE_TEMPLATE("store.conformance.compare_conflict_is_a_value", B, BACKENDS) {
  B b;
  auto s = b.make();
  must_commit(*s, txn().put("k", "v1"));
  must_commit(*s, txn().put("k", "v2"));  // version 2

  auto stale = must_commit(*s, txn().if_version("k", 1).put("k", "lost"));
  CHECK_FALSE(stale.succeeded);
  CHECK(stale.conflict_key == "k");
  CHECK(stale.conflict_version == 2);
  CHECK(stale.rev == 2);
  CHECK(s->get("k").value()->value == "v2");

  auto fresh = must_commit(*s, txn().if_version("k", 2).put("k", "v3"));
  CHECK(fresh.succeeded);

  auto absent = must_commit(*s, txn().if_absent("k").put("k", "dup"));
  CHECK_FALSE(absent.succeeded);
  CHECK(absent.conflict_key == "k");
  CHECK(must_commit(*s, txn().if_absent("new").put("new", "1")).succeeded);
  CHECK(must_commit(*s, txn().if_version("never", 0).put("never", "1")).succeeded);
}

TEST_CASE_TEMPLATE("store.conformance.all_or_nothing", B, BACKENDS) {
  B b;
  auto s = b.make();
  must_commit(*s, txn().put("a", "1").put("b", "1"));
  // Second compare fails: neither put applies, the revision does not move.
  auto r = must_commit(*s, txn().if_version("a", 1).if_version("b", 7).put("a", "2").put("b", "2").put("c", "2"));
  CHECK_FALSE(r.succeeded);
  CHECK(r.conflict_key == "b");
  CHECK(s->get("a").value()->value == "1");
  CHECK(s->get("b").value()->value == "1");
  CHECK_FALSE(s->get("c").value().has_value());
  CHECK(s->current_revision().value() == 1);
}

TEST_CASE_TEMPLATE("store.conformance.invalid_transactions_are_errors", B, BACKENDS) {
  B b;
  auto s = b.make();
  auto dup = s->commit(txn().put("k", "1").erase("k"));
  REQUIRE_FALSE(dup);
  CHECK(dup.error() == error::invalid_argument);
  CHECK(dup.error().message().find("'k'") != std::string::npos);

  txn big;
  for (int i = 0; i < 129; ++i) big.put("k" + std::to_string(i), "v");
  auto too_many = s->commit(big);
  REQUIRE_FALSE(too_many);
  CHECK(too_many.error().message().find("129") != std::string::npos);

  auto empty_key = s->commit(txn().put("", "v"));
  REQUIRE_FALSE(empty_key);
  CHECK(empty_key.error() == error::invalid_argument);
  CHECK(s->current_revision().value() == 0);  // nothing applied
}

TEST_CASE_TEMPLATE("store.conformance.range_prefix_limit_revision", B, BACKENDS) {
  B b;
  auto s = b.make();
  must_commit(*s, txn().put("task/b", "2").put("task/a", "1").put("tasks", "x").put("other", "o"));
  must_commit(*s, txn().put("task/c", "3"));
  auto r = s->range("task/").value();
  REQUIRE(r.kvs.size() == 3);
  CHECK(r.kvs[0].key == "task/a");
  CHECK(r.kvs[1].key == "task/b");
  CHECK(r.kvs[2].key == "task/c");
  CHECK(r.rev == 2);
  CHECK_FALSE(r.more);

  auto limited = s->range("task/", {.limit = 2}).value();
  CHECK(limited.kvs.size() == 2);
  CHECK(limited.more);
  CHECK(s->range("").value().kvs.size() == 5);
  CHECK(s->range("zzz").value().kvs.empty());
}

TEST_CASE_TEMPLATE("store.conformance.lease_expiry_deletes_attached_keys", B, BACKENDS) {
  B b;
  auto s = b.make();
  auto lease = s->grant(10s).value();
  must_commit(*s, txn().put("claim/1", "w1", lease).put("claim/2", "w1", lease).put("plain", "p"));
  CHECK(s->get("claim/1").value()->lease == lease);

  b.advance(6s);
  auto ka = s->keep_alive(lease);
  REQUIRE(ka);
  CHECK(ka->ttl == 10s);
  b.advance(6s);  // 12 s after the grant, 6 s after the keep-alive: alive
  CHECK(s->get("claim/1").value().has_value());

  auto before = s->current_revision().value();
  b.advance(5s);  // 11 s after the keep-alive: expired
  CHECK_FALSE(s->get("claim/1").value().has_value());
  CHECK_FALSE(s->get("claim/2").value().has_value());
  CHECK(s->get("plain").value().has_value());
  CHECK(s->current_revision().value() == before + 1);  // one revision for the expiry

  auto dead = s->keep_alive(lease);
  REQUIRE_FALSE(dead);
  CHECK(dead.error() == error::lease_not_found);
  auto put_dead = s->commit(txn().put("claim/3", "w1", lease));
  REQUIRE_FALSE(put_dead);
  CHECK(put_dead.error() == error::lease_not_found);
}

TEST_CASE_TEMPLATE("store.conformance.revoke_and_reattach", B, BACKENDS) {
  B b;
  auto s = b.make();
  auto l1 = s->grant(30s).value();
  auto l2 = s->grant(30s).value();
  CHECK(l1 != l2);
  must_commit(*s, txn().put("a", "1", l1).put("b", "1", l1));
  must_commit(*s, txn().put("b", "2", l2));  // b moves to l2
  must_commit(*s, txn().put("a", "2"));      // a detaches
  REQUIRE(s->revoke(l1));
  CHECK(s->get("a").value().has_value());
  CHECK(s->get("b").value().has_value());
  REQUIRE(s->revoke(l2));
  CHECK_FALSE(s->get("b").value().has_value());
  auto again = s->revoke(l2);
  REQUIRE_FALSE(again);
  CHECK(again.error() == error::lease_not_found);
  CHECK_FALSE(s->grant(0s));
}

TEST_CASE_TEMPLATE("store.conformance.watch_delivers_every_change_in_order", B, BACKENDS) {
  B b;
  auto s = b.make();
  must_commit(*s, txn().put("w/a", "0"));
  auto w = s->watch("w/", 2).value();
  must_commit(*s, txn().put("w/a", "1").put("other", "x"));
  must_commit(*s, txn().put("w/b", "1"));
  must_commit(*s, txn().erase("w/a"));
  auto ev = w->poll().value();
  REQUIRE(ev.size() == 3);
  CHECK(ev[0].type == watch_event::kind::put);
  CHECK(ev[0].kv.key == "w/a");
  CHECK(ev[0].kv.value == "1");
  CHECK(ev[0].kv.mod_revision == 2);
  CHECK(ev[1].kv.key == "w/b");
  CHECK(ev[2].type == watch_event::kind::erase);
  CHECK(ev[2].kv.key == "w/a");
  CHECK(ev[2].kv.mod_revision == 4);
  CHECK(w->poll().value().empty());
  CHECK(w->next_revision() == 5);

  // From an earlier revision: history is replayed.
  auto w1 = s->watch("w/", 1).value();
  CHECK(w1->poll().value().size() == 4);
}

TEST_CASE_TEMPLATE("store.conformance.watch_async_next", B, BACKENDS) {
  B b;
  auto s = b.make();
  boost::asio::io_context io;
  auto w = s->watch("k", 1).value();
  std::vector<watch_event> got;
  error_code got_ec = make_error_code(error::invalid_argument);
  w->async_next([&](result<std::vector<watch_event>> ev) {
    got_ec = ev ? error_code() : ev.error().code();
    if (ev) got = std::move(*ev);
  });
  // Nothing yet: the handler waits for a commit.
  io.poll();
  must_commit(*s, txn().put("k", "v"));
  // Completion goes through the handler's executor (none bound: system executor).
  for (int i = 0; i < 200 && got.empty(); ++i) std::this_thread::sleep_for(5ms);
  CHECK_FALSE(got_ec);
  REQUIRE(got.size() == 1);
  CHECK(got[0].kv.value == "v");

  auto fut = w->async_next(boost::asio::use_future);
  w->cancel();
  auto canceled = fut.get();  // an error that says what happened, not an exception
  REQUIRE_FALSE(canceled);
  CHECK(canceled.error() == error::canceled);
  CHECK(canceled.error().message().find("cancel") != std::string::npos);
}

TEST_CASE_TEMPLATE("store.conformance.watch_compacted_history_is_an_error", B, BACKENDS) {
  B b;
  auto s = b.make(/*history_limit=*/4);
  for (int i = 0; i < 10; ++i) must_commit(*s, txn().put("k", std::to_string(i)));
  auto old = s->watch("k", 2);
  REQUIRE_FALSE(old);
  CHECK(old.error() == error::compacted);
  CHECK(old.error().message().find("range()") != std::string::npos);

  auto w = s->watch("k", 9).value();
  for (int i = 0; i < 10; ++i) must_commit(*s, txn().put("k", std::to_string(i)));
  auto late = w->poll();  // fell behind by more than the history holds
  REQUIRE_FALSE(late);
  CHECK(late.error() == error::compacted);
}

TEST_CASE_TEMPLATE("store.conformance.lease_expiry_is_watched", B, BACKENDS) {
  B b;
  auto s = b.make();
  auto l = s->grant(5s).value();
  must_commit(*s, txn().put("claim/x", "w", l));
  auto w = s->watch("claim/", s->current_revision().value() + 1).value();
  b.advance(6s);
  auto ev = w->poll().value();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].type == watch_event::kind::erase);
  CHECK(ev[0].kv.key == "claim/x");
}

TEST_CASE_TEMPLATE("store.conformance.async_commit", B, BACKENDS) {
  B b;
  auto s = b.make();
  auto f = s->async_commit(txn().if_absent("a").put("a", "1"), boost::asio::use_future);
  auto r = f.get().value();
  CHECK(r.succeeded);
  CHECK(s->get("a").value()->value == "1");
  auto conflict = s->async_commit(txn().if_absent("a").put("a", "2"), boost::asio::use_future).get().value();
  CHECK_FALSE(conflict.succeeded);
  CHECK(conflict.conflict_key == "a");
  auto rg = s->async_range("a", {}, boost::asio::use_future).get().value();
  CHECK(rg.kvs.size() == 1);

  // An operation in flight is work on its handler's executor: run() returns
  // only after the completion ran (the host's loop does not end under it).
  boost::asio::io_context io;
  int completed = 0;
  for (int i = 0; i < 8; ++i)
    s->async_commit(txn().put("b" + std::to_string(i), "1"),
                    boost::asio::bind_executor(io, [&](result<commit_result> r) {
                      if (r && r->succeeded) ++completed;
                    }));
  io.run();
  CHECK(completed == 8);
}

TEST_CASE_TEMPLATE("store.conformance.concurrent_cas_counter_loses_no_update", B, BACKENDS) {
  B b;
  auto s = b.make();
  constexpr int threads = 4, per_thread = 150;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        for (;;) {
          auto kv = s->get("counter").value();
          long v = kv ? std::stol(kv->value) : 0;
          std::int64_t ver = kv ? kv->version : 0;
          auto r = s->commit(txn().if_version("counter", ver).put("counter", std::to_string(v + 1)));
          if (r && r->succeeded) break;
          ++conflicts;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK(std::stol(s->get("counter").value()->value) == threads * per_thread);
  CHECK(s->get("counter").value()->version == threads * per_thread);
}

TEST_CASE_TEMPLATE("store.conformance.closed_store_fails_clearly", B, BACKENDS) {
  B b;
  auto s = b.make();
  s->close();
  auto r = s->commit(txn().put("a", "1"));
  REQUIRE_FALSE(r);
  CHECK(r.error() == error::closed);
}
