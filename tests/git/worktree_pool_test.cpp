#include "git/git_fixture.hpp"

#include <agentcore/git/worktree_pool.hpp>

#include <doctest/doctest.h>

#include <fstream>
#include <set>

using namespace agentcore;
using namespace agentcore::test;
namespace fs = std::filesystem;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void spit(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}
// What git itself says about a slot: nothing modified, untracked or ignored, at `at`.
void check_clean_at(const fs::path& slot, const git::oid& at) {
  auto head = sh("git -C '" + slot.string() + "' rev-parse HEAD");
  CHECK(head.out == at.hex() + "\n");
  auto st = sh("git -C '" + slot.string() + "' status --porcelain --ignored --untracked-files=all");
  CHECK_MESSAGE(st.out.empty(), "slot not clean: " << st.out);
}
}  // namespace

TEST_CASE("git.worktree_pool.prepare_commit_release_reuse") {
  git_fixture fx;
  files base{{"src/a.cpp", file_spec{"int a;\n"}},
             {"src/b.cpp", file_spec{"int b;\n"}},
             {"tool.sh", file_spec{"echo\n", git::file_mode::blob_executable}},
             {"link", file_spec{"src/a.cpp", git::file_mode::link}},
             {"thing", file_spec{"a file for now\n"}},
             {".gitignore", file_spec{"*.o\n"}}};
  for (int i = 0; i < 50; ++i) base["bulk/f" + std::to_string(i) + ".txt"] = file_spec{std::to_string(i) + "\n"};
  auto c1 = fx.commit(std::nullopt, base, "base");
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, c1, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  auto c2 = fx.commit(c1, {{"src/a.cpp", file_spec{"int a = 2;\n"}},
                           {"src/b.cpp", std::nullopt},
                           {"thing", std::nullopt},
                           {"thing/now-a-dir.txt", file_spec{"dir\n"}},
                           {"tool.sh", file_spec{"echo\n"}},  // exec bit dropped
                           {"new/deep/file.txt", file_spec{"new\n"}}},
                      "second");

  temp_dir slots("slots");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 2}).value();
  fs::path slot_path;
  {
    auto wt = pool->acquire(c1).value();
    slot_path = wt.path();
    CHECK(wt.base() == c1);
    CHECK(slurp(wt.path() / "src/a.cpp") == "int a;\n");
    CHECK(fs::is_symlink(wt.path() / "link"));
    CHECK((fs::status(wt.path() / "tool.sh").permissions() & fs::perms::owner_exec) != fs::perms::none);
    check_clean_at(wt.path(), c1);

    // The agent works: edits, adds, deletes; and leaves build output behind.
    spit(wt.path() / "src/a.cpp", "int a = 42;\n");
    spit(wt.path() / "src/c.cpp", "int c;\n");
    fs::remove(wt.path() / "bulk/f7.txt");
    spit(wt.path() / "src/a.o", "object code");
    auto commit = wt.commit_all("task: change a", fx.sig).value();
    CHECK(commit != c1);
    CHECK(wt.head() == commit);
    CHECK(fx.repo.commit_parents(commit).value() == std::vector<git::oid>{c1});
    auto d = wt.diff_from_base().value();
    std::set<std::string> paths;
    for (const auto& f : d.files) paths.insert(f.path);
    CHECK(paths == std::set<std::string>{"src/a.cpp", "src/c.cpp", "bulk/f7.txt"});  // not the ignored a.o
    CHECK(wt.commit_all("nothing new", fx.sig).value() == commit);  // nothing to commit
    spit(wt.path() / "scratch.txt", "uncommitted");
  }
  // Released: uncommitted and ignored files are gone.
  CHECK_FALSE(fs::exists(slot_path / "scratch.txt"));
  CHECK_FALSE(fs::exists(slot_path / "src/a.o"));

  // Reused at another commit: only the differing files are written.
  auto before = pool->stats();
  CHECK(before.full_checkouts == 1);
  {
    auto wt = pool->acquire(c2).value();
    CHECK(wt.path() == slot_path);
    auto after = pool->stats();
    CHECK(after.full_checkouts == 1);
    CHECK(after.files_written - before.files_written <= 10);
    CHECK(slurp(wt.path() / "src/a.cpp") == "int a = 2;\n");
    CHECK_FALSE(fs::exists(wt.path() / "src/b.cpp"));
    CHECK_FALSE(fs::exists(wt.path() / "src/c.cpp"));  // from the last task's commit, not in c2
    CHECK(fs::is_directory(wt.path() / "thing"));
    CHECK(slurp(wt.path() / "new/deep/file.txt") == "new\n");
    CHECK((fs::status(wt.path() / "tool.sh").permissions() & fs::perms::owner_exec) == fs::perms::none);
    CHECK(fs::exists(wt.path() / "bulk/f7.txt"));  // deleted by the last task, present in c2
    check_clean_at(wt.path(), c2);
  }
}

