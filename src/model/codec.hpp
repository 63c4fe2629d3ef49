// The two chat APIs' wire formats: requests encoded to JSON bodies, answers
// decoded from JSON bodies or from streams of server-sent events. Pure
// functions over text, so the decoders can be fuzzed and tested without a
// network.
#pragma once

#include <agentcore/model/client.hpp>

#include "model/sse.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace agentcore::model::detail {

enum class api { openai, anthropic };

/// The JSON body of a request to `model`.
result<std::string> encode_request(api a, const request& r, std::string_view model, bool stream);

/// A whole (non-streamed) answer.
result<response> decode_response(api a, std::string_view body);

/// The message of an API's error body ({"error":{"message":...}} in both), or
/// the start of the body when it is not one (an HTML page from a proxy).
std::string error_message(std::string_view body);

/// Turns a stream's events into deltas, and at the end into the response a
/// non-streamed call would have given.
class stream_decoder {
public:
  virtual ~stream_decoder() = default;
  virtual error_info on_event(const sse_event& e, const delta_handler& on_delta) = 0;
  /// The stream ended; an answer that never finished is an error.
  virtual result<response> finish() = 0;
};

std::unique_ptr<stream_decoder> make_stream_decoder(api a);

}  // namespace agentcore::model::detail
