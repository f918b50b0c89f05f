// Choosing the kernel table for this CPU, and the per-type entry in it.
// Internal to the kernels component.
#pragma once

#include <cstdint>

#include "kernels/kernel_table.h"
#include "kvstack/gguf.h"
#include "kvstack/kernels.h"

namespace kvstack::kernels::internal {

// The table for ActiveCpuLevel(): never one whose instructions this CPU lacks.
const KernelTable& ActiveKernels();

// The entry for `type`, or nullptr when the kernels do not support it.
const TypeKernels* FindKernels(const KernelTable& table, GgmlType type);

// The integer products for ActiveCpuLevel(), and the one for `type` (nullptr
// when the type has none).
const IntKernelTable& ActiveIntKernels();
IntDotTileFn FindIntKernel(const IntKernelTable& table, GgmlType type);
// The AMX products when the active level has them (kAvx512Amx), else null:
// they take every Q8_0 product there, one row or many, and every BF16 one
// under kInt8Activations.
const AmxKernels* ActiveAmxKernels();
// The vdpbf16ps tile where the active level is an AVX-512 one below
// kAvx512Amx and the CPU has AVX-512 BF16, else null.
Bf16DotTileFn ActiveBf16DotTile();

// How many float scales WidenActivationScales writes for an activation row
// of n elements paired with `weight_type` (n / 32 for Q8_0 activations, 0
// for Q8_K), and the writing: xd[b * stride] = block b's scale of the row
// at xq (IntDotTileFn's layout).
int64_t ActivationScaleCount(GgmlType weight_type, int64_t n);
void WidenActivationScales(GgmlType weight_type, const uint8_t* xq, int64_t n, float* xd, int64_t stride);

// Y = W X for n activation rows already quantized (QuantizeActivationRow's
// format, xq_stride bytes apart): the integer products, at the active level,
// in its own layout where it has one (IntKernelTable::pack_q32). MatMul and
// MatVec (kInt8Activations) and DotRowInt8 all come here, so one row gives
// the same bits by any of them.
void IntMatMulQuantized(const WeightMatrix& w, const uint8_t* xq, int64_t xq_stride, int64_t n, float* y,
                        ThreadPool* pool);

// Aborts, naming `what`, the type and n, unless `type` is supported and n is
// a non-negative multiple of its block: the free functions' REQUIRES.
void CheckRowArguments(const char* what, GgmlType type, int64_t n);

}  // namespace kvstack::kernels::internal
