// GgufWriter: metadata and tensor table encoding, layout and the write order.
// The file side (temporary file, fsync, rename) is in atomic_file.cpp.
#include "kvstack/gguf_writer.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <type_traits>

#include <fmt/format.h>

#include "cache/check.h"
#include "modelgen/atomic_file.h"

namespace kvstack {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is little-endian; this writer copies host values");

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kGgufVersion = 3;
constexpr std::string_view kAlignmentKey = "general.alignment";

uint64_t AlignUp(uint64_t n, uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

class Encoder {
 public:
  explicit Encoder(std::vector<std::byte>& out) : out_(out) {}

  template <typename T>
  void Pod(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out_.insert(out_.end(), p, p + sizeof(T));
  }
  void String(std::string_view s) {
    Pod<uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }
  // GGUF stores bool as one byte, 0 or 1 (also inside arrays, where
  // std::vector<bool> has no addressable elements to copy).
  void Scalar(bool b) { Pod<uint8_t>(b ? 1 : 0); }
  void Scalar(const std::string& s) { String(s); }
  template <typename T>
  void Scalar(T value) {
    Pod(value);
  }

  void Value(const GgufValue& value) {
    Pod<uint32_t>(static_cast<uint32_t>(value.type()));
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (requires { typename V::value_type; } && !std::is_same_v<V, std::string>) {
            Pod<uint32_t>(static_cast<uint32_t>(value.element_type()));
            Pod<uint64_t>(v.size());
            for (const auto& element : v) Scalar(static_cast<typename V::value_type>(element));
          } else {
            Scalar(v);
          }
        },
        value.storage());
  }

 private:
  std::vector<std::byte>& out_;
};

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  KVSTACK_CHECK(std::has_single_bit(alignment) && alignment <= (1u << 20),
                "GgufWriter: alignment %u is not a power of two up to 2^20", alignment);
}

Status GgufWriter::CheckNewKey(const std::string& key) const {
  if (key.empty()) return InvalidArgument("metadata key is empty");
  if (key == kAlignmentKey) {
    return InvalidArgument(fmt::format("metadata key '{}' is set by the writer (alignment {})", key, alignment_));
  }
  const bool taken = std::any_of(metadata_.begin(), metadata_.end(), [&](const auto& kv) { return kv.first == key; });
  if (taken) return AlreadyExists(fmt::format("metadata key '{}' is already set", key));
  return Status::Ok();
}

Status GgufWriter::Set(std::string key, GgufValue value) {
  KVSTACK_RETURN_IF_ERROR(CheckNewKey(key));
  metadata_.emplace_back(std::move(key), std::move(value));
  return Status::Ok();
}

Status GgufWriter::SetUint32(std::string key, uint32_t value) { return Set(std::move(key), GgufValue(value)); }
Status GgufWriter::SetInt32(std::string key, int32_t value) { return Set(std::move(key), GgufValue(value)); }
Status GgufWriter::SetUint64(std::string key, uint64_t value) { return Set(std::move(key), GgufValue(value)); }
Status GgufWriter::SetFloat32(std::string key, float value) { return Set(std::move(key), GgufValue(value)); }
Status GgufWriter::SetBool(std::string key, bool value) { return Set(std::move(key), GgufValue(value)); }
Status GgufWriter::SetString(std::string key, std::string value) {
  return Set(std::move(key), GgufValue(std::move(value)));
}
Status GgufWriter::SetStringArray(std::string key, std::vector<std::string> values) {
  return Set(std::move(key), GgufValue(std::move(values)));
}
Status GgufWriter::SetFloat32Array(std::string key, std::vector<float> values) {
  return Set(std::move(key), GgufValue(std::move(values)));
}
Status GgufWriter::SetInt32Array(std::string key, std::vector<int32_t> values) {
  return Set(std::move(key), GgufValue(std::move(values)));
}

