// Completing a type-erased handler later, never inside the initiating call.
#pragma once

#include <boost/asio/any_completion_executor.hpp>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/system_executor.hpp>

#include <tuple>
#include <utility>

namespace agentcore::detail {

/// Posts `h(args...)` to the handler's associated executor, or to `fallback`
/// when it has none (Asio's rule: an I/O object's operations complete on its
/// executor), with blocking.never so it never runs inline.
template <class Signature, class Executor, class... Args>
void post_completion_or(const Executor& fallback, boost::asio::any_completion_handler<Signature> h, Args&&... args) {
  namespace asio = boost::asio;
  auto ex = asio::prefer(asio::get_associated_executor(h, fallback), asio::execution::blocking.never);
  ex.execute([h = std::move(h), tup = std::make_tuple(std::forward<Args>(args)...)]() mutable {
    std::apply([&](auto&&... a) { std::move(h)(std::move(a)...); }, std::move(tup));
  });
}

/// post_completion_or for an operation with no executor of its own (a store,
/// a model client): a handler without one completes on the system executor.
template <class Signature, class... Args>
void post_completion(boost::asio::any_completion_handler<Signature> h, Args&&... args) {
  post_completion_or(boost::asio::system_executor(), std::move(h), std::forward<Args>(args)...);
}

}  // namespace agentcore::detail

namespace agentcore::detail {

/// For a handler that completes later (after a network round trip, a group
/// commit): an executor that counts as outstanding work on the handler's
/// associated executor for as long as it lives, so that the host's
/// io_context::run() does not return while the operation is in flight, as
/// with Asio's own operations. Keep it beside the handler until completion.
template <class Signature>
boost::asio::any_completion_executor track_work(const boost::asio::any_completion_handler<Signature>& h) {
  namespace asio = boost::asio;
  return asio::prefer(asio::get_associated_executor(h), asio::execution::outstanding_work.tracked);
}

}  // namespace agentcore::detail
