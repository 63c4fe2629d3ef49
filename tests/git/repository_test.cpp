#include "git/git_fixture.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>

using namespace agentcore;
using namespace agentcore::test;

TEST_CASE("git.repository.open_errors_keep_libgit2s_message") {
  temp_dir dir("git");
  auto r = git::repository::open(dir.path() / "nope");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code().category() == git::git_category());
  CHECK(r.error().message().find("nope") != std::string::npos);
  CHECK(r.error().message().find("git: open repository") == 0);
}

TEST_CASE("git.repository.commits_trees_and_refs") {
  git_fixture fx;
  auto c1 = fx.commit(std::nullopt, {{"a.txt", file_spec{"hello\n"}}, {"dir/b.txt", file_spec{"b\n"}}}, "first");
  CHECK(fx.repo.commit_message(c1).value() == "first");
  CHECK(fx.repo.commit_parents(c1).value().empty());
  auto tree = fx.repo.commit_tree(c1).value();
  auto e = fx.repo.entry_at(tree, "dir/b.txt").value();
  REQUIRE(e);
  CHECK(fx.repo.read_blob(e->id).value() == "b\n");
  CHECK_FALSE(fx.repo.entry_at(tree, "dir/zzz").value().has_value());
  // git itself agrees about what we wrote.
  CHECK(fx.git("cat-file -p " + c1.hex() + ":a.txt").out == "hello\n");
  CHECK(fx.git("fsck --strict").exit == 0);

  // A ref is created only if absent, then moved only from where we expect it.
  auto made = fx.repo.advance("refs/heads/main", std::nullopt, c1, "create").value();
  CHECK(made.advanced);
  auto c2 = fx.commit(c1, {{"a.txt", file_spec{"hello again\n"}}}, "second");
  auto c3 = fx.commit(c1, {{"a.txt", file_spec{"a rival\n"}}}, "rival");
  auto moved = fx.repo.advance("refs/heads/main", c1, c2, "advance").value();
  CHECK(moved.advanced);
  auto lost = fx.repo.advance("refs/heads/main", c1, c3, "stale").value();  // main is at c2 now
  CHECK_FALSE(lost.advanced);
  REQUIRE(lost.current);
  CHECK(*lost.current == c2);
  auto again = fx.repo.advance("refs/heads/main", std::nullopt, c3, "create twice").value();
  CHECK_FALSE(again.advanced);
  CHECK(fx.repo.ref_target("refs/heads/main").value() == c2);
  CHECK(fx.repo.resolve("refs/heads/main").value() == c2);
  CHECK_FALSE(fx.repo.ref_target("refs/heads/none").value().has_value());
  CHECK(fx.git("rev-parse refs/heads/main").out == c2.hex() + "\n");

  CHECK(fx.repo.is_ancestor(c1, c2).value());
  CHECK_FALSE(fx.repo.is_ancestor(c2, c3).value());
  auto bad = fx.repo.resolve("refs/heads/none");
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find("refs/heads/none") != std::string::npos);
}

