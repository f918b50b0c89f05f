#include "kvstack/engine.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "engine/forward.h"
#include "engine/llama_model.h"
#include "engine/scheduler.h"
#include "engine/kv_block_convert.h"
#include "engine/tier_onboarder.h"
#include "kvstack/kernels.h"
#include "kvstack/tokenizer.h"

namespace kvstack {

std::string_view FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
  }
  return "?";
}

uint64_t ChoiceSeed(uint64_t seed, int32_t choice) {
  if (choice == 0) return seed;
  // SplitMix64 of the pair: well spread even for seeds 0, 1, 2...
  uint64_t x = seed ^ (0x9e3779b97f4a7c15ull * static_cast<uint64_t>(choice));
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// One choice's sampling and text state while it lives. A request with n
// choices is n of these: choice 0 under the id Submit returned (it holds the
// prompt until its first sample), the others under ids of their own, made
// when choice 0 forks.
struct LiveRequest {
  LiveRequest(const SamplingParams& p, const Tokenizer& tok)
      : params(p), sampler(p), decoder(tok), stop(p.stop_strings) {}
  SamplingParams params;
  Sampler sampler;
  StreamDecoder decoder;
  StopMatcher stop;
  RequestMetrics metrics;
  bool ignore_eos = false;
  std::string session_id;
  RequestId client_id = 0;   // the id Submit returned (events carry it)
  int32_t choice = 0;
  int32_t n = 1;             // choice 0: choices to fork at the first sample
  bool forked = false;
  int32_t logprobs = -1;
  int32_t prompt_logprobs = -1;
  bool prompt_scored = false;
  std::vector<PositionLogprobs> prompt_scores;  // index p scores prompt token p + 1
  // Quantized KV only: the tokens of the last, partial block at f16, made at
  // the request's first step (kv_residual.h).
  std::unique_ptr<engine::KvResidual> residual;

  // Positions below this get logits to score the prompt's next token.
  int32_t ScoreBelow(int32_t prompt_len) const {
    return prompt_logprobs >= 0 && !prompt_scored ? prompt_len - 1 : 0;
  }
};

// A conversation's context when its last request finished.
struct SessionContext {
  std::vector<Token> tokens;
  ExtraKeys keys;
  uint64_t last_use = 0;
};
constexpr size_t kMaxSessions = 1024;

struct Engine::Impl {
  EngineOptions options;
  const Clock* clock = nullptr;
  std::unique_ptr<engine::LlamaModel> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<kernels::ThreadPool> pool;
  // Before the cache: the cache calls it on eviction, and its reads write
  // into the cache's arena (~Engine stops them first).
  std::unique_ptr<engine::TierOnboarder> onboarder;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<engine::Forward> forward;
  std::unique_ptr<engine::Scheduler> scheduler;
  uint64_t batches = 0;
  // 10 us to 10 s: a step of a small model at one end, a long prefill at the other.
  Histogram step_seconds = Histogram::Decades125(1e-5, 10);
  bool residual_needed = false;  // quantized K or V: each request keeps a KvResidual
  std::map<RequestId, LiveRequest> live;  // by internal id (one per choice)
  std::map<RequestId, int32_t> open_choices;  // by client id: choices not finished
  std::vector<float> row_scratch;  // one logits row, for a sampler to modify
  std::vector<RequestId> cancelled;
  RequestId next_id = 1;
  EngineInfo info;
  std::vector<float> logits;
  double prefill_tokens_per_s = 0;  // smoothed over steps, for onboard-or-recompute
  std::map<std::string, SessionContext> sessions;  // only with tiers
  uint64_t session_clock = 0;

  GenerationEvent Finish(RequestId id, FinishReason why, GenerationEvent e);
  // Samples the next token of choice `id` from a raw logits row and appends
  // its event (finished when it ends the choice).
  void SampleChoice(RequestId id, std::span<const float> row, std::vector<PositionLogprobs> prompt_scores,
                    std::vector<GenerationEvent>* events);
  // Choice 0's first sample: forks choices 1..n-1 from it. Returns every
  // choice's id, choice 0 first.
  std::vector<RequestId> ForkChoices(RequestId id);
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() {
  if (impl_) {
    impl_->scheduler.reset();
    impl_->onboarder.reset();  // waits for reads into the arena
  }
}

namespace {
std::string CacheIdentity(const std::string& model_identity, const KvShape& shape) {
  return model_identity + "/" + shape.layout_identity();
}
}  // namespace

Result<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& o) {
  auto impl = std::make_unique<Impl>();
  impl->options = o;
  impl->clock = o.clock ? o.clock : &SteadyClock::Default();
  if (o.max_batch_tokens < 1) return InvalidArgument(fmt::format("max_batch_tokens {}: must be at least 1", o.max_batch_tokens));
  if (o.max_running < 1) return InvalidArgument(fmt::format("max_running {}: must be at least 1", o.max_running));
  auto model = engine::LlamaModel::Load(o.model_path);
  if (!model.ok()) return model.status();
  impl->model = std::move(model).value();
  auto tok = Tokenizer::FromGguf(impl->model->file());
  if (!tok.ok()) return Status(tok.status().code(), o.model_path + ": " + tok.status().message());
  impl->tokenizer = std::move(tok).value();
  const LlamaHParams& h = impl->model->hparams();
  if (static_cast<uint32_t>(impl->tokenizer->vocab_size()) != h.n_vocab) {
    return InvalidArgument(fmt::format("{}: tokenizer has {} tokens but the model {}", o.model_path,
                                       impl->tokenizer->vocab_size(), h.n_vocab));
  }

  impl->pool = std::make_unique<kernels::ThreadPool>(o.threads);
  KvCacheConfig c;
  c.shape = KvShape{.num_layers = static_cast<int32_t>(h.n_layer), .num_kv_heads = static_cast<int32_t>(h.n_head_kv),
                    .head_dim = static_cast<int32_t>(h.head_dim), .block_size = o.block_size, .dtype = o.kv_dtype,
                    .v_dtype = o.kv_dtype_v};
  if (o.num_blocks > 0) {
    c.num_blocks = o.num_blocks;
  } else {
    const int64_t per_block = static_cast<int64_t>(c.shape.block_bytes());
    if (per_block <= 0 || o.kv_memory_bytes < per_block) {
      return InvalidArgument(fmt::format("kv memory {} bytes holds no block of {} bytes", o.kv_memory_bytes, per_block));
    }
    c.num_blocks = static_cast<int32_t>(std::min<int64_t>(o.kv_memory_bytes / per_block, 1 << 30));
  }
  c.eviction_policy = o.eviction_policy;
  c.max_pinned_fraction = o.max_pinned_fraction;
  c.hash_seed = o.hash_seed;
  c.event_buffer_limit = o.event_buffer_limit;
  c.clock = impl->clock;
  // The tiers' layout: the device's, or a narrower one blocks are converted
  // to; its identity extends the device's, so a tier shared with a server
  // that stores another layout of the same blocks never mixes the two.
  std::optional<KvShape> tier_shape;
  std::string tier_identity = CacheIdentity(impl->model->identity(), c.shape);
  if (o.tier_kv_dtype && (c.shape.k_type() != *o.tier_kv_dtype || c.shape.v_type() != *o.tier_kv_dtype)) {
    auto t = engine::TierKvShape(c.shape, *o.tier_kv_dtype);
    if (!t.ok()) return t.status();
    tier_shape = *t;
    tier_identity += "/tier:" + t->layout_identity();
  }
  const KvShape& stored = tier_shape ? *tier_shape : c.shape;
  if (o.make_tiers) {
    auto chain = o.make_tiers(stored.block_bytes(), tier_identity);
    if (!chain.ok()) return chain.status();
    if (*chain) {
      if ((*chain)->bytes_per_block() != stored.block_bytes()) {
        return InvalidArgument(fmt::format("tiers store blocks of {} bytes; this model's {} KV blocks are {}",
                                           (*chain)->bytes_per_block(), stored.types_name(), stored.block_bytes()));
      }
      impl->onboarder = std::make_unique<engine::TierOnboarder>(
          std::move(chain).value(),
          engine::TierOnboarder::Options{.block_size = o.block_size,
                                         .only_when_faster = o.onboard_only_when_faster,
                                         .tier_shape = tier_shape},
          impl->clock);
      c.eviction_listener = impl->onboarder.get();
    }
  }
  auto cache = KvCache::Create(c);
  if (!cache.ok()) return cache.status();
  impl->cache = std::move(cache).value();
  if (impl->onboarder) impl->onboarder->Attach(&impl->cache->arena());
  impl->forward = std::make_unique<engine::Forward>(*impl->model, &impl->cache->arena(), impl->pool.get(),
                                                     o.matmul_precision);
  impl->residual_needed = engine::KvResidual::Needed(impl->cache->arena().shape());
  impl->scheduler = std::make_unique<engine::Scheduler>(
      impl->cache.get(), engine::SchedulerOptions{o.max_batch_tokens, o.max_running}, impl->onboarder.get());

  EngineInfo& i = impl->info;
  i.model_identity = impl->model->identity();
  i.cache_identity = CacheIdentity(i.model_identity, c.shape);
  i.kv_types = c.shape.types_name();
  if (impl->onboarder) {
    i.tier_kv_types = stored.types_name();
    i.tier_block_bytes = stored.block_bytes();
  }
  i.hash_seed = o.hash_seed;
  i.architecture = h.architecture;
  i.n_layer = static_cast<int32_t>(h.n_layer);
  i.n_embd = static_cast<int32_t>(h.n_embd);
  i.n_head = static_cast<int32_t>(h.n_head);
  i.n_head_kv = static_cast<int32_t>(h.n_head_kv);
  i.head_dim = static_cast<int32_t>(h.head_dim);
  i.n_vocab = static_cast<int32_t>(h.n_vocab);
  i.n_ctx = o.max_context > 0 ? o.max_context : static_cast<int32_t>(h.n_ctx_train);
  // One sequence can never hold more than the whole pool: past that it could
  // only be preempted and re-admitted forever.
  const int64_t pool_tokens = static_cast<int64_t>(c.num_blocks) * o.block_size - 1;
  i.n_ctx = static_cast<int32_t>(std::min<int64_t>(i.n_ctx, pool_tokens));
  i.weight_bytes = impl->model->weight_bytes();
  i.kv_bytes_per_token = c.shape.block_bytes() / static_cast<size_t>(o.block_size);
  i.threads = impl->pool->size();
  i.cpu_level = std::string(kernels::CpuLevelName(kernels::ActiveCpuLevel()));
  i.matmul_precision = o.matmul_precision;
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Result<RequestId> Engine::Submit(GenerationRequest r) {
  Impl& m = *impl_;
  if (r.n < 1 || r.n > kMaxChoices) return InvalidArgument(fmt::format("n {}: must be from 1 to {}", r.n, kMaxChoices));
  if (r.logprobs < -1 || r.logprobs > kMaxLogprobs) {
    return InvalidArgument(fmt::format("logprobs {}: must be from -1 (off) to {}", r.logprobs, kMaxLogprobs));
  }
  if (r.prompt_logprobs < -1 || r.prompt_logprobs > kMaxLogprobs) {
    return InvalidArgument(
        fmt::format("prompt_logprobs {}: must be from -1 (off) to {}", r.prompt_logprobs, kMaxLogprobs));
  }
  const bool score_only = r.sampling.max_tokens == 0 && r.prompt_logprobs >= 0;
  if (score_only) {
    SamplingParams check = r.sampling;
    check.max_tokens = 1;
    KVSTACK_RETURN_IF_ERROR(check.Validate());
  } else {
    KVSTACK_RETURN_IF_ERROR(r.sampling.Validate());
  }
  if (r.prompt.empty()) return InvalidArgument("prompt: no tokens");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= m.info.n_vocab) {
      return InvalidArgument(fmt::format("prompt[{}]: token id {} outside the vocabulary (0..{})", i, r.prompt[i], m.info.n_vocab - 1));
    }
  }
  if (static_cast<int64_t>(r.prompt.size()) >= m.info.n_ctx) {
    return InvalidArgument(fmt::format("prompt: {} tokens leave no room in the context of {}", r.prompt.size(), m.info.n_ctx));
  }
  engine::ScheduledRequest s;
  s.id = m.next_id++;
  s.tokens = std::move(r.prompt);
  s.priority = r.priority;
  s.keys = ExtraKeys{.model_id = m.info.cache_identity, .cache_salt = std::move(r.cache_salt)};
  s.retention = std::move(r.retention);
  s.skip_prefix_hits = r.prompt_logprobs >= 0;
  const int32_t prompt_tokens = static_cast<int32_t>(s.tokens.size());
  KVSTACK_RETURN_IF_ERROR(m.scheduler->Add(std::move(s)));
  auto [it, inserted] = m.live.try_emplace(m.next_id - 1, r.sampling, *m.tokenizer);
  it->second.metrics.prompt_tokens = prompt_tokens;
  it->second.ignore_eos = r.ignore_eos;
  it->second.session_id = std::move(r.session_id);
  it->second.metrics.queued_at = m.clock->Now();
  it->second.client_id = it->first;
  it->second.n = score_only ? 1 : r.n;
  it->second.logprobs = r.logprobs;
  it->second.prompt_logprobs = r.prompt_logprobs;
  if (r.prompt_logprobs >= 0) it->second.prompt_scores.resize(static_cast<size_t>(std::max(prompt_tokens - 1, 0)));
  m.open_choices[it->first] = 1;
  return it->first;
}

