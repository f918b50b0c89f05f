// --exact-matmul: one meaning for generate, bench engine and serve.
#include <CLI/CLI.hpp>

#include "cli/commands.h"

namespace kvstack::cli {

void AddExactMatmulFlag(CLI::App* cmd, kernels::MatMulPrecision* precision) {
  cmd->add_flag_callback(
      "--exact-matmul", [precision] { *precision = kernels::MatMulPrecision::kExactFloat; },
      "Multiply quantized weights in float with exactly dequantized values (the path checked against the naive "
      "reference) instead of quantizing activations to 8 bits for integer dot products, as llama.cpp does");
}

std::string_view MatMulPrecisionName(kernels::MatMulPrecision precision) {
  return precision == kernels::MatMulPrecision::kExactFloat ? "exact-float" : "int8-activations";
}

}  // namespace kvstack::cli
