// The in-memory merge, checked against git itself: for generated scenarios,
// a clean merge must give the tree `git merge-tree --write-tree` gives, and a
// conflicted one the same conflicted paths. git is only the oracle here.
#include "git/git_fixture.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>
#include <set>
#include <sstream>

using namespace agentcore;
using namespace agentcore::test;

namespace {

struct scenario {
  std::string name;
  files base, ours, theirs;
};

std::string lines(const std::string& tag, int n = 12, int changed_line = -1, const std::string& change = {}) {
  std::string s;
  for (int i = 0; i < n; ++i) s += i == changed_line ? change + "\n" : fmt::format("line {} of {}\n", i, tag);
  return s;
}

file_spec f(std::string content, git::file_mode m = git::file_mode::blob) { return {std::move(content), m}; }

struct oracle_answer {
  bool clean = false;
  std::string tree;
  std::set<std::string> conflicted;
};

oracle_answer ask_git(git_fixture& fx, const git::oid& ours, const git::oid& theirs) {
  auto r = fx.git("merge-tree --write-tree --name-only --no-messages " + ours.hex() + " " + theirs.hex());
  REQUIRE_MESSAGE((r.exit == 0 || r.exit == 1), "git merge-tree failed: exit " << r.exit);
  oracle_answer a;
  a.clean = r.exit == 0;
  std::istringstream in(r.out);
  std::getline(in, a.tree);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    // For a file/directory clash git moves the file aside to "path~<commit>"
    // and names that; agentcore names the clashing path itself.
    if (auto t = line.rfind('~'); t != std::string::npos && line.size() - t == 41) line.resize(t);
    a.conflicted.insert(line);
  }
  return a;
}

void check_scenario(const scenario& s) {
  CAPTURE(s.name);
  git_fixture fx;
  auto base = fx.commit(std::nullopt, s.base, "base");
  auto ours = fx.commit(base, s.ours, "ours");
  auto theirs = fx.commit(base, s.theirs, "theirs");
  auto oracle = ask_git(fx, ours, theirs);
  auto mine = fx.repo.merge(base, ours, theirs);
  REQUIRE_MESSAGE(mine.has_value(), mine.error().message());
  std::set<std::string> my_paths;
  for (const auto& c : mine->conflicts) my_paths.insert(c.path);
  CHECK_MESSAGE(mine->clean() == oracle.clean, s.name << ": agentcore " << (mine->clean() ? "clean" : "conflicted")
                                                      << ", git " << (oracle.clean ? "clean" : "conflicted"));
  if (oracle.clean && mine->clean()) {
    CHECK_MESSAGE(mine->tree->hex() == oracle.tree, s.name << ": trees differ");
  } else {
    CHECK_MESSAGE(my_paths == oracle.conflicted, s.name << ": conflicted paths differ: agentcore "
                                                        << fmt::format("{}", fmt::join(my_paths, ",")) << " git "
                                                        << fmt::format("{}", fmt::join(oracle.conflicted, ",")));
  }
}

