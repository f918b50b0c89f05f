// HashIndex: BlockHash -> BlockId for committed blocks.
//
// Open addressing with linear probing over a power-of-two table at most half
// full (the pool sizes it for all of its blocks), and backward-shift deletion so
// no tombstones build up. A slot holds 32 bits of the key and the block id; the
// full 128-bit key lives in the block's metadata and is compared on a tag match,
// so the index costs 16 bytes per block.
//
// Thread safety: none; owned by one BlockPool.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "cache/block_meta.h"

namespace kvstack {

class HashIndex {
 public:
  // REQUIRES: max_entries >= 1.
  explicit HashIndex(int32_t max_entries);

  // The block whose committed hash equals `key`, if any. `meta` is the pool's
  // metadata array, where full keys are compared.
  std::optional<int32_t> Find(const BlockHash& key, std::span<const BlockMeta> meta) const;

  // Starts loading the cache line where a Find(key) would begin; lets a
  // caller about to look up many keys overlap their memory latency.
  void Prefetch(const BlockHash& key) const { __builtin_prefetch(&slots_[Home(static_cast<uint32_t>(key.lo))]); }

  // Adds key -> id. REQUIRES: key not present; meta[id].hash == key; fewer than
  // max_entries entries.
  void Insert(const BlockHash& key, int32_t id);

  // Removes the entry key -> id. REQUIRES: it is present.
  void Erase(const BlockHash& key, int32_t id);

  void Clear();

  int32_t size() const { return size_; }
  size_t bytes() const { return slots_.size() * sizeof(Slot); }

  // Calls f(id) for every entry, in table order.
  template <typename F>
  void ForEach(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.id >= 0) f(s.id);
    }
  }

 private:
  struct Slot {
    uint32_t tag = 0;  // low 32 bits of key.lo; also the home position
    int32_t id = -1;   // -1: empty
  };
  size_t Home(uint32_t tag) const { return tag & mask_; }

  std::vector<Slot> slots_;
  size_t mask_;
  int32_t size_ = 0;
};

}  // namespace kvstack
