// GGUF model files: a bounds-checked reader for llama.cpp's weight format.
//
// A GGUF file is a header, typed key/value metadata, a table of tensor
// descriptions and an aligned blob of tensor data. GgufFile::Open maps a file
// read-only and validates all of it before returning: every count, string
// length, dimension, tensor offset, size and the alignment is checked against
// the bytes actually present, so a truncated or hostile file is an error value
// that names the metadata key or tensor and the byte offset, never a crash or a
// huge allocation. Versions 2 and 3 are read; version 1 (32-bit counts) is not.
//
// Callers: the weight loader (tensor bytes by name), the tokenizer
// (`tokenizer.ggml.*` through ReadTokenizerMetadata), the engine
// (ReadLlamaHParams) and `kvstack` CLI commands that describe a model.
//
// Thread safety: a GgufFile never changes after Open/Parse returns it; any
// number of threads may call its const methods at once. Spans and pointers it
// hands out stay valid until the GgufFile is destroyed (moving it keeps them
// valid: the mapping moves with it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kvstack/status.h"

namespace kvstack {

// ---------------------------------------------------------------------------
// Tensor element types (ggml's on-disk ids; 4 and 5 were retired by ggml).

enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
};

// How a type packs elements: `block_elements` consecutive elements of a row
// are stored in `block_bytes` bytes (1 element per block for F32/F16/BF16).
struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;  // as ggml spells it: "Q4_K", "BF16"
  uint32_t block_elements;
  uint32_t block_bytes;
};

// Traits for a raw type id read from a file. Fails with InvalidArgument
// ("unknown ggml type id 4") for ids this reader does not know.
Result<const GgmlTypeTraits*> LookupGgmlType(uint32_t raw_id);

// REQUIRES: `type` is one of the enumerators above (the process aborts
// otherwise: such a value can only come from a bad cast).
const GgmlTypeTraits& GetGgmlTypeTraits(GgmlType type);

// Bytes taken by a tensor of `type` whose dimensions are `dims`, ne[0] (the
// contiguous row length) first. Fails with InvalidArgument when `dims` is empty
// or longer than 4, a dimension is 0, ne[0] is not a multiple of the type's
// block size, or the element count or byte size does not fit in int64.
Result<uint64_t> GgmlTensorBytes(GgmlType type, std::span<const uint64_t> dims);

// ---------------------------------------------------------------------------
// Metadata values.

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "string", "array", ... ("unknown" outside the enumerators).
std::string_view GgufValueTypeName(GgufValueType type);

// One metadata value: a scalar, a string, or an array of scalars or strings
// (GGUF allows nested arrays, but no GGUF writer produces them and this reader
// rejects them). Strings are kept as the file's bytes; they are not checked to
// be UTF-8.
class GgufValue {
 public:
  // Alternatives in GgufValueType order, scalars then arrays.
  using Storage = std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float,
                               bool, std::string, uint64_t, int64_t, double,
                               std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>,
                               std::vector<int16_t>, std::vector<uint32_t>, std::vector<int32_t>,
                               std::vector<float>, std::vector<bool>, std::vector<std::string>,
                               std::vector<uint64_t>, std::vector<int64_t>, std::vector<double>>;

  explicit GgufValue(Storage storage) : storage_(std::move(storage)) {}

  // kArray for every array; element_type() then says of what.
  GgufValueType type() const;
  bool is_array() const;
  // REQUIRES: is_array().
  GgufValueType element_type() const;
  // REQUIRES: is_array().
  uint64_t array_size() const;
  // "uint32", "array of string" - for messages.
  std::string TypeName() const;
  const Storage& storage() const { return storage_; }

  // Typed views. Integer getters accept any integer type whose value fits the
  // requested one (a file may store a count as uint64 or int32); float getters
  // accept float32 and float64. Each fails with InvalidArgument saying the
  // expected and the actual type or value ("expected uint32, found string");
  // GgufFile's getters add the key and its offset.
  Result<uint64_t> AsUint64() const;
  Result<uint32_t> AsUint32() const;
  Result<int64_t> AsInt64() const;
  Result<float> AsFloat32() const;
  Result<bool> AsBool() const;
  Result<std::string_view> AsString() const;
  // Arrays are returned only when stored with exactly this element type; the
  // spans point into this value.
  Result<std::span<const std::string>> AsStringArray() const;
  Result<std::span<const float>> AsFloat32Array() const;
  Result<std::span<const int32_t>> AsInt32Array() const;

