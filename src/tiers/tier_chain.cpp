// TierChain: write-through offload to the lower tiers on one writer thread,
// prefix lookup across tiers, and fetches split by tier.
//
// Lock order: Writer::mu is the only lock here and is never held while
// calling a tier (tiers take their own locks).
#include "kvstack/tier_chain.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include <fmt/format.h>

namespace kvstack {

struct TierChain::Writer {
  struct Item {
    TierBlockInfo block;
    std::vector<std::byte> bytes;  // the staged copy
  };

  std::mutex mu;
  std::condition_variable work_cv;  // queue non-empty or stop
  std::condition_variable idle_cv;  // queue drained and nothing in flight
  std::deque<Item> queue;           // GUARDED_BY(mu)
  size_t queued_bytes = 0;          // GUARDED_BY(mu)
  size_t in_flight = 0;             // GUARDED_BY(mu): taken, not yet written
  bool stop = false;                // GUARDED_BY(mu)
  size_t max_queued_bytes = 0;
  size_t batch = 64;
  std::thread thread;

  std::atomic<uint64_t> offloads{0}, skipped{0}, refused{0}, dropped{0}, done{0};
  std::atomic<uint64_t> fetches{0}, fetched_blocks{0}, promoted{0};

  mutable std::mutex listener_mu;                // never held while calling the listener
  std::shared_ptr<TierChainListener> listener;  // GUARDED_BY(listener_mu)
};

Result<std::unique_ptr<TierChain>> TierChain::Create(TierChainOptions options) {
  if (options.tiers.empty()) return InvalidArgument("tier chain: at least one tier is required");
  for (const auto& t : options.tiers) {
    if (t == nullptr) return InvalidArgument("tier chain: a tier is null");
    if (t->bytes_per_block() != options.tiers[0]->bytes_per_block()) {
      return InvalidArgument(fmt::format("tier chain: tier '{}' stores blocks of {} bytes but tier '{}' {}: every "
                                         "tier must use the same bytes_per_block",
                                         t->name(), t->bytes_per_block(), options.tiers[0]->name(),
                                         options.tiers[0]->bytes_per_block()));
    }
  }
  if (options.tiers.size() > 127) return InvalidArgument("tier chain: at most 127 tiers");
  if (options.write_batch == 0) return InvalidArgument("tier chain: write_batch must be >= 1");
  return std::unique_ptr<TierChain>(new TierChain(std::move(options)));
}

TierChain::TierChain(TierChainOptions options)
    : tiers_(std::move(options.tiers)),
      bytes_per_block_(tiers_[0]->bytes_per_block()),
      min_priority_(options.min_priority),
      min_hits_(options.min_hits),
      promote_on_fetch_(options.promote_on_fetch),
      writer_(std::make_unique<Writer>()) {
  for (size_t t = 0; t < tiers_.size() && options.ask_shared_tiers; ++t) {
    if (tiers_[t]->shared()) {
      shared_tier_ = static_cast<int>(t);
      break;
    }
  }
  Writer& w = *writer_;
  w.max_queued_bytes = options.max_queued_bytes;
  w.batch = options.write_batch;
  inline_lower_writes_ = options.inline_lower_writes;
  if (tiers_.size() < 2 || inline_lower_writes_) return;  // no writer thread
  w.thread = std::thread([this] {
    Writer& w = *writer_;
    std::vector<Writer::Item> items;
    std::vector<TierPut> puts;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(w.mu);
        w.work_cv.wait(lock, [&] { return w.stop || !w.queue.empty(); });
        if (w.stop) return;
        while (!w.queue.empty() && items.size() < w.batch) {
          w.queued_bytes -= w.queue.front().bytes.size();
          items.push_back(std::move(w.queue.front()));
          w.queue.pop_front();
        }
        w.in_flight = items.size();
      }
      puts.clear();
      for (const auto& it : items) puts.push_back({it.block, it.bytes});
      std::vector<TierFuture> futures;
      for (size_t t = 1; t < tiers_.size(); ++t) futures.push_back(tiers_[t]->Put(puts));
      for (auto& f : futures) f.Wait();  // the staged bytes were copied; wait for backpressure
      for (size_t t = 1; t < tiers_.size(); ++t) ReportStored(static_cast<int>(t), puts, futures[t - 1]);
      w.done += items.size();
      items.clear();
      {
        std::lock_guard<std::mutex> lock(w.mu);
        w.in_flight = 0;
      }
      w.idle_cv.notify_all();
    }
  });
}

