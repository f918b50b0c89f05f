// --kv-type, --kv-type-k and --kv-type-v: one meaning for generate, bench
// engine and serve.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"

namespace kvstack::cli {

void AddKvTypeOptions(CLI::App* cmd, KvTypeArgs* args) {
  cmd->add_option("--kv-type", args->both,
                  "KV cache element type for K and V: f32, f16, bf16, int8, fp8-e4m3 (fp8), fp8-e5m2 or int4")
      ->capture_default_str();
  cmd->add_option("--kv-type-k", args->k, "K's type where it differs from --kv-type");
  cmd->add_option("--kv-type-v", args->v, "V's type where it differs from --kv-type");
}

Status ApplyKvTypeOptions(const KvTypeArgs& a, EngineOptions* o) {
  auto both = ParseKvDType(a.both);
  if (!both.ok()) return InvalidArgument("--kv-type: " + both.status().message());
  o->kv_dtype = *both;
  o->kv_dtype_v.reset();
  if (!a.k.empty()) {
    auto k = ParseKvDType(a.k);
    if (!k.ok()) return InvalidArgument("--kv-type-k: " + k.status().message());
    o->kv_dtype = *k;
    o->kv_dtype_v = *both;
  }
  if (!a.v.empty()) {
    auto v = ParseKvDType(a.v);
    if (!v.ok()) return InvalidArgument("--kv-type-v: " + v.status().message());
    o->kv_dtype_v = *v;
  }
  if (o->kv_dtype_v == o->kv_dtype) o->kv_dtype_v.reset();
  return Status::Ok();
}

std::string KvTypesName(const EngineOptions& o) {
  return KvShape{.dtype = o.kv_dtype, .v_dtype = o.kv_dtype_v}.types_name();
}

}  // namespace kvstack::cli
