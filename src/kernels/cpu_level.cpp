// Which instruction set the kernels use: detected once, lowered on request.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "kernels/dispatch.h"
#include "kernels/kernel_table.h"
#include "kvstack/kernels.h"

#if defined(KVSTACK_KERNELS_X86)
#include <cpuid.h>
#endif
#if defined(KVSTACK_KERNELS_X86) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace kvstack::kernels {
namespace {

#if defined(KVSTACK_KERNELS_X86)
// AMX-TILE, AMX-INT8 and AMX-BF16 in CPUID, their state enabled by the OS in XCR0, and
// (Linux 5.16 on) the process's permission to use tile data, which the
// kernel grants on request; without the grant the first tile instruction
// faults. A refusal (an old kernel, a sigaltstack too small for the larger
// signal frame) leaves the level below.
bool AmxUsable() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24, kAmxInt8 = 1u << 25;
  if ((edx & kAmxTile) == 0 || (edx & kAmxInt8) == 0 || (edx & kAmxBf16) == 0) return false;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0 || (ecx & bit_OSXSAVE) == 0) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  constexpr unsigned kTileState = (1u << 17) | (1u << 18);  // XTILECFG, XTILEDATA
  if ((xcr0_lo & kTileState) != kTileState) return false;
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}
#endif

CpuLevel Detect() {
#if defined(KVSTACK_KERNELS_X86)
  __builtin_cpu_init();
  // __builtin_cpu_supports also checks that the OS saves the registers
  // (XGETBV), so a VM that hides AVX-512 state reads as AVX2 here.
  // F16C from CPUID leaf 1 directly: clang before 15 has no "f16c" for
  // __builtin_cpu_supports (the AVX2 check covers the OS side).
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
  if (vnni && AmxUsable()) return CpuLevel::kAvx512Amx;
  if (vnni) return CpuLevel::kAvx512Vnni;
  if (avx512) return CpuLevel::kAvx512;
  if (avx2) return CpuLevel::kAvx2;
#endif
  return CpuLevel::kPortable;
}

// The level SetCpuLevel asked for, or -1 for "the detected one".
std::atomic<int> g_forced_level{-1};

}  // namespace

CpuLevel DetectedCpuLevel() {
  static const CpuLevel detected = Detect();
  return detected;
}

std::string_view CpuLevelName(CpuLevel level) {
  switch (level) {
    case CpuLevel::kPortable: return "portable";
    case CpuLevel::kAvx2: return "avx2";
    case CpuLevel::kAvx512: return "avx512";
    case CpuLevel::kAvx512Vnni: return "avx512-vnni";
    case CpuLevel::kAvx512Amx: return "avx512-amx";
  }
  return "unknown";
}

void SetCpuLevel(CpuLevel level) {
  const CpuLevel clamped = level < DetectedCpuLevel() ? level : DetectedCpuLevel();
  g_forced_level.store(static_cast<int>(clamped), std::memory_order_relaxed);
}

CpuLevel ActiveCpuLevel() {
  const int forced = g_forced_level.load(std::memory_order_relaxed);
  return forced < 0 ? DetectedCpuLevel() : static_cast<CpuLevel>(forced);
}

namespace internal {

const KernelTable& ActiveKernels() {
  switch (ActiveCpuLevel()) {
#if defined(KVSTACK_KERNELS_X86)
    case CpuLevel::kAvx512Amx:  // VNNI and AMX change only the integer products
    case CpuLevel::kAvx512Vnni:
    case CpuLevel::kAvx512: return kAvx512Kernels;
    case CpuLevel::kAvx2: return kAvx2Kernels;
#endif
    default: return kPortableKernels;
  }
}

const IntKernelTable& ActiveIntKernels() {
  switch (ActiveCpuLevel()) {
#if defined(KVSTACK_KERNELS_X86)
    case CpuLevel::kAvx512Amx:  // AMX adds to VNNI's table (ActiveAmxKernels)
    case CpuLevel::kAvx512Vnni: return kAvx512VnniIntKernels;
    case CpuLevel::kAvx512: return kAvx512IntKernels;
    case CpuLevel::kAvx2: return kAvx2IntKernels;
#endif
    default: return kPortableIntKernels;
  }
}

const AmxKernels* ActiveAmxKernels() {
#if defined(KVSTACK_KERNELS_X86)
  if (ActiveCpuLevel() == CpuLevel::kAvx512Amx) return &kAmxKernels;
#endif
  return nullptr;
}

Bf16DotTileFn ActiveBf16DotTile() {
#if defined(KVSTACK_KERNELS_X86)
  static const bool has_bf16 = __builtin_cpu_supports("avx512bf16");
  const CpuLevel level = ActiveCpuLevel();
  if (has_bf16 && (level == CpuLevel::kAvx512 || level == CpuLevel::kAvx512Vnni)) return kAvx512Bf16DotTile;
#endif
  return nullptr;
}

IntDotTileFn FindIntKernel(const IntKernelTable& table, GgmlType type) {
  switch (type) {
    case GgmlType::kQ8_0: return table.q8_0;
    case GgmlType::kQ4_0: return table.q4_0;
    case GgmlType::kQ4_K: return table.q4_k;
    case GgmlType::kQ6_K: return table.q6_k;
    default: return nullptr;
  }
}

const TypeKernels* FindKernels(const KernelTable& table, GgmlType type) {
  switch (type) {
    case GgmlType::kF32: return &table.f32;
    case GgmlType::kF16: return &table.f16;
    case GgmlType::kBF16: return &table.bf16;
    case GgmlType::kQ8_0: return &table.q8_0;
    case GgmlType::kQ4_0: return &table.q4_0;
    case GgmlType::kQ4_K: return &table.q4_k;
    case GgmlType::kQ6_K: return &table.q6_k;
    default: return nullptr;
  }
}

void CheckRowArguments(const char* what, GgmlType type, int64_t n) {
  const auto traits = LookupGgmlType(static_cast<uint32_t>(type));
  const std::string name = traits.ok() ? std::string((*traits)->name) : "unknown";
  if (!IsSupportedWeightType(type)) {
    std::fprintf(stderr, "kernels::%s: weight type %s (id %u) is not supported\n", what, name.c_str(),
                 static_cast<unsigned>(type));
    std::abort();
  }
  const int64_t block = (*traits)->block_elements;
  if (n < 0 || n % block != 0) {
    std::fprintf(stderr, "kernels::%s: %lld elements of %s: must be a non-negative multiple of %lld\n", what,
                 static_cast<long long>(n), name.c_str(), static_cast<long long>(block));
    std::abort();
  }
}

}  // namespace internal

bool HasBf16Dot() { return internal::ActiveAmxKernels() != nullptr || internal::ActiveBf16DotTile() != nullptr; }

bool IsSupportedWeightType(GgmlType type) { return internal::FindKernels(internal::kPortableKernels, type) != nullptr; }

}  // namespace kvstack::kernels
