#include "server/tier_setup.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kvstack/tiers.h"
#include "server/options.h"

namespace kvstack::server {
namespace {

// The host tier that stages offloads for disk and Redis when none was sized.
constexpr int64_t kStagingHostBytes = 64ll << 20;

std::string Mib(int64_t bytes) { return fmt::format("{:.0f} MiB", double(bytes) / (1 << 20)); }

// The disk tier's folder for one cache identity (model + KV layout) under
// --disk-tier: servers of different KV types (or models) sharing one
// --disk-tier never open each other's segments. FNV-1a: stable across
// processes and builds.
std::string LayoutFolder(const std::string& cache_identity) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : cache_identity) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("layout-{:016x}", h);
}

}  // namespace

TierFactory MakeTierFactory(const ServerOptions::Tiers& t, Log log) {
  if (!t.enabled()) return {};
  return [t, log](size_t block_bytes, const std::string& model_id) -> Result<std::unique_ptr<TierChain>> {
    TierChainOptions c;
    c.min_priority = static_cast<Priority>(t.offload_min_priority);
    c.min_hits = static_cast<uint32_t>(t.offload_min_hits);
    std::string summary;

    int64_t host_bytes = t.host_bytes;
    if (host_bytes == 0) {
      host_bytes = kStagingHostBytes;
      log(fmt::format("tiers: no --host-tier given; a {} host tier stages offloads for the lower tiers",
                      Mib(host_bytes)));
    }
    const int64_t host_blocks = host_bytes / static_cast<int64_t>(block_bytes);
    if (host_blocks < 1) {
      return InvalidArgument(fmt::format("--host-tier {} bytes holds no KV block of {} bytes", host_bytes, block_bytes));
    }
    auto host = MakeHostTier({.bytes_per_block = block_bytes, .capacity_blocks = host_blocks});
    if (!host.ok()) return host.status();
    c.tiers.push_back(std::move(host).value());
    summary += fmt::format("host {} blocks ({})", host_blocks, Mib(host_blocks * static_cast<int64_t>(block_bytes)));

    if (!t.disk_dir.empty()) {
      DiskTierOptions d;
      d.dir = (std::filesystem::path(t.disk_dir) / LayoutFolder(model_id)).string();
      d.bytes_per_block = block_bytes;
      d.capacity_bytes = static_cast<uint64_t>(t.disk_bytes);
      d.segment_bytes = std::min<uint64_t>(256ull << 20, static_cast<uint64_t>(t.disk_bytes));
      d.log = log;
      auto disk = OpenDiskTier(d);
      if (!disk.ok()) return Status(disk.status().code(), "--disk-tier " + t.disk_dir + ": " + disk.status().message());
      const TierMetrics m = (*disk)->Metrics();
      summary += fmt::format(", disk {} ({} of {} blocks warm)", d.dir, m.blocks, m.capacity_blocks);
      c.tiers.push_back(std::move(disk).value());
    }
    if (!t.redis.empty() || !t.redis_cluster.empty()) {
      RedisTierOptions r;
      for (const std::string& address : t.redis) {
        auto parsed = ParseRedisAddress(address);
        if (!parsed.ok()) return parsed.status();
        r.servers.push_back(*parsed);
      }
      for (const std::string& address : t.redis_cluster) {
        auto parsed = ParseRedisAddress(address, "--redis-cluster");
        if (!parsed.ok()) return parsed.status();
        r.cluster_seeds.push_back(*parsed);
      }
      r.read_from_replicas = t.redis_read_from_replicas;
      r.model_id = model_id;
      r.bytes_per_block = block_bytes;
      r.ttl_seconds = t.redis_ttl_s;
      r.log = log;
      auto redis = MakeRedisTier(r);
      if (!redis.ok()) return redis.status();
      if (t.redis_cluster.empty()) {
        summary += fmt::format(", redis {} (TTL {} s)", fmt::join(t.redis, " "), t.redis_ttl_s);
      } else {
        const TierMetrics m = (*redis)->Metrics();
        summary += fmt::format(", redis cluster via {} ({} nodes known, TTL {} s{})", fmt::join(t.redis_cluster, ","),
                               m.nodes.size(), t.redis_ttl_s,
                               t.redis_read_from_replicas ? ", reads from replicas" : "");
      }
      c.tiers.push_back(std::move(redis).value());
    }
    log(fmt::format("tiers: {}; offloading evicted blocks with priority >= {} or >= {} hits; onboarding {}", summary,
                    t.offload_min_priority, t.offload_min_hits,
                    t.onboard_always ? "always" : "when faster than recomputing (measured)"));
    return TierChain::Create(std::move(c));
  };
}

}  // namespace kvstack::server
