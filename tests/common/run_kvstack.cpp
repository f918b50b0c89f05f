#include "common/run_kvstack.h"

#include <cstdio>
#include <sys/wait.h>

namespace kvstack::test_support {

CommandRun RunKvstack(const std::string& args) {
  CommandRun run;
  const std::string command = std::string(KVSTACK_BINARY) + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

}  // namespace kvstack::test_support
