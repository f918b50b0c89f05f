#include "engine/scheduler.h"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "cache/check.h"

namespace kvstack::engine {

Scheduler::Scheduler(KvCache* cache, const SchedulerOptions& options, BlockOnboarder* onboarder)
    : cache_(cache), options_(options), onboarder_(onboarder) {}

Status Scheduler::Add(ScheduledRequest r) {
  if (r.tokens.empty()) return InvalidArgument("request has an empty prompt");
  const int64_t blocks = (static_cast<int64_t>(r.tokens.size()) + cache_->block_size()) / cache_->block_size();
  if (blocks > cache_->num_blocks()) {
    return InvalidArgument(fmt::format("prompt of {} tokens needs {} KV blocks; the cache has {}", r.tokens.size(),
                                       blocks, cache_->num_blocks()));
  }
  if (requests_.count(r.id)) return AlreadyExists(fmt::format("request {} already exists", r.id));
  r.prompt_len = static_cast<int32_t>(r.tokens.size());
  r.state = RequestState::kWaiting;
  const RequestId id = r.id;
  auto& queued = requests_.emplace(id, std::move(r)).first->second;
  waiting_.push_back(id);
  if (onboarder_ && !queued.skip_prefix_hits) {
    // Planning is side-effect-free; its keys tell the tiers what will be needed.
    const AdmissionPlan plan = cache_->PlanAdmission(MakeAdmission(queued));
    const size_t from = static_cast<size_t>(plan.hit_blocks);
    if (plan.hashes.size() > from) onboarder_->Prefetch(id, std::span(plan.hashes).subspan(from));
  }
  return Status::Ok();
}

AdmissionRequest Scheduler::MakeAdmission(const ScheduledRequest& r) const {
  AdmissionRequest a;
  a.tokens = r.tokens;
  a.keys = r.keys;
  a.retention = r.retention;
  a.skip_prefix_hits = r.skip_prefix_hits;
  // Room the caller set aside for the request's tokens (the simulator: prompt
  // and output), so the cache's copy does not regrow as it decodes either.
  a.token_capacity = static_cast<int32_t>(std::min<size_t>(r.tokens.capacity(), INT32_MAX / 2));
  // A recomputed request's generated tokens keep the generated-token priority.
  const int32_t n = static_cast<int32_t>(r.tokens.size());
  if (n > r.prompt_len && r.retention.decode_priority) {
    a.retention.ranges.push_back({{r.prompt_len, n}, *r.retention.decode_priority, r.retention.decode_duration});
  }
  return a;
}

bool Scheduler::Admit(ScheduledRequest& r) {
  const AdmissionRequest a = MakeAdmission(r);
  AdmissionPlan plan = cache_->PlanAdmission(a);
  if (!plan.fits) return false;
  const BlockHash last_hit = plan.hit_blocks > 0 ? plan.hashes[plan.hit_blocks - 1] : BlockHash{};
  const std::vector<BlockHash> keys = onboarder_ ? plan.hashes : std::vector<BlockHash>{};
  auto seq = cache_->Admit(a, std::move(plan));
  if (!seq.ok()) return false;  // the pool moved (cannot between plan and admit here, but stay safe)
  r.seq = *seq;
  r.in_cache = static_cast<int32_t>(r.tokens.size());
  r.computed = cache_->Info(*seq)->hit_tokens;
  if (r.cached_tokens < 0) {
    r.cached_tokens = std::min(r.computed, r.prompt_len);
    r.device_hit_tokens = r.cached_tokens;
    if (r.cached_tokens > 0) r.hit_prefix = last_hit;
  }
  if (onboarder_ && !r.skip_prefix_hits) {
    // Never the block holding the last token: its logits must be computed.
    const int32_t B = cache_->block_size();
    const int32_t first = r.computed / B;
    const int32_t last = std::min<int32_t>(static_cast<int32_t>(keys.size()),
                                           (static_cast<int32_t>(r.tokens.size()) - 1) / B);
    if (last > first) {
      const std::span<const BlockId> table = cache_->BlockTable(*r.seq);
      const size_t n = static_cast<size_t>(last - first);
      if (onboarder_->Start(r.id, std::span(keys).subspan(static_cast<size_t>(first), n),
                            table.subspan(static_cast<size_t>(first), n)) > 0) {
        r.state = RequestState::kOnboarding;
        onboarding_.push_back(r.id);
        return true;
      }
    }
  }
  r.state = RequestState::kRunning;
  running_.push_back(&r);
  return true;
}

bool Scheduler::PreemptFor(RequestId keep, std::vector<ScheduledChunk>* plan) {
  // Victim: lowest priority, then the newest (admitted last).
  ScheduledRequest* found = nullptr;
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
    if ((*it)->id == keep) continue;
    if (found == nullptr || (*it)->priority < found->priority) found = *it;
  }
  if (found == nullptr) return false;
  ScheduledRequest& v = *found;
  const RequestId victim = v.id;
  cache_->Release(*v.seq).IgnoreError();  // the sequence is live: cannot fail
  v.seq.reset();
  v.computed = v.in_cache = 0;
  v.state = RequestState::kWaiting;
  ++v.preemptions;
  ++preemptions_;
  RemoveRunning(victim);
  waiting_.push_front(victim);
  std::erase_if(*plan, [&](const ScheduledChunk& c) { return c.id == victim; });
  return true;
}

