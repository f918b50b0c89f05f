// TraceRecorder: `kvstack serve --record-trace FILE` writes every finished
// request as a line of kvstack's trace format (kvstack/trace.h): arrival,
// tenant, session, prompt token ids, retention ranges, output length, and the
// TTFT and cached tokens the server measured, so `kvstack sim` can replay the
// real workload and be checked against it. The tenant is its label, never its
// cache_salt: labels are as distinct as salts, so the replay still keeps
// tenants apart.
//
// A write failure (disk full) stops recording with one log line; serving goes
// on. Thread safety: thread-safe (one mutex around the writer).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvstack/engine.h"
#include "kvstack/trace.h"
#include "server/log.h"

namespace kvstack::server {

// What a request's trace line needs that only its submission knows.
struct TracedPrompt {
  std::vector<Token> tokens;
  RetentionSpec retention;
  Priority priority = kDefaultPriority;
  std::string session;
  std::string tenant;  // the tenant's label (tenant_label.h): a trace never holds a salt
};

class TraceRecorder {
 public:
  // Unavailable naming the file when it cannot be created. t_ms counts from
  // origin_us, on the clock of RequestMetrics (TraceWriter::Open).
  static Result<std::unique_ptr<TraceRecorder>> Open(const std::string& path, Micros origin_us, Log log);

  void Record(const TracedPrompt& prompt, const RequestMetrics& metrics);

 private:
  TraceRecorder(std::unique_ptr<sim::TraceWriter> writer, Log log) : writer_(std::move(writer)), log_(std::move(log)) {}
  std::mutex mu_;
  std::unique_ptr<sim::TraceWriter> writer_;  // GUARDED_BY(mu_); null once a write failed
  Log log_;
};

}  // namespace kvstack::server
