// --exact-matmul and --cpu-level: one meaning for generate, bench engine and
// serve.
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace kvstack::cli {

void AddExactMatmulFlag(CLI::App* cmd, kernels::MatMulPrecision* precision) {
  cmd->add_flag_callback(
      "--exact-matmul", [precision] { *precision = kernels::MatMulPrecision::kExactFloat; },
      "Multiply quantized weights in float with exactly dequantized values (the path checked against the naive "
      "reference) instead of quantizing activations to 8 bits for integer dot products, as llama.cpp does");
}

void AddCpuLevelOption(CLI::App* cmd) {
  static constexpr kernels::CpuLevel kLevels[] = {kernels::CpuLevel::kPortable, kernels::CpuLevel::kAvx2,
                                                  kernels::CpuLevel::kAvx512, kernels::CpuLevel::kAvx512Vnni,
                                                  kernels::CpuLevel::kAvx512Amx};
  std::vector<std::string> names;
  for (kernels::CpuLevel level : kLevels) names.emplace_back(kernels::CpuLevelName(level));
  cmd->add_option_function<std::string>(
         "--cpu-level",
         [](const std::string& name) {
           for (kernels::CpuLevel level : kLevels) {
             if (kernels::CpuLevelName(level) != name) continue;
             kernels::SetCpuLevel(level);
             if (kernels::ActiveCpuLevel() != level) {
               std::fprintf(stderr, "note: --cpu-level %s is above this CPU's %s; using %s\n", name.c_str(),
                            std::string(kernels::CpuLevelName(kernels::DetectedCpuLevel())).c_str(),
                            std::string(kernels::CpuLevelName(kernels::ActiveCpuLevel())).c_str());
             }
           }
         },
         "Use the kernels of this instruction set at most (default: the best this CPU has); for comparing "
         "levels and for debugging. Levels above the CPU's are lowered to it")
      ->check(CLI::IsMember(names));
}

std::string_view MatMulPrecisionName(kernels::MatMulPrecision precision) {
  return precision == kernels::MatMulPrecision::kExactFloat ? "exact-float" : "int8-activations";
}

}  // namespace kvstack::cli
