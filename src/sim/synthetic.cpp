// Synthetic traces: multi-turn chat, agents with tool loops, RAG over shared
// documents. Content is described by block ids (Trace::block_tokens tokens
// each): every conversation is a stream of blocks whose ids are consecutive,
// so a later turn's prompt is a longer prefix of the same stream and its
// earlier blocks hit, exactly as a real chat's re-sent history would.
#include <algorithm>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "kvstack/trace.h"

namespace kvstack::sim {
namespace {

// Priorities the agent and RAG generators give their context: durable
// (system prompt, memory, shared documents) above the default, one-off (tool
// output, loop scratch) below it.
constexpr Priority kSystemPriority = 90;
constexpr Priority kMemoryPriority = 80;
constexpr Priority kDocumentPriority = 60;
constexpr Priority kScratchPriority = 10;

struct Session {
  uint32_t session = 0;
  uint32_t tenant = 0;
  uint64_t stream_base = 0;   // block id of the stream's first block
  int32_t prefix_tokens = 0;  // system prompt (+ memory): whole blocks
  int32_t stream_tokens = 0;  // conversation so far (after the prefix)
  int32_t turns_left = 0;
};

class Generator {
 public:
  explicit Generator(const SyntheticOptions& o) : o_(o), rng_(o.seed) {}

  Trace Run() {
    trace_.block_tokens = o_.block_tokens;
    trace_.source = fmt::format("synthetic {} ({} requests, {:g}/s, {} tenants, seed {})", KindName(),
                                o_.requests, o_.requests_per_second, o_.tenants, o_.seed);
    for (int32_t t = 0; t < o_.tenants; ++t) trace_.InternTenant(fmt::format("tenant-{}", t));
    trace_.requests.reserve(static_cast<size_t>(o_.requests));
    std::exponential_distribution<double> gap(o_.requests_per_second);
    double now_s = 0;
    for (int64_t i = 0; i < o_.requests; ++i) {
      now_s += gap(rng_);
      TraceRequest r;
      r.arrival_us = static_cast<Micros>(now_s * 1e6);
      if (o_.kind == SyntheticKind::kRag) Rag(&r);
      else Turn(&r);
      trace_.requests.push_back(std::move(r));
    }
    trace_.has_priorities = o_.kind != SyntheticKind::kChat;
    return std::move(trace_);
  }

 private:
  std::string_view KindName() const {
    return o_.kind == SyntheticKind::kChat ? "chat" : o_.kind == SyntheticKind::kAgent ? "agent" : "rag";
  }
  int32_t Uniform(int32_t lo, int32_t hi) { return std::uniform_int_distribution<int32_t>(lo, hi)(rng_); }
  int32_t Blocks(int32_t lo, int32_t hi) { return Uniform(lo, hi) * o_.block_tokens; }
  uint64_t FreshIds(int64_t n) {
    const uint64_t base = next_id_;
    next_id_ += static_cast<uint64_t>(n);
    return base;
  }
  // The system prompt of a tenant: a fixed run of ids per tenant.
  uint64_t SystemBase(uint32_t tenant) const { return (uint64_t{tenant} + 1) << 40; }
  int32_t SystemTokens(uint32_t tenant) const { return (4 + static_cast<int32_t>(tenant % 4) * 4) * o_.block_tokens; }

  void AppendRun(TraceRequest* r, uint64_t base, int32_t tokens) {
    const int32_t blocks = (tokens + o_.block_tokens - 1) / o_.block_tokens;
    for (int32_t b = 0; b < blocks; ++b) r->block_ids.push_back(base + static_cast<uint64_t>(b));
  }

  Session NewSession() {
    Session s;
    s.tenant = static_cast<uint32_t>(1 + Uniform(0, o_.tenants - 1));
    s.session = trace_.InternSession(fmt::format("s{}", ++sessions_));
    s.prefix_tokens = SystemTokens(s.tenant);
    if (o_.kind == SyntheticKind::kAgent) s.prefix_tokens += Blocks(2, 16);  // agent memory
    s.stream_base = FreshIds(1 << 16);
    s.turns_left = o_.kind == SyntheticKind::kAgent ? Uniform(3, 20) : Uniform(1, 8);
    s.stream_tokens = 0;
    return s;
  }

