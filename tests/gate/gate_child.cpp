// Crash-test child for the merge gate: runs the queue of the store in DIR
// until it is empty (or until the test SIGKILLs it).
#include <agentcore/gate/merge_gate.hpp>
#include <agentcore/git/worktree_pool.hpp>
#include <agentcore/store/file_store.hpp>

#include <cstdio>
#include <cstring>
#include <thread>

using namespace agentcore;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: agentcore-gate-child DIR serial|batch\n");
    return 2;
  }
  std::filesystem::path dir = argv[1];
  auto s = store::file_store::open(dir / "store");
  if (!s) return std::fprintf(stderr, "%s\n", s.error().message().c_str()), 1;
  auto pool = git::worktree_pool::open(dir / "repo", {.root = dir / "slots", .slots = 2});
  if (!pool) return std::fprintf(stderr, "%s\n", pool.error().message().c_str()), 1;
  gate::gate_options o;
  o.mode = std::strcmp(argv[2], "batch") == 0 ? gate::policy::batch : gate::policy::serial;
  o.batch_size = 3;
  o.deep_checks = {"sleep 0.05; test ! -e POISON"};
  o.leader_ttl = std::chrono::seconds(1);
  auto g = gate::merge_gate::open(dir / "repo", **s, **pool, o);
  if (!g) return std::fprintf(stderr, "%s\n", g.error().message().c_str()), 1;
  // The gate this one replaces was killed holding the queue: its lease runs out
  // within leader_ttl (restarted on reopen), then this gate takes over.
  auto r = (*g)->run_until_empty();
  for (int i = 0; i < 100 && !r && r.error() == error::in_use; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    r = (*g)->run_until_empty();
  }
  if (!r) return std::fprintf(stderr, "%s\n", r.error().message().c_str()), 1;
  return 0;
}
