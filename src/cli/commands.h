// The kvstack CLI's subcommands. Each command file adds its subcommand to the
// app and returns the function that runs it once the command line is parsed;
// main() dispatches to the one the user chose. Commands return a process exit
// code: 0 success, 1 a runtime failure, 2 bad input (usage errors are CLI11's).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "kvstack/engine.h"
#include "kvstack/status.h"
#include "kvstack/trace.h"

// Only the files that add options include CLI11: it costs every file that
// includes it seconds of compile time (more under the sanitizers).
namespace CLI {
class App;
}  // namespace CLI

namespace kvstack::cli {

using CommandRunner = std::function<int()>;

// Prints "kvstack COMMAND: message" on stderr and returns the exit code for
// the failure: 1 when the machine failed (kUnavailable, kInternal), 2 when the
// input was wrong (every other code).
int ReportFailure(std::string_view command, const Status& status);

// Writes `text` to `path` (an output option such as --html or --profile) and
// says so on stderr. Unavailable naming the flag and file when it cannot.
Status WriteOutputFile(std::string_view flag, const std::string& path, std::string_view text);

// The trace of --trace FILE [--format F]: the format detected from the file
// unless given. Errors name the file (and line) or the --format value.
Result<sim::Trace> ReadTraceOption(const std::string& file, const std::string& format);

CommandRunner AddSizeCommand(CLI::App& app);

// The value of --kv-memory ("256MiB", "1GiB", ...), in bytes; positive.
// InvalidArgument names the option and quotes the text.
Result<int64_t> ParseKvMemory(const std::string& text);

// --kv-type (K and V), --kv-type-k, --kv-type-v (kv_type_options.cpp).
struct KvTypeArgs {
  std::string both = "f16";
  std::string k, v;  // empty: --kv-type's
};
void AddKvTypeOptions(CLI::App* cmd, KvTypeArgs* args);
// Sets kv_dtype / kv_dtype_v; InvalidArgument naming the flag and value.
Status ApplyKvTypeOptions(const KvTypeArgs& args, EngineOptions* o);
// "int8" or "k=int8,v=int4".
std::string KvTypesName(const EngineOptions& o);

// --exact-matmul (matmul_option.cpp): sets *precision to kExactFloat when
// given; *precision keeps its value (the engine's default) otherwise.
void AddExactMatmulFlag(CLI::App* cmd, kernels::MatMulPrecision* precision);
// "exact-float" or "int8-activations", for reports.
// --cpu-level NAME: kernels::SetCpuLevel at parse time, before any kernel
// runs; NAME one of kernels::CpuLevelName's.
void AddCpuLevelOption(CLI::App* cmd);
std::string_view MatMulPrecisionName(kernels::MatMulPrecision precision);
CommandRunner AddGenModelCommand(CLI::App& app);
CommandRunner AddGenerateCommand(CLI::App& app);
CommandRunner AddBenchCommand(CLI::App& app);
// `kvstack bench kv-accuracy` under `bench`; the runner returns -1 when that
// subcommand was not chosen.
CommandRunner AddKvAccuracyBench(CLI::App* bench);
CommandRunner AddServeCommand(CLI::App& app);
CommandRunner AddSimCommand(CLI::App& app);
CommandRunner AddPlanCommand(CLI::App& app);
CommandRunner AddRouterCommand(CLI::App& app);
CommandRunner AddFleetCommand(CLI::App& app);

}  // namespace kvstack::cli
