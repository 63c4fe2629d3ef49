// A check of your own in the merge gate: gate::make_check turns a function
// over a worktree into a check that runs with every change's fast checks (or
// with the deep checks). This one refuses source files without a license
// line; a real one might call a linter linked into your host.
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/repository.hpp>
#include <agentcore/store/memory_store.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>

using namespace agentcore;
namespace fs = std::filesystem;

int main() {
  fs::path dir = fs::temp_directory_path() / fmt::format("agentcore-check-example-{}", ::getpid());
  auto repo = git::repository::init(dir / "repo").value();
  git::signature me{"example", "example@agentcore.invalid"};
  auto commit = [&](std::optional<git::oid> parent, const std::string& path, const std::string& text) {
    std::optional<git::oid> base;
    if (parent) base = repo.commit_tree(*parent).value();
    auto tree = repo.edit_tree(base, {{path, git::tree_entry{repo.write_blob(text).value()}}}).value();
    return repo.create_commit(tree, parent ? std::vector{*parent} : std::vector<git::oid>{}, "change", me).value();
  };
  auto root = commit(std::nullopt, "README", "a project\n");
  repo.advance("refs/heads/main", std::nullopt, root, "init").value();
  std::system(fmt::format("git -C '{}' symbolic-ref HEAD refs/heads/main", (dir / "repo").string()).c_str());

  // The check: every .c file starts with an SPDX line. A failing check is a
  // result that did not pass, with a log that says why.
  auto license = gate::make_check("license headers", [](const fs::path& worktree, const gate::check_options&) {
    gate::check_result r{.exit_code = 0};
    for (const auto& e : fs::recursive_directory_iterator(worktree)) {
      if (e.path().extension() != ".c") continue;
      std::ifstream f(e.path());
      std::string first;
      std::getline(f, first);
      if (!first.starts_with("// SPDX-License-Identifier:")) {
        r.exit_code = 1;
        r.log += fs::relative(e.path(), worktree).string() + ": no SPDX line\n";
      }
    }
    return result<gate::check_result>(r);
  });

  auto store = store::memory_store::create();
  auto pool = git::worktree_pool::open(dir / "repo", {.root = dir / "slots", .slots = 1}).value();
  auto g = gate::merge_gate::open(dir / "repo", *store, *pool, {.host_fast_checks = {license}}).value();

  auto bad = g->submit({.id = "no-header", .base = root, .head = commit(root, "src/a.c", "int a;\n")}).value();
  auto good = g->submit({.id = "header", .base = root,
                         .head = commit(root, "src/b.c", "// SPDX-License-Identifier: MIT\nint b;\n")})
                  .value();
  fmt::print("{}: {} - {}", bad.change_id, gate::to_string(bad.kind), bad.checks.at(0).log);
  fmt::print("{}: {}\n", good.change_id, gate::to_string(good.kind));
  g->run_until_empty().value();
  fmt::print("main has src/b.c: {}\n",
             repo.entry_at(repo.commit_tree(repo.resolve("refs/heads/main").value()).value(), "src/b.c").value().has_value());
  pool.reset();
  fs::remove_all(dir);
  return bad.kind == gate::verdict_kind::checks_failed && good.kind == gate::verdict_kind::queued ? 0 : 1;
}
