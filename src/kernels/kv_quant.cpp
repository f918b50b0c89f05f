// Storing tokens into KV heads of every type, and reading one token back (the
// scalar reference the attention kernels are tested against). Byte layouts:
// include/kvstack/kv_arena.h.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/half.h"
#include "kvstack/kernels.h"
#include "kvstack/kv_fp8_scale.h"

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

// Squared error of each |x[d]| stored at multiplier m (inv = 1 / m): the
// value rounded to the format's nearest (ties to even, saturating at its
// largest), as Fp8ToFloat(FloatToFp8(x * inv)) * m gives, without the codes.
// Branch-free so that the compiler vectorizes it: the scale search runs it
// sixteen times a row. ax: |x|, not NaN.
struct Fp8Rounding {
  explicit Fp8Rounding(Fp8Format f)
      : drop(23 - f.man),
        max_value(Fp8ToFloat(f.max_code, f)),
        min_normal(std::ldexp(1.0f, 1 - f.bias)),
        step(std::ldexp(1.0f, 1 - f.bias - f.man)),
        inv_step(std::ldexp(1.0f, f.bias + f.man - 1)) {}
  int drop;
  float max_value, min_normal, step, inv_step;
};
void Fp8RowErrors(const float* ax, int D, float inv, float m, const Fp8Rounding& k, float* err) {
  const uint32_t half = (1u << (k.drop - 1)) - 1, keep = ~((1u << k.drop) - 1);
  for (int d = 0; d < D; ++d) {
    const float a = ax[d] * inv;
    uint32_t b;
    std::memcpy(&b, &a, 4);
    b = (b + half + ((b >> k.drop) & 1)) & keep;
    float normal;
    std::memcpy(&normal, &b, 4);
    // Below the smallest normal: a multiple of the subnormal step, rounded
    // to even by the float addition (the quotient is below 2^23).
    const float sub = ((a * k.inv_step + 0x1p23f) - 0x1p23f) * k.step;
    float r = a < k.min_normal ? sub : normal;
    r = a < k.max_value ? r : k.max_value;
    const float e = r * m - ax[d];
    err[d] = e * e;
  }
}

