// Checks of ServerOptions, with messages in the command line's terms.
// Thread safety: pure.
#pragma once

#include <string_view>

#include "kvstack/server.h"
#include "kvstack/tiers.h"

namespace kvstack::server {

// OK, or InvalidArgument naming the flag and its value ("--port 70000: must be
// from 0 to 65535 (0 picks a free port)").
Status ValidateOptions(const ServerOptions& options);

// "HOST:PORT" of --redis (or of the flag named). InvalidArgument names the
// flag, quotes the text and says why.
Result<RedisServerAddress> ParseRedisAddress(const std::string& text, std::string_view flag = "--redis");

// Handler threads for httplib: enough for every request that may be in flight
// (each waits on its own) plus a few for quick replies (health, 429s).
int HttpThreads(const ServerOptions& options);

}  // namespace kvstack::server
