// agentcore/store/types.hpp: the values the store deals in: versioned keys,
// transactions of compares and operations, and what a commit, a range and a
// watch give back. etcd's data model, so the etcd backend maps one to one.
//
//   store::txn t;
//   t.if_version("task/a", 3).put("task/a", json).put("claim/a", me, lease);
//   auto r = s.commit(t);                   // result<commit_result>
//   if (r && !r->succeeded) retry_with(r->conflict_key);
#pragma once

#include <agentcore/core/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace agentcore::store {

/// The store's global revision: bumped by one for every commit that changes
/// something. Starts at 0 for an empty store.
using revision = std::int64_t;
/// 0 means "no lease".
using lease_id = std::int64_t;

struct key_value {
  std::string key;
  std::string value;
  revision create_revision = 0;  ///< revision of the commit that created the key
  revision mod_revision = 0;     ///< revision of its last change
  std::int64_t version = 0;      ///< changes since creation, from 1; 0 = absent
  lease_id lease = 0;            ///< the lease it is attached to, or 0
  friend bool operator==(const key_value&, const key_value&) = default;
};

/// A condition every compare of a transaction must meet for it to apply.
struct compare {
  enum class kind { version_equals, absent };
  kind type = kind::version_equals;
  std::string key;
  std::int64_t version = 0;

  static compare version_is(std::string key, std::int64_t v) { return {kind::version_equals, std::move(key), v}; }
  static compare is_absent(std::string key) { return {kind::absent, std::move(key), 0}; }
  friend bool operator==(const compare&, const compare&) = default;
};

struct op {
  enum class kind { put, erase };
  kind type = kind::put;
  std::string key;
  std::string value;
  lease_id lease = 0;  ///< put only: attach the key to this lease (0: none)

  static op put(std::string key, std::string value, lease_id lease = 0) {
    return {kind::put, std::move(key), std::move(value), lease};
  }
  static op erase(std::string key) { return {kind::erase, std::move(key), {}, 0}; }
  friend bool operator==(const op&, const op&) = default;
};

/// All compares hold, then all operations apply at one new revision; or
/// nothing happens. A key may appear in at most one operation, and a
/// transaction holds at most `max_txn_ops` operations (etcd's limit).
struct txn {
  std::vector<compare> compares;
  std::vector<op> ops;

  txn& if_version(std::string key, std::int64_t v) { compares.push_back(compare::version_is(std::move(key), v)); return *this; }
  txn& if_absent(std::string key) { compares.push_back(compare::is_absent(std::move(key))); return *this; }
  txn& put(std::string key, std::string value, lease_id lease = 0) { ops.push_back(op::put(std::move(key), std::move(value), lease)); return *this; }
  txn& erase(std::string key) { ops.push_back(op::erase(std::move(key))); return *this; }
};

inline constexpr std::size_t max_txn_ops = 128;
inline constexpr std::size_t max_key_size = 1536;
inline constexpr std::size_t max_value_size = 16u << 20;

/// The outcome of a commit. A failed compare is not an error: `succeeded` is
/// false and `conflict_key` names the first compare that did not hold.
struct commit_result {
  bool succeeded = false;
  revision rev = 0;                  ///< on success the commit's revision, else the store's current one
  std::string conflict_key;          ///< on conflict: the key whose compare failed
  std::int64_t conflict_version = 0; ///< on conflict: that key's actual version (0 = absent)
};

struct range_options {
  std::size_t limit = 0;  ///< at most this many keys, in key order; 0: all
};

struct range_result {
  std::vector<key_value> kvs;  ///< in key order
  revision rev = 0;            ///< the revision the range was read at
  bool more = false;           ///< true when `limit` cut the result short
};

struct watch_event {
  enum class kind { put, erase };
  kind type = kind::put;
  key_value kv;  ///< for erase: key and mod_revision (the deleting revision), the rest zero
  friend bool operator==(const watch_event&, const watch_event&) = default;
};

struct lease_status {
  lease_id id = 0;
  std::chrono::seconds ttl{0};        ///< as granted
  std::chrono::milliseconds remaining{0};
};

/// Checks a transaction against the store's limits; the error names the
/// offending key or count. Backends call this before anything else.
error_info validate(const txn& t);

// JSON forms (for logs, events and the etcd backend's tests).
void tag_invoke(json::value_from_tag, json::value& v, const key_value& kv);
void tag_invoke(json::value_from_tag, json::value& v, const commit_result& r);
void tag_invoke(json::value_from_tag, json::value& v, const watch_event& e);
void tag_invoke(json::value_from_tag, json::value& v, const txn& t);
void tag_invoke(json::value_from_tag, json::value& v, const range_result& r);
void tag_invoke(json::value_from_tag, json::value& v, const lease_status& l);

}  // namespace agentcore::store
