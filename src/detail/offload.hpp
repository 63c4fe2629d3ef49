// Running blocking work (libgit2, fsync, processes) on a blocking pool from a
// coroutine, and resuming the coroutine on its own executor afterwards.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace agentcore::detail {

/// co_await offload(pool, [&] { return blocking_call(); }): runs the function
/// on `pool` (inline when `pool` is empty) and returns its value. An exception
/// it throws is rethrown in the coroutine.
template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> offload(boost::asio::any_io_executor pool, F f) {
  namespace asio = boost::asio;
  using R = std::invoke_result_t<F&>;
  if (!pool) co_return f();
  std::optional<R> out;
  std::exception_ptr error;
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&](auto handler) {
        asio::post(pool, [&, handler = std::move(handler)]() mutable {
          try {
            out.emplace(f());
          } catch (...) {
            error = std::current_exception();
          }
          auto ex = asio::get_associated_executor(handler);
          asio::post(ex, std::move(handler));
        });
      },
      asio::use_awaitable);
  if (error) std::rethrow_exception(error);
  co_return std::move(*out);
}

}  // namespace agentcore::detail
