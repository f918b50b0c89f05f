// Storing tokens into KV heads of every type, and reading one token back (the
// scalar reference the attention kernels are tested against). Byte layouts:
// include/kvstack/kv_arena.h.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/half.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

using internal::Bf16ToFp32;
using internal::Fp16ToFp32;
using internal::Fp32ToBf16;
using internal::Fp32ToFp16;

uint16_t ReadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void WriteU16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
float ReadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

// OCP FP8 with `man` mantissa bits and exponent bias `bias`: e4m3 (3, 7;
// largest finite code 0x7e = 448), e5m2 (2, 15; 0x7b = 57344).
struct Fp8Format {
  int man;
  int bias;
  uint8_t max_code;
};
constexpr Fp8Format kE4M3{3, 7, 0x7e};
constexpr Fp8Format kE5M2{2, 15, 0x7b};

float Fp8ToFloat(uint8_t c, Fp8Format f) {
  const int e = (c & 0x7f) >> f.man;
  const int m = c & ((1 << f.man) - 1);
  const float a = e == 0 ? std::ldexp(static_cast<float>(m), 1 - f.bias - f.man)
                         : std::ldexp(static_cast<float>((1 << f.man) + m), e - f.bias - f.man);
  return (c & 0x80) ? -a : a;
}

// Round to nearest even, saturating at the largest finite value (as vLLM
// does); NaN saturates too rather than poisoning every later attention.
uint8_t FloatToFp8(float x, Fp8Format f) {
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const float a = std::fabs(x);
  if (!(a < Fp8ToFloat(f.max_code, f))) return sign | f.max_code;
  if (a == 0) return sign;
  int e;
  std::frexp(a, &e);                 // a = g * 2^e, g in [0.5, 1)
  e = std::max(e - 1, 1 - f.bias);   // the exponent, or the subnormals'
  const int q = static_cast<int>(std::nearbyint(std::ldexp(a, f.man - e)));  // 0 .. 2^(man+1)
  // Normal: ((e + bias) << man) + (q - 2^man); a carry to 2^(man+1) moves to
  // the next exponent, and at the subnormal exponent the code is q itself.
  const int code = ((e + f.bias - 1) << f.man) + q;
  return sign | static_cast<uint8_t>(std::min(code, static_cast<int>(f.max_code)));
}

// A binary16 scale for amax / levels, never below it (so no value clips) and
// finite.
float HalfScale(float amax, float levels, uint16_t* bits) {
  float s = amax / levels;
  uint16_t h = Fp32ToFp16(s);
  if (Fp16ToFp32(h) < s && h < 0x7bff) ++h;  // positive halves order like their bits
  if (h >= 0x7c00) h = 0x7bff;
  *bits = h;
  return Fp16ToFp32(h);
}

// Rounds to nearest, clamped to [lo, hi]; non-finite values (a model that
// overflowed) clamp too instead of reaching an undefined conversion.
int RoundClamp(float v, int lo, int hi) {
  if (!(v > static_cast<float>(lo))) return v == v ? lo : 0;
  if (!(v < static_cast<float>(hi))) return hi;
  return std::clamp(static_cast<int>(std::nearbyint(v)), lo, hi);
}

// int8 and int4 V: per token, per group of G elements, symmetric.
void StoreInt8(uint8_t* head, int B, int D, int slot, const float* x) {
  const int G = KvGroupSize(D), groups = D / G;
  uint8_t* q = head + static_cast<size_t>(slot) * D;
  uint8_t* scales = head + static_cast<size_t>(B) * D + static_cast<size_t>(slot) * groups * 2;
  for (int g = 0; g < groups; ++g) {
    float amax = 0;
    for (int d = g * G; d < (g + 1) * G; ++d) amax = std::max(amax, std::fabs(x[d]));
    uint16_t bits;
    const float s = HalfScale(amax, 127, &bits);
    WriteU16(scales + 2 * g, bits);
    for (int d = g * G; d < (g + 1) * G; ++d) {
      q[d] = static_cast<uint8_t>(static_cast<int8_t>(s > 0 ? RoundClamp(x[d] / s, -127, 127) : 0));
    }
  }
}

