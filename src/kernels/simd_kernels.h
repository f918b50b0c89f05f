// The kernels, written once over a vector abstraction `V` and compiled once
// per instruction set (kernels_portable.cpp, kernels_avx2.cpp,
// kernels_avx512.cpp each define a V and call MakeKernelTable<V>()).
//
// Each weight format is a decoder that turns a row into vectors of V::kLanes
// dequantized values and hands each to a sink together with its column: the
// store sink writes them out (DequantizeRow), the dot sink multiplies them
// into up to kMaxTile activation rows (DotRow, MatVec, MatMul). A decoded
// value is bit-identical to the scalar reference's (same products in the same
// order, each exact in float), so only the dot products' summation order
// differs between instruction sets.
//
// V provides, for F (kLanes floats) and I (kLanes int32):
//   Zero Set1 Load Store Add Mul Fma(a,b,c)=a*b+c MulSub(a,b,c)=a*b-c ReduceAdd
//   LoadF16 LoadBF16 (kLanes 16-bit floats), LoadU8 / LoadI8 (kLanes bytes,
//   zero- / sign-extended), And<N> Or Shr<N> Shl<N> Sub<N>, ToFloat, and
//   HalfToFloat (one binary16 to float); kRegisters says how many vector
//   registers there are (which sets how many accumulators a dot keeps), and
//   kGemmRows x kGemmCols the register tile of the MatMul micro-kernel
//   (simd_gemm.h), with Pin(v) keeping v in a register there.
//   Where kHasLut16 (16 lanes with a one-instruction permute), also Ramp(s)
//   = {s, s + 1, ..., s + 15} and Lut16(table, index) = table[index & 15]:
//   4-bit formats then look their values up in a per-scale table of 16
//   dequantized values, one permute in place of a mask, a conversion and a
//   multiply (the table entries are the same single products, so the same
//   bits).
//
// Everything here has internal linkage and calls no library code but
// memcpy: each includer is compiled with different instruction-set flags,
// and an inline function with external linkage (a std:: template, say) could
// be merged by the linker into its AVX-512 copy and then run on a CPU
// without AVX-512.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/kernel_table.h"
#include "kernels/prefetch.h"
#include "kernels/simd_gemm.h"
#include "kernels/simd_kv.h"
#include "kernels/unaligned.h"

namespace kvstack::kernels::internal {
namespace {

inline float Bf16BitsToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

// ---------------------------------------------------------------------------
// Sinks.

template <class V>
struct StoreSink {
  float* dst;

  template <int S>
  void Put(typename V::F w, int64_t col) {
    V::Store(dst + col, w);
  }
  void PutScalar(float w, int64_t col) { dst[col] = w; }
};

// Sums w * x[j][col] for NX activation rows. Decoders alternate between two
// accumulator sets (template argument S) so that consecutive FMAs do not wait
// on each other; with 16 registers and a wide tile one set is all that fits.
template <class V, int NX>
struct DotSink {
  static constexpr int kSets = (V::kRegisters >= 32 || NX <= 4) ? 2 : 1;
  typename V::F acc[kSets][NX];
  float tail[NX];
  const float* x;
  int64_t x_stride;

  DotSink(const float* x_rows, int64_t stride) : x(x_rows), x_stride(stride) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      for (int s = 0; s < kSets; ++s) acc[s][j] = V::Zero();
      tail[j] = 0.0f;
    }
  }

  template <int S>
  void Put(typename V::F w, int64_t col) {
    constexpr int s = S % kSets;
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) acc[s][j] = V::Fma(w, V::Load(x + j * x_stride + col), acc[s][j]);
  }

  void PutScalar(float w, int64_t col) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) tail[j] += w * x[j * x_stride + col];
  }

  void Finish(float* out) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      typename V::F a = acc[0][j];
      if constexpr (kSets == 2) a = V::Add(a, acc[1][j]);
      out[j] = V::ReduceAdd(a) + tail[j];
    }
  }
};

// ---------------------------------------------------------------------------
// Decoders, one per weight format (layouts in blocks.h).

// The formats of one value per element (f32, f16, bf16): two vectors an
// iteration, then one, then scalars. `E` reads one value, or a vector of them.
template <class E>
struct ElementFormat {
  template <class V, class Sink>
  static void Decode(const uint8_t* row, int64_t n, Sink& sink) {
    constexpr int L = V::kLanes;
    constexpr int B = E::kBytes;
    int64_t col = 0;
    for (; col + 2 * L <= n; col += 2 * L) {
      PrefetchAhead<2 * L * B>(row + B * col);
      sink.template Put<0>(E::template Load<V>(row + B * col), col);
      sink.template Put<1>(E::template Load<V>(row + B * (col + L)), col + L);
    }
    for (; col + L <= n; col += L) sink.template Put<0>(E::template Load<V>(row + B * col), col);
    for (; col < n; ++col) sink.PutScalar(E::template Scalar<V>(row + B * col), col);
  }
};