std::vector<scenario> templates(const std::string& d) {
  // d is a directory prefix: "" or a deep path, so each template runs flat and deep.
  std::vector<scenario> v;
  files base{{d + "a.txt", f(lines("a"))}, {d + "b.txt", f(lines("b"))}, {d + "sub/c.txt", f(lines("c"))},
             {d + "run.sh", f("#!/bin/sh\necho hi\n")}, {"top.md", f("# top\n")}};
  v.push_back({"clean: different files", base, {{d + "a.txt", f(lines("a", 12, 1, "ours"))}},
               {{d + "b.txt", f(lines("b", 12, 1, "theirs"))}}});
  v.push_back({"clean: different hunks of one file", base, {{d + "a.txt", f(lines("a", 12, 1, "ours"))}},
               {{d + "a.txt", f(lines("a", 12, 9, "theirs"))}}});
  v.push_back({"conflict: same hunk", base, {{d + "a.txt", f(lines("a", 12, 5, "ours"))}},
               {{d + "a.txt", f(lines("a", 12, 5, "theirs"))}}});
  v.push_back({"clean: the same change on both sides", base, {{d + "a.txt", f(lines("a", 12, 5, "same"))}},
               {{d + "a.txt", f(lines("a", 12, 5, "same"))}}});
  v.push_back({"clean: add/add identical", base, {{d + "new.txt", f("same\n")}}, {{d + "new.txt", f("same\n")}}});
  v.push_back({"conflict: add/add different", base, {{d + "new.txt", f("ours\n")}}, {{d + "new.txt", f("theirs\n")}}});
  v.push_back({"conflict: modify/delete", base, {{d + "a.txt", f(lines("a", 12, 3, "ours"))}}, {{d + "a.txt", std::nullopt}}});
  v.push_back({"conflict: delete/modify", base, {{d + "b.txt", std::nullopt}}, {{d + "b.txt", f(lines("b", 12, 3, "x"))}}});
  v.push_back({"clean: both delete", base, {{d + "a.txt", std::nullopt}}, {{d + "a.txt", std::nullopt}}});
  v.push_back({"clean: rename on ours, edit on theirs", base,
               {{d + "a.txt", std::nullopt}, {d + "renamed.txt", f(lines("a"))}},
               {{d + "a.txt", f(lines("a", 12, 7, "theirs edit"))}}});
  v.push_back({"clean: edit on ours, rename on theirs", base, {{d + "b.txt", f(lines("b", 12, 2, "ours edit"))}},
               {{d + "b.txt", std::nullopt}, {d + "b2.txt", f(lines("b"))}}});
  v.push_back({"clean: rename with edit, other side edits elsewhere", base,
               {{d + "a.txt", std::nullopt}, {d + "moved.txt", f(lines("a", 12, 0, "ours edit"))}},
               {{d + "a.txt", f(lines("a", 12, 10, "theirs edit"))}}});
  v.push_back({"conflict: rename/delete", base, {{d + "a.txt", std::nullopt}, {d + "gone.txt", f(lines("a"))}},
               {{d + "a.txt", std::nullopt}}});
  v.push_back({"conflict: rename/rename to different names", base,
               {{d + "a.txt", std::nullopt}, {d + "a-ours.txt", f(lines("a"))}},
               {{d + "a.txt", std::nullopt}, {d + "a-theirs.txt", f(lines("a"))}}});
  v.push_back({"clean: rename/rename to the same name", base,
               {{d + "b.txt", std::nullopt}, {d + "b-both.txt", f(lines("b", 12, 1, "ours"))}},
               {{d + "b.txt", std::nullopt}, {d + "b-both.txt", f(lines("b", 12, 9, "theirs"))}}});
  v.push_back({"clean: mode change and content change", base, {{d + "run.sh", f("#!/bin/sh\necho hi\n", git::file_mode::blob_executable)}},
               {{d + "run.sh", f("#!/bin/sh\necho hello\n")}}});
  v.push_back({"clean: delete a directory, other side elsewhere", base, {{d + "sub/c.txt", std::nullopt}},
               {{d + "a.txt", f(lines("a", 12, 4, "t"))}}});
  v.push_back({"conflict: delete a directory, other side edits inside", base, {{d + "sub/c.txt", std::nullopt}},
               {{d + "sub/c.txt", f(lines("c", 12, 4, "t"))}}});
  v.push_back({"clean: new deep directories on both sides", base, {{d + "x/y/z/one.txt", f("1\n")}},
               {{d + "p/q/r/two.txt", f("2\n")}}});
  v.push_back({"clean: both add files in one new directory", base, {{d + "new/one.txt", f("1\n")}},
               {{d + "new/two.txt", f("2\n")}}});
  v.push_back({"conflict: file on one side, directory on the other", base, {{d + "thing", f("a file\n")}},
               {{d + "thing/inner.txt", f("in a dir\n")}}});
  v.push_back({"clean: symlink added on one side", base, {{d + "link", f("a.txt", git::file_mode::link)}},
               {{d + "b.txt", f(lines("b", 12, 11, "t"))}}});
  v.push_back({"conflict: binary changed on both sides", {{d + "img.bin", f(std::string("\0\1\2\3", 4))}},
               {{d + "img.bin", f(std::string("\0\1\2\4", 4))}}, {{d + "img.bin", f(std::string("\0\1\2\5", 4))}}});
  v.push_back({"clean: adjacent-but-separate hunks", base, {{d + "a.txt", f(lines("a", 12, 2, "ours"))}},
               {{d + "a.txt", f(lines("a", 12, 6, "theirs"))}}});
  return v;
}

