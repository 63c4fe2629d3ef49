// agentcore/core/detail/never_inline.hpp: what every async operation of the
// library does to its handler before type-erasing it, so that its completion
// never runs inside the initiating call.
//
// Completions are posted to the handler's associated executor with
// blocking.never preferred. Once the handler is an any_completion_handler,
// its executor is an any_completion_executor, which cannot carry that
// property: the preference is dropped, and an io_context executor runs the
// completion inline when posted from its own thread, inside the caller's
// call, while the caller may hold locks. So the property is applied here,
// while the executor's type is still known.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/execution/blocking.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/system_executor.hpp>

#include <utility>

namespace agentcore::detail {

/// `h` bound to its own associated executor, blocking.never preferred (its
/// allocator and cancellation slot stay associated).
template <class Handler>
auto never_inline(Handler&& h) {
  namespace asio = boost::asio;
  auto ex = asio::prefer(asio::get_associated_executor(h), asio::execution::blocking.never);
  return asio::bind_executor(std::move(ex), std::forward<Handler>(h));
}

/// The same for an operation of an object with an executor of its own (an
/// agent loop, a role, a swarm): a handler that has no associated executor
/// completes on `fallback`, as with Asio's I/O objects (the system executor
/// when `fallback` is empty). A host's `io.run()` then runs its completion.
template <class Handler>
auto never_inline(Handler&& h, boost::asio::any_io_executor fallback) {
  namespace asio = boost::asio;
  if (!fallback) fallback = asio::system_executor();
  auto ex = asio::prefer(asio::get_associated_executor(h, fallback), asio::execution::blocking.never);
  return asio::bind_executor(std::move(ex), std::forward<Handler>(h));
}

}  // namespace agentcore::detail
