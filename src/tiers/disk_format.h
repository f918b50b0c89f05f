// The disk tier's on-disk format.
//
// A tier directory holds a manifest ("kvstack-disk-tier", text) and segment
// files seg-000000.kvs, seg-000001.kvs, ... Each segment is an array of
// fixed-size records, one per tier slot; slot s lives in segment
// s / slots_per_segment at offset (s % slots_per_segment) * record_bytes. A
// record is 4096-aligned (O_DIRECT) and holds:
//
//   [0, 128)              RecordHeader (little-endian), zero padded
//   [128, 128 + payload)  the block's bytes
//   then zeros up to record_bytes
//
// Two xxh3-64 checksums: one over the payload, one over the header fields
// (which include the payload's). A header that fails its checksum is not a
// block; a payload that fails its own is a torn or corrupt block. Either is
// dropped (a miss), never returned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "kvstack/tier.h"

namespace kvstack::tiers_internal {

inline constexpr uint64_t kRecordMagic = 0x314B4C4254535A4Bull;  // "KZSTBLK1"
inline constexpr uint32_t kRecordVersion = 1;
inline constexpr size_t kRecordHeaderBytes = 128;

struct RecordHeader {
  uint64_t magic = kRecordMagic;
  uint32_t version = kRecordVersion;
  uint8_t priority = 0;
  uint8_t reserved[3] = {0, 0, 0};
  uint32_t hits = 0;
  uint32_t reserved2 = 0;
  uint64_t payload_bytes = 0;
  uint64_t hash_lo = 0;
  uint64_t hash_hi = 0;
  uint64_t sequence = 0;      // write order; a restart rebuilds LRU order from it
  uint64_t payload_xxh3 = 0;
  uint64_t header_xxh3 = 0;   // over every field above
};
static_assert(sizeof(RecordHeader) == 72);

// Bytes of one record for blocks of `payload_bytes`.
size_t RecordBytes(size_t payload_bytes);

// Writes a full record (header, payload, zero padding) into `record`.
// REQUIRES: record.size() == RecordBytes(payload.size()).
void EncodeRecord(const TierBlockInfo& block, uint64_t sequence, std::span<const std::byte> payload,
                  std::span<std::byte> record);

// The header at the start of `record` if its magic, version and checksum
// hold and it describes blocks of `payload_bytes`; nullopt otherwise.
std::optional<RecordHeader> ParseHeader(std::span<const std::byte> record, size_t payload_bytes);

// Whether the payload of a parsed record matches its checksum.
// REQUIRES: record holds the whole record.
bool PayloadIntact(const RecordHeader& header, std::span<const std::byte> record);

// Whether the first bytes of a record are all zero (a slot never written).
bool NeverWritten(std::span<const std::byte> record);

std::string SegmentFileName(uint32_t segment);  // "seg-000042.kvs"
inline constexpr const char* kManifestName = "kvstack-disk-tier";

}  // namespace kvstack::tiers_internal
