#include "kvstack/cache_events.h"

namespace kvstack {

std::string_view KvEventKindName(KvEventKind k) {
  switch (k) {
    case KvEventKind::kBlockStored: return "BlockStored";
    case KvEventKind::kBlockRemoved: return "BlockRemoved";
    case KvEventKind::kAllCleared: return "AllCleared";
  }
  return "?";
}

std::string_view StorageTierName(StorageTier t) {
  switch (t) {
    case StorageTier::kDevice: return "device";
    case StorageTier::kHost: return "host";
    case StorageTier::kDisk: return "disk";
    case StorageTier::kRemote: return "remote";
  }
  return "?";
}

bool KvEventLog::Admit() {
  if (capacity_ == 0) return false;
  if (pending_.events.size() >= capacity_) {
    ++next_seq_;
    ++dropped_;
    return false;
  }
  return true;
}

void KvEventLog::BlockStored(const BlockHash& hash, const BlockHash& parent, std::span<const Token> tokens,
                             StorageTier tier, Priority priority) {
  if (!Admit()) return;
  KvEvent e{next_seq_++, KvEventKind::kBlockStored, tier, hash, parent,
            static_cast<uint32_t>(pending_.tokens.size()), static_cast<uint32_t>(tokens.size()), priority};
  pending_.tokens.insert(pending_.tokens.end(), tokens.begin(), tokens.end());
  pending_.events.push_back(e);
}

void KvEventLog::BlockRemoved(const BlockHash& hash, StorageTier tier) {
  if (!Admit()) return;
  pending_.events.push_back(KvEvent{next_seq_++, KvEventKind::kBlockRemoved, tier, hash, {}, 0, 0});
}

void KvEventLog::AllCleared(StorageTier tier) {
  if (!Admit()) return;
  pending_.events.push_back(KvEvent{next_seq_++, KvEventKind::kAllCleared, tier, {}, {}, 0, 0});
}

KvEventBatch KvEventLog::Drain() {
  KvEventBatch out;
  std::swap(out, pending_);
  return out;
}

}  // namespace kvstack
