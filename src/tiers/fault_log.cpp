#include "tiers/fault_log.h"

#include <cstdio>

#include <fmt/format.h>

#include "tiers/tier_stats.h"

namespace kvstack::tiers_internal {
namespace {
constexpr int64_t kInterval = 60'000'000;  // at most one line per kind per minute
}

FaultLog::FaultLog(TierLogSink sink, std::string prefix) : sink_(std::move(sink)), prefix_(std::move(prefix)) {
  if (!sink_) {
    sink_ = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data()); };
  }
}

void FaultLog::Report(std::string_view kind, std::string_view message) {
  const int64_t now = WallMicros();
  std::string line;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = kinds_.find(kind);
    if (it == kinds_.end()) it = kinds_.emplace(std::string(kind), Kind{}).first;
    Kind& k = it->second;
    if (k.last_logged_us != 0 && now - k.last_logged_us < kInterval) {
      ++k.suppressed;
      return;
    }
    line = k.suppressed == 0
               ? fmt::format("{}{}", prefix_, message)
               : fmt::format("{}{} ({} more like it not logged)", prefix_, message, k.suppressed);
    k.last_logged_us = now;
    k.suppressed = 0;
  }
  sink_(line);
}

void FaultLog::Note(std::string_view message) { sink_(fmt::format("{}{}", prefix_, message)); }

}  // namespace kvstack::tiers_internal
