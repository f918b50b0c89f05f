// The host tier: a RAM pool of fixed-size block slots. Slot i of the index
// owns bytes [i * bytes_per_block, (i + 1) * bytes_per_block) of one
// allocation; every call copies under the tier's mutex and completes before
// it returns (the futures are ready at once).
#include <cstring>
#include <mutex>

#include <fmt/format.h>

#include "kvstack/tiers.h"
#include "tiers/aligned_buffer.h"
#include "tiers/op_state.h"
#include "tiers/indexed_tier.h"
#include "tiers/tier_index.h"
#include "tiers/tier_stats.h"

namespace kvstack {
namespace {

using tiers_internal::AlignedBuffer;
using tiers_internal::ReadyFuture;
using tiers_internal::IndexedTier;
using tiers_internal::TierIndex;
using tiers_internal::TierStats;
using tiers_internal::WallMicros;

class HostTier final : public IndexedTier {
 public:
  HostTier(size_t bytes_per_block, AlignedBuffer bytes, std::string name)
      : bytes_per_block_(bytes_per_block), name_(std::move(name)), bytes_(std::move(bytes)), stats_(name_) {}

  Status Init(const HostTierOptions& o) {
    auto index = TierIndex::Create(o.capacity_blocks, o.policy, o.clock,
                                   [this](int32_t, const BlockHash&) { stats_.AddEvictions(1); });
    if (!index.ok()) return index.status();
    index_ = std::move(index).value();
    return Status::Ok();
  }

  std::string_view name() const override { return name_; }
  size_t bytes_per_block() const override { return bytes_per_block_; }

  TierFuture Put(std::span<const TierPut> blocks) override {
    const int64_t start = WallMicros();
    std::vector<uint8_t> ok(blocks.size(), 0);
    uint64_t stored = 0, bytes = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < blocks.size(); ++i) {
        const TierPut& p = blocks[i];
        if (p.bytes.size() != bytes_per_block_) continue;
        if (auto slot = index_->Find(p.block.hash)) {  // held: same key, same bytes
          index_->Acquire(*slot);
          index_->Raise(*slot, p.block.priority);
          index_->Release(*slot);
          ok[i] = 1;
          continue;
        }
        auto slot = index_->Insert(p.block);
        if (!slot) continue;
        if (bytes_per_block_ > 0) std::memcpy(Slot(*slot), p.bytes.data(), bytes_per_block_);
        index_->Release(*slot);
        ok[i] = 1;
        ++stored;
        bytes += bytes_per_block_;
      }
    }
    const uint64_t refused = static_cast<uint64_t>(std::count(ok.begin(), ok.end(), uint8_t{0}));
    stats_.RecordPut(stored, refused, bytes, start);
    return ReadyFuture(std::move(ok));
  }

  TierFuture Lookup(std::span<const BlockHash> hashes) override { return LookupIndexed(hashes, stats_); }

  TierFuture Get(std::span<const TierGet> blocks) override {
    const int64_t start = WallMicros();
    std::vector<uint8_t> ok(blocks.size(), 0);
    uint64_t hits = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (size_t i = 0; i < blocks.size(); ++i) {
        const TierGet& g = blocks[i];
        if (g.dest.size() != bytes_per_block_) continue;
        auto slot = index_->Find(g.hash);
        if (!slot) continue;
        index_->Acquire(*slot);  // a use: hit counted, LRU touched
        if (bytes_per_block_ > 0) std::memcpy(g.dest.data(), Slot(*slot), bytes_per_block_);
        index_->Release(*slot);
        ok[i] = 1;
        ++hits;
      }
    }
    stats_.RecordGet(hits, blocks.size() - hits, hits * bytes_per_block_, start);
    return ReadyFuture(std::move(ok));
  }

  void Remove(const BlockHash& hash) override { RemoveIndexed(hash); }

  TierMetrics Metrics() const override { return IndexedMetrics(stats_); }

  Status CheckInvariants() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return index_->CheckInvariants();
  }

 private:
  std::byte* Slot(int32_t slot) { return bytes_.data() + static_cast<size_t>(slot) * bytes_per_block_; }

  const size_t bytes_per_block_;
  const std::string name_;
  AlignedBuffer bytes_;               // slot bytes, GUARDED_BY(mu_)
  TierStats stats_;
};

}  // namespace

Result<std::unique_ptr<Tier>> MakeHostTier(const HostTierOptions& o) {
  if (o.metadata_only != (o.bytes_per_block == 0)) {
    return InvalidArgument(o.metadata_only ? "host tier: a metadata-only tier stores no bytes: bytes_per_block must be 0"
                                           : "host tier: bytes_per_block must be >= 1");
  }
  if (o.capacity_blocks < 1 || o.capacity_blocks > (int64_t{1} << 30)) {
    return InvalidArgument(fmt::format("host tier: capacity_blocks {}: must be from 1 to 2^30", o.capacity_blocks));
  }
  const size_t total = static_cast<size_t>(o.capacity_blocks) * o.bytes_per_block;
  AlignedBuffer bytes(total);
  if (bytes.data() == nullptr && !o.metadata_only) {
    return ResourceExhausted(fmt::format("host tier: cannot allocate {} bytes ({} blocks of {} bytes): lower "
                                         "capacity_blocks", total, o.capacity_blocks, o.bytes_per_block));
  }
  auto tier = std::make_unique<HostTier>(o.bytes_per_block, std::move(bytes), o.name);
  KVSTACK_RETURN_IF_ERROR(tier->Init(o));
  return std::unique_ptr<Tier>(std::move(tier));
}

}  // namespace kvstack