void Scheduler::FinishOnboarding() {
  for (size_t i = 0; i < onboarding_.size();) {
    ScheduledRequest& r = requests_.at(onboarding_[i]);
    const std::optional<int32_t> arrived = onboarder_->Poll(r.id);
    if (!arrived) {
      ++i;
      continue;
    }
    if (*arrived > 0) {
      const int32_t B = cache_->block_size();
      const int32_t before = r.computed;
      r.computed = (r.computed / B + *arrived) * B;
      // The arrived blocks enter the device prefix cache as if computed.
      Status s = cache_->MarkComputed(*r.seq, r.computed);
      KVSTACK_CHECK(s.ok(), "request %lu: %s", static_cast<unsigned long>(r.id), s.ToString().c_str());
      const int32_t prompt_part = std::max(0, std::min(r.computed, r.prompt_len) - before);
      r.onboarded_tokens += prompt_part;
      // Served from the cache's tiers rather than computed: a cached token.
      if (r.preemptions == 0) r.cached_tokens += prompt_part;
    }
    r.state = RequestState::kRunning;
    running_.push_back(&r);
    onboarding_.erase(onboarding_.begin() + static_cast<ptrdiff_t>(i));
  }
}

void Scheduler::ReleaseDrained() {
  std::erase_if(draining_, [&](const Draining& d) {
    if (onboarder_->Draining(d.id)) return false;
    cache_->Release(d.seq).IgnoreError();  // held since Finish(): cannot fail
    return true;
  });
}

bool Scheduler::DefersToTail(const ScheduledRequest& r, int64_t tokens) const {
  const int64_t B = cache_->block_size();
  return !r.forked && r.in_cache % B != 0 && r.in_cache / B == tokens / B;
}

std::vector<ScheduledChunk> Scheduler::Schedule() {
  std::vector<ScheduledChunk> plan;
  plan.reserve(running_.size() + 1);
  int32_t budget = options_.max_batch_tokens;
  ++steps_;
  if (onboarder_) {
    onboarder_->Progress();
    ReleaseDrained();
    FinishOnboarding();
  }

  // Running requests, oldest first. A copy: preemption edits running_.
  running_copy_.assign(running_.begin(), running_.end());
  for (ScheduledRequest* rp : running_copy_) {
    if (budget == 0) break;
    if (rp->state != RequestState::kRunning) continue;  // preempted meanwhile
    ScheduledRequest& r = *rp;
    const RequestId id = r.id;
    const int32_t n = static_cast<int32_t>(r.tokens.size());
    // Sampled tokens not yet in the cache need slots (unless they and this
    // step's KV stay inside the cache's partial last block).
    if (r.in_cache < n && !(r.computed + 1 == n && DefersToTail(r, n))) {
      std::span<const Token> add(r.tokens.data() + r.in_cache, static_cast<size_t>(n - r.in_cache));
      Status s = cache_->Append(*r.seq, add);
      while (s.code() == StatusCode::kResourceExhausted && PreemptFor(id, &plan)) s = cache_->Append(*r.seq, add);
      if (!s.ok()) {
        // Nobody else to preempt: this request waits, recomputed later.
        ScheduledRequest& self = r;
        cache_->Release(*self.seq).IgnoreError();
        self.seq.reset();
        self.computed = self.in_cache = 0;
        self.state = RequestState::kWaiting;
        ++self.preemptions;
        ++preemptions_;
        RemoveRunning(id);
        waiting_.push_front(id);
        continue;
      }
      r.in_cache = n;
    }
    const int32_t count = std::min(budget, n - r.computed);
    if (count <= 0) continue;
    plan.push_back({id, r.computed, count, r.computed + count == n, &r});
    budget -= count;
  }

  // Waiting requests, in order, while budget, slots and blocks last.
  while (budget > 0 && !waiting_.empty() &&
         static_cast<int32_t>(running_.size() + onboarding_.size()) < options_.max_running) {
    ScheduledRequest& r = requests_.at(waiting_.front());
    if (!Admit(r)) break;  // first come, first served: no overtaking
    waiting_.pop_front();
    if (r.state == RequestState::kOnboarding) continue;  // runs once its blocks arrive
    const int32_t n = static_cast<int32_t>(r.tokens.size());
    const int32_t count = std::min(budget, n - r.computed);
    plan.push_back({r.id, r.computed, count, r.computed + count == n, &r});
    budget -= count;
  }
  return plan;
}

