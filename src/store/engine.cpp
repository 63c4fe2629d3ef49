#include "store/engine.hpp"

#include "detail/complete.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <tuple>

namespace agentcore::store::detail {

struct engine::watch_state {
  std::string prefix;
  revision next = 1;
  bool canceled = false;
  std::optional<asio::any_completion_handler<watcher::next_signature>> pending;
  asio::any_completion_executor pending_work;  // the pending handler's executor keeps running meanwhile
};

namespace {

void complete(asio::any_completion_handler<watcher::next_signature> h, result<std::vector<watch_event>> events) {
  agentcore::detail::post_completion(std::move(h), std::move(events));
}

}  // namespace

class engine_watcher final : public watcher {
public:
  engine_watcher(std::shared_ptr<engine> e, std::shared_ptr<engine::watch_state> s)
      : engine_(std::move(e)), state_(std::move(s)) {}
  ~engine_watcher() override { do_cancel(); }

  revision next_revision() const override {
    std::lock_guard lock(engine_->mutex_);
    return state_->next;
  }

private:
  result<std::vector<watch_event>> do_poll() override {
    std::lock_guard lock(engine_->mutex_);
    engine_->expire_locked();
    return engine_->collect_locked(*state_);
  }

  void do_async_next(asio::any_completion_handler<next_signature> handler) override {
    std::lock_guard lock(engine_->mutex_);
    engine_->expire_locked();
    if (state_->pending) {
      complete(std::move(handler),
               fail(error::invalid_argument, "store: this watcher's async_next is already pending; wait for it first"));
      return;
    }
    auto r = engine_->collect_locked(*state_);
    if (!r || !r->empty()) return complete(std::move(handler), std::move(r));
    state_->pending_work = agentcore::detail::track_work(handler);
    state_->pending.emplace(std::move(handler));
  }

  void do_cancel() override {
    std::lock_guard lock(engine_->mutex_);
    state_->canceled = true;
    if (state_->pending) {
      auto h = std::move(*state_->pending);
      state_->pending.reset();
      auto work = std::move(state_->pending_work);  // released after the completion is posted
      complete(std::move(h), fail(error::canceled, "store: the watcher was canceled"));
    }
  }

