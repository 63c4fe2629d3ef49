// file_store: durability, recovery and the errors a damaged directory gives.
#include "support/temp_dir.hpp"

#include <agentcore/store/file_store.hpp>

#include <boost/asio/use_future.hpp>
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <map>
#include <unistd.h>

using namespace agentcore;
using namespace agentcore::store;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<file_store> open_ok(const fs::path& dir, file_store_options o = {}) {
  auto r = file_store::open(dir, std::move(o));
  REQUIRE_MESSAGE(r.has_value(), r.error().message());
  return std::move(*r);
}

void fill(store::store& s, int n, std::string_view prefix = "k") {
  for (int i = 0; i < n; ++i) {
    auto r = s.commit(txn().put(fmt::format("{}{:05}", prefix, i % 50), fmt::format("value-{}", i)));
    REQUIRE(r.has_value());
    REQUIRE(r->succeeded);
  }
}

std::vector<fs::path> files(const fs::path& dir, std::string_view prefix) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
void write(const fs::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << data;
}

// A crash: the process dies before it closes the store, so MANIFEST still
// says what it said at `saved` (how much of the newest segment was known to
// be on disk then). Tests that cut a tail as a crash would put that back.
struct manifest_at_open {
  fs::path file;
  std::string saved;
  explicit manifest_at_open(const fs::path& dir) : file(dir / "MANIFEST"), saved(read_file_bytes(file)) {}
  void put_back() const { write_file_bytes(file, saved); }
  static std::string read_file_bytes(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), {}};
  }
  static void write_file_bytes(const fs::path& p, const std::string& d) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << d;
  }
};

}  // namespace

TEST_CASE("store.file.reopen_keeps_everything") {
  test::temp_dir dir("file");
  auto clk = std::make_shared<virtual_clock>();
  lease_id lease = 0;
  {
    auto s = open_ok(dir.path(), {.clock = clk});
    fill(*s, 200);
    lease = s->grant(30s).value();
    REQUIRE(s->commit(txn().put("claim/a", "w1", lease).erase("k00003")).value().succeeded);
  }
  auto s = open_ok(dir.path(), {.clock = clk});
  CHECK(s->recovery().records == 202);
  CHECK_FALSE(s->recovery().torn_tail);
  CHECK(s->current_revision().value() == 201);
  CHECK(s->get("k00049").value()->value == "value-199");
  CHECK(s->get("k00049").value()->version == 4);
  CHECK_FALSE(s->get("k00003").value().has_value());
  // The lease came back with its full TTL restarted, and still owns its key.
  CHECK(s->get("claim/a").value()->lease == lease);
  clk->advance(29s);
  CHECK(s->get("claim/a").value().has_value());
  clk->advance(2s);
  CHECK_FALSE(s->get("claim/a").value().has_value());
  // New leases do not reuse old ids.
  CHECK(s->grant(5s).value() > lease);
}

TEST_CASE("store.file.expiry_is_durable") {
  test::temp_dir dir("file");
  auto clk = std::make_shared<virtual_clock>();
  {
    auto s = open_ok(dir.path(), {.clock = clk});
    auto l = s->grant(5s).value();
    REQUIRE(s->commit(txn().put("claim/a", "w", l)).value().succeeded);
    clk->advance(6s);
    CHECK_FALSE(s->get("claim/a").value().has_value());
    REQUIRE(s->commit(txn().put("after", "1")).value().succeeded);  // waits for the expiry record too
  }
  auto s = open_ok(dir.path(), {.clock = clk});
  CHECK_FALSE(s->get("claim/a").value().has_value());
  CHECK(s->get("after").value()->mod_revision == s->current_revision().value());
}

TEST_CASE("store.file.second_open_is_refused_with_pid") {
  test::temp_dir dir("file");
  auto s = open_ok(dir.path());
  auto again = file_store::open(dir.path());
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error() == error::in_use);
  CHECK(again.error().message().find(std::to_string(::getpid())) != std::string::npos);
  s.reset();
  CHECK(file_store::open(dir.path()).has_value());  // released on close
}