TierChain::~TierChain() {
  {
    std::lock_guard<std::mutex> lock(writer_->mu);
    writer_->stop = true;
  }
  writer_->work_cv.notify_all();
  if (writer_->thread.joinable()) writer_->thread.join();
}

OffloadOutcome TierChain::Offload(const BlockHash& hash, Priority priority, uint32_t hits,
                                  std::span<const std::byte> bytes) {
  Writer& w = *writer_;
  ++w.offloads;
  if (priority < min_priority_ && hits < min_hits_) {
    ++w.skipped;
    return OffloadOutcome::kSkipped;
  }
  const TierBlockInfo block{hash, priority, hits};
  const TierPut put{block, bytes};
  TierFuture f = tiers_[0]->Put(std::span<const TierPut>(&put, 1));
  f.Wait();
  if (f.num_ok() == 0) {
    ++w.refused;
    return OffloadOutcome::kRefused;
  }
  ReportStored(0, std::span<const TierPut>(&put, 1), f);
  if (tiers_.size() < 2) return OffloadOutcome::kStored;
  if (inline_lower_writes_) {
    for (size_t t = 1; t < tiers_.size(); ++t) {
      TierFuture lower = tiers_[t]->Put(std::span<const TierPut>(&put, 1));
      lower.Wait();
      ReportStored(static_cast<int>(t), std::span<const TierPut>(&put, 1), lower);
    }
    ++w.done;
    return OffloadOutcome::kStored;
  }
  {
    std::lock_guard<std::mutex> lock(w.mu);
    if (w.queued_bytes + bytes.size() > w.max_queued_bytes) {
      ++w.dropped;
      return OffloadOutcome::kStored;
    }
    w.queue.push_back({block, std::vector<std::byte>(bytes.begin(), bytes.end())});
    w.queued_bytes += bytes.size();
  }
  w.work_cv.notify_one();
  return OffloadOutcome::kStored;
}

PrefixLocation TierChain::LookupPrefix(std::span<const BlockHash> hashes) const {
  PrefixLocation loc;
  for (const BlockHash& h : hashes) {
    int found = -1;
    for (size_t t = 0; t < tiers_.size() && found < 0; ++t) {
      if (tiers_[t]->Contains(h)) found = static_cast<int>(t);
    }
    if (found < 0) break;
    loc.tier.push_back(static_cast<int8_t>(found));
    ++loc.blocks;
  }
  return loc;
}

FetchHandle TierChain::StartFetch(std::span<const BlockHash> hashes, std::span<const std::span<std::byte>> dests) {
  ++writer_->fetches;
  FetchHandle h;
  h.hashes_.assign(hashes.begin(), hashes.end());
  h.dests_.assign(dests.begin(), dests.end());
  // Only the leading run that some tier holds is worth reading.
  const size_t n = std::min(hashes.size(), dests.size());
  const PrefixLocation loc = LookupPrefix(hashes.first(n));
  std::vector<std::vector<size_t>> by_tier(tiers_.size());
  for (int32_t i = 0; i < loc.blocks; ++i) by_tier[static_cast<size_t>(loc.tier[static_cast<size_t>(i)])].push_back(static_cast<size_t>(i));
  // Past what this process knows: another server may have put them in the
  // shared tier.
  if (shared_tier_ >= 0) {
    for (size_t i = static_cast<size_t>(loc.blocks); i < n; ++i) by_tier[static_cast<size_t>(shared_tier_)].push_back(i);
  }
  for (size_t t = 0; t < tiers_.size(); ++t) {
    if (by_tier[t].empty()) continue;
    std::vector<TierGet> gets;
    gets.reserve(by_tier[t].size());
    for (size_t i : by_tier[t]) gets.push_back({hashes[i], dests[i]});
    FetchHandle::Part part;
    part.tier = static_cast<int>(t);
    part.index = std::move(by_tier[t]);
    part.future = tiers_[t]->Get(gets);
    h.parts_.push_back(std::move(part));
  }
  return h;
}