void Scheduler::Computed(const ScheduledChunk& c) {
  ScheduledRequest& r = *c.request;
  r.computed = c.begin + c.count;
  if (r.in_cache < r.computed) return;  // a decoding token Schedule() left out of the cache (DefersToTail)
  Status s = cache_->MarkComputed(*r.seq, r.computed);
  KVSTACK_CHECK(s.ok(), "request %lu: %s", static_cast<unsigned long>(c.id), s.ToString().c_str());
}

void Scheduler::AppendToken(RequestId id, Token token) { requests_.at(id).tokens.push_back(token); }

void Scheduler::Fork(RequestId parent, RequestId child) {
  const ScheduledRequest& p = requests_.at(parent);
  KVSTACK_CHECK(p.state == RequestState::kRunning && p.seq, "fork: request %lu is not running",
                static_cast<unsigned long>(parent));
  KVSTACK_CHECK(!requests_.count(child), "fork: request %lu exists", static_cast<unsigned long>(child));
  auto seq = cache_->Fork(*p.seq);
  KVSTACK_CHECK(seq.ok(), "fork of request %lu: %s", static_cast<unsigned long>(parent),
                seq.status().ToString().c_str());
  // Both now share blocks: their appends copy a shared tail at once.
  requests_.at(parent).forked = true;
  ScheduledRequest c = p;
  c.id = child;
  c.seq = *seq;
  c.forked = true;
  running_.push_back(&requests_.emplace(child, std::move(c)).first->second);
}

Status Scheduler::Finish(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return NotFound(fmt::format("request {} is not known", id));
  ScheduledRequest& r = it->second;
  if (r.state == RequestState::kOnboarding) {
    onboarder_->Abandon(id);
    std::erase(onboarding_, id);
    if (onboarder_->Draining(id)) {
      // Its reads still write into its blocks: they are not reused before
      // the reads stop (ReleaseDrained), and nothing waits for them here.
      draining_.push_back({id, *r.seq});
      r.seq.reset();
    }
  }
  if (r.seq) {
    cache_->Release(*r.seq).IgnoreError();
    r.seq.reset();
  }
  // Only the queue the request is in: a long waiting queue is not scanned
  // for every request that finishes running.
  if (r.state == RequestState::kWaiting) {
    std::erase(waiting_, id);
  } else {
    RemoveRunning(id);
  }
  requests_.erase(it);
  return Status::Ok();
}

