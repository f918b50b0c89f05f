#include "cache/block_pool.h"

#include <algorithm>
#include <bit>
#include <string>

#include <fmt/format.h>

#include "cache/check.h"

namespace kvstack {

Result<std::unique_ptr<BlockPool>> BlockPool::Create(const BlockPoolOptions& o) {
  if (o.num_blocks < 1 || o.num_blocks > (1 << 30)) {
    return InvalidArgument(fmt::format("num_blocks {}: must be from 1 to 2^30", o.num_blocks));
  }
  if (o.policy == nullptr) return InvalidArgument("block pool: an eviction policy is required");
  if (o.clock == nullptr) return InvalidArgument("block pool: a clock is required");
  if (o.policy->num_queues() < 1 || o.policy->num_queues() > EvictionPolicy::kMaxQueues) {
    return InvalidArgument(fmt::format("eviction policy '{}': {} queues, must be 1 to {}", o.policy->name(),
                                       o.policy->num_queues(), EvictionPolicy::kMaxQueues));
  }
  if (o.default_priority > kMaxPriority) {
    return InvalidArgument(fmt::format("default priority {}: must be 0 to 100", o.default_priority));
  }
  if (o.max_pinned_blocks < 0 || o.max_pinned_blocks > o.num_blocks) {
    return InvalidArgument(fmt::format("max pinned blocks {}: must be 0 to num_blocks ({})", o.max_pinned_blocks,
                                       o.num_blocks));
  }
  return std::unique_ptr<BlockPool>(new BlockPool(o));
}

BlockPool::BlockPool(const BlockPoolOptions& o)
    : num_blocks_(o.num_blocks),
      policy_(o.policy),
      clock_(o.clock),
      default_priority_(o.default_priority),
      max_pinned_(o.max_pinned_blocks),
      observer_(o.observer),
      meta_(static_cast<size_t>(o.num_blocks)),
      links_(static_cast<size_t>(o.num_blocks) + o.policy->num_queues()),
      index_(o.num_blocks) {
  // Every queue is circular through its sentinel. The free stack is popped
  // from the back, so a fresh pool hands out blocks 0, 1, 2, ...
  for (int32_t s = num_blocks_; s < static_cast<int32_t>(links_.size()); ++s) {
    links_[s].prev = links_[s].next = s;
  }
  for (int32_t i = 0; i < num_blocks_; ++i) meta_[i].priority = default_priority_;
  free_ids_.resize(static_cast<size_t>(num_blocks_));
  for (int32_t i = 0; i < num_blocks_; ++i) free_ids_[static_cast<size_t>(i)] = num_blocks_ - 1 - i;
  expired_through_ = clock_->Now();
}

void BlockPool::LinkBefore(int32_t id, int32_t before) {
  const int32_t prev = links_[before].prev;
  links_[id].prev = prev;
  links_[id].next = before;
  links_[prev].next = id;
  links_[before].prev = id;
}

void BlockPool::Unlink(int32_t id) {
  Link& l = links_[id];
  links_[l.prev].next = l.next;
  links_[l.next].prev = l.prev;
  l.prev = l.next = -1;
}

void BlockPool::Enqueue(int32_t id) {
  const int q = QueueOf(meta_[id]);
  LinkBefore(id, QueueSentinel(q));
  nonempty_[q / 64] |= uint64_t{1} << (q % 64);
  ++num_cached_;
}

void BlockPool::EnqueueByLastUse(int32_t id) {
  const int q = QueueOf(meta_[id]);
  const int32_t sentinel = QueueSentinel(q);
  const Micros t = meta_[id].last_use;
  // Expired blocks were last used a while ago, so they belong near the head:
  // walk from there.
  int32_t at = links_[sentinel].next;
  while (at != sentinel && meta_[at].last_use <= t) at = links_[at].next;
  LinkBefore(id, at);
  nonempty_[q / 64] |= uint64_t{1} << (q % 64);
  ++num_cached_;
}

void BlockPool::Dequeue(int32_t id) {
  const int q = QueueOf(meta_[id]);
  Unlink(id);
  const int32_t sentinel = QueueSentinel(q);
  if (links_[sentinel].next == sentinel) nonempty_[q / 64] &= ~(uint64_t{1} << (q % 64));
  --num_cached_;
}

int32_t BlockPool::TakeSlot() {
  if (!free_ids_.empty()) {
    const int32_t id = free_ids_.back();
    free_ids_.pop_back();
    return id;
  }
  ExpireRetention();
  int q = -1;
  for (size_t w = 0; w < nonempty_.size(); ++w) {
    if (nonempty_[w] != 0) {
      q = static_cast<int>(w * 64) + std::countr_zero(nonempty_[w]);
      break;
    }
  }
  KVSTACK_CHECK(q >= 0, "block pool: %d cached blocks but every queue is empty", num_cached_);
  const int32_t id = links_[QueueSentinel(q)].next;
  Evict(id);
  return id;
}

std::optional<int32_t> BlockPool::Allocate() {
  if (num_available() == 0) return std::nullopt;
  const int32_t id = TakeSlot();
  BlockMeta& m = meta_[id];
  m.state = BlockState::kInUse;
  m.ref_count = 1;
  m.last_use = clock_->Now();
  return id;
}

bool BlockPool::AllocateMany(int64_t n, std::vector<int32_t>* out) {
  if (n > num_available()) return false;
  const Micros now = clock_->Now();
  out->reserve(out->size() + static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = TakeSlot();
    BlockMeta& m = meta_[id];
    m.state = BlockState::kInUse;
    m.ref_count = 1;
    m.last_use = now;
    out->push_back(id);
  }
  return true;
}

void BlockPool::Evict(int32_t id) {
  BlockMeta& m = meta_[id];
  // Evictions come in runs (an admission takes many slots at once), and
  // each touches two cold lines: the victim's metadata and its index slot.
  // The next victims are most likely the blocks behind this one in its
  // queue: ask for the metadata of the fourth behind, and for the index slot
  // of the second (whose metadata was asked for two evictions ago).
  int32_t ahead = id;
  for (int k = 1; k <= 4; ++k) {
    ahead = links_[ahead].next;
    if (ahead >= num_blocks_) break;  // the queue's sentinel
    if (k == 2) index_.Prefetch(meta_[ahead].hash);
    if (k == 4) __builtin_prefetch(&meta_[ahead]);
  }
  if (observer_ != nullptr) observer_->OnEvict(id, m);
  Dequeue(id);
  index_.Erase(m.hash, id);
  m.hash = BlockHash{};
  m.parent = -1;
  m.hit_count = 0;
  m.priority = default_priority_;
  m.expiry = kNoExpiry;
  m.state = BlockState::kFree;
}

void BlockPool::AcquireHit(int32_t id) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(!m.hash.IsZero(), "block %d: prefix hit on a block with no hash (state %d)", id,
                static_cast<int>(m.state));
  if (m.state == BlockState::kCached) {
    Dequeue(id);
    m.state = BlockState::kInUse;
  }
  ++m.ref_count;
  if (m.hit_count != UINT32_MAX) ++m.hit_count;
  m.last_use = clock_->Now();
}

