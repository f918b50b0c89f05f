// Traces: the request streams the simulator replays.
//
// A Trace is a list of requests in arrival order: when each arrives, how long
// its prompt and its output are, and what its prompt holds, as far as the
// source knows. Three formats are read:
//   mooncake  JSONL: `timestamp` (ms), `input_length`, `output_length`,
//             `hash_ids` (one id per 512-token block; equal ids = equal
//             prefix blocks). Moonshot AI's Kimi traces (FAST'25).
//   azure     CSV: `TIMESTAMP,ContextTokens,GeneratedTokens` (Splitwise,
//             ISCA'24): arrivals and lengths only, every prompt distinct.
//   kvstack   JSONL, this project's own (written by TraceWriter, which
//             `kvstack serve --record-trace FILE` uses). One object a line:
//               {"t_ms": 12.5, "session": "s1", "tenant": "acme",
//                "input_length": 900, "output_length": 64,
//                "block_tokens": 512, "block_ids": [7, 8],   (or "tokens": [...])
//                "ranges": [{"start": 0, "end": 512, "priority": 90}],
//                "priority": 50,
//                "measured_ttft_ms": 3.2, "measured_cached_tokens": 512}
//             Every field but t_ms, input_length and output_length is
//             optional. The measured_* fields are what `kvstack serve`
//             measured for the request (engine queueing to first token; the
//             prompt tokens its cache served), kept to check a replay
//             against. A line starting with {"kvstack_trace": 1, ...} is a
//             header and is skipped (see TraceWriter::Open on its
//             "origin_us").
// Synthetic generators (multi-turn chat, agents, RAG over shared documents)
// build traces in memory with the same representation.
//
// A prompt's content is either explicit token ids, or content ids of blocks
// of `block_tokens` tokens (equal ids at equal positions = equal content,
// chained as a prefix tree), or nothing (a prompt shared with no other).
// ContentTokens() turns any of these into deterministic token ids, so the
// production cache core hashes them as it would real prompts.
//
// Thread safety: Trace is a value; TraceWriter is not thread-safe (the server
// calls it from its engine thread, or under its own lock).
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/block_hash.h"
#include "kvstack/clock.h"
#include "kvstack/eviction_policy.h"
#include "kvstack/status.h"

namespace kvstack::sim {

enum class TraceFormat { kMooncake, kAzure, kKvstack };

// "mooncake", "azure", "kvstack". On failure: kInvalidArgument listing them.
Result<TraceFormat> ParseTraceFormat(std::string_view text);
std::string_view TraceFormatName(TraceFormat format);
// From the file name: *.csv is azure; a .jsonl whose first object has
// "hash_ids" is mooncake, otherwise kvstack. On failure: the read error.
Result<TraceFormat> DetectTraceFormat(const std::filesystem::path& file);

// A retention range of a prompt, as the request asked for it.
struct TracePriorityRange {
  int32_t begin = 0;
  int32_t end = 0;
  Priority priority = kDefaultPriority;
};

struct TraceRequest {
  Micros arrival_us = 0;  // from the start of the trace
  int32_t input_tokens = 0;
  int32_t output_tokens = 0;
  // Prompt content: tokens if not empty, else block_ids (each covering
  // Trace::block_tokens tokens, the last possibly partial), else unique.
  std::vector<Token> tokens;
  std::vector<uint64_t> block_ids;
  std::vector<TracePriorityRange> ranges;  // retention, for priority-lru
  uint32_t tenant = 0;   // index into Trace::tenants
  uint32_t session = 0;  // index into Trace::sessions (0: none)
  Priority request_priority = kDefaultPriority;
  // What the recording server measured (kvstack traces from `kvstack serve
  // --record-trace` only; absent elsewhere): engine queueing to first token,
  // and prompt tokens served by its prefix cache.
  std::optional<Micros> measured_ttft_us;
  std::optional<int32_t> measured_cached_tokens;
};

struct Trace {
  std::string source;          // file path or generator description
  int32_t block_tokens = 512;  // tokens per block id
  std::vector<std::string> tenants{""};    // [0] is "no tenant"
  std::vector<std::string> sessions{""};   // [0] is "no session"
  std::vector<TraceRequest> requests;      // in arrival order
  // True when some request carries retention ranges (durable vs one-off).
  bool has_priorities = false;

