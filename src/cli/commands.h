// The kvstack CLI's subcommands. Each command file adds its subcommand to the
// app and returns the function that runs it once the command line is parsed;
// main() dispatches to the one the user chose. Commands return a process exit
// code: 0 success, 1 a runtime failure, 2 bad input (usage errors are CLI11's).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "kvstack/status.h"

namespace kvstack::cli {

using CommandRunner = std::function<int()>;

// Prints "kvstack COMMAND: message" on stderr and returns the exit code for
// the failure: 1 when the machine failed (kUnavailable, kInternal), 2 when the
// input was wrong (every other code).
int ReportFailure(std::string_view command, const Status& status);

CommandRunner AddSizeCommand(CLI::App& app);

// The value of --kv-memory ("256MiB", "1GiB", ...), in bytes; positive.
// InvalidArgument names the option and quotes the text.
Result<int64_t> ParseKvMemory(const std::string& text);
CommandRunner AddGenModelCommand(CLI::App& app);
CommandRunner AddGenerateCommand(CLI::App& app);
CommandRunner AddBenchCommand(CLI::App& app);
CommandRunner AddServeCommand(CLI::App& app);
CommandRunner AddSimCommand(CLI::App& app);
CommandRunner AddPlanCommand(CLI::App& app);

}  // namespace kvstack::cli