  // Chat and agent: a turn of a live session (or a new one) extends its stream.
  void Turn(TraceRequest* r) {
    constexpr size_t kLiveSessions = 48;
    if (live_.size() < kLiveSessions || Uniform(0, 3) == 0) live_.push_back(NewSession());
    const size_t pick = static_cast<size_t>(Uniform(0, static_cast<int32_t>(live_.size()) - 1));
    Session& s = live_[pick];
    const bool agent = o_.kind == SyntheticKind::kAgent;
    // New content: a user message, or (agents) a tool's output.
    s.stream_tokens += agent ? Uniform(50, 1500) : Uniform(20, 400);
    // The stream must fit its id range; a very long session simply ends.
    s.stream_tokens = std::min(s.stream_tokens, (1 << 16) * o_.block_tokens / 2);
    r->tenant = s.tenant;
    r->session = s.session;
    r->input_tokens = s.prefix_tokens + s.stream_tokens;
    r->output_tokens = agent ? Uniform(20, 300) : Uniform(30, 600);
    const int32_t system = SystemTokens(s.tenant);
    AppendRun(r, SystemBase(s.tenant), system);
    if (agent) {
      AppendRun(r, s.stream_base + (1 << 15), s.prefix_tokens - system);  // memory: the second half of the ids
      r->ranges.push_back({0, system, kSystemPriority});
      r->ranges.push_back({system, s.prefix_tokens, kMemoryPriority});
      r->ranges.push_back({s.prefix_tokens, r->input_tokens, kScratchPriority});
    }
    AppendRun(r, s.stream_base, s.stream_tokens);
    // The answer becomes part of the history the next turn re-sends.
    s.stream_tokens += r->output_tokens;
    if (--s.turns_left == 0) {
      live_[pick] = live_.back();
      live_.pop_back();
    }
  }

  // RAG: system prompt, then 1-3 documents drawn by Zipf popularity, then a
  // question seen once.
  void Rag(TraceRequest* r) {
    constexpr int kDocuments = 500;
    if (doc_cdf_.empty()) {
      double sum = 0;
      for (int d = 1; d <= kDocuments; ++d) doc_cdf_.push_back(sum += 1.0 / std::pow(d, 1.1));
      for (double& c : doc_cdf_) c /= sum;
      for (int d = 0; d < kDocuments; ++d) doc_tokens_.push_back(Blocks(8, 48));
    }
    r->tenant = static_cast<uint32_t>(1 + Uniform(0, o_.tenants - 1));
    const int32_t system = SystemTokens(r->tenant);
    AppendRun(r, SystemBase(r->tenant), system);
    r->ranges.push_back({0, system, kSystemPriority});
    int32_t pos = system;
    const int docs = Uniform(1, 3);
    std::uniform_real_distribution<double> u(0, 1);
    for (int k = 0; k < docs; ++k) {
      const size_t d = static_cast<size_t>(std::lower_bound(doc_cdf_.begin(), doc_cdf_.end(), u(rng_)) - doc_cdf_.begin());
      const size_t doc = std::min<size_t>(d, kDocuments - 1);
      // A document's ids depend on what precedes it only through the chain;
      // the same document after a different one is different KV, as it is
      // in a real prefix cache.
      AppendRun(r, (uint64_t{1} << 50) + (uint64_t{doc} << 16), doc_tokens_[doc]);
      r->ranges.push_back({pos, pos + doc_tokens_[doc], kDocumentPriority});
      pos += doc_tokens_[doc];
    }
    const int32_t question = Uniform(20, 200);
    AppendRun(r, FreshIds(question / o_.block_tokens + 1), question);
    r->input_tokens = pos + question;
    r->output_tokens = Uniform(50, 400);
  }

  SyntheticOptions o_;
  std::mt19937_64 rng_;
  Trace trace_;
  std::vector<Session> live_;
  int64_t sessions_ = 0;
  uint64_t next_id_ = uint64_t{1} << 56;
  std::vector<double> doc_cdf_;
  std::vector<int32_t> doc_tokens_;
};

}  // namespace

Result<SyntheticKind> ParseSyntheticKind(std::string_view text) {
  if (text == "chat") return SyntheticKind::kChat;
  if (text == "agent" || text == "agents") return SyntheticKind::kAgent;
  if (text == "rag") return SyntheticKind::kRag;
  return InvalidArgument(fmt::format("synthetic kind \"{}\": expected chat, agent or rag", text));
}

Result<Trace> GenerateTrace(const SyntheticOptions& o) {
  if (o.requests < 1) return InvalidArgument(fmt::format("synthetic: requests {} must be >= 1", o.requests));
  if (!(o.requests_per_second > 0)) {
    return InvalidArgument(fmt::format("synthetic: rate {} must be > 0 requests/s", o.requests_per_second));
  }
  if (o.tenants < 1) return InvalidArgument(fmt::format("synthetic: tenants {} must be >= 1", o.tenants));
  if (o.block_tokens < 1 || o.block_tokens > 4096) {
    return InvalidArgument(fmt::format("synthetic: block_tokens {} must be 1-4096", o.block_tokens));
  }
  return Generator(o).Run();
}

}  // namespace kvstack::sim