struct F32Element {
  static constexpr int kBytes = 4;
  template <class V>
  static auto Load(const uint8_t* p) { return V::Load(reinterpret_cast<const float*>(p)); }
  template <class V>
  static float Scalar(const uint8_t* p) { return ReadF32(p); }
};
struct F16Element {
  static constexpr int kBytes = 2;
  template <class V>
  static auto Load(const uint8_t* p) { return V::LoadF16(p); }
  template <class V>
  static float Scalar(const uint8_t* p) { return V::HalfToFloat(ReadU16(p)); }
};
struct Bf16Element {
  static constexpr int kBytes = 2;
  template <class V>
  static auto Load(const uint8_t* p) { return V::LoadBF16(p); }
  template <class V>
  static float Scalar(const uint8_t* p) { return Bf16BitsToFloat(ReadU16(p)); }
};
using F32Format = ElementFormat<F32Element>;
using F16Format = ElementFormat<F16Element>;
using Bf16Format = ElementFormat<Bf16Element>;

struct Q8_0Format {
  template <class V, class Sink>
  static void Decode(const uint8_t* row, int64_t n, Sink& sink) {
    constexpr int L = V::kLanes;
    for (int64_t b = 0; b < n / kQk; ++b) {
      const uint8_t* block = row + b * q8_0::kBytes;
      PrefetchAhead<q8_0::kBytes>(block);
      const uint8_t* qs = block + q8_0::kQs;
      const typename V::F d = V::Set1(V::HalfToFloat(ReadU16(block + q8_0::kD)));
      const int64_t base = b * kQk;
#pragma GCC unroll 4
      for (int o = 0; o < kQk; o += 2 * L) {
        sink.template Put<0>(V::Mul(V::ToFloat(V::LoadI8(qs + o)), d), base + o);
        sink.template Put<1>(V::Mul(V::ToFloat(V::LoadI8(qs + o + L)), d), base + o + L);
      }
    }
  }
};

struct Q4_0Format {
  template <class V, class Sink>
  static void Decode(const uint8_t* row, int64_t n, Sink& sink) {
    constexpr int L = V::kLanes;
    for (int64_t b = 0; b < n / kQk; ++b) {
      const uint8_t* block = row + b * q4_0::kBytes;
      PrefetchAhead<q4_0::kBytes>(block);
      const uint8_t* qs = block + q4_0::kQs;
      const typename V::F d = V::Set1(V::HalfToFloat(ReadU16(block + q4_0::kD)));
      const int64_t base = b * kQk;
      if constexpr (V::kHasLut16) {
        const typename V::F table = V::Mul(V::Ramp(-8.0f), d);  // (q - 8) * d for q = 0..15
        const typename V::I q = V::LoadU8(qs);
        sink.template Put<0>(V::Lut16(table, q), base);
        sink.template Put<1>(V::Lut16(table, V::template Shr<4>(q)), base + kQk / 2);
      } else {
#pragma GCC unroll 4
        for (int o = 0; o < kQk / 2; o += L) {
          const typename V::I q = V::LoadU8(qs + o);
          sink.template Put<0>(V::Mul(V::ToFloat(V::template Sub<8>(V::template And<15>(q))), d), base + o);
          sink.template Put<1>(V::Mul(V::ToFloat(V::template Sub<8>(V::template Shr<4>(q))), d),
                               base + kQk / 2 + o);
        }
      }
    }
  }
};

struct Q4_KFormat {
  template <class V, class Sink>
  static void Decode(const uint8_t* row, int64_t n, Sink& sink) {
    constexpr int L = V::kLanes;
    for (int64_t b = 0; b < n / kQkK; ++b) {
      const uint8_t* block = row + b * q4_k::kBytes;
      PrefetchAhead<q4_k::kBytes>(block);
      const uint8_t* scales = block + q4_k::kScales;
      const float d = V::HalfToFloat(ReadU16(block + q4_k::kD));
      const float dmin = V::HalfToFloat(ReadU16(block + q4_k::kDmin));
      for (int g = 0; g < 4; ++g) {
        uint8_t sc, m;
        GetScaleMinK4(2 * g, scales, &sc, &m);
        const typename V::F d1 = V::Set1(d * sc), m1 = V::Set1(dmin * m);
        GetScaleMinK4(2 * g + 1, scales, &sc, &m);
        const typename V::F d2 = V::Set1(d * sc), m2 = V::Set1(dmin * m);
        const uint8_t* qs = block + q4_k::kQs + 32 * g;
        const int64_t base = b * kQkK + 64 * g;
        if constexpr (V::kHasLut16) {
          // (d * sc) * q - dmin * m for q = 0..15, per sub-block.
          const typename V::F t1 = V::MulSub(d1, V::Ramp(0.0f), m1);
          const typename V::F t2 = V::MulSub(d2, V::Ramp(0.0f), m2);
          for (int o = 0; o < 32; o += L) {
            const typename V::I q = V::LoadU8(qs + o);
            sink.template Put<0>(V::Lut16(t1, q), base + o);
            sink.template Put<1>(V::Lut16(t2, V::template Shr<4>(q)), base + 32 + o);
          }
        } else {
#pragma GCC unroll 8
          for (int o = 0; o < 32; o += L) {
            const typename V::I q = V::LoadU8(qs + o);
            sink.template Put<0>(V::MulSub(d1, V::ToFloat(V::template And<15>(q)), m1), base + o);
            sink.template Put<1>(V::MulSub(d2, V::ToFloat(V::template Shr<4>(q)), m2), base + 32 + o);
          }
        }
      }
    }
  }
};

