#include "cache/hash_index.h"

#include <bit>

#include "cache/check.h"

namespace kvstack {

HashIndex::HashIndex(int32_t max_entries) {
  size_t capacity = std::bit_ceil(static_cast<size_t>(max_entries) * 2);
  if (capacity < 8) capacity = 8;
  slots_.resize(capacity);
  mask_ = capacity - 1;
}

std::optional<int32_t> HashIndex::Find(const BlockHash& key, std::span<const BlockMeta> meta) const {
  const uint32_t tag = static_cast<uint32_t>(key.lo);
  for (size_t i = Home(tag);; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.id < 0) return std::nullopt;
    if (s.tag == tag && meta[s.id].hash == key) return s.id;
  }
}

void HashIndex::Insert(const BlockHash& key, int32_t id) {
  KVSTACK_CHECK(size_ < static_cast<int32_t>(slots_.size() / 2), "hash index full: %d entries", size_);
  const uint32_t tag = static_cast<uint32_t>(key.lo);
  size_t i = Home(tag);
  while (slots_[i].id >= 0) i = (i + 1) & mask_;
  slots_[i] = Slot{tag, id};
  ++size_;
}

void HashIndex::Erase(const BlockHash& key, int32_t id) {
  const uint32_t tag = static_cast<uint32_t>(key.lo);
  size_t i = Home(tag);
  while (slots_[i].id != id) {
    KVSTACK_CHECK(slots_[i].id >= 0, "hash index: erase of block %d %s, which is not indexed", id,
                  key.ToHex().c_str());
    i = (i + 1) & mask_;
  }
  // Backward-shift: pull later entries of the probe run into the hole unless
  // their home lies cyclically in (hole, j], where they already are reachable.
  size_t hole = i;
  for (size_t j = (hole + 1) & mask_; slots_[j].id >= 0; j = (j + 1) & mask_) {
    const size_t home = Home(slots_[j].tag);
    const bool reachable = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (reachable) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = Slot{};
  --size_;
}

void HashIndex::Clear() {
  for (Slot& s : slots_) s = Slot{};
  size_ = 0;
}

}  // namespace kvstack