std::vector<scenario> empty_tree_scenarios() {
  std::vector<scenario> v;
  v.push_back({"clean: empty base, both add", {}, {{"a.txt", f("a\n")}}, {{"b/b.txt", f("b\n")}}});
  v.push_back({"clean: ours empties the tree, theirs unchanged", {{"a.txt", f("a\n")}}, {{"a.txt", std::nullopt}},
               {{"z.txt", f("z\n")}, {"z.txt", std::nullopt}}});
  v.push_back({"clean: both sides delete everything", {{"a.txt", f("a\n")}, {"d/b.txt", f("b\n")}},
               {{"a.txt", std::nullopt}, {"d/b.txt", std::nullopt}},
               {{"a.txt", std::nullopt}, {"d/b.txt", std::nullopt}}});
  return v;
}

// Random edits on both sides of a generated tree: edits, adds, deletes, mode
// changes and renames within a directory (git's directory-rename detection is
// out of scope: no directory is ever emptied by a rename).
std::vector<scenario> random_scenarios(int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<scenario> v;
  for (int s = 0; s < count; ++s) {
    scenario sc;
    sc.name = fmt::format("random #{} (seed {})", s, seed);
    std::vector<std::string> paths;
    for (int dir = 0; dir < 4; ++dir)
      for (int i = 0; i < 5; ++i) {
        std::string p = fmt::format("d{}/deep{}/f{}.txt", dir, dir % 2, i);
        paths.push_back(p);
        sc.base[p] = f(lines(p));
      }
    auto side = [&](files& out, const char* who) {
      std::uniform_int_distribution<int> pick(0, static_cast<int>(paths.size()) - 1), action(0, 5), line(0, 11);
      for (int k = 0; k < 3; ++k) {
        const std::string& p = paths[pick(rng)];
        if (out.contains(p)) continue;
        switch (action(rng)) {
          case 0:
          case 1: out[p] = f(lines(p, 12, line(rng), fmt::format("{} edit {}", who, k))); break;
          case 2: out[p] = std::nullopt; break;
          case 3: out[p] = f(lines(p), git::file_mode::blob_executable); break;
          case 4: out[p.substr(0, p.rfind('/') + 1) + fmt::format("{}-new{}.txt", who, k)] = f(fmt::format("{} {}\n", who, k)); break;
          case 5: {
            std::string to = p.substr(0, p.size() - 4) + fmt::format("-{}-moved.txt", who);
            out[p] = std::nullopt;
            out[to] = f(lines(p));
            break;
          }
        }
      }
    };
    side(sc.ours, "ours");
    side(sc.theirs, "theirs");
    v.push_back(std::move(sc));
  }
  return v;
}