struct Q6_KFormat {
  template <class V, class Sink>
  static void Decode(const uint8_t* row, int64_t n, Sink& sink) {
    constexpr int L = V::kLanes;
    for (int64_t b = 0; b < n / kQkK; ++b) {
      const uint8_t* block = row + b * q6_k::kBytes;
      PrefetchAhead<q6_k::kBytes>(block);
      const float d = V::HalfToFloat(ReadU16(block + q6_k::kD));
      for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = block + q6_k::kQl + 64 * half;
        const uint8_t* qh = block + q6_k::kQh + 32 * half;
        const int8_t* sc = reinterpret_cast<const int8_t*>(block + q6_k::kScales) + 8 * half;
        const int64_t base = b * kQkK + 128 * half;
        // A vector of L <= 16 lanes never straddles a 16-element scale group.
#pragma GCC unroll 8
        for (int l = 0; l < 32; l += L) {
          const int is = l / 16;
          const typename V::I a = V::LoadU8(ql + l);
          const typename V::I c = V::LoadU8(ql + 32 + l);
          const typename V::I h = V::LoadU8(qh + l);
          // Bits 2k..2k+1 of qh are bits 4..5 of the k-th quant of the four.
          const typename V::I q1 =
              V::template Sub<32>(V::Or(V::template And<15>(a), V::template And<0x30>(V::template Shl<4>(h))));
          const typename V::I q2 =
              V::template Sub<32>(V::Or(V::template And<15>(c), V::template And<0x30>(V::template Shl<2>(h))));
          const typename V::I q3 = V::template Sub<32>(V::Or(V::template Shr<4>(a), V::template And<0x30>(h)));
          const typename V::I q4 =
              V::template Sub<32>(V::Or(V::template Shr<4>(c), V::template And<0x30>(V::template Shr<2>(h))));
          sink.template Put<0>(V::Mul(V::Set1(d * sc[is + 0]), V::ToFloat(q1)), base + l);
          sink.template Put<1>(V::Mul(V::Set1(d * sc[is + 2]), V::ToFloat(q2)), base + 32 + l);
          sink.template Put<0>(V::Mul(V::Set1(d * sc[is + 4]), V::ToFloat(q3)), base + 64 + l);
          sink.template Put<1>(V::Mul(V::Set1(d * sc[is + 6]), V::ToFloat(q4)), base + 96 + l);
        }
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Row kernels and the table.

template <class V, class Format>
void DequantizeRowKernel(const void* src, float* dst, int64_t n) {
  StoreSink<V> sink{dst};
  Format::template Decode<V>(static_cast<const uint8_t*>(src), n, sink);
}

template <class V, class Format, int NX>
void DotTileFixed(const void* row, const float* x, int64_t x_stride, int64_t n, float* out) {
  DotSink<V, NX> sink(x, x_stride);
  Format::template Decode<V>(static_cast<const uint8_t*>(row), n, sink);
  sink.Finish(out);
}

template <class V, class Format>
void DotTileKernel(const void* row, const float* x, int64_t x_stride, int nx, int64_t n, float* out) {
  static_assert(kMaxTile == 8, "one case per tile width");
  switch (nx) {
    case 1: return DotTileFixed<V, Format, 1>(row, x, x_stride, n, out);
    case 2: return DotTileFixed<V, Format, 2>(row, x, x_stride, n, out);
    case 3: return DotTileFixed<V, Format, 3>(row, x, x_stride, n, out);
    case 4: return DotTileFixed<V, Format, 4>(row, x, x_stride, n, out);
    case 5: return DotTileFixed<V, Format, 5>(row, x, x_stride, n, out);
    case 6: return DotTileFixed<V, Format, 6>(row, x, x_stride, n, out);
    case 7: return DotTileFixed<V, Format, 7>(row, x, x_stride, n, out);
    default: return DotTileFixed<V, Format, 8>(row, x, x_stride, n, out);
  }
}

template <class V, class Format>
constexpr TypeKernels MakeTypeKernels() {
  return TypeKernels{&DequantizeRowKernel<V, Format>, &DotTileKernel<V, Format>};
}

template <class V>
constexpr KernelTable MakeKernelTable() {
  return KernelTable{
      .f32 = MakeTypeKernels<V, F32Format>(),
      .f16 = MakeTypeKernels<V, F16Format>(),
      .bf16 = MakeTypeKernels<V, Bf16Format>(),
      .q8_0 = MakeTypeKernels<V, Q8_0Format>(),
      .q4_0 = MakeTypeKernels<V, Q4_0Format>(),
      .q4_k = MakeTypeKernels<V, Q4_KFormat>(),
      .q6_k = MakeTypeKernels<V, Q6_KFormat>(),
      .gemm = MakeGemmKernel<V>(),
      .kv = MakeKvKernelTable<V>(),
  };
}

}  // namespace
}  // namespace kvstack::kernels::internal
