// GgufFile: lifetime and lookups of metadata and tensors by name.
#include <fmt/format.h>

#include "model/gguf_cursor.h"
#include "model/gguf_mapping.h"

namespace kvstack {

GgufFile::GgufFile(GgufFile&& other) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&& other) noexcept = default;
GgufFile::~GgufFile() = default;
GgufFile::GgufFile() = default;

bool GgufFile::Has(std::string_view key) const { return key_index_.find(key) != key_index_.end(); }

Result<const GgufValue*> GgufFile::Find(std::string_view key) const {
  auto it = key_index_.find(key);
  if (it == key_index_.end()) return NotFound(fmt::format("metadata key {} not found", gguf_internal::Printable(key)));
  return &metadata_[it->second].value;
}

template <typename T>
Result<T> GgufFile::GetAs(std::string_view key, Result<T> (GgufValue::*as)() const) const {
  auto it = key_index_.find(key);
  if (it == key_index_.end()) return NotFound(fmt::format("metadata key {} not found", gguf_internal::Printable(key)));
  const GgufKeyValue& kv = metadata_[it->second];
  auto converted = (kv.value.*as)();
  if (!converted.ok()) {
    return gguf_internal::Annotate(fmt::format("metadata key {} (at offset {})", gguf_internal::Printable(key), kv.offset),
                                   converted.status());
  }
  return converted;
}

Result<uint32_t> GgufFile::GetUint32(std::string_view key) const { return GetAs(key, &GgufValue::AsUint32); }
Result<uint64_t> GgufFile::GetUint64(std::string_view key) const { return GetAs(key, &GgufValue::AsUint64); }
Result<float> GgufFile::GetFloat32(std::string_view key) const { return GetAs(key, &GgufValue::AsFloat32); }
Result<bool> GgufFile::GetBool(std::string_view key) const { return GetAs(key, &GgufValue::AsBool); }

Result<std::string_view> GgufFile::GetString(std::string_view key) const {
  return GetAs(key, &GgufValue::AsString);
}

Result<std::span<const std::string>> GgufFile::GetStringArray(std::string_view key) const {
  return GetAs(key, &GgufValue::AsStringArray);
}

Result<std::span<const float>> GgufFile::GetFloat32Array(std::string_view key) const {
  return GetAs(key, &GgufValue::AsFloat32Array);
}

Result<std::span<const int32_t>> GgufFile::GetInt32Array(std::string_view key) const {
  return GetAs(key, &GgufValue::AsInt32Array);
}

Result<uint32_t> GgufFile::GetUint32Or(std::string_view key, uint32_t fallback) const {
  return Has(key) ? GetUint32(key) : Result<uint32_t>(fallback);
}

Result<float> GgufFile::GetFloat32Or(std::string_view key, float fallback) const {
  return Has(key) ? GetFloat32(key) : Result<float>(fallback);
}

Result<bool> GgufFile::GetBoolOr(std::string_view key, bool fallback) const {
  return Has(key) ? GetBool(key) : Result<bool>(fallback);
}

Result<const GgufTensorInfo*> GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) return NotFound(fmt::format("tensor {} not found", gguf_internal::Printable(name)));
  return &tensors_[it->second];
}

}  // namespace kvstack
