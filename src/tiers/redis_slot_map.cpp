#include "tiers/redis_slot_map.h"

#include <hiredis/hiredis.h>

#include <charconv>

namespace kvstack::tiers_internal {
namespace {

std::optional<RedisNodeAddress> ParseNode(const redisReply* r) {
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 2) return std::nullopt;
  const redisReply* host = r->element[0];
  const redisReply* port = r->element[1];
  if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER) return std::nullopt;
  if (port->integer < 1 || port->integer > 65535) return std::nullopt;
  return RedisNodeAddress{std::string(host->str, host->len), static_cast<int>(port->integer)};
}

}  // namespace

std::optional<std::vector<RedisSlotRange>> ParseClusterSlots(const redisReply* reply) {
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) return std::nullopt;
  std::vector<RedisSlotRange> out;
  for (size_t i = 0; i < reply->elements; ++i) {
    const redisReply* e = reply->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) return std::nullopt;
    if (e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER) return std::nullopt;
    RedisSlotRange range;
    range.first = static_cast<int>(e->element[0]->integer);
    range.last = static_cast<int>(e->element[1]->integer);
    auto master = ParseNode(e->element[2]);
    if (!master) return std::nullopt;
    range.master = *master;
    for (size_t k = 3; k < e->elements; ++k) {
      auto replica = ParseNode(e->element[k]);
      if (!replica) return std::nullopt;
      range.replicas.push_back(*replica);
    }
    out.push_back(std::move(range));
  }
  return out;
}

std::optional<std::vector<RedisSlotRange>> ReadClusterSlots(const RedisNodeAddress& node, Micros connect_timeout,
                                                            Micros reply_timeout, std::string* error) {
  const timeval ct{static_cast<time_t>(connect_timeout / 1'000'000),
                   static_cast<suseconds_t>(connect_timeout % 1'000'000)};
  const timeval rt{static_cast<time_t>(reply_timeout / 1'000'000), static_cast<suseconds_t>(reply_timeout % 1'000'000)};
  redisContext* c = redisConnectWithTimeout(node.host.c_str(), node.port, ct);
  if (c == nullptr || c->err != 0) {
    *error = c != nullptr ? c->errstr : "out of memory";
    if (c != nullptr) redisFree(c);
    return std::nullopt;
  }
  redisSetTimeout(c, rt);
  auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
  std::optional<std::vector<RedisSlotRange>> out;
  if (r == nullptr) {
    *error = c->errstr;
  } else if (r->type == REDIS_REPLY_ERROR) {
    *error = std::string(r->str, r->len);
  } else {
    out = ParseClusterSlots(r);
    if (!out) *error = "CLUSTER SLOTS reply has an unexpected shape";
  }
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return out;
}

std::optional<RedisRedirect> ParseRedirect(std::string_view error, const std::string& self_host) {
  RedisRedirect out;
  if (error.starts_with("MOVED ")) {
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    out.ask = true;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const size_t space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  unsigned slot = 0;
  const std::string_view slot_text = error.substr(0, space);
  auto [p, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
  if (ec != std::errc() || p != slot_text.data() + slot_text.size() || slot >= kRedisClusterSlots) {
    return std::nullopt;
  }
  out.slot = static_cast<uint16_t>(slot);
  const std::string_view address = error.substr(space + 1);
  const size_t colon = address.rfind(':');  // the last one: IPv6 hosts have colons
  if (colon == std::string_view::npos) return std::nullopt;
  int port = 0;
  const std::string_view port_text = address.substr(colon + 1);
  auto [q, ec2] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec2 != std::errc() || q != port_text.data() + port_text.size() || port < 1 || port > 65535) {
    return std::nullopt;
  }
  out.to.host = colon == 0 ? self_host : std::string(address.substr(0, colon));
  out.to.port = port;
  return out;
}

}  // namespace kvstack::tiers_internal