 private:
  Storage storage_;
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
  uint64_t offset;  // of the entry (its key's length prefix) in the file
};

// ---------------------------------------------------------------------------
// Tensors.

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: ne[0] (contiguous) first; 1 to 4 entries
  GgmlType type;
  uint64_t offset;       // within the data section, a multiple of the file's alignment
  uint64_t file_offset;  // of the first data byte from the start of the file
  uint64_t n_elements;
  uint64_t size_bytes;
  uint64_t info_offset;  // of this tensor's description in the file, for messages
  // The tensor's bytes inside the file. When the file came from Open they are
  // aligned to the file's alignment or the page size, whichever is smaller
  // (the mapping is page-aligned); after Parse, only as aligned as the
  // caller's buffer allows.
  std::span<const std::byte> data;
};

// ---------------------------------------------------------------------------
// The file.

class GgufFile {
 public:
  // Maps `path` read-only and parses it as Parse does; errors are prefixed
  // with the path. Fails with NotFound when the file does not exist, and
  // InvalidArgument when it cannot be opened, is not a regular file or cannot
  // be mapped.
  // REQUIRES: nobody truncates or rewrites the file while the GgufFile lives
  // (the kernel would then fault on access to the missing pages).
  static Result<GgufFile> Open(const std::string& path);

  // Parses a GGUF image held by the caller (tests, fuzzing, embedded files).
  // Fails with DataLoss for a malformed or truncated image and InvalidArgument
  // for a well-formed one this reader does not support (version, tensor type,
  // nested arrays).
  // The message names the key or tensor and the byte offset.
  // REQUIRES: `bytes` outlives the returned GgufFile and does not change.
  static Result<GgufFile> Parse(std::span<const std::byte> bytes);

  GgufFile(GgufFile&& other) noexcept;
  GgufFile& operator=(GgufFile&& other) noexcept;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;
  ~GgufFile();

  uint32_t version() const { return version_; }
  // general.alignment, or 32 when the file does not set it.
  uint32_t alignment() const { return alignment_; }
  // Offset of the tensor data section (end of the tensor table rounded up to
  // the alignment). Files without tensors may end before it.
  uint64_t data_offset() const { return data_offset_; }
  std::span<const std::byte> bytes() const { return bytes_; }

  // In file order.
  std::span<const GgufKeyValue> metadata() const { return metadata_; }
  std::span<const GgufTensorInfo> tensors() const { return tensors_; }

  bool Has(std::string_view key) const;
  // NotFound ("metadata key 'x' not found") when absent.
  Result<const GgufValue*> Find(std::string_view key) const;

  // Typed getters: NotFound when the key is absent, InvalidArgument naming the
  // key, its offset, and the expected and actual type when it has another type
  // (see GgufValue's As* for which types convert).
  Result<uint32_t> GetUint32(std::string_view key) const;
  Result<uint64_t> GetUint64(std::string_view key) const;
  Result<float> GetFloat32(std::string_view key) const;
  Result<bool> GetBool(std::string_view key) const;
  Result<std::string_view> GetString(std::string_view key) const;
  Result<std::span<const std::string>> GetStringArray(std::string_view key) const;
  Result<std::span<const float>> GetFloat32Array(std::string_view key) const;
  Result<std::span<const int32_t>> GetInt32Array(std::string_view key) const;

  // As above, but an absent key yields `fallback`; a present key of the wrong
  // type is still an error.
  Result<uint32_t> GetUint32Or(std::string_view key, uint32_t fallback) const;
  Result<float> GetFloat32Or(std::string_view key, float fallback) const;
  Result<bool> GetBoolOr(std::string_view key, bool fallback) const;

  // NotFound ("tensor 'x' not found") when absent.
  Result<const GgufTensorInfo*> FindTensor(std::string_view name) const;

