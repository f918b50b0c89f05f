// Attention over quantized KV heads, written once over the vector
// abstraction `V` of simd_kernels.h and compiled per instruction set: scores
// of a query against a block's keys, and a weighted sum of its values, each
// dequantizing in registers (no float copy of a block is ever made). Layouts:
// include/kvstack/kv_arena.h; the scalar reference is kv_quant.cpp.
//
// V needs, beyond simd_kernels.h's list, LoadE4M3Over256 / LoadE5M2 (kLanes
// FP8 bytes as floats, exact; e4m3's divided by 256, folded into scales).
// Like simd_kernels.h this includes no library code (see there why) and has
// internal linkage.
#pragma once

#include <cstdint>

#include "kernels/kernel_table.h"
#include "kvstack/kv_fp8_scale.h"
#include "kvstack/kv_int4_key_steps.h"
#include "kernels/unaligned.h"

namespace kvstack::kernels::internal {
namespace {

// The FP8 codes through binary16, whose conversion every level has exactly:
// e5m2 is the top byte of a half; e4m3 shifted into a half's fields has its
// exponent biased by 15 instead of 7, which * 2^8 corrects (subnormals too).
// The kernels leave that 2^8 to the row's scale (one multiply a token, not
// one a vector).
template <class V>
float ScalarE4M3Over256(uint8_t b) {
  return V::HalfToFloat(static_cast<uint16_t>(((b & 0x80) << 8) | ((b & 0x7f) << 7)));
}
template <class V>
float ScalarE4M3(uint8_t b) {
  return ScalarE4M3Over256<V>(b) * 256.0f;
}
template <class V>
float ScalarE5M2(uint8_t b) {
  return V::HalfToFloat(static_cast<uint16_t>(b << 8));
}

// Formats as decoders of one token row: Load(row + d) gives kLanes values of
// elements d.., Scalar(row, d) one. (int8's scales and int4's halves are
// handled by their kernels below.)
// kUnit: what a row's values are to be multiplied by (with its scale).
template <class V>
struct E4M3Row {
  static constexpr float kUnit = 256.0f;
  static typename V::F Load(const uint8_t* p) { return V::LoadE4M3Over256(p); }
  static float Scalar(const uint8_t* p) { return ScalarE4M3Over256<V>(*p); }
};
template <class V>
struct E5M2Row {
  static constexpr float kUnit = 1.0f;
  static typename V::F Load(const uint8_t* p) { return V::LoadE5M2(p); }
  static float Scalar(const uint8_t* p) { return ScalarE5M2<V>(*p); }
};
template <class V>
struct Int8Row {
  static typename V::F Load(const uint8_t* p) { return V::ToFloat(V::LoadI8(p)); }
  static float Scalar(const uint8_t* p) { return static_cast<float>(static_cast<int8_t>(*p)); }
};

// FP8 rows, each with its scale code after the block's rows: scores and
// weighted sums. A row's multiplier scales its score, or its weight.
template <class V, class Row>
void ScoresFp8(const uint8_t* head, int B, int D, int G, int len, const float* q, float* out) {
  (void)G;
  constexpr int L = V::kLanes;
  const uint8_t* codes = head + static_cast<int64_t>(B) * D;
  // The channel offsets add q . offset to every key's score.
  const uint8_t* offsets = codes + B;
  float qo = 0;
  for (int d = 0; d < D; ++d) qo += q[d] * ScalarE4M3<V>(offsets[d]);
  for (int j = 0; j < len; ++j) {
    const uint8_t* row = head + static_cast<int64_t>(j) * D;
    typename V::F a0 = V::Zero(), a1 = V::Zero();
    int d = 0;
    for (; d + 2 * L <= D; d += 2 * L) {
      a0 = V::Fma(V::Load(q + d), Row::Load(row + d), a0);
      a1 = V::Fma(V::Load(q + d + L), Row::Load(row + d + L), a1);
    }
    for (; d + L <= D; d += L) a0 = V::Fma(V::Load(q + d), Row::Load(row + d), a0);
    float s = V::ReduceAdd(V::Add(a0, a1));
    for (; d < D; ++d) s += q[d] * Row::Scalar(row + d);
    out[j] = s * (Fp8RowScale(codes[j]) * Row::kUnit) + qo;
  }
}

// The weighted sums of V over a block keep out[] in registers across the
// tokens, up to 4 vectors of dims at a time (a token-major loop stored and
// reloaded them after every token, which was most of a long-context decode
// step). Each element still takes fma(w_j, v_j, out) in token order, so the
// results are the same bits. Tokens go in runs of kTokenRun, whose weights
// (w times the token's scale) are formed once.
constexpr int kTokenRun = 64;

// out[d0 .. d0 + n) += sum over j of ws[j] * Row(row j)[d], for n dims
// starting at d0 of rows spaced `stride` bytes apart; Load(row + d) gives
// kLanes values of elements d.., Scalar(row, d) one.
template <class V, class Load, class Scalar>
void AccumulateRun(const uint8_t* rows, int64_t stride, int d0, int n, int len, const float* ws, float* out,
                   Load load, Scalar scalar) {
  constexpr int L = V::kLanes;
  int d = d0;
  const int end = d0 + n;
  for (; d + 4 * L <= end; d += 4 * L) {
    typename V::F a0 = V::Load(out + d), a1 = V::Load(out + d + L), a2 = V::Load(out + d + 2 * L),
                  a3 = V::Load(out + d + 3 * L);
    for (int j = 0; j < len; ++j) {
      const uint8_t* row = rows + static_cast<int64_t>(j) * stride;
      const typename V::F wv = V::Set1(ws[j]);
      a0 = V::Fma(wv, load(row, d), a0);
      a1 = V::Fma(wv, load(row, d + L), a1);
      a2 = V::Fma(wv, load(row, d + 2 * L), a2);
      a3 = V::Fma(wv, load(row, d + 3 * L), a3);
    }
    V::Store(out + d, a0);
    V::Store(out + d + L, a1);
    V::Store(out + d + 2 * L, a2);
    V::Store(out + d + 3 * L, a3);
  }
  for (; d + L <= end; d += L) {
    typename V::F a = V::Load(out + d);
    for (int j = 0; j < len; ++j) a = V::Fma(V::Set1(ws[j]), load(rows + static_cast<int64_t>(j) * stride, d), a);
    V::Store(out + d, a);
  }
  for (; d < end; ++d) {
    for (int j = 0; j < len; ++j) out[d] += ws[j] * scalar(rows + static_cast<int64_t>(j) * stride, d);
  }
}

template <class V, class Row>
void AccumulateFp8(const uint8_t* head, int B, int D, int G, int len, const float* w, float* out) {
  (void)G;
  const uint8_t* codes = head + static_cast<int64_t>(B) * D;
  auto load = [](const uint8_t* row, int d) { return Row::Load(row + d); };
  auto scalar = [](const uint8_t* row, int d) { return Row::Scalar(row + d); };
  alignas(64) float ws[kTokenRun];
  for (int j0 = 0; j0 < len; j0 += kTokenRun) {
    const int n = len - j0 < kTokenRun ? len - j0 : kTokenRun;
    for (int j = 0; j < n; ++j) ws[j] = w[j0 + j] * (Fp8RowScale(codes[j0 + j]) * Row::kUnit);
    AccumulateRun<V>(head + static_cast<int64_t>(j0) * D, D, 0, D, n, ws, out, load, scalar);
  }
}

// int8 K: q[B][D], then float S and code[D]. The channel scales fold into
// the query once per block, as for int4 K below.
template <class V>
void ScoresInt8Key(const uint8_t* head, int B, int D, int G, int len, const float* q, float* out) {
  (void)G;
  constexpr int L = V::kLanes;
  constexpr int kChunk = 256;
  const uint8_t* tail = head + static_cast<int64_t>(B) * D;
  const float S = ReadF32(tail);
  const uint8_t* code = tail + 4;
  alignas(64) float qs[kChunk];
  for (int j = 0; j < len; ++j) out[j] = 0;
  for (int c0 = 0; c0 < D; c0 += kChunk) {
    const int cn = D - c0 < kChunk ? D - c0 : kChunk;
    for (int i = 0; i < cn; ++i) qs[i] = q[c0 + i] * (S * static_cast<float>(code[c0 + i]));
    for (int j = 0; j < len; ++j) {
      const uint8_t* row = head + static_cast<int64_t>(j) * D + c0;
      typename V::F a0 = V::Zero(), a1 = V::Zero();
      int i = 0;
      for (; i + 2 * L <= cn; i += 2 * L) {
        a0 = V::Fma(V::Load(qs + i), Int8Row<V>::Load(row + i), a0);
        a1 = V::Fma(V::Load(qs + i + L), Int8Row<V>::Load(row + i + L), a1);
      }
      for (; i + L <= cn; i += L) a0 = V::Fma(V::Load(qs + i), Int8Row<V>::Load(row + i), a0);
      float s = V::ReduceAdd(V::Add(a0, a1));
      for (; i < cn; ++i) s += qs[i] * Int8Row<V>::Scalar(row + i);
      out[j] += s;
    }
  }
}

// int8 V: q[B][D], then binary16 scale[B][D/G].
template <class V>
void AccumulateInt8(const uint8_t* head, int B, int D, int G, int len, const float* w, float* out) {
  const int groups = D / G;
  const uint8_t* scales = head + static_cast<int64_t>(B) * D;
  auto load = [](const uint8_t* row, int d) { return Int8Row<V>::Load(row + d); };
  auto scalar = [](const uint8_t* row, int d) { return Int8Row<V>::Scalar(row + d); };
  alignas(64) float ws[kTokenRun];
  for (int j0 = 0; j0 < len; j0 += kTokenRun) {
    const int n = len - j0 < kTokenRun ? len - j0 : kTokenRun;
    for (int g = 0; g < groups; ++g) {
      for (int j = 0; j < n; ++j) {
        ws[j] = w[j0 + j] * V::HalfToFloat(ReadU16(scales + (static_cast<int64_t>(j0 + j) * groups + g) * 2));
      }
      AccumulateRun<V>(head + static_cast<int64_t>(j0) * D, D, g * G, G, n, ws, out, load, scalar);
    }
  }
}

// int4 K: n[B][D/2] (element i low nibble, i + D/2 high), then float S,
// float U, scale steps e[D/2] and offsets o[D] (kv_arena.h). The channel
// scales fold into the query once per block, and the nibbles' -8 and the
// channel offsets into one constant per block, so a token costs a nibble
// decode and an FMA per element.
template <class V>
void ScoresInt4Key(const uint8_t* head, int B, int D, int G, int len, const float* q, float* out) {
  (void)G;
  constexpr int L = V::kLanes;
  constexpr int kChunk = 128;
  const int half = D / 2;
  const uint8_t* tail = head + static_cast<int64_t>(B) * half;
  const float S = ReadF32(tail), U = ReadF32(tail + 4);
  const uint8_t* steps = tail + 8;
  const int8_t* offsets = reinterpret_cast<const int8_t*>(steps + half);
  alignas(64) float qlo[kChunk], qhi[kChunk], centred[kChunk], scale_of[16];
  for (int e = 0; e < 16; ++e) scale_of[e] = S * kInt4KeyScaleSteps[e];
  for (int j = 0; j < len; ++j) out[j] = 0;
  for (int c0 = 0; c0 < half; c0 += kChunk) {
    const int cn = half - c0 < kChunk ? half - c0 : kChunk;
    int s0 = 0;
    if constexpr (V::kHasLut16) {
      // The channels' scales looked up 16 at a time (one permute each).
      const typename V::F table = V::Load(scale_of);
      for (; s0 + L <= cn; s0 += L) {
        const typename V::I e = V::LoadU8(steps + c0 + s0);
        V::Store(qlo + s0, V::Mul(V::Load(q + c0 + s0), V::Lut16(table, V::template And<15>(e))));
        V::Store(qhi + s0, V::Mul(V::Load(q + half + c0 + s0), V::Lut16(table, V::template Shr<4>(e))));
      }
    }
    for (int i = s0; i < cn; ++i) {
      const uint8_t e = steps[c0 + i];
      qlo[i] = q[c0 + i] * scale_of[e & 15];
      qhi[i] = q[half + c0 + i] * scale_of[e >> 4];
    }
    for (int i = 0; i < cn; ++i) {
      centred[i] = q[c0 + i] * (U * static_cast<float>(offsets[c0 + i])) +
                   q[half + c0 + i] * (U * static_cast<float>(offsets[half + c0 + i]));
    }
    // The block's constant: the nibbles' -8 and the offsets, summed across
    // lanes (a scalar chain of 2 adds a channel cost more than the tokens).
    typename V::F vb = V::Zero(), vc = V::Zero();
    int i = 0;
    for (; i + L <= cn; i += L) {
      vb = V::Add(vb, V::Add(V::Load(qlo + i), V::Load(qhi + i)));
      vc = V::Add(vc, V::Load(centred + i));
    }
    float bias = V::ReduceAdd(vb), centre = V::ReduceAdd(vc);
    for (; i < cn; ++i) {
      bias += qlo[i] + qhi[i];
      centre += centred[i];
    }
    bias = bias * -8.0f + centre;
    for (int j = 0; j < len; ++j) {
      const uint8_t* row = head + static_cast<int64_t>(j) * half + c0;
      typename V::F a0 = V::Zero(), a1 = V::Zero();
      int i = 0;
      for (; i + L <= cn; i += L) {
        const typename V::I b = V::LoadU8(row + i);
        a0 = V::Fma(V::Load(qlo + i), V::ToFloat(V::template And<15>(b)), a0);
        a1 = V::Fma(V::Load(qhi + i), V::ToFloat(V::template Shr<4>(b)), a1);
      }
      float s = V::ReduceAdd(V::Add(a0, a1));
      for (; i < cn; ++i) s += qlo[i] * static_cast<float>(row[i] & 15) + qhi[i] * static_cast<float>(row[i] >> 4);
      out[j] += s + bias;
    }
  }
}

// int4 V: n[B][D/2] as for K, then binary16 scale[B][D/G] per token. Byte
// i holds element i (low nibble) and i + D/2 (high): the two halves are
// summed as two runs over the same bytes.
template <class V>
void AccumulateInt4Value(const uint8_t* head, int B, int D, int G, int len, const float* w, float* out) {
  const int half = D / 2, groups = D / G;
  const uint8_t* scales = head + static_cast<int64_t>(B) * half;
  auto load_lo = [](const uint8_t* row, int i) {
    return V::ToFloat(V::template Sub<8>(V::template And<15>(V::LoadU8(row + i))));
  };
  auto load_hi = [](const uint8_t* row, int i) {
    return V::ToFloat(V::template Sub<8>(V::template Shr<4>(V::LoadU8(row + i))));
  };
  auto scalar_lo = [](const uint8_t* row, int i) { return static_cast<float>((row[i] & 15) - 8); };
  auto scalar_hi = [](const uint8_t* row, int i) { return static_cast<float>((row[i] >> 4) - 8); };
  alignas(64) float ws[kTokenRun];
  for (int j0 = 0; j0 < len; j0 += kTokenRun) {
    const int n = len - j0 < kTokenRun ? len - j0 : kTokenRun;
    const uint8_t* rows = head + static_cast<int64_t>(j0) * half;
    // Runs of bytes whose low (and high) elements share a group: G divides
    // D/2, or G = D (one group).
    for (int i = 0; i < half;) {
      int end = (i / G + 1) * G;
      if (end > half) end = half;
      for (int h = 0; h < 2; ++h) {
        const int g = (i + h * half) / G;
        for (int j = 0; j < n; ++j) {
          ws[j] = w[j0 + j] * V::HalfToFloat(ReadU16(scales + (static_cast<int64_t>(j0 + j) * groups + g) * 2));
        }
        // Element i of a row is at out[i] (low) or out[half + i] (high).
        if (h == 0) {
          AccumulateRun<V>(rows, half, i, end - i, n, ws, out, load_lo, scalar_lo);
        } else {
          AccumulateRun<V>(rows, half, i, end - i, n, ws, out + half, load_hi, scalar_hi);
        }
      }
      i = end;
    }
  }
}

template <class V>
constexpr KvKernelTable MakeKvKernelTable() {
  return KvKernelTable{
      .int8 = {ScoresInt8Key<V>, AccumulateInt8<V>},
      .fp8_e4m3 = {ScoresFp8<V, E4M3Row<V>>, AccumulateFp8<V, E4M3Row<V>>},
      .fp8_e5m2 = {ScoresFp8<V, E5M2Row<V>>, AccumulateFp8<V, E5M2Row<V>>},
      .int4 = {ScoresInt4Key<V>, AccumulateInt4Value<V>},
  };
}

}  // namespace
}  // namespace kvstack::kernels::internal
