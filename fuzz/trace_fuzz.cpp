// libFuzzer target for the trace readers (Mooncake, Azure, kvstack): any file
// must read or fail with an error naming the line, never crash; a trace that
// reads gives every request's content tokens.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kvstack/trace.h"

using namespace kvstack;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The readers take a path: the input lives in an anonymous memory file.
  const int fd = ::memfd_create("trace", 0);
  if (fd < 0) return 0;
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  for (sim::TraceFormat f : {sim::TraceFormat::kMooncake, sim::TraceFormat::kAzure, sim::TraceFormat::kKvstack}) {
    auto trace = sim::ReadTrace(path, f);
    if (!trace.ok()) continue;
    std::vector<Token> tokens;
    // Bounded: a trace may declare huge prompts; a few requests suffice.
    for (size_t i = 0; i < trace->requests.size() && i < 16; ++i) {
      if (trace->requests[i].input_tokens > (1 << 16)) continue;
      sim::ContentTokens(*trace, trace->requests[i], i, &tokens);
    }
  }
  ::close(fd);
  return 0;
}