TEST_CASE("store.file.torn_tail_is_truncated_and_reported") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    manifest_at_open crash(dir.path());
    fill(*s, 20);
    s->close();
    crash.put_back();
  }
  auto seg = files(dir.path(), "wal-").back();
  auto data = read(seg);
  auto full = data.size();
  write(seg, data.substr(0, full - 5));  // the last record lost its last 5 bytes
  {
    auto s = open_ok(dir.path());
    REQUIRE(s->recovery().torn_tail);
    CHECK(s->recovery().torn_tail->find(seg.filename().string()) != std::string::npos);
    CHECK(s->recovery().records == 19);
    CHECK(s->current_revision().value() == 19);
    CHECK_FALSE(s->get("k00019").value().has_value());  // the torn commit, never acknowledged
    CHECK(s->get("k00018").value()->value == "value-18");
    // It works after recovery, and what it writes now is read back later.
    REQUIRE(s->commit(txn().put("after", "x")).value().succeeded);
  }
  auto s = open_ok(dir.path());
  CHECK_FALSE(s->recovery().torn_tail);
  CHECK(s->get("after").value()->value == "x");
  CHECK(s->current_revision().value() == 20);
}

TEST_CASE("store.file.torn_checksum_at_tail_is_truncated") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    manifest_at_open crash(dir.path());
    fill(*s, 10);
    s->close();
    crash.put_back();
  }
  auto seg = files(dir.path(), "wal-").back();
  auto data = read(seg);
  data.back() ^= 0x5a;  // last record's bytes half-written
  write(seg, data);
  auto s = open_ok(dir.path());
  REQUIRE(s->recovery().torn_tail);
  CHECK(s->current_revision().value() == 9);
}

TEST_CASE("store.file.corruption_before_the_tail_is_an_error_naming_file_and_offset") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    fill(*s, 10);
  }
  auto seg = files(dir.path(), "wal-").back();
  auto data = read(seg);
  data[24 + 8 + 3] ^= 0x01;  // inside the first record's payload
  write(seg, data);
  auto r = file_store::open(dir.path());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == error::corrupt);
  CHECK(r.error().message().find(seg.filename().string()) != std::string::npos);
  CHECK(r.error().message().find("offset 24") != std::string::npos);
  // Nothing was truncated: the damaged file is left as it was for repair.
  CHECK(read(seg) == data);
}

TEST_CASE("store.file.truncated_or_missing_segment_is_an_error") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path(), {.segment_bytes = 4096, .snapshot_min_bytes = 1u << 30});
    fill(*s, 400);
  }
  auto segs = files(dir.path(), "wal-");
  REQUIRE(segs.size() >= 3);
  SUBCASE("truncated middle segment") {
    auto data = read(segs[1]);
    write(segs[1], data.substr(0, data.size() - 10));
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::corrupt);
    CHECK(r.error().message().find(segs[1].filename().string()) != std::string::npos);
  }
  SUBCASE("missing middle segment") {
    fs::remove(segs[1]);
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::corrupt);
    CHECK(r.error().message().find(segs[1].filename().string()) != std::string::npos);
  }
  SUBCASE("missing first segment") {
    fs::remove(segs[0]);
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message().find("missing") != std::string::npos);
  }
}

TEST_CASE("store.file.future_format_and_record_type_are_refused") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    fill(*s, 3);
  }
  auto seg = files(dir.path(), "wal-").back();
  auto data = read(seg);
  SUBCASE("segment format from the future") {
    auto changed = data;
    changed[8] = 9;
    write(seg, changed);
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::unsupported_format);
    CHECK(r.error().message().find("format 9") != std::string::npos);
  }
  SUBCASE("record type from the future") {
    // Append a well-framed record of type 77.
    std::string payload = "\x4d" "future";
    std::string rec(8, '\0');
    std::uint32_t len = static_cast<std::uint32_t>(payload.size());
    std::memcpy(rec.data(), &len, 4);
    extern std::uint32_t test_crc32c(const std::string&);
    std::uint32_t crc = test_crc32c(payload);
    std::memcpy(rec.data() + 4, &crc, 4);
    write(seg, data + rec + payload);
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::unsupported_format);
    CHECK(r.error().message().find("type 77") != std::string::npos);
    CHECK(r.error().message().find(fmt::format("offset {}", data.size())) != std::string::npos);
  }
  SUBCASE("foreign file with a store name") {
    write(seg, std::string(100, 'x'));
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::corrupt);
    CHECK(r.error().message().find(seg.filename().string()) != std::string::npos);
  }
}

