// libFuzzer target: an API's answer decoders, whole and streamed, on
// arbitrary bytes. Built twice: FUZZ_API_ANTHROPIC picks the Messages API,
// otherwise OpenAI's chat completions.
#include "model/codec.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

using namespace agentcore::model;
using namespace agentcore::model::detail;

#ifdef FUZZ_API_ANTHROPIC
constexpr api which = api::anthropic;
#else
constexpr api which = api::openai;
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  // Whole: an answer or an error, never a crash.
  auto whole = decode_response(which, in);
  if (whole)
    for (const auto& c : whole->message.tool_calls()) (void)parse_arguments(c);
  (void)error_message(in);
  // Streamed: the same bytes as an event stream.
  auto dec = make_stream_decoder(which);
  std::size_t deltas = 0;
  delta_handler on = [&](const delta&) { ++deltas; };
  sse_parser p([&](const sse_event& e) { return dec->on_event(e, on); }, 1u << 16);
  if (!p.feed(in) && !p.finish()) {
    auto streamed = dec->finish();
    if (streamed) (void)to_json(*streamed);
  }
  return 0;
}
