// Uses agentcore's public API as a host would: one transaction on a memory
// store, read back. Exits 0 only if both worked.
#include <agentcore/store/memory_store.hpp>

#include <cstdio>

int main() {
  auto s = agentcore::store::memory_store::create();

  agentcore::store::txn t;
  t.if_absent("k").put("k", "v");
  auto r = s->commit(t);
  if (!r) {
    std::fprintf(stderr, "consumer: commit failed: %s\n", r.error().message().c_str());
    return 1;
  }
  if (!r->succeeded) {
    std::fprintf(stderr, "consumer: commit did not apply (conflict on '%s')\n", r->conflict_key.c_str());
    return 1;
  }

  auto g = s->get("k");
  if (!g) {
    std::fprintf(stderr, "consumer: get failed: %s\n", g.error().message().c_str());
    return 1;
  }
  if (!g.value() || g.value()->value != "v") {
    std::fprintf(stderr, "consumer: get(\"k\") did not return \"v\"\n");
    return 1;
  }
  std::puts("consumer: ok");
  return 0;
}
