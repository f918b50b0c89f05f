// Choosing the kernel table for this CPU, and the per-type entry in it.
// Internal to the kernels component.
#pragma once

#include <cstdint>

#include "kernels/kernel_table.h"
#include "kvstack/gguf.h"

namespace kvstack::kernels::internal {

// The table for ActiveCpuLevel(): never one whose instructions this CPU lacks.
const KernelTable& ActiveKernels();

// The entry for `type`, or nullptr when the kernels do not support it.
const TypeKernels* FindKernels(const KernelTable& table, GgmlType type);

// The integer products for ActiveCpuLevel(), and the one for `type` (nullptr
// when the type has none).
const IntKernelTable& ActiveIntKernels();
IntDotTileFn FindIntKernel(const IntKernelTable& table, GgmlType type);

// Aborts, naming `what`, the type and n, unless `type` is supported and n is
// a non-negative multiple of its block: the free functions' REQUIRES.
void CheckRowArguments(const char* what, GgmlType type, int64_t n);

}  // namespace kvstack::kernels::internal
