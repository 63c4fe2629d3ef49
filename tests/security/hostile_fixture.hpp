// The hostile suite's stage: a real repository with a main branch and a main
// checkout, a worktree pool, one slot lent to a "task", and the tool box a
// model talks to in that slot. Attacks are sent as a model sends them (a
// run_command tool call); their effects are checked from outside: files on
// the host, the repository's refs, hooks, HEAD and index, processes left,
// connections made, environments read.
#pragma once

#include "agent/agent_fixture.hpp"
#include "git/git_fixture.hpp"

#include <agentcore/agent/tools.hpp>
#include <agentcore/process/process.hpp>
#include <agentcore/git/worktree_pool.hpp>

#include <boost/json/serialize.hpp>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>

namespace agentcore::test {

/// Everything an escape could change in the repository and around it, taken
/// before the attacks and compared after.
struct host_snapshot {
  std::string head, index_hash, refs, hooks, config, outside, modules;
  bool operator==(const host_snapshot&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const host_snapshot& s) {
  return os << "HEAD=" << s.head << " index=" << s.index_hash << "\nrefs:\n"
            << s.refs << "hooks: " << s.hooks << "\nconfig:\n"
            << s.config << "\noutside: " << s.outside;
}

struct hostile_stage {
  git_fixture repo;  // the project, with a main checkout (HEAD on refs/heads/main)
  temp_dir scratch{"hostile"};
  std::filesystem::path outside = scratch.path() / "outside";  // stands for the rest of the host
  std::filesystem::path slots = scratch.path() / "slots";
  git::oid base;
  std::unique_ptr<git::worktree_pool> pool;
  std::optional<git::worktree> wt;
  std::optional<agent::workspace> ws;
  std::optional<agent::tool_context> ctx;
  std::map<std::string, std::shared_ptr<agent::tool>> tools;
  std::string tag = std::to_string(::getpid());  // names of marker files and processes

  explicit hostile_stage(process::sandbox_options sandbox = {}) {
    std::filesystem::create_directories(outside);
    write_text(outside / "target.txt", "outside, untouched\n");
    base = repo.commit(std::nullopt,
                       {{"src/main.c", file_spec{"int main(void) { return 0; }\n"}},
                        {"src/lib/util.c", file_spec{"int twice(int x) { return 2 * x; }\n"}},
                        {"Makefile", file_spec{"test:\n\ttrue\n"}},
                        {"README.md", file_spec{"# project\n"}}},
                       "base");
    REQUIRE(repo.repo.advance("refs/heads/main", std::nullopt, base, "init").value().advanced);
    REQUIRE(repo.git("symbolic-ref HEAD refs/heads/main").exit == 0);
    REQUIRE(repo.git("reset -q --hard main").exit == 0);  // the main checkout, with its index
    pool = git::worktree_pool::open(repo.dir.path(), {.root = slots, .slots = 2}).value();
    lend(std::move(sandbox));
  }

  // A slot for a task, and the tool box in it, as the worker sets them up.
  void lend(process::sandbox_options sandbox = {}) {
    ctx.reset();
    ws.reset();
    wt.reset();
    auto w = pool->acquire(base);
    REQUIRE_MESSAGE(w.has_value(), w.error().message());
    wt.emplace(std::move(*w));
    auto opened = agent::workspace::open(wt->path(), contract::task_contract{.goal = "hostile"});
    REQUIRE_MESSAGE(opened.has_value(), opened.error().message());
    ws.emplace(std::move(*opened));
    ctx.emplace(agent::tool_context{.workspace = *ws});
    ctx->commands.sandbox = std::move(sandbox);
    ctx->commands.sandbox.read_only.push_back(wt->git_dir());
    ctx->commands.timeout = std::chrono::seconds(30);
    for (auto& t : agent::standard_tools({.answer_bytes = 16384, .command_timeout = std::chrono::seconds(30)}))
      tools[t->name()] = t;
  }

  /// A model's run_command call; returns the answer the model would read.
  agent::tool_output command(const std::string& cmd) {
    return call(*tools.at("run_command"), *ctx, boost::json::serialize(boost::json::object{{"command", cmd}}));
  }

  std::filesystem::path git_dir() const { return repo.dir.path() / ".git"; }

  host_snapshot snapshot() {
    host_snapshot s;
    s.head = read_text(git_dir() / "HEAD");
    s.index_hash = repo.git("hash-object .git/index").out;
    s.refs = repo.git("for-each-ref --format='%(refname) %(objectname)'").out;
    std::set<std::string> hooks;
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(git_dir() / "hooks", ec)) hooks.insert(e.path().filename().string());
    for (auto& h : hooks) s.hooks += h + " ";
    s.config = read_text(git_dir() / "config");
    for (auto& e : std::filesystem::recursive_directory_iterator(outside))
      s.outside += e.path().string() + "=" + (e.is_regular_file() ? read_text(e.path()) : std::string("<dir>")) + ";";
    s.modules = read_text("/proc/modules");
    return s;
  }
};

/// Paths on the host an attack may try to create; none may exist afterwards.
inline std::vector<std::filesystem::path> host_markers(const std::string& tag) {
  return {"/usr/agentcore-pwned-" + tag, "/etc/agentcore-pwned-" + tag, "/var/agentcore-pwned-" + tag,
          "/agentcore-pwned-" + tag};
}

inline void remove_host_markers(const std::string& tag) {
  std::error_code ec;
  for (auto& p : host_markers(tag)) std::filesystem::remove(p, ec);
}

}  // namespace agentcore::test
