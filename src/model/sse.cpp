#include "model/sse.hpp"

#include <fmt/format.h>

namespace agentcore::model::detail {

sse_parser::sse_parser(sink on_event, std::size_t max_event) : sink_(std::move(on_event)), max_event_(max_event) {}

error_info sse_parser::feed(std::string_view bytes) {
  if (failed_) return failed_;
  std::size_t start = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    char c = bytes[i];
    if (c != '\n' && c != '\r') {
      last_was_cr_ = false;
      continue;
    }
    if (c == '\n' && last_was_cr_ && i == start && partial_.empty()) {  // the \n of a \r\n split across calls
      last_was_cr_ = false;
      start = i + 1;
      continue;
    }
    partial_.append(bytes.substr(start, i - start));
    start = i + 1;
    if (c == '\r' && i + 1 < bytes.size() && bytes[i + 1] == '\n') {
      ++i;
      start = i + 1;
      last_was_cr_ = false;
    } else {
      last_was_cr_ = c == '\r';
    }
    std::string l;
    l.swap(partial_);
    if (auto e = line(l)) return failed_ = e;
  }
  partial_.append(bytes.substr(start));
  if (partial_.size() + current_.data.size() > max_event_)
    return failed_ = fail(error::invalid_argument,
                          fmt::format("event stream: an event is larger than the {} byte limit", max_event_));
  return {};
}

error_info sse_parser::finish() {
  // The format says an event not ended by a blank line when the stream ends
  // is discarded: a cut connection must not deliver half an event.
  if (failed_) return failed_;
  partial_.clear();
  current_ = sse_event{{}, {}, current_.id};
  has_data_ = false;
  return {};
}

error_info sse_parser::line(std::string_view l) {
  if (l.empty()) return dispatch();
  if (l.front() == ':') return {};  // a comment (keep-alive)
  auto colon = l.find(':');
  std::string_view field = l.substr(0, colon), value;
  if (colon != std::string_view::npos) {
    value = l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
    if (current_.data.size() > max_event_)
      return fail(error::invalid_argument,
                  fmt::format("event stream: an event is larger than the {} byte limit", max_event_));
  } else if (field == "event") {
    current_.event.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) current_.id.assign(value);
  }
  // "retry" and unknown fields are ignored, as the format says.
  return {};
}

error_info sse_parser::dispatch() {
  if (!has_data_) {
    current_.event.clear();
    return {};
  }
  if (current_.event.empty()) current_.event = "message";
  sse_event e;
  std::swap(e, current_);
  has_data_ = false;
  current_.id = e.id;  // the last event id persists
  return sink_(e);
}

}  // namespace agentcore::model::detail