// Renames where agentcore's first merge disagreed with git (issue 16): each
// was clean in agentcore and conflicted in git, or the other way round.
std::vector<scenario> rename_fidelity_scenarios() {
  std::vector<scenario> v;
  // An empty file is never a rename (git pairs no empty files).
  v.push_back({"conflict: an empty file deleted, another empty file added, the first edited",
               {{"empty.txt", f("")}, {"a.txt", f(lines("a"))}},
               {{"empty.txt", std::nullopt}, {"other-empty.txt", f("")}},
               {{"empty.txt", f("now it has a line\n")}}});
  // A link moved unchanged is a rename; the other side's new target follows it.
  v.push_back({"clean: a link renamed, its target changed on the other side",
               {{"link", f("target1", git::file_mode::link)}, {"a.txt", f(lines("a"))}},
               {{"link", std::nullopt}, {"link2", f("target1", git::file_mode::link)}},
               {{"link", f("target2", git::file_mode::link)}}});
  // Long lines with small edits: whole lines mostly differ, 64-byte chunks mostly match.
  {
    std::string base_text, ours_text, theirs_text;
    for (int i = 0; i < 10; ++i) {
      std::string line = fmt::format("{:03} ", i) + std::string(290, static_cast<char>('a' + i)) + "\n";
      base_text += line;
      std::string edited = line;
      if (i < 6) edited[150] = 'X';
      ours_text += edited;
      std::string t = line;
      if (i == 9) t[10] = 'Y';
      theirs_text += t;
    }
    v.push_back({"clean: a rename that edits most long lines a little, the other side edits another",
                 {{"long.txt", f(base_text)}}, {{"long.txt", std::nullopt}, {"moved/long.txt", f(ours_text)}},
                 {{"long.txt", f(theirs_text)}}});
  }
  // CRLF to LF with a rename: git scores without the CRs.
  v.push_back({"conflict: CRLF renamed to LF on one side, a line edited on the other",
               {{"crlf.txt", f("a\r\nb\r\nc\r\nd\r\ne\r\nf\r\ng\r\nh\r\n")}},
               {{"crlf.txt", std::nullopt}, {"lf.txt", f("a\nb\nc\nd\ne\nf\ng\nh\n")}},
               {{"crlf.txt", f("a\r\nb\r\nc\r\nd\r\ne\r\nf\r\ng\r\nH\r\n")}}});
  // A directory renamed on one side, a file added in it on the other: git
  // suggests the new directory and calls it a conflict.
  {
    scenario sc{"conflict: a file added in a directory the other side renamed", {}, {}, {}};
    for (int i = 0; i < 3; ++i) {
      sc.base[fmt::format("old/f{}.txt", i)] = f(lines(fmt::format("f{}", i)));
      sc.ours[fmt::format("old/f{}.txt", i)] = std::nullopt;
      sc.ours[fmt::format("new/f{}.txt", i)] = f(lines(fmt::format("f{}", i)));
    }
    sc.base["keep.txt"] = f("keep\n");
    sc.theirs["old/extra.txt"] = f("extra\n");
    v.push_back(sc);
    scenario deep = sc;
    deep.name = "conflict: a file added deep in a directory the other side renamed";
    deep.theirs = {{"old/sub/extra.txt", f("extra\n")}};
    v.push_back(deep);
    scenario renamed_in = sc;
    renamed_in.name = "conflict: a file renamed into a directory the other side renamed";
    renamed_in.theirs = {{"keep.txt", std::nullopt}, {"old/keep.txt", f("keep\n")}};
    v.push_back(renamed_in);
  }
  // git's basename pass (diffcore-rename's find_basename_matches): after the
  // exact renames, a source and a destination whose basename is unique among
  // the remaining ones on both sides pair at 75% similarity, before (and so
  // instead of) a better-scored destination of another name.
  auto near = [](const std::string& tag, std::set<int> changed) {  // 20 lines, `changed` rewritten, same lengths
    std::string s;
    for (int i = 0; i < 20; ++i)
      s += changed.contains(i) ? fmt::format("LINE {} OF {}\n", i, tag) : fmt::format("line {} of {}\n", i, tag);
    return s;
  };
  const auto x = lines("x", 20), theirs_x = lines("x", 20, 15, "theirs edit");
  v.push_back({"clean: a unique basename at 85% wins over another name at 95%",
               {{"a/x.c", f(x)}, {"a/keep.c", f("keep\n")}},
               {{"a/x.c", std::nullopt}, {"b/x.c", f(near("x", {0, 1, 2}))}, {"b/y.c", f(near("x", {0}))}},
               {{"a/x.c", f(theirs_x)}}});
  v.push_back({"clean: a unique basename below 75% leaves the pairing to the best score",
               {{"a/x.c", f(x)}, {"a/keep.c", f("keep\n")}},
               {{"a/x.c", std::nullopt}, {"b/x.c", f(near("x", {0, 1, 2, 3, 4, 5, 6}))}, {"b/y.c", f(near("x", {0}))}},
               {{"a/x.c", f(theirs_x)}}});
  v.push_back({"clean: a basename another remaining source shares is not unique (even a source the other side left alone)",
               {{"a/x.c", f(x)}, {"c/x.c", f(lines("other x", 20))}, {"a/keep.c", f("keep\n")}, {"c/keep.c", f("keep c\n")}},
               {{"a/x.c", std::nullopt}, {"c/x.c", std::nullopt}, {"b/x.c", f(near("x", {0, 1, 2}))}, {"b/y.c", f(near("x", {0}))}},
               {{"a/x.c", f(theirs_x)}}});
  // A basename that is not unique: where the exact renames say its directory
  // went (a directory this side removed), a file of that name is tried first.
  {
    scenario sc{"clean: sources of one basename, the directory's exact renames point at the destination", {}, {}, {}};
    sc.base = {{"a/Makefile", f(x)}, {"a/one.c", f(lines("one"))}, {"a/two.c", f(lines("two"))},
               {"c/Makefile", f(lines("c make", 20))}, {"c/k.c", f(lines("k"))}};
    sc.ours = {{"a/Makefile", std::nullopt}, {"a/one.c", std::nullopt}, {"a/two.c", std::nullopt},
               {"z/one.c", f(lines("one"))}, {"z/two.c", f(lines("two"))}, {"z/Makefile", f(near("x", {0, 1, 2}))},
               {"z/rules.mk", f(near("x", {0}))}, {"c/Makefile", std::nullopt}};
    sc.theirs = {{"a/Makefile", f(theirs_x)}};
    v.push_back(sc);
    scenario two_dests = sc;
    two_dests.name = "clean: destinations of one basename, the directory's exact renames point at one of them";
    two_dests.base.erase("c/Makefile");
    two_dests.ours.erase("c/Makefile");
    two_dests.ours.erase("z/rules.mk");
    two_dests.ours["q/Makefile"] = f(near("x", {0}));
    v.push_back(two_dests);
  }
  // A directory of hundreds of files moved and edited on one side, some of
  // them edited elsewhere on the other: git follows every rename.
  {
    scenario sc{"clean: 300 files moved to another directory with edits, 20 edited on the other side", {}, {}, {}};
    for (int i = 0; i < 300; ++i) {
      auto tag = fmt::format("m{}", i);
      sc.base[fmt::format("lib/mod{:03}.c", i)] = f(lines(tag, 20));
      sc.ours[fmt::format("lib/mod{:03}.c", i)] = std::nullopt;
      sc.ours[fmt::format("src/lib/mod{:03}.c", i)] = f(lines(tag, 20, 1, "ours: moved and edited"));
      if (i % 15 == 0) sc.theirs[fmt::format("lib/mod{:03}.c", i)] = f(lines(tag, 20, 17, "theirs: edited in place"));
    }
    v.push_back(sc);
  }
  return v;
}

