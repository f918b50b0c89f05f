#include "server/options.h"

#include <algorithm>

#include <fmt/format.h>

#include "kvstack/engine.h"
#include "server/tenant_label.h"

namespace kvstack::server {
namespace {

Status AtLeast(std::string_view flag, int64_t value, int64_t min) {
  if (value >= min) return Status::Ok();
  return InvalidArgument(fmt::format("{} {}: must be at least {}", flag, value, min));
}

// Keys and tenant labels. No message quotes a key.
Status ValidateAccessOptions(const ServerOptions& o) {
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-tenant-labels", o.max_tenant_labels, 0));
  if (!o.tenant_label_key.empty() && o.tenant_label_key.size() < kMinTenantLabelKeyBytes) {
    return InvalidArgument(fmt::format("--tenant-label-key: {} bytes is too short to be a secret; give at least {} "
                                       "(e.g. `openssl rand -hex 32`)",
                                       o.tenant_label_key.size(), kMinTenantLabelKeyBytes));
  }
  if (!o.admin_key.empty()) {
    for (const std::string& k : o.api_keys) {
      if (k == o.admin_key) return InvalidArgument("--admin-key: must differ from every --api-key (a client would be an operator)");
    }
    if (o.api_key == o.admin_key) return InvalidArgument("--admin-key: must differ from every --api-key (a client would be an operator)");
  }
  return Status::Ok();
}

}  // namespace

Status ValidateOptions(const ServerOptions& o) {
  if (o.port < 0 || o.port > 65535) {
    return InvalidArgument(fmt::format("--port {}: must be from 0 to 65535 (0 picks a free port)", o.port));
  }
  if (o.host.empty()) return InvalidArgument("--host: must not be empty (127.0.0.1 serves this machine only)");
  if (o.model_path.empty() && o.model_cache_dir.empty()) {
    return InvalidArgument("--model-cache-dir: must be set when no --model is given (the demo model goes there)");
  }
  KVSTACK_RETURN_IF_ERROR(AtLeast("--threads", o.engine.threads, 0));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--kv-memory", o.engine.kv_memory_bytes, 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--block-size", o.engine.block_size, 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-context", o.engine.max_context, 0));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-batch-tokens", o.engine.max_batch_tokens, 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-running", o.engine.max_running, 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-queue", o.max_queue, 0));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-body-bytes", static_cast<int64_t>(std::min<size_t>(o.max_body_bytes, INT64_MAX)), 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--max-tokens-limit", o.max_tokens_limit, 1));
  if (o.max_n < 1 || o.max_n > kMaxChoices) {
    return InvalidArgument(fmt::format("--max-n {}: must be from 1 to {}", o.max_n, kMaxChoices));
  }
  KVSTACK_RETURN_IF_ERROR(AtLeast("--host-tier", o.tiers.host_bytes, 0));
  if (o.engine.tier_kv_dtype && !o.tiers.enabled()) {
    return InvalidArgument(fmt::format("--tier-kv-type {}: no tier to store it in (give --host-tier, --disk-tier, "
                                       "--redis or --redis-cluster)",
                                       KvDTypeName(*o.engine.tier_kv_dtype)));
  }
  KVSTACK_RETURN_IF_ERROR(AtLeast("--disk-tier-size", o.tiers.disk_bytes, 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--redis-ttl", o.tiers.redis_ttl_s, 1));
  KVSTACK_RETURN_IF_ERROR(AtLeast("--offload-min-hits", o.tiers.offload_min_hits, 0));
  if (o.tiers.offload_min_priority < 0 || o.tiers.offload_min_priority > kMaxPriority) {
    return InvalidArgument(fmt::format("--offload-min-priority {}: must be from 0 to {}", o.tiers.offload_min_priority,
                                       kMaxPriority));
  }
  KVSTACK_RETURN_IF_ERROR(ValidateAccessOptions(o));
  for (const std::string& address : o.tiers.redis) {
    auto parsed = ParseRedisAddress(address);
    if (!parsed.ok()) return parsed.status();
  }
  if (!o.tiers.redis.empty() && !o.tiers.redis_cluster.empty()) {
    return InvalidArgument("--redis and --redis-cluster: give one or the other (independent servers, or one cluster)");
  }
  for (const std::string& address : o.tiers.redis_cluster) {
    auto parsed = ParseRedisAddress(address, "--redis-cluster");
    if (!parsed.ok()) return parsed.status();
  }
  if (o.tiers.redis_read_from_replicas && o.tiers.redis_cluster.empty()) {
    return InvalidArgument("--redis-read-from-replicas needs --redis-cluster (independent --redis servers have no replicas)");
  }
  return Status::Ok();
}

Result<RedisServerAddress> ParseRedisAddress(const std::string& text, std::string_view flag) {
  const size_t colon = text.rfind(':');
  auto bad = [&](std::string_view why) {
    return InvalidArgument(fmt::format("{} '{}': {} (expected HOST:PORT, e.g. 127.0.0.1:6379)", flag, text, why));
  };
  if (colon == std::string::npos || colon == 0) return bad("no host");
  const std::string port_text = text.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return bad("the port is not a number");
  }
  const int port = std::stoi(port_text);
  if (port < 1 || port > 65535) return bad("the port must be from 1 to 65535");
  return RedisServerAddress{.host = text.substr(0, colon), .port = port};
}

int HttpThreads(const ServerOptions& o) {
  const int64_t n = int64_t{o.engine.max_running} + o.max_queue + 8;
  return static_cast<int>(std::clamp<int64_t>(n, 8, 512));
}

}  // namespace kvstack::server