  std::shared_ptr<engine> engine_;
  std::shared_ptr<engine::watch_state> state_;
};

engine::engine(engine_options options, journal* j) : options_(std::move(options)), journal_(j) {
  if (!options_.clock) options_.clock = default_clock();
  if (options_.history_limit == 0) options_.history_limit = 1;
}

error_info engine::check_open_locked() const { return closed_; }

void engine::close(error_info reason) {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  closed_ = reason ? std::move(reason) : error_info(error::closed, "store: closed");
  for (auto& w : watchers_) {
    if (auto s = w.lock(); s && s->pending) {
      auto h = std::move(*s->pending);
      s->pending.reset();
      auto work = std::move(s->pending_work);  // released after the completion is posted
      complete(std::move(h), closed_);
    }
  }
}

result<std::optional<key_value>> engine::get(std::string_view key) {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  auto it = kvs_.find(key);
  if (it == kvs_.end()) return std::optional<key_value>();
  const entry& e = it->second;
  return std::optional<key_value>(key_value{it->first, *e.value, e.create_revision, e.mod_revision, e.version, e.lease});
}

result<range_result> engine::range(std::string_view prefix, range_options options) {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  range_result out;
  out.rev = rev_;
  for (auto it = kvs_.lower_bound(prefix); it != kvs_.end() && it->first.starts_with(prefix); ++it) {
    if (options.limit && out.kvs.size() == options.limit) {
      out.more = true;
      break;
    }
    const entry& e = it->second;
    out.kvs.push_back({it->first, *e.value, e.create_revision, e.mod_revision, e.version, e.lease});
  }
  return out;
}

result<revision> engine::current_revision() {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  return rev_;
}

result<engine::ticketed_commit> engine::commit(const txn& t) {
  if (auto e = validate(t)) return e;
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  ticketed_commit out;
  // Remember where the compares found their keys: a put on a compared key
  // (the usual read-compare-write) then needs no second lookup.
  constexpr std::size_t remembered = 4;
  std::array<kv_map::iterator, remembered> found;
  for (std::size_t i = 0; i < t.compares.size(); ++i) {
    const compare& c = t.compares[i];
    auto it = kvs_.find(c.key);
    if (i < remembered) found[i] = it;
    std::int64_t actual = it == kvs_.end() ? 0 : it->second.version;
    std::int64_t wanted = c.type == compare::kind::absent ? 0 : c.version;
    if (actual != wanted) {
      out.result = {false, rev_, c.key, actual};
      return out;
    }
  }
  for (const op& o : t.ops) {
    if (o.type == op::kind::put && o.lease != 0 && !leases_.contains(o.lease))
      return fail(error::lease_not_found,
                  fmt::format("store: lease {} for key '{}' has expired or was revoked; grant a new lease", o.lease, o.key));
  }
  // A transaction that changes nothing (no operations, or only erases of
  // absent keys) commits without a new revision, as in etcd.
  bool changes = false;
  for (const op& o : t.ops)
    if (o.type == op::kind::put || kvs_.contains(o.key)) {
      changes = true;
      break;
    }
  if (!changes) {
    out.result = {true, rev_, {}, 0};
    return out;
  }
  revision rev = rev_ + 1;
  if (journal_) out.ticket = journal_->append_txn(rev, t.ops);
  rev_ = rev;
  for (const op& o : t.ops) {
    if (o.type == op::kind::put) {
      auto hint = kvs_.end();
      for (std::size_t i = 0; i < std::min(remembered, t.compares.size()); ++i)
        if (found[i] != kvs_.end() && t.compares[i].key == o.key) hint = found[i];
      apply_put_locked(rev, o, hint);
    } else {
      apply_erase_locked(rev, o.key);
    }
  }
  trim_history_locked();
  notify_locked();
  if (journal_) journal_->after_append(*this);
  out.result = {true, rev, {}, 0};
  return out;
}

void engine::apply_put_locked(revision rev, const op& o, kv_map::iterator hint) {
  kv_map::iterator it = hint;
  bool inserted = false;
  if (it == kvs_.end()) std::tie(it, inserted) = kvs_.try_emplace(o.key);
  entry& e = it->second;
  if (inserted) {
    e.create_revision = rev;
    live_bytes_ += o.key.size();
  } else {
    live_bytes_ -= e.value->size();
  }
  if (e.lease != o.lease) {
    if (e.lease != 0) {
      if (auto l = leases_.find(e.lease); l != leases_.end()) l->second.keys.erase(o.key);
    }
    if (o.lease != 0) {
      if (auto l = leases_.find(o.lease); l != leases_.end()) l->second.keys.insert(o.key);
    }
  }
  e.value = std::make_shared<const std::string>(o.value);
  live_bytes_ += e.value->size();
  e.mod_revision = rev;
  e.version += 1;
  e.lease = o.lease;
  record_locked({watch_event::kind::put, it->first, e.value, e.create_revision, e.mod_revision, e.version, e.lease});
}

void engine::apply_erase_locked(revision rev, const std::string& key) {
  auto it = kvs_.find(key);
  if (it == kvs_.end()) return;
  if (it->second.lease != 0) {
    if (auto l = leases_.find(it->second.lease); l != leases_.end()) l->second.keys.erase(key);
  }
  live_bytes_ -= it->first.size() + it->second.value->size();
  kvs_.erase(it);
  record_locked({watch_event::kind::erase, key, nullptr, 0, rev, 0, 0});
}

void engine::record_locked(history_event ev) { history_.push_back(std::move(ev)); }

void engine::trim_history_locked() {
  while (history_.size() > options_.history_limit) {
    compacted_ = history_.front().mod_revision;
    history_.pop_front();
  }
}

result<std::vector<watch_event>> engine::collect_locked(watch_state& w) {
  if (auto e = check_open_locked()) return e;
  if (w.canceled) return fail(error::canceled, "store: watch was canceled");
  if (w.next <= compacted_)
    return fail(error::compacted,
                fmt::format("store: watch on '{}' wants revision {}, but history up to revision {} was compacted; "
                            "read the current state with range() and watch from its revision + 1",
                            w.prefix, w.next, compacted_));
  std::vector<watch_event> out;
  auto first = std::lower_bound(history_.begin(), history_.end(), w.next,
                                [](const history_event& e, revision r) { return e.mod_revision < r; });
  for (auto it = first; it != history_.end(); ++it) {
    if (!it->key.starts_with(w.prefix)) continue;
    out.push_back({it->type,
                   {it->key, it->value ? *it->value : std::string(), it->create_revision, it->mod_revision, it->version,
                    it->lease}});
  }
  w.next = std::max(w.next, rev_ + 1);
  return out;
}

void engine::notify_locked() {
  bool prune = false;
  for (auto& weak : watchers_) {
    auto s = weak.lock();
    if (!s) {
      prune = true;
      continue;
    }
    if (!s->pending) continue;
    auto r = collect_locked(*s);
    if (r && r->empty()) continue;
    auto h = std::move(*s->pending);
    s->pending.reset();
    auto work = std::move(s->pending_work);  // released after the completion is posted
    complete(std::move(h), std::move(r));
  }
  if (prune) std::erase_if(watchers_, [](const auto& w) { return w.expired(); });
}

result<std::unique_ptr<watcher>> engine::watch(std::string prefix, revision from) {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  if (from < 1) return fail(error::invalid_argument, fmt::format("store: watch from revision {}; revisions start at 1", from));
  if (from <= compacted_)
    return fail(error::compacted,
                fmt::format("store: cannot watch '{}' from revision {}: history up to revision {} was compacted; "
                            "read the current state with range() and watch from its revision + 1",
                            prefix, from, compacted_));
  auto s = std::make_shared<watch_state>();
  s->prefix = std::move(prefix);
  s->next = from;
  std::erase_if(watchers_, [](const auto& w) { return w.expired(); });
  watchers_.push_back(s);
  return std::unique_ptr<watcher>(new engine_watcher(shared_from_this(), std::move(s)));
}

// --- leases ---

result<std::pair<lease_id, std::uint64_t>> engine::grant(std::chrono::seconds ttl) {
  if (ttl.count() <= 0)
    return fail(error::invalid_argument, fmt::format("store: lease TTL must be at least 1 s, got {} s", ttl.count()));
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  lease_id id = next_lease_++;
  std::uint64_t ticket = journal_ ? journal_->append_grant(id, ttl.count()) : 0;
  lease& l = leases_[id];
  l.ttl_seconds = ttl.count();
  l.deadline = options_.clock->now() + ttl;
  deadlines_.emplace(l.deadline, id);
  if (journal_) journal_->after_append(*this);
  return std::pair{id, ticket};
}

namespace {
template <class Map>
void erase_deadline(Map& deadlines, clock::time_point at, lease_id id) {
  auto [b, e] = deadlines.equal_range(at);
  for (auto it = b; it != e; ++it)
    if (it->second == id) {
      deadlines.erase(it);
      return;
    }
}
}  // namespace

result<lease_status> engine::keep_alive(lease_id id) {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  auto it = leases_.find(id);
  if (it == leases_.end())
    return fail(error::lease_not_found, fmt::format("store: lease {} has expired or was revoked; grant a new lease", id));
  erase_deadline(deadlines_, it->second.deadline, id);
  it->second.deadline = options_.clock->now() + std::chrono::seconds(it->second.ttl_seconds);
  deadlines_.emplace(it->second.deadline, id);
  return lease_status{id, std::chrono::seconds(it->second.ttl_seconds),
                      std::chrono::seconds(it->second.ttl_seconds)};
}

result<lease_status> engine::lease_info(lease_id id) {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  auto it = leases_.find(id);
  if (it == leases_.end())
    return fail(error::lease_not_found, fmt::format("store: lease {} has expired or was revoked", id));
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(it->second.deadline - options_.clock->now());
  return lease_status{id, std::chrono::seconds(it->second.ttl_seconds), std::max(left, std::chrono::milliseconds(0))};
}

result<std::uint64_t> engine::revoke(lease_id id) {
  std::lock_guard lock(mutex_);
  if (auto e = check_open_locked()) return e;
  expire_locked();
  if (!leases_.contains(id))
    return fail(error::lease_not_found, fmt::format("store: lease {} has expired or was revoked already", id));
  bool has_keys = !leases_[id].keys.empty();
  revision rev = has_keys ? rev_ + 1 : rev_;
  std::uint64_t ticket = journal_ ? journal_->append_revoke(id, rev) : 0;
  revoke_locked(id, rev);
  if (journal_) journal_->after_append(*this);
  return ticket;
}

std::size_t engine::revoke_locked(lease_id id, revision rev) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return 0;
  erase_deadline(deadlines_, it->second.deadline, id);
  auto keys = std::move(it->second.keys);
  leases_.erase(it);
  if (keys.empty()) return 0;
  rev_ = rev;
  for (const auto& k : keys) apply_erase_locked(rev, k);
  trim_history_locked();
  notify_locked();
  return keys.size();
}