void BlockPool::AddRef(int32_t id) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(m.ref_count > 0, "block %d: AddRef with ref_count 0 (state %d)", id, static_cast<int>(m.state));
  ++m.ref_count;
}

void BlockPool::Release(int32_t id) { ReleaseAt(id, clock_->Now()); }

void BlockPool::ReleaseMany(std::span<const int32_t> ids) {
  const Micros now = clock_->Now();
  // A finished sequence's blocks are scattered over the pool: load each
  // one's metadata a few releases ahead, so the misses overlap.
  constexpr size_t kAhead = 4;
  for (size_t i = 0; i < std::min(kAhead, ids.size()); ++i) __builtin_prefetch(&meta_[ids[i]]);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i + kAhead < ids.size()) __builtin_prefetch(&meta_[ids[i + kAhead]]);
    ReleaseAt(ids[i], now);
  }
}

void BlockPool::ReleaseAt(int32_t id, Micros now) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(m.ref_count > 0, "block %d: release with ref_count 0 (state %d)", id, static_cast<int>(m.state));
  if (--m.ref_count != 0 || m.state == BlockState::kPinned) return;
  m.last_use = now;
  if (m.hash.IsZero()) {
    m.state = BlockState::kFree;
    m.priority = default_priority_;
    m.expiry = kNoExpiry;
    free_ids_.push_back(id);
    return;
  }
  if (m.expiry <= now) {
    m.priority = default_priority_;
    m.expiry = kNoExpiry;
  }
  m.state = BlockState::kCached;
  Enqueue(id);
}

