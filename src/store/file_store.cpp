#include <agentcore/store/file_store.hpp>

#include <agentcore/core/json.hpp>

#include "detail/complete.hpp"
#include "store/crc32c.hpp"
#include "store/engine.hpp"
#include "store/wal.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <random>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace agentcore::store {

namespace fs = std::filesystem;
using detail::engine;

namespace {

error_info os_error(std::string_view what, const fs::path& file, int err = errno) {
  return fail(error::io_error, fmt::format("store: {} '{}' failed: {}", what, file.string(), std::strerror(err)));
}

error_info write_all(int fd, const char* p, std::size_t n, const fs::path& file) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return os_error("write to", file);
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

error_info sync_fd(int fd, const fs::path& file) {
  if (::fdatasync(fd) != 0) return os_error("fdatasync of", file);
  return {};
}

error_info sync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return os_error("open directory", dir);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return os_error("fsync of directory", dir, err);
  return {};
}

result<std::string> read_file(const fs::path& file) {
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return os_error("open", file);
  std::string data;
  struct stat st {};
  if (::fstat(fd, &st) == 0) data.reserve(static_cast<std::size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return os_error("read of", file, err);
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return data;
}

// MANIFEST: what the store has. JSON: {"format":1, "store":"<id>",
// "first":<oldest segment needed>, "sealed":[[seq, bytes, crc32c], ...],
// "active":<seq>, "durable":<bytes of the active segment known on disk>}.
struct manifest {
  std::string id;
  std::uint64_t first = 1;
  struct segment {
    std::uint64_t seq = 0, bytes = 0;
    std::uint32_t crc = 0;
  };
  std::vector<segment> sealed;
  std::uint64_t active = 1, durable = 0;
};

std::string to_text(const manifest& m) {
  json::array sealed;
  for (const auto& s : m.sealed) sealed.push_back(json::array{s.seq, s.bytes, s.crc});
  return json::serialize(json::object{{"format", 1},        {"store", m.id},          {"first", m.first},
                                      {"sealed", sealed},   {"active", m.active},     {"durable", m.durable}}) +
         "\n";
}

result<manifest> parse_manifest(std::string_view text, const fs::path& file) {
  auto bad = [&](std::string_view why) {
    return fail(error::corrupt, fmt::format("store: '{}' is damaged ({}); it says which log segments the store has: "
                                            "restore it from a backup",
                                            file.string(), why));
  };
  auto v = parse_json(text);
  if (!v || !v->is_object()) return bad("not a JSON object");
  const auto& o = v->as_object();
  auto num = [&](std::string_view k) -> std::optional<std::uint64_t> {
    auto* f = o.if_contains(k);
    if (!f) return std::nullopt;
    if (f->is_uint64()) return f->get_uint64();
    if (f->is_int64() && f->get_int64() >= 0) return static_cast<std::uint64_t>(f->get_int64());
    return std::nullopt;
  };
  auto format = num("format");
  if (!format) return bad("no format");
  if (*format != 1)
    return fail(error::unsupported_format,
                fmt::format("store: '{}' has format {}, newer than this agentcore reads (1); use a newer agentcore",
                            file.string(), *format));
  manifest m;
  auto* id = o.if_contains("store");
  if (!id || !id->is_string() || id->get_string().empty()) return bad("no store id");
  m.id = std::string(id->get_string());
  auto first = num("first"), active = num("active"), durable = num("durable");
  if (!first || !active || !durable) return bad("'first', 'active' or 'durable' missing");
  m.first = *first, m.active = *active, m.durable = *durable;
  auto* sealed = o.if_contains("sealed");
  if (!sealed || !sealed->is_array()) return bad("'sealed' missing");
  for (const auto& e : sealed->get_array()) {
    if (!e.is_array() || e.get_array().size() != 3) return bad("a 'sealed' entry is not [seq, bytes, crc]");
    manifest::segment s;
    try {
      s.seq = e.get_array()[0].to_number<std::uint64_t>();
      s.bytes = e.get_array()[1].to_number<std::uint64_t>();
      s.crc = e.get_array()[2].to_number<std::uint32_t>();
    } catch (const std::exception&) {
      return bad("a 'sealed' entry has a number out of range");
    }
    m.sealed.push_back(s);
  }
  return m;
}

std::string new_store_id() {
  std::random_device rd;
  std::uint64_t x = (std::uint64_t(rd()) << 32) ^ rd() ^ static_cast<std::uint64_t>(::getpid());
  return fmt::format("{:016x}", x);
}

}  // namespace

class file_store::impl final : public detail::journal {
public:
  impl(fs::path dir, file_store_options options) : dir_(std::move(dir)), options_(std::move(options)) {
    if (!options_.clock) options_.clock = default_clock();
    if (options_.segment_bytes < 4096) options_.segment_bytes = 4096;
    engine_ = std::make_shared<engine>(detail::engine_options{options_.clock, options_.history_limit}, this);
  }

  ~impl() override { shutdown(fail(error::closed, fmt::format("store: '{}' was closed", dir_.string()))); }

