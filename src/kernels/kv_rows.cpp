// KvScores and KvAccumulate: one head of one KV block through the active
// kernel table (quantized types), or the scalar reference (float types,
// whose attention the engine runs through DequantizeRow; kept here so that
// every type answers).
#include <vector>

#include "kernels/dispatch.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

const internal::KvKernels* FindKvKernels(KvDType type) {
  const internal::KvKernelTable& t = internal::ActiveKernels().kv;
  switch (type) {
    case KvDType::kInt8: return &t.int8;
    case KvDType::kFp8E4M3: return &t.fp8_e4m3;
    case KvDType::kFp8E5M2: return &t.fp8_e5m2;
    case KvDType::kInt4: return &t.int4;
    default: return nullptr;
  }
}

const uint8_t* Bytes(const std::byte* p) { return reinterpret_cast<const uint8_t*>(p); }

}  // namespace

void KvScores(KvDType type, const std::byte* k_head, int32_t B, int32_t D, int32_t len, const float* q,
              float* scores) {
  if (const internal::KvKernels* k = FindKvKernels(type)) {
    k->scores(Bytes(k_head), B, D, KvGroupSize(D), len, q, scores);
    return;
  }
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(D));
  for (int j = 0; j < len; ++j) {
    DequantizeKvRow(type, KvPart::kKey, k_head, B, D, j, row.data());
    float s = 0;
    for (int d = 0; d < D; ++d) s += q[d] * row[d];
    scores[j] = s;
  }
}

void KvAccumulate(KvDType type, const std::byte* v_head, int32_t B, int32_t D, int32_t len, const float* w,
                  float* out) {
  if (const internal::KvKernels* k = FindKvKernels(type)) {
    k->accumulate(Bytes(v_head), B, D, KvGroupSize(D), len, w, out);
    return;
  }
  thread_local std::vector<float> row;
  row.resize(static_cast<size_t>(D));
  for (int j = 0; j < len; ++j) {
    DequantizeKvRow(type, KvPart::kValue, v_head, B, D, j, row.data());
    for (int d = 0; d < D; ++d) out[d] += w[j] * row[d];
  }
}

}  // namespace kvstack::kernels
