// KvControls: kvstack's per-request KV cache fields, beside OpenAI's.
//
//   "cache_salt": "tenant-a"      prefixes are shared only between requests
//                                 with the same salt (tenant isolation)
//   "retention": {                TensorRT-LLM-style retention of the prompt's
//     "ranges": [{"start": 0, "end": 120, "priority": 90, "duration_s": 600}],
//     "decode_priority": 10,      priority of generated tokens' blocks
//     "decode_duration_s": 5}
//   "priority": 50                preemption: the lowest goes first (0-100)
//   "session_id": "abc"           echoed; the engine remembers the session's
//                                 context for POST /v1/cache/prefetch
//
// Ranges are prompt token positions [start, end); "end" may be left out for
// the end of the prompt. Priorities are 0-100 (35 is the default; 100 is the
// pinned class); durations are seconds > 0, after which the priority falls
// back to the default. Errors name the field: "retention.ranges[0].end 700:
// past the end of the prompt (12 tokens)".
// Thread safety: values and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kvstack/kv_cache.h"
#include "server/api_error.h"

namespace kvstack::server {

struct KvControls {
  struct Range {
    int32_t start = 0;
    std::optional<int32_t> end;  // unset: the end of the prompt
    Priority priority = kDefaultPriority;
    std::optional<Micros> duration;
  };
  std::string cache_salt;
  std::vector<Range> ranges;
  std::optional<Priority> decode_priority;
  std::optional<Micros> decode_duration;
  Priority priority = kDefaultPriority;
  std::string session_id;
};

// Reads cache_salt, retention, priority and session_id from a request body.
// REQUIRES: body.is_object().
ApiResult<KvControls> ParseKvControls(const nlohmann::json& body);

// The RetentionSpec for a prompt of `prompt_tokens` tokens: ranges must end
// within it.
ApiResult<RetentionSpec> MakeRetention(const KvControls& kv, int32_t prompt_tokens);

}  // namespace kvstack::server
