// The float micro-kernel behind MatMul's batched path, written once over the
// vector abstraction of simd_kernels.h and compiled per instruction set.
//
// It multiplies up to V::kGemmRows rows of float weights (dequantized once
// per MatMul, or F32 as stored) with up to V::kGemmCols activation rows,
// holding all rows x cols accumulators in registers: each loaded weight
// vector serves kGemmCols FMAs and each activation vector kGemmRows, so the
// loop issues fewer loads than FMAs. Sums stay as vectors in `acc` between
// calls (one horizontal reduction per output, by the caller, not per call).
//
// Same rules as simd_kernels.h: internal linkage, no library code.
#pragma once

#include <cstdint>

#include "kernels/kernel_table.h"

namespace kvstack::kernels::internal {
namespace {

// acc[(r * V::kGemmCols + j) * V::kLanes + lane] += lane-wise partial sums of
// w[r][k] * x[j][k] over k < len, for r < R, j < NX. Columns past the last
// full vector are added into lane 0.
template <class V, int R, int NX>
void GemmAccumulateFixed(const float* w, int64_t w_stride, const float* x, int64_t x_stride, int64_t len,
                         float* acc) {
  constexpr int L = V::kLanes;
  constexpr int kCols = V::kGemmCols;
  typename V::F a[R][NX];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) a[r][j] = V::Load(acc + (r * kCols + j) * L);
  }
  int64_t k = 0;
  for (; k + L <= len; k += L) {
    typename V::F wv[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) wv[r] = V::Load(w + r * w_stride + k);
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) {
      // Pinned to a register: left alone, GCC folds this load into each of
      // the R FMAs, and the loop then issues as many loads as FMAs.
      const typename V::F xv = V::Pin(V::Load(x + j * x_stride + k));
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) a[r][j] = V::Fma(wv[r], xv, a[r][j]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int j = 0; j < NX; ++j) V::Store(acc + (r * kCols + j) * L, a[r][j]);
  }
  for (; k < len; ++k) {
    for (int r = 0; r < R; ++r) {
      for (int j = 0; j < NX; ++j) acc[(r * kCols + j) * L] += w[r * w_stride + k] * x[j * x_stride + k];
    }
  }
}

// Picks the instantiation for the run-time (nw, nx); only shapes that fit
// the registers (rows <= kGemmRows, cols <= kGemmCols) are instantiated.
template <class V, int R, int NX = 1>
void GemmDispatchCols(int nx, const float* w, int64_t ws, const float* x, int64_t xs, int64_t len, float* acc) {
  if constexpr (NX <= V::kGemmCols) {
    if (nx == NX) return GemmAccumulateFixed<V, R, NX>(w, ws, x, xs, len, acc);
    return GemmDispatchCols<V, R, NX + 1>(nx, w, ws, x, xs, len, acc);
  }
}

template <class V, int R = 1>
void GemmDispatchRows(int nw, int nx, const float* w, int64_t ws, const float* x, int64_t xs, int64_t len,
                      float* acc) {
  if constexpr (R <= V::kGemmRows) {
    if (nw == R) return GemmDispatchCols<V, R>(nx, w, ws, x, xs, len, acc);
    return GemmDispatchRows<V, R + 1>(nw, nx, w, ws, x, xs, len, acc);
  }
}

template <class V>
void GemmAccumulateKernel(const float* w, int64_t w_stride, int nw, const float* x, int64_t x_stride, int nx,
                          int64_t len, float* acc) {
  GemmDispatchRows<V>(nw, nx, w, w_stride, x, x_stride, len, acc);
}

template <class V>
constexpr GemmKernel MakeGemmKernel() {
  static_assert(V::kGemmRows * V::kGemmCols + V::kGemmRows + 1 <= V::kRegisters,
                "the accumulators, weights and one activation vector must fit the registers");
  static_assert(V::kGemmCols <= kMaxTile);
  return GemmKernel{V::kLanes, V::kGemmRows, V::kGemmCols, &GemmAccumulateKernel<V>};
}

}  // namespace
}  // namespace kvstack::kernels::internal
