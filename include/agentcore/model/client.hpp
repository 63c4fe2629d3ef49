// agentcore/model/client.hpp: the one interface every model backend
// implements: an asynchronous chat call with tools, optionally streamed.
//
//   auto r = co_await client.async_chat(req, asio::use_awaitable);   // result<response>
//   if (!r) log(r.error().message());        // names the backend and the cause
//   client.async_stream(req, [](const model::delta& d) { show(d.content); },
//                       [](model::result_type r) { ... });
//
// A host writes its own backend by overriding do_chat (see
// examples/model_client). Cancellation is Asio's: bind a cancellation slot to
// the completion token (asio::bind_cancellation_slot); a backend that honours
// it completes with error::canceled.
#pragma once

#include <agentcore/core/detail/never_inline.hpp>
#include <agentcore/model/types.hpp>

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/async_result.hpp>

#include <functional>
#include <string>

namespace agentcore::model {

namespace asio = boost::asio;

using result_type = agentcore::result<response>;
/// Completion signature of a chat: the answer or an error whose message names
/// the backend, and for HTTP backends the endpoint, status and cause. (Not
/// `void(error_code, response)`: the message is what a user needs, and an
/// error_code cannot carry it.)
using chat_signature = void(result_type);
/// Receives the deltas of a streamed answer, in order, before the completion.
using delta_handler = std::function<void(const delta&)>;

/// How a client is driven. `turns`: a chat model; the agent loop asks it turn
/// after turn and runs the tools it calls. `whole_task`: an external coding
/// agent (see cli.hpp) that does a whole attempt in one call, in the
/// request's workdir with tools of its own, and answers with its report; the
/// agent loop then asks it once per attempt and takes its changes from the
/// worktree.
enum class engine_kind { turns, whole_task };

class client {
public:
  virtual ~client() = default;

  /// Asks the model; completes once with the whole answer.
  template <class CompletionToken>
  auto async_chat(request req, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, chat_signature>(
        [this](auto handler, request r) { chat_guarded(std::move(r), delta_handler(), ::agentcore::detail::never_inline(std::move(handler))); }, token,
        std::move(req));
  }

  /// As async_chat, delivering the answer's deltas to `on_delta` as they
  /// arrive. The completion's response is the one async_chat would give.
  template <class CompletionToken>
  auto async_stream(request req, delta_handler on_delta, CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, chat_signature>(
        [this](auto handler, request r, delta_handler d) { chat_guarded(std::move(r), std::move(d), ::agentcore::detail::never_inline(std::move(handler))); },
        token, std::move(req), std::move(on_delta));
  }

  /// Blocks the calling thread until the answer is there. For tools and tests;
  /// never call it on the executor the client completes on.
  result_type chat(request req);

  /// A short name for messages and events: "openai:gpt-4o", "replay:run.jsonl".
  virtual std::string name() const = 0;

  /// How the agent loop drives this client; wrappers answer for the client
  /// they wrap.
  virtual engine_kind engine() const { return engine_kind::turns; }

protected:
  /// The one function a backend implements. `on_delta` is empty for a
  /// non-streamed call; a backend that cannot stream may ignore it and deliver
  /// the whole answer as one text delta per part (stream_whole does that).
  /// Complete `handler` exactly once, never from inside this call (post it:
  /// the caller may hold locks: complete() does that), and never let an exception
  /// escape.
  virtual void do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) = 0;

  /// Completes `handler` with `r` on the handler's executor (the system
  /// executor if it has none), never inline: what a backend calls when done.
  static void complete(asio::any_completion_handler<chat_signature> handler, result_type r);

  /// Delivers a finished answer as deltas: each text part as one text delta,
  /// each tool call as a start and one arguments delta.
  static void stream_whole(const response& r, const delta_handler& on_delta);

private:
  // What async_chat and async_stream call: the completion reaches the caller
  // posted to its executor, never inline, exactly once, whatever the backend
  // does (calls the handler inside do_chat while holding a lock, calls it
  // twice, throws): the caller may hold locks and call again.
  void chat_guarded(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler);
};

}  // namespace agentcore::model
