#include "tiers/tier_index.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace kvstack::tiers_internal {
namespace {
// Hits replayed into a new slot's hit count. The LFU policy buckets by powers
// of two, so a cap only merges the top buckets, and keeps Insert() O(1).
constexpr uint32_t kMaxReplayedHits = 64;
}  // namespace

Result<std::unique_ptr<TierIndex>> TierIndex::Create(int64_t capacity, const EvictionPolicy* policy,
                                                      const Clock* clock,
                                                      std::function<void(int32_t, const BlockHash&)> on_evict) {
  if (capacity < 1 || capacity > (int64_t{1} << 30)) {
    return InvalidArgument(fmt::format("tier capacity {} blocks: must be from 1 to 2^30", capacity));
  }
  std::unique_ptr<TierIndex> index(new TierIndex());
  if (policy == nullptr) {
    index->owned_policy_ = MakePriorityLruPolicy();
    policy = index->owned_policy_.get();
  }
  BlockPoolOptions o;
  o.num_blocks = static_cast<int32_t>(capacity);
  o.policy = policy;
  o.clock = clock != nullptr ? clock : &SteadyClock::Default();
  o.max_pinned_blocks = 0;
  o.observer = index.get();
  auto pool = BlockPool::Create(o);
  if (!pool.ok()) return pool.status();
  index->pool_ = std::move(pool).value();
  index->on_evict_ = std::move(on_evict);
  return index;
}

void TierIndex::OnEvict(int32_t id, const BlockMeta& meta) {
  if (on_evict_) on_evict_(id, meta.hash);
  if (on_forget_ && !meta.hash.IsZero()) on_forget_(meta.hash);
}

std::optional<int32_t> TierIndex::Insert(const TierBlockInfo& block) {
  std::optional<int32_t> slot = pool_->Allocate();
  if (!slot) return std::nullopt;
  const bool committed = pool_->Commit(*slot, block.hash, -1, std::min(block.priority, kMaxPriority), kNoExpiry);
  // REQUIRES of the caller: the hash is not indexed, so Commit cannot refuse.
  if (!committed) {
    pool_->Release(*slot);
    return std::nullopt;
  }
  const uint32_t replay = std::min(block.hits, kMaxReplayedHits);
  for (uint32_t i = 0; i < replay; ++i) pool_->AcquireHit(*slot);
  for (uint32_t i = 0; i < replay; ++i) pool_->Release(*slot);
  return slot;
}

void TierIndex::Release(int32_t slot) {
  const BlockMeta& m = pool_->meta(slot);
  const bool private_last = m.hash.IsZero() && m.ref_count == 1;
  pool_->Release(slot);
  if (private_last) --private_busy_;
}

void TierIndex::Remove(int32_t slot) {
  const bool busy = pool_->meta(slot).state == BlockState::kInUse;
  const BlockHash hash = pool_->meta(slot).hash;
  pool_->Uncommit(slot);
  if (on_forget_ && !hash.IsZero()) on_forget_(hash);
  if (busy) ++private_busy_;
}

void TierIndex::TakeAllSlots() {
  std::vector<int32_t> ids;
  pool_->AllocateMany(pool_->num_available(), &ids);
  private_busy_ += static_cast<int64_t>(ids.size());
}

bool TierIndex::Restore(int32_t slot, const TierBlockInfo& block) {
  if (pool_->Find(block.hash)) return false;
  const bool committed = pool_->Commit(slot, block.hash, -1, std::min(block.priority, kMaxPriority), kNoExpiry);
  if (!committed) return false;
  --private_busy_;
  const uint32_t replay = std::min(block.hits, kMaxReplayedHits);
  for (uint32_t i = 0; i < replay; ++i) pool_->AcquireHit(slot);
  for (uint32_t i = 0; i < replay; ++i) pool_->Release(slot);
  return true;
}

Status TierIndex::CheckInvariants() const {
  KVSTACK_RETURN_IF_ERROR(pool_->CheckInvariants());
  int64_t private_busy = 0;
  for (int32_t i = 0; i < pool_->num_blocks(); ++i) {
    const BlockMeta& m = pool_->meta(i);
    if (m.state == BlockState::kPinned) return Internal(fmt::format("tier slot {}: pinned", i));
    if (m.state == BlockState::kInUse && m.hash.IsZero()) ++private_busy;
  }
  if (private_busy != private_busy_) {
    return Internal(fmt::format("tier index: {} busy slots without a hash, counted {}", private_busy, private_busy_));
  }
  return Status::Ok();
}

void TierIndex::ForEach(const std::function<void(const BlockHash&, Priority)>& fn) const {
  for (int32_t slot = 0; slot < pool_->num_blocks(); ++slot) {
    const BlockMeta& m = pool_->meta(slot);
    if (m.state != BlockState::kFree && !m.hash.IsZero()) fn(m.hash, m.priority);
  }
}

}  // namespace kvstack::tiers_internal
