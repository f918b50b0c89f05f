// Helpers shared by the kernels tests: the instruction-set levels this CPU
// can run, random weight rows of every supported type, exact-bits comparison
// and sha256 of float arrays.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kvstack/gguf.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels::test_util {

// Every level up to the detected one, lowest first.
std::vector<CpuLevel> RunnableLevels();

// Sets a level for the scope, then restores the one active before.
class ScopedCpuLevel {
 public:
  explicit ScopedCpuLevel(CpuLevel level) : saved_(ActiveCpuLevel()) { SetCpuLevel(level); }
  ~ScopedCpuLevel() { SetCpuLevel(saved_); }
  ScopedCpuLevel(const ScopedCpuLevel&) = delete;
  ScopedCpuLevel& operator=(const ScopedCpuLevel&) = delete;

 private:
  CpuLevel saved_;
};

// The seven supported types, and their names for test output.
std::vector<GgmlType> SupportedTypes();
std::string TypeName(GgmlType type);

// Bytes of a row of n elements.
size_t RowBytes(GgmlType type, int64_t n);

// A row of n elements with random quants and random finite scales of either
// sign (so negative products and signed zeros occur). For F32/F16/BF16,
// random values in [-2, 2).
std::vector<uint8_t> RandomRow(GgmlType type, int64_t n, std::mt19937& rng);

std::vector<float> RandomFloats(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f);

uint16_t HalfBits(float v);  // binary16 bits, rounded to nearest even

// Index of the first element whose bit pattern differs, or -1.
int64_t FirstBitDifference(const float* a, const float* b, int64_t n);

// Lowercase hex sha256 of n floats as little-endian bytes.
std::string Sha256Hex(const float* values, int64_t n);

// "tinyq-a-q8_0.gguf" -> "<KVSTACK_SHARED_DIR>/models/tinyq-a-q8_0.gguf".
std::string SharedPath(const std::string& relative);

}  // namespace kvstack::kernels::test_util