bool TierChain::Poll(FetchHandle& handle) {
  if (handle.done_) return true;
  for (const auto& p : handle.parts_) {
    if (!p.future.IsReady()) return false;
  }
  FinishFetch(handle);
  return true;
}

void TierChain::Wait(FetchHandle& handle) {
  for (const auto& p : handle.parts_) p.future.Wait();
  Poll(handle);
}

void TierChain::FinishFetch(FetchHandle& h) {
  std::vector<uint8_t> ok(h.hashes_.size(), 0);
  std::vector<int> from(h.hashes_.size(), -1);
  for (const auto& p : h.parts_) {
    for (size_t k = 0; k < p.index.size(); ++k) {
      ok[p.index[k]] = p.future.ok(k);
      from[p.index[k]] = p.tier;
    }
  }
  int32_t ready = 0;
  while (static_cast<size_t>(ready) < ok.size() && ok[static_cast<size_t>(ready)]) ++ready;
  h.blocks_ready_ = ready;
  h.done_ = true;
  writer_->fetched_blocks += static_cast<uint64_t>(ready);
  if (!promote_on_fetch_ || tiers_.size() < 2) return;
  std::vector<TierPut> promote;
  for (int32_t i = 0; i < ready; ++i) {
    if (from[static_cast<size_t>(i)] > 0) {
      promote.push_back({TierBlockInfo{h.hashes_[static_cast<size_t>(i)], kDefaultPriority, 1},
                         h.dests_[static_cast<size_t>(i)]});
    }
  }
  if (promote.empty()) return;
  TierFuture f = tiers_[0]->Put(promote);
  f.Wait();
  writer_->promoted += f.num_ok();
  ReportStored(0, promote, f);
}

void TierChain::Flush() {
  std::unique_lock<std::mutex> lock(writer_->mu);
  writer_->idle_cv.wait(lock, [&] { return writer_->queue.empty() && writer_->in_flight == 0; });
}

TierChainMetrics TierChain::Metrics() const {
  const Writer& w = *writer_;
  TierChainMetrics m;
  m.offloads = w.offloads;
  m.offload_skipped = w.skipped;
  m.offload_refused = w.refused;
  m.writes_dropped = w.dropped;
  m.writes_done = w.done;
  m.fetches = w.fetches;
  m.fetched_blocks = w.fetched_blocks;
  m.promoted = w.promoted;
  for (const auto& t : tiers_) m.tiers.push_back(t->Metrics());
  return m;
}

void TierChain::SetListener(std::shared_ptr<TierChainListener> listener) {
  {
    std::lock_guard<std::mutex> lock(writer_->listener_mu);
    writer_->listener = listener;
  }
  for (size_t t = 0; t < tiers_.size(); ++t) {
    if (listener == nullptr) {
      tiers_[t]->SetRemovalListener({});
      continue;
    }
    tiers_[t]->SetRemovalListener(
        [listener, t](const BlockHash& hash) { listener->OnTierRemoved(static_cast<int>(t), hash); });
    tiers_[t]->ForEachHeld([&listener, t](const BlockHash& hash, Priority priority) {
      listener->OnTierStored(static_cast<int>(t), hash, priority);
    });
  }
}

std::shared_ptr<TierChainListener> TierChain::listener() const {
  std::lock_guard<std::mutex> lock(writer_->listener_mu);
  return writer_->listener;
}

void TierChain::ReportStored(int tier, std::span<const TierPut> puts, const TierFuture& done) const {
  const std::shared_ptr<TierChainListener> l = listener();
  if (l == nullptr) return;
  for (size_t i = 0; i < puts.size() && i < done.size(); ++i) {
    // Each tier has one putter (the engine thread for tier 0, the writer below),
    // so a block this batch stored and then evicted is not there now: its
    // removal was heard already, and reporting it stored would outlive it.
    const BlockHash& hash = puts[i].block.hash;
    if (done.ok(i) && tiers_[static_cast<size_t>(tier)]->Contains(hash)) {
      l->OnTierStored(tier, hash, puts[i].block.priority);
    }
  }
}

}  // namespace kvstack
