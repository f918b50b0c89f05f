// The stages of GgufFile::Parse (private to src/model): metadata, then the
// tensor table, then placing each tensor inside the data section.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "kvstack/gguf.h"
#include "model/gguf_cursor.h"

namespace kvstack::gguf_internal {

// Smallest encodings, used to reject absurd counts before reserving memory:
// a metadata entry is at least a key length, a type and a one-byte value; a
// tensor description at least a name length, n_dims, one dimension, a type
// and an offset.
inline constexpr uint64_t kMinMetadataEntryBytes = 8 + 4 + 1;
inline constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
inline constexpr uint32_t kDefaultAlignment = 32;

struct ParsedMetadata {
  std::vector<GgufKeyValue> entries;
  std::map<std::string, size_t, std::less<>> index;  // key -> position in entries
};

// Reads `count` metadata entries at the cursor. DataLoss (naming the entry,
// its key when read, and the offset) for truncation, an unknown value type, an
// absurd array length or a duplicate key; InvalidArgument for nested arrays.
Result<ParsedMetadata> ReadMetadata(ByteCursor& cursor, uint64_t count);

// Reads one value of on-disk type `raw_type` at the cursor.
Result<GgufValue> ReadValue(ByteCursor& cursor, uint32_t raw_type);

struct ParsedTensors {
  std::vector<GgufTensorInfo> infos;  // data spans still empty
  std::map<std::string, size_t, std::less<>> index;
};

// Reads `count` tensor descriptions at the cursor and checks each on its own:
// 1 to 4 dimensions, a known type, a size that fits int64, an offset that is a
// multiple of `alignment`, no duplicate names.
Result<ParsedTensors> ReadTensorInfos(ByteCursor& cursor, uint64_t count, uint32_t alignment);

// Checks that every tensor lies inside `file` after `data_offset` and that no
// two overlap, then points each one's `data` at its bytes.
Status PlaceTensors(std::span<const std::byte> file, uint64_t data_offset, std::vector<GgufTensorInfo>& infos);

}  // namespace kvstack::gguf_internal
