// FaultLog: logs each kind of fault once, then at most once a minute with a
// count of the ones suppressed in between, so a dead server or a full disk
// does not flood the log.
// Thread safety: safe from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "kvstack/tier.h"

namespace kvstack::tiers_internal {

class FaultLog {
 public:
  // `sink` nullptr: stderr. `prefix` starts each line ("disk tier /x: ").
  FaultLog(TierLogSink sink, std::string prefix);

  // `kind` groups faults for rate limiting ("enospc", "corrupt", "server a:1").
  void Report(std::string_view kind, std::string_view message);
  // A one-time note that is not a fault (e.g. "O_DIRECT unsupported").
  void Note(std::string_view message);

 private:
  struct Kind {
    int64_t last_logged_us = 0;
    uint64_t suppressed = 0;
  };
  TierLogSink sink_;
  std::string prefix_;
  std::mutex mu_;
  std::map<std::string, Kind, std::less<>> kinds_;
};

}  // namespace kvstack::tiers_internal
