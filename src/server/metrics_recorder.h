// MetricsRecorder: per-request latency and size histograms for GET /metrics,
// fed by every finished request (completion_routes.cpp's RecordFinished).
//
//   time to first token   first_token_at - queued_at, seconds
//   inter-token latency   per request, the mean gap between its tokens:
//                         (finished_at - first_token_at) / (generated - 1),
//                         seconds; only requests with 2+ tokens
//   prompt tokens, generation tokens per request
// Bucket bounds follow vLLM's for the same metrics.
// Thread safety: thread-safe (one mutex, never held while calling out).
#pragma once

#include <mutex>

#include "kvstack/engine.h"
#include "kvstack/histogram.h"

namespace kvstack::server {

class MetricsRecorder {
 public:
  struct Snapshot {
    Histogram time_to_first_token_s;
    Histogram inter_token_latency_s;
    Histogram prompt_tokens;
    Histogram generation_tokens;
  };

  MetricsRecorder();
  // Records one finished request (cancelled ones too: their tokens were
  // served). A request with no first token adds no TTFT.
  void Record(const RequestMetrics& m);
  Snapshot Get() const;

 private:
  mutable std::mutex mu_;
  Snapshot h_;  // GUARDED_BY(mu_)
};

}  // namespace kvstack::server
