// Crash-test child: opens a file store and commits from 4 threads until it is
// killed. After each acknowledged commit it writes "<thread> <n>\n" to stdout,
// so the parent knows exactly which commits were acknowledged.
#include <agentcore/store/file_store.hpp>

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace agentcore::store;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: agentcore-crash-child DIR START\n");
    return 2;
  }
  // Small segments so that rotations and snapshots happen during the run too.
  auto s = file_store::open(argv[1], {.segment_bytes = 16 * 1024, .snapshot_min_bytes = 32 * 1024});
  if (!s) {
    std::fprintf(stderr, "%s\n", s.error().message().c_str());
    return 1;
  }
  long start = std::atol(argv[2]);
  // The parent's random kill delay starts here, not at exec: under a sanitizer
  // start-up and recovery alone can take longer than the longest delay.
  if (::write(1, "ready\n", 6) < 0) return 1;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (long n = start;; ++n) {
        txn x;
        x.put(fmt::format("t{}/{:08}", t, n), std::string(64, static_cast<char>('a' + t)));
        x.put(fmt::format("t{}", t), std::to_string(n));
        auto r = (*s)->commit(x);
        if (!r || !r->succeeded) {
          std::fprintf(stderr, "commit failed\n");
          std::_Exit(1);
        }
        std::string line = fmt::format("{} {}\n", t, n);
        // One write() per line: lines from threads never interleave (< PIPE_BUF).
        if (::write(1, line.data(), line.size()) < 0) std::_Exit(1);
      }
    });
  for (auto& th : threads) th.join();
}