  result<void> open() {
    std::error_code ec;
    if (options_.read_only) {
      if (!fs::is_directory(dir_, ec))
        return fail(error::not_found, fmt::format("store: there is no store at '{}' (no such directory); check the path",
                                                  dir_.string()));
      if (auto e = recover()) return e;
      return {};
    }
    fs::create_directories(dir_, ec);
    if (ec) return fail(error::io_error, fmt::format("store: cannot create directory '{}': {}", dir_.string(), ec.message()));
    if (auto e = lock()) return e;
    if (auto e = recover()) return e;
    writer_ = std::thread([this] { run(); });
    return {};
  }

  const std::string& store_id() const { return manifest_.id; }

  error_info refuse_if_read_only(std::string_view what) const {
    if (!options_.read_only) return {};
    return fail(error::permission_denied, fmt::format("store: '{}' is open read-only: cannot {}; open it without "
                                                      "read_only to change it",
                                                      dir_.string(), what));
  }

  void shutdown(error_info reason) {
    {
      std::lock_guard lk(mu_);
      if (stopped_ || stop_) return;  // a second close() waits for nothing: the first one stops it
      stop_ = true;
    }
    work_cv_.notify_all();
    if (writer_.joinable()) writer_.join();
    engine_->close(std::move(reason));
    std::lock_guard lk(mu_);
    stopped_ = true;
    broken_ = true;
    wake_waiters();
    durable_cv_.notify_all();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }

  // --- journal: called with the engine's lock held, which also guards the
  // pending buffer: a commit takes one lock, not two.
  std::uint64_t append_txn(revision rev, const std::vector<op>& ops) override {
    std::size_t before = pending_.size();
    detail::encode_txn(pending_, rev, ops);
    return appended(before);
  }
  std::uint64_t append_grant(lease_id id, std::int64_t ttl) override {
    std::size_t before = pending_.size();
    detail::encode_grant(pending_, id, ttl);
    return appended(before);
  }
  std::uint64_t append_revoke(lease_id id, revision rev) override {
    std::size_t before = pending_.size();
    detail::encode_revoke(pending_, id, rev);
    return appended(before);
  }
  void after_append(const engine& e) override {
    if (segment_fill_ < options_.segment_bytes && !force_snapshot_) return;
    boundary b{pending_.size(), std::nullopt};
    std::size_t due = std::max(options_.snapshot_min_bytes, 2 * e.live_bytes_locked());
    if (force_snapshot_ || since_snapshot_ >= due) {
      ++snapshots_planned_;
      b.image = e.image_locked();
      since_snapshot_ = 0;
      force_snapshot_ = false;
    }
    segment_fill_ = detail::file_header_size;
    boundaries_.push_back(std::move(b));
    boundary_seq_.fetch_add(1);
    if (writer_waiting_.load()) {
      std::lock_guard lk(mu_);
      work_cv_.notify_one();
    }
  }

  /// Waits until the record with `ticket` is on disk (per the fsync policy).
  error_info wait(std::uint64_t ticket) {
    if (ticket == 0) return {};
    // Waiters block on an atomic (a futex), not on mu_: waking dozens of
    // committers after each sync must not make them queue for the mutex
    // the next commits need. There are two, one per parity of the batch
    // number, so that the end of a sync wakes the committers it made
    // durable, not also those waiting for the next one. A committer whose
    // record the writer has not taken yet waits for the next batch; the
    // writer publishes a batch (taken_mark_) before writing it, so a
    // committer never waits for a batch that has come and gone (a stale
    // read costs at most one early wake, after which it looks again).
    for (;;) {
      std::uint64_t mark = taken_mark_.load(std::memory_order_acquire);
      std::uint64_t parity = (mark & 1) ^ (ticket > (mark >> 1) ? 1 : 0);
      auto& slot = wake_[parity];
      auto epoch = slot.load(std::memory_order_acquire);
      if (durable_atomic_.load(std::memory_order_acquire) >= ticket) return {};
      if (broken_.load(std::memory_order_acquire)) {
        std::lock_guard lk(mu_);
        if (durable_ >= ticket) return {};
        return failed_ ? failed_ : fail(error::closed, "store: closed before the commit was written");
      }
      slot.wait(epoch, std::memory_order_acquire);
    }
  }

  void async_commit(txn t, asio::any_completion_handler<store::commit_signature> handler) {
    auto r = engine_->commit(t);
    if (!r) return agentcore::detail::post_completion(std::move(handler), result<commit_result>(r.error()));
    std::unique_lock lk(mu_);
    if (r->ticket == 0 || durable_ >= r->ticket) {
      lk.unlock();
      return agentcore::detail::post_completion(std::move(handler), result<commit_result>(std::move(r->result)));
    }
    if (failed_ || stop_) {
      error_info e = failed_ ? failed_ : fail(error::closed, fmt::format("store: '{}' was closed", dir_.string()));
      lk.unlock();
      return agentcore::detail::post_completion(std::move(handler), result<commit_result>(std::move(e)));
    }
    auto work = agentcore::detail::track_work(handler);
    waiters_.push_back({r->ticket, std::move(handler), std::move(r->result), std::move(work)});
  }

