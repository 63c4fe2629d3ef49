// The etcd backend's encoding: base64 keys and values, proto3 JSON fields,
// and keys and transactions as etcd's JSON.
#include "store/etcd/impl.hpp"

#include <boost/json/serialize.hpp>
#include <fmt/format.h>

#include <charconv>

namespace agentcore::store {

namespace etcd_detail {

namespace {

constexpr char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string b64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t n = (std::uint8_t(in[i]) << 16) | (std::uint8_t(in[i + 1]) << 8) | std::uint8_t(in[i + 2]);
    out += b64_chars[n >> 18];
    out += b64_chars[(n >> 12) & 63];
    out += b64_chars[(n >> 6) & 63];
    out += b64_chars[n & 63];
  }
  if (i < in.size()) {
    std::uint32_t n = std::uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) n |= std::uint8_t(in[i + 1]) << 8;
    out += b64_chars[n >> 18];
    out += b64_chars[(n >> 12) & 63];
    out += i + 1 < in.size() ? b64_chars[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

result<std::string> unb64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    if (c == '=') break;
    int v = value(c);
    if (v < 0) return fail(error::corrupt, "etcd: a key or value in the answer is not base64");
    acc = (acc << 6) | std::uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

// proto3 JSON: 64-bit integers are strings, and zero values are left out.
std::int64_t i64(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  if (it == o.end()) return 0;
  const json::value& v = it->value();
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64()) return static_cast<std::int64_t>(v.get_uint64());
  if (v.is_string()) {
    std::int64_t n = 0;
    auto s = v.get_string();
    std::from_chars(s.data(), s.data() + s.size(), n);
    return n;
  }
  return 0;
}

bool bool_at(const json::object& o, std::string_view k) {
  auto it = o.find(k);
  return it != o.end() && it->value().is_bool() && it->value().get_bool();
}

/// The first key after every key starting with `key`; "\0" (all keys) when there is none.
std::string prefix_end(std::string key) {
  while (!key.empty() && static_cast<unsigned char>(key.back()) == 0xff) key.pop_back();
  if (key.empty()) return std::string(1, '\0');
  key.back() = static_cast<char>(static_cast<unsigned char>(key.back()) + 1);
  return key;
}

std::string snippet(std::string_view body) {
  std::string s(body.substr(0, 80));
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

std::string ms(std::chrono::milliseconds d) { return fmt::format("{} ms", d.count()); }

}  // namespace etcd_detail

using namespace etcd_detail;

result<key_value> etcd_store::impl::from_kv(const json::object& kv) const {
  auto k = unb64(string_at(kv, "key"));
  if (!k) return k.error();
  auto v = unb64(string_at(kv, "value"));
  if (!v) return v.error();
  key_value out;
  out.key = strip(*k);
  out.value = std::move(*v);
  out.create_revision = i64(kv, "create_revision") - 1;
  out.mod_revision = i64(kv, "mod_revision") - 1;
  out.version = i64(kv, "version");
  out.lease = i64(kv, "lease");
  return out;
}

json::object etcd_store::impl::compare_json(const std::string& key, std::int64_t version) {
  return {{"key", b64(key)}, {"target", "VERSION"}, {"result", "EQUAL"}, {"version", std::to_string(version)}};
}

std::string etcd_store::impl::txn_body(const txn& t) const {
  json::array cmp, ok, failure;
  for (const compare& c : t.compares) {
    auto key = full(c.key);
    cmp.push_back(compare_json(key, c.type == compare::kind::absent ? 0 : c.version));
    // On failure, read the compared keys in the same transaction: the
    // conflict then names the key and its version as of that revision.
    failure.push_back(json::object{{"request_range", json::object{{"key", b64(key)}, {"keys_only", true}}}});
  }
  for (const op& o : t.ops) {
    if (o.type == op::kind::put) {
      json::object put{{"key", b64(full(o.key))}, {"value", b64(o.value)}};
      if (o.lease) put["lease"] = std::to_string(o.lease);
      ok.push_back(json::object{{"request_put", std::move(put)}});
    } else {
      ok.push_back(json::object{{"request_delete_range", json::object{{"key", b64(full(o.key))}}}});
    }
  }
  json::object body;
  if (!cmp.empty()) body["compare"] = std::move(cmp);
  if (!ok.empty()) body["success"] = std::move(ok);
  if (!failure.empty()) body["failure"] = std::move(failure);
  return json::serialize(body);
}

}  // namespace agentcore::store
