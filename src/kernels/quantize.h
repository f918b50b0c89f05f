// Row quantizers, one per block format. Internal to the kernels component;
// QuantizeRow (quantize.cpp) checks the arguments and dispatches here.
#pragma once

#include <cstdint>

namespace kvstack::kernels::internal {

// Each writes n / block elements' blocks to dst. REQUIRES: n a multiple of
// the block; every src value finite.
void QuantizeRowQ8_0(const float* src, uint8_t* dst, int64_t n);
void QuantizeRowQ4_0(const float* src, uint8_t* dst, int64_t n);
void QuantizeRowQ4_K(const float* src, uint8_t* dst, int64_t n);
void QuantizeRowQ6_K(const float* src, uint8_t* dst, int64_t n);

}  // namespace kvstack::kernels::internal
