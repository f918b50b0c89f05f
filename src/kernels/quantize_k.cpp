// Q4_K and Q6_K quantizers: ggml's reference algorithms (quantize_row_q4_K_ref
// and quantize_row_q6_K_ref, the ones llama-quantize uses without an
// importance matrix), restated.
//
// Both first fit each small group on its own (a float scale, and for Q4_K a
// min), searching a few candidate scales around the obvious one for the least
// weighted squared error; then they quantize the group scales themselves
// against one fp16 super-block scale and requantize every element with the
// scale it will actually be read back with. Float operations keep ggml's order
// so that the same input gives the same bytes.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/half.h"
#include "kernels/quantize.h"

namespace kvstack::kernels::internal {
namespace {

// ggml's GROUP_MAX_EPS: groups whose largest magnitude is below this are zero.
constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even (ggml's nearest_int).
int NearestInt(float v) { return static_cast<int>(std::lrint(v)); }

int Clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// Fits x[0..n) as scale * L + min with L in [0, nmax] and min <= 0, weighting
// each element's squared error by weights[i]. Tries the range-spanning scale,
// then nstep + 1 scales whose inverse is (nmax + rmin + rdelta * step) / range,
// each followed by the weighted least-squares scale and min for its codes.
// Returns the scale; *neg_min gets -min (>= 0).
float FitScaleMin(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* neg_min, float rmin,
                  float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::memset(L, 0, static_cast<size_t>(n));
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax));
    const float diff = scale * L[i] + min - x[i];
    best_error += weights[i] * (diff * diff);
  }
  uint8_t trial[32];
  for (int step = 0; step <= nstep; ++step) {
    iscale = (rmin + rdelta * step + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = Clamp(NearestInt(iscale * (x[i] - min)), 0, nmax);
      trial[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      sum_l += w * l;
      sum_l2 += w * l * l;
      sum_xl += w * l * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * trial[i] + this_min - x[i];
      error += weights[i] * (diff * diff);
    }
    if (error < best_error) {
      std::memcpy(L, trial, static_cast<size_t>(n));
      best_error = error;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
}

// Fits x[0..n) as scale * l with l in [-nmax, nmax - 1], the element of
// largest magnitude mapping to -nmax (so the scale takes its sign), weighting
// squared errors by x^2; tries 18 scales around that one. Writes l + nmax to
// L and returns the scale.
float FitSymmetricScale(int n, int nmax, const float* x, int8_t* L) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    std::memset(L, 0, static_cast<size_t>(n));
    return 0.0f;
  }
  float iscale = -nmax / max;
  float sum_lx = 0, sum_l2 = 0;
  for (int i = 0; i < n; ++i) {
    const int l = Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
    L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sum_lx += w * x[i] * l;
    sum_l2 += w * l * l;
  }
  float scale = sum_l2 != 0 ? sum_lx / sum_l2 : 0.0f;
  float best = scale * sum_lx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(nmax + 0.1f * step) / max;
    sum_lx = sum_l2 = 0;
    for (int i = 0; i < n; ++i) {
      const int l = Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1);
      const float w = x[i] * x[i];
      sum_lx += w * x[i] * l;
      sum_l2 += w * l * l;
    }
    if (sum_l2 > 0 && sum_lx * sum_lx > best * sum_l2) {
      for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + Clamp(NearestInt(iscale * x[i]), -nmax, nmax - 1));
      scale = sum_lx / sum_l2;
      best = scale * sum_lx;
    }
  }
  return scale;
}

void QuantizeBlockQ4_K(const float* x, uint8_t* y) {
  uint8_t L[kQkK];
  float weights[32];
  float scales[8], mins[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    const float* g = x + 32 * j;
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += g[l] * g[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(g[l]);
    scales[j] = FitScaleMin(32, 15, g, weights, L + 32 * j, &mins[j], -1.0f, 0.1f, 20);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }

  uint8_t* packed = y + q4_k::kScales;
  std::memset(packed, 0, 12);
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    const int ls = Clamp(NearestInt(inv_scale * scales[j]), 0, 63);
    const int lm = Clamp(NearestInt(inv_min * mins[j]), 0, 63);
    // The packing GetScaleMinK4 reads (blocks.h).
    if (j < 4) {
      packed[j] = static_cast<uint8_t>(ls);
      packed[j + 4] = static_cast<uint8_t>(lm);
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  const uint16_t d_bits = Fp32ToFp16(max_scale / 63.0f);
  const uint16_t dmin_bits = Fp32ToFp16(max_min / 63.0f);
  StoreU16(y + q4_k::kD, d_bits);
  StoreU16(y + q4_k::kDmin, dmin_bits);

  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    GetScaleMinK4(j, packed, &sc, &m);
    const float d = Fp16ToFp32(d_bits) * sc;
    if (d == 0.0f) continue;
    const float dm = Fp16ToFp32(dmin_bits) * m;
    for (int i = 0; i < 32; ++i) L[32 * j + i] = static_cast<uint8_t>(Clamp(NearestInt((x[32 * j + i] + dm) / d), 0, 15));
  }
  uint8_t* qs = y + q4_k::kQs;
  for (int j = 0; j < kQkK; j += 64, qs += 32) {
    for (int l = 0; l < 32; ++l) qs[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

void QuantizeBlockQ6_K(const float* x, uint8_t* y) {
  int8_t L[kQkK];
  float scales[16];
  float max_scale = 0, max_abs_scale = 0;
  for (int g = 0; g < 16; ++g) {
    scales[g] = FitSymmetricScale(16, 32, x + 16 * g, L + 16 * g);
    if (std::fabs(scales[g]) > max_abs_scale) {
      max_abs_scale = std::fabs(scales[g]);
      max_scale = scales[g];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(y, 0, q6_k::kBytes);
    return;
  }
  // As in each group, the largest scale maps to -128 and d takes its sign.
  const float iscale = -128.0f / max_scale;
  const uint16_t d_bits = Fp32ToFp16(1 / iscale);
  StoreU16(y + q6_k::kD, d_bits);
  auto* sc = reinterpret_cast<int8_t*>(y + q6_k::kScales);
  for (int g = 0; g < 16; ++g) {
    const int s = NearestInt(iscale * scales[g]);
    sc[g] = static_cast<int8_t>(s < 127 ? s : 127);
  }
  for (int g = 0; g < 16; ++g) {
    const float d = Fp16ToFp32(d_bits) * sc[g];
    if (d == 0.0f) continue;
    for (int i = 0; i < 16; ++i) L[16 * g + i] = static_cast<int8_t>(Clamp(NearestInt(x[16 * g + i] / d), -32, 31) + 32);
  }
  uint8_t* ql = y + q6_k::kQl;
  uint8_t* qh = y + q6_k::kQh;
  for (int j = 0; j < kQkK; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
      ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

}  // namespace

void QuantizeRowQ4_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQkK; ++b) QuantizeBlockQ4_K(src + b * kQkK, dst + b * q4_k::kBytes);
}

void QuantizeRowQ6_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQkK; ++b) QuantizeBlockQ6_K(src + b * kQkK, dst + b * q6_k::kBytes);
}

}  // namespace kvstack::kernels::internal
