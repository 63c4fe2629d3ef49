// Running a coroutine as an asynchronous operation of an object that has an
// executor (the agent loop, the roles, the swarm, the HTTP client): the one
// place for what each of their async_ entry points needs.
#pragma once

#include "detail/complete.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>

#include <exception>
#include <string>
#include <utility>

namespace agentcore::detail {

/// What an escaped exception says.
inline std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

enum class forward_cancellation : bool { no, yes };

/// co_spawns `op` on `where` (an executor or strand) and completes `handler`
/// once with what it returns:
/// - an exception that escapes `op` becomes `on_exception(what)`, never a throw;
/// - the completion is posted, never inline, to the handler's associated
///   executor, or to `fallback` (the object's executor) when it has none;
/// - until then the operation is outstanding work on `fallback` and on the
///   handler's executor, so a host's io_context::run() cannot return while a
///   part of it waits on another thread (a model's HTTP thread, a tool's pool);
/// - with forward_cancellation::yes, the handler's cancellation slot cancels `op`.
template <class R, class Where, class Executor, class OnException>
void spawn_operation(const Where& where, const Executor& fallback, boost::asio::awaitable<R> op,
                     boost::asio::any_completion_handler<void(R)> handler, OnException on_exception,
                     forward_cancellation cancel = forward_cancellation::no) {
  namespace asio = boost::asio;
  auto work = std::make_pair(asio::prefer(fallback, asio::execution::outstanding_work.tracked),
                             asio::prefer(asio::get_associated_executor(handler, fallback),
                                          asio::execution::outstanding_work.tracked));
  auto slot = cancel == forward_cancellation::yes ? asio::get_associated_cancellation_slot(handler)
                                                  : asio::cancellation_slot();
  asio::co_spawn(where, std::move(op),
                 asio::bind_cancellation_slot(
                     slot, [fallback, h = std::move(handler), work = std::move(work),
                            on_exception = std::move(on_exception)](std::exception_ptr e, R r) mutable {
                       if (e) r = on_exception(what_of(e));
                       post_completion_or(fallback, std::move(h), std::move(r));
                       work = {};
                     }));
}

}  // namespace agentcore::detail
