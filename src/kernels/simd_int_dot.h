// The integer products: a quantized weight row against up to kMaxTile rows
// of 8-bit activations (blocks.h: Q8_0 for Q8_0 / Q4_0 weights, Q8_K for
// Q4_K / Q6_K), written once over an integer vector abstraction `VI` and
// compiled per instruction set (int_dot_*.cpp), as llama.cpp's
// ggml_vec_dot_q*_q8_* do it. Each weight block is unpacked to bytes once per
// tile and multiplied into every activation row of the tile.
//
// Within a block (Q8_0 / Q4_0) or super-block (K-quants) the sums are exact
// int32: the same integers as the scalar reference (reference_int.cpp). They
// become float only to be scaled by the block's two scales and added into
// float accumulators, so instruction sets differ only in that summation
// order, and only from the reference's double sum by float rounding.
//
// VI provides, over B (32 bytes), A (8 int32, lane i summing bytes 4i..4i+3
// of a product) and F (8 floats):
//   LoadB, Expand16(p) = {p[0..16) & 15, p[0..16) >> 4}, LowNibbles,
//   HighNibbles, Sub8 (bytewise - 8), And<M>, Or, Shl<N>, Shr<N> (bytewise),
//   DotSS(w, y): w in -128..127 times y in -127..127,
//   DotUS(w, y): w in 0..127 times y in -128..127,
//   Scales(lo, hi) and DotUSScaled(w, y, s): DotUS with lanes 0-3 times lo
//   and lanes 4-7 times hi (|w| <= 63, |lo|, |hi| <= 128),
//   ZeroA AddA SubA ShlA<N> ToF ZeroF Set1F MulF FmaF FmsubF (a * b - c)
//   ReduceF HalfToFloat,
//   and over W16 (16 int16): WidenW16(16 int8),
//   WidenPairsW16(8 bytes in a uint64, each twice, unsigned) and
//   Madd16(p, c): 16 int16 read
//   from the bytes at p times c's, adjacent products summed into 8 int32.
//
// Same rules as simd_kernels.h: internal linkage, no library code.
#pragma once

#include <cstdint>

#include "kernels/blocks.h"
#include "kernels/kernel_table.h"
#include "kernels/prefetch.h"
#include "kernels/unaligned.h"