  result<void> snapshot_now() {
    // Snapshots are written in the order they are planned: ours is done when
    // the count written reaches its place, not when an earlier one finishes.
    std::uint64_t target = 0;
    engine_->with_lock([&](const engine& e) {
      force_snapshot_ = true;
      after_append(e);
      target = snapshots_planned_;
    });
    std::unique_lock lk(mu_);
    durable_cv_.wait(lk, [&] { return snapshots_ >= target || failed_ || stopped_; });
    if (snapshots_ >= target) return {};
    return failed_ ? failed_ : fail(error::closed, "store: closed before the snapshot was written");
  }

  file_store_stats stats() const {
    std::uint64_t records = 0;
    engine_->with_lock([&](const engine&) { records = records_written_; });
    std::lock_guard lk(mu_);
    return {records, syncs_, snapshots_, log_bytes_};
  }

  std::shared_ptr<engine> engine_;
  recovery_report report_;
  fs::path dir_;

private:
  struct boundary {
    std::size_t offset;                         // in the pending buffer
    std::optional<detail::engine_image> image;  // snapshot to write at it
  };
  struct waiter {
    std::uint64_t ticket;
    asio::any_completion_handler<store::commit_signature> handler;
    commit_result result;
    asio::any_completion_executor work;  // the handler's executor: run() waits for the group commit
  };

  std::uint64_t appended(std::size_t before) {
    std::size_t n = pending_.size() - before;
    segment_fill_ += n;
    since_snapshot_ += n;
    ++records_written_;
    auto ticket = appended_.fetch_add(1) + 1;
    // Only a sleeping writer needs a signal, and only once enough is pending;
    // under load the writer is busy syncing and commits never touch mu_.
    if (writer_waiting_.load() && ticket >= wake_at_.load()) {
      std::lock_guard lk(mu_);
      work_cv_.notify_one();
    }
    return ticket;
  }