void StoreInt4Value(uint8_t* head, int B, int D, int slot, const float* x) {
  const int G = KvGroupSize(D), groups = D / G, half = D / 2;
  uint8_t* n = head + static_cast<size_t>(slot) * half;
  uint8_t* scales = head + static_cast<size_t>(B) * half + static_cast<size_t>(slot) * groups * 2;
  for (int g = 0; g < groups; ++g) {
    float amax = 0;
    for (int d = g * G; d < (g + 1) * G; ++d) amax = std::max(amax, std::fabs(x[d]));
    uint16_t bits;
    (void)HalfScale(amax, 7, &bits);
    WriteU16(scales + 2 * g, bits);
  }
  for (int i = 0; i < half; ++i) {
    int nibble[2];
    for (int h = 0; h < 2; ++h) {
      const int d = i + h * half;
      const float sc = Fp16ToFp32(ReadU16(scales + 2 * (d / G)));
      nibble[h] = (sc > 0 ? RoundClamp(x[d] / sc, -7, 7) : 0) + 8;
    }
    n[i] = static_cast<uint8_t>(nibble[0] | (nibble[1] << 4));
  }
}

// K of int8 and int4: channel scales S * code[d] over the block's tokens
// (KIVI's per-channel keys). Later tokens may need a wider scale than the
// block's first: a channel that overflows grows its scale at least 1.5x and
// only that channel's stored values are requantized; when a code would pass
// 255, S itself grows at least 1.5x and every channel is re-expressed
// against it. Growth is geometric, so the rounding errors of repeated
// requantization sum to at most ~1.5 steps of the final scale (a
// full-precision residual, as KIVI keeps, would need state outside the block).
constexpr float kGrowth = 1.5f;

// The quantized values of a channel-scaled K head: int8 bytes, or nibbles
// packed as kv_arena.h says (element i low, i + D/2 high), offset by 8.
struct KeyValues {
  uint8_t* q;
  int D;
  bool int4;
  int levels() const { return int4 ? 7 : 127; }
  int Get(int t, int d) const {
    if (!int4) return static_cast<int8_t>(q[static_cast<size_t>(t) * D + d]);
    const int half = D / 2;
    const uint8_t b = q[static_cast<size_t>(t) * half + (d < half ? d : d - half)];
    return (d < half ? (b & 15) : (b >> 4)) - 8;
  }
  void Set(int t, int d, int v) const {
    if (!int4) {
      q[static_cast<size_t>(t) * D + d] = static_cast<uint8_t>(static_cast<int8_t>(v));
      return;
    }
    const int half = D / 2;
    uint8_t& b = q[static_cast<size_t>(t) * half + (d < half ? d : d - half)];
    const int n = v + 8;
    b = d < half ? static_cast<uint8_t>((b & 0xf0) | n) : static_cast<uint8_t>((b & 0x0f) | (n << 4));
  }
  int Quantize(float v, float scale) const { return scale > 0 ? RoundClamp(v / scale, -levels(), levels()) : 0; }
};

// The smallest code whose scale S * code is at least `want` (at most 255).
int CodeFor(float want, float S) {
  if (!(S > 0) || !(want > 0)) return 0;
  if (!(want / S < 255.0f)) return 255;
  int c = std::min(255, static_cast<int>(std::ceil(want / S)));
  while (c < 255 && S * static_cast<float>(c) < want) ++c;
  return c;
}

size_t KeyValueBytes(bool int4, int B, int D) { return static_cast<size_t>(B) * (int4 ? D / 2 : D); }

