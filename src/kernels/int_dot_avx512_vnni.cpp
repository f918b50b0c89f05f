// The integer products for CPUs with AVX-512 VNNI: vpdpbusd multiplies
// unsigned by signed bytes and adds each group of four into an int32 lane in
// one instruction, with no int16 step to saturate.
#include "kernels/avx512_intrinsics.h"  // first: its pragmas cover the rest

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/kernel_table.h"
#include "kernels/prefetch.h"
#include "kernels/simd_int_dot.h"
#include "kernels/simd_int_x86.h"

namespace kvstack::kernels::internal {
namespace {

struct VnniInt : X86Int {
  static A DotUS(B w, B y) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, y); }
  static A DotSS(B w, B y) { return DotUS(_mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w)); }
};

// Q8_0 and Q4_0 at 512 bits. The 256-bit tile spends a vpsignb, a
// vpdpbusd, a conversion, a scale multiply and an FMA on every (block,
// activation row) pair; here one vpdpbusd, conversion, multiply and FMA
// cover two blocks. AVX-512 has no vpsignb, so the weights are made
// unsigned (Q8_0: w + 128, Q4_0: its 0..15 quants as stored) and the
// activations carry the correction: each int32 lane of the packed row holds
// -offset * (sum of the four activation bytes in that lane), which vpdpbusd
// takes as its accumulator, so the lane comes out as the exact signed sum.
// The two blocks of a pair interleave by dword (lane 2i is block a's bytes
// 4i..4i+3, lane 2i+1 block b's), so a pair's two scales are one broadcast
// 64-bit pattern. An odd last block pairs with a zero block (quants,
// corrections and scale 0), which adds exactly nothing.
//
// Per activation row, PackedQ32RowBytes(n) bytes: for each pair p a record
// of 64 bytes of interleaved quants and 64 bytes of corrections at 128 * p,
// then at 128 * pairs the pairs' scales, two floats each.
constexpr int64_t kRecordBytes = kPackedQ32RecordBytes;

// dword i of a goes to lane 2i, dword i of b to lane 2i + 1.
__m512i Interleave(__m256i a, __m256i b) {
  const __m512i idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutex2var_epi32(_mm512_castsi256_si512(a), idx, _mm512_castsi256_si512(b));
}

__m512 PairScales(float a, float b) {
  return _mm512_castpd_ps(_mm512_set1_pd(_mm_cvtsd_f64(_mm_castps_pd(_mm_set_ps(0.0f, 0.0f, b, a)))));
}

void PackQ32(const uint8_t* xq, int64_t n, int offset, uint8_t* packed) {
  const int64_t blocks = n / kQk, pairs = (blocks + 1) / 2;
  float* scales = reinterpret_cast<float*>(packed + pairs * kRecordBytes);
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t p = 0; p < pairs; ++p) {
    __m256i q[2], sums[2];
    float d[2];
    for (int h = 0; h < 2; ++h) {
      const int64_t b = 2 * p + h;
      if (b < blocks) {
        const uint8_t* block = xq + b * q8_0::kBytes;
        q[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + q8_0::kQs));
        d[h] = _cvtsh_ss(ReadU16(block + q8_0::kD));
      } else {
        q[h] = _mm256_setzero_si256();
        d[h] = 0.0f;
      }
      sums[h] = _mm256_mullo_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q[h]), _mm256_set1_epi32(-offset));
    }
    uint8_t* record = packed + p * kRecordBytes;
    _mm512_storeu_si512(record, Interleave(q[0], q[1]));
    _mm512_storeu_si512(record + 64, Interleave(sums[0], sums[1]));
    scales[2 * p] = d[0];
    scales[2 * p + 1] = d[1];
  }
}

// The weights of a pair, unsigned and interleaved, and its two scales.
struct Q8_0Pair {
  static __m256i Block(const uint8_t* block) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + q8_0::kQs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static constexpr int kBytes = q8_0::kBytes;
};
struct Q4_0Pair {
  static __m256i Block(const uint8_t* block) { return X86Int::Expand16(block + q4_0::kQs); }
  static constexpr int kBytes = q4_0::kBytes;
};

