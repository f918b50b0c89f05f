// KvCache: running sequences (append, commit, fork, release, block tables).
#include <algorithm>

#include <fmt/format.h>

#include "cache/check.h"
#include "cache/kv_cache_impl.h"
#include "kvstack/kv_cache.h"

namespace kvstack {

int32_t KvCache::BlocksToAppend(SequenceId id, int32_t count) const {
  const Sequence* s = impl_->Find(id);
  if (s == nullptr || count <= 0) return 0;
  const int64_t bs = block_size();
  const int64_t old_n = static_cast<int64_t>(s->tokens.size());
  const int64_t needed = std::max<int64_t>(0, (old_n + count + bs - 1) / bs - static_cast<int64_t>(s->blocks.size()));
  return static_cast<int32_t>(needed + (impl_->TailShared(*s) ? 1 : 0));
}

Status KvCache::Append(SequenceId id, std::span<const Token> tokens) {
  Sequence* s = impl_->Find(id);
  if (s == nullptr) return NotFound(fmt::format("append: sequence {} is not live", id.value));
  return impl_->AppendTo(*s, id, tokens);
}

Status KvCache::Extend(SequenceId id, std::span<const Token> tokens, int32_t num_computed_tokens) {
  Sequence* s = impl_->Find(id);
  if (s == nullptr) return NotFound(fmt::format("extend: sequence {} is not live", id.value));
  const size_t held = s->tokens.size();
  if (tokens.size() > held) KVSTACK_RETURN_IF_ERROR(impl_->AppendTo(*s, id, tokens.subspan(held)));
  return impl_->MarkComputedIn(*s, id, num_computed_tokens);
}

Status KvCache::Impl::AppendTo(Sequence& s, SequenceId id, std::span<const Token> tokens) {
  if (tokens.empty()) return Status::Ok();
  const int32_t bs = cache->block_size();
  const int64_t old_n = static_cast<int64_t>(s.tokens.size());
  const int64_t new_n = old_n + static_cast<int64_t>(tokens.size());
  if (new_n > INT32_MAX / 2) return InvalidArgument(fmt::format("append: sequence {} would exceed the token limit", id.value));
  const int64_t needed = std::max<int64_t>(0, (new_n + bs - 1) / bs - static_cast<int64_t>(s.blocks.size()));

  // The block that receives the next token is written in place only if no
  // other sequence holds it (a fork shares its partial tail until one writes).
  const size_t next_slot_block = static_cast<size_t>(old_n / bs);
  const bool copy_tail = TailShared(s);
  if (needed + (copy_tail ? 1 : 0) > pool->num_available()) {
    ++counters.appends_refused;
    return ResourceExhausted(fmt::format("append: sequence {} needs {} new blocks, {} available", id.value,
                                         needed + (copy_tail ? 1 : 0), pool->num_available()));
  }
  if (copy_tail) {
    const int32_t shared = Idx(s.blocks[next_slot_block]);
    auto fresh = pool->Allocate();
    KVSTACK_CHECK(fresh.has_value(), "append: copy-on-write allocation failed after the availability check");
    cache->arena_.CopyBlock(shared, *fresh);
    pool->Release(shared);
    s.blocks[next_slot_block] = static_cast<BlockId>(*fresh);
    ++counters.copy_on_write;
  }
  for (int64_t i = 0; i < needed; ++i) {
    auto fresh = pool->Allocate();
    KVSTACK_CHECK(fresh.has_value(), "append: allocation failed after the availability check");
    s.blocks.push_back(static_cast<BlockId>(*fresh));
  }
  s.tokens.insert(s.tokens.end(), tokens.begin(), tokens.end());
  const size_t hashed_tokens = s.hashes.size() * bs;
  const BlockHash parent = s.hashes.empty() ? s.root : s.hashes.back();
  cache->hasher_.ChainBlocks(parent, std::span<const Token>(s.tokens).subspan(hashed_tokens), bs, &s.hashes);
  return Status::Ok();
}

void KvCache::Impl::CommitComputed(Sequence& s) {
  BlockPool& p = *pool;
  const int32_t bs = cache->block_size();
  const int32_t full = s.computed_tokens / bs;
  const Micros now = cache->config_.clock->Now();
  // Each commit first looks its key up (a duplicate stays private): start
  // those index misses together.
  for (int32_t b = s.committed; b < full; ++b) p.PrefetchFind(s.hashes[b]);
  for (int32_t b = s.committed; b < full; ++b) {
    const int32_t id = Idx(s.blocks[b]);
    const BlockMeta& m = p.meta(id);
    const auto r = RetentionFor(s, b, now);
    if (m.hash == s.hashes[b]) {  // a fork sibling committed it first
      p.RaiseRetention(id, r.priority, r.expiry);
      continue;
    }
    KVSTACK_CHECK(m.hash.IsZero(), "commit: block %d of a sequence carries a foreign key", id);
    const int32_t parent = b > 0 ? Idx(s.blocks[b - 1]) : -1;
    if (!p.Commit(id, s.hashes[b], parent, r.priority, r.expiry)) {
      ++counters.duplicate_blocks;  // computed twice concurrently; ours stays private
      continue;
    }
    cache->events_.BlockStored(s.hashes[b], b > 0 ? s.hashes[b - 1] : BlockHash{},
                               std::span<const Token>(s.tokens).subspan(static_cast<size_t>(b) * bs, bs),
                               StorageTier::kDevice, r.priority);
  }
  s.committed = full;
}

Status KvCache::MarkComputed(SequenceId id, int32_t num_computed_tokens) {
  Sequence* s = impl_->Find(id);
  if (s == nullptr) return NotFound(fmt::format("mark computed: sequence {} is not live", id.value));
  return impl_->MarkComputedIn(*s, id, num_computed_tokens);
}

Status KvCache::Impl::MarkComputedIn(Sequence& s, SequenceId id, int32_t num_computed_tokens) {
  if (num_computed_tokens < s.computed_tokens || num_computed_tokens > static_cast<int32_t>(s.tokens.size())) {
    return InvalidArgument(fmt::format("mark computed: sequence {}: {} computed tokens, must be from {} to {}", id.value,
                                       num_computed_tokens, s.computed_tokens, s.tokens.size()));
  }
  s.computed_tokens = num_computed_tokens;
  CommitComputed(s);
  return Status::Ok();
}

Result<SequenceId> KvCache::Fork(SequenceId id) {
  Impl& impl = *impl_;
  Sequence* s = impl.Find(id);
  if (s == nullptr) return NotFound(fmt::format("fork: sequence {} is not live", id.value));
  s->forked = true;
  Sequence child = *s;
  // Only blocks holding tokens are shared; the parent keeps its reserved empty
  // blocks, and the child takes its own when it appends.
  const size_t holding = (s->tokens.size() + block_size() - 1) / block_size();
  child.blocks.resize(holding);
  for (BlockId b : child.blocks) impl.pool->AddRef(Idx(b));
  const SequenceId child_id{impl.next_sequence++};
  impl.sequences.emplace(child_id.value, std::move(child));
  return child_id;
}

Status KvCache::Release(SequenceId id) {
  auto it = impl_->sequences.find(id.value);
  if (it == impl_->sequences.end()) return NotFound(fmt::format("release: sequence {} is not live", id.value));
  std::vector<BlockId>& blocks = it->second.blocks;
  std::reverse(blocks.begin(), blocks.end());
  impl_->pool->ReleaseMany({reinterpret_cast<const int32_t*>(blocks.data()), blocks.size()});
  impl_->sequences.erase(it);
  return Status::Ok();
}

std::span<const BlockId> KvCache::BlockTable(SequenceId id) const {
  const Sequence* s = impl_->Find(id);
  KVSTACK_CHECK(s != nullptr, "block table: sequence %lu is not live", static_cast<unsigned long>(id.value));
  return s->blocks;
}

Result<SequenceInfo> KvCache::Info(SequenceId id) const {
  const Sequence* s = impl_->Find(id);
  if (s == nullptr) return NotFound(fmt::format("info: sequence {} is not live", id.value));
  SequenceInfo info;
  info.num_tokens = static_cast<int32_t>(s->tokens.size());
  info.num_prompt_tokens = s->prompt_tokens;
  info.num_computed_tokens = s->computed_tokens;
  info.hit_tokens = s->hit_tokens;
  info.num_blocks = static_cast<int32_t>(s->blocks.size());
  info.committed_blocks = s->committed;
  info.tail_shared = impl_->TailShared(*s);
  return info;
}

}  // namespace kvstack
