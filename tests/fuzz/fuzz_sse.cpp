// libFuzzer target: the server-sent-events parser, fed arbitrary bytes in
// arbitrary pieces (the first byte picks the piece size).
#include "model/sse.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t piece = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::size_t data_bytes = 0;
  agentcore::model::detail::sse_parser p(
      [&](const agentcore::model::detail::sse_event& e) {
        data_bytes += e.data.size();
        return agentcore::error_info{};
      },
      4096);
  for (std::size_t i = 0; i < in.size(); i += piece)
    if (p.feed(in.substr(i, piece))) break;
  (void)p.finish();
  // Each data byte comes from the input, plus at most one '\n' per data line.
  if (data_bytes > 2 * in.size()) __builtin_trap();
  return 0;
}
