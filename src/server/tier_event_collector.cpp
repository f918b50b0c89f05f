#include "server/tier_event_collector.h"

namespace kvstack::server {

TierEventCollector::TierEventCollector(std::vector<StorageTier> media) : media_(std::move(media)), held_(media_.size()) {}

void TierEventCollector::OnTierStored(int tier, const BlockHash& hash, Priority priority) {
  if (tier < 0 || static_cast<size_t>(tier) >= media_.size()) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = held_[static_cast<size_t>(tier)].try_emplace(hash, priority);
  if (!inserted) return;  // announced already; a re-put changes nothing a router weighs
  pending_.events.push_back(KvEvent{.seq = 0,
                                    .kind = KvEventKind::kBlockStored,
                                    .tier = media_[static_cast<size_t>(tier)],
                                    .hash = hash,
                                    .priority = priority});
}

void TierEventCollector::OnTierRemoved(int tier, const BlockHash& hash) {
  if (tier < 0 || static_cast<size_t>(tier) >= media_.size()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (held_[static_cast<size_t>(tier)].erase(hash) == 0) return;  // never announced
  pending_.events.push_back(
      KvEvent{.seq = 0, .kind = KvEventKind::kBlockRemoved, .tier = media_[static_cast<size_t>(tier)], .hash = hash});
}

KvEventBatch TierEventCollector::Take() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::exchange(pending_, {});
}

std::vector<std::pair<StorageTier, std::vector<std::pair<BlockHash, Priority>>>> TierEventCollector::ListLocked()
    const {
  std::vector<std::pair<StorageTier, std::vector<std::pair<BlockHash, Priority>>>> out;
  for (size_t t = 0; t < media_.size(); ++t) {
    out.emplace_back(media_[t], std::vector<std::pair<BlockHash, Priority>>(held_[t].begin(), held_[t].end()));
  }
  return out;
}

StorageTier TierMedium(std::string_view tier_name) {
  if (tier_name == "host") return StorageTier::kHost;
  if (tier_name == "disk") return StorageTier::kDisk;
  return StorageTier::kRemote;
}

}  // namespace kvstack::server
