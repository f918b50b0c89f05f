#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/sizing.h"

namespace kvstack::cli {

Result<int64_t> ParseKvMemory(const std::string& text) {
  auto bytes = sizing::ParseByteSize(text);
  if (!bytes.ok()) return InvalidArgument("--kv-memory: " + bytes.status().message());
  if (*bytes <= 0) return InvalidArgument(fmt::format("--kv-memory '{}': must be positive", text));
  return bytes;
}

}  // namespace kvstack::cli
