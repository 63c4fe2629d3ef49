// The etcd backend's watches: the stream of each watch (one long request to
// /v3/watch, reconnected on another endpoint when it fails), its events
// buffered for the watcher, and etcd_store::do_watch.
#include "store/etcd/impl.hpp"

#include "detail/complete.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <limits>

namespace agentcore::store {

using namespace etcd_detail;

/// Parses the stream's bytes into the state; an error ends the stream.
/// Takes a chunk of the watch's stream (newline-separated JSON messages);
/// what ends the watch, if anything.
error_info etcd_store::impl::feed(etcd_watch_state& w, std::string_view chunk) {
  error_info ended;
  {
    std::lock_guard lock(w.mutex);
    w.partial.append(chunk);
    if (w.partial.size() > opt.max_response)
      ended = net::fail(net::error::too_large, fmt::format("etcd watch on '{}': one message is over the {} byte "
                                                           "size cap",
                                                           w.user_prefix, opt.max_response));
    std::size_t start = 0;
    for (std::size_t nl; !ended && (nl = w.partial.find('\n', start)) != std::string::npos; start = nl + 1)
      ended = take_message(w, std::string_view(w.partial.data() + start, nl - start));
    w.partial.erase(0, start);
    if (!ended && w.buffer.size() > opt.max_buffered_events)
      ended = fail(error::compacted,
                   fmt::format("etcd watch on '{}': more than {} events arrived and were not taken; the consumer is "
                               "too slow: read the state with range() and watch from its revision",
                               w.user_prefix, opt.max_buffered_events));
    if (ended && !w.failure) w.failure = ended;
    deliver(w);
  }
  w.cv.notify_all();
  return ended;
}

/// One message of the stream (w.mutex held): its events join the buffer.
error_info etcd_store::impl::take_message(etcd_watch_state& w, std::string_view line) {
  if (line.find_first_not_of(" \r\t") == std::string_view::npos) return {};
  auto v = parse_json(line);
  if (!v || !v->is_object())
    return net::fail(net::error::protocol,
                     fmt::format("etcd watch on '{}': a message is not JSON ('{}')", w.user_prefix, snippet(line)));
  if (auto* err = object_at(v->get_object(), "error"))
    return fail(error::unavailable, fmt::format("etcd watch on '{}': {}", w.user_prefix, string_at(*err, "message")));
  auto* res = object_at(v->get_object(), "result");
  if (!res) return {};
  if (bool_at(*res, "created")) w.created = true;
  if (bool_at(*res, "canceled")) {
    auto compact = i64(*res, "compact_revision");
    if (compact > 0)
      return fail(error::compacted, fmt::format("etcd watch on '{}': history before revision {} was compacted and "
                                                "the watch started at {}; read the state with range() and watch "
                                                "from its revision",
                                                w.user_prefix, compact - 1, w.start - 1));
    return fail(error::canceled, fmt::format("etcd watch on '{}' was canceled by the server: {}", w.user_prefix,
                                             string_at(*res, "cancel_reason")));
  }
  auto* evs = array_at(*res, "events");
  if (!evs) return {};
  for (const auto& e : *evs) {
    if (!e.is_object()) continue;
    auto* kv = object_at(e.get_object(), "kv");
    if (!kv) continue;
    auto x = from_kv(*kv);
    if (!x) return x.error();
    watch_event ev;
    if (string_at(e.get_object(), "type") == "DELETE") {
      ev.type = watch_event::kind::erase;
      ev.kv.key = std::move(x->key);
      ev.kv.mod_revision = x->mod_revision;
    } else {
      ev.kv = std::move(*x);
    }
    w.stream_through = std::max(w.stream_through, ev.kv.mod_revision + 1);
    w.start = std::max(w.start, ev.kv.mod_revision + 2);  // reconnect after it
    w.buffer.push_back(std::move(ev));
  }
  return {};
}

/// Completes a waiting async_next with what is buffered, or the failure (w.mutex held).
void etcd_store::impl::deliver(etcd_watch_state& w) {
  if (!w.pending || (w.buffer.empty() && !w.failure)) return;
  auto h = std::move(*w.pending);
  w.pending.reset();
  auto work = std::move(w.pending_work);  // released after the completion is posted
  if (w.buffer.empty()) {
    agentcore::detail::post_completion(std::move(h), result<std::vector<watch_event>>(w.failure));
    return;
  }
  std::vector<watch_event> arrived = std::move(w.buffer);
  w.buffer.clear();
  w.next = std::max(w.next, arrived.back().kv.mod_revision + 1);
  agentcore::detail::post_completion(std::move(h), result<std::vector<watch_event>>(std::move(arrived)));
}

void etcd_store::impl::end_watch(etcd_watch_state& w, error_info why) {
  {
    std::lock_guard lock(w.mutex);
    if (!w.failure) w.failure = std::move(why);
    if (w.pending) {
      auto h = std::move(*w.pending);
      w.pending.reset();
      auto work = std::move(w.pending_work);  // released after the completion is posted
      agentcore::detail::post_completion(std::move(h), result<std::vector<watch_event>>(w.failure));
    }
  }
  w.cv.notify_all();
}

/// The watch stream, reconnecting (from after the last event) on another
/// endpoint when the connection fails, until canceled or refused.
awaitable<void> etcd_store::impl::run_watch(std::shared_ptr<etcd_watch_state> w) {
  std::chrono::milliseconds backoff{50};
  std::size_t index = current.load();
  for (;;) {
    {
      std::lock_guard lock(w->mutex);
      if (w->failure) co_return;
    }
    if (is_closed()) co_return end_watch(*w, closed_error());
    json::object create{{"key", b64(w->key.empty() ? std::string(1, '\0') : w->key)},
                        {"range_end", b64(prefix_end(w->key))},
                        {"start_revision", std::to_string(w->start)}};
    json::object body{{"create_request", std::move(create)}};
    net::limits lim = limits_for_call();
    lim.total = std::chrono::hours(24 * 365 * 10);
    lim.max_body = std::numeric_limits<std::size_t>::max();
    const net::url& to = eps[index % eps.size()];
    auto sink = [this, w](std::string_view chunk) { return feed(*w, chunk); };
    auto r = co_await asio::async_initiate<decltype(use_awaitable), void(result<net::http_response>)>(
        [&](auto handler) {
          http->request(to, make_request("/v3/watch", json::serialize(body)), lim, sink,
                        asio::bind_cancellation_slot(w->signal.slot(), std::move(handler)));
        },
        use_awaitable);
    {
      std::lock_guard lock(w->mutex);
      if (w->failure) co_return;
    }
    if (!r && r.error() == error::canceled) co_return end_watch(*w, fail(error::canceled, "etcd watch: canceled"));
    if (r && r->status / 100 != 2) {
      auto v = parse_json(r->body);
      std::string message = v && v->is_object() ? string_at(v->get_object(), "message") : snippet(r->body);
      if (r->status == 401 || r->status == 403)
        co_return end_watch(*w, fail(error::permission_denied,
                                     fmt::format("etcd watch on '{}' at {}: {}", w->user_prefix, to.origin(), message)));
    }
    // The stream ended (the member went away, or answered with an error):
    // on, from after the last event, at the next endpoint.
    ++index;
    bool created;
    {
      std::lock_guard lock(w->mutex);
      created = w->created;
    }
    if (!created && r && r->status / 100 == 2) {
      // Ended before saying it was created: not etcd, or refused.
      co_return end_watch(*w, net::fail(net::error::protocol,
                                        fmt::format("etcd watch on '{}' at {}: the stream ended before the watch "
                                                    "was created",
                                                    w->user_prefix, to.origin())));
    }
    asio::steady_timer t(io, backoff);
    co_await t.async_wait(asio::redirect_error(use_awaitable, ignored_));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
    if (!created && backoff >= std::chrono::milliseconds(1000) && index >= 2 * eps.size()) {
      co_return end_watch(*w, fail(error::unavailable,
                                   fmt::format("etcd watch on '{}': no endpoint accepted the watch (last: {}); check "
                                               "that the cluster is running",
                                               w->user_prefix, r ? fmt::format("HTTP {}", r->status)
                                                                 : r.error().message())));
    }
  }
}

// --- the watcher ---

namespace {

class etcd_watcher final : public watcher {
public:
  etcd_watcher(std::shared_ptr<etcd_watch_state> s, std::chrono::milliseconds timeout,
               std::shared_ptr<std::atomic<std::int64_t>> compacted)
      : state_(std::move(s)), timeout_(timeout), compacted_(std::move(compacted)) {}
  ~etcd_watcher() override { do_cancel(); }

