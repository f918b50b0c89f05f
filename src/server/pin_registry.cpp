#include "server/pin_registry.h"

#include <fmt/format.h>

namespace kvstack::server {

Result<PinInfo> PinRegistry::Add(KvCache& cache, std::span<const Token> tokens, const ExtraKeys& keys,
                                 std::optional<Micros> ttl, const TenantId& tenant) {
  auto pin = cache.Pin(tokens, keys);
  if (!pin.ok()) return pin.status();
  PinInfo info;
  info.id = fmt::format("pin-{}", next_id_++);
  info.tokens = static_cast<int32_t>(tokens.size());
  info.blocks = pin->num_blocks();
  info.tenant = tenant.label;
  if (ttl) info.expires_at = clock_->Now() + *ttl;
  entries_.emplace(info.id, Entry{info, tenant.owner, std::move(pin).value()});
  return info;
}

Status PinRegistry::Remove(const std::string& id, const std::optional<std::string>& owner) {
  auto it = entries_.find(id);
  if (it == entries_.end() || (owner && !SameTenant(it->second.owner, *owner))) {
    return NotFound(fmt::format(
        "pin '{}' does not exist for this cache_salt (never created, deleted, expired, or made under another salt)",
        id));
  }
  entries_.erase(it);
  return Status::Ok();
}

std::vector<std::string> PinRegistry::ExpireDue() {
  std::vector<std::string> expired;
  const Micros now = clock_->Now();
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.info.expires_at && *it->second.info.expires_at <= now) {
      expired.push_back(it->first);
      it = entries_.erase(it);
    } else {
      ++it;
    }
  }
  return expired;
}

std::optional<Micros> PinRegistry::NextExpiry() const {
  std::optional<Micros> next;
  for (const auto& [id, e] : entries_) {
    if (e.info.expires_at && (!next || *e.info.expires_at < *next)) next = e.info.expires_at;
  }
  return next;
}

std::vector<PinInfo> PinRegistry::List(const std::optional<std::string>& owner) const {
  std::vector<PinInfo> out;
  for (const auto& [id, e] : entries_) {
    if (!owner || SameTenant(e.owner, *owner)) out.push_back(e.info);
  }
  return out;
}

}  // namespace kvstack::server