template <class W, int MR, int NX>
void PackedTile(const uint8_t* rows, int64_t row_bytes, const uint8_t* xp, int64_t ps, int64_t n, float* out) {
  const int64_t blocks = n / kQk, pairs = (blocks + 1) / 2;
  __m512 acc[MR][NX];
#pragma GCC unroll 2
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) acc[m][j] = _mm512_setzero_ps();
  }
  const uint8_t* scales = xp + pairs * kRecordBytes;
  for (int64_t p = 0; p < pairs; ++p) {
    const bool whole = 2 * p + 1 < blocks;
    __m512i w[MR];
    __m512 dw[MR];
#pragma GCC unroll 2
    for (int m = 0; m < MR; ++m) {
      const uint8_t* a = rows + m * row_bytes + 2 * p * W::kBytes;
      PrefetchAhead<2 * W::kBytes>(a);
      const uint8_t* b = a + W::kBytes;
      w[m] = Interleave(W::Block(a), whole ? W::Block(b) : _mm256_setzero_si256());
      dw[m] = PairScales(_cvtsh_ss(ReadU16(a)), whole ? _cvtsh_ss(ReadU16(b)) : 0.0f);
    }
    // Row j's record and scales lie j * ps past these two: one offset per
    // row for both, so the compiler need not keep sixteen pointers.
    const uint8_t* records_p = xp + p * kRecordBytes;
    const uint8_t* scales_p = scales + kPackedQ32ScaleBytes * p;
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      const int64_t row = j * ps;
      const __m512i y = _mm512_loadu_si512(records_p + row);
      const __m512i correction = _mm512_loadu_si512(records_p + row + 64);
      double dy_bits;
      std::memcpy(&dy_bits, scales_p + row, sizeof dy_bits);
      const __m512 dy = _mm512_castpd_ps(_mm512_set1_pd(dy_bits));
#pragma GCC unroll 2
      for (int m = 0; m < MR; ++m) {
        const __m512i s = _mm512_dpbusd_epi32(correction, w[m], y);
        acc[m][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[m], dy), acc[m][j]);
      }
    }
  }
#pragma GCC unroll 2
  for (int m = 0; m < MR; ++m) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) out[m * kMaxTile + j] = _mm512_reduce_add_ps(acc[m][j]);
  }
}

// The run-time shape to the instantiation that keeps it in registers.
template <class W, int MR>
void PackedTileNx(const uint8_t* rows, int64_t row_bytes, const uint8_t* xp, int64_t ps, int nx, int64_t n,
                  float* out) {
  static_assert(kMaxTile == 8, "one case per tile width");
  switch (nx) {
    case 1: return PackedTile<W, MR, 1>(rows, row_bytes, xp, ps, n, out);
    case 2: return PackedTile<W, MR, 2>(rows, row_bytes, xp, ps, n, out);
    case 3: return PackedTile<W, MR, 3>(rows, row_bytes, xp, ps, n, out);
    case 4: return PackedTile<W, MR, 4>(rows, row_bytes, xp, ps, n, out);
    case 5: return PackedTile<W, MR, 5>(rows, row_bytes, xp, ps, n, out);
    case 6: return PackedTile<W, MR, 6>(rows, row_bytes, xp, ps, n, out);
    case 7: return PackedTile<W, MR, 7>(rows, row_bytes, xp, ps, n, out);
    default: return PackedTile<W, MR, 8>(rows, row_bytes, xp, ps, n, out);
  }
}

template <class W>
void PackedTileKernel(const uint8_t* rows, int64_t row_bytes, int mr, const uint8_t* xp, int64_t ps, int nx,
                      int64_t n, float* out) {
  static_assert(kMaxPackedRows == 2, "one case per row count");
  if (mr >= 2) return PackedTileNx<W, 2>(rows, row_bytes, xp, ps, nx, n, out);
  PackedTileNx<W, 1>(rows, row_bytes, xp, ps, nx, n, out);
}

constexpr IntKernelTable MakeVnniTable() {
  IntKernelTable t = MakeIntKernelTable<VnniInt>();
  t.pack_q32 = &PackQ32;
  t.q8_0_packed = &PackedTileKernel<Q8_0Pair>;
  t.q4_0_packed = &PackedTileKernel<Q4_0Pair>;
  return t;
}

}  // namespace

constinit const IntKernelTable kAvx512VnniIntKernels = MakeVnniTable();

}  // namespace kvstack::kernels::internal