void StoreChannelKey(bool int4, uint8_t* head, int B, int D, int slot, const float* x) {
  const KeyValues kv{head, D, int4};
  const float L = static_cast<float>(kv.levels());
  uint8_t* s_at = head + KeyValueBytes(int4, B, D);
  uint8_t* code = s_at + 4;
  if (slot == 0) {
    float top = 0;
    for (int d = 0; d < D; ++d) top = std::max(top, std::fabs(x[d]) / L);
    const float S = top * kGrowth / 255;  // room for the channels to grow before S must
    std::memcpy(s_at, &S, 4);
    for (int d = 0; d < D; ++d) {
      code[d] = static_cast<uint8_t>(CodeFor(std::fabs(x[d]) / L, S));
      kv.Set(0, d, kv.Quantize(x[d], S * static_cast<float>(code[d])));
    }
    return;
  }
  const float S = ReadF32(s_at);
  thread_local std::vector<float> old_scale, new_scale;
  old_scale.resize(static_cast<size_t>(D));
  new_scale.resize(static_cast<size_t>(D));
  float S_new = S;
  for (int d = 0; d < D; ++d) {
    old_scale[d] = S * static_cast<float>(code[d]);
    const float need = std::fabs(x[d]) / L;
    new_scale[d] = need > old_scale[d] ? std::max(need, kGrowth * old_scale[d]) : old_scale[d];
    if (new_scale[d] > 255 * S_new) S_new = std::max(new_scale[d] / 255, kGrowth * S_new);
  }
  if (S_new != S) std::memcpy(s_at, &S_new, 4);
  for (int d = 0; d < D; ++d) {
    const int c = S_new == S && new_scale[d] == old_scale[d] ? code[d] : CodeFor(new_scale[d], S_new);
    const float scale = S_new * static_cast<float>(c);
    if (scale != old_scale[d]) {
      for (int t = 0; t < slot; ++t) kv.Set(t, d, kv.Quantize(static_cast<float>(kv.Get(t, d)) * old_scale[d], scale));
    }
    code[d] = static_cast<uint8_t>(c);
    kv.Set(slot, d, kv.Quantize(x[d], scale));
  }
}

// A whole block of channel-scaled K at once: each channel's scale comes from
// that channel's largest value over the block, and S from the largest scale,
// so nothing grows or is requantized (QuantizeKvHead's contract).
void StoreChannelKeyBlock(bool int4, uint8_t* head, int B, int D, const float* rows) {
  const KeyValues kv{head, D, int4};
  const float L = static_cast<float>(kv.levels());
  uint8_t* s_at = head + KeyValueBytes(int4, B, D);
  uint8_t* code = s_at + 4;
  thread_local std::vector<float> want;
  want.assign(static_cast<size_t>(D), 0.0f);
  float top = 0;
  for (int t = 0; t < B; ++t) {
    for (int d = 0; d < D; ++d) want[d] = std::max(want[d], std::fabs(rows[static_cast<size_t>(t) * D + d]) / L);
  }
  for (int d = 0; d < D; ++d) top = std::max(top, want[d]);
  const float S = top / 255;
  std::memcpy(s_at, &S, 4);
  for (int d = 0; d < D; ++d) code[d] = static_cast<uint8_t>(CodeFor(want[d], S));
  for (int t = 0; t < B; ++t) {
    for (int d = 0; d < D; ++d) {
      kv.Set(t, d, kv.Quantize(rows[static_cast<size_t>(t) * D + d], S * static_cast<float>(code[d])));
    }
  }
}

}  // namespace

