// Deterministic pseudo-random tensor contents for generated models.
//
// A tensor's values are a pure function of (seed, tensor name): a splitmix64
// stream seeded from both, turned into roughly normal values with integer
// arithmetic and one exact scaling, so the bytes are the same on every
// machine and compiler. The stream is consumed row by row in ggml order and
// then stored in the requested type (F32 as is, F16/BF16 rounded to nearest
// even, quantized types through kernels::QuantizeRow), so one seed gives the
// "same" model in every type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "kvstack/gguf.h"
#include "kvstack/status.h"

namespace kvstack::modelgen {

// Values are mean + stddev * z, z roughly standard normal (bounded by +-3.47).
struct WeightInit {
  float mean = 0.0f;
  float stddev = 1.0f;
};

// Fills `out` (a tensor of `type` with `rows` rows of `row_elements`) from the
// stream of (seed, name). Fails only when quantization fails.
// REQUIRES: out.size() == rows * row bytes of `type`; row_elements is whole
// blocks of `type`.
Status FillWeights(uint64_t seed, std::string_view name, const WeightInit& init, GgmlType type, int64_t row_elements,
                   int64_t rows, std::span<std::byte> out);

// Round-to-nearest-even conversions, exposed for tests.
uint16_t FloatToHalf(float value);
uint16_t FloatToBf16(float value);

}  // namespace kvstack::modelgen
