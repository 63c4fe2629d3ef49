// The `store` area of agentcore-bench: how fast the stores commit, how the
// durable store compares with SQLite doing the same work, how often board
// claimers collide, and how long a reopen takes.
//
// Every timed loop is the optimistic read-compare-write a real caller does (get,
// then commit with a compare on the version it read), not a blind put, so the
// figures include the read and the compare. Each thread works on its own keys:
// we measure the store's commit path, not conflicts between writers (claims
// measure those).
#include "harness.hpp"

#include <agentcore/board/task_board.hpp>
#include <agentcore/store/file_store.hpp>
#include <agentcore/store/memory_store.hpp>

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace agentcore::bench {

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// About the size of a small task's JSON; the same bytes go to every backend.
const std::string payload(100, 'v');

// The loop body every store figure shares: read a key, commit a new value on
// the condition that nobody changed it since. Keys are taken round-robin.
auto read_compare_write(store::store& s, std::vector<std::string> keys) {
  return [&s, keys = std::move(keys), i = std::size_t{0}]() mutable {
    const std::string& k = keys[i++ % keys.size()];
    auto kv = check(s.get(k), "store get");
    std::int64_t version = kv ? kv->version : 0;
    return check(s.commit(store::txn().if_version(k, version).put(k, payload)), "store commit").succeeded;
  };
}

void preload(store::store& s, const std::vector<std::string>& keys) {
  for (std::size_t i = 0; i < keys.size(); i += store::max_txn_ops) {
    store::txn t;
    for (std::size_t j = i; j < std::min(keys.size(), i + store::max_txn_ops); ++j) t.put(keys[j], payload);
    check(s.commit(t), "store preload");
  }
}

// ---- SQLite ------------------------------------------------------------------

struct sqlite_conn {
  sqlite3* db = nullptr;
  explicit sqlite_conn(const fs::path& file) {
    int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    try {
      if (rc != SQLITE_OK) fail(rc, fmt::format("open '{}'", file.string()));
      // First: even the PRAGMA below may wait for a lock while other
      // connections open the same WAL database.
      sqlite3_busy_timeout(db, 10'000);
      // synchronous is per connection, so every connection sets it; FULL makes
      // each WAL commit fsync, the durability file_store's default gives.
      exec("PRAGMA synchronous=FULL");
    } catch (...) {
      sqlite3_close_v2(db);  // the destructor does not run for a constructor that throws
      throw;
    }
  }
  ~sqlite_conn() { sqlite3_close_v2(db); }
  sqlite_conn(const sqlite_conn&) = delete;
  sqlite_conn& operator=(const sqlite_conn&) = delete;

  [[noreturn]] void fail(int rc, std::string_view what) const {
    throw failure(fmt::format("sqlite: {} failed: {} (code {})", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), rc));
  }
  void exec(const char* sql) {
    if (int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr); rc != SQLITE_OK) fail(rc, sql);
  }
  sqlite3_stmt* prepare(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr); rc != SQLITE_OK)
      fail(rc, sql);
    return st;
  }
  // Steps a statement expecting `want`, then resets it for the next use.
  void step(sqlite3_stmt* st, int want) {
    int rc = sqlite3_step(st);
    if (rc != want) {
      sqlite3_reset(st);
      fail(rc, sqlite3_sql(st));
    }
    if (want == SQLITE_DONE) sqlite3_reset(st);
  }
};

// One thread's SQLite loop: the same read-compare-write as the stores, in one
// BEGIN IMMEDIATE transaction (a deferred one would fail with SQLITE_BUSY on
// the read-to-write upgrade instead of waiting for the lock).
class sqlite_worker {
public:
  sqlite_worker(const fs::path& file, std::vector<std::string> keys) : conn_(file), keys_(std::move(keys)) {
    begin_ = conn_.prepare("BEGIN IMMEDIATE");
    select_ = conn_.prepare("SELECT value, version FROM kv WHERE key=?1");
    update_ = conn_.prepare("UPDATE kv SET value=?1, version=version+1 WHERE key=?2 AND version=?3");
    commit_ = conn_.prepare("COMMIT");
  }
  ~sqlite_worker() {
    for (auto* st : {begin_, select_, update_, commit_}) sqlite3_finalize(st);
  }
  sqlite_worker(const sqlite_worker&) = delete;
  sqlite_worker& operator=(const sqlite_worker&) = delete;