Status Engine::Cancel(RequestId id) {
  Impl& m = *impl_;
  if (!m.open_choices.count(id)) return NotFound(fmt::format("request {} is not running", id));
  for (const auto& [internal, r] : m.live) {
    if (r.client_id != id) continue;
    if (std::find(m.cancelled.begin(), m.cancelled.end(), internal) == m.cancelled.end()) m.cancelled.push_back(internal);
  }
  return Status::Ok();
}

GenerationEvent Engine::Impl::Finish(RequestId id, FinishReason why, GenerationEvent e) {
  LiveRequest& r = live.at(id);
  if (why != FinishReason::kCancelled && !r.stop.stopped()) {
    e.text += r.stop.Feed(r.decoder.Flush()).text;
    e.text += r.stop.Flush();
  }
  if (const engine::ScheduledRequest* s = scheduler->Find(id)) {
    if (onboarder && !r.session_id.empty()) {
      SessionContext& c = sessions[r.session_id];
      c.tokens = s->tokens;
      c.keys = s->keys;
      c.last_use = ++session_clock;
      if (sessions.size() > kMaxSessions) {
        sessions.erase(std::min_element(sessions.begin(), sessions.end(), [](const auto& a, const auto& b) {
          return a.second.last_use < b.second.last_use;
        }));
      }
    }
    r.metrics.cached_tokens = std::max(s->cached_tokens, 0);
    r.metrics.hit_prefix = s->hit_prefix;
    r.metrics.onboarded_tokens = s->onboarded_tokens;
    r.metrics.preemptions = s->preemptions;
  }
  scheduler->Finish(id).IgnoreError();  // known to the scheduler while live
  r.metrics.finished_at = clock->Now();
  e.id = r.client_id;
  e.choice = r.choice;
  e.finish = why;
  e.metrics = r.metrics;
  auto open = open_choices.find(r.client_id);
  if (open != open_choices.end() && --open->second <= 0) {
    e.request_finished = true;
    open_choices.erase(open);
  }
  live.erase(id);
  return e;
}