void engine::expire() {
  std::lock_guard lock(mutex_);
  expire_locked();
}

void engine::expire_locked() {
  if (deadlines_.empty() || closed_) return;
  auto now = options_.clock->now();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    lease_id id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;
    // Re-insert so revoke_locked's erase finds it; simpler than a second path.
    deadlines_.emplace(it->second.deadline, id);
    revision rev = it->second.keys.empty() ? rev_ : rev_ + 1;
    if (journal_) journal_->append_revoke(id, rev);
    revoke_locked(id, rev);
    if (journal_) journal_->after_append(*this);
  }
}

// --- recovery ---

void engine::restore(engine_image image) {
  std::lock_guard lock(mutex_);
  kvs_.clear();
  leases_.clear();
  deadlines_.clear();
  history_.clear();
  live_bytes_ = 0;
  rev_ = image.rev;
  compacted_ = image.rev;  // a snapshot carries no history
  next_lease_ = image.next_lease;
  auto now = options_.clock->now();
  for (auto [id, ttl] : image.leases) {
    lease& l = leases_[id];
    l.ttl_seconds = ttl;
    l.deadline = now + std::chrono::seconds(ttl);
    deadlines_.emplace(l.deadline, id);
  }
  for (auto& kv : image.kvs) {
    entry e{std::make_shared<const std::string>(std::move(kv.value)), kv.create_revision, kv.mod_revision, kv.version,
            kv.lease};
    live_bytes_ += kv.key.size() + e.value->size();
    if (e.lease) {
      if (auto l = leases_.find(e.lease); l != leases_.end()) l->second.keys.insert(kv.key);
      else e.lease = 0;
    }
    kvs_.emplace(std::move(kv.key), std::move(e));
  }
}

