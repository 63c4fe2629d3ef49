#include <agentcore/model/http_clients.hpp>

#include "model/codec.hpp"
#include "net/http.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>

#include <fmt/format.h>

#include <cstdlib>
#include <ctime>

namespace agentcore::model {

namespace {

class http_chat_client final : public client {
public:
  http_chat_client(boost::asio::any_io_executor ex, detail::api a, http_client_options o, net::url base, std::string key)
      : api_(a),
        options_(std::move(o)),
        base_(std::move(base)),
        key_(std::move(key)),
        http_(std::move(ex), net::http_options{.verify_tls = options_.verify_tls,
                                               .ca_file = options_.ca_file,
                                               .max_idle = options_.max_idle_connections,
                                               .proxy_from_env = options_.proxy_from_env}) {
    std::string path = base_.path == "/" ? "" : base_.path;
    while (!path.empty() && path.back() == '/') path.pop_back();
    target_ = path + (api_ == detail::api::openai ? "/chat/completions" : "/v1/messages");
  }

  std::string name() const override {
    return fmt::format("{}:{}", api_ == detail::api::openai ? "openai" : "anthropic", options_.model);
  }

protected:
  void do_chat(request req, delta_handler on_delta, asio::any_completion_handler<chat_signature> handler) override {
    bool stream = static_cast<bool>(on_delta);
    auto body = detail::encode_request(api_, req, options_.model, stream);
    if (!body) return complete(std::move(handler), body.error());
    net::http_request hr;
    hr.target = target_;
    hr.body = std::move(*body);
    hr.headers.push_back({"content-type", "application/json"});
    if (stream) hr.headers.push_back({"accept", "text/event-stream"});
    if (api_ == detail::api::openai) {
      if (!key_.empty()) hr.headers.push_back({"authorization", "Bearer " + key_});
    } else {
      if (!key_.empty()) hr.headers.push_back({"x-api-key", key_});
      hr.headers.push_back({"anthropic-version", options_.anthropic_version});
    }
    for (const auto& [k, v] : options_.headers) hr.headers.push_back({k, v});

    // Streaming: bytes -> events -> deltas, as they arrive.
    struct stream_state {
      std::unique_ptr<detail::stream_decoder> decoder;
      std::unique_ptr<detail::sse_parser> parser;
    };
    std::shared_ptr<stream_state> st;
    net::body_sink sink;
    if (stream) {
      st = std::make_shared<stream_state>();
      st->decoder = detail::make_stream_decoder(api_);
      st->parser = std::make_unique<detail::sse_parser>(
          [st_raw = st.get(), on_delta](const detail::sse_event& e) { return st_raw->decoder->on_event(e, on_delta); });
      sink = [st](std::string_view bytes) { return st->parser->feed(bytes); };
    }
    std::string what = fmt::format("POST {}{}", base_.origin(), target_);
    auto started = std::chrono::steady_clock::now();
    net::limits lim{options_.connect_timeout, options_.first_byte_timeout, options_.total_timeout,
                    options_.max_response_bytes};
    // The handler's cancellation slot goes to the HTTP exchange.
    auto slot = asio::get_associated_cancellation_slot(handler);
    http_.request(base_, std::move(hr), lim, std::move(sink),
                  asio::bind_cancellation_slot(
                      slot, [api = api_, model = options_.model, st, what, started,
                             h = std::move(handler)](result<net::http_response> r) mutable {
                        // Nothing of `this` here: the client may be gone by now.
                        complete(std::move(h), finish(api, model, std::move(r), st ? st->parser.get() : nullptr,
                                                      st ? st->decoder.get() : nullptr, what, started));
                      }));
  }

private:
  // Retry-After in seconds or as an HTTP date; OpenAI's retry-after-ms first.
  static std::optional<std::chrono::milliseconds> retry_after(const net::http_response& r) {
    if (auto v = r.get("retry-after-ms"); !v.empty()) {
      char* end = nullptr;
      double ms = std::strtod(v.c_str(), &end);
      if (end != v.c_str() && ms >= 0) return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
    }
    auto v = r.get("retry-after");
    if (v.empty()) return std::nullopt;
    char* end = nullptr;
    double s = std::strtod(v.c_str(), &end);
    if (end != v.c_str() && *end == '\0' && s >= 0) return std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
    std::tm tm{};
    if (strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
      auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
      auto d = std::chrono::duration_cast<std::chrono::milliseconds>(at - std::chrono::system_clock::now());
      return std::max(d, std::chrono::milliseconds(0));
    }
    return std::nullopt;
  }

  static result_type finish(detail::api api, const std::string& model, result<net::http_response> r,
                            detail::sse_parser* parser, detail::stream_decoder* decoder, const std::string& what,
                            std::chrono::steady_clock::time_point started) {
    std::string_view api_name = api == detail::api::openai ? "openai" : "anthropic";
    if (!r) return error_info(r.error().code(), fmt::format("model: {}: {}", api_name, r.error().message()));
    if (r->status / 100 != 2) {
      auto wait = retry_after(*r);
      error code = r->status == 429                                                  ? error::rate_limited
                   : r->status == 408 || r->status == 409 || r->status / 100 == 5 ? error::unavailable
                                                                                   : error::http_status;
      auto e = fail(code, fmt::format("model: {}: {}: status {}: {}{}", api_name, what, r->status,
                                      detail::error_message(r->body),
                                      wait ? fmt::format(" (retry after {} ms)", wait->count()) : std::string()));
      if (wait) e.set_retry_after(*wait);
      return e;
    }
    result_type out = [&]() -> result_type {
      if (!decoder) return detail::decode_response(api, r->body);
      if (auto e = parser->finish()) return e;
      return decoder->finish();
    }();
    if (!out) return error_info(out.error().code(), fmt::format("{} ({})", out.error().message(), what));
    out->latency = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    if (out->model_name.empty()) out->model_name = model;
    return out;
  }

  detail::api api_;
  http_client_options options_;
  net::url base_;
  std::string key_;  // never formatted into anything
  net::http_client http_;
  std::string target_;
};

result<std::unique_ptr<client>> make(boost::asio::any_io_executor ex, detail::api a, http_client_options o) {
  std::string_view api_name = a == detail::api::openai ? "openai" : "anthropic";
  if (o.base_url.empty()) o.base_url = a == detail::api::openai ? "https://api.openai.com/v1" : "https://api.anthropic.com";
  if (o.model.empty())
    return fail(agentcore::error::invalid_argument,
                fmt::format("model: {}: no model named; set http_client_options::model", api_name));
  auto base = net::parse_url(o.base_url);
  if (!base) return error_info(base.error().code(), fmt::format("model: {}: base_url {}", api_name, base.error().message()));
  std::string key;
  if (!o.api_key_env.empty()) {
    const char* v = std::getenv(o.api_key_env.c_str());
    if (!v || !*v)
      return fail(error::no_api_key, fmt::format("model: {}: the API key variable '{}' is not set; export it, or name "
                                                 "another in api_key_env",
                                                 api_name, o.api_key_env));
    key = v;
  }
  return std::unique_ptr<client>(new http_chat_client(std::move(ex), a, std::move(o), std::move(*base), std::move(key)));
}

}  // namespace

result<std::unique_ptr<client>> make_openai_client(boost::asio::any_io_executor ex, http_client_options options) {
  return make(std::move(ex), detail::api::openai, std::move(options));
}

result<std::unique_ptr<client>> make_anthropic_client(boost::asio::any_io_executor ex, http_client_options options) {
  return make(std::move(ex), detail::api::anthropic, std::move(options));
}

}  // namespace agentcore::model
