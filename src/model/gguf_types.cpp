// ggml tensor types: block geometry and tensor byte sizes.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kvstack/gguf.h"

namespace kvstack {
namespace {

// Block layouts as ggml defines them. K-quants group 256 elements in a
// super-block; the byte counts add up the scales and quants of each layout
// (Q4_K: 2 fp16 + 12 scale bytes + 128 nibble bytes = 144).
constexpr std::array<GgmlTypeTraits, 15> kTraits = {{
    {GgmlType::kF32, "F32", 1, 4},
    {GgmlType::kF16, "F16", 1, 2},
    {GgmlType::kQ4_0, "Q4_0", 32, 18},
    {GgmlType::kQ4_1, "Q4_1", 32, 20},
    {GgmlType::kQ5_0, "Q5_0", 32, 22},
    {GgmlType::kQ5_1, "Q5_1", 32, 24},
    {GgmlType::kQ8_0, "Q8_0", 32, 34},
    {GgmlType::kQ8_1, "Q8_1", 32, 36},
    {GgmlType::kQ2_K, "Q2_K", 256, 84},
    {GgmlType::kQ3_K, "Q3_K", 256, 110},
    {GgmlType::kQ4_K, "Q4_K", 256, 144},
    {GgmlType::kQ5_K, "Q5_K", 256, 176},
    {GgmlType::kQ6_K, "Q6_K", 256, 210},
    {GgmlType::kQ8_K, "Q8_K", 256, 292},
    {GgmlType::kBF16, "BF16", 1, 2},
}};

constexpr uint64_t kMaxTensorDims = 4;  // ggml's GGML_MAX_DIMS
constexpr uint64_t kInt64Max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

}  // namespace

Result<const GgmlTypeTraits*> LookupGgmlType(uint32_t raw_id) {
  for (const GgmlTypeTraits& t : kTraits) {
    if (static_cast<uint32_t>(t.type) == raw_id) return &t;
  }
  return InvalidArgument(fmt::format(
      "unknown ggml type id {} (known: F32=0 F16=1 Q4_0=2 Q4_1=3 Q5_0=6 Q5_1=7 Q8_0=8 Q8_1=9 "
      "Q2_K=10 Q3_K=11 Q4_K=12 Q5_K=13 Q6_K=14 Q8_K=15 BF16=30)",
      raw_id));
}

const GgmlTypeTraits& GetGgmlTypeTraits(GgmlType type) {
  auto traits = LookupGgmlType(static_cast<uint32_t>(type));
  if (!traits.ok()) {
    // A GgmlType only comes from LookupGgmlType or an enumerator; anything
    // else is a cast gone wrong in the caller.
    std::fprintf(stderr, "GetGgmlTypeTraits: %u is not a GgmlType enumerator\n", static_cast<uint32_t>(type));
    std::abort();
  }
  return **traits;
}

Result<uint64_t> GgmlTensorBytes(GgmlType type, std::span<const uint64_t> dims) {
  auto traits = LookupGgmlType(static_cast<uint32_t>(type));
  if (!traits.ok()) return traits.status();
  const GgmlTypeTraits& t = **traits;
  if (dims.empty() || dims.size() > kMaxTensorDims) {
    return InvalidArgument(fmt::format("{} dimensions: must be 1 to {}", dims.size(), kMaxTensorDims));
  }
  // ggml counts elements in int64, so anything past INT64_MAX is unusable even
  // where uint64 arithmetic would not wrap.
  uint64_t elements = 1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 0) return InvalidArgument(fmt::format("dimension ne[{}] is 0", i));
    if (dims[i] > kInt64Max / elements) {
      return InvalidArgument(fmt::format("dimensions [{}] overflow int64 at ne[{}]", fmt::join(dims, ", "), i));
    }
    elements *= dims[i];
  }
  if (dims[0] % t.block_elements != 0) {
    return InvalidArgument(fmt::format("ne[0] = {} is not a multiple of {}'s block size {}", dims[0], t.name,
                                       t.block_elements));
  }
  const uint64_t blocks = elements / t.block_elements;
  if (blocks > kInt64Max / t.block_bytes) {
    return InvalidArgument(fmt::format("{} blocks of {} bytes overflow int64", blocks, t.block_bytes));
  }
  return blocks * t.block_bytes;
}

std::string_view GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "unknown";
}

}  // namespace kvstack
