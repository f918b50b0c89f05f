// Randomized model check of the cache core.
//
// Hundreds of thousands of random operations (admit, append, mark computed,
// fork, release, pin, unpin, time passing so retention expires) under heavy
// memory pressure. After every step the cache's CheckInvariants() must pass
// and the cache must agree with a simple reference model written here from
// the documented semantics alone:
//   - which prompt blocks hit (longest cached prefix, last token excluded),
//   - whether an admission or append fits, and which blocks it evicts (the
//     BlockRemoved events, in order),
//   - the full eviction order: queue of the policy (priority, hit count), then
//     least recently used, ties in the order blocks became evictable,
//   - retention: priorities per token range, max rule on hits, expiry back to
//     the default, pins at 100 and capped,
//   - block counts by state, and block tables holding only blocks their
//     sequence owns or shares.
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#include <gtest/gtest.h>

#include "kvstack/kv_cache.h"

namespace kvstack {
namespace {

constexpr int32_t kBlocks = 24;
constexpr Priority kDef = kDefaultPriority;

struct Entry {  // a committed block, as the model sees it
  int32_t id = -1;
  Priority prio = kDef;
  Micros expiry = INT64_MAX;
  Micros last_use = 0;
  uint64_t order = 0;
  uint32_t hits = 0;
  int pins = 0;
};

struct ModelSeq {
  std::vector<Token> tokens;
  std::vector<BlockHash> keys;  // full blocks
  std::vector<int32_t> table;
  ExtraKeys extra;
  RetentionSpec retention;
  int32_t prompt = 0;
  int32_t computed = 0;
};

struct Params {
  const char* policy;
  int32_t block_size;
  int steps;
  KvDType kv = KvDType::kF32;  // the core never reads KV bytes, but sizes blocks by it
};

class KvCacheRandomTest : public ::testing::TestWithParam<Params> {
 protected:
  void SetUp() override {
    bs_ = GetParam().block_size;
    auto p = MakeEvictionPolicy(GetParam().policy);
    ASSERT_TRUE(p.ok());
    policy_ = std::move(p).value();
    KvCacheConfig c;
    c.num_blocks = kBlocks;
    c.shape = KvShape{.num_layers = 1, .num_kv_heads = 1, .head_dim = 2, .block_size = bs_, .dtype = GetParam().kv};
    c.eviction_policy = GetParam().policy;
    c.event_buffer_limit = 1 << 20;
    c.clock = &clock_;
    auto r = KvCache::Create(c);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    cache_ = std::move(r).value();
    hasher_ = cache_->hasher();
    for (int d = 0; d < 6; ++d) {
      std::vector<Token> doc(static_cast<size_t>(rng_() % (4 * bs_ + 3)));
      for (Token& t : doc) t = static_cast<Token>(rng_() % 50);
      docs_.push_back(doc);
    }
  }

  // --- the reference model ---------------------------------------------------

  int RefsOf(int32_t id) const {
    int n = 0;
    for (auto& [sid, s] : seqs_)
      for (int32_t b : s.table) n += b == id;
    return n;
  }
  bool Evictable(const Entry& e) const { return e.pins == 0 && RefsOf(e.id) == 0; }
  int Queue(const Entry& e) const { return policy_->QueueFor({e.prio, e.hits}); }

  std::vector<BlockHash> ModelOrder() const {
    std::vector<std::pair<BlockHash, const Entry*>> c;
    for (auto& [h, e] : entries_)
      if (Evictable(e)) c.push_back({h, &e});
    std::sort(c.begin(), c.end(), [&](auto& a, auto& b) {
      return std::tuple(Queue(*a.second), a.second->last_use, a.second->order) <
             std::tuple(Queue(*b.second), b.second->last_use, b.second->order);
    });
    std::vector<BlockHash> out;
    for (auto& [h, e] : c) out.push_back(h);
    return out;
  }

  std::set<int32_t> Occupied() const {
    std::set<int32_t> ids;
    for (auto& [h, e] : entries_) ids.insert(e.id);
    for (auto& [sid, s] : seqs_) ids.insert(s.table.begin(), s.table.end());
    return ids;
  }
  int Free() const { return kBlocks - static_cast<int>(Occupied().size()); }
  int CachedCount() const {
    int n = 0;
    for (auto& [h, e] : entries_) n += Evictable(e);
    return n;
  }

