// A repository with a main branch, a store, a worktree pool and a gate, for
// the merge gate's tests. Deep checks fail while a file named POISON exists.
#pragma once

#include "git/git_fixture.hpp"

#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/store/memory_store.hpp>

namespace agentcore::test {

struct gate_fixture : git_fixture {
  temp_dir slots{"slots"};
  git::oid root;
  std::unique_ptr<store::store> store;
  std::unique_ptr<git::worktree_pool> pool;
  int counter = 0;

  explicit gate_fixture(std::unique_ptr<store::store> s = store::memory_store::create()) : store(std::move(s)) {
    root = commit(std::nullopt, {{"README", file_spec{"project\n"}}, {"src/main.c", file_spec{"int main;\n"}}}, "root");
    REQUIRE(repo.advance("refs/heads/main", std::nullopt, root, "init").value().advanced);
    REQUIRE(git("symbolic-ref HEAD refs/heads/main").exit == 0);
    pool = git::worktree_pool::open(dir.path(), {.root = slots.path(), .slots = 2}).value();
  }

  std::unique_ptr<gate::merge_gate> open_gate(gate::gate_options o = {}) {
    if (o.deep_checks.empty()) o.deep_checks = {"test ! -e POISON"};
    auto g = gate::merge_gate::open(dir.path(), *store, *pool, std::move(o));
    REQUIRE_MESSAGE(g.has_value(), g.error().message());
    return std::move(*g);
  }

  git::oid main_tip() { return repo.ref_target("refs/heads/main").value().value(); }

  /// A change on `base` (main's tip by default) that adds its own file, or the poison.
  gate::change make_change(std::string id, bool poison = false, std::optional<git::oid> base = std::nullopt,
                           int priority = 0) {
    git::oid b = base ? *base : main_tip();
    files fs{{"changes/" + id + ".txt", file_spec{id + "\n"}}};
    if (poison) fs["POISON"] = file_spec{"breaks the build\n"};
    auto head = commit(b, fs, "change " + id);
    return gate::change{.id = id, .base = b, .head = head, .priority = priority};
  }

  bool main_has(const std::string& path) {
    auto t = repo.commit_tree(main_tip()).value();
    return repo.entry_at(t, path).value().has_value();
  }
};

}  // namespace agentcore::test