// A swarm's history: every commit in the same second, a merge commit per
// landed change, each change based on a tip a few merges old. is_ancestor
// must answer what git answers for every pair (it walks commits, and commit
// dates that tie are where a walk's order goes wrong).
TEST_CASE("git.repository.is_ancestor_agrees_with_git_on_a_swarms_history") {
  git_fixture fx;
  std::vector<git::oid> tips{fx.commit(std::nullopt, {{"f.txt", file_spec{"0\n"}}}, "root")};
  std::vector<git::oid> all = tips;
  std::mt19937 rng(5);
  for (int i = 1; i <= 40; ++i) {
    auto behind = std::uniform_int_distribution<std::size_t>(0, std::min<std::size_t>(5, tips.size() - 1))(rng);
    auto base = tips[tips.size() - 1 - behind];
    auto change = fx.commit(base, {{fmt::format("f{}.txt", i), file_spec{"x\n"}}}, fmt::format("change {}", i));
    auto tree = fx.repo.commit_tree(change).value();
    auto merge = fx.repo.create_commit(tree, {tips.back(), change}, fmt::format("merge {}", i), fx.sig).value();
    tips.push_back(merge);
    all.push_back(change);
    all.push_back(merge);
  }
  std::map<git::oid, std::set<std::string>> reachable;  // by git rev-list
  for (const auto& c : all) {
    std::istringstream in(fx.git("rev-list " + c.hex()).out);
    for (std::string line; std::getline(in, line);) reachable[c].insert(line);
  }
  int yes = 0;
  for (const auto& a : all)
    for (const auto& d : all) {
      bool git_says = reachable[d].contains(a.hex());
      auto mine = fx.repo.is_ancestor(a, d);
      REQUIRE(mine.has_value());
      CHECK_MESSAGE(*mine == git_says, a.hex() << " ancestor of " << d.hex() << ": git says " << git_says);
      yes += git_says;
    }
  CHECK(yes > static_cast<int>(all.size()));  // both answers are exercised
  CHECK(yes < static_cast<int>(all.size() * all.size()) / 2 + static_cast<int>(all.size()));
  // A commit this repository does not have is nobody's ancestor; a missing
  // descendant is an error.
  auto unknown = git::oid::from_hex(std::string(40, '7')).value();
  CHECK_FALSE(fx.repo.is_ancestor(unknown, tips.back()).value());
  CHECK_FALSE(fx.repo.is_ancestor(tips.front(), unknown).has_value());
}

TEST_CASE("git.repository.diff_statistics") {
  git_fixture fx;
  std::string body;
  for (int i = 0; i < 20; ++i) body += "line " + std::to_string(i) + "\n";
  auto c1 = fx.commit(std::nullopt, {{"keep.txt", file_spec{body}},
                                     {"old-name.txt", file_spec{body + "unique\n"}},
                                     {"gone.txt", file_spec{"x\n"}},
                                     {"tool.sh", file_spec{"echo\n"}},
                                     {"img.bin", file_spec{std::string("\0\1\2", 3)}}});
  auto c2 = fx.commit(c1, {{"keep.txt", file_spec{body + "more\n"}},
                           {"old-name.txt", std::nullopt},
                           {"new-name.txt", file_spec{body + "unique\n"}},
                           {"gone.txt", std::nullopt},
                           {"tool.sh", file_spec{"echo\n", git::file_mode::blob_executable}},
                           {"img.bin", file_spec{std::string("\0\1\3", 3)}},
                           {"added.txt", file_spec{"a\nb\n"}}});
  auto d = fx.repo.diff(c1, c2).value();
  std::map<std::string, agentcore::file_change> by_path;
  for (const auto& f : d.files) by_path[f.path] = f;
  REQUIRE(by_path.size() == 6);
  CHECK(by_path["keep.txt"].status == agentcore::change_status::modified);
  CHECK(by_path["keep.txt"].additions == 1);
  CHECK(by_path["keep.txt"].deletions == 0);
  CHECK(by_path["new-name.txt"].status == agentcore::change_status::renamed);
  CHECK(by_path["new-name.txt"].old_path == "old-name.txt");
  CHECK(by_path["gone.txt"].status == agentcore::change_status::deleted);
  CHECK(by_path["gone.txt"].deletions == 1);
  CHECK(by_path["tool.sh"].old_mode == 0100644);
  CHECK(by_path["tool.sh"].new_mode == 0100755);
  CHECK(by_path["img.bin"].binary);
  CHECK(by_path["added.txt"].status == agentcore::change_status::added);
  CHECK(by_path["added.txt"].additions == 2);
  // Without rename detection the rename is a delete and an add.
  auto plain = fx.repo.diff(c1, c2, {.find_renames = false}).value();
  CHECK(plain.files.size() == 7);
}