 private:
  class Mapping;  // an mmap'ed file, unmapped on destruction

  GgufFile();  // out of line: Mapping is incomplete here
  // Find(key), then `as`, naming the key and its offset on failure. Defined
  // and instantiated in gguf_file.cpp only.
  template <typename T>
  Result<T> GetAs(std::string_view key, Result<T> (GgufValue::*as)() const) const;

  std::unique_ptr<Mapping> mapping_;  // null for Parse
  std::span<const std::byte> bytes_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 0;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// ---------------------------------------------------------------------------
// Llama-family hyperparameters (`llama`, `qwen2`).

enum class RopeScalingType { kNone, kLinear, kYarn };

struct LlamaHParams {
  std::string architecture;   // general.architecture: "llama" or "qwen2"
  uint32_t n_layer = 0;       // {arch}.block_count
  uint32_t n_embd = 0;        // {arch}.embedding_length
  uint32_t n_head = 0;        // {arch}.attention.head_count
  uint32_t n_head_kv = 0;     // {arch}.attention.head_count_kv, default n_head
  uint32_t head_dim = 0;      // {arch}.attention.key_length, default n_embd / n_head
  uint32_t head_dim_v = 0;    // {arch}.attention.value_length, default head_dim
  uint32_t n_rot = 0;         // {arch}.rope.dimension_count, default head_dim
  uint32_t n_ff = 0;          // {arch}.feed_forward_length
  uint32_t n_ctx_train = 0;   // {arch}.context_length
  uint32_t n_vocab = 0;       // tokenizer.ggml.tokens length, else {arch}.vocab_size,
                              // else token_embd.weight's ne[1]
  float rope_freq_base = 10000.0f;  // {arch}.rope.freq_base
  float rms_eps = 0.0f;             // {arch}.attention.layer_norm_rms_epsilon
  RopeScalingType rope_scaling = RopeScalingType::kNone;  // {arch}.rope.scaling.type
  float rope_scaling_factor = 1.0f;  // {arch}.rope.scaling.factor (or .rope.scale_linear)
  uint32_t rope_original_ctx = 0;    // {arch}.rope.scaling.original_context_length, else n_ctx_train
};

// Reads and cross-checks the hyperparameters. Fails with NotFound naming a
// required key that is missing, and with InvalidArgument naming the key when
// the architecture is not llama or qwen2, a key has the wrong type, a value is
// zero or not finite, or the values
// disagree (n_head_kv must divide n_head, n_head must divide n_embd when
// key_length is absent, n_rot must be even and at most head_dim, vocab_size
// must match the token list).
Result<LlamaHParams> ReadLlamaHParams(const GgufFile& file);

// ---------------------------------------------------------------------------
// Tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).

struct GgufTokenizerMetadata {
  std::string_view model;  // tokenizer.ggml.model: "llama" (SentencePiece), "gpt2" (BPE), ...
  std::string_view pre;    // tokenizer.ggml.pre, empty when absent
  std::span<const std::string> tokens;  // tokenizer.ggml.tokens (required, non-empty)
  std::span<const float> scores;        // tokenizer.ggml.scores: empty or one per token
  std::span<const int32_t> token_types; // tokenizer.ggml.token_type: empty or one per token
  std::span<const std::string> merges;  // tokenizer.ggml.merges, empty when absent
  // Special token ids; absent when the key is missing or holds 0xFFFFFFFF
  // (llama.cpp's "no token").
  std::optional<uint32_t> bos_id, eos_id, unk_id, sep_id, pad_id, eot_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::optional<std::string_view> chat_template;  // tokenizer.chat_template
};

// Collects the tokenizer keys. Spans and views point into `file`.
// Fails (NotFound / InvalidArgument naming the key) when tokenizer.ggml.model
// or tokenizer.ggml.tokens is missing, a key has the wrong type, scores or
// token_type have a length other than the token count, or a special token id
// is not below the token count.
// REQUIRES: `file` outlives the result.
Result<GgufTokenizerMetadata> ReadTokenizerMetadata(const GgufFile& file);

}  // namespace kvstack