  bool operator()() {
    const std::string& k = keys_[i_++ % keys_.size()];
    int rc = sqlite3_step(begin_);
    sqlite3_reset(begin_);
    // busy_timeout ran out before this connection got the write lock: SQLite's
    // answer under contention, which an application meets by trying again.
    if (rc == SQLITE_BUSY) return false;
    if (rc != SQLITE_DONE) conn_.fail(rc, "BEGIN IMMEDIATE");
    sqlite3_bind_text(select_, 1, k.data(), static_cast<int>(k.size()), SQLITE_STATIC);
    conn_.step(select_, SQLITE_ROW);
    sqlite3_int64 version = sqlite3_column_int64(select_, 1);
    sqlite3_reset(select_);
    sqlite3_bind_blob(update_, 1, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
    sqlite3_bind_text(update_, 2, k.data(), static_cast<int>(k.size()), SQLITE_STATIC);
    sqlite3_bind_int64(update_, 3, version);
    conn_.step(update_, SQLITE_DONE);
    bool changed = sqlite3_changes(conn_.db) == 1;
    conn_.step(commit_, SQLITE_DONE);
    return changed;
  }

private:
  sqlite_conn conn_;
  std::vector<std::string> keys_;
  std::size_t i_ = 0;
  sqlite3_stmt *begin_ = nullptr, *select_ = nullptr, *update_ = nullptr, *commit_ = nullptr;
};

// ---- the figures ---------------------------------------------------------------

constexpr std::size_t keys_per_thread = 16;

double memory_commits(std::chrono::milliseconds duration) {
  auto s = store::memory_store::create();
  auto keys = key_names("k/", 1000);
  preload(*s, keys);
  return commits_per_second(1, duration, [&](int) { return read_compare_write(*s, keys); });
}

struct file_result {
  double rate = 0;
  double commits_per_sync = 0;
};

file_result file_commits(const fs::path& dir, int threads, std::chrono::milliseconds duration) {
  fs::remove_all(dir);
  auto s = check(store::file_store::open(dir), "file_store open");
  std::vector<std::vector<std::string>> keys;
  for (int t = 0; t < threads; ++t) {
    keys.push_back(key_names(fmt::format("t{}/k", t), keys_per_thread));
    preload(*s, keys.back());
  }
  auto before = s->stats();
  file_result out;
  out.rate = commits_per_second(threads, duration, [&](int t) { return read_compare_write(*s, keys[t]); });
  auto after = s->stats();
  if (after.syncs > before.syncs)
    out.commits_per_sync = static_cast<double>(after.records_written - before.records_written) /
                           static_cast<double>(after.syncs - before.syncs);
  s->close();
  s.reset();
  fs::remove_all(dir);
  return out;
}

double sqlite_commits(const fs::path& dir, int threads, std::chrono::milliseconds duration) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::path file = dir / "kv.db";
  std::vector<std::vector<std::string>> keys;
  {
    sqlite_conn setup(file);
    setup.exec("PRAGMA journal_mode=WAL");  // persistent: every later connection uses WAL
    // WITHOUT ROWID keeps rows in the primary-key b-tree: one tree per update, as a KV store has.
    setup.exec("CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL) WITHOUT ROWID");
    setup.exec("BEGIN");
    sqlite3_stmt* ins = setup.prepare("INSERT INTO kv(key, value, version) VALUES(?1, ?2, 1)");
    for (int t = 0; t < threads; ++t) {
      keys.push_back(key_names(fmt::format("t{}/k", t), keys_per_thread));
      for (const auto& k : keys.back()) {
        sqlite3_bind_text(ins, 1, k.data(), static_cast<int>(k.size()), SQLITE_STATIC);
        sqlite3_bind_blob(ins, 2, payload.data(), static_cast<int>(payload.size()), SQLITE_STATIC);
        setup.step(ins, SQLITE_DONE);
      }
    }
    sqlite3_finalize(ins);
    setup.exec("COMMIT");
  }
  double rate = commits_per_second(threads, duration,
                                   [&](int t) {
                                     return [w = std::make_unique<sqlite_worker>(file, keys[t])] { return (*w)(); };
                                   });
  fs::remove_all(dir);
  return rate;
}

struct claim_result {
  double conflicts_per_claim = 0;
  double claims_per_s = 0;
  double all_done_s = 0;  ///< until every claimer had seen the board empty
};

claim_result board_claims(std::size_t tasks, int claimers) {
  auto s = store::memory_store::create();
  board::task_board b(*s);
  for (std::size_t i = 0; i < tasks; ++i)
    check(b.propose(board::task{.id = task_id{fmt::format("t{}", i)}, .title = "x"}), "board propose");

  auto run = claim_until_empty(b, *s, claimers);
  auto st = b.stats();
  // A lost or doubled claim is a correctness bug, not a slow run: no figure
  // from this run means anything then.
  if (run.claims != tasks || st.claims != tasks)
    throw failure(fmt::format("board claims: {} claimers claimed {} tasks (board counted {}) out of {} proposed; "
                              "every task must be claimed exactly once",
                              claimers, run.claims, st.claims, tasks));
  return {static_cast<double>(st.claim_conflicts) / static_cast<double>(st.claims),
          static_cast<double>(run.claims) / run.to_last_claim_s, run.all_done_s};
}

