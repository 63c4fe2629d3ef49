// A plugin: a shared library adding a model backend, loaded by a host from
// AGENTCORE_PLUGIN_PATH and used through the spec "plugin:echo:MODEL". This
// "model" answers with the user's last words, upper-cased when MODEL is
// "shout". A real plugin would wrap an in-house inference service.
#include <agentcore/model/plugin.hpp>

#include <algorithm>
#include <cctype>

namespace {

using namespace agentcore;

class echo_model final : public model::client {
public:
  explicit echo_model(std::string variant) : variant_(std::move(variant)) {}
  std::string name() const override { return "plugin:echo:" + variant_; }

protected:
  void do_chat(model::request req, model::delta_handler on_delta,
               boost::asio::any_completion_handler<model::chat_signature> handler) override {
    std::string text = req.messages.empty() ? std::string() : req.messages.back().text();
    if (variant_ == "shout")
      std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::toupper(c); });
    model::response r;
    r.message = model::assistant("echo: " + text);
    r.model_name = name();
    r.usage.input_tokens = text.size();
    stream_whole(r, on_delta);
    complete(std::move(handler), std::move(r));
  }

private:
  std::string variant_;
};

error_info register_echo(model::plugin_registrar& r) {
  return r.add([](std::string_view variant, const model::client_context&,
                  json::object& unread) -> result<std::shared_ptr<model::client>> {
    unread.erase("greeting");  // an option this backend reads (and ignores)
    return std::shared_ptr<model::client>(std::make_shared<echo_model>(std::string(variant)));
  });
}

}  // namespace

AGENTCORE_PLUGIN("echo", register_echo)
