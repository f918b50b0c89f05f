// GGUF metadata: typed key/value entries, read with every length checked
// against the bytes that remain.
#include <cstring>

#include <fmt/format.h>

#include "model/gguf_parse.h"

namespace kvstack::gguf_internal {
namespace {

constexpr uint32_t kMaxValueType = static_cast<uint32_t>(GgufValueType::kFloat64);

Status UnknownValueType(uint32_t raw, uint64_t at) {
  return DataLoss(fmt::format("unknown value type {} at offset {} (GGUF value types are 0 to {})", raw, at,
                              kMaxValueType));
}

Status CheckBoolByte(uint8_t byte, uint64_t at) {
  if (byte <= 1) return Status::Ok();
  return DataLoss(fmt::format("bool at offset {} holds {} (must be 0 or 1)", at, byte));
}

template <typename T>
Result<GgufValue> ReadScalar(ByteCursor& cursor) {
  if constexpr (std::is_same_v<T, bool>) {
    const uint64_t at = cursor.offset();
    auto byte = cursor.Read<uint8_t>("a bool");
    if (!byte.ok()) return byte.status();
    KVSTACK_RETURN_IF_ERROR(CheckBoolByte(*byte, at));
    return GgufValue(GgufValue::Storage(*byte == 1));
  } else {
    auto v = cursor.Read<T>("the value");
    if (!v.ok()) return v.status();
    return GgufValue(GgufValue::Storage(*v));
  }
}

// Arrays of fixed-size elements are copied in one piece; `count` has already
// been checked against the remaining bytes.
template <typename T>
Result<GgufValue> ReadFixedArray(ByteCursor& cursor, uint64_t count) {
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<bool> values(count);
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t at = cursor.offset();
      const auto byte = static_cast<uint8_t>(*cursor.Take(1));
      Status s = CheckBoolByte(byte, at);
      if (!s.ok()) return Annotate(fmt::format("element {} of {}", i, count), s);
      values[i] = byte == 1;
    }
    return GgufValue(GgufValue::Storage(std::move(values)));
  } else {
    std::vector<T> values(count);
    if (count > 0) std::memcpy(values.data(), cursor.Take(count * sizeof(T)), count * sizeof(T));
    return GgufValue(GgufValue::Storage(std::move(values)));
  }
}

Result<GgufValue> ReadStringArray(ByteCursor& cursor, uint64_t count) {
  std::vector<std::string> values;
  values.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    auto s = cursor.ReadString("a string element");
    if (!s.ok()) return Annotate(fmt::format("element {} of {}", i, count), s.status());
    values.emplace_back(*s);
  }
  return GgufValue(GgufValue::Storage(std::move(values)));
}

// Size of one encoded element, the least for strings (an empty one).
uint64_t MinElementBytes(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32: return 4;
    case GgufValueType::kString:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64: return 8;
    case GgufValueType::kArray: return 12;
  }
  return 1;
}