TEST_CASE("store.file.snapshots_bound_disk_use_and_reopen_equal") {
  test::temp_dir dir("file");
  std::vector<key_value> before;
  {
    auto s = open_ok(dir.path(), {.segment_bytes = 8192, .snapshot_min_bytes = 16384});
    fill(*s, 5000);  // 50 live keys, 5000 commits
    CHECK(s->stats().snapshots >= 3);
    before = s->range("").value().kvs;
  }
  std::uintmax_t total = 0;
  for (auto& e : fs::directory_iterator(dir.path())) total += e.file_size();
  // 5000 commits of ~30 bytes would be ~150 KB of log; live data is ~1 KB.
  CHECK(total < 64 * 1024);
  CHECK(files(dir.path(), "snap-").size() == 1);
  auto s = open_ok(dir.path(), {.segment_bytes = 8192, .snapshot_min_bytes = 16384});
  CHECK_FALSE(s->recovery().snapshot.empty());
  CHECK(s->range("").value().kvs == before);
  CHECK(s->current_revision().value() == 5000);
}

TEST_CASE("store.file.snapshot_now_and_corrupt_snapshot") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    fill(*s, 100);
    REQUIRE(s->snapshot_now().has_value());
    fill(*s, 10, "after");
  }
  {
    auto s = open_ok(dir.path());
    CHECK_FALSE(s->recovery().snapshot.empty());
    CHECK(s->recovery().records == 10);
    CHECK(s->get("after00009").value().has_value());
    CHECK(s->current_revision().value() == 110);
  }
  auto snap = files(dir.path(), "snap-").back();
  auto data = read(snap);
  data[data.size() / 2] ^= 0x10;
  write(snap, data);
  auto r = file_store::open(dir.path());
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == error::corrupt);
  CHECK(r.error().message().find(snap.filename().string()) != std::string::npos);
}

TEST_CASE("store.file.group_commit_shares_syncs") {
  test::temp_dir dir("file");
  auto s = open_ok(dir.path());
  constexpr int threads = 16, per = 40;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < per; ++i) REQUIRE(s->commit(txn().put(fmt::format("t{}", t), std::to_string(i))).has_value());
    });
  for (auto& t : ts) t.join();
  auto st = s->stats();
  CHECK(st.records_written == threads * per);
  // Every commit was acknowledged after a sync, and syncs were shared.
  CHECK(st.syncs >= 1);
  CHECK(st.syncs < st.records_written);
}

TEST_CASE("store.file.async_commit_completes_after_write") {
  test::temp_dir dir("file");
  auto s = open_ok(dir.path());
  std::vector<std::future<result<commit_result>>> fs;
  for (int i = 0; i < 50; ++i) fs.push_back(s->async_commit(txn().put(fmt::format("a{}", i), "v"), boost::asio::use_future));
  for (auto& f : fs) CHECK(f.get().value().succeeded);
  s.reset();
  auto again = open_ok(dir.path());
  CHECK(again->range("a").value().kvs.size() == 50);
}

TEST_CASE("store.file.async_commits_from_many_threads_all_complete") {
  // Waiters can queue out of ticket order when threads race; each must still
  // complete once its record is durable.
  test::temp_dir dir("file");
  auto s = open_ok(dir.path());
  constexpr int threads = 4, per = 400;
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&, t] {
      std::vector<std::future<result<commit_result>>> fs;
      for (int i = 0; i < per; ++i)
        fs.push_back(s->async_commit(txn().put(fmt::format("m{}-{}", t, i), "v"), boost::asio::use_future));
      for (auto& f : fs) {
        auto r = f.get();
        ok += r && r->succeeded ? 1 : 0;
      }
    });
  for (auto& t : ts) t.join();
  CHECK(ok == threads * per);
  CHECK(s->range("m").value().kvs.size() == threads * per);
}

