#include <agentcore/model/client.hpp>

#include "detail/complete.hpp"

#include <future>

namespace agentcore::model {

result_type client::chat(request req) {
  std::promise<result_type> done;
  auto answer = done.get_future();
  do_chat(std::move(req), delta_handler(), [&done](result_type r) { done.set_value(std::move(r)); });
  return answer.get();
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
