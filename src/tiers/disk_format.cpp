#include "tiers/disk_format.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <xxhash.h>

#include "tiers/aligned_buffer.h"

namespace kvstack::tiers_internal {

size_t RecordBytes(size_t payload_bytes) { return RoundUp(kRecordHeaderBytes + payload_bytes, kIoAlign); }

void EncodeRecord(const TierBlockInfo& block, uint64_t sequence, std::span<const std::byte> payload,
                  std::span<std::byte> record) {
  RecordHeader h;
  h.priority = block.priority;
  h.hits = block.hits;
  h.payload_bytes = payload.size();
  h.hash_lo = block.hash.lo;
  h.hash_hi = block.hash.hi;
  h.sequence = sequence;
  std::byte* body = record.data() + kRecordHeaderBytes;
  std::memcpy(body, payload.data(), payload.size());
  h.payload_xxh3 = XXH3_64bits(body, payload.size());
  h.header_xxh3 = XXH3_64bits(&h, offsetof(RecordHeader, header_xxh3));
  std::memset(record.data(), 0, kRecordHeaderBytes);
  std::memcpy(record.data(), &h, sizeof(h));
  const size_t end = kRecordHeaderBytes + payload.size();
  std::memset(record.data() + end, 0, record.size() - end);
}

std::optional<RecordHeader> ParseHeader(std::span<const std::byte> record, size_t payload_bytes) {
  if (record.size() < sizeof(RecordHeader)) return std::nullopt;
  RecordHeader h;
  std::memcpy(&h, record.data(), sizeof(h));
  if (h.magic != kRecordMagic || h.version != kRecordVersion) return std::nullopt;
  if (h.header_xxh3 != XXH3_64bits(&h, offsetof(RecordHeader, header_xxh3))) return std::nullopt;
  if (h.payload_bytes != payload_bytes || (h.hash_lo == 0 && h.hash_hi == 0)) return std::nullopt;
  return h;
}

bool PayloadIntact(const RecordHeader& h, std::span<const std::byte> record) {
  if (record.size() < kRecordHeaderBytes + h.payload_bytes) return false;
  return XXH3_64bits(record.data() + kRecordHeaderBytes, h.payload_bytes) == h.payload_xxh3;
}

bool NeverWritten(std::span<const std::byte> record) {
  const size_t n = std::min(record.size(), kRecordHeaderBytes);
  return std::all_of(record.begin(), record.begin() + static_cast<ptrdiff_t>(n),
                     [](std::byte b) { return b == std::byte{0}; });
}

std::string SegmentFileName(uint32_t segment) { return fmt::format("seg-{:06}.kvs", segment); }

}  // namespace kvstack::tiers_internal