  uint32_t InternTenant(std::string_view name);
  uint32_t InternSession(std::string_view name);
};

// Reads a whole trace. Requests are sorted by arrival (stable) when the file
// is not. On failure: kNotFound (no file), or kInvalidArgument naming the
// file, the 1-based line number, and what is wrong on that line.
Result<Trace> ReadTrace(const std::filesystem::path& file, TraceFormat format);

// Appends the token ids of `request`'s prompt to `out` (cleared first):
// explicit tokens as they are; block ids as token = f(id, offset in block);
// no content as tokens unique to `request_index`. Deterministic.
void ContentTokens(const Trace& trace, const TraceRequest& request, uint64_t request_index,
                   std::vector<Token>* out);

// ---------------------------------------------------------------------------
// Writing kvstack JSONL traces (for `kvstack serve --record-trace FILE`).

// One served request as the server saw it.
struct RecordedRequest {
  Micros arrival_us = 0;        // any monotonic scale; written relative to the first
  std::string session;          // "" when none
  std::string tenant;           // the tenant: `kvstack serve` writes its label, never the cache_salt; "" when none
  std::span<const Token> prompt;  // the prompt's token ids
  int32_t output_tokens = 0;    // tokens generated
  std::vector<TracePriorityRange> ranges;
  Priority request_priority = kDefaultPriority;
  // What the server measured: queueing at the engine to first token, and the
  // prompt tokens the cache served. For calibrating the simulator against a
  // real run; absent in traces from elsewhere.
  std::optional<Micros> measured_ttft_us;
  std::optional<int32_t> measured_cached_tokens;
};

class TraceWriter {
 public:
  // Creates (truncates) `file` and writes the header line. t_ms counts from
  // `origin_us` when given, which the header then records as "origin_us"
  // (kvstack serve: its steady clock at start, which every process of one
  // machine shares, so several servers' traces merge onto one time line);
  // else from the first request's arrival. On failure: kUnavailable naming
  // the file and the OS error.
  static Result<std::unique_ptr<TraceWriter>> Open(const std::filesystem::path& file,
                                                   std::optional<Micros> origin_us = std::nullopt);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Appends one line and flushes it (a crash loses at most the line being
  // written). On failure: kUnavailable (disk full); later calls keep failing.
  Status Append(const RecordedRequest& request);
  int64_t lines_written() const { return lines_; }

 private:
  explicit TraceWriter(std::FILE* f) : file_(f) {}
  std::FILE* file_;
  bool have_origin_ = false;
  Micros origin_ = 0;
  int64_t lines_ = 0;
};

// One line of a kvstack trace for `request` (no newline); what Append writes.
std::string KvstackTraceLine(const RecordedRequest& request, Micros origin_us);

// ---------------------------------------------------------------------------
// Synthetic traces.

enum class SyntheticKind {
  kChat,   // multi-turn conversations: each turn's prompt extends the last
  kAgent,  // a system prompt per tenant (durable), agent memory (durable),
           // tool-call loops appending one-off tool output
  kRag,    // questions over a pool of shared documents (Zipf popularity)
};
// "chat", "agent", "rag".
Result<SyntheticKind> ParseSyntheticKind(std::string_view text);

struct SyntheticOptions {
  SyntheticKind kind = SyntheticKind::kChat;
  int64_t requests = 10000;
  double requests_per_second = 20;  // Poisson arrivals
  int32_t tenants = 4;
  int32_t block_tokens = 64;        // content granularity of the generated ids
  uint64_t seed = 1;
};
// REQUIRES: requests >= 1, requests_per_second > 0, tenants >= 1,
// block_tokens >= 1 (else kInvalidArgument naming the field).
Result<Trace> GenerateTrace(const SyntheticOptions& options);

}  // namespace kvstack::sim
