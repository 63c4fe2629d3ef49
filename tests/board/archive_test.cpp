// The board's archive of finished tasks: they leave the store and are still
// found (by id, by title, as a dependency, by a revert), with either kind of
// archive; a damaged or foreign archive file is an error that names it.
#include "board/board_backends.hpp"
#include "support/temp_dir.hpp"

#include <agentcore/board/archive.hpp>

#include <doctest/doctest.h>

#include <fstream>

using namespace agentcore;
using namespace agentcore::board;
using namespace std::chrono_literals;
using agentcore::test::make_task;

namespace {

// Claims the next ready task and takes it to merged, as a worker and the
// gate would; returns its id.
std::string merge_next(task_board& b, store::store& s) {
  auto lease = s.grant(30s).value();
  auto t = b.claim(worker_id{"w"}, lease).value();
  REQUIRE(t);
  REQUIRE(b.submit(t->id, worker_id{"w"}, json::object{{"head", "abc"}}).has_value());
  REQUIRE(b.finish(t->id, task_state::merged, json::object{{"merge", "m-" + t->id.str()}}).has_value());
  REQUIRE(s.revoke(lease).has_value());
  return t->id.str();
}

std::size_t task_keys(store::store& s) { return s.range("board/task/").value().kvs.size(); }

struct sqlite_kind {
  test::temp_dir dir{"archive"};
  std::shared_ptr<task_archive> make(store::store&) { return open_sqlite_archive(dir / "archive.sqlite").value(); }
};
struct store_kind {
  std::shared_ptr<task_archive> make(store::store& s) { return make_store_archive(s, "board/archive/"); }
};

}  // namespace

TEST_CASE_TEMPLATE("board.archive.finished_tasks_leave_the_store_and_are_still_found", K, sqlite_kind, store_kind) {
  test::memory_backend be;
  auto s = be.make();
  K kind;
  auto archive = kind.make(*s);
  task_board b(*s, {.archive = archive});
  for (const char* id : {"a", "b", "c"}) REQUIRE(b.propose(make_task(id)).has_value());
  REQUIRE(b.propose(make_task("d", -1)).has_value());  // claimed last: still open
  std::vector<std::string> order;  // as they merged
  for (int i = 0; i < 3; ++i) order.push_back(merge_next(b, *s));
  REQUIRE(task_keys(*s) == 4);
  const task_id first{order[0]}, second{order[1]}, last{order[2]};

  // All but the newest finished one go; the open task stays.
  auto moved = b.archive_finished(1);
  REQUIRE_MESSAGE(moved.has_value(), moved.error().message());
  CHECK(*moved == 2);
  CHECK(task_keys(*s) == 2);
  CHECK(b.list().value().size() == 2);  // the live board: the last merged, and d
  CHECK(b.list(task_state::merged).value().at(0).id == last);
  CHECK(archive->count().value() == 2);
  CHECK(archive->count(task_state::merged).value() == 2);
  CHECK(b.archive_finished(1).value() == 0);  // nothing more to move

  // Found by id, with everything it had.
  auto a = b.get(first).value();
  REQUIRE(a);
  CHECK(a->state == task_state::merged);
  CHECK(a->result.as_object().at("merge").as_string() == "m-" + first.str());
  CHECK(a->attempts == 1);
  // The newest first.
  auto listed = archive->list({}).value();
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].id == second);
  CHECK(listed[1].id == first);
  CHECK(archive->list({.limit = 1, .offset = 1}).value().at(0).id == first);

  // Its id stays taken: the same task again is that task, another is refused.
  auto again = b.propose(make_task(first.str()));
  REQUIRE_MESSAGE(again.has_value(), again.error().message());
  CHECK(again->state == task_state::merged);
  CHECK(task_keys(*s) == 2);  // not put back on the board
  auto other = b.propose(make_task(first.str(), 5));
  REQUIRE_FALSE(other.has_value());
  CHECK(other.error() == error::already_exists);
  CHECK(other.error().message().find("archived") != std::string::npos);

  // Its title is known: a planner finds the merged work by title.
  auto titled = b.archived_merge_titled("  TASK   " + second.str() + " ");
  REQUIRE(titled.has_value());
  REQUIRE(titled->has_value());
  CHECK((*titled)->id == second);
  CHECK_FALSE(b.archived_merge_titled("task d").value().has_value());

  // A dependency on it is met.
  auto e = b.propose(make_task("e", 0, {first.str()}));
  REQUIRE_MESSAGE(e.has_value(), e.error().message());
  CHECK(e->state == task_state::ready);

  // Its merge reverted: it is back on the board, reverted, and out of the archive.
  auto r = b.revert(first, json::object{{"revert", "r1"}});
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  CHECK(r->state == task_state::reverted);
  CHECK(b.list(task_state::reverted).value().size() == 1);
  CHECK_FALSE(archive->get(first).value().has_value());
  CHECK(b.get(first).value()->state == task_state::reverted);
  // ... and can be requeued and done again.
  CHECK(b.requeue(first, "bring it back").has_value());
  CHECK(b.get(first).value()->state == task_state::ready);
}

