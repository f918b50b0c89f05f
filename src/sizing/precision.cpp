// Storage precisions and their exact cost in bytes.
#include <cctype>
#include <string>

#include "kvstack/sizing.h"

#include "kvstack/kv_arena.h"

namespace kvstack::sizing {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Result<Precision> ParsePrecision(std::string_view text) {
  const std::string t = Lower(text);
  if (t == "f32" || t == "fp32" || t == "float32") return Precision::kF32;
  if (t == "bf16" || t == "bfloat16") return Precision::kBf16;
  if (t == "fp16" || t == "f16" || t == "float16") return Precision::kF16;
  // Both fp8 formats are one byte; the choice between them is about accuracy.
  if (t == "fp8" || t == "f8" || t == "e4m3" || t == "e5m2") return Precision::kFp8;
  if (t == "int8" || t == "i8" || t == "q8") return Precision::kInt8;
  if (t == "int4" || t == "i4" || t == "q4") return Precision::kInt4;
  return InvalidArgument("precision \"" + std::string(text) +
                         "\": expected one of f32, bf16, fp16, fp8, int8, int4");
}

std::string_view PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kF32: return "f32";
    case Precision::kBf16: return "bf16";
    case Precision::kF16: return "fp16";
    case Precision::kFp8: return "fp8";
    case Precision::kInt8: return "int8";
    case Precision::kInt4: return "int4";
  }
  return "unknown";
}

BytesPerValue PrecisionBytes(Precision precision) {
  switch (precision) {
    case Precision::kF32: return {4, 1};
    case Precision::kBf16:
    case Precision::kF16: return {2, 1};
    case Precision::kFp8:
    case Precision::kInt8: return {1, 1};
    // 4 bits + a 16-bit scale per 128 values = 528 bits per 128 values
    // = 66 bytes per 128 values = 33/64 byte per value.
    case Precision::kInt4: return {33, 64};
  }
  return {0, 1};
}

int64_t KvBytesForValues(int64_t values, int64_t row_width, Precision kv) {
  KvDType t = KvDType::kF32;
  switch (kv) {
    case Precision::kF32: return BytesForValues(values, kv);
    case Precision::kBf16:
    case Precision::kF16: return BytesForValues(values, kv);
    case Precision::kFp8: t = KvDType::kFp8E4M3; break;
    case Precision::kInt8: t = KvDType::kInt8; break;
    case Precision::kInt4: t = KvDType::kInt4; break;
  }
  constexpr int32_t kBlock = 16;
  const int32_t d = static_cast<int32_t>(row_width);
  // One K row and one V row of one token, in block-bytes / block tokens.
  const int64_t pair_per_block = static_cast<int64_t>(KvHeadBytes(t, KvPart::kKey, kBlock, d) +
                                                      KvHeadBytes(t, KvPart::kValue, kBlock, d));
  const int64_t pairs = values / (2 * row_width);
  const int64_t rest = values - pairs * 2 * row_width;  // an odd row (MLA): priced as K
  return (pairs * pair_per_block + kBlock - 1) / kBlock +
         (rest * static_cast<int64_t>(KvHeadBytes(t, KvPart::kKey, kBlock, d)) / row_width + kBlock - 1) / kBlock;
}

int64_t BytesForValues(int64_t count, Precision precision) {
  const BytesPerValue b = PrecisionBytes(precision);
  return (count * b.numerator + b.denominator - 1) / b.denominator;
}

}  // namespace kvstack::sizing
