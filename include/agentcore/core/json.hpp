// agentcore/core/json.hpp: Boost.JSON conversions for core types and helpers
// for reading JSON that came from outside (a file, a model, a store value)
// with errors that name the field that was wrong.
//
//   auto v = agentcore::parse_json(text);                 // result<json::value>
//   auto id = agentcore::json_field<std::string>(obj, "id");  // names "id" if absent
#pragma once

#include <agentcore/core/error.hpp>
#include <agentcore/core/id.hpp>

#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value_to.hpp>

#include <string>
#include <string_view>

namespace agentcore {

namespace json = boost::json;

/// Parses text as JSON; the error names the byte offset and what the parser expected.
result<json::value> parse_json(std::string_view text);

/// Serializes compactly.
std::string to_json_string(const json::value& v);

/// Reads a field of an object as T, or returns an error naming the field and
/// the type it needed. `what` prefixes the message ("task 'x'").
template <class T>
result<T> json_field(const json::object& obj, std::string_view key, std::string_view what = {});

/// As json_field, but a missing field (or null) gives `fallback`.
template <class T>
result<T> json_field_or(const json::object& obj, std::string_view key, T fallback, std::string_view what = {});

/// Lenient readers for JSON from outside, where a member may be missing or of
/// another kind: the member if it has the kind asked for, else nullptr / "".
const json::object* object_at(const json::object& o, std::string_view key);
const json::array* array_at(const json::object& o, std::string_view key);
std::string string_at(const json::object& o, std::string_view key);

/// What kind of JSON value v is, as a message says it: "an object",
/// "a string", "an integer", "null". For errors that name what was found
/// ("'tasks' must be an array, got a string").
std::string_view json_kind_name(const json::value& v);

// --- strong ids as JSON strings ---
template <class Tag>
void tag_invoke(json::value_from_tag, json::value& v, const basic_id<Tag>& id) {
  v = id.str();
}
template <class Tag>
basic_id<Tag> tag_invoke(json::value_to_tag<basic_id<Tag>>, const json::value& v) {
  return basic_id<Tag>(std::string(v.as_string()));
}

namespace detail {
error_info json_field_error(std::string_view what, std::string_view key, std::string_view expected,
                            const json::value* got);
}  // namespace detail

template <class T>
result<T> json_field(const json::object& obj, std::string_view key, std::string_view what) {
  auto it = obj.find(key);
  if (it == obj.end()) return result<T>(boost::system::in_place_error, detail::json_field_error(what, key, "present", nullptr));
  auto r = json::try_value_to<T>(it->value());
  if (!r)
    return result<T>(boost::system::in_place_error, detail::json_field_error(what, key, "of the right type", &it->value()));
  return std::move(*r);
}

template <class T>
result<T> json_field_or(const json::object& obj, std::string_view key, T fallback, std::string_view what) {
  auto it = obj.find(key);
  if (it == obj.end() || it->value().is_null()) return fallback;
  auto r = json::try_value_to<T>(it->value());
  if (!r)
    return result<T>(boost::system::in_place_error, detail::json_field_error(what, key, "of the right type", &it->value()));
  return std::move(*r);
}

}  // namespace agentcore
