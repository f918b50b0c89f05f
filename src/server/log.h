// Log lines of the server: one line per call, written whole even when many
// threads log at once.
//
// Thread safety: a Log may be called from any thread.
#pragma once

#include <functional>
#include <string_view>

namespace kvstack::server {

using Log = std::function<void(std::string_view line)>;

// Writes each line to stderr with a UTC timestamp in front.
Log StderrLog();

}  // namespace kvstack::server
