#include "server/metrics_recorder.h"

namespace kvstack::server {
namespace {

// vLLM's buckets for vllm:time_to_first_token_seconds.
std::vector<double> TtftBounds() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
          1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}

// vLLM's buckets for vllm:inter_token_latency_seconds.
std::vector<double> ItlBounds() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}

}  // namespace

MetricsRecorder::MetricsRecorder()
    : h_{.time_to_first_token_s = Histogram(TtftBounds()),
         .inter_token_latency_s = Histogram(ItlBounds()),
         .prompt_tokens = Histogram::Decades125(1, 1e6),
         .generation_tokens = Histogram::Decades125(1, 1e6)} {}

void MetricsRecorder::Record(const RequestMetrics& m) {
  std::lock_guard<std::mutex> lock(mu_);
  h_.prompt_tokens.Observe(m.prompt_tokens);
  h_.generation_tokens.Observe(m.generated_tokens);
  if (m.first_token_at > 0 && m.first_token_at >= m.queued_at) {
    h_.time_to_first_token_s.Observe(double(m.first_token_at - m.queued_at) / 1e6);
  }
  if (m.generated_tokens >= 2 && m.first_token_at > 0 && m.finished_at >= m.first_token_at) {
    h_.inter_token_latency_s.Observe(double(m.finished_at - m.first_token_at) / 1e6 / (m.generated_tokens - 1));
  }
}

MetricsRecorder::Snapshot MetricsRecorder::Get() const {
  std::lock_guard<std::mutex> lock(mu_);
  return h_;
}

}  // namespace kvstack::server
