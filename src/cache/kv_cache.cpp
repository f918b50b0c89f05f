// KvCache: creation, admission, lookup, pins, metrics and invariants.
// Running sequences (append, commit, fork, release) are in kv_cache_sequence.cpp.
#include "kvstack/kv_cache.h"

#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "cache/check.h"
#include "cache/kv_cache_impl.h"

namespace kvstack {
namespace {

Micros AddSaturating(Micros now, Micros duration) {
  return duration >= kNoExpiry - now ? kNoExpiry : now + duration;
}

Status ValidateRequest(const AdmissionRequest& r) {
  if (r.tokens.empty()) return InvalidArgument("admission: the prompt has no tokens");
  if (r.tokens.size() > static_cast<size_t>(INT32_MAX / 2)) {
    return InvalidArgument(fmt::format("admission: {} prompt tokens is over the limit", r.tokens.size()));
  }
  if (r.reserve_tokens < 0) return InvalidArgument(fmt::format("admission: reserve_tokens {} is negative", r.reserve_tokens));
  const int32_t n = static_cast<int32_t>(r.tokens.size());
  for (size_t i = 0; i < r.retention.ranges.size(); ++i) {
    const RetentionRange& rr = r.retention.ranges[i];
    if (rr.tokens.begin < 0 || rr.tokens.begin >= rr.tokens.end || rr.tokens.end > n) {
      return InvalidArgument(fmt::format("retention.ranges[{}]: tokens [{}, {}) must be non-empty and within the {} prompt tokens",
                                         i, rr.tokens.begin, rr.tokens.end, n));
    }
    if (rr.priority > kMaxPriority) {
      return InvalidArgument(fmt::format("retention.ranges[{}]: priority {} must be 0 to 100", i, rr.priority));
    }
    if (rr.duration && *rr.duration < 0) {
      return InvalidArgument(fmt::format("retention.ranges[{}]: duration {} us is negative", i, *rr.duration));
    }
  }
  if (r.retention.decode_priority && *r.retention.decode_priority > kMaxPriority) {
    return InvalidArgument(fmt::format("retention.decode_priority {} must be 0 to 100", *r.retention.decode_priority));
  }
  if (r.retention.decode_duration && *r.retention.decode_duration < 0) {
    return InvalidArgument(fmt::format("retention.decode_duration {} us is negative", *r.retention.decode_duration));
  }
  return Status::Ok();
}

}  // namespace

// --- PrefixPin ---------------------------------------------------------------

PrefixPin& PrefixPin::operator=(PrefixPin&& o) noexcept {
  if (this != &o) {
    Release();
    cache_ = o.cache_;
    id_ = o.id_;
    blocks_ = o.blocks_;
    o.cache_ = nullptr;
  }
  return *this;
}

void PrefixPin::Release() {
  if (cache_ != nullptr) cache_->Unpin(id_);
  cache_ = nullptr;
}

// --- Impl --------------------------------------------------------------------

void KvCache::Impl::OnEvict(int32_t id, const BlockMeta& m) {
  const Micros now = cache->config_.clock->Now();
  if (!quiet_evictions && cache->config_.eviction_listener) {
    // The priority in force now: a lapsed retention offloads at the default.
    const Priority p = m.expiry <= now ? cache->config_.default_priority : m.priority;
    cache->config_.eviction_listener->OnEvicting(static_cast<BlockId>(id), m.hash, p, m.hit_count);
  }
  ++counters.evictions;
  ++counters.evictions_by_priority[std::min<Priority>(m.priority, kMaxPriority)];
  counters.block_lifetime_us.Observe(static_cast<double>(now - m.stored_at));
  counters.idle_before_eviction_us.Observe(static_cast<double>(now - m.last_use));
  if (!quiet_evictions) cache->events_.BlockRemoved(m.hash, StorageTier::kDevice);
}

PrefixCounters& KvCache::Impl::Tenant(const std::string& tenant) {
  auto it = counters.by_tenant.find(tenant);
  if (it != counters.by_tenant.end()) return it->second;
  if (counters.by_tenant.size() >= cache->config_.max_tenants_tracked) return counters.by_tenant["(other)"];
  return counters.by_tenant[tenant];
}

KvCache::Impl::BlockRetention KvCache::Impl::RetentionFor(const Sequence& s, int32_t b, Micros now) const {
  const Priority def = cache->config_.default_priority;
  const RetentionSpec& r = s.retention;
  const int32_t bs = cache->block_size();
  const int32_t lo = b * bs;
  const int32_t hi = std::min<int32_t>(lo + bs, static_cast<int32_t>(s.tokens.size()));
  const int32_t prompt_hi = std::min(hi, s.prompt_tokens);
  if (r.ranges.empty() && !r.decode_priority && !r.decode_duration) return {def, kNoExpiry};

  int best = -1;
  Micros best_expiry = kNoExpiry;
  auto consider = [&](Priority p, std::optional<Micros> d) {
    const Micros e = d ? AddSaturating(now, *d) : kNoExpiry;
    if (p > best) {
      best = p;
      best_expiry = e;
    } else if (p == best && e > best_expiry) {
      best_expiry = e;
    }
  };
  if (lo < prompt_hi) {
    // Ranges are sorted by begin at admission; a gap between them (or at either
    // end) means some tokens of the block have the default priority.
    int32_t covered = lo;
    for (const RetentionRange& rr : r.ranges) {
      if (rr.tokens.begin >= prompt_hi) break;
      if (rr.tokens.end <= lo) continue;
      if (rr.tokens.begin > covered) consider(def, std::nullopt);
      consider(rr.priority, rr.duration);
      covered = std::max(covered, rr.tokens.end);
    }
    if (covered < prompt_hi) consider(def, std::nullopt);
  }
  if (std::max(lo, s.prompt_tokens) < hi) consider(r.decode_priority.value_or(def), r.decode_duration);
  if (best < 0) return {def, kNoExpiry};
  return {static_cast<Priority>(best), best_expiry};
}

// --- KvCache -----------------------------------------------------------------

Result<std::unique_ptr<KvCache>> KvCache::Create(const KvCacheConfig& config_in) {
  KvCacheConfig config = config_in;
  if (config.clock == nullptr) config.clock = &SteadyClock::Default();
  const int32_t bs = config.shape.block_size;
  if (bs < 1 || bs > 512 || !std::has_single_bit(static_cast<uint32_t>(bs))) {
    return InvalidArgument(fmt::format("block_size {}: must be a power of two from 1 to 512", bs));
  }
  if (config.num_blocks < 1) return InvalidArgument(fmt::format("num_blocks {}: must be at least 1", config.num_blocks));
  if (config.default_priority > kMaxPriority) {
    return InvalidArgument(fmt::format("default_priority {}: must be 0 to 100", config.default_priority));
  }
  if (!(config.max_pinned_fraction >= 0 && config.max_pinned_fraction <= 1)) {
    return InvalidArgument(fmt::format("max_pinned_fraction {}: must be from 0 to 1", config.max_pinned_fraction));
  }
  auto policy = MakeEvictionPolicy(config.eviction_policy);
  if (!policy.ok()) return policy.status();

  KvShape arena_shape = config.shape;
  if (config.storage == KvStorageMode::kMetadataOnly) {
    // The simulator may know no model: size-less blocks are fine without bytes.
    arena_shape.num_layers = std::max(arena_shape.num_layers, 1);
    arena_shape.num_kv_heads = std::max(arena_shape.num_kv_heads, 1);
    arena_shape.head_dim = std::max(arena_shape.head_dim, 1);
  }
  auto arena = KvArena::Create(arena_shape, config.num_blocks, config.storage);
  if (!arena.ok()) return arena.status();

  std::unique_ptr<KvCache> cache(new KvCache(config, std::move(arena).value()));
  Impl& impl = *cache->impl_;
  impl.policy = std::move(policy).value();
  BlockPoolOptions po;
  po.num_blocks = config.num_blocks;
  po.policy = impl.policy.get();
  po.clock = config.clock;
  po.default_priority = config.default_priority;
  po.max_pinned_blocks = static_cast<int32_t>(config.max_pinned_fraction * config.num_blocks);
  po.observer = &impl;
  auto pool = BlockPool::Create(po);
  if (!pool.ok()) return pool.status();
  impl.pool = std::move(pool).value();
  impl.counters.block_size = bs;
  return cache;
}

KvCache::KvCache(const KvCacheConfig& config, KvArena arena)
    : config_(config),
      hasher_(config.hash_seed),
      arena_(std::move(arena)),
      events_(config.event_buffer_limit),
      impl_(std::make_unique<Impl>()) {
  impl_->cache = this;
}

KvCache::~KvCache() = default;

int32_t KvCache::num_available_blocks() const { return impl_->pool->num_available(); }

AdmissionPlan KvCache::PlanAdmission(const AdmissionRequest& request) const {
  AdmissionPlan plan;
  const int32_t bs = block_size();
  plan.num_tokens = static_cast<int32_t>(request.tokens.size());
  if (plan.num_tokens == 0) return plan;
  plan.root = hasher_.Root(request.keys);
  hasher_.ChainBlocks(plan.root, request.tokens, bs, &plan.hashes);
  const BlockPool& pool = *impl_->pool;
  const int32_t max_hit = request.skip_prefix_hits ? 0 : (plan.num_tokens - 1) / bs;
  int32_t cached_hits = 0;
  constexpr int32_t kPrefetchAhead = 8;
  for (int32_t i = 0; i < std::min<int32_t>(kPrefetchAhead, max_hit); ++i) pool.PrefetchFind(plan.hashes[i]);
  while (plan.hit_blocks < max_hit) {
    if (plan.hit_blocks + kPrefetchAhead < max_hit) pool.PrefetchFind(plan.hashes[plan.hit_blocks + kPrefetchAhead]);
    auto id = pool.Find(plan.hashes[plan.hit_blocks]);
    if (!id) break;
    if (pool.meta(*id).state == BlockState::kCached) ++cached_hits;
    plan.hit_ids.push_back(static_cast<BlockId>(*id));
    ++plan.hit_blocks;
  }
  plan.hit_tokens = plan.hit_blocks * bs;
  const int64_t total = (int64_t{plan.num_tokens} + std::max(request.reserve_tokens, 0) + bs - 1) / bs;
  plan.new_blocks = static_cast<int32_t>(std::min<int64_t>(total - plan.hit_blocks, INT32_MAX));
  plan.fits = plan.new_blocks <= pool.num_available() - cached_hits;
  return plan;
}

Result<SequenceId> KvCache::Admit(const AdmissionRequest& request, AdmissionPlan plan) {
  KVSTACK_RETURN_IF_ERROR(ValidateRequest(request));
  const int32_t bs = block_size();
  const int32_t n = static_cast<int32_t>(request.tokens.size());
  if (plan.num_tokens != n || plan.hashes.size() != static_cast<size_t>(n / bs) || plan.root != hasher_.Root(request.keys)) {
    return InvalidArgument(fmt::format("admission: the plan ({} tokens) was made for another request ({} tokens)",
                                       plan.num_tokens, n));
  }
  Impl& impl = *impl_;
  BlockPool& pool = *impl.pool;

  // Re-check the hits: blocks may have been evicted or committed since. A
  // planned block still holding its key is still the hit (keys are unique in
  // the index); past the first stale one, look the rest up again.
  const int32_t max_hit = request.skip_prefix_hits ? 0 : (n - 1) / bs;
  std::vector<int32_t> hits;
  hits.reserve(plan.hit_ids.size());
  int32_t cached_hits = 0;
  for (size_t i = 0; i < plan.hit_ids.size() && static_cast<int32_t>(i) < max_hit; ++i) {
    const int32_t id = Idx(plan.hit_ids[i]);
    if (id < 0 || id >= pool.num_blocks() || pool.meta(id).hash != plan.hashes[i]) break;
    if (pool.meta(id).state == BlockState::kCached) ++cached_hits;
    hits.push_back(id);
  }
  while (static_cast<int32_t>(hits.size()) < max_hit) {
    auto id = pool.Find(plan.hashes[hits.size()]);
    if (!id) break;
    if (pool.meta(*id).state == BlockState::kCached) ++cached_hits;
    hits.push_back(*id);
  }
  const int32_t hit_blocks = static_cast<int32_t>(hits.size());
  const int64_t total = (int64_t{n} + request.reserve_tokens + bs - 1) / bs;
  const int64_t new_blocks = total - hit_blocks;
  if (new_blocks > pool.num_available() - cached_hits) {
    ++impl.counters.admissions_refused;
    return ResourceExhausted(fmt::format("admission: needs {} new blocks, {} available", new_blocks,
                                         pool.num_available() - cached_hits));
  }

  // Apply: nothing below can fail.
  const Micros now = config_.clock->Now();
  Sequence s;
  s.tokens.reserve(std::max(request.tokens.size(), static_cast<size_t>(std::max(0, request.token_capacity))));
  s.tokens.assign(request.tokens.begin(), request.tokens.end());
  s.hashes = std::move(plan.hashes);
  s.root = plan.root;
  s.prompt_tokens = n;
  s.hit_tokens = s.computed_tokens = hit_blocks * bs;
  s.committed = hit_blocks;
  s.retention = request.retention;
  std::sort(s.retention.ranges.begin(), s.retention.ranges.end(),
            [](const RetentionRange& a, const RetentionRange& b) { return a.tokens.begin < b.tokens.begin; });
  s.tenant = request.keys.cache_salt;
  s.blocks.reserve(static_cast<size_t>(total));
  for (int32_t b = 0; b < hit_blocks; ++b) {
    const int32_t id = hits[b];
    const BlockMeta& m = pool.meta(id);
    impl.counters.reuse_gap_us.Observe(static_cast<double>(now - m.last_use));
    const Priority effective = m.expiry <= now ? config_.default_priority : m.priority;
    ++impl.counters.hit_blocks_by_block_class[static_cast<int>(ClassOfPriority(effective, config_.default_priority))];
    pool.AcquireHit(id);
    const auto r = impl.RetentionFor(s, b, now);
    pool.RaiseRetention(id, r.priority, r.expiry);
    s.blocks.push_back(static_cast<BlockId>(id));
  }
  // BlockId is an int32_t enum: the table's storage doubles as the id list.
  static_assert(sizeof(BlockId) == sizeof(int32_t));
  std::vector<int32_t> fresh;
  fresh.reserve(static_cast<size_t>(new_blocks));
  KVSTACK_CHECK(pool.AllocateMany(new_blocks, &fresh), "admission: %ld blocks unavailable after the check",
                long(new_blocks));
  for (int32_t id : fresh) s.blocks.push_back(static_cast<BlockId>(id));

  // Prefix accounting (vLLM's meaning: every prompt token is a query).
  ++impl.counters.admissions;
  PrefixCounters delta;
  delta.query_tokens = static_cast<uint64_t>(n);
  delta.hit_tokens = static_cast<uint64_t>(hit_blocks) * bs;
  delta.query_blocks = static_cast<uint64_t>(n / bs);
  delta.hit_blocks = static_cast<uint64_t>(hit_blocks);
  auto add = [](PrefixCounters& c, const PrefixCounters& d) {
    c.query_tokens += d.query_tokens;
    c.hit_tokens += d.hit_tokens;
    c.query_blocks += d.query_blocks;
    c.hit_blocks += d.hit_blocks;
  };
  add(impl.counters.prefix, delta);
  add(impl.Tenant(s.tenant), delta);
  if (s.retention.ranges.empty()) {
    const PriorityClass c = ClassOfPriority(config_.default_priority, config_.default_priority);
    add(impl.counters.by_priority_class[static_cast<int>(c)], delta);
  } else {
    const int32_t blocks_with_tokens = (n + bs - 1) / bs;
    for (int32_t b = 0; b < blocks_with_tokens; ++b) {
      PrefixCounters& c = impl.counters.by_priority_class[static_cast<int>(
          ClassOfPriority(impl.RetentionFor(s, b, now).priority, config_.default_priority))];
      const uint64_t tokens = static_cast<uint64_t>(std::min(bs, n - b * bs));
      c.query_tokens += tokens;
      if (tokens == static_cast<uint64_t>(bs)) ++c.query_blocks;
      if (b < hit_blocks) {
        c.hit_tokens += tokens;
        ++c.hit_blocks;
      }
    }
  }

  const SequenceId id{impl.next_sequence++};
  impl.sequences.emplace(id.value, std::move(s));
  return id;
}

PrefixMatch KvCache::Lookup(std::span<const Token> tokens, const ExtraKeys& keys) const {
  PrefixMatch m;
  const int32_t bs = block_size();
  m.full_blocks = static_cast<int32_t>(tokens.size() / bs);
  BlockHash prev = hasher_.Root(keys);
  for (int32_t b = 0; b < m.full_blocks; ++b) {
    prev = hasher_.Chain(prev, tokens.subspan(static_cast<size_t>(b) * bs, bs));
    if (!impl_->pool->Find(prev)) break;
    ++m.matched_blocks;
  }
  m.matched_tokens = m.matched_blocks * bs;
  return m;
}

Result<PrefixPin> KvCache::Pin(std::span<const Token> tokens, const ExtraKeys& keys) {
  const int32_t bs = block_size();
  if (tokens.size() < static_cast<size_t>(bs)) {
    return InvalidArgument(fmt::format("pin: {} tokens is less than one block ({} tokens); nothing to pin",
                                       tokens.size(), bs));
  }
  std::vector<BlockHash> hashes;
  hasher_.ChainBlocks(hasher_.Root(keys), tokens, bs, &hashes);
  BlockPool& pool = *impl_->pool;
  std::vector<int32_t> ids;
  ids.reserve(hashes.size());
  int32_t newly_pinned = 0;
  for (const BlockHash& h : hashes) {
    auto id = pool.Find(h);
    if (!id) {
      return NotFound(fmt::format("pin: only {} of {} full blocks are cached; compute the prompt first", ids.size(),
                                  hashes.size()));
    }
    if (pool.meta(*id).state != BlockState::kPinned) ++newly_pinned;
    ids.push_back(*id);
  }
  if (pool.num_pinned() + newly_pinned > pool.max_pinned_blocks()) {
    ++impl_->counters.pins_refused;
    return ResourceExhausted(fmt::format("pin: {} more blocks would exceed the pin cap ({} of {} pinned; cap is {:.0f}% of the pool)",
                                         newly_pinned, pool.num_pinned(), pool.max_pinned_blocks(),
                                         config_.max_pinned_fraction * 100));
  }
  for (int32_t id : ids) {
    Status s = pool.Pin(id);
    KVSTACK_CHECK(s.ok(), "pin: block %d refused after the cap check: %s", id, s.ToString().c_str());
  }
  const uint64_t pin_id = impl_->next_pin++;
  const int32_t n = static_cast<int32_t>(ids.size());
  impl_->pins.emplace(pin_id, std::move(ids));
  return PrefixPin(this, pin_id, n);
}

void KvCache::Unpin(uint64_t pin_id) {
  auto it = impl_->pins.find(pin_id);
  KVSTACK_CHECK(it != impl_->pins.end(), "pin %lu: unpinned twice", static_cast<unsigned long>(pin_id));
  for (int32_t id : it->second) impl_->pool->Unpin(id);
  impl_->pins.erase(it);
}

Status KvCache::ResetPrefixCache() {
  if (!impl_->sequences.empty() || !impl_->pins.empty()) {
    return FailedPrecondition(fmt::format("reset: {} sequences and {} pins are live; release them first",
                                          impl_->sequences.size(), impl_->pins.size()));
  }
  impl_->quiet_evictions = true;
  impl_->pool->EvictAllCached();
  impl_->quiet_evictions = false;
  events_.AllCleared(StorageTier::kDevice);
  return Status::Ok();
}

std::vector<BlockId> KvCache::EvictionOrder() {
  std::vector<BlockId> out;
  for (int32_t id : impl_->pool->EvictionOrder()) out.push_back(static_cast<BlockId>(id));
  return out;
}

CacheMetrics KvCache::Metrics() const {
  CacheMetrics m = impl_->counters;
  const BlockPool& pool = *impl_->pool;
  m.block_size = block_size();
  m.total_blocks = pool.num_blocks();
  m.free_blocks = pool.num_free();
  m.in_use_blocks = pool.num_in_use();
  m.cached_blocks = pool.num_cached();
  m.pinned_blocks = pool.num_pinned();
  m.max_pinned_blocks = pool.max_pinned_blocks();
  m.kv_bytes_per_block = arena_.has_storage() ? arena_.block_bytes() : 0;
  m.metadata_bytes_per_block = pool.metadata_bytes() / static_cast<size_t>(pool.num_blocks());
  m.live_sequences = static_cast<int32_t>(impl_->sequences.size());
  m.live_pins = static_cast<int32_t>(impl_->pins.size());
  return m;
}

BlockInfo KvCache::DescribeBlock(BlockId block) const {
  const int32_t id = Idx(block);
  KVSTACK_CHECK(id >= 0 && id < num_blocks(), "describe: block %d of %d", id, num_blocks());
  const BlockMeta& m = impl_->pool->meta(id);
  return BlockInfo{static_cast<BlockInfo::State>(m.state), m.hash, m.ref_count, m.hit_count, m.pin_count,
                   impl_->pool->EffectivePriority(id)};
}

Status KvCache::CheckInvariants() const {
  const BlockPool& pool = *impl_->pool;
  KVSTACK_RETURN_IF_ERROR(pool.CheckInvariants());
  const int32_t bs = block_size();
  std::vector<uint32_t> refs(static_cast<size_t>(pool.num_blocks()), 0);
  std::vector<uint32_t> pins(static_cast<size_t>(pool.num_blocks()), 0);
  auto fail = [](std::string msg) { return Internal("kv cache invariant: " + msg); };
  for (const auto& [sid, s] : impl_->sequences) {
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    const size_t min_blocks = static_cast<size_t>((n + bs - 1) / bs);
    if (s.blocks.size() < min_blocks) {
      return fail(fmt::format("sequence {}: {} tokens in {} blocks", sid, n, s.blocks.size()));
    }
    if (s.hashes.size() != static_cast<size_t>(n / bs)) {
      return fail(fmt::format("sequence {}: {} full blocks but {} keys", sid, n / bs, s.hashes.size()));
    }
    if (s.hit_tokens > s.computed_tokens || s.computed_tokens > n || s.committed != s.computed_tokens / bs) {
      return fail(fmt::format("sequence {}: committed {} hit {} computed {} tokens {}", sid, s.committed, s.hit_tokens,
                              s.computed_tokens, n));
    }
    BlockHash prev = s.root;
    for (size_t b = 0; b < s.hashes.size(); ++b) {
      const BlockHash expect = hasher_.Chain(prev, std::span<const Token>(s.tokens).subspan(b * bs, bs));
      if (expect != s.hashes[b]) return fail(fmt::format("sequence {}: block {} key does not match its tokens", sid, b));
      prev = expect;
    }
    for (size_t b = 0; b < s.blocks.size(); ++b) {
      const int32_t id = Idx(s.blocks[b]);
      if (id < 0 || id >= pool.num_blocks()) return fail(fmt::format("sequence {}: block table entry {}", sid, id));
      ++refs[id];
      const BlockMeta& m = pool.meta(id);
      if (m.state != BlockState::kInUse && m.state != BlockState::kPinned) {
        return fail(fmt::format("sequence {}: holds block {} in state {}", sid, id, static_cast<int>(m.state)));
      }
      const bool full = b < s.hashes.size();
      if (!m.hash.IsZero() && (!full || m.hash != s.hashes[b])) {
        return fail(fmt::format("sequence {}: block {} (slot {}) carries key {} not its own", sid, id, b, m.hash.ToHex()));
      }
      if (static_cast<int32_t>(b) < s.hit_tokens / bs && m.hash.IsZero()) {
        return fail(fmt::format("sequence {}: prefix-hit block {} has no key", sid, id));
      }
      if (!s.forked && b >= s.hashes.size() && m.ref_count != 1) {
        return fail(fmt::format("sequence {}: never forked, yet its tail block {} is held {} times", sid, id,
                                m.ref_count));
      }
    }
  }
  for (const auto& [pid, ids] : impl_->pins) {
    for (int32_t id : ids) ++pins[id];
  }
  for (int32_t id = 0; id < pool.num_blocks(); ++id) {
    const BlockMeta& m = pool.meta(id);
    if (m.ref_count != refs[id]) {
      return fail(fmt::format("block {}: ref_count {} but {} block-table references", id, m.ref_count, refs[id]));
    }
    if (m.pin_count != pins[id]) return fail(fmt::format("block {}: pin_count {} but {} pins", id, m.pin_count, pins[id]));
  }
  return Status::Ok();
}

}  // namespace kvstack