void QuantizeKvRow(KvDType type, KvPart part, std::byte* head_bytes, int32_t B, int32_t D, int32_t slot,
                   const float* x) {
  uint8_t* head = reinterpret_cast<uint8_t*>(head_bytes);
  const size_t row = static_cast<size_t>(slot) * D;
  switch (type) {
    case KvDType::kF32: std::memcpy(head + row * 4, x, static_cast<size_t>(D) * 4); return;
    case KvDType::kF16:
      for (int d = 0; d < D; ++d) WriteU16(head + (row + d) * 2, Fp32ToFp16(x[d]));
      return;
    case KvDType::kBF16:
      for (int d = 0; d < D; ++d) WriteU16(head + (row + d) * 2, Fp32ToBf16(x[d]));
      return;
    case KvDType::kFp8E4M3:
      for (int d = 0; d < D; ++d) head[row + d] = FloatToFp8(x[d], kE4M3);
      return;
    case KvDType::kFp8E5M2:
      for (int d = 0; d < D; ++d) head[row + d] = FloatToFp8(x[d], kE5M2);
      return;
    case KvDType::kInt8:
      if (part == KvPart::kKey) {
        StoreChannelKey(false, head, B, D, slot, x);
      } else {
        StoreInt8(head, B, D, slot, x);
      }
      return;
    case KvDType::kInt4:
      if (part == KvPart::kKey) {
        StoreChannelKey(true, head, B, D, slot, x);
      } else {
        StoreInt4Value(head, B, D, slot, x);
      }
      return;
  }
}

void QuantizeKvHead(KvDType type, KvPart part, std::byte* head, int32_t B, int32_t D, const float* rows) {
  if ((type == KvDType::kInt8 || type == KvDType::kInt4) && part == KvPart::kKey) {
    StoreChannelKeyBlock(type == KvDType::kInt4, reinterpret_cast<uint8_t*>(head), B, D, rows);
    return;
  }
  for (int32_t t = 0; t < B; ++t) QuantizeKvRow(type, part, head, B, D, t, rows + static_cast<size_t>(t) * D);
}

void DequantizeKvRow(KvDType type, KvPart part, const std::byte* head_bytes, int32_t B, int32_t D, int32_t slot,
                     float* out) {
  const uint8_t* head = reinterpret_cast<const uint8_t*>(head_bytes);
  const size_t row = static_cast<size_t>(slot) * D;
  const int G = KvGroupSize(D), groups = D / G, half = D / 2;
  switch (type) {
    case KvDType::kF32: std::memcpy(out, head + row * 4, static_cast<size_t>(D) * 4); return;
    case KvDType::kF16:
      for (int d = 0; d < D; ++d) out[d] = Fp16ToFp32(ReadU16(head + (row + d) * 2));
      return;
    case KvDType::kBF16:
      for (int d = 0; d < D; ++d) out[d] = Bf16ToFp32(ReadU16(head + (row + d) * 2));
      return;
    case KvDType::kFp8E4M3:
      for (int d = 0; d < D; ++d) out[d] = Fp8ToFloat(head[row + d], kE4M3);
      return;
    case KvDType::kFp8E5M2:
      for (int d = 0; d < D; ++d) out[d] = Fp8ToFloat(head[row + d], kE5M2);
      return;
    case KvDType::kInt8: {
      if (part == KvPart::kKey) {
        const uint8_t* tail = head + static_cast<size_t>(B) * D;
        for (int d = 0; d < D; ++d) {
          out[d] = static_cast<float>(static_cast<int8_t>(head[row + d])) *
                   (ReadF32(tail) * static_cast<float>(tail[4 + d]));
        }
        return;
      }
      const uint8_t* scales = head + static_cast<size_t>(B) * D + static_cast<size_t>(slot) * groups * 2;
      for (int d = 0; d < D; ++d) {
        out[d] = static_cast<float>(static_cast<int8_t>(head[row + d])) * Fp16ToFp32(ReadU16(scales + 2 * (d / G)));
      }
      return;
    }
    case KvDType::kInt4: {
      const uint8_t* n = head + static_cast<size_t>(slot) * half;
      const uint8_t* tail = head + static_cast<size_t>(B) * half;
      for (int d = 0; d < D; ++d) {
        const int i = d < half ? d : d - half;
        const int nib = d < half ? (n[i] & 15) : (n[i] >> 4);
        const float s = part == KvPart::kKey
                            ? ReadF32(tail) * static_cast<float>(tail[4 + d])
                            : Fp16ToFp32(ReadU16(tail + static_cast<size_t>(slot) * groups * 2 + 2 * (d / G)));
        out[d] = static_cast<float>(nib - 8) * s;
      }
      return;
    }
  }
}

}  // namespace kvstack::kernels
