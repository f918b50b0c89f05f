#include "server/access.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <string_view>

namespace kvstack::server {
namespace {

std::array<uint8_t, 32> DigestOf(std::string_view key) {
  std::array<uint8_t, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d.data());
  return d;
}

ApiError Unauthorized(std::string message, std::string code) {
  return ApiError{
      .http_status = 401, .message = std::move(message), .type = "authentication_error", .code = std::move(code)};
}

}  // namespace

AccessControl::AccessControl(const std::vector<std::string>& client_keys, const std::string& admin_key,
                             bool public_metrics)
    : public_metrics_(public_metrics) {
  for (const std::string& k : client_keys) {
    if (!k.empty()) client_.push_back(DigestOf(k));
  }
  if (!admin_key.empty()) admin_ = DigestOf(admin_key);
}

std::optional<AccessControl::Digest> AccessControl::Presented(const httplib::Request& req) {
  const std::string auth = req.get_header_value("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size() || auth.compare(0, kBearer.size(), kBearer) != 0) return std::nullopt;
  return DigestOf(std::string_view(auth).substr(kBearer.size()));
}

bool AccessControl::Matches(const Digest& presented, const std::vector<Digest>& keys) const {
  // Every key is compared, whichever matches: the time does not say which.
  int matched = 0;
  for (const Digest& k : keys) matched |= CRYPTO_memcmp(presented.data(), k.data(), k.size()) == 0;
  return matched != 0;
}

bool AccessControl::IsAdmin(const httplib::Request& req) const {
  if (!admin_) return false;
  const std::optional<Digest> presented = Presented(req);
  return presented && CRYPTO_memcmp(presented->data(), admin_->data(), admin_->size()) == 0;
}

std::optional<ApiError> AccessControl::Check(const httplib::Request& req, Access access) const {
  const bool header = req.has_header("Authorization");
  if (access == Access::kClient) {
    if (client_.empty()) return std::nullopt;
    if (!header) return Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'", "missing_api_key");
    const std::optional<Digest> presented = Presented(req);
    // Both keys are always compared (no short circuit): the time taken does
    // not say which one matched.
    const bool ok = presented && (int{Matches(*presented, client_)} | int{IsAdmin(req)}) != 0;
    if (ok) return std::nullopt;
    return Unauthorized("invalid API key: the Authorization header does not carry this server's --api-key",
                        "invalid_api_key");
  }
  if (access == Access::kMetrics && public_metrics_) return std::nullopt;
  if (admin_) {
    if (!header) {
      return Unauthorized(
          "missing admin key: this operator endpoint shows every tenant's figures; send the header "
          "'Authorization: Bearer <admin key>' (--admin-key)",
          "missing_admin_key");
    }
    if (IsAdmin(req)) return std::nullopt;
    return Unauthorized("invalid admin key: the Authorization header does not carry this server's --admin-key",
                        "invalid_admin_key");
  }
  if (client_.empty()) return std::nullopt;  // no key at all: an open server
  return Unauthorized(
      "operator endpoint closed: this server has client keys but no --admin-key, and a client key does not open "
      "the views of every tenant (start it with --admin-key, or --public-metrics for /metrics alone)",
      "admin_key_required");
}

}  // namespace kvstack::server