TEST_CASE("git.worktree_pool.bounded_and_crash_safe") {
  git_fixture fx;
  auto c1 = fx.commit(std::nullopt, {{"a.txt", file_spec{"a\n"}}});
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, c1, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  temp_dir slots("slots");
  fs::path slot_path;
  {
    auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 2}).value();
    auto w1 = pool->acquire(c1).value();
    auto w2 = pool->acquire(c1).value();
    CHECK(w1.path() != w2.path());
    auto w3 = pool->acquire(c1, std::chrono::milliseconds(10));
    REQUIRE_FALSE(w3.has_value());
    CHECK(w3.error() == error::too_many_attempts);
    CHECK(w3.error().message().find("all 2 worktree slots") != std::string::npos);
    slot_path = w1.path();
    w2.release();
    CHECK(pool->acquire(c1).has_value());
  }
  // A process that died mid-task leaves junk in a slot; the next pool cleans it.
  spit(slot_path / "a.txt", "half-written");
  spit(slot_path / "junk/file", "junk");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 2}).value();
  CHECK(slurp(slot_path / "a.txt") == "a\n");
  CHECK_FALSE(fs::exists(slot_path / "junk"));
  auto wt = pool->acquire(c1).value();
  CHECK(pool->stats().full_checkouts == 0);  // reused, not checked out again
  check_clean_at(wt.path(), c1);

  auto bad = git::worktree_pool::open(fx.dir.path(), {.root = {}, .slots = 2});
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find("root") != std::string::npos);
}

// A run killed while it held the lock of a slot's branch (a ref or its log)
// leaves the lock file in the repository; the next pool on that slot
// directory clears it, or the slot could never be made again (the gate's
// crash test met "failed to lock file ... slot-0.lock" after a kill -9).
TEST_CASE("git.worktree_pool.a_killed_run_s_branch_locks_are_cleared") {
  git_fixture fx;
  auto c1 = fx.commit(std::nullopt, {{"a.txt", file_spec{"a\n"}}});
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, c1, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  temp_dir slots("slots");
  fs::path slot_path;
  {
    auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
    slot_path = pool->acquire(c1).value().path();
  }
  // The slot's branch lives while the slot is made; it has the slot's name
  // (its admin directory's).
  std::string branch;
  for (const auto& e : fs::directory_iterator(fx.dir.path() / ".git" / "worktrees"))
    branch = "refs/heads/" + e.path().filename().string();
  REQUIRE(branch.starts_with("refs/heads/agentcore-"));
  // The kill: the slot half made again, the branch's ref and log locked.
  fs::remove_all(slot_path);
  spit(fx.dir.path() / ".git" / (branch + ".lock"), "");
  spit(fx.dir.path() / ".git" / "logs" / (branch + ".lock"), "");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
  auto wt = pool->acquire(c1);
  REQUIRE_MESSAGE(wt.has_value(), wt.error().message());
  check_clean_at(wt->path(), c1);
  CHECK_FALSE(fs::exists(fx.dir.path() / ".git" / (branch + ".lock")));
}