// Generated: one side moves a whole directory of 100 to 300 files (a third
// of them edited on the way), the other side edits some in place and, by
// variant, deletes some, adds one inside, or renames one within it.
std::vector<scenario> directory_move_scenarios(int count, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<scenario> v;
  for (int s = 0; s < count; ++s) {
    scenario sc;
    int n = std::uniform_int_distribution<int>(100, 300)(rng);
    int variant = s % 4;
    sc.name = fmt::format("directory move #{} (seed {}, {} files, variant {})", s, seed, n, variant);
    std::uniform_int_distribution<int> pick(0, n - 1);
    std::set<int> edited_there;
    for (int i = 0; i < 12; ++i) edited_there.insert(pick(rng));
    for (int i = 0; i < n; ++i) {
      auto from = fmt::format("pkg/part{}/unit{:03}.cc", i % 3, i);
      auto to = fmt::format("lib/pkg/part{}/unit{:03}.cc", i % 3, i);
      auto tag = fmt::format("unit{}", i);
      sc.base[from] = f(lines(tag, 20));
      sc.ours[from] = std::nullopt;
      sc.ours[to] = i % 3 == 0 ? f(lines(tag, 20, 0, "ours: moved and edited")) : f(lines(tag, 20));
      if (edited_there.contains(i)) sc.theirs[from] = f(lines(tag, 20, 15, "theirs: edited in place"));
    }
    sc.base["README"] = f("readme\n");
    if (variant == 1)
      for (int k = 0; k < 2; ++k) {
        int i = pick(rng);
        sc.theirs[fmt::format("pkg/part{}/unit{:03}.cc", i % 3, i)] = std::nullopt;
      }
    if (variant == 2) sc.theirs["pkg/part1/brand-new.cc"] = f("new\n");
    if (variant == 3) {
      int i = pick(rng);
      auto from = fmt::format("pkg/part{}/unit{:03}.cc", i % 3, i);
      if (!edited_there.contains(i)) {
        sc.theirs[from] = std::nullopt;
        sc.theirs[fmt::format("pkg/part{}/renamed{:03}.cc", i % 3, i)] = f(lines(fmt::format("unit{}", i), 20));
      }
    }
    v.push_back(std::move(sc));
  }
  return v;
}

}  // namespace

TEST_CASE("git.merge.matches_git_merge_tree") {
  std::vector<scenario> all = templates("");
  for (auto& s : templates("deep/er/still/")) {
    s.name += " (deep)";
    all.push_back(std::move(s));
  }
  for (auto& s : empty_tree_scenarios()) all.push_back(std::move(s));
  for (auto& s : rename_fidelity_scenarios()) all.push_back(std::move(s));
  for (auto& s : directory_move_scenarios(8, 11)) all.push_back(std::move(s));
  for (auto& s : random_scenarios(30, 7)) all.push_back(std::move(s));
  for (auto& s : random_scenarios(30, 4)) all.push_back(std::move(s));
  REQUIRE(all.size() >= 50);
  for (const auto& s : all) check_scenario(s);
  MESSAGE(all.size() << " scenarios checked against git merge-tree");
}