Result<GgufValue> ReadArray(ByteCursor& cursor) {
  const uint64_t type_at = cursor.offset();
  auto raw_element = cursor.Read<uint32_t>("the array element type");
  if (!raw_element.ok()) return raw_element.status();
  if (*raw_element > kMaxValueType) return UnknownValueType(*raw_element, type_at);
  const auto element = static_cast<GgufValueType>(*raw_element);
  if (element == GgufValueType::kArray) {
    return InvalidArgument(fmt::format("array of arrays at offset {}: nested arrays are not supported", type_at));
  }
  const uint64_t count_at = cursor.offset();
  auto count = cursor.Read<uint64_t>("the array length");
  if (!count.ok()) return count.status();
  const uint64_t min_bytes = MinElementBytes(element);
  if (*count > cursor.remaining() / min_bytes) {
    return DataLoss(fmt::format(
        "array length {} at offset {} is impossible: {} elements take at least {} bytes each and only {} bytes "
        "remain in the file",
        *count, count_at, GgufValueTypeName(element), min_bytes, cursor.remaining()));
  }
  switch (element) {
    case GgufValueType::kUint8: return ReadFixedArray<uint8_t>(cursor, *count);
    case GgufValueType::kInt8: return ReadFixedArray<int8_t>(cursor, *count);
    case GgufValueType::kUint16: return ReadFixedArray<uint16_t>(cursor, *count);
    case GgufValueType::kInt16: return ReadFixedArray<int16_t>(cursor, *count);
    case GgufValueType::kUint32: return ReadFixedArray<uint32_t>(cursor, *count);
    case GgufValueType::kInt32: return ReadFixedArray<int32_t>(cursor, *count);
    case GgufValueType::kFloat32: return ReadFixedArray<float>(cursor, *count);
    case GgufValueType::kBool: return ReadFixedArray<bool>(cursor, *count);
    case GgufValueType::kString: return ReadStringArray(cursor, *count);
    case GgufValueType::kUint64: return ReadFixedArray<uint64_t>(cursor, *count);
    case GgufValueType::kInt64: return ReadFixedArray<int64_t>(cursor, *count);
    case GgufValueType::kFloat64: return ReadFixedArray<double>(cursor, *count);
    case GgufValueType::kArray: break;
  }
  return UnknownValueType(*raw_element, type_at);
}

}  // namespace

Result<GgufValue> ReadValue(ByteCursor& cursor, uint32_t raw_type) {
  switch (raw_type) {
    case static_cast<uint32_t>(GgufValueType::kUint8): return ReadScalar<uint8_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kInt8): return ReadScalar<int8_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kUint16): return ReadScalar<uint16_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kInt16): return ReadScalar<int16_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kUint32): return ReadScalar<uint32_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kInt32): return ReadScalar<int32_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kFloat32): return ReadScalar<float>(cursor);
    case static_cast<uint32_t>(GgufValueType::kBool): return ReadScalar<bool>(cursor);
    case static_cast<uint32_t>(GgufValueType::kString): {
      auto s = cursor.ReadString("the string value");
      if (!s.ok()) return s.status();
      return GgufValue(GgufValue::Storage(std::string(*s)));
    }
    case static_cast<uint32_t>(GgufValueType::kArray): return ReadArray(cursor);
    case static_cast<uint32_t>(GgufValueType::kUint64): return ReadScalar<uint64_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kInt64): return ReadScalar<int64_t>(cursor);
    case static_cast<uint32_t>(GgufValueType::kFloat64): return ReadScalar<double>(cursor);
  }
  // The caller reports the offset of the type field it read.
  return DataLoss(fmt::format("unknown value type {} (GGUF value types are 0 to {})", raw_type, kMaxValueType));
}

Result<ParsedMetadata> ReadMetadata(ByteCursor& cursor, uint64_t count) {
  ParsedMetadata out;
  out.entries.reserve(count);  // the caller bounded count by the file size
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t at = cursor.offset();
    const std::string where = fmt::format("metadata entry {} of {} at offset {}", i, count, at);
    auto key = cursor.ReadString("the key");
    if (!key.ok()) return Annotate(where, key.status());
    const std::string keyed = fmt::format("metadata key {} (entry {}, at offset {})", Printable(*key), i, at);
    const uint64_t type_at = cursor.offset();
    auto raw_type = cursor.Read<uint32_t>("the value type");
    if (!raw_type.ok()) return Annotate(keyed, raw_type.status());
    if (*raw_type > kMaxValueType) return Annotate(keyed, UnknownValueType(*raw_type, type_at));
    auto value = ReadValue(cursor, *raw_type);
    if (!value.ok()) return Annotate(keyed, value.status());
    auto [it, inserted] = out.index.try_emplace(std::string(*key), out.entries.size());
    if (!inserted) {
      return DataLoss(fmt::format("{}: duplicate key, first defined by entry {} at offset {}", keyed, it->second,
                                  out.entries[it->second].offset));
    }
    out.entries.push_back(GgufKeyValue{std::string(*key), std::move(*value), at});
  }
  return out;
}

}  // namespace kvstack::gguf_internal
