// Server-sent events (the WHATWG event-stream format), parsed incrementally:
// bytes go in as they arrive, whole events come out. Used by both streaming
// chat APIs; a fuzz target feeds it arbitrary bytes.
#pragma once

#include <agentcore/core/error.hpp>

#include <functional>
#include <string>
#include <string_view>

namespace agentcore::model::detail {

struct sse_event {
  std::string event;  ///< "message" when the stream names none
  std::string data;   ///< data lines joined with '\n'
  std::string id;
};

class sse_parser {
public:
  using sink = std::function<error_info(const sse_event&)>;
  /// `max_event` caps one event's size; a longer one is an error, not growth.
  explicit sse_parser(sink on_event, std::size_t max_event = 4u << 20);

  /// Parses what arrived; calls the sink for every complete event. The first
  /// error (the sink's or an oversized event) is returned, and returned again
  /// by every later call.
  error_info feed(std::string_view bytes);
  /// The stream ended: a last event without its blank line is discarded, as
  /// the format requires (it may be cut short).
  error_info finish();

private:
  error_info line(std::string_view l);
  error_info dispatch();

  sink sink_;
  std::size_t max_event_;
  std::string partial_;  // an unfinished line
  bool last_was_cr_ = false;
  sse_event current_;
  bool has_data_ = false;
  error_info failed_;
};

}  // namespace agentcore::model::detail
