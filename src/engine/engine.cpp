#include "kvstack/engine.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "engine/forward.h"
#include "engine/llama_model.h"
#include "engine/scheduler.h"
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

// A request's sampling and text state while it lives.
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
  std::map<RequestId, LiveRequest> live;
  std::vector<RequestId> cancelled;
  RequestId next_id = 1;
  EngineInfo info;
  std::vector<float> logits;
  double prefill_tokens_per_s = 0;  // smoothed over steps, for onboard-or-recompute
  std::map<std::string, SessionContext> sessions;  // only with tiers
  uint64_t session_clock = 0;

  GenerationEvent Finish(RequestId id, FinishReason why, GenerationEvent e);
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
  if (o.make_tiers) {
    auto chain = o.make_tiers(c.shape.block_bytes(), CacheIdentity(impl->model->identity(), c.shape));
    if (!chain.ok()) return chain.status();
    if (*chain) {
      if ((*chain)->bytes_per_block() != c.shape.block_bytes()) {
        return InvalidArgument(fmt::format("tiers store blocks of {} bytes; this model's KV blocks are {}",
                                           (*chain)->bytes_per_block(), c.shape.block_bytes()));
      }
      impl->onboarder = std::make_unique<engine::TierOnboarder>(
          std::move(chain).value(),
          engine::TierOnboarder::Options{.block_size = o.block_size, .only_when_faster = o.onboard_only_when_faster},
          impl->clock);
      c.eviction_listener = impl->onboarder.get();
    }
  }
  auto cache = KvCache::Create(c);
  if (!cache.ok()) return cache.status();
  impl->cache = std::move(cache).value();
  if (impl->onboarder) impl->onboarder->Attach(&impl->cache->arena());
  impl->forward = std::make_unique<engine::Forward>(*impl->model, &impl->cache->arena(), impl->pool.get());
  impl->scheduler = std::make_unique<engine::Scheduler>(
      impl->cache.get(), engine::SchedulerOptions{o.max_batch_tokens, o.max_running}, impl->onboarder.get());

  EngineInfo& i = impl->info;
  i.model_identity = impl->model->identity();
  i.cache_identity = CacheIdentity(i.model_identity, c.shape);
  i.kv_types = c.shape.types_name();
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
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Result<RequestId> Engine::Submit(GenerationRequest r) {
  Impl& m = *impl_;
  KVSTACK_RETURN_IF_ERROR(r.sampling.Validate());
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
  const int32_t prompt_tokens = static_cast<int32_t>(s.tokens.size());
  KVSTACK_RETURN_IF_ERROR(m.scheduler->Add(std::move(s)));
  auto [it, inserted] = m.live.try_emplace(m.next_id - 1, r.sampling, *m.tokenizer);
  it->second.metrics.prompt_tokens = prompt_tokens;
  it->second.ignore_eos = r.ignore_eos;
  it->second.session_id = std::move(r.session_id);
  it->second.metrics.queued_at = m.clock->Now();
  return it->first;
}

Status Engine::Cancel(RequestId id) {
  Impl& m = *impl_;
  if (!m.live.count(id)) return NotFound(fmt::format("request {} is not running", id));
  if (std::find(m.cancelled.begin(), m.cancelled.end(), id) == m.cancelled.end()) m.cancelled.push_back(id);
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
  e.finish = why;
  e.metrics = r.metrics;
  live.erase(id);
  return e;
}

Status Engine::Step(std::vector<GenerationEvent>* events) {
  Impl& m = *impl_;
  for (RequestId id : m.cancelled) {
    if (m.live.count(id)) events->push_back(m.Finish(id, FinishReason::kCancelled, GenerationEvent{.id = id}));
  }
  m.cancelled.clear();

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
    const int32_t table = static_cast<int32_t>(batch.tables.size() - 1);
    for (int32_t p = c.begin; p < c.begin + c.count; ++p) {
      batch.tokens.push_back({r.tokens[p], p, table, c.want_logits && p == c.begin + c.count - 1});
    }
  }
  const Micros run_start = m.clock->Now();
  KVSTACK_RETURN_IF_ERROR(m.forward->Run(batch, &m.logits));
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
  for (const engine::ScheduledChunk& c : plan) {
    m.scheduler->Computed(c);
    if (!c.want_logits) continue;
    const engine::ScheduledRequest& s = *m.scheduler->Find(c.id);
    LiveRequest& r = m.live.at(c.id);
    const int32_t window = std::max(r.params.repetition_window, 0);
    const size_t from = s.tokens.size() > static_cast<size_t>(window) ? s.tokens.size() - window : 0;
    std::span<const Token> recent(s.tokens.data() + from, s.tokens.size() - from);
    const Token t = r.sampler.Sample(std::span<float>(&m.logits[row * V], V), recent);
    ++row;
    const Micros now = m.clock->Now();
    if (r.metrics.first_token_at == 0) r.metrics.first_token_at = now;
    ++r.metrics.generated_tokens;
    m.scheduler->AppendToken(c.id, t);

    GenerationEvent e{.id = c.id, .tokens = {t}};
    FinishReason finish = FinishReason::kNone;
    if (r.params.IsStopToken(t) || (!r.ignore_eos && m.tokenizer->IsEog(t))) {
      finish = FinishReason::kStop;
    } else {
      StopMatcher::Output out = r.stop.Feed(r.decoder.Push(t));
      e.text = std::move(out.text);
      if (out.stop_index) finish = FinishReason::kStop;
    }
    if (finish == FinishReason::kNone &&
        (r.metrics.generated_tokens >= r.params.max_tokens || static_cast<int32_t>(s.tokens.size()) >= m.info.n_ctx)) {
      finish = FinishReason::kLength;
    }
    events->push_back(finish == FinishReason::kNone ? std::move(e) : m.Finish(c.id, finish, std::move(e)));
  }
  return Status::Ok();
}

bool Engine::HasWork() const { return impl_->scheduler->HasWork() || !impl_->cancelled.empty(); }
const Tokenizer& Engine::tokenizer() const { return *impl_->tokenizer; }
KvCache& Engine::cache() { return *impl_->cache; }
const EngineInfo& Engine::info() const { return impl_->info; }
uint64_t Engine::preemptions() const { return impl_->scheduler->stats().preemptions; }
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
  return impl_->forward->workspace_bytes() + impl_->logits.capacity() * sizeof(float);
}

}  // namespace kvstack
