// GgufFile::Parse: the header, then the stages in gguf_parse.h, in file order.
#include <cstring>

#include <fmt/format.h>

#include "model/gguf_parse.h"

namespace kvstack {

using gguf_internal::Annotate;
using gguf_internal::ByteCursor;

namespace {

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr uint64_t kHeaderBytes = 4 + 4 + 8 + 8;

Status CheckVersion(uint32_t version) {
  if (version == 2 || version == 3) return Status::Ok();
  // A big-endian writer stores 3 as 0x03000000.
  if (version == 0x02000000 || version == 0x03000000) {
    return InvalidArgument(fmt::format(
        "version field at offset 4 reads {:#010x}: this is a big-endian GGUF file, which this reader does not support",
        version));
  }
  if (version == 1) {
    return InvalidArgument(
        "version 1 at offset 4 is not supported (it used 32-bit counts); versions 2 and 3 are read: re-convert the "
        "model with a current llama.cpp");
  }
  return InvalidArgument(fmt::format("version {} at offset 4 is not supported: versions 2 and 3 are read", version));
}

Status CheckCount(uint64_t count, std::string_view field, uint64_t field_at, uint64_t min_bytes, uint64_t remaining) {
  if (count <= remaining / min_bytes) return Status::Ok();
  return DataLoss(fmt::format("{} {} at offset {} is impossible: each takes at least {} bytes and only {} bytes follow",
                              field, count, field_at, min_bytes, remaining));
}

Result<uint32_t> ReadAlignment(const gguf_internal::ParsedMetadata& meta) {
  auto it = meta.index.find("general.alignment");
  if (it == meta.index.end()) return gguf_internal::kDefaultAlignment;
  const GgufKeyValue& kv = meta.entries[it->second];
  const std::string where = fmt::format("metadata key 'general.alignment' (at offset {})", kv.offset);
  auto value = kv.value.AsUint32();
  if (!value.ok()) return DataLoss(fmt::format("{}: {}", where, value.status().message()));
  if (*value == 0 || (*value & (*value - 1)) != 0) {
    return DataLoss(fmt::format("{}: {} is not a power of two", where, *value));
  }
  return *value;
}

}  // namespace

Result<GgufFile> GgufFile::Parse(std::span<const std::byte> bytes) {
  ByteCursor cursor(bytes);
  // The magic is checked before the length, so that a short file of another
  // kind is called what it is rather than a truncated GGUF file.
  if (bytes.size() >= sizeof(kMagic) && std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return DataLoss(fmt::format("not a GGUF file: the magic at offset 0 is {} (expected 'GGUF')",
                                gguf_internal::Printable(std::string_view(
                                    reinterpret_cast<const char*>(bytes.data()), sizeof(kMagic)))));
  }
  Status header = cursor.Require(kHeaderBytes, "the header");
  if (!header.ok()) return Annotate("GGUF header", header);
  cursor.Take(sizeof(kMagic));
  // The fixed-size fields below were covered by the Require above.
  const uint32_t version = *cursor.Read<uint32_t>("version");
  KVSTACK_RETURN_IF_ERROR(CheckVersion(version));
  const uint64_t tensor_count = *cursor.Read<uint64_t>("tensor_count");
  const uint64_t kv_count = *cursor.Read<uint64_t>("kv_count");
  KVSTACK_RETURN_IF_ERROR(CheckCount(kv_count, "kv_count", 16, gguf_internal::kMinMetadataEntryBytes,
                                     cursor.remaining()));
  KVSTACK_RETURN_IF_ERROR(CheckCount(tensor_count, "tensor_count", 8, gguf_internal::kMinTensorInfoBytes,
                                     cursor.remaining()));

  auto meta = gguf_internal::ReadMetadata(cursor, kv_count);
  if (!meta.ok()) return meta.status();
  auto alignment = ReadAlignment(*meta);
  if (!alignment.ok()) return alignment.status();

  KVSTACK_RETURN_IF_ERROR(Annotate(fmt::format("after the metadata (offset {})", cursor.offset()),
                                   CheckCount(tensor_count, "tensor_count", 8, gguf_internal::kMinTensorInfoBytes,
                                              cursor.remaining())));
  auto tensors = gguf_internal::ReadTensorInfos(cursor, tensor_count, *alignment);
  if (!tensors.ok()) return tensors.status();

  // The table ends inside the file, so rounding up cannot wrap.
  const uint64_t data_offset = (cursor.offset() + *alignment - 1) / *alignment * *alignment;
  KVSTACK_RETURN_IF_ERROR(gguf_internal::PlaceTensors(bytes, data_offset, tensors->infos));

  GgufFile file;
  file.bytes_ = bytes;
  file.version_ = version;
  file.alignment_ = *alignment;
  file.data_offset_ = data_offset;
  file.metadata_ = std::move(meta->entries);
  file.key_index_ = std::move(meta->index);
  file.tensors_ = std::move(tensors->infos);
  file.tensor_index_ = std::move(tensors->index);
  return file;
}

}  // namespace kvstack