  // Per-token retention, written independently of the cache's range sweep.
  std::pair<Priority, Micros> Retention(const ModelSeq& s, int32_t b) const {
    int best = -1;
    Micros best_e = INT64_MAX;
    auto consider = [&](int p, std::optional<Micros> d) {
      const Micros e = d ? now_ + *d : INT64_MAX;
      if (p > best) {
        best = p;
        best_e = e;
      } else if (p == best) {
        best_e = std::max(best_e, e);
      }
    };
    const int32_t hi = std::min<int32_t>((b + 1) * bs_, static_cast<int32_t>(s.tokens.size()));
    for (int32_t t = b * bs_; t < hi; ++t) {
      if (t < s.prompt) {
        bool any = false;
        for (auto& r : s.retention.ranges) {
          if (r.tokens.begin <= t && t < r.tokens.end) {
            any = true;
            consider(r.priority, r.duration);
          }
        }
        if (!any) consider(kDef, std::nullopt);
      } else {
        consider(s.retention.decode_priority.value_or(kDef), s.retention.decode_duration);
      }
    }
    return {static_cast<Priority>(best), best_e};
  }

  void ModelExpire() {
    std::vector<std::pair<std::pair<Micros, int32_t>, BlockHash>> due;
    for (auto& [h, e] : entries_)
      if (e.expiry <= now_) due.push_back({{e.expiry, e.id}, h});
    std::sort(due.begin(), due.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (auto& [k, h] : due) {
      Entry& e = entries_[h];
      e.prio = kDef;
      e.expiry = INT64_MAX;
      if (Evictable(e)) e.order = next_order_++;
    }
  }

  void Raise(Entry& e, Priority p, Micros expiry) {
    if (e.pins > 0 || expiry <= now_) return;
    if (p > e.prio) {
      e.prio = p;
      e.expiry = expiry;
    } else if (p == e.prio && expiry > e.expiry) {
      e.expiry = expiry;
    }
  }

  // Evicts what taking `needed` blocks (after `free` free ones) must evict.
  std::vector<BlockHash> ModelEvict(int needed, int free) {
    std::vector<BlockHash> victims;
    if (needed <= free) return victims;
    std::vector<BlockHash> order = ModelOrder();
    for (int i = 0; i < needed - free; ++i) {
      victims.push_back(order.at(static_cast<size_t>(i)));
      entries_.erase(order[static_cast<size_t>(i)]);
    }
    return victims;
  }

  std::vector<BlockHash> DrainRemoved() {
    std::vector<BlockHash> out;
    for (const KvEvent& e : cache_->DrainEvents().events)
      if (e.kind == KvEventKind::kBlockRemoved) out.push_back(e.hash);
    return out;
  }

  std::vector<int32_t> RealTable(SequenceId id) const {
    std::vector<int32_t> t;
    for (BlockId b : cache_->BlockTable(id)) t.push_back(ToIndex(b));
    return t;
  }

  // Fresh blocks must be slots nobody else holds.
  void ExpectFresh(const std::vector<int32_t>& ids, const std::set<int32_t>& occupied_after_evict) {
    for (int32_t id : ids) ASSERT_EQ(occupied_after_evict.count(id), 0u) << "block " << id << " handed out twice";
  }

  // --- operations --------------------------------------------------------------

  RetentionSpec RandomRetention(int32_t n) {
    RetentionSpec r;
    if (rng_() % 2) return r;
    const int k = static_cast<int>(rng_() % 3);
    for (int i = 0; i < k; ++i) {
      int32_t a = static_cast<int32_t>(rng_() % n);
      int32_t b = a + 1 + static_cast<int32_t>(rng_() % (n - a));
      std::optional<Micros> d;
      if (rng_() % 2) d = static_cast<Micros>(rng_() % 3000);
      r.ranges.push_back({{a, b}, static_cast<Priority>(rng_() % 101), d});
    }
    if (rng_() % 3 == 0) r.decode_priority = static_cast<Priority>(rng_() % 101);
    if (rng_() % 3 == 0) r.decode_duration = static_cast<Micros>(rng_() % 3000);
    return r;
  }

  void OpAdmit() {
    if (seqs_.size() >= 8) return;
    ModelSeq s;
    s.tokens = docs_[rng_() % docs_.size()];
    const int extra = 1 + static_cast<int>(rng_() % (2 * bs_ + 2));
    for (int i = 0; i < extra; ++i) s.tokens.push_back(static_cast<Token>(rng_() % 50));
    s.extra = {.model_id = "m", .cache_salt = std::string(1, static_cast<char>('a' + rng_() % 2))};
    s.prompt = static_cast<int32_t>(s.tokens.size());
    s.retention = RandomRetention(s.prompt);
    const int32_t reserve = static_cast<int32_t>(rng_() % 3);
    hasher_.ChainBlocks(hasher_.Root(s.extra), s.tokens, bs_, &s.keys);

    int32_t hits = 0;
    int cached_hits = 0;
    while (hits < (s.prompt - 1) / bs_ && entries_.count(s.keys[hits])) {
      cached_hits += Evictable(entries_[s.keys[hits]]);
      ++hits;
    }
    const int needed = (s.prompt + reserve + bs_ - 1) / bs_ - hits;
    const int free = Free();
    const bool fits = needed <= free + CachedCount() - cached_hits;

    AdmissionRequest req{.tokens = s.tokens, .keys = s.extra, .retention = s.retention, .reserve_tokens = reserve};
    AdmissionPlan plan = cache_->PlanAdmission(req);
    ASSERT_EQ(plan.hit_blocks, hits);
    ASSERT_EQ(plan.fits, fits);
    auto id = cache_->Admit(req, std::move(plan));
    if (!fits) {
      ASSERT_EQ(id.status().code(), StatusCode::kResourceExhausted);
      ASSERT_TRUE(DrainRemoved().empty());
      return;
    }
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    std::vector<int32_t> table = RealTable(*id);
    ASSERT_EQ(table.size(), static_cast<size_t>(hits + needed));
    for (int32_t b = 0; b < hits; ++b) {
      Entry& e = entries_[s.keys[b]];
      ASSERT_EQ(table[b], e.id);
      ++e.hits;
      e.last_use = now_;
    }
    // Hit blocks are taken (and leave the queues) before any eviction.
    std::vector<int32_t> held_hits(table.begin(), table.begin() + hits);
    s.table = held_hits;
    seqs_[id->value] = s;  // so RefsOf() sees the hits while evicting
    const std::vector<BlockHash> expect = ModelEvict(needed, free);
    ASSERT_EQ(DrainRemoved(), expect);
    ExpectFresh({table.begin() + hits, table.end()}, Occupied());
    seqs_[id->value].table = table;
    for (int32_t b = 0; b < hits; ++b) {
      auto [p, e] = Retention(seqs_[id->value], b);
      Raise(entries_[s.keys[b]], p, e);
    }
    seqs_[id->value].computed = hits * bs_;
  }

  uint64_t PickSeq() {
    auto it = seqs_.begin();
    std::advance(it, static_cast<long>(rng_() % seqs_.size()));
    return it->first;
  }

  void OpAppend() {
    if (seqs_.empty()) return;
    const uint64_t sid = PickSeq();
    ModelSeq& s = seqs_[sid];
    const int k = 1 + static_cast<int>(rng_() % 6);
    std::vector<Token> add(k);
    for (Token& t : add) t = static_cast<Token>(rng_() % 50);
    const int32_t old_n = static_cast<int32_t>(s.tokens.size());
    const int needed = std::max<int>(0, (old_n + k + bs_ - 1) / bs_ - static_cast<int>(s.table.size()));
    const size_t next = static_cast<size_t>(old_n / bs_);
    const bool cow = next < s.table.size() && RefsOf(s.table[next]) > 1;
    const int free = Free();
    const bool fits = needed + cow <= free + CachedCount();
    Status st = cache_->Append(SequenceId{sid}, add);
    if (!fits) {
      ASSERT_EQ(st.code(), StatusCode::kResourceExhausted);
      ASSERT_TRUE(DrainRemoved().empty());
      return;
    }
    ASSERT_TRUE(st.ok()) << st.ToString();
    const std::vector<BlockHash> expect = ModelEvict(needed + cow, free);
    ASSERT_EQ(DrainRemoved(), expect);
    std::vector<int32_t> table = RealTable(SequenceId{sid});
    ASSERT_EQ(table.size(), s.table.size() + needed);
    for (size_t b = 0; b < s.table.size(); ++b) {
      if (cow && b == next) {
        ASSERT_NE(table[b], s.table[b]);
      } else {
        ASSERT_EQ(table[b], s.table[b]);
      }
    }
    std::vector<int32_t> fresh(table.begin() + static_cast<long>(s.table.size()), table.end());
    if (cow) fresh.push_back(table[next]);
    ExpectFresh(fresh, Occupied());
    s.table = table;
    s.tokens.insert(s.tokens.end(), add.begin(), add.end());
    s.keys.clear();
    hasher_.ChainBlocks(hasher_.Root(s.extra), s.tokens, bs_, &s.keys);
  }

  void OpMarkComputed() {
    if (seqs_.empty()) return;
    const uint64_t sid = PickSeq();
    ModelSeq& s = seqs_[sid];
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    const int32_t to = s.computed + static_cast<int32_t>(rng_() % (n - s.computed + 1));
    ASSERT_TRUE(cache_->MarkComputed(SequenceId{sid}, to).ok());
    std::vector<KvEvent> stored;
    KvEventBatch batch = cache_->DrainEvents();
    for (const KvEvent& e : batch.events) {
      ASSERT_EQ(e.kind, KvEventKind::kBlockStored);
      stored.push_back(e);
    }
    size_t next_event = 0;
    for (int32_t b = s.computed / bs_; b < to / bs_; ++b) {
      auto [p, e] = Retention(s, b);
      auto it = entries_.find(s.keys[b]);
      if (it != entries_.end()) {
        if (it->second.id == s.table[b]) Raise(it->second, p, e);  // a fork sibling stored it
        continue;                                                  // else a duplicate: stays private
      }
      Entry en;
      en.id = s.table[b];
      en.prio = e <= now_ ? kDef : p;
      en.expiry = e <= now_ ? INT64_MAX : e;
      entries_[s.keys[b]] = en;
      ASSERT_LT(next_event, stored.size());
      ASSERT_EQ(stored[next_event].hash, s.keys[b]);
      ASSERT_EQ(stored[next_event].parent, b > 0 ? s.keys[b - 1] : BlockHash{});
      ++next_event;
    }
    ASSERT_EQ(next_event, stored.size());
    s.computed = to;
  }

  void OpFork() {
    if (seqs_.empty() || seqs_.size() >= 8) return;
    const uint64_t sid = PickSeq();
    auto child = cache_->Fork(SequenceId{sid});
    ASSERT_TRUE(child.ok());
    ModelSeq c = seqs_[sid];
    c.table.resize((c.tokens.size() + bs_ - 1) / bs_);
    ASSERT_EQ(RealTable(*child), c.table);
    seqs_[child->value] = c;
  }

  void OpRelease() {
    if (seqs_.empty()) return;
    const uint64_t sid = PickSeq();
    ASSERT_TRUE(cache_->Release(SequenceId{sid}).ok());
    std::vector<int32_t> table = seqs_[sid].table;
    seqs_.erase(sid);
    // Tail first: blocks become evictable in reverse table order.
    for (auto b = table.rbegin(); b != table.rend(); ++b) {
      for (auto& [h, e] : entries_) {
        if (e.id == *b && Evictable(e) && std::count(table.begin(), table.end(), *b) == 1) {
          e.last_use = now_;
          e.order = next_order_++;
        }
      }
    }
  }

  void OpPin() {
    if (pins_.size() >= 4) return;
    ExtraKeys extra{.model_id = "m", .cache_salt = std::string(1, static_cast<char>('a' + rng_() % 2))};
    const std::vector<Token>& doc = docs_[rng_() % docs_.size()];
    std::vector<BlockHash> keys;
    hasher_.ChainBlocks(hasher_.Root(extra), doc, bs_, &keys);
    auto pin = cache_->Pin(doc, extra);
    if (keys.empty()) {
      ASSERT_EQ(pin.status().code(), StatusCode::kInvalidArgument);
      return;
    }
    int fresh = 0;
    for (const BlockHash& k : keys) {
      if (!entries_.count(k)) {
        ASSERT_EQ(pin.status().code(), StatusCode::kNotFound);
        return;
      }
      fresh += entries_[k].pins == 0;
    }
    int pinned = 0;
    for (auto& [h, e] : entries_) pinned += e.pins > 0;
    if (pinned + fresh > kBlocks / 2) {
      ASSERT_EQ(pin.status().code(), StatusCode::kResourceExhausted);
      return;
    }
    ASSERT_TRUE(pin.ok()) << pin.status().ToString();
    for (const BlockHash& k : keys) {
      Entry& e = entries_[k];
      ++e.pins;
      e.prio = kMaxPriority;
      e.expiry = INT64_MAX;
    }
    pins_.push_back({std::move(pin).value(), keys});
  }

  void OpUnpin() {
    if (pins_.empty()) return;
    const size_t i = rng_() % pins_.size();
    pins_[i].first.Release();
    for (const BlockHash& k : pins_[i].second) {
      Entry& e = entries_[k];
      if (--e.pins == 0) {
        e.prio = kDef;
        e.expiry = INT64_MAX;
        if (Evictable(e)) {
          e.last_use = now_;
          e.order = next_order_++;
        }
      }
    }
    pins_.erase(pins_.begin() + static_cast<long>(i));
  }

  void CompareState() {
    std::vector<BlockHash> real;
    for (BlockId b : cache_->EvictionOrder()) real.push_back(cache_->DescribeBlock(b).hash);
    ASSERT_EQ(real, ModelOrder()) << "eviction order differs";
    const CacheMetrics m = cache_->Metrics();
    int pinned = 0;
    for (auto& [h, e] : entries_) pinned += e.pins > 0;
    ASSERT_EQ(m.cached_blocks, CachedCount());
    ASSERT_EQ(m.pinned_blocks, pinned);
    ASSERT_EQ(m.free_blocks, Free());
    ASSERT_EQ(m.live_sequences, static_cast<int32_t>(seqs_.size()));
    for (auto& [h, e] : entries_) {
      const BlockInfo info = cache_->DescribeBlock(BlockId{e.id});
      ASSERT_EQ(info.hash, h);
      ASSERT_EQ(info.priority, e.prio) << "block " << e.id;
      ASSERT_EQ(info.pin_count, e.pins);
      ASSERT_EQ(info.ref_count, static_cast<uint32_t>(RefsOf(e.id)));
    }
  }

  int32_t bs_ = 4;
  std::mt19937_64 rng_{20261127};
  ManualClock clock_{1'000'000};
  Micros now_ = 0;
  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<KvCache> cache_;
  BlockHasher hasher_;
  std::vector<std::vector<Token>> docs_;
  std::unordered_map<BlockHash, Entry> entries_;
  std::map<uint64_t, ModelSeq> seqs_;
  std::vector<std::pair<PrefixPin, std::vector<BlockHash>>> pins_;
  uint64_t next_order_ = 1;
};

TEST_P(KvCacheRandomTest, AgreesWithReferenceModel) {
  std::map<std::string, int> counts;
  for (int step = 0; step < GetParam().steps; ++step) {
    clock_.Advance(1 + static_cast<Micros>(rng_() % 40));
    if (rng_() % 50 == 0) clock_.Advance(2000);
    now_ = clock_.Now();
    ModelExpire();
    const int op = static_cast<int>(rng_() % 100);
    const char* name;
    if (op < 28) {
      name = "admit";
      OpAdmit();
    } else if (op < 48) {
      name = "mark_computed";
      OpMarkComputed();
    } else if (op < 62) {
      name = "append";
      OpAppend();
    } else if (op < 68) {
      name = "fork";
      OpFork();
    } else if (op < 90) {
      name = "release";
      OpRelease();
    } else if (op < 95) {
      name = "pin";
      OpPin();
    } else {
      name = "unpin";
      OpUnpin();
    }
    if (HasFatalFailure()) FAIL() << "step " << step << " (" << name << ")";
    ++counts[name];
    CompareState();
    if (HasFatalFailure()) FAIL() << "after step " << step << " (" << name << ")";
    Status inv = cache_->CheckInvariants();
    ASSERT_TRUE(inv.ok()) << "step " << step << " (" << name << "): " << inv.ToString();
  }
  const CacheMetrics m = cache_->Metrics();
  // The run must have exercised what it claims to.
  EXPECT_GT(m.evictions, static_cast<uint64_t>(GetParam().steps / 100));
  EXPECT_GT(m.prefix.hit_blocks, 0u);
  if (bs_ > 1) {
    EXPECT_GT(m.copy_on_write, 0u);  // no partial blocks when B = 1
  }
  EXPECT_GT(m.admissions_refused, 0u);
  pins_.clear();
  for (auto& [sid, s] : seqs_) ASSERT_TRUE(cache_->Release(SequenceId{sid}).ok());
  ASSERT_TRUE(cache_->CheckInvariants().ok());
  RecordProperty("evictions", static_cast<int>(m.evictions));
}

INSTANTIATE_TEST_SUITE_P(Policies, KvCacheRandomTest,
                         ::testing::Values(Params{"priority-lru", 4, 200'000}, Params{"lru", 1, 30'000},
                                           Params{"lfu", 16, 30'000}, Params{"priority-lru", 2, 30'000},
                                           Params{"priority-lru", 8, 30'000, KvDType::kInt8}),
                         [](const auto& info) {
                           std::string n = info.param.policy;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n + "_B" + std::to_string(info.param.block_size) +
                                  (info.param.kv == KvDType::kF32 ? "" : "_" + std::string(KvDTypeName(info.param.kv)));
                         });

}  // namespace
}  // namespace kvstack
