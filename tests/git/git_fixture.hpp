// Test helpers for the git module: a scratch repository, trees built from
// maps of contents, and the git command line as an oracle.
#pragma once

#include "support/temp_dir.hpp"

#include <agentcore/git/repository.hpp>

#include <doctest/doctest.h>

#include <cstdio>
#include <map>
#include <string>

namespace agentcore::test {

struct file_spec {
  std::string content;
  git::file_mode mode = git::file_mode::blob;
};
using files = std::map<std::string, std::optional<file_spec>>;  // nullopt: delete

struct command_result {
  int exit = -1;
  std::string out;
};

/// Runs a shell command line, capturing stdout.
inline command_result sh(const std::string& cmd) {
  command_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

struct git_fixture {
  temp_dir dir{"git"};
  git::repository repo = git::repository::init(dir.path(), false, {.fsync = false}).value();
  git::signature sig{"agentcore test", "test@agentcore.invalid", 1700000000, 0};

  git::oid tree(std::optional<git::oid> base, const files& fs) {
    std::map<std::string, std::optional<git::tree_entry>> changes;
    for (const auto& [path, spec] : fs) {
      if (!spec) changes[path] = std::nullopt;
      else changes[path] = git::tree_entry{repo.write_blob(spec->content).value(), spec->mode};
    }
    auto t = repo.edit_tree(base, changes);
    REQUIRE_MESSAGE(t.has_value(), t.error().message());
    return *t;
  }

  git::oid commit(std::optional<git::oid> parent, const files& fs, const std::string& msg = "c") {
    std::optional<git::oid> base;
    if (parent) base = repo.commit_tree(*parent).value();
    auto t = tree(base, fs);
    std::vector<git::oid> parents;
    if (parent) parents.push_back(*parent);
    return repo.create_commit(t, parents, msg, sig).value();
  }

  /// `git <args>` in the repository.
  command_result git(const std::string& args) {
    return sh("git -C '" + dir.path().string() + "' " + args + " 2>/dev/null");
  }
};

}  // namespace agentcore::test