bool BlockPool::Commit(int32_t id, const BlockHash& hash, int32_t parent, Priority priority, Micros expiry) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(m.state == BlockState::kInUse && m.hash.IsZero() && !hash.IsZero(),
                "block %d: commit in state %d (hash %s)", id, static_cast<int>(m.state), m.hash.ToHex().c_str());
  if (index_.Find(hash, meta_span())) return false;
  m.hash = hash;
  m.parent = parent;
  m.stored_at = clock_->Now();
  m.hit_count = 0;
  const bool expired = expiry <= m.stored_at;
  m.priority = expired ? default_priority_ : priority;
  m.expiry = expired ? kNoExpiry : expiry;
  index_.Insert(hash, id);
  if (m.expiry != kNoExpiry) ScheduleExpiry(id, m.expiry);
  return true;
}

void BlockPool::ScheduleExpiry(int32_t id, Micros expiry) {
  expiry_heap_.push_back({expiry, id});
  std::push_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>());
  // Superseded entries stay until they come due; rebuild before they dominate.
  if (expiry_heap_.size() > 4 * static_cast<size_t>(num_blocks_) + 64) {
    std::erase_if(expiry_heap_, [&](const ExpiryEntry& e) { return meta_[e.id].expiry != e.expiry; });
    std::make_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>());
  }
}

void BlockPool::RaiseRetention(int32_t id, Priority priority, Micros expiry) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(m.state == BlockState::kInUse || m.state == BlockState::kPinned,
                "block %d: retention change in state %d", id, static_cast<int>(m.state));
  if (m.state == BlockState::kPinned) return;
  const Micros now = clock_->Now();
  if (m.expiry <= now) {  // an expired priority no longer counts
    m.priority = default_priority_;
    m.expiry = kNoExpiry;
  }
  if (expiry <= now) return;  // a retention that is already over
  if (priority > m.priority) {
    m.priority = priority;
    m.expiry = expiry;
  } else if (priority == m.priority && expiry > m.expiry) {
    m.expiry = expiry;
  } else {
    return;
  }
  if (m.expiry != kNoExpiry) ScheduleExpiry(id, m.expiry);
}

Status BlockPool::Pin(int32_t id) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(!m.hash.IsZero(), "block %d: pin of a block with no hash (state %d)", id, static_cast<int>(m.state));
  if (m.pin_count == UINT16_MAX) {
    return ResourceExhausted(fmt::format("block {}: {} pins already cover it", id, m.pin_count));
  }
  if (m.pin_count == 0) {
    if (num_pinned_ >= max_pinned_) {
      return ResourceExhausted(fmt::format("pin cap reached: {} of {} blocks pinned", num_pinned_, max_pinned_));
    }
    if (m.state == BlockState::kCached) Dequeue(id);
    m.state = BlockState::kPinned;
    m.priority = kMaxPriority;
    m.expiry = kNoExpiry;
    ++num_pinned_;
  }
  ++m.pin_count;
  return Status::Ok();
}

void BlockPool::Unpin(int32_t id) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(m.pin_count > 0 && m.state == BlockState::kPinned, "block %d: unpin with pin_count %d", id,
                m.pin_count);
  if (--m.pin_count != 0) return;
  --num_pinned_;
  m.priority = default_priority_;
  m.expiry = kNoExpiry;
  if (m.ref_count > 0) {
    m.state = BlockState::kInUse;
  } else {
    m.state = BlockState::kCached;
    m.last_use = clock_->Now();
    Enqueue(id);
  }
}

