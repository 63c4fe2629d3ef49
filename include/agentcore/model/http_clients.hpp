// agentcore/model/http_clients.hpp: the built-in clients for the two chat
// APIs most models are served through. `openai` speaks chat completions, so
// with `base_url` it serves OpenAI, vLLM, llama.cpp's server, Ollama and
// OpenRouter; `anthropic` speaks the Messages API. Both stream over
// server-sent events, verify TLS (system CAs, SNI, host name), keep
// connections alive per endpoint and honour HTTPS_PROXY.
//
//   auto gpt = model::make_openai_client(io.get_executor(),
//       {.base_url = "https://api.openai.com/v1", .model = "gpt-4o", .api_key_env = "OPENAI_API_KEY"}).value();
//   auto local = model::make_openai_client(io.get_executor(),
//       {.base_url = "http://127.0.0.1:8080/v1", .model = "qwen2.5-coder"}).value();   // llama.cpp, no key
//
// The key is read from the named environment variable when the client is
// made; it is sent in a header and never appears in an error, log or event.
#pragma once

#include <agentcore/model/client.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace agentcore::model {

struct http_client_options {
  /// Where the API lives: "https://api.openai.com/v1" (the default for
  /// openai), "https://api.anthropic.com" (the default for anthropic).
  std::string base_url;
  std::string model;
  /// The environment variable holding the API key; empty: send no key.
  std::string api_key_env;
  /// Extra headers on every request (organisation ids, OpenRouter's referer).
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds first_byte_timeout{120'000};
  std::chrono::milliseconds total_timeout{600'000};
  std::size_t max_response_bytes = 32u << 20;
  bool verify_tls = true;
  /// Extra trusted certificates (PEM file) beside the system's.
  std::string ca_file;
  bool proxy_from_env = true;
  std::size_t max_idle_connections = 16;
  /// Anthropic's API version header.
  std::string anthropic_version = "2023-06-01";
};

result<std::unique_ptr<client>> make_openai_client(boost::asio::any_io_executor ex, http_client_options options);
result<std::unique_ptr<client>> make_anthropic_client(boost::asio::any_io_executor ex, http_client_options options);

}  // namespace agentcore::model
