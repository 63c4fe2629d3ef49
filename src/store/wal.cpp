#include "store/wal.hpp"

#include "store/crc32c.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace agentcore::store::detail {
namespace {

constexpr char segment_magic[8] = {'a', 'g', 'c', 'w', 'a', 'l', '\0', '\n'};
constexpr char snapshot_magic[8] = {'a', 'g', 'c', 's', 'n', 'a', 'p', '\n'};

void put_u32(char* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}
std::uint64_t get_u64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_bytes(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

std::size_t begin_record(std::string& out) {
  std::size_t at = out.size();
  out.append(record_header_size, '\0');
  return at;
}
void end_record(std::string& out, std::size_t at) {
  std::size_t len = out.size() - at - record_header_size;
  put_u32(out.data() + at, static_cast<std::uint32_t>(len));
  put_u32(out.data() + at + 4, crc32c(out.data() + at + record_header_size, len));
}

struct reader {
  const char* p;
  const char* end;
  bool ok = true;
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p == end) { ok = false; return 0; }
      auto b = static_cast<unsigned char>(*p++);
      v |= std::uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    ok = false;
    return 0;
  }
  std::string_view bytes() {
    std::uint64_t n = varint();
    if (!ok || n > std::uint64_t(end - p)) { ok = false; return {}; }
    std::string_view s(p, n);
    p += n;
    return s;
  }
  std::uint8_t byte() {
    if (p == end) { ok = false; return 0; }
    return static_cast<std::uint8_t>(*p++);
  }
};

std::string file_header(const char (&magic)[8], std::uint64_t seq) {
  std::string h(magic, 8);
  char buf[8] = {};
  put_u32(buf, wal_format);
  h.append(buf, 8);
  put_u64(h, seq);
  return h;
}

error_info check_header(std::string_view data, const char (&magic)[8], const std::string& file, std::uint64_t seq) {
  if (data.size() < file_header_size)
    return fail(error::corrupt, fmt::format("store: file '{}' is {} bytes, shorter than its {}-byte header; "
                                            "it was cut short: restore it from a backup",
                                            file, data.size(), file_header_size));
  if (std::memcmp(data.data(), magic, 8) != 0)
    return fail(error::corrupt, fmt::format("store: file '{}' does not start with an agentcore header; "
                                            "remove foreign files from the store directory",
                                            file));
  std::uint32_t format = get_u32(data.data() + 8);
  if (format > wal_format)
    return fail(error::unsupported_format,
                fmt::format("store: file '{}' has format {}, newer than this build's {}; open it with a newer agentcore",
                            file, format, wal_format));
  if (format == 0) return fail(error::corrupt, fmt::format("store: file '{}' has format 0 at offset 8", file));
  std::uint64_t got = get_u64(data.data() + 16);
  if (got != seq)
    return fail(error::corrupt, fmt::format("store: file '{}' says it is number {:016x}; its name says {:016x}", file, got, seq));
  return {};
}

}  // namespace

std::string segment_file_name(std::uint64_t seq) { return fmt::format("wal-{:016x}.log", seq); }
std::string snapshot_file_name(std::uint64_t seq) { return fmt::format("snap-{:016x}.snap", seq); }

bool parse_file_name(std::string_view name, std::string_view prefix, std::string_view suffix, std::uint64_t& seq) {
  if (name.size() != prefix.size() + 16 + suffix.size() || !name.starts_with(prefix) || !name.ends_with(suffix))
    return false;
  std::uint64_t v = 0;
  for (char c : name.substr(prefix.size(), 16)) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v * 16 + static_cast<std::uint64_t>(d);
  }
  seq = v;
  return true;
}

std::string segment_header(std::uint64_t seq) { return file_header(segment_magic, seq); }
std::string snapshot_header(std::uint64_t seq) { return file_header(snapshot_magic, seq); }

void encode_txn(std::string& out, revision rev, const std::vector<op>& ops) {
  std::size_t at = begin_record(out);
  out.push_back(static_cast<char>(record_type::txn));
  put_varint(out, static_cast<std::uint64_t>(rev));
  put_varint(out, ops.size());
  for (const op& o : ops) {
    if (o.type == op::kind::put) {
      out.push_back(0);
      put_bytes(out, o.key);
      put_bytes(out, o.value);
      put_varint(out, static_cast<std::uint64_t>(o.lease));
    } else {
      out.push_back(1);
      put_bytes(out, o.key);
    }
  }
  end_record(out, at);
}

