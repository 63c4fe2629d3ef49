#include <agentcore/model/middleware.hpp>

#include <agentcore/net/error.hpp>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/format.h>

#include <deque>
#include <optional>
#include <random>

namespace agentcore::model {

namespace asio = boost::asio;
using handler_type = asio::any_completion_handler<chat_signature>;
// Boost 1.81's any_completion_handler move assignment recurses forever (it
// copies from an lvalue): handlers are only ever move-constructed here, into
// an optional.
using handler_slot = std::optional<handler_type>;

bool is_retryable(const error_info& e) {
  const auto& c = e.code();
  return c == error::rate_limited || c == error::unavailable || c == net::error::connection_lost;
}

namespace {

error_info canceled_error(const std::string& who) {
  return fail(agentcore::error::canceled, fmt::format("model: {}: canceled", who));
}

// Starts a call on `inner`, streamed if `on_delta` is set.
template <class Handler>
void call(client& inner, request req, delta_handler on_delta, Handler&& h) {
  if (on_delta) inner.async_stream(std::move(req), std::move(on_delta), std::forward<Handler>(h));
  else inner.async_chat(std::move(req), std::forward<Handler>(h));
}

// --- retry ---

class retry_client final : public client {
public:
  retry_client(asio::any_io_executor ex, std::shared_ptr<client> inner, retry_options o)
      : ex_(std::move(ex)), inner_(std::move(inner)), options_(o) {}
  std::string name() const override { return inner_->name(); }
  engine_kind engine() const override { return inner_->engine(); }

protected:
  // The call's state. Its timer goes when the call completes (finish()), not
  // with the state: the state lives as long as the inner client's completion
  // handler, which may be destroyed later on another thread, after the
  // caller's io_context, and a timer must not outlive its io_context.
  struct state {
    state(std::shared_ptr<client> i, retry_options o, const asio::any_io_executor& ex)
        : inner(std::move(i)), options(o) {
      timer.emplace(ex);
    }
    std::shared_ptr<client> inner;
    retry_options options;
    std::optional<asio::steady_timer> timer;
    request req;
    delta_handler on_delta;
    handler_slot handler;
    asio::cancellation_signal signal;  // cancels the attempt in flight
    asio::cancellation_slot outer;
    int attempts = 0;
    bool delivered = false;
    bool canceled = false;
  };

  void do_chat(request req, delta_handler on_delta, handler_type handler) override {
    auto st = std::make_shared<state>(inner_, options_, ex_);
    st->req = std::move(req);
    st->on_delta = std::move(on_delta);
    st->handler.emplace(std::move(handler));
    st->outer = asio::get_associated_cancellation_slot(*st->handler);
    if (st->outer.is_connected())
      st->outer.assign([st](asio::cancellation_type t) {
        st->canceled = true;
        if (st->timer) st->timer->cancel();
        st->signal.emit(t);
      });
    start(st);
  }

private:
  static void start(const std::shared_ptr<state>& st) {
    delta_handler wrapped;
    if (st->on_delta)
      wrapped = [st](const delta& d) {
        st->delivered = true;
        st->on_delta(d);
      };
    call(*st->inner, st->req, std::move(wrapped),
         asio::bind_cancellation_slot(st->signal.slot(), [st](result_type r) { done(st, std::move(r)); }));
  }

  static void done(const std::shared_ptr<state>& st, result_type r) {
    ++st->attempts;
    if (!r && !st->canceled && !st->delivered && is_retryable(r.error()) && st->attempts < st->options.max_attempts) {
      auto delay = backoff(st->options, st->attempts);
      bool wait = true;
      if (auto asked = r.error().retry_after()) {
        if (*asked > st->options.max_retry_after) wait = false;
        else delay = std::max(delay, *asked);
      }
      if (wait) {
        st->timer->expires_after(delay);
        st->timer->async_wait([st](boost::system::error_code ec) {
          if (ec || st->canceled) return finish(st, canceled_error(st->inner->name()));
          start(st);
        });
        return;
      }
    }
    if (!r && st->attempts > 1)
      r = error_info(r.error().code(), fmt::format("{} (gave up after {} attempts)", r.error().message(), st->attempts));
    finish(st, std::move(r));
  }

  static std::chrono::milliseconds backoff(const retry_options& o, int attempt) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    double d = static_cast<double>(o.initial_delay.count());
    for (int i = 1; i < attempt; ++i) d *= o.multiplier;
    d = std::min(d, static_cast<double>(o.max_delay.count()));
    std::uniform_real_distribution<double> factor(1 - o.jitter, 1 + o.jitter);
    return std::chrono::milliseconds(static_cast<std::int64_t>(d * factor(rng)));
  }