// The diff reads only subtrees that differ; what it reports must still be
// what git reports, across directories: renames between them, a file that
// became a directory and back, a directory deleted whole, links and modes.
TEST_CASE("git.repository.diff_agrees_with_git_across_directories") {
  git_fixture fx;
  std::string body;
  for (int i = 0; i < 30; ++i) body += "shared line " + std::to_string(i) + "\n";
  std::map<std::string, std::optional<file_spec>> first;
  for (int d = 0; d < 12; ++d)
    for (int f = 0; f < 5; ++f)
      first["src/d" + std::to_string(d) + "/f" + std::to_string(f) + ".c"] =
          file_spec{"int f" + std::to_string(d * 5 + f) + ";\n"};
  first["docs/guide.md"] = file_spec{body + "guide\n"};
  first["docs/deep/a/b/c.txt"] = file_spec{"c\n"};
  first["was-file"] = file_spec{"file\n"};
  first["was-dir/inner.txt"] = file_spec{"inner\n"};
  first["gone/x.txt"] = file_spec{"x\n"};
  first["gone/y/z.txt"] = file_spec{"z\n"};
  first["run.sh"] = file_spec{"echo\n"};
  first["link"] = file_spec{"docs/guide.md", git::file_mode::link};
  auto c1 = fx.commit(std::nullopt, first);
  auto c2 = fx.commit(c1, {{"docs/guide.md", std::nullopt},
                           {"src/d7/guide-moved.md", file_spec{body + "guide\n"}},
                           {"docs/deep/a/b/c.txt", file_spec{"c changed\n"}},
                           {"was-file", std::nullopt},
                           {"was-file/now-inside.txt", file_spec{"in\n"}},
                           {"was-dir/inner.txt", std::nullopt},
                           {"was-dir", file_spec{"now a file\n"}},
                           {"gone/x.txt", std::nullopt},
                           {"gone/y/z.txt", std::nullopt},
                           {"run.sh", file_spec{"echo\n", git::file_mode::blob_executable}},
                           {"link", file_spec{"src/d0/f0.c", git::file_mode::link}},
                           {"src/d3/f2.c", file_spec{"int changed;\n"}},
                           {"new/dir/file.txt", file_spec{"new\n"}}});
  auto letter = [](agentcore::change_status s) {
    switch (s) {
      case agentcore::change_status::added: return 'A';
      case agentcore::change_status::deleted: return 'D';
      case agentcore::change_status::renamed: return 'R';
      case agentcore::change_status::copied: return 'C';
      case agentcore::change_status::type_changed: return 'T';
      default: return 'M';
    }
  };
  for (bool renames : {true, false}) {
    CAPTURE(renames);
    auto d = fx.repo.diff(c1, c2, {.find_renames = renames}).value();
    std::set<std::string> ours;
    for (const auto& f : d.files)
      ours.insert(std::string(1, letter(f.status)) + " " + (f.old_path.empty() ? "" : f.old_path + " -> ") + f.path);
    auto out = fx.git(std::string("diff --name-status ") + (renames ? "-M" : "--no-renames") + " " + c1.hex() + " " +
                      c2.hex());
    REQUIRE(out.exit == 0);
    std::set<std::string> theirs;
    std::istringstream lines(out.out);
    for (std::string line; std::getline(lines, line);) {
      std::vector<std::string> cols;
      std::istringstream fields(line);
      for (std::string c; std::getline(fields, c, '\t');) cols.push_back(c);
      REQUIRE(cols.size() >= 2);
      char st = cols[0][0];
      theirs.insert(cols.size() == 3 ? std::string(1, st) + " " + cols[1] + " -> " + cols[2]
                                     : std::string(1, st) + " " + cols[1]);
    }
    CHECK(ours == theirs);
  }
  CHECK(fx.repo.diff(c2, c2).value().files.empty());
}

