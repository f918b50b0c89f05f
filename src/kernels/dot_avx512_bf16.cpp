// BF16 weights times bf16-rounded activations with AVX-512 BF16
// (vdpbf16ps: 32 products a vector, each exact in float, added in pairs
// with round-to-nearest; denormal inputs and results count as zero). Used at
// the AVX-512 levels on CPUs that have the extension and no AMX
// (dot_amx.cpp takes BF16 there).
//
// The same accumulators per activation row whatever the tile's width, so a
// (weight row, activation row) pair gets the same bits in any tile.
#include "kernels/avx512_intrinsics.h"  // first: its pragmas cover the rest

#include <cstdint>

#include "kernels/kernel_table.h"

namespace kvstack::kernels::internal {
namespace {

template <int NX>
void Tile(const uint8_t* row, const uint16_t* xb, int64_t xb_stride, int64_t n, float* out) {
  // Two sets, alternating by chunk of 32, so that one activation row (a
  // decode step) is not bound by vdpbf16ps's latency.
  __m512 acc[2][NX];
#pragma GCC unroll 8
  for (int j = 0; j < NX; ++j) acc[0][j] = acc[1][j] = _mm512_setzero_ps();
  const auto chunk = [&](int s, __m512bh w, int64_t k, __mmask32 mask) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      acc[s][j] = _mm512_dpbf16_ps(acc[s][j], w,
                                   reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(mask, xb + j * xb_stride + k)));
    }
  };
  constexpr auto kAll = static_cast<__mmask32>(~0u);
  int64_t k = 0;
  for (; k + 64 <= n; k += 64) {
    chunk(0, reinterpret_cast<__m512bh>(_mm512_loadu_si512(row + 2 * k)), k, kAll);
    chunk(1, reinterpret_cast<__m512bh>(_mm512_loadu_si512(row + 2 * k + 64)), k + 32, kAll);
  }
  if (k + 32 <= n) {
    chunk(0, reinterpret_cast<__m512bh>(_mm512_loadu_si512(row + 2 * k)), k, kAll);
    k += 32;
  }
  if (k < n) {
    // The last n % 32, in the set the next chunk would have used: zeros past
    // the end add exactly nothing.
    const auto mask = static_cast<__mmask32>((uint64_t{1} << (n - k)) - 1);
    chunk(static_cast<int>(k / 32 % 2), reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(mask, row + 2 * k)), k,
          mask);
  }
#pragma GCC unroll 8
  for (int j = 0; j < NX; ++j) out[j] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][j], acc[1][j]));
}

void TileNx(const uint8_t* row, const uint16_t* xb, int64_t xb_stride, int nx, int64_t n, float* out) {
  static_assert(kMaxTile == 8, "one case per tile width");
  switch (nx) {
    case 1: return Tile<1>(row, xb, xb_stride, n, out);
    case 2: return Tile<2>(row, xb, xb_stride, n, out);
    case 3: return Tile<3>(row, xb, xb_stride, n, out);
    case 4: return Tile<4>(row, xb, xb_stride, n, out);
    case 5: return Tile<5>(row, xb, xb_stride, n, out);
    case 6: return Tile<6>(row, xb, xb_stride, n, out);
    case 7: return Tile<7>(row, xb, xb_stride, n, out);
    default: return Tile<8>(row, xb, xb_stride, n, out);
  }
}

}  // namespace

constinit const Bf16DotTileFn kAvx512Bf16DotTile = &TileNx;

}  // namespace kvstack::kernels::internal