  revision next_revision() const override {
    std::lock_guard lock(state_->mutex);
    return state_->next;
  }

private:
  result<std::vector<watch_event>> do_poll() override {
    std::unique_lock lock(state_->mutex);
    auto& w = *state_;
    // This store's own commits with events here must have arrived.
    if (!w.cv.wait_for(lock, timeout_, [&] { return w.failure || w.stream_through >= w.expect_through; }))
      return net::fail(net::error::timed_out,
                       fmt::format("etcd watch on '{}': the events of this store's commit at revision {} did not "
                                   "arrive within {} ms",
                                   w.user_prefix, w.expect_through - 1, timeout_.count()));
    if (w.failure) return w.failure;
    if (auto c = compacted_ ? compacted_->load() : 0; c > 0 && !w.buffer.empty() && w.buffer.front().kv.mod_revision + 1 < c)
      return fail(error::compacted,
                  fmt::format("etcd watch on '{}': its next event (revision {}) is older than the compacted history "
                              "(revision {}); read the state with range() and watch from its revision",
                              w.user_prefix, w.buffer.front().kv.mod_revision, c - 1));
    auto out = std::move(w.buffer);
    w.buffer.clear();
    if (!out.empty()) w.next = std::max(w.next, out.back().kv.mod_revision + 1);
    return out;
  }

