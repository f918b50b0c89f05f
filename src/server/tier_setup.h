// The server's tiers: turns ServerOptions::Tiers into the factory the engine
// calls once it knows its block size and model identity (EngineOptions::
// make_tiers). Empty when no tier is asked for.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "kvstack/server.h"
#include "kvstack/tier_chain.h"
#include "server/log.h"

namespace kvstack::server {

using TierFactory =
    std::function<Result<std::unique_ptr<TierChain>>(size_t block_bytes, const std::string& model_identity)>;

// REQUIRES: the options passed ValidateOptions(). The factory's errors name
// the option (a host tier too small for one block, a disk directory that
// cannot be opened).
TierFactory MakeTierFactory(const ServerOptions::Tiers& tiers, Log log);

}  // namespace kvstack::server
