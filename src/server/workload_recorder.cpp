#include "server/workload_recorder.h"

#include <algorithm>

namespace kvstack::server {

HitShare HitShareOf(int32_t prompt_tokens, int32_t cached_tokens) {
  if (cached_tokens <= 0) return HitShare::kNone;
  if (int64_t{cached_tokens} * 2 < prompt_tokens) return HitShare::kUnderHalf;
  return HitShare::kHalfOrMore;
}

std::string_view HitShareName(HitShare s) {
  switch (s) {
    case HitShare::kNone: return "none";
    case HitShare::kUnderHalf: return "under_half";
    case HitShare::kHalfOrMore: return "half_or_more";
  }
  return "none";
}

WorkloadRecorder::WorkloadRecorder(const WorkloadOptions& o)
    : options_(o),
      prompt_tokens_(o.window, o.max_window_samples),
      ttft_s_{SlidingWindow(o.window, o.max_window_samples), SlidingWindow(o.window, o.max_window_samples),
              SlidingWindow(o.window, o.max_window_samples)},
      hot_(o.max_prefixes) {}

void WorkloadRecorder::Record(const RequestMetrics& m, const std::string& tenant) {
  const Micros at = m.finished_at > 0 ? m.finished_at : std::max(m.first_token_at, m.queued_at);
  std::lock_guard<std::mutex> lock(mu_);
  ++recorded_;
  prompt_tokens_.Add(at, m.prompt_tokens);
  if (m.first_token_at > 0 && m.first_token_at >= m.queued_at) {
    const HitShare share = HitShareOf(m.prompt_tokens, m.cached_tokens);
    ttft_s_[static_cast<int>(share)].Add(at, double(m.first_token_at - m.queued_at) / 1e6);
  }
  if (m.cached_tokens > 0) hot_.Record(m.hit_prefix, m.cached_tokens, tenant, at);

  const Micros start = at - at % options_.bucket;
  if (timeline_.empty() || timeline_.back().start < start) {
    timeline_.push_back(TimelineBucket{.start = start});
    while (timeline_.size() > options_.max_buckets) timeline_.pop_front();
  }
  // Requests finish nearly in time order; a late one lands in its bucket if
  // still kept, else in the oldest.
  auto it = std::find_if(timeline_.rbegin(), timeline_.rend(), [&](const TimelineBucket& b) { return b.start <= start; });
  TimelineBucket& b = it != timeline_.rend() ? *it : timeline_.front();
  b.requests += 1;
  b.prompt_tokens += static_cast<uint64_t>(std::max(m.prompt_tokens, 0));
  b.cached_tokens += static_cast<uint64_t>(std::max(m.cached_tokens, 0));
  b.generated_tokens += static_cast<uint64_t>(std::max(m.generated_tokens, 0));
}

WorkloadRecorder::Snapshot WorkloadRecorder::Get(Micros now, size_t top_prefixes) const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.now = now;
  s.window_s = double(options_.window) / 1e6;
  s.bucket_s = double(options_.bucket) / 1e6;
  s.prompt_tokens = prompt_tokens_.Get(now);
  for (int i = 0; i < kNumHitShares; ++i) s.ttft_s[i] = ttft_s_[i].Get(now);
  s.hot_prefixes = hot_.Top(top_prefixes);
  s.timeline.assign(timeline_.begin(), timeline_.end());
  s.recorded = recorded_;
  return s;
}

}  // namespace kvstack::server