  void do_async_next(asio::any_completion_handler<next_signature> handler) override {
    std::lock_guard lock(state_->mutex);
    auto& w = *state_;
    if (w.pending) {
      return agentcore::detail::post_completion(
          std::move(handler), result<std::vector<watch_event>>(fail(
                                  error::invalid_argument, "etcd watch: an async_next is already pending; wait for it first")));
    }
    if (!w.buffer.empty()) {
      auto out = std::move(w.buffer);
      w.buffer.clear();
      w.next = std::max(w.next, out.back().kv.mod_revision + 1);
      return agentcore::detail::post_completion(std::move(handler), result<std::vector<watch_event>>(std::move(out)));
    }
    if (w.failure)
      return agentcore::detail::post_completion(std::move(handler), result<std::vector<watch_event>>(w.failure));
    w.pending_work = agentcore::detail::track_work(handler);
    w.pending.emplace(std::move(handler));
  }

  void do_cancel() override {
    std::function<void()> cancel;
    std::optional<asio::any_completion_handler<next_signature>> pending;
    asio::any_completion_executor work;  // released after the completion is posted
    {
      std::lock_guard lock(state_->mutex);
      work = std::move(state_->pending_work);
      cancel = std::move(state_->cancel_stream);
      state_->cancel_stream = nullptr;
      if (!state_->failure) state_->failure = fail(error::canceled, "etcd watch: canceled");
      pending = std::move(state_->pending);
      state_->pending.reset();
    }
    if (cancel) cancel();
    if (pending)
      agentcore::detail::post_completion(std::move(*pending),
                                         result<std::vector<watch_event>>(fail(error::canceled, "etcd watch: canceled")));
    state_->cv.notify_all();
  }

  std::shared_ptr<etcd_watch_state> state_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<std::atomic<std::int64_t>> compacted_;
};

}  // namespace

result<std::unique_ptr<watcher>> etcd_store::do_watch(std::string prefix, revision from) {
  if (impl_->is_closed()) return impl_->closed_error();
  auto w = std::make_shared<etcd_watch_state>();
  w->user_prefix = prefix;
  w->key = impl_->full(prefix);
  w->start = std::max<revision>(from, 1) + 1;
  w->next = std::max<revision>(from, 1);
  w->stream_through = w->start - 1;
  // From compacted history? A read at the start revision says (etcd would
  // create the watch first and cancel it right after).
  auto check = impl_->wait(impl_->readable_at(w->start));
  if (!check) {
    if (check.error() != error::compacted) return check.error();
    return fail(error::compacted,
                fmt::format("etcd watch on '{}' from revision {}: that history was compacted; read the state with "
                            "range() and watch from its revision",
                            prefix, from));
  }
  {
    std::lock_guard lock(impl_->mutex);
    if (impl_->closed) return impl_->closed_error();
    impl_->watchers.push_back(w);
    for (const auto& [rev, keys] : impl_->recent)
      if (rev >= w->start)
        for (const auto& k : keys)
          if (k.starts_with(w->key)) w->expect_through = std::max(w->expect_through, rev);
  }
  impl* self = impl_.get();
  std::weak_ptr<etcd_watch_state> weak = w;
  w->cancel_stream = [self, weak] {
    asio::post(self->io, [weak] {
      if (auto s = weak.lock()) s->signal.emit(asio::cancellation_type::terminal);
    });
  };
  asio::co_spawn(impl_->io, impl_->run_watch(w), asio::detached);
  // Wait until etcd says the watch exists (or refuses it: compacted history).
  auto compacted = std::shared_ptr<std::atomic<std::int64_t>>(impl_, &impl_->compacted);
  auto watcher = std::make_unique<etcd_watcher>(w, impl_->opt.request_timeout, compacted);
  std::unique_lock lock(w->mutex);
  if (!w->cv.wait_for(lock, impl_->opt.request_timeout, [&] { return w->created || bool(w->failure); })) {
    lock.unlock();
    return net::fail(net::error::timed_out, fmt::format("etcd watch on '{}': not created within {} ms", prefix,
                                                        impl_->opt.request_timeout.count()));
  }
  if (w->failure) {
    error_info e = w->failure;
    lock.unlock();
    return e;
  }
  lock.unlock();
  return std::unique_ptr<agentcore::store::watcher>(std::move(watcher));
}

}  // namespace agentcore::store
