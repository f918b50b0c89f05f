#include "server/tenant_label.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>

#include <fmt/format.h>

namespace kvstack::server {
namespace {

std::string Hex(const unsigned char* bytes, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

bool IsHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
         c == ':' || c == '-';
}

Status CheckName(const TenantName& n, size_t index) {
  auto bad = [&](std::string_view why) {
    return InvalidArgument(fmt::format("--tenant-names entry {} ('{}'): {}", index + 1, n.name, why));
  };
  if (n.name.empty() || n.name.size() > 64 || !std::all_of(n.name.begin(), n.name.end(), IsNameChar)) {
    return InvalidArgument(fmt::format(
        "--tenant-names entry {}: a name must be 1 to 64 characters of A-Z a-z 0-9 _ . : -", index + 1));
  }
  if (n.name == kOtherTenants) return bad("'other' is where --max-tenant-labels sums the tenants past the cap");
  if (n.name.size() == kTenantLabelHexDigits && IsHex(n.name)) return bad("a name must not look like a label");
  if (!IsHex(n.hash) || (n.hash.size() != kTenantLabelHexDigits && n.hash.size() != 2 * SHA256_DIGEST_LENGTH)) {
    return bad(fmt::format("the hash must be a tenant label ({} lowercase hex digits) or the salt's SHA-256 ({})",
                           kTenantLabelHexDigits, 2 * SHA256_DIGEST_LENGTH));
  }
  return Status::Ok();
}

}  // namespace

std::string TenantSessionId(const TenantId& tenant, const std::string& session_id) {
  if (tenant.owner.empty() || session_id.empty()) return session_id;
  // 128 bits of the owner digest: distinct per salt, and only ever inside the engine.
  return Hex(reinterpret_cast<const unsigned char*>(tenant.owner.data()), 16) + "/" + session_id;
}

bool SameTenant(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;  // "" (no salt) against a digest: sizes are public
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return Hex(digest, sizeof digest);
}

Result<TenantLabeler> TenantLabeler::Create(std::string key, const std::vector<TenantName>& names) {
  if (key.empty()) return InvalidArgument("tenant labels need a non-empty secret key");
  TenantLabeler labeler(std::move(key));
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    const TenantName& n = names[i];
    KVSTACK_RETURN_IF_ERROR(CheckName(n, i));
    if (!seen.insert(n.name).second) {
      return InvalidArgument(fmt::format("--tenant-names entry {} ('{}'): the name is given twice", i + 1, n.name));
    }
    auto& map = n.hash.size() == kTenantLabelHexDigits ? labeler.by_label_ : labeler.by_sha256_;
    if (!map.emplace(n.hash, n.name).second) {
      return InvalidArgument(
          fmt::format("--tenant-names entry {} ('{}'): its hash is given to another name already", i + 1, n.name));
    }
  }
  return labeler;
}

TenantId TenantLabeler::Identify(std::string_view salt) const {
  if (salt.empty()) return {};
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(salt.data()),
       salt.size(), mac, &mac_len);
  TenantId id;
  id.owner.assign(reinterpret_cast<const char*>(mac), mac_len);
  id.label = Hex(mac, kTenantLabelHexDigits / 2);
  if (auto it = by_label_.find(id.label); it != by_label_.end()) {
    id.label = it->second;
    id.named = true;
  } else if (!by_sha256_.empty()) {
    if (auto named = by_sha256_.find(Sha256Hex(salt)); named != by_sha256_.end()) {
      id.label = named->second;
      id.named = true;
    }
  }
  return id;
}

std::map<std::string, PrefixCounters> CountersByLabel(const std::map<std::string, PrefixCounters>& by_salt,
                                                      const TenantLabeler& labeler, TenantSeriesCap* cap) {
  std::map<std::string, PrefixCounters> out;
  for (const auto& [salt, c] : by_salt) {
    const TenantId id = labeler.Identify(salt);
    PrefixCounters& sum = out[cap ? cap->SeriesFor(id) : id.label];
    sum.query_tokens += c.query_tokens;
    sum.hit_tokens += c.hit_tokens;
    sum.query_blocks += c.query_blocks;
    sum.hit_blocks += c.hit_blocks;
  }
  return out;
}

std::string TenantSeriesCap::SeriesFor(const TenantId& id) {
  if (id.label.empty() || id.named) return id.label;
  std::lock_guard<std::mutex> lock(mu_);
  if (admitted_.count(id.label)) return id.label;
  if (admitted_.size() < max_labels_) {
    admitted_.insert(id.label);
    return id.label;
  }
  return std::string(kOtherTenants);
}

}  // namespace kvstack::server

namespace kvstack {

Result<std::vector<TenantName>> ParseTenantNames(std::string_view text, std::string_view file) {
  std::vector<TenantName> names;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    ++line_no;
    auto fields = std::vector<std::string_view>{};
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      const size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
      if (i > start) fields.push_back(line.substr(start, i - start));
    }
    if (fields.empty() || fields[0][0] == '#') continue;
    if (fields.size() != 2) {
      return InvalidArgument(fmt::format("--tenant-names {}:{}: expected 'NAME HASH' (2 fields), found {}", file,
                                         line_no, fields.size()));
    }
    TenantName n{.name = std::string(fields[0]), .hash = std::string(fields[1])};
    std::transform(n.hash.begin(), n.hash.end(), n.hash.begin(), [](char c) { return c >= 'A' && c <= 'F' ? c + 32 : c; });
    if (Status s = server::CheckName(n, names.size()); !s.ok()) {
      return InvalidArgument(fmt::format("--tenant-names {}:{}: {}", file, line_no, s.message()));
    }
    names.push_back(std::move(n));
  }
  return names;
}

}  // namespace kvstack
