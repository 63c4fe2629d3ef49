#pragma once
#include <cstddef>
#include <cstdint>

namespace agentcore::store::detail {
/// CRC-32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;
}  // namespace agentcore::store::detail