void BlockPool::ExpireRetention() {
  const Micros now = clock_->Now();
  while (!expiry_heap_.empty() && expiry_heap_.front().expiry <= now) {
    std::pop_heap(expiry_heap_.begin(), expiry_heap_.end(), std::greater<>());
    const ExpiryEntry e = expiry_heap_.back();
    expiry_heap_.pop_back();
    BlockMeta& m = meta_[e.id];
    if (m.expiry != e.expiry) continue;  // superseded or already reset
    if (m.state == BlockState::kCached) {
      Dequeue(e.id);
      m.priority = default_priority_;
      m.expiry = kNoExpiry;
      EnqueueByLastUse(e.id);
    } else {
      m.priority = default_priority_;
      m.expiry = kNoExpiry;
    }
  }
  expired_through_ = now;
}

std::vector<int32_t> BlockPool::EvictionOrder() {
  ExpireRetention();
  std::vector<int32_t> order;
  order.reserve(num_cached_);
  for (int q = 0; q < policy_->num_queues(); ++q) {
    const int32_t s = QueueSentinel(q);
    for (int32_t at = links_[s].next; at != s; at = links_[at].next) order.push_back(at);
  }
  return order;
}

int32_t BlockPool::EvictAllCached() {
  int32_t n = 0;
  for (int q = 0; q < policy_->num_queues(); ++q) {
    const int32_t s = QueueSentinel(q);
    while (links_[s].next != s) {
      const int32_t id = links_[s].next;
      Evict(id);
      free_ids_.push_back(id);
      ++n;
    }
  }
  return n;
}

void BlockPool::Uncommit(int32_t id) {
  BlockMeta& m = meta_[id];
  KVSTACK_CHECK(!m.hash.IsZero() && (m.state == BlockState::kCached || m.state == BlockState::kInUse),
                "block %d: uncommit in state %d (hash %s)", id, static_cast<int>(m.state), m.hash.ToHex().c_str());
  if (m.state == BlockState::kCached) Dequeue(id);
  index_.Erase(m.hash, id);
  m.hash = BlockHash{};
  m.parent = -1;
  m.hit_count = 0;
  m.priority = default_priority_;
  m.expiry = kNoExpiry;
  if (m.state == BlockState::kCached) {
    m.state = BlockState::kFree;
    free_ids_.push_back(id);
  }
}

Priority BlockPool::EffectivePriority(int32_t id) const {
  const BlockMeta& m = meta_[id];
  return m.expiry <= clock_->Now() ? default_priority_ : m.priority;
}