// A CRC-32C for building test records; the library's own is internal.
std::uint32_t test_crc32c(const std::string& s) {
  std::uint32_t crc = ~0u;
  for (unsigned char c : s) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

TEST_CASE("store.file.expiry_reaches_watchers_without_other_traffic") {
  test::temp_dir dir("file");
  auto clk = std::make_shared<virtual_clock>();
  auto s = open_ok(dir.path(), {.clock = clk});
  auto lease = s->grant(5s).value();
  REQUIRE(s->commit(txn().put("claim/a", "w", lease)).value().succeeded);
  auto w = s->watch("claim/", s->current_revision().value() + 1).value();
  auto next = w->async_next(boost::asio::use_future);
  clk->advance(6s);  // the store's own thread notices within its tick
  REQUIRE(next.wait_for(5s) == std::future_status::ready);
  auto ev = next.get().value();
  REQUIRE(ev.size() == 1);
  CHECK(ev[0].type == watch_event::kind::erase);
}

TEST_CASE("store.file.zero_filled_tail_after_power_loss_is_torn") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    fill(*s, 10);
  }
  auto seg = files(dir.path(), "wal-").back();
  write(seg, read(seg) + std::string(4096, '\0'));  // the size reached the disk, the data did not
  auto s = open_ok(dir.path());
  REQUIRE(s->recovery().torn_tail);
  CHECK(s->current_revision().value() == 10);
  REQUIRE(s->commit(txn().put("after", "x")).value().succeeded);
}

// Damage a crash cannot make is an error naming the file, whatever shape it
// takes; nothing is cut, and nothing is silently older or empty.
TEST_CASE("store.file.damage_is_an_error_never_an_older_store") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path(), {.segment_bytes = 4096, .snapshot_min_bytes = 1u << 30});
    fill(*s, 400);
  }
  auto segs = files(dir.path(), "wal-");
  REQUIRE(segs.size() >= 3);
  auto refused = [&](std::string_view names) {
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::corrupt);
    CHECK_MESSAGE(r.error().message().find(names) != std::string::npos, r.error().message());
    return r.error().message();
  };
  SUBCASE("the newest segment cut to half, at a record boundary or not") {
    auto data = read(segs.back());
    auto before = data.substr(0, data.size() / 2);
    write(segs.back(), before);
    refused(segs.back().filename().string());
    CHECK(read(segs.back()) == before);  // not "repaired" by cutting it further
  }
  SUBCASE("the only segment deleted") {
    test::temp_dir one("file-one");
    {
      auto s = open_ok(one.path());
      fill(*s, 5);
    }
    auto only = files(one.path(), "wal-");
    REQUIRE(only.size() == 1);
    fs::remove(only[0]);
    auto r = file_store::open(one.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().message().find("missing") != std::string::npos);
    CHECK(r.error().message().find(only[0].filename().string()) != std::string::npos);
  }
  SUBCASE("two closed segments swapped") {
    auto a = read(segs[0]), b = read(segs[1]);
    write(segs[0], b);
    write(segs[1], a);
    refused("wal-");
  }
  SUBCASE("a closed segment replaced by another store's, same name and size") {
    test::temp_dir other("file-other");
    {
      auto s = open_ok(other.path(), {.segment_bytes = 4096, .snapshot_min_bytes = 1u << 30});
      fill(*s, 400, "x");
    }
    auto theirs = read(files(other.path(), "wal-")[0]);
    auto mine = read(segs[0]);
    theirs.resize(mine.size(), '\0');
    write(segs[0], theirs);
    refused(segs[0].filename().string());
  }
  SUBCASE("a segment that is not the store's, after its newest") {
    write(dir.path() / fmt::format("wal-{:016x}.log", segs.size() + 5), read(segs[0]));
    auto r = file_store::open(dir.path());
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == error::corrupt);
  }
  SUBCASE("a damaged MANIFEST") {
    write(dir.path() / "MANIFEST", "{not json");
    refused("MANIFEST");
  }
}

