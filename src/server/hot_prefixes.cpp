#include "server/hot_prefixes.h"

#include <algorithm>

namespace kvstack::server {

HotPrefixes::HotPrefixes(size_t capacity) : capacity_(capacity) {}

void HotPrefixes::Record(const BlockHash& key, int32_t tokens, const std::string& tenant, Micros at) {
  if (key.IsZero()) return;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    if (by_key_.size() >= capacity_) DropColdest();
    it = by_key_.emplace(key, HotPrefix{.key = key, .tenant = tenant}).first;
  }
  HotPrefix& p = it->second;
  p.tokens = std::max(p.tokens, tokens);
  p.hits += 1;
  p.last_hit = std::max(p.last_hit, at);
}

void HotPrefixes::DropColdest() {
  // O(capacity), but only when a new prefix arrives at capacity.
  auto coldest = std::min_element(by_key_.begin(), by_key_.end(), [](const auto& a, const auto& b) {
    if (a.second.hits != b.second.hits) return a.second.hits < b.second.hits;
    return a.second.last_hit < b.second.last_hit;
  });
  if (coldest != by_key_.end()) by_key_.erase(coldest);
}

std::vector<HotPrefix> HotPrefixes::Top(size_t k) const {
  std::vector<HotPrefix> all;
  all.reserve(by_key_.size());
  for (const auto& [key, p] : by_key_) all.push_back(p);
  auto hotter = [](const HotPrefix& a, const HotPrefix& b) {
    if (a.hits != b.hits) return a.hits > b.hits;
    if (a.tokens != b.tokens) return a.tokens > b.tokens;
    if (a.last_hit != b.last_hit) return a.last_hit > b.last_hit;
    return a.key.ToHex() < b.key.ToHex();
  };
  const size_t n = std::min(k, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(n), all.end(), hotter);
  all.resize(n);
  return all;
}

}  // namespace kvstack::server