void encode_grant(std::string& out, lease_id id, std::int64_t ttl_seconds) {
  std::size_t at = begin_record(out);
  out.push_back(static_cast<char>(record_type::grant));
  put_varint(out, static_cast<std::uint64_t>(id));
  put_varint(out, static_cast<std::uint64_t>(ttl_seconds));
  end_record(out, at);
}

void encode_revoke(std::string& out, lease_id id, revision rev) {
  std::size_t at = begin_record(out);
  out.push_back(static_cast<char>(record_type::revoke));
  put_varint(out, static_cast<std::uint64_t>(id));
  put_varint(out, static_cast<std::uint64_t>(rev));
  end_record(out, at);
}

std::string encode_snapshot(std::uint64_t seq, const engine_image& img) {
  std::string out = snapshot_header(seq);
  std::size_t at = begin_record(out);
  put_varint(out, static_cast<std::uint64_t>(img.rev));
  put_varint(out, static_cast<std::uint64_t>(img.next_lease));
  put_varint(out, img.leases.size());
  for (auto [id, ttl] : img.leases) {
    put_varint(out, static_cast<std::uint64_t>(id));
    put_varint(out, static_cast<std::uint64_t>(ttl));
  }
  put_varint(out, img.kvs.size());
  for (const auto& kv : img.kvs) {
    put_bytes(out, kv.key);
    put_bytes(out, kv.value);
    put_varint(out, static_cast<std::uint64_t>(kv.create_revision));
    put_varint(out, static_cast<std::uint64_t>(kv.mod_revision));
    put_varint(out, static_cast<std::uint64_t>(kv.version));
    put_varint(out, static_cast<std::uint64_t>(kv.lease));
  }
  end_record(out, at);
  return out;
}