// A store from before MANIFEST existed opens as found and gets one; from
// then on, its segments are checked.
TEST_CASE("store.file.a_store_without_a_manifest_gets_one") {
  test::temp_dir dir("file");
  {
    auto s = open_ok(dir.path());
    fill(*s, 10);
  }
  fs::remove(dir.path() / "MANIFEST");
  {
    auto s = open_ok(dir.path());
    REQUIRE(s->recovery().manifest_created);
    CHECK(s->current_revision().value() == 10);
    CHECK(fs::exists(dir.path() / "MANIFEST"));
  }
  auto s = open_ok(dir.path());
  CHECK_FALSE(s->recovery().manifest_created);
  CHECK(s->id().size() == 16);
}

// Read-only: a store is read as it is and nothing on disk changes, not even
// a torn tail; it works beside the process that runs the store; a missing
// store is an error, not an empty one.
TEST_CASE("store.file.read_only_changes_nothing") {
  test::temp_dir dir("file");
  auto snapshot_dir = [&] {
    std::map<std::string, std::string> out;
    for (auto& e : fs::directory_iterator(dir.path())) out[e.path().filename().string()] = read(e.path());
    return out;
  };
  {
    auto s = open_ok(dir.path());
    manifest_at_open crash(dir.path());
    fill(*s, 20);
    s->close();
    crash.put_back();
  }
  auto seg = files(dir.path(), "wal-").back();
  auto data = read(seg);
  write(seg, data.substr(0, data.size() - 5));  // a crash's torn tail
  auto before = snapshot_dir();
  {
    auto ro = open_ok(dir.path(), {.read_only = true});
    CHECK(ro->recovery().torn_tail);
    CHECK(ro->current_revision().value() == 19);
    CHECK(ro->get("k00018").value()->value == "value-18");
    auto c = ro->commit(txn().put("x", "y"));
    REQUIRE_FALSE(c.has_value());
    CHECK(c.error() == error::permission_denied);
    CHECK(c.error().message().find("read-only") != std::string::npos);
    CHECK_FALSE(ro->grant(10s).has_value());
  }
  CHECK(snapshot_dir() == before);
  {  // beside a writer that holds it
    auto w = open_ok(dir.path());
    REQUIRE(w->commit(txn().put("live", "1")).value().succeeded);
    auto ro = open_ok(dir.path(), {.read_only = true});
    CHECK(ro->get("live").value()->value == "1");
  }
  auto gone = file_store::open(dir.path() / "nope", {.read_only = true});
  REQUIRE_FALSE(gone.has_value());
  CHECK(gone.error() == error::not_found);
  CHECK_FALSE(fs::exists(dir.path() / "nope"));
  test::temp_dir empty("file-empty");
  auto none = file_store::open(empty.path(), {.read_only = true});
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error() == error::not_found);
}

// Segments closed by a later process than the one that began them (reopened
// mid-segment, a torn tail cut first) carry the right checksum: the store
// opens again and again, through several closes, without a false alarm.
TEST_CASE("store.file.segments_continued_after_a_reopen_close_with_their_true_checksum") {
  test::temp_dir dir("file");
  for (int round = 0; round < 6; ++round) {
    auto s = open_ok(dir.path(), {.segment_bytes = 4096, .snapshot_min_bytes = 1u << 30});
    manifest_at_open crash(dir.path());
    fill(*s, 80, fmt::format("r{}-", round));
    if (round % 2 == 1) {  // a crash with a torn tail
      s->close();
      crash.put_back();
      auto seg = files(dir.path(), "wal-").back();
      auto data = read(seg);
      if (data.size() > 40) write(seg, data.substr(0, data.size() - 3));
    }
  }
  auto s = open_ok(dir.path(), {.segment_bytes = 4096, .snapshot_min_bytes = 1u << 30});
  CHECK(files(dir.path(), "wal-").size() >= 4);
  CHECK(s->get("r0-00000").value().has_value());
  CHECK(s->get("r5-00028").value()->value == "value-78");
  CHECK(s->get("r5-00029").value()->value == "value-29");  // its last commit (79) was torn
  CHECK(s->get("r4-00029").value()->value == "value-79");
}