std::vector<RequestId> Engine::Impl::ForkChoices(RequestId id) {
  std::vector<RequestId> ids = {id};
  LiveRequest& parent = live.at(id);
  if (parent.forked || parent.n <= 1) return ids;
  parent.forked = true;
  for (int32_t i = 1; i < parent.n; ++i) {
    const RequestId child = next_id++;
    scheduler->Fork(id, child);
    SamplingParams p = parent.params;
    p.seed = ChoiceSeed(parent.params.seed, i);
    LiveRequest& c = live.try_emplace(child, p, *tokenizer).first->second;
    c.metrics = parent.metrics;
    c.ignore_eos = parent.ignore_eos;
    c.client_id = parent.client_id;
    c.choice = i;
    c.forked = true;
    c.logprobs = parent.logprobs;
    // The choices share the prompt's partial last block: each continues it.
    if (parent.residual) c.residual = std::make_unique<engine::KvResidual>(*parent.residual);
    ids.push_back(child);
  }
  open_choices[parent.client_id] += parent.n - 1;
  return ids;
}

void Engine::Impl::SampleChoice(RequestId id, std::span<const float> row, std::vector<PositionLogprobs> prompt_scores,
                                std::vector<GenerationEvent>* events) {
  const engine::ScheduledRequest& s = *scheduler->Find(id);
  LiveRequest& r = live.at(id);
  const int32_t window = std::max(r.params.repetition_window, 0);
  const size_t from = s.tokens.size() > static_cast<size_t>(window) ? s.tokens.size() - window : 0;
  std::span<const Token> recent(s.tokens.data() + from, s.tokens.size() - from);
  row_scratch.assign(row.begin(), row.end());  // the sampler penalises in place; the row serves every choice
  const Token t = r.sampler.Sample(std::span<float>(row_scratch), recent);
  const Micros now = clock->Now();
  if (r.metrics.first_token_at == 0) r.metrics.first_token_at = now;
  ++r.metrics.generated_tokens;
  scheduler->AppendToken(id, t);

  GenerationEvent e{.id = r.client_id, .tokens = {t}};
  e.choice = r.choice;
  if (r.logprobs >= 0) e.logprobs.push_back(ComputeLogprobs(row, t, r.logprobs));
  e.prompt_logprobs = std::move(prompt_scores);
  FinishReason finish = FinishReason::kNone;
  if (r.params.IsStopToken(t) || (!r.ignore_eos && tokenizer->IsEog(t))) {
    finish = FinishReason::kStop;
  } else {
    StopMatcher::Output out = r.stop.Feed(r.decoder.Push(t));
    e.text = std::move(out.text);
    if (out.stop_index) finish = FinishReason::kStop;
  }
  if (finish == FinishReason::kNone &&
      (r.metrics.generated_tokens >= r.params.max_tokens || static_cast<int32_t>(s.tokens.size()) >= info.n_ctx)) {
    finish = FinishReason::kLength;
  }
  events->push_back(finish == FinishReason::kNone ? std::move(e) : Finish(id, finish, std::move(e)));
}

