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

inline constexpr int64_t kPrefetchAhead = 2048;

// Hints the `bytes` bytes at p + kPrefetchAhead: one hint per cache line (a
// span shorter than a line gets one; consecutive short spans then repeat a
// line, which costs little).
template <int64_t bytes>
inline void PrefetchAhead(const void* p) {
  const auto* b = static_cast<const uint8_t*>(p) + kPrefetchAhead;
#pragma GCC unroll 4
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(b + o);
}

}  // namespace kvstack::kernels::internal