  error_info lock() {
    fs::path file = dir_ / "LOCK";
    lock_fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0) return os_error("open", file);
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      std::string pid = "unknown";
      if (auto text = read_file(file); text && !text->empty()) pid = text->substr(0, text->find('\n'));
      ::close(lock_fd_);
      lock_fd_ = -1;
      if (err == EWOULDBLOCK)
        return fail(error::in_use, fmt::format("store: directory '{}' is in use by pid {}; stop that process or "
                                               "open another directory",
                                               dir_.string(), pid));
      return os_error("lock", file, err);
    }
    std::string me = fmt::format("{}\n", ::getpid());
    if (::ftruncate(lock_fd_, 0) != 0) return os_error("truncate", file);
    if (::pwrite(lock_fd_, me.data(), me.size(), 0) < 0) return os_error("write to", file);
    return {};
  }

  error_info recover() {
    std::map<std::uint64_t, fs::path> segments, snapshots;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      std::string name = entry.path().filename().string();
      std::uint64_t seq = 0;
      if (detail::parse_file_name(name, "wal-", ".log", seq)) segments[seq] = entry.path();
      else if (detail::parse_file_name(name, "snap-", ".snap", seq)) snapshots[seq] = entry.path();
      else if (name.ends_with(".tmp") && !options_.read_only) fs::remove(entry.path(), ec);  // unfinished
    }
    if (ec) return fail(error::io_error, fmt::format("store: cannot list '{}': {}", dir_.string(), ec.message()));

    // What the store had, when it says: every segment it lists must be there
    // as it was. Without a MANIFEST the directory is a new store, or one from
    // before manifests (trusted as found, and given one now).
    fs::path manifest_file = dir_ / "MANIFEST";
    std::optional<manifest> known;
    if (fs::exists(manifest_file, ec)) {
      auto text = read_file(manifest_file);
      if (!text) return text.error();
      auto m = parse_manifest(*text, manifest_file);
      if (!m) return m.error();
      known = std::move(*m);
    } else if (options_.read_only && segments.empty() && snapshots.empty()) {
      return fail(error::not_found, fmt::format("store: '{}' holds no store (no MANIFEST, no log); check the path",
                                                dir_.string()));
    }

    std::uint64_t first = 1;
    if (!snapshots.empty()) {
      auto [seq, path] = *snapshots.rbegin();
      if (known && seq < known->first)
        return fail(error::corrupt, fmt::format("store: '{}' needs the snapshot '{}', but the newest there is '{}'; "
                                                "restore it from a backup",
                                                dir_.string(), detail::snapshot_file_name(known->first),
                                                path.filename().string()));
      auto data = read_file(path);
      if (!data) return data.error();
      auto img = detail::decode_snapshot(*data, path.string(), seq);
      if (!img) return img.error();
      engine_->restore(std::move(*img));
      report_.snapshot = path.filename().string();
      first = seq;
    } else if (known && known->first > 1) {
      return fail(error::corrupt, fmt::format("store: the snapshot '{}' of '{}' is missing; restore it from a backup",
                                              detail::snapshot_file_name(known->first), dir_.string()));
    } else if (!segments.empty() && segments.begin()->first != 1) {
      return fail(error::corrupt, fmt::format("store: '{}' has no snapshot and its first log segment is '{}'; "
                                              "'{}' is missing: restore it from a backup",
                                              dir_.string(), segments.begin()->second.filename().string(),
                                              detail::segment_file_name(1)));
    }
    std::vector<std::pair<std::uint64_t, fs::path>> replay;
    for (auto& [seq, path] : segments)
      if (seq >= first) replay.emplace_back(seq, path);
    for (std::size_t i = 0; i < replay.size(); ++i) {
      std::uint64_t want = first + i;
      if (replay[i].first != want)
        return fail(error::corrupt, fmt::format("store: log segment '{}' is missing from '{}' (found '{}' after it); "
                                                "restore it from a backup",
                                                detail::segment_file_name(want), dir_.string(),
                                                replay[i].second.filename().string()));
    }
    if (known) {
      auto damaged = [&](const fs::path& file, std::string what) {
        return fail(error::corrupt, fmt::format("store: log segment '{}' {}; the store cannot be read as it was: "
                                                "restore the file from a backup",
                                                file.string(), what));
      };
      std::map<std::uint64_t, const fs::path*> have;
      for (auto& [seq, path] : replay) have[seq] = &path;
      for (const auto& sealed : known->sealed) {
        if (sealed.seq < first) continue;
        auto it = have.find(sealed.seq);
        fs::path file = dir_ / detail::segment_file_name(sealed.seq);
        if (it == have.end()) return damaged(file, fmt::format("is missing ({} bytes were acknowledged)", sealed.bytes));
        auto size = fs::file_size(*it->second, ec);
        if (ec || size != sealed.bytes)
          return damaged(file, fmt::format("has {} bytes where it was closed with {}", ec ? 0 : size, sealed.bytes));
      }
      fs::path active = dir_ / detail::segment_file_name(known->active);
      if (known->active >= first) {
        if (!have.count(known->active))
          return damaged(active, fmt::format("is missing (at least {} bytes of it were acknowledged)", known->durable));
        auto size = fs::file_size(active, ec);
        if (!ec && size < known->durable)
          return damaged(active, fmt::format("has {} bytes, but at least {} were acknowledged", size, known->durable));
      }
      if (!replay.empty() && replay.back().first > known->active + 1)
        return damaged(replay.back().second,
                       fmt::format("is not the store's: it ends at '{}'", detail::segment_file_name(known->active)));
    }
    for (std::size_t i = 0; i < replay.size(); ++i) {
      auto& [seq, path] = replay[i];
      bool last = i + 1 == replay.size();
      auto data = read_file(path);
      if (!data) return data.error();
      if (known)
        for (const auto& sealed : known->sealed)
          if (sealed.seq == seq && detail::crc32c(data->data(), data->size()) != sealed.crc)
            return fail(error::corrupt, fmt::format("store: log segment '{}' is not the one the store closed (its "
                                                    "checksum differs): restore the file from a backup",
                                                    path.string()));
      auto r = detail::replay_segment(*data, path.string(), seq, last, *engine_);
      if (!r) return r.error();
      if (last)  // what it holds after any repair below: the start of its checksum
        crc_in_seg_ = detail::crc32c(data->data(), r->torn ? std::max<std::size_t>(r->valid_end, detail::file_header_size)
                                                           : data->size());
      report_.records += r->records;
      report_.segments += 1;
      since_snapshot_ += r->valid_end;
      if (r->torn) {
        // Only what a crash can have cut: past what the store knew was on disk.
        if (known && seq == known->active && r->valid_end < known->durable)
          return fail(error::corrupt, fmt::format("store: log segment '{}' is cut short at offset {}, but {} bytes of "
                                                  "it were acknowledged: restore the file from a backup",
                                                  path.string(), r->valid_end, known->durable));
        std::size_t keep = std::max<std::size_t>(r->valid_end, detail::file_header_size);
        report_.torn_tail = fmt::format("store: file '{}' had a torn record at offset {} ({} bytes); {} (it was never "
                                        "acknowledged)",
                                        path.string(), r->valid_end, data->size() - r->valid_end,
                                        options_.read_only ? "left out" : "reopened without it");
        if (options_.read_only) {
        } else if (r->valid_end < detail::file_header_size) {
          // The crash hit while the segment was being created: write its header again.
          std::string h = detail::segment_header(seq);
          int fd = ::open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
          if (fd < 0) return os_error("open", path);
          auto e = write_all(fd, h.data(), h.size(), path);
          if (!e) e = sync_fd(fd, path);
          ::close(fd);
          if (e) return e;
          crc_in_seg_ = detail::crc32c(h.data(), h.size());
        } else if (::truncate(path.c_str(), static_cast<off_t>(keep)) != 0) {
          return os_error("truncate", path);
        }
      }
    }
    seq_ = replay.empty() ? first : replay.back().first;
    auto rev = engine_->current_revision();
    report_.rev = rev ? *rev : 0;
    manifest_.id = known ? known->id : new_store_id();
    if (options_.read_only) return {};

    // Segments and snapshots older than the snapshot in use are leftovers of
    // a crash during cleanup.
    for (auto& [seq, path] : segments)
      if (seq < first) fs::remove(path, ec);
    for (auto& [seq, path] : snapshots)
      if (seq < first) fs::remove(path, ec);

    fs::path cur = dir_ / detail::segment_file_name(seq_);
    if (replay.empty()) {
      if (auto e = create_segment(seq_)) return e;
    } else {
      fd_ = ::open(cur.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      if (fd_ < 0) return os_error("open", cur);
    }
    segment_fill_ = static_cast<std::size_t>(fs::file_size(cur, ec));
    written_in_seg_ = synced_in_seg_ = segment_fill_;
    log_bytes_ = 0;
    for (auto& [seq, path] : replay) log_bytes_ += fs::file_size(path, ec);

    // The manifest as the store now stands: every segment before the newest
    // is closed (with its size and checksum), the newest is on disk as found.
    manifest_.first = first;
    manifest_.sealed.clear();
    for (std::size_t i = 0; i + 1 < replay.size(); ++i) {
      const auto& [seq, path] = replay[i];
      manifest::segment m{seq, 0, 0};
      if (known)
        for (const auto& k : known->sealed)
          if (k.seq == seq) m = k;
      if (m.bytes == 0) {  // closed by a crash during a roll, or a store from before manifests
        auto data = read_file(path);
        if (!data) return data.error();
        m.bytes = data->size();
        m.crc = detail::crc32c(data->data(), data->size());
      }
      manifest_.sealed.push_back(m);
    }
    manifest_.active = seq_;
    manifest_.durable = segment_fill_;
    if (!known && !replay.empty())
      report_.manifest_created = fmt::format("store: '{}' had no MANIFEST (a store from before manifests); one was "
                                             "written for its {} segments",
                                             dir_.string(), replay.size());
    return write_manifest();
  }

  /// Replaces MANIFEST with manifest_, atomically.
  error_info write_manifest() {
    fs::path tmp = dir_ / "MANIFEST.tmp", file = dir_ / "MANIFEST";
    std::string text = to_text(manifest_);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return os_error("create", tmp);
    auto e = write_all(fd, text.data(), text.size(), tmp);
    if (!e && options_.fsync != fsync_policy::none) e = sync_fd(fd, tmp);
    ::close(fd);
    if (e) return e;
    if (::rename(tmp.c_str(), file.c_str()) != 0) return os_error("rename of", tmp);
    if (options_.fsync != fsync_policy::none)
      if (auto e2 = sync_dir(dir_)) return e2;
    last_manifest_ = std::chrono::steady_clock::now();
    return {};
  }

  /// At most once a second, records how much of the newest segment is on disk.
  error_info note_durable(bool now) {
    if (synced_in_seg_ <= manifest_.durable) return {};
    if (!now && std::chrono::steady_clock::now() - last_manifest_ < std::chrono::seconds(1)) return {};
    manifest_.durable = synced_in_seg_;
    return write_manifest();
  }

  error_info create_segment(std::uint64_t seq) {
    fs::path file = dir_ / detail::segment_file_name(seq);
    int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return os_error("create", file);
    std::string h = detail::segment_header(seq);
    auto e = write_all(fd, h.data(), h.size(), file);
    if (!e && options_.fsync != fsync_policy::none) e = sync_fd(fd, file);
    if (!e && options_.fsync != fsync_policy::none) e = sync_dir(dir_);
    if (e) {
      ::close(fd);
      return e;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
    seq_ = seq;
    written_in_seg_ = synced_in_seg_ = h.size();
    crc_in_seg_ = detail::crc32c(h.data(), h.size());
    return {};
  }

  error_info write_snapshot(std::uint64_t seq, const detail::engine_image& img) {
    fs::path tmp = dir_ / (detail::snapshot_file_name(seq) + ".tmp");
    fs::path final_path = dir_ / detail::snapshot_file_name(seq);
    std::string data = detail::encode_snapshot(seq, img);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return os_error("create", tmp);
    auto e = write_all(fd, data.data(), data.size(), tmp);
    if (!e && options_.fsync != fsync_policy::none) e = sync_fd(fd, tmp);
    ::close(fd);
    if (e) return e;
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) return os_error("rename of", tmp);
    if (options_.fsync != fsync_policy::none)
      if (auto e2 = sync_dir(dir_)) return e2;
    // Now everything before segment `seq` is covered by the snapshot.
    std::error_code ec;
    std::uint64_t removed_bytes = 0;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      std::string name = entry.path().filename().string();
      std::uint64_t s = 0;
      if (detail::parse_file_name(name, "wal-", ".log", s) && s < seq) {
        removed_bytes += fs::file_size(entry.path(), ec);
        fs::remove(entry.path(), ec);
      } else if (detail::parse_file_name(name, "snap-", ".snap", s) && s < seq) {
        fs::remove(entry.path(), ec);
      }
    }
    std::lock_guard lk(mu_);
    log_bytes_ -= std::min(log_bytes_, removed_bytes);
    return {};
  }

  error_info write_batch(const std::string& buf, std::vector<boundary>& bounds) {
    std::size_t pos = 0;
    fs::path cur = dir_ / detail::segment_file_name(seq_);
    for (auto& b : bounds) {
      if (auto e = write_all(fd_, buf.data() + pos, b.offset - pos, cur)) return e;
      add_log_bytes(b.offset - pos);
      written_in_seg_ += b.offset - pos;
      crc_in_seg_ = detail::crc32c(buf.data() + pos, b.offset - pos, crc_in_seg_);
      pos = b.offset;
      if (options_.fsync != fsync_policy::none) {
        if (auto e = sync_fd(fd_, cur)) return e;
        count_sync();
      }
      // The segment closes: the manifest gets its size and checksum.
      manifest_.sealed.push_back({seq_, written_in_seg_, crc_in_seg_});
      if (auto e = create_segment(seq_ + 1)) return e;
      add_log_bytes(detail::file_header_size);
      cur = dir_ / detail::segment_file_name(seq_);
      manifest_.active = seq_;
      manifest_.durable = written_in_seg_;
      if (auto e = write_manifest()) return e;
      if (b.image) {
        if (auto e = write_snapshot(seq_, *b.image)) return e;
        manifest_.first = seq_;
        std::erase_if(manifest_.sealed, [&](const manifest::segment& m) { return m.seq < seq_; });
        if (auto e = write_manifest()) return e;
        std::lock_guard lk(mu_);
        ++snapshots_;
      }
    }
    if (auto e = write_all(fd_, buf.data() + pos, buf.size() - pos, cur)) return e;
    add_log_bytes(buf.size() - pos);
    written_in_seg_ += buf.size() - pos;
    crc_in_seg_ = detail::crc32c(buf.data() + pos, buf.size() - pos, crc_in_seg_);
    if (options_.fsync == fsync_policy::none) synced_in_seg_ = written_in_seg_;  // what a process crash keeps
    auto now = std::chrono::steady_clock::now();
    if (options_.fsync == fsync_policy::always ||
        (options_.fsync == fsync_policy::batch && now - last_sync_ >= options_.batch_interval)) {
      if (auto e = sync_fd(fd_, cur)) return e;
      count_sync();
      last_sync_ = now;
      dirty_ = false;
      synced_in_seg_ = written_in_seg_;
    } else {
      dirty_ = options_.fsync == fsync_policy::batch;
    }
    return note_durable(false);
  }

  void add_log_bytes(std::size_t n) {
    std::lock_guard lk(mu_);
    log_bytes_ += n;
  }
  void count_sync() {
    std::lock_guard lk(mu_);
    ++syncs_;
  }

  // Group commit: commits that arrive while a sync runs share the next one.
  // With many committers on few cores, the committers just acknowledged need
  // a moment to come back with their next commit, and there are two ways to
  // use that moment:
  //   whole:     wait until as many commits are pending as the last batch
  //              had (no longer than about two syncs), so that one sync
  //              serves every committer; the CPU idles while it runs.
  //   pipelined: wait for half as many, no longer than one sync, so that
  //              half the committers compute while the other half's sync
  //              runs; twice the syncs, each overlapped with work.
  // With a fill time F (whole mode's wait) and a sync time S, a cycle takes
  // F + S whole and max(2S, F) pipelined: pipelined wins when S < F, and by
  // enough to pay for twice the syncs' fixed costs when S is not much
  // smaller. Measured on this project's 2-core machine: on a real disk with
  // 64 committers (F 201 us, S 177 us) pipelined makes 196,938 commits/s
  // against 159,112; with 16 (F 82, S 158) whole, 59,398 against 46,809; on
  // tmpfs (S 5-9 us) whole by far, as pipelined batches shrink to two or
  // three commits. So the writer keeps S and F (measured in whole mode, and
  // again every probe_every pipelined batches) and pipelines while
  // F/3 <= S <= F.
  void linger(std::unique_lock<std::mutex>& lk) {
    if (options_.fsync != fsync_policy::always || last_batch_ <= 1) return;
    auto& a = adapt_;
    if (a.pipelined && ++a.since_probe < adaptive_state::probe_every) {
      auto cap = std::clamp<std::chrono::steady_clock::duration>(last_write_, std::chrono::microseconds(20),
                                                                 std::chrono::milliseconds(2));
      sleep(lk, taken_ + std::max<std::uint64_t>(1, last_batch_ / 2), cap);
      return;
    }
    if (a.pipelined) {
      // A probe: one batch to gather the whole cohort (the last two
      // batches), then one whose wait measures F.
      a.pipelined = false;
      a.since_probe = 0;
      a.regroup = true;
    }
    std::uint64_t want = a.regroup ? last_batch_ + a.previous_batch : last_batch_;
    auto cap = std::clamp<std::chrono::steady_clock::duration>(2 * last_write_, std::chrono::microseconds(50),
                                                               std::chrono::milliseconds(2));
    auto began = std::chrono::steady_clock::now();
    bool filled = sleep(lk, taken_ + want, cap);
    if (a.regroup) {
      a.regroup = false;
      return;
    }
    auto fill = std::chrono::steady_clock::now() - began;
    if (!filled) return;  // committers slower than two syncs: whole
    a.fill = a.fill.count() == 0 ? fill : (3 * a.fill + fill) / 4;
    a.pipelined = 3 * a.sync >= a.fill && a.sync <= a.fill;
  }

  /// After each batch's write: keeps the sync time (see linger).
  void note_sync(std::chrono::steady_clock::duration took) {
    auto& a = adapt_;
    a.sync = a.sync.count() == 0 ? took : (7 * a.sync + took) / 8;
  }
  bool has_work() const {
    return appended_.load() > taken_ || boundary_seq_.load() > boundaries_taken_ || stop_;
  }

  /// Sleeps until `wake_at` records are appended (or a boundary, or stop),
  /// or `timeout`. Returns false on timeout. Committers signal only while
  /// writer_waiting_ is set; setting it before the check means none is missed.
  bool sleep(std::unique_lock<std::mutex>& lk, std::uint64_t wake_at, std::chrono::steady_clock::duration timeout) {
    wake_at_.store(wake_at);
    writer_waiting_.store(true);
    bool woke = work_cv_.wait_for(lk, timeout, [&] {
      return appended_.load() >= wake_at || boundary_seq_.load() > boundaries_taken_ || stop_;
    });
    writer_waiting_.store(false);
    return woke;
  }

  /// Wakes the committers waiting for the batch of `parity` (after it is
  /// durable), or all of them.
  void wake_waiters(int parity) {
    wake_[parity].fetch_add(1, std::memory_order_acq_rel);
    wake_[parity].notify_all();
  }
  void wake_waiters() {
    wake_waiters(0);
    wake_waiters(1);
  }

  void run() {
    std::string buf;
    std::vector<boundary> bounds;
    std::unique_lock lk(mu_);
    for (;;) {
      if (!has_work()) {
        auto timeout = dirty_ ? std::chrono::steady_clock::duration(options_.batch_interval)
                              : std::chrono::steady_clock::duration(expiry_interval);
        if (!sleep(lk, taken_ + 1, timeout)) {
          lk.unlock();
          error_info e;
          if (dirty_) {
            e = sync_fd(fd_, dir_ / detail::segment_file_name(seq_));
            if (!e) synced_in_seg_ = written_in_seg_;
            if (!e) e = note_durable(false);
          } else {
            // Idle: expire leases so watchers see it even without other traffic.
            engine_->expire();
          }
          lk.lock();
          if (e) {
            fail_locked(lk, std::move(e));
            return;
          }
          if (dirty_) {
            ++syncs_;
            dirty_ = false;
            last_sync_ = std::chrono::steady_clock::now();
          }
          continue;
        }
      }
      if (appended_.load() == taken_ && boundary_seq_.load() == boundaries_taken_) {
        if (stop_) break;
        continue;
      }
      linger(lk);
      lk.unlock();
      buf.clear();
      bounds.clear();
      std::uint64_t upto = 0;
      engine_->with_lock([&](const engine&) {
        buf.swap(pending_);
        bounds.swap(boundaries_);
        upto = appended_.load();
        boundaries_taken_ = boundary_seq_.load();
      });
      adapt_.previous_batch = last_batch_;
      last_batch_ = std::max<std::uint64_t>(1, upto - taken_);
      taken_ = upto;
      const int parity = static_cast<int>(++batches_ & 1);
      taken_mark_.store(upto << 1 | static_cast<std::uint64_t>(parity), std::memory_order_release);
      auto t0 = std::chrono::steady_clock::now();
      error_info e = write_batch(buf, bounds);
      last_write_ = std::chrono::steady_clock::now() - t0;
      note_sync(last_write_);
      lk.lock();
      if (e) {
        fail_locked(lk, std::move(e));
        return;
      }
      durable_ = upto;
      durable_atomic_.store(upto, std::memory_order_release);
      wake_waiters(parity);
      complete_waiters_locked(lk);
      durable_cv_.notify_all();
    }
    if (fd_ >= 0 && !failed_) {
      // A clean close: everything written is on disk, and the manifest says so.
      lk.unlock();
      error_info e;
      if (dirty_) e = sync_fd(fd_, dir_ / detail::segment_file_name(seq_));
      if (!e) {
        synced_in_seg_ = written_in_seg_;
        (void)note_durable(true);
      }
      lk.lock();
    }
  }

  void complete_waiters_locked(std::unique_lock<std::mutex>& lk) {
    // Elements are only ever move-constructed: Boost 1.81's
    // any_completion_handler move assignment recurses forever, and erasing
    // from the middle of a deque move-assigns.
    std::vector<waiter> done;
    std::deque<waiter> keep;
    for (auto& w : waiters_) {
      if (w.ticket <= durable_) done.push_back(std::move(w));
      else keep.push_back(std::move(w));
    }
    waiters_.swap(keep);
    if (done.empty()) return;
    lk.unlock();
    for (auto& w : done) agentcore::detail::post_completion(std::move(w.handler), result<commit_result>(std::move(w.result)));
    lk.lock();
  }

  // Fail-stop: after a failed write or sync nothing more is acknowledged
  // (the kernel may have dropped the dirty pages; retrying would lie).
  void fail_locked(std::unique_lock<std::mutex>& lk, error_info e) {
    // `closed`: the store takes no more work (the cause is in the message).
    failed_ = fail(error::closed,
                   e.message() + "; the store stopped accepting commits: reopen it to recover what is on disk");
    auto waiters = std::move(waiters_);
    waiters_.clear();
    broken_ = true;
    wake_waiters();
    durable_cv_.notify_all();
    lk.unlock();
    for (auto& w : waiters) agentcore::detail::post_completion(std::move(w.handler), result<commit_result>(failed_));
    engine_->close(failed_);
    lk.lock();
  }

  static constexpr std::chrono::milliseconds expiry_interval{100};

  file_store_options options_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_, durable_cv_;
  std::string pending_;
  std::vector<boundary> boundaries_;
  std::deque<waiter> waiters_;
  std::uint64_t durable_ = 0;
  // Under the engine's lock: pending_, boundaries_, segment_fill_,
  // since_snapshot_, force_snapshot_, records_written_; appended_ and
  // boundary_seq_ are written there and read by the writer.
  std::atomic<std::uint64_t> appended_{0}, boundary_seq_{0}, wake_at_{1};
  std::atomic<bool> writer_waiting_{false};
  std::uint64_t snapshots_planned_ = 0;  // under the engine's lock
  // Writer thread only.
  std::uint64_t taken_ = 0, boundaries_taken_ = 0, last_batch_ = 1, batches_ = 0;
  std::chrono::steady_clock::duration last_write_{};
  struct adaptive_state {  // see linger()
    static constexpr int probe_every = 64;
    bool pipelined = false, regroup = false;
    int since_probe = 0;
    std::uint64_t previous_batch = 0;
    std::chrono::steady_clock::duration sync{}, fill{};  // moving averages
  } adapt_;  // the writer thread's
  std::atomic<std::uint64_t> durable_atomic_{0};
  // The newest batch the writer took: its last ticket << 1 | its parity.
  std::atomic<std::uint64_t> taken_mark_{0};
  // int: libstdc++ waits on a 4-byte atomic directly with a futex; wider
  // types go through a shared mutex-and-condvar pool. Wrapping is harmless.
  std::array<std::atomic<int>, 2> wake_{};
  std::atomic<bool> broken_{false};
  std::size_t segment_fill_ = 0, since_snapshot_ = 0;
  bool force_snapshot_ = false, stop_ = false, stopped_ = false, dirty_ = false;
  error_info failed_;
  std::uint64_t records_written_ = 0, syncs_ = 0, snapshots_ = 0, log_bytes_ = 0;
  std::chrono::steady_clock::time_point last_sync_{};
  int fd_ = -1, lock_fd_ = -1;
  std::uint64_t seq_ = 1;
  // Writer thread (and open): MANIFEST's content, the bytes of the newest
  // segment written and known on disk, when MANIFEST was last written.
  manifest manifest_;
  std::uint64_t written_in_seg_ = 0, synced_in_seg_ = 0;
  std::uint32_t crc_in_seg_ = 0;  // of the newest segment's bytes so far
  std::chrono::steady_clock::time_point last_manifest_{};
  std::thread writer_;
};