  static void finish(const std::shared_ptr<state>& st, result_type r) {
    if (st->outer.is_connected()) st->outer.clear();
    st->timer.reset();
    complete(std::move(*st->handler), std::move(r));
  }

  asio::any_io_executor ex_;
  std::shared_ptr<client> inner_;
  retry_options options_;
};

// --- limits ---

}  // namespace

struct limiter::state {
  state(limit_options o, asio::any_io_executor ex)
      : options(o), timer(std::move(ex)), tokens(o.burst), last(std::chrono::steady_clock::now()) {}
  struct pending {
    std::shared_ptr<client> inner;
    request req;
    delta_handler on_delta;
    handler_slot handler;
    asio::cancellation_signal signal;
    asio::cancellation_slot outer;
    bool started = false;
    bool finished = false;
  };
  limit_options options;
  asio::steady_timer timer;
  std::mutex mutex;
  std::deque<std::shared_ptr<pending>> queue;
  std::size_t in_flight = 0;
  double tokens;
  std::chrono::steady_clock::time_point last;
  bool timer_armed = false;
};

std::shared_ptr<limiter> limiter::make(asio::any_io_executor ex, limit_options options) {
  auto l = std::make_shared<limiter>();
  l->state_ = std::make_shared<state>(options, std::move(ex));
  return l;
}

namespace {

class limit_client final : public client {
public:
  limit_client(std::shared_ptr<client> inner, std::shared_ptr<limiter> l) : inner_(std::move(inner)), limiter_(std::move(l)) {}
  std::string name() const override { return inner_->name(); }
  engine_kind engine() const override { return inner_->engine(); }

protected:
  using shared = limiter::state;
  using pending = limiter::state::pending;

  void do_chat(request req, delta_handler on_delta, handler_type handler) override {
    auto p = std::make_shared<pending>();
    p->inner = inner_;
    p->req = std::move(req);
    p->on_delta = std::move(on_delta);
    p->handler.emplace(std::move(handler));
    p->outer = asio::get_associated_cancellation_slot(*p->handler);
    auto s = limiter_->state_;
    if (p->outer.is_connected())
      p->outer.assign([s, p](asio::cancellation_type t) {
        bool queued = false;
        {
          std::lock_guard lock(s->mutex);
          if (!p->started && !p->finished) {
            p->finished = true;
            queued = true;
            std::erase(s->queue, p);
          }
        }
        if (queued) {
          p->outer.clear();
          complete(std::move(*p->handler), canceled_error(p->inner->name()));
        } else {
          p->signal.emit(t);
        }
      });
    {
      std::lock_guard lock(s->mutex);
      s->queue.push_back(p);
    }
    pump(s);
  }

private:
  static void pump(const std::shared_ptr<shared>& s) {
    for (;;) {
      std::shared_ptr<pending> p;
      {
        std::lock_guard lock(s->mutex);
        if (s->queue.empty()) return;
        if (s->options.max_in_flight && s->in_flight >= s->options.max_in_flight) return;
        if (s->options.requests_per_second > 0) {
          auto now = std::chrono::steady_clock::now();
          s->tokens = std::min(s->options.burst, s->tokens + std::chrono::duration<double>(now - s->last).count() *
                                                                 s->options.requests_per_second);
          s->last = now;
          if (s->tokens < 1) {
            if (!s->timer_armed) {
              s->timer_armed = true;
              auto wait = std::chrono::duration<double>((1 - s->tokens) / s->options.requests_per_second);
              s->timer.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(wait));
              s->timer.async_wait([s](boost::system::error_code) {
                {
                  std::lock_guard lock(s->mutex);
                  s->timer_armed = false;
                  // Nothing is waiting now; cancel() says so to the timer,
                  // whose destruction then leaves its io_context alone (the
                  // limiter may be destroyed after it).
                  s->timer.cancel();
                }
                pump(s);
              });
            }
            return;
          }
          s->tokens -= 1;
        }
        p = s->queue.front();
        s->queue.pop_front();
        p->started = true;
        ++s->in_flight;
      }
      call(*p->inner, std::move(p->req), std::move(p->on_delta),
           asio::bind_cancellation_slot(p->signal.slot(), [s, p](result_type r) {
             {
               std::lock_guard lock(s->mutex);
               --s->in_flight;
               p->finished = true;
             }
             if (p->outer.is_connected()) p->outer.clear();
             complete(std::move(*p->handler), std::move(r));
             pump(s);
           }));
    }
  }

  std::shared_ptr<client> inner_;
  std::shared_ptr<limiter> limiter_;
};

// --- time limits ---