Status BlockPool::CheckInvariants() const {
  auto fail = [](std::string msg) { return Internal("block pool invariant: " + msg); };
  int32_t counts[4] = {0, 0, 0, 0};
  int32_t hashed = 0;
  for (int32_t i = 0; i < num_blocks_; ++i) {
    const BlockMeta& m = meta_[i];
    ++counts[static_cast<int>(m.state)];
    if (!m.hash.IsZero()) ++hashed;
    const bool linked = links_[i].prev >= 0 && links_[i].next >= 0;
    switch (m.state) {
      case BlockState::kFree:
        if (!m.hash.IsZero() || m.ref_count != 0 || m.pin_count != 0 || linked) {
          return fail(fmt::format("block {}: Free with hash {} ref_count {} pin_count {} linked {}", i,
                                  m.hash.ToHex(), m.ref_count, m.pin_count, linked));
        }
        break;
      case BlockState::kInUse:
        if (m.ref_count == 0 || m.pin_count != 0 || linked) {
          return fail(fmt::format("block {}: InUse with ref_count {} pin_count {} linked {}", i, m.ref_count,
                                  m.pin_count, linked));
        }
        break;
      case BlockState::kCached:
        if (m.hash.IsZero() || m.ref_count != 0 || m.pin_count != 0 || !linked) {
          return fail(fmt::format("block {}: Cached with hash {} ref_count {} pin_count {} linked {}", i,
                                  m.hash.ToHex(), m.ref_count, m.pin_count, linked));
        }
        if (m.expiry <= expired_through_) {
          return fail(fmt::format("block {}: Cached with expiry {} not applied at {}", i, m.expiry,
                                  expired_through_));
        }
        break;
      case BlockState::kPinned:
        if (m.hash.IsZero() || m.pin_count == 0 || m.priority != kMaxPriority || m.expiry != kNoExpiry || linked) {
          return fail(fmt::format("block {}: Pinned with hash {} pin_count {} priority {} linked {}", i,
                                  m.hash.ToHex(), m.pin_count, m.priority, linked));
        }
        break;
    }
    if (!m.hash.IsZero()) {
      auto found = index_.Find(m.hash, meta_span());
      if (!found || *found != i) {
        return fail(fmt::format("block {}: hash {} indexed as {}", i, m.hash.ToHex(), found ? *found : -1));
      }
    }
  }
  if (counts[0] != num_free() || counts[2] != num_cached_ || counts[3] != num_pinned_) {
    return fail(fmt::format("state counts free {} cached {} pinned {} but counters {} {} {}", counts[0], counts[2],
                            counts[3], num_free(), num_cached_, num_pinned_));
  }
  if (num_pinned_ > max_pinned_) return fail(fmt::format("{} pinned blocks over the cap {}", num_pinned_, max_pinned_));
  if (hashed != index_.size()) return fail(fmt::format("{} hashed blocks but {} index entries", hashed, index_.size()));

  auto walk = [&](int32_t sentinel, auto&& check_node) -> Result<int32_t> {
    int32_t n = 0;
    int32_t prev = sentinel;
    for (int32_t at = links_[sentinel].next; at != sentinel; at = links_[at].next) {
      if (at < 0 || at >= num_blocks_) return fail(fmt::format("list {}: link to {}", sentinel, at));
      if (links_[at].prev != prev) return fail(fmt::format("block {}: prev {} but reached from {}", at, links_[at].prev, prev));
      Status s = check_node(at, prev);
      if (!s.ok()) return s;
      prev = at;
      if (++n > num_blocks_) return fail(fmt::format("list {}: cycle", sentinel));
    }
    if (links_[sentinel].prev != prev) return fail(fmt::format("list {}: tail link {} but last node {}", sentinel, links_[sentinel].prev, prev));
    return n;
  };
  std::vector<bool> on_stack(static_cast<size_t>(num_blocks_), false);
  for (int32_t id : free_ids_) {
    if (id < 0 || id >= num_blocks_ || on_stack[id] || meta_[id].state != BlockState::kFree) {
      return fail(fmt::format("free stack: entry {} is out of range, repeated or not Free", id));
    }
    on_stack[id] = true;
  }

  int32_t queued = 0;
  for (int q = 0; q < policy_->num_queues(); ++q) {
    const int32_t s = QueueSentinel(q);
    auto on_cached = [&](int32_t at, int32_t prev) -> Status {
      const BlockMeta& m = meta_[at];
      if (m.state != BlockState::kCached) return fail(fmt::format("block {}: in queue {} but not Cached", at, q));
      if (QueueOf(m) != q) return fail(fmt::format("block {}: in queue {} but ranks {}", at, q, QueueOf(m)));
      if (prev != s && meta_[prev].last_use > m.last_use) {
        return fail(fmt::format("queue {}: block {} (last use {}) after block {} (last use {})", q, at, m.last_use,
                                prev, meta_[prev].last_use));
      }
      return Status::Ok();
    };
    Result<int32_t> len = walk(s, on_cached);
    if (!len.ok()) return len.status();
    const bool bit = (nonempty_[q / 64] >> (q % 64)) & 1;
    if (bit != (*len > 0)) return fail(fmt::format("queue {}: non-empty bit {} with {} blocks", q, bit, *len));
    queued += *len;
  }
  if (queued != num_cached_) return fail(fmt::format("queues hold {} but {} cached", queued, num_cached_));
  int32_t indexed_bad = -1;
  index_.ForEach([&](int32_t id) {
    if (id >= num_blocks_ || meta_[id].hash.IsZero()) indexed_bad = id;
  });
  if (indexed_bad >= 0) return fail(fmt::format("index entry for block {} which has no hash", indexed_bad));
  return Status::Ok();
}

}  // namespace kvstack
