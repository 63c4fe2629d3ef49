#include <agentcore/board/archive.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <mutex>
#include <random>

namespace agentcore::board {

std::string title_key(std::string_view title) {
  std::string out;
  bool space = false;
  for (char c : title) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

namespace {

// --- SQLite ---

class sqlite_archive final : public task_archive {
public:
  sqlite_archive(std::filesystem::path file, sqlite3* db) : file_(std::move(file)), db_(db) {}
  ~sqlite_archive() override {
    if (db_) ::sqlite3_close_v2(db_);
  }

  static result<std::shared_ptr<task_archive>> open(const std::filesystem::path& file, sqlite_archive_options o) {
    std::error_code ec;
    if (o.read_only && !std::filesystem::exists(file, ec))
      return std::shared_ptr<task_archive>(std::make_shared<sqlite_archive>(file, nullptr));  // nothing archived yet
    if (!o.read_only && file.has_parent_path()) {
      std::filesystem::create_directories(file.parent_path(), ec);
      if (ec)
        return fail(error::io_error, fmt::format("board: cannot create the directory of the archive '{}': {}",
                                                 file.string(), ec.message()));
    }
    sqlite3* db = nullptr;
    int flags = (o.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_FULLMUTEX;
    int rc = ::sqlite3_open_v2(file.c_str(), &db, flags, nullptr);
    auto a = std::make_shared<sqlite_archive>(file, db);  // closes db on every path
    if (rc != SQLITE_OK) return a->error("open", rc);
    ::sqlite3_busy_timeout(db, 10'000);
    if (!o.read_only) {
      // WAL with a sync at every commit: an archived task is on disk before
      // the board erases it from the store.
      for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                              "CREATE TABLE IF NOT EXISTS tasks(id TEXT PRIMARY KEY, title_key TEXT NOT NULL, "
                              "state TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL)",
                              "CREATE INDEX IF NOT EXISTS tasks_by_title ON tasks(title_key, state)",
                              "CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks(seq)",
                              "CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks(state, seq)",
                              "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                              "INSERT OR IGNORE INTO meta(key, value) VALUES('identity', lower(hex(randomblob(16))))"})
        if (auto e = a->exec(sql)) return e;
    }
    // A file that is not an archive says so now, not at the first lookup.
    if (auto e = a->exec("SELECT id, title_key, state, seq, body FROM tasks LIMIT 0")) return e;
    return std::shared_ptr<task_archive>(std::move(a));
  }

  result<void> put(const std::vector<task>& tasks) override {
    if (tasks.empty()) return {};
    if (!db_) return fail(error::invalid_argument, fmt::format("board: the archive '{}' is open read-only", file_.string()));
    std::lock_guard lock(mu_);
    if (auto e = exec("BEGIN IMMEDIATE")) return e;
    auto rollback = [&](error_info e) {
      (void)exec("ROLLBACK");
      return e;
    };
    auto next = scalar("SELECT COALESCE(MAX(seq), 0) FROM tasks");
    if (!next) return rollback(next.error());
    std::int64_t seq = *next;
    statement st(db_, "INSERT OR REPLACE INTO tasks(id, title_key, state, seq, body) VALUES(?, ?, ?, ?, ?)");
    if (!st) return rollback(error("prepare", st.rc));
    for (const auto& t : tasks) {
      std::string body = to_json(t), key = title_key(t.title), id = t.id.str();
      std::string_view state = to_string(t.state);
      ::sqlite3_reset(st.s);
      ::sqlite3_bind_text(st.s, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
      ::sqlite3_bind_text(st.s, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
      ::sqlite3_bind_text(st.s, 3, state.data(), static_cast<int>(state.size()), SQLITE_TRANSIENT);
      ::sqlite3_bind_int64(st.s, 4, ++seq);
      ::sqlite3_bind_text(st.s, 5, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
      if (int rc = ::sqlite3_step(st.s); rc != SQLITE_DONE) return rollback(error("write", rc));
    }
    st.finish();
    if (auto e = exec("COMMIT")) return rollback(e);
    return {};
  }

  result<std::optional<task>> get(const task_id& id) override {
    if (!db_) return std::optional<task>();
    std::lock_guard lock(mu_);
    auto r = query("SELECT body FROM tasks WHERE id = ?", {id.str()}, 1);
    if (!r) return r.error();
    if (r->empty()) return std::optional<task>();
    return std::optional<task>(std::move(r->front()));
  }

  result<std::optional<task>> find_title(std::string_view key, task_state state) override {
    if (!db_) return std::optional<task>();
    std::lock_guard lock(mu_);
    auto r = query("SELECT body FROM tasks WHERE title_key = ? AND state = ? LIMIT 1",
                   {std::string(key), std::string(to_string(state))}, 1);
    if (!r) return r.error();
    if (r->empty()) return std::optional<task>();
    return std::optional<task>(std::move(r->front()));
  }

  result<std::vector<task>> list(const archive_query& q) override {
    if (!db_) return std::vector<task>();
    std::lock_guard lock(mu_);
    std::string sql = "SELECT body FROM tasks";
    std::vector<std::string> args;
    if (q.state) {
      sql += " WHERE state = ?";
      args.emplace_back(to_string(*q.state));
    }
    sql += fmt::format(" ORDER BY seq DESC LIMIT {} OFFSET {}", q.limit, q.offset);
    return query(sql, args, q.limit);
  }

  result<std::size_t> count(std::optional<task_state> state) override {
    if (!db_) return std::size_t{0};
    std::lock_guard lock(mu_);
    result<std::int64_t> n = state ? scalar("SELECT COUNT(*) FROM tasks WHERE state = ?", std::string(to_string(*state)))
                                   : scalar("SELECT COUNT(*) FROM tasks");
    if (!n) return n.error();
    return static_cast<std::size_t>(*n);
  }

  result<void> remove(const task_id& id) override {
    if (!db_) return fail(error::invalid_argument, fmt::format("board: the archive '{}' is open read-only", file_.string()));
    std::lock_guard lock(mu_);
    statement st(db_, "DELETE FROM tasks WHERE id = ?");
    if (!st) return error("prepare", st.rc);
    std::string s = id.str();
    ::sqlite3_bind_text(st.s, 1, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    if (int rc = ::sqlite3_step(st.s); rc != SQLITE_DONE) return error("delete from", rc);
    return {};
  }

  std::string where() const override { return file_.string(); }

  result<std::string> identity() override {
    if (!db_) return std::string();
    std::lock_guard lock(mu_);
    statement st(db_, "SELECT value FROM meta WHERE key = 'identity'");
    if (!st) return error("prepare", st.rc);
    if (int rc = ::sqlite3_step(st.s); rc != SQLITE_ROW) return error("read the identity of", rc);
    auto* text = reinterpret_cast<const char*>(::sqlite3_column_text(st.s, 0));
    return std::string(text ? text : "");
  }

private:
  struct statement {
    sqlite3_stmt* s = nullptr;
    int rc = SQLITE_OK;
    statement(sqlite3* db, std::string_view sql) {
      rc = ::sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &s, nullptr);
    }
    ~statement() { finish(); }
    void finish() {
      if (s) ::sqlite3_finalize(s);
      s = nullptr;
    }
    explicit operator bool() const { return rc == SQLITE_OK && s; }
  };

  error_info error(std::string_view what, int rc) const {
    const char* msg = db_ ? ::sqlite3_errmsg(db_) : ::sqlite3_errstr(rc);
    auto code = rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? error::corrupt : error::io_error;
    return fail(code, fmt::format("board: archive '{}': {}: {} (SQLite {}); a damaged archive can be moved aside "
                                  "(its tasks are then no longer found)",
                                  file_.string(), what, msg, rc));
  }

  error_info exec(const char* sql) {
    char* msg = nullptr;
    int rc = ::sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
    if (msg) ::sqlite3_free(msg);
    if (rc != SQLITE_OK) return error(sql, rc);
    return {};
  }

  result<std::int64_t> scalar(const char* sql, std::optional<std::string> arg = std::nullopt) {
    statement st(db_, sql);
    if (!st) return error("prepare", st.rc);
    if (arg) ::sqlite3_bind_text(st.s, 1, arg->data(), static_cast<int>(arg->size()), SQLITE_TRANSIENT);
    if (int rc = ::sqlite3_step(st.s); rc != SQLITE_ROW) return error("read", rc);
    return ::sqlite3_column_int64(st.s, 0);
  }

  result<std::vector<task>> query(const std::string& sql, const std::vector<std::string>& args, std::size_t reserve) {
    statement st(db_, sql);
    if (!st) return error("prepare", st.rc);
    for (std::size_t i = 0; i < args.size(); ++i)
      ::sqlite3_bind_text(st.s, static_cast<int>(i + 1), args[i].data(), static_cast<int>(args[i].size()), SQLITE_TRANSIENT);
    std::vector<task> out;
    out.reserve(std::min<std::size_t>(reserve, 1000));
    for (;;) {
      int rc = ::sqlite3_step(st.s);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return error("read", rc);
      auto* text = reinterpret_cast<const char*>(::sqlite3_column_text(st.s, 0));
      auto n = static_cast<std::size_t>(::sqlite3_column_bytes(st.s, 0));
      auto t = task_from_json(std::string_view(text ? text : "", n));
      if (!t)
        return fail(error::corrupt, fmt::format("board: archive '{}': a stored task does not parse: {}", file_.string(),
                                                t.error().message()));
      out.push_back(std::move(*t));
    }
    return out;
  }

  std::filesystem::path file_;
  sqlite3* db_;
  std::mutex mu_;
};

// --- the store itself ---
//
//   <prefix>task/<id>                  {"seq": n, "task": {...}}
//   <prefix>title/<state>/<key>/<id>   ""   (the key cut to 200 bytes)

class store_archive final : public task_archive {
public:
  store_archive(store::store& s, std::string prefix) : s_(s), prefix_(std::move(prefix)) {}

  result<void> put(const std::vector<task>& tasks) override {
    if (tasks.empty()) return {};
    auto seq = static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
    // In batches a transaction can hold; each task with its title key, and
    // the title key of what it replaces gone.
    std::size_t at = 0;
    while (at < tasks.size()) {
      store::txn x;
      for (; at < tasks.size() && x.ops.size() + 3 <= store::max_txn_ops; ++at) {
        const auto& t = tasks[at];
        auto old = s_.get(task_key(t.id));
        if (!old) return old.error();
        if (*old)
          if (auto was = decode((*old)->value)) x.erase(title_index(*was));
        json::object v{{"seq", seq++}, {"task", to_json_value(t)}};
        x.put(task_key(t.id), json::serialize(v));
        x.put(title_index(t), "");
      }
      auto c = s_.commit(x);
      if (!c) return c.error();
    }
    return {};
  }

  result<std::optional<task>> get(const task_id& id) override {
    auto kv = s_.get(task_key(id));
    if (!kv) return kv.error();
    if (!*kv) return std::optional<task>();
    auto t = decode((*kv)->value);
    if (!t) return t.error();
    return std::optional<task>(std::move(*t));
  }

  result<std::optional<task>> find_title(std::string_view key, task_state state) override {
    auto r = s_.range(fmt::format("{}title/{}/{}/", prefix_, to_string(state), cut(key)), {.limit = 1});
    if (!r) return r.error();
    if (r->kvs.empty()) return std::optional<task>();
    auto& k = r->kvs.front().key;
    return get(task_id(k.substr(k.rfind('/') + 1)));
  }

  result<std::vector<task>> list(const archive_query& q) override {
    auto r = s_.range(prefix_ + "task/");
    if (!r) return r.error();
    std::vector<std::pair<std::int64_t, task>> all;
    for (const auto& kv : r->kvs) {
      auto p = json::parse(kv.value);
      auto t = decode(kv.value);
      if (!t) return t.error();
      if (q.state && t->state != *q.state) continue;
      all.emplace_back(p.as_object().at("seq").to_number<std::int64_t>(), std::move(*t));
    }
    std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    std::vector<task> out;
    for (std::size_t i = q.offset; i < all.size() && out.size() < q.limit; ++i) out.push_back(std::move(all[i].second));
    return out;
  }

  result<std::size_t> count(std::optional<task_state> state) override {
    if (state) {
      auto r = s_.range(fmt::format("{}title/{}/", prefix_, to_string(*state)));
      if (!r) return r.error();
      return r->kvs.size();
    }
    auto r = s_.range(prefix_ + "task/");
    if (!r) return r.error();
    return r->kvs.size();
  }

  result<void> remove(const task_id& id) override {
    auto kv = s_.get(task_key(id));
    if (!kv) return kv.error();
    if (!*kv) return {};
    store::txn x;
    x.erase(task_key(id));
    if (auto t = decode((*kv)->value)) x.erase(title_index(*t));
    auto c = s_.commit(x);
    if (!c) return c.error();
    return {};
  }

  std::string where() const override { return fmt::format("store prefix '{}'", prefix_); }

  result<std::string> identity() override {
    // Made with the first look; the store's own identity covers its loss.
    for (int i = 0; i < 100; ++i) {
      auto kv = s_.get(prefix_ + "identity");
      if (!kv) return kv.error();
      if (*kv) return (*kv)->value;
      std::random_device rd;
      auto id = fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
      auto c = s_.commit(store::txn().if_absent(prefix_ + "identity").put(prefix_ + "identity", id));
      if (!c) return c.error();
    }
    return fail(error::too_many_attempts, fmt::format("board: archive at {}: no identity could be made", where()));
  }

private:
  std::string task_key(const task_id& id) const { return prefix_ + "task/" + id.str(); }
  static std::string cut(std::string_view key) {
    std::string k(key.substr(0, 200));
    std::replace(k.begin(), k.end(), '/', '_');  // a slash would look like another level
    return k;
  }
  std::string title_index(const task& t) const {
    return fmt::format("{}title/{}/{}/{}", prefix_, to_string(t.state), cut(title_key(t.title)), t.id.str());
  }
  result<task> decode(std::string_view value) const {
    boost::system::error_code ec;
    auto v = json::parse(value, ec);
    if (ec || !v.is_object() || !v.as_object().contains("task"))
      return fail(error::corrupt, fmt::format("board: archive at {}: a stored task is not an archive record", where()));
    return task_from_json(v.as_object().at("task"));
  }

  store::store& s_;
  std::string prefix_;
};

}  // namespace

result<std::shared_ptr<task_archive>> open_sqlite_archive(const std::filesystem::path& file,
                                                          sqlite_archive_options options) {
  return sqlite_archive::open(file, options);
}

std::shared_ptr<task_archive> make_store_archive(store::store& s, std::string prefix) {
  return std::make_shared<store_archive>(s, std::move(prefix));
}

}  // namespace agentcore::board
