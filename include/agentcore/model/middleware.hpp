// agentcore/model/middleware.hpp: clients that wrap any client: retry with
// backoff, limits on requests in flight and per second, time limits, and
// token and money budgets. Each is itself a client, so they stack:
//
//   auto run = model::budget::make("run", {.tokens = 5'000'000, .cost = 40.0});
//   std::shared_ptr<model::client> c = std::move(openai);
//   c = model::with_limits(ex, c, {.max_in_flight = 32, .requests_per_second = 10});
//   c = model::with_retry(ex, c);                        // 408, 409, 429, 5xx, lost connections
//   c = model::with_timeouts(ex, c, {.first_byte = 60s, .total = 600s});
//   c = model::with_budget(c, model::budget_by_role_and_task(run, {{"worker", {.tokens = 400'000}}}, {.tokens = 80'000}),
//                          prices);
//
// Timers run on the executor given; give the one the inner client completes
// on (one thread, or a strand), as the wrappers cancel inner calls through
// Asio's cancellation slots.
#pragma once

#include <agentcore/model/client.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace agentcore::model {

// --- retry ---

struct retry_options {
  int max_attempts = 5;  ///< including the first
  std::chrono::milliseconds initial_delay{500};
  double multiplier = 2.0;
  std::chrono::milliseconds max_delay{30'000};
  double jitter = 0.2;  ///< each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
  /// A server asking to wait longer than this is not waited for: the error is returned.
  std::chrono::milliseconds max_retry_after{120'000};
};

/// 408, 409, 429, 5xx answers and lost connections: worth trying again.
bool is_retryable(const error_info& e);

/// Retries retryable failures with exponential backoff and jitter, waiting at
/// least what a Retry-After asked. A streamed call is retried only if no
/// delta reached the caller yet (a repeated delta would corrupt what it built).
std::shared_ptr<client> with_retry(boost::asio::any_io_executor ex, std::shared_ptr<client> inner,
                                   retry_options options = {});

// --- limits ---

struct limit_options {
  std::size_t max_in_flight = 0;     ///< 0: no limit
  double requests_per_second = 0;   ///< 0: no limit; a token bucket
  double burst = 1;                  ///< the bucket's size
};

/// Limits shared by every client wrapped with it: make one per endpoint, and
/// every client of that endpoint counts against the same requests in flight
/// and the same token bucket. Thread-safe.
class limiter {
public:
  static std::shared_ptr<limiter> make(boost::asio::any_io_executor ex, limit_options options);
  struct state;
  std::shared_ptr<state> state_;
};

/// Queues calls beyond the limits and starts them as room frees up, in order.
std::shared_ptr<client> with_limits(boost::asio::any_io_executor ex, std::shared_ptr<client> inner,
                                    limit_options options);
/// The same, counting against a limiter shared with other clients.
std::shared_ptr<client> with_limits(std::shared_ptr<client> inner, std::shared_ptr<limiter> shared);

// --- time limits ---

struct timeout_options {
  std::chrono::milliseconds first_byte{0};  ///< until the first delta or the answer; 0: none
  std::chrono::milliseconds total{0};       ///< 0: none
};

/// Cancels a call that takes too long and fails it with net::error::timed_out.
/// (The built-in HTTP clients have their own connect, first-byte and total
/// limits; this is for any client.)
std::shared_ptr<client> with_timeouts(boost::asio::any_io_executor ex, std::shared_ptr<client> inner,
                                      timeout_options options);

// --- budgets ---

struct price {
  double input_per_mtok = 0;  ///< money per million uncached input tokens
  double output_per_mtok = 0;
  double cache_read_per_mtok = 0;
  double cache_write_per_mtok = 0;
};
/// Prices by model name as the backend reports it (response::model_name); a
/// name not found is looked up by its longest listed prefix, then under "*".
using price_table = std::map<std::string, price>;
double cost_of(const usage& u, const std::string& model_name, const price_table& prices);

struct budget_limits {
  std::optional<std::uint64_t> tokens;  ///< input + output + cache tokens; none: unlimited
  std::optional<double> cost;           ///< money in the price table's unit; none: unlimited
};

/// A token and money budget. A child can spend only what it and every
/// ancestor have left; spending charges the whole chain. Thread-safe.
class budget : public std::enable_shared_from_this<budget> {
public:
  static std::shared_ptr<budget> make(std::string name, budget_limits limits, std::shared_ptr<budget> parent = nullptr);
  std::shared_ptr<budget> child(std::string name, budget_limits limits);

  const std::string& name() const noexcept { return name_; }
  /// An error naming the first budget in the chain with nothing left.
  error_info check() const;
  /// Whether this budget's own limits (not its ancestors') are reached.
  bool spent() const;
  /// Tokens that may still be spent: the least left along the chain.
  std::optional<std::uint64_t> tokens_left() const;
  void charge(std::uint64_t tokens, double cost);
  std::uint64_t tokens_used() const;
  double cost_used() const;

private:
  budget(std::string name, budget_limits limits, std::shared_ptr<budget> parent);
  std::string name_;
  budget_limits limits_;
  std::shared_ptr<budget> parent_;
  mutable std::mutex mutex_;
  std::uint64_t tokens_ = 0;
  double cost_ = 0;
};

/// Picks the budget a request spends from (by its tags).
using budget_picker = std::function<std::shared_ptr<budget>(const request&)>;

/// run -> role -> task: a child of `run` per role (limits from `roles`, none
/// if the role is not listed), under it a child per task with `per_task`.
budget_picker budget_by_role_and_task(std::shared_ptr<budget> run, std::map<std::string, budget_limits> roles,
                                      budget_limits per_task = {});

/// Refuses a call whose budget is spent (error::budget_exhausted naming it),
/// lowers max_tokens to what is left, and charges each answer's usage.
std::shared_ptr<client> with_budget(std::shared_ptr<client> inner, budget_picker pick, price_table prices = {});

}  // namespace agentcore::model
