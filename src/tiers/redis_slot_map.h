// Reading a Redis Cluster's slot map (CLUSTER SLOTS) from one node, and the
// redirections (MOVED, ASK) a node answers with when a key's slot is served
// elsewhere. Used by the Redis tier in cluster mode.
// Thread safety: free functions, no shared state.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/clock.h"
#include "tiers/redis_topology.h"

struct redisReply;

namespace kvstack::tiers_internal {

// Connects to `node`, asks CLUSTER SLOTS and parses the reply. Nothing, with
// `*error` saying why, when the node cannot be reached, is not in cluster
// mode, or answers something that is not a slot map.
std::optional<std::vector<RedisSlotRange>> ReadClusterSlots(const RedisNodeAddress& node, Micros connect_timeout,
                                                            Micros reply_timeout, std::string* error);

// The slot ranges of a CLUSTER SLOTS reply; nothing if its shape is wrong.
std::optional<std::vector<RedisSlotRange>> ParseClusterSlots(const redisReply* reply);

// A redirection error: "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"
// (an empty host means the node that answered: `self_host`).
struct RedisRedirect {
  bool ask = false;  // ASK: a one-off, sent after ASKING; MOVED: the slot moved for good
  uint16_t slot = 0;
  RedisNodeAddress to;
};
std::optional<RedisRedirect> ParseRedirect(std::string_view error, const std::string& self_host);

}  // namespace kvstack::tiers_internal
