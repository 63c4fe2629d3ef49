// kill -9 of a process running the merge queue, again and again: after each
// kill, main is at a gated commit and the gate's worktrees are clean; a
// restarted gate finishes the queue.
#include "git/git_fixture.hpp"

#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/store/file_store.hpp>

#include <doctest/doctest.h>

#include <csignal>
#include <random>
#include <spawn.h>
#include <sys/wait.h>

extern char** environ;

using namespace agentcore;
using namespace agentcore::test;

namespace {

struct world {
  std::unique_ptr<store::file_store> store;
  std::unique_ptr<git::worktree_pool> pool;
  std::unique_ptr<gate::merge_gate> gate;
};

world open_world(const std::filesystem::path& dir) {
  world w;
  auto s = store::file_store::open(dir / "store");
  REQUIRE_MESSAGE(s.has_value(), s.error().message());
  w.store = std::move(*s);
  auto p = git::worktree_pool::open(dir / "repo", {.root = dir / "slots", .slots = 2});
  REQUIRE_MESSAGE(p.has_value(), p.error().message());
  w.pool = std::move(*p);
  gate::gate_options o;
  o.deep_checks = {"sleep 0.05; test ! -e POISON"};
  o.leader_ttl = std::chrono::seconds(1);
  auto g = gate::merge_gate::open(dir / "repo", *w.store, *w.pool, o);
  REQUIRE_MESSAGE(g.has_value(), g.error().message());
  w.gate = std::move(*g);
  return w;
}

// Every commit on main's first-parent chain is the root or a gate merge, and
// none has the poison in it.
void check_main_is_gated(git::repository& repo, const git::oid& root) {
  auto at = repo.ref_target("refs/heads/main").value().value();
  while (at != root) {
    auto msg = repo.commit_message(at).value();
    CHECK_MESSAGE(msg.starts_with("Merge "), "main has a commit the gate did not make: " << msg);
    CHECK_FALSE(repo.entry_at(repo.commit_tree(at).value(), "POISON").value().has_value());
    at = repo.commit_parents(at).value().at(0);
  }
}

void check_slots_clean(const std::filesystem::path& slots) {
  for (auto& e : std::filesystem::directory_iterator(slots)) {
    if (!e.is_directory()) continue;  // the pool's lock file
    auto st = sh("git -C '" + e.path().string() + "' status --porcelain --ignored --untracked-files=all");
    CHECK_MESSAGE(st.out.empty(), "slot " << e.path() << " is dirty after a restart: " << st.out);
  }
}

}  // namespace

TEST_CASE("gate.crash.kill_9_then_restart_finishes_the_queue") {
  for (const char* mode : {"serial", "batch"}) {
    CAPTURE(mode);
    temp_dir dir("gatecrash");
    auto repo = git::repository::init(dir.path() / "repo", false, {.fsync = false}).value();
    git::signature sig{"t", "t@agentcore.invalid", 1700000000, 0};
    auto mk = [&](std::optional<git::oid> parent, files fs, const char* msg) {
      std::optional<git::oid> base;
      if (parent) base = repo.commit_tree(*parent).value();
      std::map<std::string, std::optional<git::tree_entry>> ch;
      for (auto& [p, f] : fs) ch[p] = git::tree_entry{repo.write_blob(f->content).value(), f->mode};
      auto t = repo.edit_tree(base, ch).value();
      std::vector<git::oid> ps;
      if (parent) ps.push_back(*parent);
      return repo.create_commit(t, ps, msg, sig).value();
    };
    auto root = mk(std::nullopt, {{"README", file_spec{"r\n"}}}, "root");
    REQUIRE(repo.advance("refs/heads/main", std::nullopt, root, "init").value().advanced);
    REQUIRE(sh("git -C '" + (dir.path() / "repo").string() + "' symbolic-ref HEAD refs/heads/main").exit == 0);
    constexpr int changes = 8;
    {
      auto w = open_world(dir.path());
      for (int i = 0; i < changes; ++i) {
        files fs{{"c/" + std::to_string(i), file_spec{std::to_string(i) + "\n"}}};
        if (i == 5) fs["POISON"] = file_spec{"x\n"};
        auto head = mk(root, fs, "change");
        auto v = w.gate->submit({.id = "c" + std::to_string(i), .base = root, .head = head});
        REQUIRE(v.has_value());
        REQUIRE(v->kind == gate::verdict_kind::queued);
      }
    }
    std::mt19937 rng(42);
    std::uniform_int_distribution<int> ms(30, 250);
    int kills = 0;
    for (int round = 0; round < 12; ++round) {
      std::string exe = AGENTCORE_GATE_CHILD, d = dir.path().string(), m = mode;
      char* argv[] = {exe.data(), d.data(), m.data(), nullptr};
      pid_t pid = 0;
      REQUIRE(::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, environ) == 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
      ::kill(pid, SIGKILL);
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (WIFSIGNALED(status)) ++kills;
      else REQUIRE_MESSAGE(WEXITSTATUS(status) == 0, "gate child failed on its own");
      auto w = open_world(dir.path());  // recovers, and cleans the slots
      auto r = git::repository::open(dir.path() / "repo").value();
      check_main_is_gated(r, root);
      check_slots_clean(dir.path() / "slots");
      if (w.gate->queued().value() == 0) break;
    }
    CHECK(kills > 0);
    auto w = open_world(dir.path());
    auto done = w.gate->run_until_empty();
    for (int i = 0; i < 100 && !done && done.error() == error::in_use; ++i) {  // the last child's lease
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      done = w.gate->run_until_empty();
    }
    REQUIRE_MESSAGE(done.has_value(), done.error().message());
    auto r = git::repository::open(dir.path() / "repo").value();
    check_main_is_gated(r, root);
    for (int i = 0; i < changes; ++i) {
      auto v = w.gate->verdict("c" + std::to_string(i)).value();
      REQUIRE(v);
      auto has = r.entry_at(r.commit_tree(r.ref_target("refs/heads/main").value().value()).value(),
                            "c/" + std::to_string(i)).value().has_value();
      if (i == 5) {
        CHECK(v->kind == gate::verdict_kind::deep_checks_failed);
        CHECK_FALSE(has);
      } else {
        CHECK(v->kind == gate::verdict_kind::merged);
        CHECK(has);
      }
    }
  }
}