error_info engine::replay_txn(revision rev, const std::vector<op>& ops) {
  std::lock_guard lock(mutex_);
  if (rev != rev_ + 1)
    return fail(error::corrupt, fmt::format("log record has revision {} where {} was expected", rev, rev_ + 1));
  rev_ = rev;
  for (const op& o : ops) {
    if (o.type == op::kind::put) {
      op copy = o;
      if (copy.lease && !leases_.contains(copy.lease)) copy.lease = 0;
      apply_put_locked(rev, copy, kvs_.end());
    } else {
      apply_erase_locked(rev, o.key);
    }
  }
  trim_history_locked();
  return {};
}

void engine::replay_grant(lease_id id, std::int64_t ttl_seconds) {
  std::lock_guard lock(mutex_);
  lease& l = leases_[id];
  l.ttl_seconds = ttl_seconds;
  l.deadline = options_.clock->now() + std::chrono::seconds(ttl_seconds);
  deadlines_.emplace(l.deadline, id);
  next_lease_ = std::max(next_lease_, id + 1);
}

error_info engine::replay_revoke(lease_id id, revision rev) {
  std::lock_guard lock(mutex_);
  if (rev != rev_ && rev != rev_ + 1)
    return fail(error::corrupt, fmt::format("log record revokes lease {} at revision {}; the store is at {}", id, rev, rev_));
  revoke_locked(id, rev);
  return {};
}

engine_image engine::image_locked() const {
  engine_image img;
  img.rev = rev_;
  img.next_lease = next_lease_;
  img.leases.reserve(leases_.size());
  for (const auto& [id, l] : leases_) img.leases.emplace_back(id, l.ttl_seconds);
  img.kvs.reserve(kvs_.size());
  for (const auto& [k, e] : kvs_) img.kvs.push_back({k, *e.value, e.create_revision, e.mod_revision, e.version, e.lease});
  return img;
}

}  // namespace agentcore::store::detail
