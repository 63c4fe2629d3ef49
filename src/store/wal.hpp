// The file store's on-disk formats: log segments and snapshots.
//
// Segment: header (magic "agcwal\0\n", u32 format, u32 0, u64 sequence), then
// records. Record: u32 payload length, u32 CRC-32C of the payload, payload.
// Payload: u8 type, then varint fields:
//   1 txn:    revision, op count, ops (u8 0 put: key, value, lease | u8 1 erase: key)
//   2 grant:  lease id, ttl seconds
//   3 revoke: lease id, revision
// Snapshot: header (magic "agcsnap\n", u32 format, u32 0, u64 sequence of the
// first segment it does not cover), then one record holding the engine image.
// All integers little-endian.
#pragma once

#include "store/engine.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace agentcore::store::detail {

inline constexpr std::uint32_t wal_format = 1;
inline constexpr std::size_t file_header_size = 24;
inline constexpr std::size_t record_header_size = 8;
inline constexpr std::uint32_t max_record_size = 256u << 20;

enum class record_type : std::uint8_t { txn = 1, grant = 2, revoke = 3 };

std::string segment_file_name(std::uint64_t seq);
std::string snapshot_file_name(std::uint64_t seq);
/// Parses "wal-<hex>.log" / "snap-<hex>.snap"; false if the name is neither.
bool parse_file_name(std::string_view name, std::string_view prefix, std::string_view suffix, std::uint64_t& seq);

std::string segment_header(std::uint64_t seq);
std::string snapshot_header(std::uint64_t seq);

/// Appends one framed record to `out`.
void encode_txn(std::string& out, revision rev, const std::vector<op>& ops);
void encode_grant(std::string& out, lease_id id, std::int64_t ttl_seconds);
void encode_revoke(std::string& out, lease_id id, revision rev);
std::string encode_snapshot(std::uint64_t seq, const engine_image& image);

struct segment_replay {
  std::uint64_t records = 0;
  std::uint64_t valid_end = 0;  ///< offset after the last good record
  bool torn = false;            ///< a torn record started at valid_end
};

/// Replays a segment into `e`. `last` says whether this is the newest
/// segment: only there may the final record be torn.
result<segment_replay> replay_segment(std::string_view data, const std::string& file, std::uint64_t seq, bool last,
                                      engine& e);
result<engine_image> decode_snapshot(std::string_view data, const std::string& file, std::uint64_t seq);

}  // namespace agentcore::store::detail