TEST_CASE("git.repository.revert_in_memory") {
  git_fixture fx;
  std::string body;
  for (int i = 0; i < 12; ++i) body += "line " + std::to_string(i) + "\n";
  auto c1 = fx.commit(std::nullopt, {{"a.txt", file_spec{body}}});
  std::string bad = body;
  bad.replace(bad.find("line 2"), 6, "BUG 2");
  auto c2 = fx.commit(c1, {{"a.txt", file_spec{bad}}, {"b.txt", file_spec{"new\n"}}}, "the culprit");
  std::string later = bad;
  later.replace(later.find("line 10"), 7, "fine 10");
  auto c3 = fx.commit(c2, {{"a.txt", file_spec{later}}}, "a later change");
  auto r = fx.repo.revert(c2, c3).value();
  REQUIRE(r.clean());
  auto a = fx.repo.entry_at(*r.tree, "a.txt").value();
  std::string want = body;
  want.replace(want.find("line 10"), 7, "fine 10");
  CHECK(fx.repo.read_blob(a->id).value() == want);  // the bug is gone, the later change stays
  CHECK_FALSE(fx.repo.entry_at(*r.tree, "b.txt").value().has_value());

  // A later change on the same lines makes the revert a conflict.
  std::string clash = bad;
  clash.replace(clash.find("BUG 2"), 5, "FIX 2");
  auto c4 = fx.commit(c2, {{"a.txt", file_spec{clash}}});
  auto r2 = fx.repo.revert(c2, c4).value();
  CHECK_FALSE(r2.clean());
  REQUIRE(r2.conflicts.size() == 1);
  CHECK(r2.conflicts[0].path == "a.txt");
  CHECK(r2.conflicts[0].kind == git::conflict_kind::content);
}

TEST_CASE("git.repository.merge_reads_only_changed_subtrees") {
  // A tree whose untouched subtrees are missing from the object database:
  // a merge that tried to read them would fail.
  git_fixture fx;
  auto c1 = fx.commit(std::nullopt, {{"big/one.txt", file_spec{"1\n"}}, {"small/a.txt", file_spec{"a\n"}}});
  auto ours = fx.commit(c1, {{"small/a.txt", file_spec{"a\nours\n"}}});
  auto theirs = fx.commit(c1, {{"small/b.txt", file_spec{"b\n"}}});
  auto theirs2 = fx.commit(c1, {{"big/two.txt", file_spec{"2\n"}}});
  auto ours2 = fx.commit(c1, {{"big/three.txt", file_spec{"3\n"}}});
  auto big = fx.repo.entry_at(fx.repo.commit_tree(c1).value(), "big").value();
  REQUIRE(big);
  auto obj = fx.dir.path() / ".git" / "objects" / big->id.hex().substr(0, 2) / big->id.hex().substr(2);
  REQUIRE(std::filesystem::remove(obj));
  // A fresh handle: libgit2 caches objects it has read.
  auto repo = git::repository::open(fx.dir.path()).value();
  auto m = repo.merge(c1, ours, theirs);
  REQUIRE_MESSAGE(m.has_value(), m.error().message());
  CHECK(m->clean());
  CHECK(repo.entry_at(*m->tree, "big").value()->id == big->id);
  // A directory only one side changed is taken whole from that side: neither
  // base's copy (missing) nor theirs' is read.
  auto one_sided = repo.merge(c1, ours, theirs2);
  REQUIRE_MESSAGE(one_sided.has_value(), one_sided.error().message());
  REQUIRE(one_sided->clean());
  CHECK(repo.entry_at(*one_sided->tree, "big").value()->id ==
        repo.entry_at(repo.commit_tree(theirs2).value(), "big").value()->id);
  CHECK(repo.read_blob(repo.entry_at(*one_sided->tree, "small/a.txt").value()->id).value() == "a\nours\n");
  // A merge that does need the missing subtree fails clearly, naming it.
  auto broken = repo.merge(c1, ours2, theirs2);
  REQUIRE_FALSE(broken.has_value());
  CHECK(broken.error().message().find(big->id.hex()) != std::string::npos);
}

