// The merge gate in one minute: a repository with a main branch, three changes
// made by "workers" on the same base, one of which breaks the build. The gate
// checks each against its contract, merges them in memory, runs the deep check
// once per batch, bisects when it fails, and moves main only to checked commits.
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/store/memory_store.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>

using namespace agentcore;
namespace fs = std::filesystem;

int main() {
  fs::path dir = fs::temp_directory_path() / fmt::format("agentcore-gate-example-{}", ::getpid());
  auto repo = git::repository::init(dir / "repo").value();
  git::signature me{"example", "example@agentcore.invalid"};

  // A commit from a map of files: what a worker's commit_all would produce.
  auto commit = [&](std::optional<git::oid> parent, std::map<std::string, std::string> files, const char* msg) {
    std::map<std::string, std::optional<git::tree_entry>> edits;
    for (auto& [path, text] : files) edits[path] = git::tree_entry{repo.write_blob(text).value()};
    std::optional<git::oid> base;
    if (parent) base = repo.commit_tree(*parent).value();
    auto tree = repo.edit_tree(base, edits).value();
    return repo.create_commit(tree, parent ? std::vector{*parent} : std::vector<git::oid>{}, msg, me).value();
  };
  auto root = commit(std::nullopt, {{"README", "a project\n"}, {"build.sh", "test ! -e BROKEN\n"}}, "root");
  repo.advance("refs/heads/main", std::nullopt, root, "init").value();
  std::system(fmt::format("git -C '{}' symbolic-ref HEAD refs/heads/main", (dir / "repo").string()).c_str());

  // The gate's parts: a store for its queue, worktrees for its checks.
  auto store = store::memory_store::create();
  auto pool = git::worktree_pool::open(dir / "repo", {.root = dir / "slots", .slots = 2}).value();
  event_bus bus;
  auto log = bus.subscribe<gate::gate_event>([](const gate::gate_event& e) {
    fmt::print("  {:<10} {:<18} {}\n", e.verdict.change_id, gate::to_string(e.verdict.kind), e.verdict.detail);
  });
  auto g = gate::merge_gate::open(dir / "repo", *store, *pool,
                                  {.mode = gate::policy::batch, .deep_checks = {"sh build.sh"}, .events = &bus})
               .value();

  // Three workers' changes. Contracts bound where each may write.
  contract::task_contract docs_only{.allowed_paths = {"docs/**"}};
  fmt::print("submit:\n");
  g->submit({.id = "docs", .base = root, .head = commit(root, {{"docs/guide.md", "# Guide\n"}}, "docs"),
             .contract = docs_only})
      .value();
  g->submit({.id = "breaks", .base = root, .head = commit(root, {{"BROKEN", "oops\n"}}, "breaks the build")}).value();
  g->submit({.id = "sneaky", .base = root, .head = commit(root, {{"README", "rewritten\n"}}, "outside its contract"),
             .contract = docs_only})
      .value();
  g->submit({.id = "feature", .base = root, .head = commit(root, {{"src/feature.c", "int f;\n"}}, "feature")}).value();

  fmt::print("merge queue:\n");
  g->run_until_empty().value();
  auto tip = repo.ref_target("refs/heads/main").value().value();
  fmt::print("main is at {}: {}\n", tip.hex().substr(0, 12), repo.commit_message(tip).value());
  bool ok = g->verdict("docs").value()->kind == gate::verdict_kind::merged &&
            g->verdict("feature").value()->kind == gate::verdict_kind::merged &&
            g->verdict("breaks").value()->kind == gate::verdict_kind::deep_checks_failed &&
            g->verdict("sneaky").value()->kind == gate::verdict_kind::contract_violated;
  g.reset();
  pool.reset();
  fs::remove_all(dir);
  return ok ? 0 : 1;
}
