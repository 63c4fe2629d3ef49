#include <agentcore/core/json.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/stream_parser.hpp>
#include <fmt/format.h>

namespace agentcore {

result<json::value> parse_json(std::string_view text) {
  boost::system::error_code ec;
  json::stream_parser p;
  std::size_t n = p.write_some(text.data(), text.size(), ec);
  if (!ec) p.finish(ec);
  if (ec) {
    return fail(error::invalid_argument,
                fmt::format("invalid JSON at byte {} of {}: {}", n, text.size(), ec.message()));
  }
  if (n != text.size())
    return fail(error::invalid_argument, fmt::format("invalid JSON: unexpected data at byte {} of {}", n, text.size()));
  return p.release();
}

std::string to_json_string(const json::value& v) { return json::serialize(v); }

const json::object* object_at(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_object() ? &it->value().get_object() : nullptr;
}

const json::array* array_at(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_array() ? &it->value().get_array() : nullptr;
}

std::string string_at(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().get_string()) : std::string();
}

std::string_view json_kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "unknown";
}

namespace detail {

error_info json_field_error(std::string_view what, std::string_view key, std::string_view expected,
                            const json::value* got) {
  std::string prefix = what.empty() ? std::string() : fmt::format("{}: ", what);
  if (!got) return fail(error::invalid_argument, fmt::format("{}field \"{}\" is missing", prefix, key));
  std::string shown = json::serialize(*got);
  if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
  return fail(error::invalid_argument, fmt::format("{}field \"{}\" is not {}: got {} {}", prefix, key, expected,
                                                   json_kind_name(*got), shown));
}

}  // namespace detail
}  // namespace agentcore
