// Access: who may call which endpoint. Two kinds of keys:
//
//   client keys (--api-key, repeatable, or --api-keys-file): completions,
//     chat, models, pins, prefetch. Required there once any client key is set.
//   the admin key (--admin-key or its file): the operator views, which show
//     every tenant's figures: /metrics, /v1/memory (the dashboard's data),
//     /v1/cache/stats. It also opens the client endpoints.
//
// Operator views need the admin key once any key is configured; with client
// keys but no admin key they answer 401 (nobody may read them), except
// /metrics under --public-metrics. With no key at all (a server on loopback
// for one user) everything is open, as before.
//
// Keys are compared as SHA-256 digests with CRYPTO_memcmp against every key
// configured, so neither the time taken nor an error message tells a caller
// how close a guess came or which key matched. No message quotes a key.
// Thread safety: immutable after construction.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <httplib.h>

#include "server/api_error.h"

namespace kvstack::server {

enum class Access : uint8_t {
  kClient,    // completions, chat, models, pins, prefetch
  kOperator,  // /v1/memory, /v1/cache/stats
  kMetrics,   // /metrics: an operator view that --public-metrics opens
};

class AccessControl {
 public:
  AccessControl(const std::vector<std::string>& client_keys, const std::string& admin_key, bool public_metrics);

  // nullopt when the request may go on; otherwise the 401 to send.
  std::optional<ApiError> Check(const httplib::Request& req, Access access) const;
  // The request carries the admin key (an admin key is configured).
  bool IsAdmin(const httplib::Request& req) const;

  bool any_client_key() const { return !client_.empty(); }
  bool has_admin_key() const { return admin_.has_value(); }

 private:
  using Digest = std::array<uint8_t, 32>;
  // The bearer token's digest, or nullopt when there is none.
  static std::optional<Digest> Presented(const httplib::Request& req);
  bool Matches(const Digest& presented, const std::vector<Digest>& keys) const;

  std::vector<Digest> client_;
  std::optional<Digest> admin_;
  bool public_metrics_ = false;
};

}  // namespace kvstack::server
