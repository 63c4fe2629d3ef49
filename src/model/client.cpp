#include <agentcore/model/client.hpp>

#include "detail/complete.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>

#include <fmt/format.h>

#include <future>
#include <mutex>

namespace agentcore::model {

result_type client::chat(request req) {
  std::promise<result_type> done;
  auto answer = done.get_future();
  do_chat(std::move(req), delta_handler(), [&done](result_type r) { done.set_value(std::move(r)); });
  return answer.get();
}

void client::chat_guarded(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) {
  auto slot = std::make_shared<asio::any_completion_handler<chat_signature>>(std::move(handler));
  auto ex = asio::get_associated_executor(*slot);
  auto cancel = asio::get_associated_cancellation_slot(*slot);
  auto mu = std::make_shared<std::mutex>();
  // The caller's executor counts the call as outstanding work until it
  // completes: a backend that answers from a thread of its own must not let
  // the caller's io_context::run() return in between.
  auto work = std::make_shared<asio::any_completion_executor>(detail::track_work(*slot));
  auto once = [slot, mu, work](result_type r) {
    std::unique_lock lk(*mu);
    if (!*slot) return;  // completed before: a second completion is dropped
    auto h = std::move(*slot);
    lk.unlock();
    complete(std::move(h), std::move(r));
    *work = asio::any_completion_executor();  // posted: the post is the work now
  };
  auto fail_with = [&](std::string what) {
    once(agentcore::fail(agentcore::error::io_error, fmt::format("model: the client '{}' threw: {}", name(), what)));
  };
  try {
    do_chat(std::move(req), std::move(on_delta),
            asio::any_completion_handler<chat_signature>(
                asio::bind_cancellation_slot(cancel, asio::bind_executor(ex, once))));
  } catch (const std::exception& e) {
    fail_with(e.what());
  } catch (...) {
    fail_with("an exception that is not a std::exception");
  }
}

void client::complete(asio::any_completion_handler<chat_signature> handler, result_type r) {
  detail::post_completion(std::move(handler), std::move(r));
}

void client::stream_whole(const response& r, const delta_handler& on_delta) {
  if (!on_delta) return;
  std::size_t calls = 0;
  for (const auto& p : r.message.parts) {
    if (auto* t = std::get_if<text_part>(&p)) {
      on_delta({delta::text, 0, t->text, {}, {}});
    } else if (auto* c = std::get_if<tool_call>(&p)) {
      on_delta({delta::tool_call_start, calls, {}, c->id, c->name});
      on_delta({delta::tool_call_arguments, calls, c->arguments, {}, {}});
      ++calls;
    }
  }
}

}  // namespace agentcore::model
