#include "server/log.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <string>

#include <fmt/format.h>

namespace kvstack::server {

Log StderrLog() {
  return [](std::string_view line) {
    // One mutex for the process: lines from several servers in one process
    // (tests) must not interleave either.
    static std::mutex mu;
    const auto now = std::chrono::system_clock::now();
    const std::time_t secs = std::chrono::system_clock::to_time_t(now);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    const std::string text = fmt::format("{}.{:03d}Z {}\n", stamp, static_cast<int>(millis), line);
    std::lock_guard<std::mutex> lock(mu);
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  };
}

}  // namespace kvstack::server
