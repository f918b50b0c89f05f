#include "cli/serve_access.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace kvstack::cli {
namespace {

Result<std::string> ReadText(std::string_view flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument(fmt::format("{} {}: cannot read the file", flag, path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trimmed(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(ws) - b + 1));
}

Result<std::string> ReadSecret(std::string_view flag, const std::string& path) {
  auto text = ReadText(flag, path);
  if (!text.ok()) return text.status();
  std::string secret = Trimmed(*text);
  if (secret.empty()) return InvalidArgument(fmt::format("{} {}: the file is empty", flag, path));
  return secret;
}

}  // namespace

void AddAccessOptions(CLI::App* cmd, ServerOptions& o, AccessFiles& files) {
  const char* group = "Access and tenants";
  cmd->add_option("--api-key", o.api_keys,
                  "A client key: once any is set, completions, chat, models, pins and prefetch want "
                  "'Authorization: Bearer KEY' (401 otherwise). Repeat for several clients; prefer --api-keys-file "
                  "(a command line shows in `ps`).")
      ->type_name("KEY")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->group(group);
  cmd->add_option("--api-keys-file", files.api_keys, "Client keys, one a line ('#' comments and blank lines skipped).")
      ->type_name("FILE")
      ->group(group);
  cmd->add_option("--admin-key", o.admin_key,
                  "The operator's key: opens /metrics, /v1/memory (the dashboard's data) and /v1/cache/stats, which "
                  "show every tenant's figures, and every client endpoint. With keys set and no admin key those "
                  "answer 401.")
      ->type_name("KEY")
      ->group(group);
  cmd->add_option("--admin-key-file", files.admin_key, "The admin key, read from a file.")
      ->type_name("FILE")
      ->group(group);
  cmd->add_flag("--public-metrics", o.public_metrics,
                "Serve /metrics without a key (the per-tenant series show labels, never salts); the other operator "
                "views still want the admin key.")
      ->group(group);
  cmd->add_option("--tenant-label-key", o.tenant_label_key,
                  "Secret (16 bytes or more) that keys the tenant labels shown instead of cache_salt values "
                  "(HMAC-SHA-256, 12 hex digits). Default: a random one per process, so labels change on restart.")
      ->type_name("SECRET")
      ->group(group);
  cmd->add_option("--tenant-label-key-file", files.tenant_label_key, "The tenant label secret, read from a file.")
      ->type_name("FILE")
      ->group(group);
  cmd->add_option("--tenant-names", files.tenant_names,
                  "Names for tenants in every view: lines of 'NAME HASH', HASH being a tenant's label or the hex "
                  "SHA-256 of its cache_salt (`printf %s SALT | sha256sum`).")
      ->type_name("FILE")
      ->group(group);
  cmd->add_option("--max-tenant-labels", o.max_tenant_labels,
                  "Most tenant label values /metrics emits; tenants seen later are summed as tenant=\"other\" "
                  "(named tenants always keep theirs).")
      ->capture_default_str()
      ->group(group);
}

Status ReadAccessFiles(const AccessFiles& files, ServerOptions& o) {
  if (!files.api_keys.empty()) {
    auto text = ReadText("--api-keys-file", files.api_keys);
    if (!text.ok()) return text.status();
    std::istringstream lines(*text);
    size_t added = 0;
    for (std::string line; std::getline(lines, line);) {
      const std::string key = Trimmed(line);
      if (key.empty() || key[0] == '#') continue;
      o.api_keys.push_back(key);
      ++added;
    }
    if (added == 0) return InvalidArgument(fmt::format("--api-keys-file {}: no key in the file", files.api_keys));
  }
  for (auto [flag, path, out] : {std::tuple{"--admin-key-file", &files.admin_key, &o.admin_key},
                                 std::tuple{"--tenant-label-key-file", &files.tenant_label_key, &o.tenant_label_key}}) {
    if (path->empty()) continue;
    auto secret = ReadSecret(flag, *path);
    if (!secret.ok()) return secret.status();
    *out = std::move(secret).value();
  }
  if (!files.tenant_names.empty()) {
    auto text = ReadText("--tenant-names", files.tenant_names);
    if (!text.ok()) return text.status();
    auto names = ParseTenantNames(*text, files.tenant_names);
    if (!names.ok()) return names.status();
    o.tenant_names = std::move(names).value();
  }
  return Status::Ok();
}

}  // namespace kvstack::cli
