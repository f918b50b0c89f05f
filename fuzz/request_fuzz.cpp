// libFuzzer target for the server's request parsing: any body must parse or
// be refused with a 400-class ApiError, never crash; what parses must build
// (or cleanly refuse) an engine request, a pin and a retention spec.
// Run through scripts/fuzz-all (or scripts/fuzz-gguf for the GGUF reader).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "server/kv_controls.h"
#include "server/openai_request.h"

using namespace kvstack;
using namespace kvstack::server;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto json = ParseJsonObject(body);
  if (!json.ok()) return 0;
  const RequestLimits limits{.context_tokens = 512, .max_tokens_limit = 256, .default_max_tokens = 16};
  // A prompt length that varies with the input, across the context limit.
  const auto prompt_len = static_cast<int32_t>(size % 600 + 1);
  const std::vector<Token> prompt(static_cast<size_t>(prompt_len), 7);
  for (Endpoint e : {Endpoint::kCompletions, Endpoint::kChat}) {
    auto parsed = ParseCompletionBody(*json, e, limits);
    if (!parsed.ok()) continue;
    auto gen = BuildGeneration(*parsed, prompt, limits, {"<|im_end|>"}, 1);
    (void)gen.ok();
  }
  auto pin = ParsePinBody(*json);
  (void)pin.ok();
  auto kv = ParseKvControls(*json);
  if (kv.ok()) {
    auto retention = MakeRetention(*kv, prompt_len);
    (void)retention.ok();
  }
  return 0;
}
