// BlockIndex (see router_index.h). Every change to an entry goes through
// Account(-1) before and Account(+1) after, so the per-worker counters always
// equal a recount (CheckInvariants()).
#include "kvstack/router_index.h"

#include <algorithm>
#include <bit>

#include <fmt/format.h>

namespace kvstack {
namespace {

uint8_t Bit(StorageTier t) { return static_cast<uint8_t>(1u << static_cast<unsigned>(t)); }
constexpr uint8_t kAllTiers = (1u << kNumStorageTiers) - 1;

}  // namespace

std::vector<IndexEvent> ToIndexEvents(const KvEventBatch& batch) {
  std::vector<IndexEvent> out;
  out.reserve(batch.events.size());
  for (const KvEvent& e : batch.events) {
    IndexEvent ie{.kind = e.kind, .tier = e.tier, .hash = e.hash, .priority = e.priority};
    // The device pool's reset is a whole-worker clear, as on the wire.
    if (e.kind == KvEventKind::kAllCleared && e.tier == StorageTier::kDevice) ie.tier.reset();
    out.push_back(ie);
  }
  return out;
}

BlockIndex::BlockIndex(Options options)
    : options_(std::move(options)),
      hasher_(options_.hash_seed),
      foreign_root_(hasher_.Root(ExtraKeys{.model_id = options_.model_id, .cache_salt = "", .adapter_id = ""})) {}

WorkerId BlockIndex::AddWorker(bool foreign, int64_t first_seq) {
  Worker w;
  w.foreign = foreign;
  w.stats.next_seq = first_seq;
  workers_.push_back(std::move(w));
  return static_cast<WorkerId>(workers_.size() - 1);
}

void BlockIndex::Account(Worker& w, const Entry& e, int sign) const {
  for (unsigned m = e.tiers; m != 0; m &= m - 1) w.stats.blocks[std::countr_zero(m)] += sign;
  if (e.tiers != 0 && e.priority >= options_.durable_priority) w.stats.durable += sign;
  if (e.predicted_until != 0) w.stats.predicted += sign;
}

void BlockIndex::ClearTier(Worker& w, std::optional<StorageTier> tier) {
  const uint8_t mask = tier ? Bit(*tier) : kAllTiers;
  for (auto it = w.blocks.begin(); it != w.blocks.end();) {
    Entry& e = it->second;
    Account(w, e, -1);
    e.tiers &= static_cast<uint8_t>(~mask);
    if (e.tiers == 0 && e.predicted_until == 0) {
      w.blocks.erase(it++);  // erasing invalidates only the erased iterator
      continue;
    }
    Account(w, e, +1);
    ++it;
  }
  if (!tier) {
    w.foreign_keys.clear();
  } else {
    std::erase_if(w.foreign_keys, [&](const auto& kv) { return !w.blocks.contains(kv.second); });
  }
}

void BlockIndex::Apply(Worker& w, const IndexEvent& ev) {
  ++w.stats.events;
  switch (ev.kind) {
    case KvEventKind::kBlockStored: {
      const StorageTier tier = ev.tier.value_or(StorageTier::kDevice);
      auto [it, inserted] = w.blocks.try_emplace(ev.hash);
      Entry& e = it->second;
      if (inserted) {
        // The common case, a new block: count it without a recount.
        e.tiers = Bit(tier);
        e.priority = ev.priority;
        ++w.stats.blocks[static_cast<int>(tier)];
        if (e.priority >= options_.durable_priority) ++w.stats.durable;
        return;
      }
      Account(w, e, -1);
      e.tiers |= Bit(tier);
      e.priority = ev.priority;
      if (tier == StorageTier::kDevice) e.predicted_until = 0;  // confirmed
      Account(w, e, +1);
      return;
    }
    case KvEventKind::kBlockRemoved: {
      const StorageTier tier = ev.tier.value_or(StorageTier::kDevice);
      auto it = w.blocks.find(ev.hash);
      if (it == w.blocks.end() || !(it->second.tiers & Bit(tier))) {
        ++w.stats.unknown_removals;
        return;
      }
      Entry& e = it->second;
      Account(w, e, -1);
      e.tiers &= static_cast<uint8_t>(~Bit(tier));
      if (e.tiers == 0 && e.predicted_until == 0) {
        w.blocks.erase(it);
        return;
      }
      Account(w, e, +1);
      return;
    }
    case KvEventKind::kAllCleared:
      ClearTier(w, ev.tier);
      return;
  }
}

void BlockIndex::ApplyEvents(WorkerId worker, std::span<const IndexEvent> events) {
  Worker& w = workers_[static_cast<size_t>(worker)];
  for (const IndexEvent& e : events) Apply(w, e);
}

BatchOutcome BlockIndex::ApplyBatch(WorkerId worker, int64_t seq, std::span<const IndexEvent> events) {
  Worker& w = workers_[static_cast<size_t>(worker)];
  const int64_t expected = w.stats.next_seq;
  if (seq < expected) return {BatchOutcome::Kind::kDuplicate, expected};
  if (seq > expected) {
    ++w.stats.gaps;
    return {BatchOutcome::Kind::kGap, expected};
  }
  for (const IndexEvent& e : events) Apply(w, e);
  w.stats.next_seq = seq + 1;
  return {BatchOutcome::Kind::kApplied, expected};
}

void BlockIndex::ApplyWire(Worker& w, const WireEvent& e) {
  const std::optional<StorageTier> tier = e.medium ? std::optional(MediumTier(*e.medium)) : std::nullopt;
  IndexEvent ev{.kind = e.kind, .tier = tier, .hash = {}, .priority = e.priority.value_or(kDefaultPriority)};
  if (e.kind == KvEventKind::kAllCleared) return Apply(w, ev);
  if (!w.foreign) {
    for (const std::string& bytes : e.block_hashes) {
      const auto key = HashFromBytes(bytes);
      if (!key) {
        ++w.stats.unusable;
        continue;
      }
      ev.hash = *key;
      Apply(w, ev);
    }
    return;
  }
  if (e.kind == KvEventKind::kBlockRemoved) {
    for (const std::string& bytes : e.block_hashes) {
      auto it = w.foreign_keys.find(bytes);
      if (it == w.foreign_keys.end()) {
        ++w.stats.unknown_removals;
        continue;
      }
      ev.hash = it->second;
      Apply(w, ev);
      if (!w.blocks.contains(ev.hash)) w.foreign_keys.erase(it);
    }
    return;
  }
  // BlockStored from another engine: chain kvstack keys over its token ids.
  const size_t n = e.block_hashes.size();
  const auto bs = static_cast<size_t>(e.block_size);
  BlockHash parent = foreign_root_;
  if (e.parent) {
    auto it = w.foreign_keys.find(*e.parent);
    if (it == w.foreign_keys.end()) {
      w.stats.unusable += n;  // its prefix was never seen: its keys cannot be known
      return;
    }
    parent = it->second;
  }
  if (bs == 0 || e.token_ids.size() != n * bs) {
    w.stats.unusable += n;
    return;
  }
  for (size_t i = 0; i < n; ++i) {
    ev.hash = hasher_.Chain(parent, std::span<const Token>(e.token_ids).subspan(i * bs, bs));
    w.foreign_keys[e.block_hashes[i]] = ev.hash;
    Apply(w, ev);
    parent = ev.hash;
  }
}

BatchOutcome BlockIndex::ApplyWireBatch(WorkerId worker, int64_t seq, const WireBatch& batch) {
  Worker& w = workers_[static_cast<size_t>(worker)];
  const int64_t expected = w.stats.next_seq;
  if (seq < expected) return {BatchOutcome::Kind::kDuplicate, expected};
  if (seq > expected) {
    ++w.stats.gaps;
    return {BatchOutcome::Kind::kGap, expected};
  }
  for (const WireEvent& e : batch.events) ApplyWire(w, e);
  w.stats.next_seq = seq + 1;
  return {BatchOutcome::Kind::kApplied, expected};
}

void BlockIndex::ApplySnapshot(WorkerId worker, int64_t next_seq, std::span<const SnapshotBlock> blocks) {
  Worker& w = workers_[static_cast<size_t>(worker)];
  ClearTier(w, std::nullopt);
  for (const SnapshotBlock& b : blocks) {
    Apply(w, IndexEvent{.kind = KvEventKind::kBlockStored, .tier = b.tier, .hash = b.hash, .priority = b.priority});
  }
  w.stats.next_seq = next_seq;
}

void BlockIndex::Predict(WorkerId worker, std::span<const BlockHash> keys, Micros until) {
  Worker& w = workers_[static_cast<size_t>(worker)];
  for (const BlockHash& key : keys) {
    auto [it, inserted] = w.blocks.try_emplace(key);
    Entry& e = it->second;
    if (e.tiers & Bit(StorageTier::kDevice)) continue;
    if (!inserted) Account(w, e, -1);
    e.predicted_until = std::max(e.predicted_until, until);
    Account(w, e, +1);
    predictions_.push_back(Prediction{until, worker, key});
  }
}

int64_t BlockIndex::ExpirePredictions(Micros now) {
  int64_t expired = 0;
  while (predictions_head_ < predictions_.size() && predictions_[predictions_head_].until <= now) {
    const Prediction& p = predictions_[predictions_head_++];
    Worker& w = workers_[static_cast<size_t>(p.worker)];
    auto it = w.blocks.find(p.key);
    // A later Predict() extended it, or a BlockStored confirmed it: not ours.
    if (it == w.blocks.end() || it->second.predicted_until == 0 || it->second.predicted_until > now) continue;
    Entry& e = it->second;
    Account(w, e, -1);
    e.predicted_until = 0;
    ++expired;
    if (e.tiers == 0) {
      w.blocks.erase(it);
      continue;
    }
    Account(w, e, +1);
  }
  if (predictions_head_ > 4096 && predictions_head_ * 2 > predictions_.size()) {
    predictions_.erase(predictions_.begin(), predictions_.begin() + static_cast<ptrdiff_t>(predictions_head_));
    predictions_head_ = 0;
  }
  return expired;
}

IndexMatch BlockIndex::Match(WorkerId worker, std::span<const BlockHash> keys, Micros now) const {
  const Worker& w = workers_[static_cast<size_t>(worker)];
  IndexMatch m;
  for (const BlockHash& key : keys) {
    auto it = w.blocks.find(key);
    if (it == w.blocks.end()) break;
    const Entry& e = it->second;
    if (e.tiers != 0) {
      ++m.by_tier[std::countr_zero(static_cast<unsigned>(e.tiers))];
      if (e.priority >= options_.durable_priority) ++m.durable;
    } else if (e.predicted_until > now) {
      ++m.predicted;
    } else {
      break;
    }
    ++m.blocks;
  }
  return m;
}

uint8_t BlockIndex::TiersOf(WorkerId worker, const BlockHash& key) const {
  const Worker& w = workers_[static_cast<size_t>(worker)];
  auto it = w.blocks.find(key);
  return it == w.blocks.end() ? 0 : it->second.tiers;
}

WorkerIndexStats BlockIndex::Stats(WorkerId worker) const { return workers_[static_cast<size_t>(worker)].stats; }

int64_t BlockIndex::TotalEntries() const {
  int64_t n = 0;
  for (const Worker& w : workers_) n += static_cast<int64_t>(w.blocks.size());
  return n;
}

Status BlockIndex::CheckInvariants() const {
  for (size_t i = 0; i < workers_.size(); ++i) {
    const Worker& w = workers_[i];
    Worker recount;
    for (const auto& [key, e] : w.blocks) {
      if (e.tiers == 0 && e.predicted_until == 0) {
        return Internal(fmt::format("worker {}: block {} is neither held nor predicted", i, key.ToHex()));
      }
      if (e.tiers & ~kAllTiers) return Internal(fmt::format("worker {}: block {} has tier bits {}", i, key.ToHex(), e.tiers));
      Account(recount, e, +1);
    }
    for (int t = 0; t < kNumStorageTiers; ++t) {
      if (recount.stats.blocks[t] != w.stats.blocks[t]) {
        return Internal(fmt::format("worker {}: {} blocks counted in tier {}, {} held", i, w.stats.blocks[t], t,
                                    recount.stats.blocks[t]));
      }
    }
    if (recount.stats.durable != w.stats.durable || recount.stats.predicted != w.stats.predicted) {
      return Internal(fmt::format("worker {}: durable {} / predicted {} counted, {} / {} held", i, w.stats.durable,
                                  w.stats.predicted, recount.stats.durable, recount.stats.predicted));
    }
  }
  return Status::Ok();
}

}  // namespace kvstack