Status Engine::Step(std::vector<GenerationEvent>* events) {
  Impl& m = *impl_;
  for (RequestId id : m.cancelled) {
    if (m.live.count(id)) events->push_back(m.Finish(id, FinishReason::kCancelled, GenerationEvent{}));
  }
  m.cancelled.clear();

  const Micros step_start = m.clock->Now();
  const std::vector<engine::ScheduledChunk> plan = m.scheduler->Schedule();
  if (plan.empty()) {
    // Only tier reads in flight: let the I/O threads run.
    if (m.scheduler->HasWork()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    return Status::Ok();
  }
  engine::ForwardBatch batch;
  for (const engine::ScheduledChunk& c : plan) {
    const engine::ScheduledRequest& r = *m.scheduler->Find(c.id);
    batch.tables.push_back(m.scheduler->BlockTable(c.id));
    LiveRequest& live = m.live.at(c.id);
    if (m.residual_needed && !live.residual) {
      live.residual = std::make_unique<engine::KvResidual>(m.cache->arena().shape());
    }
    batch.residuals.push_back(live.residual.get());
    const int32_t table = static_cast<int32_t>(batch.tables.size() - 1);
    const int32_t score_below = live.ScoreBelow(r.prompt_len);
    for (int32_t p = c.begin; p < c.begin + c.count; ++p) {
      const bool last = c.want_logits && p == c.begin + c.count - 1;
      batch.tokens.push_back({r.tokens[p], p, table, last || p < score_below});
    }
  }
  const Micros run_start = m.clock->Now();
  KVSTACK_RETURN_IF_ERROR(m.forward->Run(batch, &m.logits));
  ++m.batches;
  if (m.onboarder && batch.tokens.size() >= 8) {
    // Tokens per second of a batch with prompt work: what recomputing costs.
    const Micros took = m.clock->Now() - run_start;
    if (took > 0) {
      const double rate = double(batch.tokens.size()) * 1e6 / double(took);
      m.prefill_tokens_per_s = m.prefill_tokens_per_s > 0 ? 0.8 * m.prefill_tokens_per_s + 0.2 * rate : rate;
      m.onboarder->SetRecomputeRate(m.prefill_tokens_per_s);
    }
  }

  const size_t V = static_cast<size_t>(m.info.n_vocab);
  size_t row = 0;
  auto next_row = [&] { return std::span<const float>(&m.logits[row++ * V], V); };
  for (const engine::ScheduledChunk& c : plan) {
    LiveRequest& r = m.live.at(c.id);
    const int32_t prompt_len = m.scheduler->Find(c.id)->prompt_len;
    const int32_t score_below = r.ScoreBelow(prompt_len);
    m.scheduler->Computed(c);
    const std::span<const Token> tokens = m.scheduler->Find(c.id)->tokens;
    for (int32_t p = c.begin; p < std::min(c.begin + c.count, score_below); ++p) {
      r.prompt_scores[static_cast<size_t>(p)] = ComputeLogprobs(next_row(), tokens[p + 1], r.prompt_logprobs);
    }
    if (!c.want_logits) continue;
    const std::span<const float> last = next_row();
    std::vector<PositionLogprobs> prompt_scores;
    if (r.prompt_logprobs >= 0 && !r.prompt_scored) {
      // This chunk finished the prompt: every position is scored.
      r.prompt_scored = true;
      prompt_scores = std::move(r.prompt_scores);
    }
    if (r.params.max_tokens == 0) {  // scoring only (Submit allows it with prompt_logprobs)
      events->push_back(m.Finish(c.id, FinishReason::kLength, GenerationEvent{.prompt_logprobs = std::move(prompt_scores)}));
      continue;
    }
    const std::vector<RequestId> choices = m.ForkChoices(c.id);
    for (size_t i = 0; i < choices.size(); ++i) {
      m.SampleChoice(choices[i], last, i == 0 ? std::move(prompt_scores) : std::vector<PositionLogprobs>{}, events);
    }
  }
  m.step_seconds.Observe(double(m.clock->Now() - step_start) / 1e6);
  return Status::Ok();
}

bool Engine::HasWork() const { return impl_->scheduler->HasWork() || !impl_->cancelled.empty(); }
const Tokenizer& Engine::tokenizer() const { return *impl_->tokenizer; }
KvCache& Engine::cache() { return *impl_->cache; }
const EngineInfo& Engine::info() const { return impl_->info; }
uint64_t Engine::preemptions() const { return impl_->scheduler->stats().preemptions; }
uint64_t Engine::batches() const { return impl_->batches; }
const Histogram& Engine::step_seconds() const { return impl_->step_seconds; }
Result<int32_t> Engine::PrefetchSession(const std::string& session_id) {
  Impl& m = *impl_;
  if (!m.onboarder) return FailedPrecondition("prefetch needs tiers below the device pool (none configured)");
  auto it = m.sessions.find(session_id);
  if (it == m.sessions.end()) return NotFound(fmt::format("session '{}' is not remembered", session_id));
  it->second.last_use = ++m.session_clock;
  AdmissionRequest a;
  a.tokens = it->second.tokens;
  a.keys = it->second.keys;
  const AdmissionPlan plan = m.cache->PlanAdmission(a);
  const size_t from = static_cast<size_t>(plan.hit_blocks);
  if (plan.hashes.size() <= from) return 0;
  m.onboarder->Prefetch(0, std::span(plan.hashes).subspan(from));
  return static_cast<int32_t>(plan.hashes.size() - from);
}

TierChain* Engine::tiers() { return impl_->onboarder ? &impl_->onboarder->chain() : nullptr; }
OnboardMetrics Engine::onboard_metrics() const {
  return impl_->onboarder ? impl_->onboarder->Metrics() : OnboardMetrics{};
}
size_t Engine::workspace_bytes() const {
  size_t residuals = 0;
  for (const auto& [id, r] : impl_->live) residuals += r.residual ? r.residual->bytes() : 0;
  return impl_->forward->workspace_bytes() + impl_->logits.capacity() * sizeof(float) + residuals;
}

}  // namespace kvstack
