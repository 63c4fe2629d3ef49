// Claim-race child: one process of the multi-process claim race. Joins the
// board on etcd, then claims and releases tasks until it has made CLAIMS
// claims, writing "<task> <held-from-ns> <held-until-ns>" per claim to OUT
// (CLOCK_MONOTONIC, shared by every process on the machine). The interval
// runs from after the claim committed to before the release is sent, so it
// lies inside the time the board says the claim existed.
#include <agentcore/board/task_board.hpp>
#include <agentcore/store/etcd_store.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <time.h>

using namespace agentcore;

namespace {
long long now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec;
}
int die(const std::string& why) {
  std::fprintf(stderr, "claim-child: %s\n", why.c_str());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) return die("usage: agentcore-claim-child STORE-URL WORKER CLAIMS OUT");
  auto opts = store::parse_etcd_url(argv[1]);
  if (!opts) return die(opts.error().message());
  auto s = store::etcd_store::connect(*opts);
  if (!s) return die(s.error().message());
  board::task_board b(**s, {.max_attempts = 1000});
  worker_id me{argv[2]};
  long claims = std::atol(argv[3]);
  std::FILE* out = std::fopen(argv[4], "w");
  if (!out) return die(fmt::format("cannot write {}", argv[4]));
  auto lease = (*s)->grant(std::chrono::seconds(120));
  if (!lease) return die(lease.error().message());
  auto renewed = std::chrono::steady_clock::now();
  for (long n = 0; n < claims;) {
    auto t = b.claim(me, *lease);
    if (!t) return die(fmt::format("claim: {}", t.error().message()));
    if (!*t) {  // everything claimed by the others this instant
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    long long from = now_ns();
    // While holding it, the board must say so.
    auto held = b.get((*t)->id);
    if (!held || !*held || (*held)->claimed_by != me || (*held)->state != board::task_state::claimed)
      return die(fmt::format("task {} claimed by {} but the board says otherwise", (*t)->id.str(), me.str()));
    long long until = now_ns();
    auto r = b.release((*t)->id, me);
    if (!r) return die(fmt::format("release {}: {}", (*t)->id.str(), r.error().message()));
    std::fprintf(out, "%s %lld %lld\n", (*t)->id.str().c_str(), from, until);
    ++n;
    if (std::chrono::steady_clock::now() - renewed > std::chrono::seconds(20)) {  // the lease lives 120 s
      auto ka = (*s)->keep_alive(*lease);
      if (!ka) return die(fmt::format("keep-alive: {}", ka.error().message()));
      renewed = std::chrono::steady_clock::now();
    }
  }
  std::fclose(out);
  return 0;
}