result<std::unique_ptr<file_store>> file_store::open(const fs::path& dir, file_store_options options) {
  auto p = std::make_unique<impl>(dir, std::move(options));
  if (auto r = p->open(); !r) return r.error();
  return std::unique_ptr<file_store>(new file_store(std::move(p)));
}

file_store::file_store(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
file_store::~file_store() = default;

const recovery_report& file_store::recovery() const noexcept { return impl_->report_; }
const fs::path& file_store::directory() const noexcept { return impl_->dir_; }
const std::string& file_store::id() const noexcept { return impl_->store_id(); }
file_store_stats file_store::stats() const { return impl_->stats(); }
result<void> file_store::snapshot_now() { return impl_->snapshot_now(); }

result<std::optional<key_value>> file_store::do_get(std::string_view key) { return impl_->engine_->get(key); }
result<range_result> file_store::do_range(std::string_view prefix, range_options options) {
  return impl_->engine_->range(prefix, options);
}
result<commit_result> file_store::do_commit(const txn& t) {
  if (auto e = impl_->refuse_if_read_only("commit")) return e;
  auto r = impl_->engine_->commit(t);
  if (!r) return r.error();
  if (auto e = impl_->wait(r->ticket)) return e;
  return std::move(r->result);
}
result<revision> file_store::do_current_revision() { return impl_->engine_->current_revision(); }
result<lease_id> file_store::do_grant(std::chrono::seconds ttl) {
  if (auto e = impl_->refuse_if_read_only("grant a lease")) return e;
  auto r = impl_->engine_->grant(ttl);
  if (!r) return r.error();
  if (auto e = impl_->wait(r->second)) return e;
  return r->first;
}
result<lease_status> file_store::do_keep_alive(lease_id id) {
  if (auto e = impl_->refuse_if_read_only("keep a lease alive")) return e;
  return impl_->engine_->keep_alive(id);
}
result<void> file_store::do_revoke(lease_id id) {
  if (auto e = impl_->refuse_if_read_only("revoke a lease")) return e;
  auto r = impl_->engine_->revoke(id);
  if (!r) return r.error();
  if (auto e = impl_->wait(*r)) return e;
  return {};
}
result<lease_status> file_store::do_lease_info(lease_id id) { return impl_->engine_->lease_info(id); }
result<std::unique_ptr<watcher>> file_store::do_watch(std::string prefix, revision from) {
  return impl_->engine_->watch(std::move(prefix), from);
}
void file_store::do_close() {
  impl_->shutdown(fail(error::closed, fmt::format("store: '{}' was closed", impl_->dir_.string())));
}
void file_store::do_async_commit(txn t, asio::any_completion_handler<commit_signature> handler) {
  if (auto e = impl_->refuse_if_read_only("commit")) {
    agentcore::detail::post_completion(std::move(handler), result<commit_result>(std::move(e)));
    return;
  }
  impl_->async_commit(std::move(t), std::move(handler));
}

}  // namespace agentcore::store
