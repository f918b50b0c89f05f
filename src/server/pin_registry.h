// PinRegistry: the pins the server's clients asked for (POST /v1/cache/pin),
// by id, with their time to live.
//
// Each entry owns a PrefixPin (the blocks stay pinned while it lives) and the
// facts a client sees: how many tokens and blocks, when it expires. Entries
// leave by Remove() (DELETE /v1/cache/pin/{id}), by ExpireDue() once their TTL
// has passed, or by Clear() before the cache goes away.
//
// Thread safety: none. The engine thread owns the registry, as it owns the
// KvCache whose blocks the pins hold. REQUIRES: the KvCache outlives every
// entry (Clear() first).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvstack/clock.h"
#include "kvstack/kv_cache.h"
#include "server/tenant_label.h"

namespace kvstack::server {

struct PinInfo {
  std::string id;                   // "pin-N"
  std::string tenant;               // the tenant's label ("" = no salt), never its salt
  int32_t tokens = 0;               // the prompt's tokens
  int32_t blocks = 0;               // full blocks pinned
  std::optional<Micros> expires_at;  // on the registry's clock; unset: never
};

class PinRegistry {
 public:
  explicit PinRegistry(const Clock* clock) : clock_(clock) {}

  // Pins every full block of `tokens` (all must be cached) and records it.
  // ttl unset: until removed. Fails as KvCache::Pin does.
  // `tenant` is keys.cache_salt's TenantId: the pin shows its label, and
  // only a caller proving the same salt (its owner digest) may see or
  // release it.
  Result<PinInfo> Add(KvCache& cache, std::span<const Token> tokens, const ExtraKeys& keys,
                      std::optional<Micros> ttl, const TenantId& tenant = {});
  // NotFound naming the id when there is no such pin (never was, removed, or
  // expired), or when `owner` is given and the pin is another tenant's: the
  // same answer, so a caller cannot tell another tenant's pin exists.
  // nullopt `owner`: any pin (the operator).
  Status Remove(const std::string& id, const std::optional<std::string>& owner = std::nullopt);
  // Releases every pin whose expiry is at or before now; returns their ids.
  std::vector<std::string> ExpireDue();
  // The earliest expiry among the pins, if any has one.
  std::optional<Micros> NextExpiry() const;
  // Every pin, or with `owner` only that tenant's.
  std::vector<PinInfo> List(const std::optional<std::string>& owner = std::nullopt) const;
  size_t size() const { return entries_.size(); }
  void Clear() { entries_.clear(); }

 private:
  struct Entry {
    PinInfo info;
    std::string owner;  // TenantId::owner of the salt it was made under
    PrefixPin pin;
  };
  const Clock* clock_;
  uint64_t next_id_ = 1;
  std::map<std::string, Entry> entries_;
};

}  // namespace kvstack::server