TEST_CASE("git.repository.objects_are_the_ones_git_writes") {
  // agentcore writes loose objects itself: the ids must be git's own for the
  // same content, and git must read every one back.
  git_fixture fx;
  auto blob = fx.repo.write_blob("hello\n").value();
  CHECK(sh("printf 'hello\\n' | git hash-object --stdin").out == blob.hex() + "\n");

  auto c1 = fx.commit(std::nullopt, {{"b.txt", file_spec{"b\n"}},
                                     {"lib/x.txt", file_spec{"x\n"}},
                                     {"lib-extra", file_spec{"file\n"}},
                                     {"lib.txt", file_spec{"a\n"}},
                                     {"run.sh", file_spec{"echo\n", git::file_mode::blob_executable}},
                                     {"link", file_spec{"b.txt", git::file_mode::link}}},
                      "first\n\nwith a body\n");
  auto tree = fx.repo.commit_tree(c1).value();
  // git's tree order compares a directory as "lib/": after "lib-extra" and
  // "lib.txt" ('-' < '.' < '/'), where a plain sort would put it first.
  auto raw = fx.git("cat-file tree " + tree.hex()).out;
  CHECK(raw.find("lib-extra") < raw.find("lib.txt"));
  CHECK(raw.find("lib.txt") < raw.find(std::string("lib\0", 4)));
  CHECK(sh("cd '" + fx.dir.path().string() + "' && git ls-tree " + tree.hex() + " | git mktree").out == tree.hex() + "\n");
  // The commit, byte for byte what git commit-tree makes of the same inputs.
  auto by_git = sh("cd '" + fx.dir.path().string() +
                   "' && GIT_AUTHOR_NAME='agentcore test' GIT_AUTHOR_EMAIL=test@agentcore.invalid "
                   "GIT_AUTHOR_DATE='1700000000 +0000' GIT_COMMITTER_NAME='agentcore test' "
                   "GIT_COMMITTER_EMAIL=test@agentcore.invalid GIT_COMMITTER_DATE='1700000000 +0000' "
                   "git commit-tree " + tree.hex() + " -m first -m 'with a body' 2>/dev/null");
  CHECK(by_git.out == c1.hex() + "\n");
  CHECK(fx.git("fsck --strict --no-dangling").exit == 0);

  // A commit naming an object the repository does not have is refused.
  git::oid ghost = git::oid::from_hex(std::string(40, 'e')).value();
  auto bad = fx.repo.create_commit(ghost, {}, "ghost", fx.sig);
  REQUIRE_FALSE(bad.has_value());
  CHECK(bad.error().message().find(ghost.hex()) != std::string::npos);
}

TEST_CASE("git.repository.reads_packed_objects_and_reports_damaged_ones") {
  git_fixture fx;
  auto c1 = fx.commit(std::nullopt, {{"src/a.txt", file_spec{"a\n"}}, {"src/b.txt", file_spec{"b\n"}}});
  auto ours = fx.commit(c1, {{"src/a.txt", file_spec{"a\nours\n"}}});
  auto theirs = fx.commit(c1, {{"src/b.txt", file_spec{"b\ntheirs\n"}}});
  // Everything into a pack, no loose objects left.
  REQUIRE(fx.git("update-ref refs/heads/o " + ours.hex()).exit == 0);
  REQUIRE(fx.git("update-ref refs/heads/t " + theirs.hex()).exit == 0);
  REQUIRE(fx.git("gc --quiet --prune=now").exit == 0);
  REQUIRE(fx.git("count-objects").out.rfind("0 objects", 0) == 0);
  auto repo = git::repository::open(fx.dir.path()).value();
  auto m = repo.merge(c1, ours, theirs);
  REQUIRE_MESSAGE(m.has_value(), m.error().message());
  REQUIRE(m->clean());
  CHECK(repo.read_blob(repo.entry_at(*m->tree, "src/b.txt").value()->id).value() == "b\ntheirs\n");
  // An object the repository has, packed, is not written again (a merge on a
  // fresh clone writes only what is new): no loose copy appears.
  auto loose = [&] { return fx.git("count-objects").out; };
  auto before = loose();
  CHECK(repo.write_blob("a\nours\n").value() == repo.entry_at(repo.commit_tree(ours).value(), "src/a.txt").value()->id);
  CHECK(loose() == before);
  repo.write_blob("new content\n").value();
  CHECK(loose() != before);  // a new one is

  // A damaged loose object is an error naming it, not a crash or a wrong read.
  auto blob = fx.repo.write_blob("to be damaged\n").value();
  auto path = fx.dir.path() / ".git" / "objects" / blob.hex().substr(0, 2) / blob.hex().substr(2);
  std::filesystem::permissions(path, std::filesystem::perms::owner_write, std::filesystem::perm_options::add);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << "x\x01 this is not a zlib stream";
  }
  auto fresh = git::repository::open(fx.dir.path()).value();
  auto read = fresh.read_blob(blob);
  REQUIRE_FALSE(read.has_value());
  CHECK(read.error().message().find(blob.hex()) != std::string::npos);
}

