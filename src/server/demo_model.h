// The demo model: what `kvstack serve` runs when no --model is given. The
// "stories" shape (6 layers, 288 wide, the stories15M shape) with random
// weights, generated once into a cache folder and reused after. Its output
// is gibberish; it exists so the server, the API and the KV cache can be
// tried without downloading anything.
// Thread safety: one caller at a time per folder (the write is atomic, so a
// race costs a second generation, never a torn file).
#pragma once

#include <string>

#include "kvstack/status.h"
#include "server/log.h"

namespace kvstack::server {

inline constexpr char kDemoModelName[] = "kvstack-demo-stories";

// The demo model's path in `cache_dir`, generating it there first if absent.
// Fails naming the folder when it cannot be created or written.
Result<std::string> EnsureDemoModel(const std::string& cache_dir, const Log& log);

}  // namespace kvstack::server
