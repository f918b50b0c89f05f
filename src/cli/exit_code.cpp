#include <cstdio>

#include "cli/commands.h"

namespace kvstack::cli {

int ReportFailure(std::string_view command, const Status& status) {
  std::fprintf(stderr, "kvstack %.*s: %s\n", static_cast<int>(command.size()), command.data(),
               status.message().c_str());
  // The machine failed us (I/O, a broken invariant): 1. The input was wrong: 2.
  const bool machine = status.code() == StatusCode::kUnavailable || status.code() == StatusCode::kInternal;
  return machine ? 1 : 2;
}

}  // namespace kvstack::cli