TEST_CASE("git.worktree_pool.merge_in_writes_conflict_markers_and_commits_a_merge") {
  git_fixture fx;
  auto base = fx.commit(std::nullopt, {{"src/a.txt", file_spec{"one\ntwo\nthree\n"}}, {"src/b.txt", file_spec{"b\n"}}},
                        "base");
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, base, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  // Main moves on: a.txt's middle line and a new file.
  auto main2 = fx.commit(base, {{"src/a.txt", file_spec{"one\nTWO (main)\nthree\n"}}, {"src/c.txt", file_spec{"c\n"}}},
                         "main moves");
  temp_dir slots("slots");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
  git::signature sig{"w", "w@x", 0, 0};
  git::oid worker_head;
  {
    // The worker changed the same line and b.txt.
    auto wt = pool->acquire(base).value();
    spit(wt.path() / "src/a.txt", "one\ntwo (worker)\nthree\n");
    spit(wt.path() / "src/b.txt", "b changed\n");
    worker_head = wt.commit_all("worker change", sig).value();
  }
  auto wt = pool->acquire(worker_head).value();
  auto conflicts = wt.merge_in(main2);
  REQUIRE_MESSAGE(conflicts.has_value(), conflicts.error().message());
  CHECK(*conflicts == std::vector<std::string>{"src/a.txt"});
  auto marked = slurp(wt.path() / "src/a.txt");
  CHECK(marked.find("<<<<<<<") != std::string::npos);
  CHECK(marked.find("TWO (main)") != std::string::npos);
  CHECK(marked.find("two (worker)") != std::string::npos);
  CHECK(slurp(wt.path() / "src/c.txt") == "c\n");          // main's clean change came in
  CHECK(slurp(wt.path() / "src/b.txt") == "b changed\n");  // the worker's stayed
  // The conflict resolved by hand (as the model would), then committed: a merge.
  spit(wt.path() / "src/a.txt", "one\ntwo (worker and main)\nthree\n");
  auto merged = wt.commit_all("resolve", sig);
  REQUIRE_MESSAGE(merged.has_value(), merged.error().message());
  auto parents = fx.repo.commit_parents(*merged).value();
  CHECK(parents == std::vector<git::oid>{worker_head, main2});
  CHECK(fx.repo.is_ancestor(main2, *merged).value());
  auto st = sh("git -C '" + wt.path().string() + "' status --porcelain");
  CHECK_MESSAGE(st.out.empty(), st.out);  // no merge left half-done
  REQUIRE(fs::exists(wt.admin_dir() / "HEAD"));  // the right directory...
  CHECK_FALSE(fs::exists(wt.admin_dir() / "MERGE_HEAD"));  // ...with no merge left in it
  // Merging something already in is nothing to do.
  auto again = wt.merge_in(main2);
  REQUIRE(again.has_value());
  CHECK(again->empty());
}

TEST_CASE("git.worktree_pool.a_slot_released_mid_merge_comes_back_clean") {
  git_fixture fx;
  auto base = fx.commit(std::nullopt, {{"f.txt", file_spec{"x\n"}}}, "base");
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, base, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  auto theirs = fx.commit(base, {{"f.txt", file_spec{"theirs\n"}}}, "theirs");
  auto ours = fx.commit(base, {{"f.txt", file_spec{"ours\n"}}}, "ours");
  temp_dir slots("slots");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
  fs::path path;
  {
    auto wt = pool->acquire(ours).value();
    path = wt.path();
    CHECK(wt.merge_in(theirs).value() == std::vector<std::string>{"f.txt"});
  }
  auto wt = pool->acquire(ours).value();
  check_clean_at(wt.path(), ours);
  CHECK(slurp(wt.path() / "f.txt") == "ours\n");
}

TEST_CASE("git.worktree_pool.only_changed_commits_and_cleans_just_the_declared_paths") {
  git_fixture fx;
  auto base = fx.commit(std::nullopt, {{"a.txt", file_spec{"a\n"}}, {"dir/b.txt", file_spec{"b\n"}}}, "base");
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, base, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  temp_dir slots("slots");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
  git::signature sig{"w", "w@x", 0, 0};
  git::oid head;
  {
    auto wt = pool->acquire(base).value();
    spit(wt.path() / "a.txt", "a changed\n");
    spit(wt.path() / "new/deep/c.txt", "c\n");
    fs::remove(wt.path() / "dir/b.txt");
    wt.only_changed({"a.txt", "new/deep/c.txt", "dir/b.txt"});
    head = wt.commit_all("declared", sig).value();
    auto d = fx.repo.diff(base, head).value();
    REQUIRE(d.files.size() == 3);
    // Written after the commit: the clean-up puts the declared paths back.
    spit(wt.path() / "a.txt", "scribbled\n");
    spit(wt.path() / "tmp/scratch.txt", "x\n");
    wt.only_changed({"a.txt", "tmp/scratch.txt"});
  }
  auto wt = pool->acquire(head).value();
  check_clean_at(wt.path(), head);
  CHECK(slurp(wt.path() / "a.txt") == "a changed\n");
  CHECK_FALSE(fs::exists(wt.path() / "tmp"));  // and the directories it leaves empty
  // An undeclared change is not committed: the declaration is the borrower's word.
  spit(wt.path() / "a.txt", "declared\n");
  spit(wt.path() / "undeclared.txt", "u\n");
  wt.only_changed({"a.txt"});
  auto c2 = wt.commit_all("only a", sig).value();
  auto d2 = fx.repo.diff(head, c2).value();
  REQUIRE(d2.files.size() == 1);
  CHECK(d2.files[0].path == "a.txt");
  // Withdrawn, every file is looked at again.
  wt.anything_changed();
  auto c3 = wt.commit_all("the rest", sig).value();
  auto d3 = fx.repo.diff(c2, c3).value();
  REQUIRE(d3.files.size() == 1);
  CHECK(d3.files[0].path == "undeclared.txt");
}