class timeout_client final : public client {
public:
  timeout_client(asio::any_io_executor ex, std::shared_ptr<client> inner, timeout_options o)
      : ex_(std::move(ex)), inner_(std::move(inner)), options_(o) {}
  std::string name() const override { return inner_->name(); }
  engine_kind engine() const override { return inner_->engine(); }

protected:
  // As retry_client's: the timers go when the call completes, not with the
  // state, which the inner client's completion handler may keep past the
  // caller's io_context.
  struct state {
    explicit state(const asio::any_io_executor& ex) {
      total.emplace(ex);
      first.emplace(ex);
    }
    std::optional<asio::steady_timer> total, first;
    asio::cancellation_signal signal;
    asio::cancellation_slot outer;
    handler_slot handler;
    std::string expired;  // which limit fired
    bool got_first = false;
    bool done = false;
  };

  void do_chat(request req, delta_handler on_delta, handler_type handler) override {
    auto st = std::make_shared<state>(ex_);
    st->handler.emplace(std::move(handler));
    st->outer = asio::get_associated_cancellation_slot(*st->handler);
    if (st->outer.is_connected()) st->outer.assign([st](asio::cancellation_type t) { st->signal.emit(t); });
    auto expire = [st](std::string which) {
      return [st, which](boost::system::error_code ec) {
        if (ec || st->done || st->expired.size() || (which == "first byte" && st->got_first)) return;
        st->expired = which;
        st->signal.emit(asio::cancellation_type::terminal);
      };
    };
    if (options_.total.count() > 0) {
      st->total->expires_after(options_.total);
      st->total->async_wait(expire("total"));
    }
    if (options_.first_byte.count() > 0) {
      st->first->expires_after(options_.first_byte);
      st->first->async_wait(expire("first byte"));
    }
    delta_handler wrapped;
    if (on_delta)
      wrapped = [st, on_delta = std::move(on_delta)](const delta& d) {
        st->got_first = true;
        on_delta(d);
      };
    auto name = inner_->name();
    auto o = options_;
    call(*inner_, std::move(req), std::move(wrapped),
         asio::bind_cancellation_slot(st->signal.slot(), [st, name, o](result_type r) {
           st->done = true;
           st->total.reset();  // cancels its wait
           st->first.reset();
           if (!st->expired.empty() && !r)
             r = net::fail(net::error::timed_out,
                           fmt::format("model: {}: no {} within {} ms", name,
                                       st->expired == "total" ? "answer" : "first byte",
                                       (st->expired == "total" ? o.total : o.first_byte).count()));
           if (st->outer.is_connected()) st->outer.clear();
           complete(std::move(*st->handler), std::move(r));
         }));
  }

private:
  asio::any_io_executor ex_;
  std::shared_ptr<client> inner_;
  timeout_options options_;
};

// --- budgets ---

class budget_client final : public client {
public:
  budget_client(std::shared_ptr<client> inner, budget_picker pick, price_table prices)
      : inner_(std::move(inner)), pick_(std::move(pick)), prices_(std::make_shared<price_table>(std::move(prices))) {}
  std::string name() const override { return inner_->name(); }
  engine_kind engine() const override { return inner_->engine(); }

protected:
  void do_chat(request req, delta_handler on_delta, handler_type handler) override {
    auto b = pick_ ? pick_(req) : nullptr;
    if (b) {
      if (auto e = b->check()) return complete(std::move(handler), e);
      if (auto left = b->tokens_left(); left && *left < req.max_tokens)
        req.max_tokens = static_cast<std::uint32_t>(std::max<std::uint64_t>(1, *left));
    }
    auto slot = asio::get_associated_cancellation_slot(handler);
    call(*inner_, std::move(req), std::move(on_delta),
         asio::bind_cancellation_slot(slot, [b, prices = prices_, h = std::move(handler)](result_type r) mutable {
           if (r && b) {
             const auto& u = r->usage;
             b->charge(u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_write_tokens,
                       cost_of(u, r->model_name, *prices));
           }
           complete(std::move(h), std::move(r));
         }));
  }

private:
  std::shared_ptr<client> inner_;
  budget_picker pick_;
  std::shared_ptr<price_table> prices_;
};

}  // namespace

std::shared_ptr<client> with_retry(asio::any_io_executor ex, std::shared_ptr<client> inner, retry_options options) {
  return std::make_shared<retry_client>(std::move(ex), std::move(inner), options);
}

std::shared_ptr<client> with_limits(asio::any_io_executor ex, std::shared_ptr<client> inner, limit_options options) {
  return std::make_shared<limit_client>(std::move(inner), limiter::make(std::move(ex), options));
}

std::shared_ptr<client> with_limits(std::shared_ptr<client> inner, std::shared_ptr<limiter> shared) {
  return std::make_shared<limit_client>(std::move(inner), std::move(shared));
}

std::shared_ptr<client> with_timeouts(asio::any_io_executor ex, std::shared_ptr<client> inner,
                                      timeout_options options) {
  return std::make_shared<timeout_client>(std::move(ex), std::move(inner), options);
}

