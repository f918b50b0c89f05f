// GgufWriter: builds GGUF files (version 3), the format GgufFile reads.
//
// A writer collects metadata (every GGUF value type, arrays included, in the
// order they are set) and tensor descriptions, then writes the header, the
// metadata, the tensor table and the tensor data, each tensor aligned to
// `general.alignment` (32 unless the constructor is told otherwise; the
// writer sets that key itself). Tensor bytes may be given up front or
// produced by a callback at write time, so a multi-gigabyte model is written
// one tensor at a time instead of being held in memory.
//
// WriteFile is atomic: it writes a temporary file next to the target, syncs
// it and renames it over the target, so a reader never sees a half-written
// model and a failed write leaves any earlier file untouched.
//
// Callers: `kvstack gen-model` (src/modelgen), tests that need GGUF images.
// Thread safety: a writer is used by one thread at a time; the const write
// methods may run concurrently only if the tensor callbacks allow it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/status.h"

namespace kvstack {

class GgufWriter {
 public:
  // Produces one tensor's bytes into `out`, which is exactly the tensor's
  // size (GgmlTensorBytes) and zero-filled. May be called more than once (once
  // per write); a non-OK status aborts the write and is returned from it.
  using TensorFiller = std::function<Status(std::span<std::byte> out)>;

  // REQUIRES: alignment is a power of two from 1 to 2^20 (ggml accepts any
  // power of two; 32 is what llama.cpp writes).
  explicit GgufWriter(uint32_t alignment = 32);

  // Adds a metadata entry. Fails with AlreadyExists when `key` is already set,
  // and InvalidArgument when it is empty or is general.alignment (the writer
  // owns it).
  Status Set(std::string key, GgufValue value);
  // Typed conveniences for the common types.
  Status SetUint32(std::string key, uint32_t value);
  Status SetInt32(std::string key, int32_t value);
  Status SetUint64(std::string key, uint64_t value);
  Status SetFloat32(std::string key, float value);
  Status SetBool(std::string key, bool value);
  Status SetString(std::string key, std::string value);
  Status SetStringArray(std::string key, std::vector<std::string> values);
  Status SetFloat32Array(std::string key, std::vector<float> values);
  Status SetInt32Array(std::string key, std::vector<int32_t> values);

  // Adds a tensor, dims in ggml order (ne[0], the contiguous row, first).
  // Fails with AlreadyExists for a repeated name, InvalidArgument for an empty
  // name, a type GgufFile does not read, or dims GgmlTensorBytes rejects (none,
  // more than 4, a zero, a row that is not a whole number of blocks).
  Status AddTensor(std::string name, std::vector<uint64_t> dims, GgmlType type, TensorFiller filler);
  // As above with the bytes given now; also fails with InvalidArgument when
  // their size is not the tensor's.
  Status AddTensor(std::string name, std::vector<uint64_t> dims, GgmlType type, std::vector<std::byte> bytes);

  size_t metadata_count() const { return metadata_.size() + 1; }  // + general.alignment
  size_t tensor_count() const { return tensors_.size(); }
  // Sum of the tensors' sizes without padding.
  uint64_t tensor_bytes() const;
  // The size of the file Write* produces.
  uint64_t FileSize() const;

  // Writes the file atomically (see above). Fails with InvalidArgument naming
  // the path when its folder does not exist or cannot be written, Unavailable
  // when the disk fails (the message carries strerror), or with a filler's
  // error. The temporary file is removed on every failure.
  Status WriteFile(const std::string& path) const;
  // The same bytes, in memory (tests; small files).
  Result<std::vector<std::byte>> Serialize() const;

 private:
  struct PendingTensor {
    std::string name;
    std::vector<uint64_t> dims;
    GgmlType type;
    uint64_t size_bytes;
    uint64_t offset;  // within the data section, aligned
    TensorFiller filler;
  };
  using ByteSink = std::function<Status(std::span<const std::byte>)>;

  Status CheckNewKey(const std::string& key) const;
  // Header, metadata and tensor table, padded to the alignment.
  std::vector<std::byte> EncodeHeader() const;
  // The whole file, in order, through `sink`.
  Status WriteTo(const ByteSink& sink) const;

  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<PendingTensor> tensors_;
  uint64_t data_size_ = 0;  // of the data section, padded
};

}  // namespace kvstack
