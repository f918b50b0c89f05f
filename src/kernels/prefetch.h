// Software prefetch of streamed weights. A decode step reads every weight
// once, and the kernels spend enough instructions per byte that the
// out-of-order window alone keeps too few cache lines in flight to reach the
// memory's bandwidth: the hardware prefetchers did not close the gap either
// (issue 11, a 2-vCPU Sapphire Rapids VM: one-sequence decode of a 1 GB Q8_0
// model went from 0.36x to about 1.0x of the read bandwidth with this).
// A thread handles adjacent weight rows, so prefetching past a row's end
// fetches the next row's start; past the matrix's end it is a wasted hint.
#pragma once

#include <cstdint>

namespace kvstack::kernels::internal {

// Into L1 this far ahead, and into L2 kPrefetchAheadL2 ahead: with the L1
// hints alone, one-sequence decode of the 1B-shaped Q4_K file (its tile the
// most work per byte) took 32-33 ms a step, with both 30-31 (`kvstack bench
// engine --threads 2 --sequences 1 --prompt-tokens 32 --gen-tokens 32`,
// builds with and without the L2 hint, three A/B pairs, Sapphire Rapids,
// 2026-12-06); Q8_0 was unchanged. Hinting L1 4 KiB ahead instead was
// slower (29 -> 28 tok/s).
inline constexpr int64_t kPrefetchAhead = 2048;
inline constexpr int64_t kPrefetchAheadL2 = 8192;

// Hints the `bytes` bytes at p + kPrefetchAhead (and at kPrefetchAheadL2,
// for L2): one hint per cache line (a span shorter than a line gets one;
// consecutive short spans then repeat a line, which costs little).
template <int64_t bytes>
inline void PrefetchAhead(const void* p) {
  const auto* b = static_cast<const uint8_t*>(p);
#pragma GCC unroll 4
  for (int64_t o = 0; o < bytes; o += 64) {
    __builtin_prefetch(b + kPrefetchAhead + o);
    __builtin_prefetch(b + kPrefetchAheadL2 + o, 0, 2);
  }
}

}  // namespace kvstack::kernels::internal