std::shared_ptr<client> with_budget(std::shared_ptr<client> inner, budget_picker pick, price_table prices) {
  return std::make_shared<budget_client>(std::move(inner), std::move(pick), std::move(prices));
}

double cost_of(const usage& u, const std::string& model_name, const price_table& prices) {
  const price* p = nullptr;
  if (auto it = prices.find(model_name); it != prices.end()) {
    p = &it->second;
  } else {
    std::size_t best = 0;
    for (const auto& [name, pr] : prices)
      if (name != "*" && model_name.starts_with(name) && name.size() > best) {
        best = name.size();
        p = &pr;
      }
    if (!p)
      if (auto star = prices.find("*"); star != prices.end()) p = &star->second;
  }
  if (!p) return 0;
  return (static_cast<double>(u.input_tokens) * p->input_per_mtok +
          static_cast<double>(u.output_tokens) * p->output_per_mtok +
          static_cast<double>(u.cache_read_tokens) * p->cache_read_per_mtok +
          static_cast<double>(u.cache_write_tokens) * p->cache_write_per_mtok) /
         1e6;
}

budget::budget(std::string name, budget_limits limits, std::shared_ptr<budget> parent)
    : name_(std::move(name)), limits_(limits), parent_(std::move(parent)) {}

std::shared_ptr<budget> budget::make(std::string name, budget_limits limits, std::shared_ptr<budget> parent) {
  return std::shared_ptr<budget>(new budget(std::move(name), limits, std::move(parent)));
}

std::shared_ptr<budget> budget::child(std::string name, budget_limits limits) {
  return make(std::move(name), limits, shared_from_this());
}

error_info budget::check() const {
  for (const budget* b = this; b; b = b->parent_.get()) {
    std::lock_guard lock(b->mutex_);
    if (b->limits_.tokens && b->tokens_ >= *b->limits_.tokens)
      return fail(error::budget_exhausted,
                  fmt::format("model: budget '{}' is exhausted: {} of its {} tokens spent; raise its limit or stop here",
                              b->name_, b->tokens_, *b->limits_.tokens));
    if (b->limits_.cost && b->cost_ >= *b->limits_.cost)
      return fail(error::budget_exhausted,
                  fmt::format("model: budget '{}' is exhausted: {:.4f} of its {:.4f} spent; raise its limit or stop here",
                              b->name_, b->cost_, *b->limits_.cost));
  }
  return {};
}

bool budget::spent() const {
  std::lock_guard lock(mutex_);
  return (limits_.tokens && tokens_ >= *limits_.tokens) || (limits_.cost && cost_ >= *limits_.cost);
}

std::optional<std::uint64_t> budget::tokens_left() const {
  std::optional<std::uint64_t> left;
  for (const budget* b = this; b; b = b->parent_.get()) {
    std::lock_guard lock(b->mutex_);
    if (!b->limits_.tokens) continue;
    std::uint64_t here = *b->limits_.tokens > b->tokens_ ? *b->limits_.tokens - b->tokens_ : 0;
    left = left ? std::min(*left, here) : here;
  }
  return left;
}

void budget::charge(std::uint64_t tokens, double cost) {
  for (budget* b = this; b; b = b->parent_.get()) {
    std::lock_guard lock(b->mutex_);
    b->tokens_ += tokens;
    b->cost_ += cost;
  }
}

std::uint64_t budget::tokens_used() const {
  std::lock_guard lock(mutex_);
  return tokens_;
}

double budget::cost_used() const {
  std::lock_guard lock(mutex_);
  return cost_;
}

budget_picker budget_by_role_and_task(std::shared_ptr<budget> run, std::map<std::string, budget_limits> roles,
                                      budget_limits per_task) {
  struct tree {
    std::mutex mutex;
    std::map<std::string, std::shared_ptr<budget>> roles;
    std::map<std::pair<std::string, std::string>, std::shared_ptr<budget>> tasks;
  };
  auto t = std::make_shared<tree>();
  return [t, run = std::move(run), roles = std::move(roles), per_task](const request& r) -> std::shared_ptr<budget> {
    std::lock_guard lock(t->mutex);
    auto role_name = r.tags.role.empty() ? std::string("(no role)") : r.tags.role;
    auto& role = t->roles[role_name];
    if (!role) {
      auto it = roles.find(role_name);
      role = run->child("role " + role_name, it == roles.end() ? budget_limits{} : it->second);
    }
    if (r.tags.task.empty()) return role;
    auto& task = t->tasks[{role_name, r.tags.task}];
    if (!task) task = role->child("task " + r.tags.task, per_task);
    return task;
  };
}

}  // namespace agentcore::model