TEST_CASE("git.repository.fetch_and_push_through_a_shared_repository") {
  git_fixture a;
  temp_dir shared_dir("shared"), b_dir("clone");
  auto shared = git::repository::init(shared_dir.path(), /*bare=*/true).value();
  auto c1 = a.commit(std::nullopt, {{"a.txt", file_spec{"1\n"}}}, "first");
  REQUIRE(a.repo.advance("refs/heads/main", std::nullopt, c1, "init").value().advanced);
  auto url = shared_dir.path().string();
  REQUIRE(a.repo.push(url, {"refs/heads/main:refs/heads/main"}));
  CHECK(shared.ref_target("refs/heads/main").value() == c1);

  // Another repository fetches it, builds on it and pushes by fast-forward.
  auto b = git::repository::init(b_dir.path(), false).value();
  REQUIRE(b.fetch(url, {"+refs/heads/main:refs/heads/main"}));
  CHECK(b.ref_target("refs/heads/main").value() == c1);
  auto t2 = b.edit_tree(b.commit_tree(c1).value(), {{"b.txt", git::tree_entry{b.write_blob("2\n").value()}}}).value();
  auto c2 = b.create_commit(t2, {c1}, "second", git::signature{"t", "t@x", 0, 0}).value();
  REQUIRE(b.advance("refs/heads/main", c1, c2, "second").value().advanced);
  REQUIRE(b.push(url, {"refs/heads/main:refs/heads/main"}));
  CHECK(shared.ref_target("refs/heads/main").value() == c2);

  // A rival built on the old tip is refused: a push is a compare-and-swap.
  auto c3 = a.commit(c1, {{"a.txt", file_spec{"rival\n"}}}, "rival");
  REQUIRE(a.repo.advance("refs/heads/main", c1, c3, "rival").value().advanced);
  auto refused = a.repo.push(url, {"refs/heads/main:refs/heads/main"});
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == error::already_exists);
  CHECK(refused.error().message().find(url) != std::string::npos);
  CHECK(shared.ref_target("refs/heads/main").value() == c2);
  // Fetching brings the winner; '+' pushes and deletes work as in git.
  REQUIRE(a.repo.fetch(url, {"+refs/heads/main:refs/remotes/shared/main"}));
  CHECK(a.repo.ref_target("refs/remotes/shared/main").value() == c2);
  CHECK(a.repo.is_ancestor(c1, c2).value());
  REQUIRE(a.repo.push(url, {"+refs/heads/main:refs/agentcore/changes/x"}));
  CHECK(shared.ref_target("refs/agentcore/changes/x").value() == c3);
  REQUIRE(a.repo.push(url, {":refs/agentcore/changes/x"}));
  CHECK_FALSE(shared.ref_target("refs/agentcore/changes/x").value().has_value());
  // A remote that is not there is an error naming it.
  auto missing = a.repo.fetch((shared_dir.path() / "nope").string(), {"+refs/heads/main:refs/heads/x"});
  REQUIRE_FALSE(missing);
  CHECK(missing.error().message().find("nope") != std::string::npos);
}