Scheduler::Stretch Scheduler::PlanStretch(int64_t max_steps, StepsLeft steps_left) const {
  Stretch st;
  if (max_steps < 1 || running_.empty() || !onboarding_.empty() || !draining_.empty() ||
      (onboarder_ && onboarder_->Busy())) {
    return st;
  }
  // One pass over the running requests. Prompt blocks were reserved at
  // admission; decoding requests take more: after t steps, the tokens up
  // to the last sampled one but t - 1 later. Per decoding request: tokens
  // known now (the last one not yet in the cache), blocks held, and 1 if
  // the next append copies a shared tail first; the search below is then
  // arithmetic.
  needs_.clear();
  const int64_t B = cache_->block_size();
  int64_t left = std::numeric_limits<int64_t>::max();  // prompt tokens to go
  for (const ScheduledRequest* rp : running_) {
    const ScheduledRequest& r = *rp;
    const int32_t n = static_cast<int32_t>(r.tokens.size());
    if (r.computed + 1 == n) {
      if (st.prompt) return st;  // it would wait behind the prompt's chunk
      ++st.decoding;
      max_steps = std::min(max_steps, steps_left(r));
      if (r.forked) {
        const Result<SequenceInfo> info = cache_->Info(*r.seq);
        // A shared tail is copied by the next append, if there is one to make.
        const int32_t copy = n > info->num_tokens && info->tail_shared ? 1 : 0;
        needs_.push_back({n, info->num_blocks, copy});
      } else {
        // Unshared, it holds the blocks its tokens fill (admission reserves
        // nothing past the prompt): read without a lookup.
        needs_.push_back({n, (r.in_cache + B - 1) / B, 0});
      }
    } else if (!st.prompt) {
      st.prompt = r.id;
      left = n - r.computed;
    }
    // A later prompt gets nothing while the first takes the budget.
  }
  if (max_steps < 1) return {};
  const int64_t budget = options_.max_batch_tokens - st.decoding;
  if (budget < 0 || (st.prompt && budget == 0)) return {};  // some would wait a step: not alike
  if (st.prompt) {
    st.chunk = static_cast<int32_t>(budget);
    // The prompt must not reach its last token (that chunk samples).
    max_steps = std::min<int64_t>(max_steps, (left - 1) / budget);
    if (max_steps < 1) return {};
  } else if (!waiting_.empty() && budget > 0 && static_cast<int32_t>(running_.size()) < options_.max_running &&
             cache_->PlanAdmission(MakeAdmission(requests_.at(waiting_.front()))).fits) {
    return {};  // the next step admits
  }
  const int64_t available = cache_->num_available_blocks();
  const auto fits = [&](int64_t steps) {
    int64_t blocks = 0;
    for (const StretchNeed& n : needs_) {
      blocks += std::max<int64_t>(0, (n.known - 1 + steps + B - 1) / B - n.blocks) + n.copy;
      if (blocks > available) return false;
    }
    return true;
  };
  max_steps = std::min<int64_t>(max_steps, INT32_MAX / 4);
  if (fits(max_steps)) {  // the common case: the pool holds the whole run
    st.steps = max_steps;
    return st;
  }
  if (!fits(1)) return {};
  int64_t lo = 1, hi = max_steps;  // the blocks needed grow with the steps
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  st.steps = lo;
  return st;
}

void Scheduler::RunStretch(const Stretch& st, Sampler sample) {
  if (st.steps < 1) return;
  steps_ += static_cast<uint64_t>(st.steps);
  if (onboarder_) onboarder_->Progress();
  for (ScheduledRequest* rp : running_) {
    ScheduledRequest& r = *rp;
    const RequestId id = r.id;
    if (st.prompt && id == *st.prompt) {
      r.computed += static_cast<int32_t>(st.steps * st.chunk);
      Status s = cache_->MarkComputed(*r.seq, r.computed);
      KVSTACK_CHECK(s.ok(), "stretch of request %lu: %s", static_cast<unsigned long>(id), s.ToString().c_str());
      continue;
    }
    if (r.computed + 1 != static_cast<int32_t>(r.tokens.size())) continue;  // a later prompt, waiting for budget
    const int64_t end = r.computed + st.steps;  // the last sample stays out, as after a step
    sample(id, st.steps, r.tokens);
    KVSTACK_CHECK(static_cast<int64_t>(r.tokens.size()) == end + 1, "stretch of request %lu: sampler gave %zu tokens",
                  static_cast<unsigned long>(id), r.tokens.size());
    r.computed = static_cast<int32_t>(end);
    if (DefersToTail(r, end)) continue;
    const Status s =
        cache_->Extend(*r.seq, std::span<const Token>(r.tokens.data(), static_cast<size_t>(end)), r.computed);
    KVSTACK_CHECK(s.ok(), "stretch of request %lu: %s", static_cast<unsigned long>(id), s.ToString().c_str());
    r.in_cache = static_cast<int32_t>(end);
  }
}

void Scheduler::RemoveRunning(RequestId id) {
  std::erase_if(running_, [id](const ScheduledRequest* r) { return r->id == id; });
}

std::vector<RequestId> Scheduler::running() const {
  std::vector<RequestId> ids;
  ids.reserve(running_.size());
  for (const ScheduledRequest* r : running_) ids.push_back(r->id);
  return ids;
}

const ScheduledRequest* Scheduler::Find(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second;
}

std::span<const BlockId> Scheduler::BlockTable(RequestId id) const { return cache_->BlockTable(*requests_.at(id).seq); }

SchedulerStats Scheduler::stats() const {
  return {preemptions_, steps_, static_cast<int32_t>(running_.size()), static_cast<int32_t>(waiting_.size()),
          static_cast<int32_t>(onboarding_.size())};
}

}  // namespace kvstack::engine
