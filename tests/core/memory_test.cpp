#include <agentcore/core/memory.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace {

long rss_anon_kib() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("RssAnon:", 0) == 0) return std::atol(line.c_str() + 8);
  return -1;
}

void* volatile sink;  // keeps the compiler from eliding a malloc/free pair

}  // namespace

// What a swarm's threads do: a large passing block (a store snapshot), then
// a burst of blocks freed again (a planning round's task list). With glibc's
// defaults the first raises the trim threshold, and the burst's memory stays
// at the top of the thread's arena after it is freed, malloc_trim or not
// (6 MiB of 6 here); after tune_allocator_for_long_runs() it goes back.
TEST_CASE("core.memory.a_threads_freed_burst_goes_back_to_the_system") {
#if !defined(__GLIBC__) || defined(__SANITIZE_ADDRESS__)
  MESSAGE("SKIPPED (glibc's allocator only; not under AddressSanitizer)");
  return;
#else
  REQUIRE(agentcore::tune_allocator_for_long_runs());
  long before = 0, peak = 0, after = 0;
  std::thread([&] {  // a thread of its own: an arena of its own
    sink = std::malloc(8 << 20);
    std::memset(sink, 1, 8 << 20);
    std::free(sink);
    before = rss_anon_kib();
    std::vector<void*> burst;
    for (int i = 0; i < 24; ++i) {
      burst.push_back(std::malloc(256 << 10));
      std::memset(burst.back(), 1, 256 << 10);
    }
    peak = rss_anon_kib();
    for (void* p : burst) std::free(p);
    ::malloc_trim(0);
    after = rss_anon_kib();
  }).join();
  REQUIRE(before > 0);
  CHECK(peak - before > 5 * 1024);     // the burst was resident
  CHECK(after - before < 1536);        // and went back (with the defaults: all 6 MiB stay)
#endif
}
