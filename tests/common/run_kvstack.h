// Runs the built `kvstack` binary (KVSTACK_BINARY) as a child process, for the
// CLI tests of every command.
#pragma once

#include <string>

namespace kvstack::test_support {

struct CommandRun {
  int exit_code = -1;  // -1: the child did not exit normally
  std::string output;  // stdout and stderr together
};

// `args` is appended to the binary's path and run through the shell.
CommandRun RunKvstack(const std::string& args);

}  // namespace kvstack::test_support
