#include <agentcore/store/store.hpp>

#include "detail/complete.hpp"

#include <boost/json/value_from.hpp>
#include <fmt/format.h>

#include <unordered_set>

namespace agentcore::store {

error_info validate(const txn& t) {
  if (t.ops.size() > max_txn_ops)
    return fail(error::invalid_argument, fmt::format("store: transaction has {} operations; the limit is {}; split it",
                                                     t.ops.size(), max_txn_ops));
  if (t.compares.size() > max_txn_ops)
    return fail(error::invalid_argument, fmt::format("store: transaction has {} compares; the limit is {}; split it",
                                                     t.compares.size(), max_txn_ops));
  // Small transactions (the common case) check duplicates without allocating.
  std::unordered_set<std::string_view> seen;
  const bool small = t.ops.size() <= 16;
  if (!small) seen.reserve(t.ops.size());
  auto duplicate = [&](std::size_t i) {
    if (!small) return !seen.insert(t.ops[i].key).second;
    for (std::size_t j = 0; j < i; ++j)
      if (t.ops[j].key == t.ops[i].key) return true;
    return false;
  };
  auto check_key = [](std::string_view k) -> error_info {
    if (k.empty()) return fail(error::invalid_argument, "store: empty key; every key needs at least one byte");
    if (k.size() > max_key_size)
      return fail(error::invalid_argument,
                  fmt::format("store: key '{}...' is {} bytes; the limit is {}", k.substr(0, 40), k.size(), max_key_size));
    return {};
  };
  for (const compare& c : t.compares) {
    if (auto e = check_key(c.key)) return e;
    if (c.type == compare::kind::version_equals && c.version < 0)
      return fail(error::invalid_argument, fmt::format("store: compare on '{}' wants version {}; versions are >= 0", c.key, c.version));
  }
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    const op& o = t.ops[i];
    if (auto e = check_key(o.key)) return e;
    if (o.value.size() > max_value_size)
      return fail(error::invalid_argument, fmt::format("store: value for '{}' is {} bytes; the limit is {}", o.key,
                                                       o.value.size(), max_value_size));
    if (o.lease < 0) return fail(error::invalid_argument, fmt::format("store: key '{}' names lease {}; lease ids are >= 0", o.key, o.lease));
    if (duplicate(i))
      return fail(error::invalid_argument,
                  fmt::format("store: key '{}' appears in two operations of one transaction; merge them into one", o.key));
  }
  return {};
}

void store::do_async_commit(txn t, asio::any_completion_handler<commit_signature> handler) {
  auto r = do_commit(t);
  agentcore::detail::post_completion(std::move(handler), std::move(r));
}

void store::do_async_range(std::string prefix, range_options options,
                           asio::any_completion_handler<range_signature> handler) {
  auto r = do_range(prefix, options);
  agentcore::detail::post_completion(std::move(handler), std::move(r));
}

void store::do_async_grant(std::chrono::seconds ttl, asio::any_completion_handler<lease_signature> handler) {
  auto r = do_grant(ttl);
  agentcore::detail::post_completion(std::move(handler), std::move(r));
}

void tag_invoke(json::value_from_tag, json::value& v, const key_value& kv) {
  v = {{"key", kv.key},
       {"value", kv.value},
       {"create_revision", kv.create_revision},
       {"mod_revision", kv.mod_revision},
       {"version", kv.version},
       {"lease", kv.lease}};
}

void tag_invoke(json::value_from_tag, json::value& v, const commit_result& r) {
  json::object o{{"succeeded", r.succeeded}, {"revision", r.rev}};
  if (!r.succeeded) {
    o["conflict_key"] = r.conflict_key;
    o["conflict_version"] = r.conflict_version;
  }
  v = std::move(o);
}

void tag_invoke(json::value_from_tag, json::value& v, const watch_event& e) {
  v = {{"type", e.type == watch_event::kind::put ? "put" : "erase"}, {"kv", json::value_from(e.kv)}};
}

void tag_invoke(json::value_from_tag, json::value& v, const txn& t) {
  json::array compares, ops;
  for (const auto& c : t.compares) {
    if (c.type == compare::kind::absent) compares.push_back(json::object{{"key", c.key}, {"absent", true}});
    else compares.push_back(json::object{{"key", c.key}, {"version", c.version}});
  }
  for (const auto& o : t.ops) {
    if (o.type == op::kind::put) ops.push_back(json::object{{"put", o.key}, {"value", o.value}, {"lease", o.lease}});
    else ops.push_back(json::object{{"erase", o.key}});
  }
  v = {{"compares", std::move(compares)}, {"ops", std::move(ops)}};
}

void tag_invoke(json::value_from_tag, json::value& v, const range_result& r) {
  json::array kvs;
  for (const auto& kv : r.kvs) kvs.push_back(json::value_from(kv));
  v = {{"kvs", std::move(kvs)}, {"revision", r.rev}, {"more", r.more}};
}

void tag_invoke(json::value_from_tag, json::value& v, const lease_status& l) {
  v = {{"id", l.id}, {"ttl_s", l.ttl.count()}, {"remaining_ms", l.remaining.count()}};
}

}  // namespace agentcore::store
