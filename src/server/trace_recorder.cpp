#include "server/trace_recorder.h"

namespace kvstack::server {

Result<std::unique_ptr<TraceRecorder>> TraceRecorder::Open(const std::string& path, Micros origin_us, Log log) {
  auto writer = sim::TraceWriter::Open(path, origin_us);
  if (!writer.ok()) return writer.status();
  return std::unique_ptr<TraceRecorder>(new TraceRecorder(std::move(writer).value(), std::move(log)));
}

void TraceRecorder::Record(const TracedPrompt& p, const RequestMetrics& m) {
  sim::RecordedRequest r;
  r.arrival_us = m.queued_at;
  r.session = p.session;
  r.tenant = p.tenant;
  r.prompt = p.tokens;
  r.output_tokens = m.generated_tokens;
  for (const RetentionRange& range : p.retention.ranges) {
    r.ranges.push_back({.begin = range.tokens.begin, .end = range.tokens.end, .priority = range.priority});
  }
  r.request_priority = p.priority;
  if (m.first_token_at > 0 && m.first_token_at >= m.queued_at) r.measured_ttft_us = m.first_token_at - m.queued_at;
  r.measured_cached_tokens = m.cached_tokens;
  std::lock_guard<std::mutex> lock(mu_);
  if (!writer_) return;
  if (Status s = writer_->Append(r); !s.ok()) {
    log_("--record-trace: " + s.message() + "; recording stops, serving goes on");
    writer_.reset();
  }
}

}  // namespace kvstack::server