struct reopen_result {
  double seconds = 0;
  std::uint64_t records = 0;
};

// Writes `commits` blind puts over 1000 keys (16 threads: with fsync none a
// commit still waits for the writer thread's write(), and 16 waiting threads
// share each write where one thread would pay a wake-up per commit), then
// times opening the directory with default options.
reopen_result reopen(const fs::path& dir, std::uint64_t commits) {
  fs::remove_all(dir);
  constexpr int writers = 16;
  {
    auto s = check(store::file_store::open(dir, {.fsync = store::fsync_policy::none}), "file_store open");
    auto keys = key_names("k/", 1000);
    first_error err;
    std::vector<std::thread> pool;
    for (int t = 0; t < writers; ++t) {
      pool.emplace_back([&, t] {
        try {
          std::uint64_t n = commits / writers + (static_cast<std::uint64_t>(t) < commits % writers);
          for (std::uint64_t i = 0; i < n && !err.stop.load(std::memory_order_relaxed); ++i) {
            const std::string& k = keys[(t + i * writers) % keys.size()];
            check(s->commit(store::txn().put(k, payload)), "store commit");
          }
        } catch (const std::exception& e) {
          err.set(e.what());
        }
      });
    }
    for (auto& th : pool) th.join();
    err.rethrow();
    s->close();
  }
  auto t0 = steady::now();
  auto s = check(store::file_store::open(dir), "file_store reopen");
  reopen_result out{seconds_since(t0), s->recovery().records};
  const auto& r = s->recovery();
  fmt::print(stderr, "  reopen: snapshot '{}', {} segment(s), {} records replayed, revision {}\n", r.snapshot,
             r.segments, r.records, r.rev);
  s->close();
  s.reset();
  fs::remove_all(dir);
  return out;
}

}  // namespace

std::vector<figure> run_store(const run_options& o) {
  const std::chrono::milliseconds duration = o.quick ? 500ms : 2000ms;
  const std::uint64_t reopen_commits = o.quick ? 100'000 : 1'000'000;
  const auto at_least = [](double v) { return bound{true, v}; };
  const auto at_most = [](double v) { return bound{false, v}; };
  std::vector<figure> out;
  // Progress on stderr, with how long each phase took, so a slow phase shows.
  auto phase = steady::now();
  auto progress = [&phase](std::string_view what, double v) {
    fmt::print(stderr, "  {:<34} {:>16.3f}   ({:.1f} s)\n", what, v, seconds_since(phase));
    phase = steady::now();
  };

  double mem = memory_commits(duration);
  progress("memory_commits_per_s", mem);
  out.push_back({"memory_commits_per_s", mem, 0, at_least(2'000'000)});

  file_result c64;
  for (int threads : {1, 16, 64}) {
    auto r = file_commits(o.dir / fmt::format("file-c{}", threads), threads, duration);
    auto name = fmt::format("file_commits_per_s_c{}", threads);
    progress(name, r.rate);
    out.push_back({name, r.rate, 0, threads == 64 ? std::optional(at_least(100'000)) : std::nullopt});
    if (threads == 64) c64 = r;
  }
  // How many commits shared each fsync: the group-commit factor behind c64.
  out.push_back({"file_commits_per_sync_c64", c64.commits_per_sync, 1, std::nullopt});

  double lite = sqlite_commits(o.dir / "sqlite", 64, duration);
  progress("sqlite_full_commits_per_s_c64", lite);
  out.push_back({"sqlite_full_commits_per_s_c64", lite, 0, std::nullopt});
  out.push_back({"file_vs_sqlite_ratio", c64.rate / lite, 2, at_least(10),
                 std::pair{"file_commits_per_s_c64", "sqlite_full_commits_per_s_c64"}});

  auto claims = board_claims(10'000, 256);
  progress("claim_conflicts_per_claim", claims.conflicts_per_claim);
  out.push_back({"claim_conflicts_per_claim", claims.conflicts_per_claim, 4, at_most(0.1)});
  out.push_back({"claims_per_s", claims.claims_per_s, 0, std::nullopt});
  out.push_back({"claims_all_done_s", claims.all_done_s, 3, std::nullopt});

  auto ro = reopen(o.dir / "reopen", reopen_commits);
  double per_million = ro.seconds * (1e6 / static_cast<double>(reopen_commits));
  progress("reopen_s_per_million_commits", per_million);
  out.push_back({"reopen_s_per_million_commits", per_million, 3, at_most(2)});
  out.push_back({"reopen_records", static_cast<double>(ro.records), 0, std::nullopt});
  return out;
}

}  // namespace agentcore::bench
