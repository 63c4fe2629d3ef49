// Bringing your own model: derive from model::client and override do_chat.
// Here the "model" is a rule (it asks for one file, then finishes); a real
// one would call your inference service and complete with its answer.
#include <agentcore/model/client.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <iostream>

namespace asio = boost::asio;
using namespace agentcore;

class rule_model final : public model::client {
public:
  std::string name() const override { return "rules:v1"; }

protected:
  void do_chat(model::request req, model::delta_handler on_delta,
               asio::any_completion_handler<model::chat_signature> handler) override {
    model::response r;
    r.model_name = name();
    if (req.messages.size() == 1) {  // first turn: look at the file
      r.message.parts.push_back(model::tool_call{"call-1", "read_file", R"({"path":"README.md"})"});
      r.stop = model::stop_reason::tool_use;
    } else {
      r.message.parts.push_back(model::text_part{"README.md read; nothing to change."});
    }
    r.usage.input_tokens = 12 * req.messages.size();
    stream_whole(r, on_delta);               // streaming callers get deltas too
    complete(std::move(handler), std::move(r));  // never inline, on the caller's executor
  }
};

asio::awaitable<void> conversation(model::client& m) {
  model::request req{.system = "You review repositories."};
  req.messages.push_back(model::user("Is the README up to date?"));
  auto first = co_await m.async_chat(req, asio::use_awaitable);
  if (!first) throw exception(first.error());
  for (const auto& call : first->message.tool_calls()) {
    std::cout << "model calls " << call.name << ' ' << call.arguments << '\n';
    req.messages.push_back(first->message);
    req.messages.push_back({model::role::user, {model::tool_result{call.id, "# agentcore\n..."}}});
  }
  auto second = co_await m.async_chat(req, asio::use_awaitable);
  if (!second) throw exception(second.error());
  std::cout << "model says: " << second->message.text() << '\n';
}

int main() {
  asio::io_context io;
  rule_model m;
  asio::co_spawn(io, conversation(m), [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  io.run();
}