TEST_CASE("board.archive.a_task_that_moved_on_is_not_archived") {
  test::memory_backend be;
  auto s = be.make();
  test::temp_dir dir("archive");
  auto archive = open_sqlite_archive(dir / "a.sqlite").value();
  task_board b(*s, {.archive = archive});
  REQUIRE(b.propose(make_task("a")).has_value());
  REQUIRE(merge_next(b, *s) == "a");
  // The archive took a copy, then the store's erase did not happen (a
  // crash), then the merge was reverted: the board's copy is the task, and
  // the next pass leaves it there (reverted is not finished).
  REQUIRE(archive->put({b.get(task_id{"a"}).value().value()}).has_value());
  REQUIRE(b.revert(task_id{"a"}, json::object{{"revert", "r"}}).has_value());
  CHECK(b.archive_finished(0).value() == 0);  // reverted: not finished
  CHECK(b.get(task_id{"a"}).value()->state == task_state::reverted);
}

TEST_CASE("board.archive.sqlite_file_survives_a_reopen_and_read_only_never_writes") {
  test::temp_dir dir("archive");
  auto file = dir / "sub" / "archive.sqlite";
  {
    test::memory_backend be;
    auto s = be.make();
    task_board b(*s, {.archive = open_sqlite_archive(file).value()});
    REQUIRE(b.propose(make_task("a")).has_value());
    REQUIRE(merge_next(b, *s) == "a");
    REQUIRE(b.archive_finished(0).value() == 1);
  }
  auto ro = open_sqlite_archive(file, {.read_only = true});
  REQUIRE_MESSAGE(ro.has_value(), ro.error().message());
  CHECK((*ro)->get(task_id{"a"}).value()->state == task_state::merged);
  CHECK_FALSE((*ro)->put({make_task("x")}).has_value());
  // A missing archive read-only is an empty one, and is not created.
  auto none = open_sqlite_archive(dir / "none.sqlite", {.read_only = true});
  REQUIRE(none.has_value());
  CHECK((*none)->count().value() == 0);
  CHECK_FALSE(std::filesystem::exists(dir / "none.sqlite"));
}

TEST_CASE("board.archive.a_foreign_or_damaged_file_is_an_error_naming_it") {
  test::temp_dir dir("archive");
  auto foreign = dir / "notes.sqlite";
  std::ofstream(foreign) << "these are my notes, not a database\n";
  auto r = open_sqlite_archive(foreign);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message().find(foreign.string()) != std::string::npos);
  // The file is left as it was.
  std::ifstream in(foreign);
  std::string line;
  std::getline(in, line);
  CHECK(line == "these are my notes, not a database");
}