// One fp8 row and its scale code (kv_arena.h). The row is stored as x / M(c)
// for the code c, among the sixteen from the smallest multiplier that keeps
// the row's largest value finite up one octave, whose rounded row is closest
// to x (least squared error). Above the smallest normal, FP8's relative step
// is the same at every scale, but where a row's values fall between the
// steps is not: over 64 Gaussian values the best of sixteen alignments has
// two thirds of the squared error of any one.
void StoreFp8Row(uint8_t* head, int B, int D, int slot, const float* x, Fp8Format f) {
  const Fp8Rounding k(f);
  thread_local std::vector<float> ax, err;
  ax.resize(static_cast<size_t>(D));
  err.resize(static_cast<size_t>(D));
  float amax = 0;
  for (int d = 0; d < D; ++d) {
    ax[d] = std::fabs(x[d]);
    amax = std::max(amax, ax[d]);  // NaN never wins
    if (ax[d] != ax[d]) ax[d] = 0;  // stored saturated below; no error to weigh
  }
  // The smallest code whose multiplier keeps amax finite: from the
  // logarithm, then settled exactly (multipliers grow with the code).
  const float guess = 160.0f + 16.0f * std::log2(amax / k.max_value);
  int first = guess > 0 ? static_cast<int>(std::min(std::ceil(guess), 255.0f)) : 0;
  const auto fits = [&](int c) { return Fp8RowScale(static_cast<uint8_t>(c)) * k.max_value >= amax; };
  while (first > 0 && fits(first - 1)) --first;
  while (first < 255 && !fits(first)) ++first;
  int best = first;
  float best_error = std::numeric_limits<float>::infinity();
  for (int c = first; c < std::min(first + 16, 256); ++c) {
    const float m = Fp8RowScale(static_cast<uint8_t>(c));
    Fp8RowErrors(ax.data(), D, 1.0f / m, m, k, err.data());
    float error = 0;
    for (int d = 0; d < D; ++d) error += err[d];
    if (error < best_error) best_error = error, best = c;
  }
  const float inv = 1.0f / Fp8RowScale(static_cast<uint8_t>(best));
  uint8_t* q = head + static_cast<size_t>(slot) * D;
  for (int d = 0; d < D; ++d) q[d] = FloatToFp8(x[d] * inv, f);
  head[static_cast<size_t>(B) * D + static_cast<size_t>(slot)] = static_cast<uint8_t>(best);
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

// K of int8 and int4 (KIVI's per-channel keys): each channel's scale, and
// int4's offset, come from that channel's values over the whole block, so
// keys are written a whole block at a time (QuantizeKvHead; the engine keeps
// a partial block at f16 until it is full).

// The smallest code whose scale S * code is at least `want` (at most 255).
int CodeFor(float want, float S) {
  if (!(S > 0) || !(want > 0)) return 0;
  if (!(want / S < 255.0f)) return 255;
  int c = std::min(255, static_cast<int>(std::ceil(want / S)));
  while (c < 255 && S * static_cast<float>(c) < want) ++c;
  return c;
}

// int8 K: q[B][D], float S, code[D]; channel d's scale S * code[d] is the
// channel's largest |value| / 127 rounded up to a code, S the largest / 255.
void StoreInt8KeyBlock(uint8_t* head, int B, int D, const float* rows) {
  uint8_t* s_at = head + static_cast<size_t>(B) * D;
  uint8_t* code = s_at + 4;
  thread_local std::vector<float> want;
  want.assign(static_cast<size_t>(D), 0.0f);
  float top = 0;
  for (int t = 0; t < B; ++t) {
    for (int d = 0; d < D; ++d) want[d] = std::max(want[d], std::fabs(rows[static_cast<size_t>(t) * D + d]) / 127);
  }
  for (int d = 0; d < D; ++d) top = std::max(top, want[d]);
  const float S = top / 255;
  std::memcpy(s_at, &S, 4);
  for (int d = 0; d < D; ++d) code[d] = static_cast<uint8_t>(CodeFor(want[d], S));
  for (int t = 0; t < B; ++t) {
    for (int d = 0; d < D; ++d) {
      const float scale = S * static_cast<float>(code[d]);
      const int v = scale > 0 ? RoundClamp(rows[static_cast<size_t>(t) * D + d] / scale, -127, 127) : 0;
      head[static_cast<size_t>(t) * D + d] = static_cast<uint8_t>(static_cast<int8_t>(v));
    }
  }
}

// fp8 K (layout in kv_arena.h): each channel is centred on its range's
// midpoint over the block, coded as an unscaled e4m3 value (RoPE's slow
// channels sit far from zero within a block, and FP8's step grows with the
// value); the rows, less the coded offsets, are then stored as fp8 rows.
// The offset's coding error is part of what the rows store, never an error.
void StoreFp8KeyBlock(uint8_t* head, int B, int D, const float* rows, Fp8Format f) {
  uint8_t* offsets = head + static_cast<size_t>(B) * D + static_cast<size_t>(B);
  thread_local std::vector<float> offset, row;
  offset.assign(static_cast<size_t>(D), 0.0f);
  row.resize(static_cast<size_t>(D));
  for (int d = 0; d < D; ++d) {
    float lo = rows[d], hi = rows[d];
    for (int t = 1; t < B; ++t) {
      lo = std::min(lo, rows[static_cast<size_t>(t) * D + d]);
      hi = std::max(hi, rows[static_cast<size_t>(t) * D + d]);
    }
    offsets[d] = FloatToFp8(0.5f * lo + 0.5f * hi, kE4M3);
    offset[d] = Fp8ToFloat(offsets[d], kE4M3);
  }
  for (int t = 0; t < B; ++t) {
    for (int d = 0; d < D; ++d) row[d] = rows[static_cast<size_t>(t) * D + d] - offset[d];
    StoreFp8Row(head, B, D, t, row.data(), f);
  }
}

// int4 K (layout in kv_arena.h): each channel is centred on an offset, the
// midpoint of its range coded in 8 bits against U = the largest |midpoint| /
// 127 (a channel whose keys sit far from zero, as RoPE's slow pairs do within
// a block, spends its 15 levels on its range, not on its distance from
// zero); its scale covers what is left after the coded offset, rounded up to
// one of 16 steps S * 2^(-e/3) below the block's largest. The offset's
// coding error only widens that range, it is never an error in the value.
void StoreInt4KeyBlock(uint8_t* head, int B, int D, const float* rows) {
  const int half = D / 2;
  uint8_t* tail = head + static_cast<size_t>(B) * half;
  uint8_t* ecode = tail + 8;
  int8_t* ocode = reinterpret_cast<int8_t*>(ecode + half);
  thread_local std::vector<float> offset, need;
  offset.assign(static_cast<size_t>(D), 0.0f);
  need.assign(static_cast<size_t>(D), 0.0f);
  float top_mid = 0;
  for (int d = 0; d < D; ++d) {
    float lo = rows[d], hi = rows[d];
    for (int t = 1; t < B; ++t) {
      lo = std::min(lo, rows[static_cast<size_t>(t) * D + d]);
      hi = std::max(hi, rows[static_cast<size_t>(t) * D + d]);
    }
    offset[d] = lo / 2 + hi / 2;  // halves first: no overflow near the float maximum
    if (std::isfinite(offset[d])) top_mid = std::max(top_mid, std::fabs(offset[d]));
  }
  const float U = top_mid / 127;
  for (int d = 0; d < D; ++d) {
    const int o = U > 0 ? RoundClamp(offset[d] / U, -127, 127) : 0;
    ocode[d] = static_cast<int8_t>(o);
    offset[d] = U * static_cast<float>(o);
  }
  float S = 0;
  for (int d = 0; d < D; ++d) {
    for (int t = 0; t < B; ++t) {
      need[d] = std::max(need[d], std::fabs(rows[static_cast<size_t>(t) * D + d] - offset[d]) / 7);
    }
    if (std::isfinite(need[d])) S = std::max(S, need[d]);
  }
  std::memcpy(tail, &S, 4);
  std::memcpy(tail + 4, &U, 4);
  int e[2] = {0, 0};
  for (int i = 0; i < half; ++i) {
    int nibble[2];
    for (int h = 0; h < 2; ++h) {
      const int d = i + h * half;
      // The smallest step not below the channel's need (step 0 is S itself).
      e[h] = 0;
      while (e[h] < 15 && S * kInt4KeyScaleSteps[e[h] + 1] >= need[d]) ++e[h];
    }
    ecode[i] = static_cast<uint8_t>(e[0] | (e[1] << 4));
    for (int t = 0; t < B; ++t) {
      for (int h = 0; h < 2; ++h) {
        const int d = i + h * half;
        const float scale = S * kInt4KeyScaleSteps[e[h]];
        const float x = rows[static_cast<size_t>(t) * D + d] - offset[d];
        nibble[h] = (scale > 0 ? RoundClamp(x / scale, -7, 7) : 0) + 8;
      }
      head[static_cast<size_t>(t) * half + i] = static_cast<uint8_t>(nibble[0] | (nibble[1] << 4));
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
    case KvDType::kFp8E5M2:
      if (part == KvPart::kKey) {
        std::fprintf(stderr, "QuantizeKvRow: %s keys are written a whole block at a time (QuantizeKvHead)\n",
                     std::string(KvDTypeName(type)).c_str());
        std::abort();
      }
      return StoreFp8Row(head, B, D, slot, x, type == KvDType::kFp8E4M3 ? kE4M3 : kE5M2);
    case KvDType::kInt8:
    case KvDType::kInt4:
      if (part == KvPart::kKey) {
        std::fprintf(stderr, "QuantizeKvRow: %s keys are written a whole block at a time (QuantizeKvHead)\n",
                     std::string(KvDTypeName(type)).c_str());
        std::abort();
      }
      if (type == KvDType::kInt8) {
        StoreInt8(head, B, D, slot, x);
      } else {
        StoreInt4Value(head, B, D, slot, x);
      }
      return;
  }
}

void QuantizeKvHead(KvDType type, KvPart part, std::byte* head, int32_t B, int32_t D, const float* rows) {
  uint8_t* bytes = reinterpret_cast<uint8_t*>(head);
  if (type == KvDType::kInt8 && part == KvPart::kKey) return StoreInt8KeyBlock(bytes, B, D, rows);
  if (type == KvDType::kInt4 && part == KvPart::kKey) return StoreInt4KeyBlock(bytes, B, D, rows);
  if (type == KvDType::kFp8E4M3 && part == KvPart::kKey) return StoreFp8KeyBlock(bytes, B, D, rows, kE4M3);
  if (type == KvDType::kFp8E5M2 && part == KvPart::kKey) return StoreFp8KeyBlock(bytes, B, D, rows, kE5M2);
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
    case KvDType::kFp8E5M2: {
      const Fp8Format f = type == KvDType::kFp8E4M3 ? kE4M3 : kE5M2;
      const float m = Fp8RowScale(head[static_cast<size_t>(B) * D + static_cast<size_t>(slot)]);
      for (int d = 0; d < D; ++d) out[d] = Fp8ToFloat(head[row + d], f) * m;
      if (part == KvPart::kKey) {
        const uint8_t* offsets = head + static_cast<size_t>(B) * D + static_cast<size_t>(B);
        for (int d = 0; d < D; ++d) out[d] += Fp8ToFloat(offsets[d], kE4M3);
      }
      return;
    }
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
        if (part == KvPart::kKey) {
          const int e = d < half ? (tail[8 + i] & 15) : (tail[8 + i] >> 4);
          const float offset = ReadF32(tail + 4) * static_cast<float>(static_cast<int8_t>(tail[8 + half + d]));
          out[d] = static_cast<float>(nib - 8) * (ReadF32(tail) * kInt4KeyScaleSteps[e]) + offset;
        } else {
          out[d] = static_cast<float>(nib - 8) *
                   Fp16ToFp32(ReadU16(tail + static_cast<size_t>(slot) * groups * 2 + 2 * (d / G)));
        }
      }
      return;
    }
  }
}

}  // namespace kvstack::kernels