namespace kvstack::kernels::internal {
namespace {

// Q8_0 and Q4_0 weights against Q8_0 activations: per 32-element block,
// int32 lanes of w * y, then scaled by d_w * d_y.
struct Q8_0Weights {
  static constexpr int kBytes = q8_0::kBytes;
  template <class VI>
  static typename VI::B Load(const uint8_t* block) {
    return VI::LoadB(block + q8_0::kQs);
  }
};

struct Q4_0Weights {
  static constexpr int kBytes = q4_0::kBytes;
  template <class VI>
  static typename VI::B Load(const uint8_t* block) {
    return VI::Sub8(VI::Expand16(block + q4_0::kQs));
  }
};

template <class VI, class W, int NX>
void Q32Tile(const uint8_t* row, const uint8_t* xq, int64_t xs, const float* xd, int64_t ds, int64_t n,
             float* out) {
  typename VI::F acc[NX];
#pragma GCC unroll 8
  for (int j = 0; j < NX; ++j) acc[j] = VI::ZeroF();
  for (int64_t b = 0; b < n / kQk; ++b) {
    const uint8_t* wb = row + b * W::kBytes;
    PrefetchAhead<W::kBytes>(wb);
    const typename VI::B w = W::template Load<VI>(wb);
    // Both formats keep d first.
    const typename VI::F dw = VI::Set1F(VI::HalfToFloat(ReadU16(wb)));
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      const uint8_t* yb = xq + j * xs + b * q8_0::kBytes;
      const typename VI::A s = VI::DotSS(w, VI::LoadB(yb + q8_0::kQs));
      acc[j] = VI::FmaF(VI::ToF(s), VI::MulF(dw, VI::Set1F(xd[b * ds + j])), acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NX; ++j) out[j] = VI::ReduceF(acc[j]);
}

// A K-quant super-block unpacked for the integer products: eight 32-byte
// vectors of unsigned quants, each with its integer scales, so that the
// super-block's sum against Q8_K activations y (scale dy) is
//   d * dy * sum_k (scale_k * w_k . y_k)  -  Offset(y, dy),
// the first term in exact int32 lanes.
//
// Accumulate(isum, yb, dy, acc) adds a super-block's sum against the
// activation block yb (scale dy) into the float lanes acc, given isum, the
// int32 lanes of sum_k scale_k * w_k . y_k. The offset comes from the
// activations' bsums with one vector multiply-add per pair (a scalar loop
// over the eight or sixteen sums cost about as much as the products).
//
// Q4_K: x = (d * sc) * q - dmin * m per sub-block of 32, so the offset is
// dmin * dy * sum(m * sum y): lane i holds m_i * (bsum_2i + bsum_2i+1).
struct Q4_KWeights {
  static constexpr int kBytes = q4_k::kBytes;
  template <class VI>
  struct Unpacked {
    typename VI::B w[8];
    typename VI::S scale[8];
    typename VI::F d, dmin;
    typename VI::W16 m16;  // m_s at 2s and 2s + 1

    explicit Unpacked(const uint8_t* wb) {
      d = VI::Set1F(VI::HalfToFloat(ReadU16(wb + q4_k::kD)));
      dmin = VI::Set1F(VI::HalfToFloat(ReadU16(wb + q4_k::kDmin)));
      uint64_t scales, mins;
      ScalesMinsK4(wb + q4_k::kScales, &scales, &mins);
      m16 = VI::WidenPairsW16(mins);
      int sc[8];
#pragma GCC unroll 8
      for (int s = 0; s < 8; ++s) sc[s] = static_cast<int>((scales >> (8 * s)) & 0xFF);
#pragma GCC unroll 4
      for (int g = 0; g < 4; ++g) {
        const typename VI::B q = VI::LoadB(wb + q4_k::kQs + 32 * g);
        w[2 * g] = VI::LowNibbles(q);
        w[2 * g + 1] = VI::HighNibbles(q);
        scale[2 * g] = VI::Scales(sc[2 * g], sc[2 * g]);
        scale[2 * g + 1] = VI::Scales(sc[2 * g + 1], sc[2 * g + 1]);
      }
    }
    typename VI::F Accumulate(typename VI::A isum, const uint8_t* yb, float dy, typename VI::F acc) const {
      const typename VI::A offset = VI::Madd16(yb + q8_k::kBsums, m16);
      const typename VI::F x = VI::FmsubF(VI::ToF(isum), d, VI::MulF(VI::ToF(offset), dmin));
      return VI::FmaF(x, VI::Set1F(dy), acc);
    }
  };
};

// Q6_K: x = (d * sc) * (q - 32) per group of 16 with q unsigned (0..63), so
// the offset is d * dy * 32 * sum(sc * sum y), subtracted in exact int32
// lanes (at most 2 * 16 * 127 * 128 * 32 each).
struct Q6_KWeights {
  static constexpr int kBytes = q6_k::kBytes;
  template <class VI>
  struct Unpacked {
    // w[4 * half + k] covers elements 128 * half + 32 * k .. +32, groups
    // 8 * half + 2 * k and + 1 (blocks.h's bit layout).
    typename VI::B w[8];
    typename VI::S scale[8];
    float d;
    typename VI::W16 sc16;

    explicit Unpacked(const uint8_t* wb) {
      d = VI::HalfToFloat(ReadU16(wb + q6_k::kD));
      const auto* sc = reinterpret_cast<const int8_t*>(wb + q6_k::kScales);
      // Widened in a register: sixteen scalar stores read back as one
      // vector stall store forwarding on every super-block.
      sc16 = VI::WidenW16(sc);
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
        const typename VI::B a = VI::LoadB(wb + q6_k::kQl + 64 * half);
        const typename VI::B c = VI::LoadB(wb + q6_k::kQl + 64 * half + 32);
        const typename VI::B h = VI::LoadB(wb + q6_k::kQh + 32 * half);
        w[4 * half + 0] = VI::Or(VI::template And<15>(a), VI::template And<0x30>(VI::template Shl<4>(h)));
        w[4 * half + 1] = VI::Or(VI::template And<15>(c), VI::template And<0x30>(VI::template Shl<2>(h)));
        w[4 * half + 2] = VI::Or(VI::template Shr<4>(a), VI::template And<0x30>(h));
        w[4 * half + 3] = VI::Or(VI::template Shr<4>(c), VI::template And<0x30>(VI::template Shr<2>(h)));
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) scale[4 * half + k] = VI::Scales(sc[8 * half + 2 * k], sc[8 * half + 2 * k + 1]);
      }
    }
    typename VI::F Accumulate(typename VI::A isum, const uint8_t* yb, float dy, typename VI::F acc) const {
      const typename VI::A offset = VI::template ShlA<5>(VI::Madd16(yb + q8_k::kBsums, sc16));
      return VI::FmaF(VI::ToF(VI::SubA(isum, offset)), VI::Set1F(d * dy), acc);
    }
  };
};

template <class VI, class W, int NX>
void KTile(const uint8_t* row, const uint8_t* xq, int64_t xs, int64_t n, float* out) {
  typename VI::F acc[NX];
#pragma GCC unroll 8
  for (int j = 0; j < NX; ++j) acc[j] = VI::ZeroF();
  for (int64_t b = 0; b < n / kQkK; ++b) {
    PrefetchAhead<W::kBytes>(row + b * W::kBytes);
    const typename W::template Unpacked<VI> u(row + b * W::kBytes);
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      const uint8_t* yb = xq + j * xs + b * q8_k::kBytes;
      typename VI::A isum = VI::ZeroA();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        isum = VI::AddA(isum, VI::DotUSScaled(u.w[k], VI::LoadB(yb + q8_k::kQs + 32 * k), u.scale[k]));
      }
      acc[j] = u.Accumulate(isum, yb, ReadF32(yb + q8_k::kD), acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NX; ++j) out[j] = VI::ReduceF(acc[j]);
}

// The run-time tile width to the instantiation that keeps it in registers.
template <class VI, class Tile>
void IntTileKernel(const void* row, const uint8_t* xq, int64_t xs, const float* xd, int64_t ds, int nx, int64_t n,
                   float* out) {
  static_assert(kMaxTile == 8, "one case per tile width");
  const auto* r = static_cast<const uint8_t*>(row);
  switch (nx) {
    case 1: return Tile::template Run<VI, 1>(r, xq, xs, xd, ds, n, out);
    case 2: return Tile::template Run<VI, 2>(r, xq, xs, xd, ds, n, out);
    case 3: return Tile::template Run<VI, 3>(r, xq, xs, xd, ds, n, out);
    case 4: return Tile::template Run<VI, 4>(r, xq, xs, xd, ds, n, out);
    case 5: return Tile::template Run<VI, 5>(r, xq, xs, xd, ds, n, out);
    case 6: return Tile::template Run<VI, 6>(r, xq, xs, xd, ds, n, out);
    case 7: return Tile::template Run<VI, 7>(r, xq, xs, xd, ds, n, out);
    default: return Tile::template Run<VI, 8>(r, xq, xs, xd, ds, n, out);
  }
}

// The two tile shapes over their weight formats, as types IntTileKernel takes.
template <class W>
struct Q32TileOf {
  template <class VI, int NX>
  static void Run(const uint8_t* r, const uint8_t* xq, int64_t xs, const float* xd, int64_t ds, int64_t n,
                  float* out) {
    Q32Tile<VI, W, NX>(r, xq, xs, xd, ds, n, out);
  }
};
template <class W>
struct KTileOf {
  template <class VI, int NX>
  static void Run(const uint8_t* r, const uint8_t* xq, int64_t xs, const float* /*xd*/, int64_t /*ds*/, int64_t n,
                  float* out) {
    KTile<VI, W, NX>(r, xq, xs, n, out);
  }
};

template <class VI>
constexpr IntKernelTable MakeIntKernelTable() {
  return IntKernelTable{
      .q8_0 = &IntTileKernel<VI, Q32TileOf<Q8_0Weights>>,
      .q4_0 = &IntTileKernel<VI, Q32TileOf<Q4_0Weights>>,
      .q4_k = &IntTileKernel<VI, KTileOf<Q4_KWeights>>,
      .q6_k = &IntTileKernel<VI, KTileOf<Q6_KWeights>>,
  };
}

}  // namespace
}  // namespace kvstack::kernels::internal