Status GgufWriter::AddTensor(std::string name, std::vector<uint64_t> dims, GgmlType type, TensorFiller filler) {
  if (name.empty()) return InvalidArgument("tensor name is empty");
  const bool taken = std::any_of(tensors_.begin(), tensors_.end(), [&](const auto& t) { return t.name == name; });
  if (taken) return AlreadyExists(fmt::format("tensor '{}' is already added", name));
  if (!LookupGgmlType(static_cast<uint32_t>(type)).ok()) {
    return InvalidArgument(fmt::format("tensor '{}': ggml type id {} is unknown", name, static_cast<uint32_t>(type)));
  }
  auto size = GgmlTensorBytes(type, dims);
  if (!size.ok()) return InvalidArgument(fmt::format("tensor '{}': {}", name, size.status().message()));
  const uint64_t offset = data_size_;
  data_size_ = AlignUp(offset + *size, alignment_);
  tensors_.push_back({std::move(name), std::move(dims), type, *size, offset, std::move(filler)});
  return Status::Ok();
}

Status GgufWriter::AddTensor(std::string name, std::vector<uint64_t> dims, GgmlType type,
                             std::vector<std::byte> bytes) {
  auto size = GgmlTensorBytes(type, dims);
  if (size.ok() && *size != bytes.size()) {
    return InvalidArgument(fmt::format("tensor '{}': {} bytes given, its type {} and dims need {}", name, bytes.size(),
                                       GetGgmlTypeTraits(type).name, *size));
  }
  auto filler = [data = std::move(bytes)](std::span<std::byte> out) {
    std::copy(data.begin(), data.end(), out.begin());
    return Status::Ok();
  };
  return AddTensor(std::move(name), std::move(dims), type, std::move(filler));
}

uint64_t GgufWriter::tensor_bytes() const {
  uint64_t total = 0;
  for (const PendingTensor& t : tensors_) total += t.size_bytes;
  return total;
}

std::vector<std::byte> GgufWriter::EncodeHeader() const {
  std::vector<std::byte> out;
  Encoder e(out);
  e.Pod(kGgufMagic);
  e.Pod(kGgufVersion);
  e.Pod<uint64_t>(tensors_.size());
  e.Pod<uint64_t>(metadata_count());
  e.String(kAlignmentKey);
  e.Value(GgufValue(alignment_));
  for (const auto& [key, value] : metadata_) {
    e.String(key);
    e.Value(value);
  }
  for (const PendingTensor& t : tensors_) {
    e.String(t.name);
    e.Pod<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) e.Pod(d);
    e.Pod<uint32_t>(static_cast<uint32_t>(t.type));
    e.Pod(t.offset);
  }
  out.resize(AlignUp(out.size(), alignment_), std::byte{0});
  return out;
}

uint64_t GgufWriter::FileSize() const { return EncodeHeader().size() + data_size_; }

Status GgufWriter::WriteTo(const ByteSink& sink) const {
  KVSTACK_RETURN_IF_ERROR(sink(EncodeHeader()));
  std::vector<std::byte> buffer;
  for (const PendingTensor& t : tensors_) {
    // Padding travels with the tensor: the buffer is sized to the next
    // tensor's offset and stays zero past the filler's bytes.
    const uint64_t padded = AlignUp(t.size_bytes, alignment_);
    buffer.assign(padded, std::byte{0});
    Status filled = t.filler(std::span<std::byte>(buffer.data(), t.size_bytes));
    if (!filled.ok()) {
      return Status(filled.code(), fmt::format("tensor '{}': {}", t.name, filled.message()));
    }
    KVSTACK_RETURN_IF_ERROR(sink(buffer));
  }
  return Status::Ok();
}

Result<std::vector<std::byte>> GgufWriter::Serialize() const {
  std::vector<std::byte> out;
  out.reserve(FileSize());
  Status s = WriteTo([&](std::span<const std::byte> bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status GgufWriter::WriteFile(const std::string& path) const {
  auto file = AtomicFile::Create(path);
  if (!file.ok()) return file.status();
  KVSTACK_RETURN_IF_ERROR(WriteTo([&](std::span<const std::byte> bytes) { return file->Append(bytes); }));
  return file->Commit();
}

}  // namespace kvstack
