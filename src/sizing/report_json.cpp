// The sizing report as JSON, for scripts (`kvstack size --json`).
#include <nlohmann/json.hpp>

#include "kvstack/sizing.h"
#include "sizing/spec_json.h"

namespace kvstack::sizing {

std::string SizingReportToJson(const SizingReport& r) {
  const SizingOptions& o = r.options;
  nlohmann::json workspace = o.workspace.is_fraction() ? nlohmann::json{{"fraction_of_hbm", o.workspace.fraction()}}
                                                       : nlohmann::json{{"bytes", o.workspace.bytes()}};
  nlohmann::json j = {
      {"model", ModelSpecAsJson(r.model)},
      {"gpu", GpuSpecAsJson(r.gpu)},
      {"inputs",
       {{"gpus", o.gpus},
        {"weights", PrecisionName(o.weights)},
        {"kv", PrecisionName(o.kv)},
        {"context_tokens", o.context_tokens},
        {"sequences", o.sequences},
        {"workspace", workspace}}},
      {"kv",
       {{"values_per_token", r.kv_values_per_token},
        {"bytes_per_token", r.kv_bytes_per_token},
        {"heads_per_gpu", r.kv_heads_per_gpu},
        {"bytes_per_token_per_gpu", r.kv_bytes_per_token_per_gpu},
        {"tokens_per_sequence", r.tokens_per_sequence},
        {"bytes_per_sequence", r.kv_bytes_per_sequence},
        {"bytes_per_sequence_per_gpu", r.kv_bytes_per_sequence_per_gpu}}},
      {"memory_per_gpu",
       {{"hbm_bytes", r.hbm_bytes_per_gpu},
        {"weight_bytes", r.weight_bytes_per_gpu},
        {"workspace_bytes", r.workspace_bytes_per_gpu},
        {"kv_budget_bytes", r.kv_budget_bytes_per_gpu},
        {"shortfall_bytes", r.shortfall_bytes_per_gpu}}},
      {"weight_bytes", r.weight_bytes},
      {"weights_fit", r.weights_fit},
      {"tokens_that_fit", r.tokens_that_fit},
      {"sequences_that_fit", r.sequences_that_fit},
      {"request",
       {{"kv_bytes", r.requested_kv_bytes},
        {"kv_bytes_per_gpu", r.requested_kv_bytes_per_gpu},
        {"fits", r.requested_fits}}},
      {"notes", r.notes},
  };
  return j.dump(2);
}

std::string CatalogToJson(const PresetCatalog& catalog) {
  nlohmann::json models = nlohmann::json::array();
  for (const ModelSpec& m : catalog.models()) models.push_back(ModelSpecAsJson(m));
  nlohmann::json gpus = nlohmann::json::array();
  for (const GpuSpec& g : catalog.gpus()) gpus.push_back(GpuSpecAsJson(g));
  return nlohmann::json{{"preset_dir", catalog.dir().string()}, {"models", models}, {"gpus", gpus}}.dump(2);
}

}  // namespace kvstack::sizing