TEST_CASE("git.worktree_pool.an_undeclared_change_keeps_the_whole_lease_thorough") {
  git_fixture fx;
  auto base = fx.commit(std::nullopt, {{"a.txt", file_spec{"a\n"}}, {".gitignore", file_spec{"build/\n"}}}, "base");
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, base, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/main").exit == 0);
  temp_dir slots("slots");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
  git::signature sig{"w", "w@x", 0, 0};
  git::oid head;
  {
    auto wt = pool->acquire(base).value();
    // A command ran (undeclared): it built things and changed a file.
    spit(wt.path() / "build/out.o", "object\n");
    spit(wt.path() / "a.txt", "by a command\n");
    wt.anything_changed();
    head = wt.commit_all("round 1", sig).value();
    // A later round writes only through the workspace and declares it: too late to trust.
    spit(wt.path() / "b.txt", "b\n");
    wt.only_changed({"b.txt"});
    head = wt.commit_all("round 2", sig).value();
  }
  auto wt = pool->acquire(head).value();
  check_clean_at(wt.path(), head);              // git agrees: nothing modified, untracked or ignored
  CHECK_FALSE(fs::exists(wt.path() / "build"));  // the command's output did not outlive the lease
}

// A repository whose HEAD names a branch with no commit ("master", the work
// being on "main"): slots are still made, at the commit asked for, and leave
// no branch behind.
TEST_CASE("git.worktree_pool.slots_are_made_where_head_is_unborn") {
  git_fixture fx;
  auto c = fx.commit(std::nullopt, {{"src/a.c", file_spec{"int a;\n"}}});
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, c, "init").value().advanced);
  REQUIRE(fx.git("symbolic-ref HEAD refs/heads/master").exit == 0);
  temp_dir slots("slots");
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 2});
  REQUIRE_MESSAGE(pool.has_value(), pool.error().message());
  auto wt = (*pool)->acquire(c);
  REQUIRE_MESSAGE(wt.has_value(), wt.error().message());
  check_clean_at(wt->path(), c);
  CHECK(slurp(wt->path() / "src/a.c") == "int a;\n");
  wt->release();
  auto branches = fx.git("for-each-ref '--format=%(refname)' refs/heads");
  CHECK(branches.out == "refs/heads/main\n");
}

// A slot whose index a kill cut short (here: removed, as when git_worktree_add
// dies before its checkout writes it) is reset to its head when the next
// pool opens it: every file of the head back in the index and on disk, so the
// next commit holds the base's files, not their deletion.
TEST_CASE("git.worktree_pool.a_slot_with_a_lost_index_comes_back_whole") {
  git_fixture fx;
  auto c = fx.commit(std::nullopt, {{"src/a.c", file_spec{"int a;\n"}}, {"src/b.c", file_spec{"int b;\n"}}});
  REQUIRE(fx.repo.advance("refs/heads/main", std::nullopt, c, "init").value().advanced);
  temp_dir slots("slots");
  fs::path slot_path;
  {
    auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1}).value();
    auto wt = pool->acquire(c).value();
    slot_path = wt.path();
    wt.release();
  }
  // The index goes (the slot's git directory is the repository's worktrees/<name>).
  bool removed = false;
  for (const auto& e : fs::directory_iterator(fx.dir.path() / ".git" / "worktrees"))
    removed = fs::remove(e.path() / "index") || removed;
  REQUIRE(removed);
  auto pool = git::worktree_pool::open(fx.dir.path(), {.root = slots.path(), .slots = 1});
  REQUIRE_MESSAGE(pool.has_value(), pool.error().message());
  auto wt = (*pool)->acquire(c);
  REQUIRE_MESSAGE(wt.has_value(), wt.error().message());
  check_clean_at(wt->path(), c);
  CHECK(slurp(wt->path() / "src/a.c") == "int a;\n");
  spit(wt->path() / "src/new.c", "int n;\n");
  auto made = wt->commit_all("one file", fx.sig);
  REQUIRE_MESSAGE(made.has_value(), made.error().message());
  auto d = fx.repo.diff(c, *made).value();
  REQUIRE(d.files.size() == 1);
  CHECK(d.files[0].path == "src/new.c");
}
