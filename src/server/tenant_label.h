// Tenant labels: how the server shows a tenant without ever showing its
// cache_salt.
//
// A cache_salt is a tenant's secret: anyone who knows it can probe the shared
// prefix cache under it (cached_tokens > 0 proves the tenant sent a prompt).
// So every view of a tenant (/metrics labels, /v1/memory and the dashboard,
// /v1/cache/stats, log lines, recorded traces, pins) shows a label instead:
//
//   ""              the request carried no salt (no tenant)
//   NAME            the operator's name for it (--tenant-names FILE)
//   12 hex digits   HMAC-SHA-256(server secret, salt), truncated to 48 bits
//
// The HMAC is keyed by a server secret (--tenant-label-key or its file; a
// random one per process otherwise), so a label cannot be reversed, nor
// checked against a guessed salt, by anyone without the secret. The full
// 256-bit HMAC (`owner`) proves knowledge of the salt where the server must
// tell tenants apart (who may see or release a pin); it is never shown.
//
// Thread safety: TenantLabeler is immutable after Create (safe from any
// thread); TenantSeriesCap locks internally.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kvstack/cache_metrics.h"
#include "kvstack/server.h"
#include "kvstack/status.h"

namespace kvstack::server {

// Hex digits of a label (48 bits: collisions are unlikely below millions of
// tenants, and a label is short enough to read in a chart).
inline constexpr size_t kTenantLabelHexDigits = 12;
// The label /metrics sums tenants into past --max-tenant-labels.
inline constexpr std::string_view kOtherTenants = "other";
// Shortest --tenant-label-key accepted, in bytes.
inline constexpr size_t kMinTenantLabelKeyBytes = 16;

struct TenantId {
  std::string label;  // what every view shows (see above)
  std::string owner;  // the 32-byte HMAC, raw; "" for no salt. Never shown.
  bool named = false;  // the label is an operator's name
};

// The engine's name for a conversation: `session_id` within its tenant, so
// two tenants' equal session ids never meet (and one cannot prefetch the
// other's context). No salt: the id as given.
std::string TenantSessionId(const TenantId& tenant, const std::string& session_id);

// Whether two TenantId::owner values are the same tenant, in constant time.
bool SameTenant(std::string_view owner_a, std::string_view owner_b);

class TenantLabeler {
 public:
  // `key` is the server secret (REQUIRES: not empty). `names` map a label or
  // the hex SHA-256 of a salt to a name. InvalidArgument names the entry when
  // a hash is neither 12 nor 64 hex digits, a name is not 1-64 of
  // [A-Za-z0-9_.:-], is "other", looks like a label, or repeats.
  static Result<TenantLabeler> Create(std::string key, const std::vector<TenantName>& names);

  TenantId Identify(std::string_view salt) const;
  std::string Label(std::string_view salt) const { return Identify(salt).label; }

 private:
  explicit TenantLabeler(std::string key) : key_(std::move(key)) {}
  std::string key_;
  std::unordered_map<std::string, std::string> by_label_;   // hex label -> name
  std::unordered_map<std::string, std::string> by_sha256_;  // hex SHA-256 of the salt -> name
};

// The hex SHA-256 of `text` (what --tenant-names may give for a salt:
// `printf %s SALT | sha256sum`).
std::string Sha256Hex(std::string_view text);

// Caps how many tenant label values /metrics emits (--max-tenant-labels): the
// first `max_labels` unnamed tenants seen keep their label for the life of
// the process, later ones are summed as "other". No salt ("") and named
// tenants always keep theirs. Sticky, so every series stays a monotonic
// counter from one scrape to the next.
class TenantSeriesCap {
 public:
  explicit TenantSeriesCap(size_t max_labels) : max_labels_(max_labels) {}
  // The label value to report `id` under.
  std::string SeriesFor(const TenantId& id);

 private:
  const size_t max_labels_;
  std::mutex mu_;
  std::unordered_set<std::string> admitted_;  // GUARDED_BY(mu_)
};

// A cache's per-tenant counters (CacheMetrics::by_tenant, keyed by salt)
// keyed by label instead; with `cap`, labels past it are summed as "other".
std::map<std::string, PrefixCounters> CountersByLabel(const std::map<std::string, PrefixCounters>& by_salt,
                                                      const TenantLabeler& labeler, TenantSeriesCap* cap = nullptr);

}  // namespace kvstack::server