result<segment_replay> replay_segment(std::string_view data, const std::string& file, std::uint64_t seq, bool last,
                                      engine& e) {
  if (auto err = check_header(data, segment_magic, file, seq)) {
    // A crash while creating the newest segment can leave its header short.
    if (last && data.size() < file_header_size) return segment_replay{0, 0, true};
    return err;
  }
  segment_replay out;
  std::size_t off = file_header_size;
  std::vector<op> ops;
  while (off < data.size()) {
    std::size_t left = data.size() - off;
    auto torn_or_truncated = [&](std::string_view why) -> result<segment_replay> {
      if (last) {
        out.valid_end = off;
        out.torn = true;
        return out;
      }
      return fail(error::corrupt,
                  fmt::format("store: file '{}' is cut short at offset {} ({}), but later segments exist; "
                              "the log is missing data: restore the file from a backup",
                              file, off, why));
    };
    if (left < record_header_size) return torn_or_truncated("partial record header");
    std::uint32_t len = get_u32(data.data() + off);
    std::uint32_t crc = get_u32(data.data() + off + 4);
    // A power loss can leave the file longer than what reached it, the rest
    // zeros: in the newest segment that is a torn tail, not a record.
    if (len == 0 && last &&
        std::all_of(data.begin() + static_cast<std::ptrdiff_t>(off), data.end(), [](char c) { return c == 0; }))
      return torn_or_truncated("zero-filled tail");
    if (len > max_record_size) {
      if (last && len > left - record_header_size) return torn_or_truncated("record length past the end");
      return fail(error::corrupt, fmt::format("store: file '{}' has a record of impossible length {} at offset {}; "
                                              "the log is damaged there",
                                              file, len, off));
    }
    if (len > left - record_header_size) return torn_or_truncated("record runs past the end of the file");
    const char* payload = data.data() + off + record_header_size;
    if (crc32c(payload, len) != crc) {
      bool at_end = off + record_header_size + len == data.size();
      if (last && at_end) {
        out.valid_end = off;
        out.torn = true;
        return out;
      }
      return fail(error::corrupt, fmt::format("store: file '{}' has a record at offset {} whose checksum does not "
                                              "match; the log is damaged there (acknowledged commits follow it, so "
                                              "it was not torn by a crash): restore from a backup",
                                              file, off));
    }
    reader r{payload, payload + len};
    auto type = r.byte();
    auto bad = [&]() {
      return fail(error::corrupt, fmt::format("store: file '{}' has a record at offset {} that does not decode "
                                              "(its checksum matches, so it was written this way)",
                                              file, off));
    };
    switch (static_cast<record_type>(type)) {
      case record_type::txn: {
        auto rev = static_cast<revision>(r.varint());
        auto n = r.varint();
        if (!r.ok || n > max_txn_ops) return bad();
        ops.clear();
        for (std::uint64_t i = 0; i < n && r.ok; ++i) {
          auto kind = r.byte();
          if (kind == 0) {
            op o;
            o.key = std::string(r.bytes());
            o.value = std::string(r.bytes());
            o.lease = static_cast<lease_id>(r.varint());
            ops.push_back(std::move(o));
          } else if (kind == 1) {
            ops.push_back(op::erase(std::string(r.bytes())));
          } else {
            return bad();
          }
        }
        if (!r.ok) return bad();
        if (auto err = e.replay_txn(rev, ops))
          return fail(error::corrupt, fmt::format("store: file '{}' offset {}: {}", file, off, err.message()));
        break;
      }
      case record_type::grant: {
        auto id = static_cast<lease_id>(r.varint());
        auto ttl = static_cast<std::int64_t>(r.varint());
        if (!r.ok) return bad();
        e.replay_grant(id, ttl);
        break;
      }
      case record_type::revoke: {
        auto id = static_cast<lease_id>(r.varint());
        auto rev = static_cast<revision>(r.varint());
        if (!r.ok) return bad();
        if (auto err = e.replay_revoke(id, rev))
          return fail(error::corrupt, fmt::format("store: file '{}' offset {}: {}", file, off, err.message()));
        break;
      }
      default:
        return fail(error::unsupported_format,
                    fmt::format("store: file '{}' has a record of type {} at offset {}, which this build does not "
                                "know; it was written by a newer agentcore: open the store with that version",
                                file, type, off));
    }
    ++out.records;
    off += record_header_size + len;
    out.valid_end = off;
  }
  out.valid_end = off;
  return out;
}

result<engine_image> decode_snapshot(std::string_view data, const std::string& file, std::uint64_t seq) {
  if (auto err = check_header(data, snapshot_magic, file, seq)) return err;
  std::size_t off = file_header_size;
  auto bad = [&](std::string_view why) {
    return fail(error::corrupt, fmt::format("store: snapshot '{}' is damaged at offset {} ({}); "
                                            "restore it from a backup",
                                            file, off, why));
  };
  if (data.size() - off < record_header_size) return bad("no record");
  std::uint32_t len = get_u32(data.data() + off);
  std::uint32_t crc = get_u32(data.data() + off + 4);
  if (len != data.size() - off - record_header_size) return bad("length does not match the file size");
  const char* payload = data.data() + off + record_header_size;
  if (crc32c(payload, len) != crc) return bad("checksum mismatch");
  reader r{payload, payload + len};
  engine_image img;
  img.rev = static_cast<revision>(r.varint());
  img.next_lease = static_cast<lease_id>(r.varint());
  auto nleases = r.varint();
  for (std::uint64_t i = 0; i < nleases && r.ok; ++i) {
    auto id = static_cast<lease_id>(r.varint());
    auto ttl = static_cast<std::int64_t>(r.varint());
    img.leases.emplace_back(id, ttl);
  }
  auto nkvs = r.varint();
  for (std::uint64_t i = 0; i < nkvs && r.ok; ++i) {
    key_value kv;
    kv.key = std::string(r.bytes());
    kv.value = std::string(r.bytes());
    kv.create_revision = static_cast<revision>(r.varint());
    kv.mod_revision = static_cast<revision>(r.varint());
    kv.version = static_cast<std::int64_t>(r.varint());
    kv.lease = static_cast<lease_id>(r.varint());
    img.kvs.push_back(std::move(kv));
  }
  if (!r.ok || r.p != r.end) return bad("contents do not decode");
  return img;
}

}  // namespace agentcore::store::detail
