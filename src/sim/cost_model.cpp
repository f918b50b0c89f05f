// Cost models: roofline per GPU preset, or measured engine costs.
#include <algorithm>
#include <cmath>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "kvstack/sim_cost_model.h"

namespace kvstack::sim {
namespace {

namespace sz = ::kvstack::sizing;

double TierTransfer(const TierLink& link, int64_t bytes) {
  if (bytes <= 0) return 0;
  return link.latency_seconds + static_cast<double>(bytes) / link.bytes_per_second;
}

std::string LinkText(const TierLink& l) {
  return fmt::format("{:.1f} GB/s + {:.0f} us per transfer", l.bytes_per_second / 1e9, l.latency_seconds * 1e6);
}

class RooflineCostModel final : public CostModel {
 public:
  RooflineCostModel(const RooflineOptions& o, const sz::SizingReport& sizing) : o_(o) {
    const double tp = static_cast<double>(o.tensor_parallel);
    active_params_ = static_cast<double>(o.model.active_parameters > 0 ? o.model.active_parameters
                                                                         : o.model.parameters);
    weight_bytes_per_gpu_ = static_cast<double>(sizing.weight_bytes_per_gpu);
    kv_bytes_per_token_per_gpu_ = static_cast<double>(sizing.kv_bytes_per_token_per_gpu);
    kv_bytes_per_token_ = sizing.kv_bytes_per_token;
    const bool fp8 = o.weights == sz::Precision::kFp8 && o.gpu.fp8_flops.has_value();
    flops_per_gpu_ = (fp8 ? *o.gpu.fp8_flops : o.gpu.bf16_flops) * o.compute_efficiency;
    bandwidth_per_gpu_ = o.gpu.memory_bandwidth * o.memory_efficiency;
    // Attention FLOPs per (query token, attended token) pair: QK^T and AV,
    // 2 FLOP per multiply-add each, over every layer's query heads.
    attn_flops_per_pair_ = 4.0 * static_cast<double>(o.model.layers) * static_cast<double>(o.model.attention_heads) *
                           static_cast<double>(o.model.head_dim);
    tp_ = tp;
  }

  double PrefillSeconds(int64_t new_tokens, int64_t attended_tokens) const override {
    if (new_tokens <= 0) return 0;
    const double n = static_cast<double>(new_tokens);
    const double flops = 2.0 * active_params_ * n + attn_flops_per_pair_ * n * static_cast<double>(attended_tokens);
    const double compute = flops / tp_ / flops_per_gpu_;
    const double memory = (weight_bytes_per_gpu_ + kv_bytes_per_token_per_gpu_ * static_cast<double>(attended_tokens)) /
                          bandwidth_per_gpu_;
    return std::max(compute, memory);
  }

  double DecodeStepSeconds(int64_t batch, int64_t context_tokens) const override {
    if (batch <= 0) return 0;
    const double memory =
        (weight_bytes_per_gpu_ + kv_bytes_per_token_per_gpu_ * static_cast<double>(context_tokens)) / bandwidth_per_gpu_;
    const double flops = 2.0 * active_params_ * static_cast<double>(batch) +
                         attn_flops_per_pair_ * static_cast<double>(context_tokens);
    return std::max(memory, flops / tp_ / flops_per_gpu_);
  }

  double OnboardSeconds(Tier tier, int64_t tokens) const override {
    const int64_t bytes = tokens * kv_bytes_per_token_;
    if (tier == Tier::kHost) return TierTransfer(o_.host, bytes);
    if (tier == Tier::kDisk) return TierTransfer(o_.disk, bytes);
    return 0;
  }

  int64_t KvBytesPerToken() const override { return kv_bytes_per_token_; }

  std::vector<std::string> Describe() const override {
    const bool fp8 = o_.weights == sz::Precision::kFp8 && o_.gpu.fp8_flops.has_value();
    return {
        fmt::format("cost model: roofline, {} on {} x {} (weights {}, KV {})", o_.model.name, o_.tensor_parallel,
                    o_.gpu.name, sz::PrecisionName(o_.weights), sz::PrecisionName(o_.kv)),
        fmt::format("compute: {:.0f} TFLOP/s {} peak x {:.0f}% efficiency per GPU",
                    (fp8 ? *o_.gpu.fp8_flops : o_.gpu.bf16_flops) / 1e12, fp8 ? "fp8" : "bf16",
                    o_.compute_efficiency * 100),
        fmt::format("memory: {:.2f} TB/s peak x {:.0f}% efficiency per GPU", o_.gpu.memory_bandwidth / 1e12,
                    o_.memory_efficiency * 100),
        fmt::format("prefill: max(compute, memory); compute = (2 x {} active params x new tokens + 4 x {} layers x {} "
                    "heads x {} dim x new x attended tokens) / {} GPUs / FLOP/s",
                    sz::FormatCount(static_cast<int64_t>(active_params_)), o_.model.layers, o_.model.attention_heads,
                    o_.model.head_dim, o_.tensor_parallel),
        fmt::format("decode step: max(memory, compute); memory = ({} weights per GPU + {} B KV per token per GPU x "
                    "context tokens) / bandwidth",
                    sz::FormatBytes(static_cast<int64_t>(weight_bytes_per_gpu_)),
                    static_cast<int64_t>(kv_bytes_per_token_per_gpu_)),
        fmt::format("host tier: {}; disk tier: {} (KV {} B per token)", LinkText(o_.host), LinkText(o_.disk),
                    kv_bytes_per_token_),
        "assumptions: the engine's scheduler (prompts in --max-batch-tokens chunks, preemption when blocks run "
        "out), prefill and decode of a step add up, no network or queueing outside the instance",
    };
  }

 private:
  RooflineOptions o_;
  double active_params_ = 0, weight_bytes_per_gpu_ = 0, kv_bytes_per_token_per_gpu_ = 0;
  double flops_per_gpu_ = 0, bandwidth_per_gpu_ = 0, attn_flops_per_pair_ = 0, tp_ = 1;
  int64_t kv_bytes_per_token_ = 0;
};

// A step's cost = base + per token + per attended position, all measured.
struct StepFit {
  double base_ms = 0, per_token_ms = 0, per_attended_ms = 0;
  double Ms(double tokens, double attended) const {
    return std::max(0.0, base_ms + per_token_ms * tokens + per_attended_ms * attended);
  }
};

class ProfileCostModel final : public CostModel {
 public:
  double prefill_ms_per_token = 0;
  double base_ms = 0, per_sequence_ms = 0, floor_ms = 0;
  std::optional<StepFit> step;  // preferred when the profile has it
  int64_t kv_bytes_per_token = 0;
  std::string source, model, description;
  TierLink host{25e9, 10e-6}, disk{5e9, 100e-6};

  double PrefillSeconds(int64_t new_tokens, int64_t attended_tokens) const override {
    if (new_tokens <= 0) return 0;
    const double n = static_cast<double>(new_tokens);
    if (step) {
      // As one prompt whose last `n` positions end at `attended_tokens`.
      const double end = static_cast<double>(std::max(attended_tokens, new_tokens));
      return step->Ms(n, n * (end - (n - 1) / 2)) / 1e3;
    }
    return prefill_ms_per_token * n / 1e3;
  }
  double DecodeStepSeconds(int64_t batch, int64_t context_tokens) const override {
    if (batch <= 0) return 0;
    if (step) return step->Ms(static_cast<double>(batch), static_cast<double>(context_tokens)) / 1e3;
    return std::max(floor_ms, base_ms + per_sequence_ms * static_cast<double>(batch)) / 1e3;
  }
  double StepSeconds(const StepWork& w) const override {
    if (!step) return CostModel::StepSeconds(w);
    if (w.prefill_tokens + w.decode_batch <= 0) return 0;
    return step->Ms(static_cast<double>(w.prefill_tokens + w.decode_batch),
                    static_cast<double>(w.prefill_attended + w.decode_context)) /
           1e3;
  }
  double OnboardSeconds(Tier tier, int64_t tokens) const override {
    const int64_t bytes = tokens * kv_bytes_per_token;
    if (tier == Tier::kHost) return TierTransfer(host, bytes);
    if (tier == Tier::kDisk) return TierTransfer(disk, bytes);
    return 0;
  }
  int64_t KvBytesPerToken() const override { return kv_bytes_per_token; }
  std::vector<std::string> Describe() const override {
    if (step) {
      return {
          fmt::format("cost model: measured profile {} ({})", source, description),
          fmt::format("step: {:.4f} ms + {:.5f} ms x tokens + {:.7f} ms x attended positions (least-squares fit "
                      "through the measured prefills and decode steps at several prompt lengths)",
                      step->base_ms, step->per_token_ms, step->per_attended_ms),
          fmt::format("host tier: {}; disk tier: {} (KV {} B per token)", LinkText(host), LinkText(disk),
                      kv_bytes_per_token),
          "assumptions: a step's prompt and decode tokens cost alike, each by the positions it attends over; "
          "no time outside the engine's steps",
      };
    }
    return {
        fmt::format("cost model: measured profile {} ({})", source, description),
        fmt::format("prefill: {:.4f} ms per new token (mean of the measured batches)", prefill_ms_per_token),
        fmt::format("decode step: max({:.4f}, {:.4f} + {:.4f} x batch) ms (least-squares line of the measured steps, "
                    "floored at the smallest)",
                    floor_ms, base_ms, per_sequence_ms),
        fmt::format("host tier: {}; disk tier: {} (KV {} B per token)", LinkText(host), LinkText(disk),
                    kv_bytes_per_token),
        "assumptions: the measured engine's costs do not depend on context length (the profile measured one), "
        "prompts in --max-batch-tokens chunks as the engine's scheduler plans them",
    };
  }
};

}  // namespace

double CostModel::StepSeconds(const StepWork& w) const {
  return PrefillSeconds(w.prefill_tokens, w.prefill_context) + DecodeStepSeconds(w.decode_batch, w.decode_context);
}

std::string_view TierName(Tier tier) {
  switch (tier) {
    case Tier::kDevice: return "device";
    case Tier::kHost: return "host";
    case Tier::kDisk: return "disk";
  }
  return "?";
}

Result<std::unique_ptr<CostModel>> MakeRooflineCostModel(const RooflineOptions& o) {
  if (!(o.compute_efficiency > 0 && o.compute_efficiency <= 1) || !(o.memory_efficiency > 0 && o.memory_efficiency <= 1)) {
    return InvalidArgument("cost model: efficiencies must be in (0, 1]");
  }
  if (o.host.bytes_per_second <= 0 || o.disk.bytes_per_second <= 0) {
    return InvalidArgument("cost model: tier bandwidths must be positive");
  }
  sz::SizingOptions so;
  so.gpus = o.tensor_parallel;
  so.weights = o.weights;
  so.kv = o.kv;
  so.context_tokens = 1;
  auto sizing = sz::ComputeSizing(o.model, o.gpu, so);
  if (!sizing.ok()) return sizing.status();
  return std::unique_ptr<CostModel>(new RooflineCostModel(o, *sizing));
}

Result<std::unique_ptr<CostModel>> MakeProfileCostModel(const std::string& json_text, const std::string& source,
                                                        const std::string& model_filter) {
  using nlohmann::json;
  auto bad = [&](const std::string& what) {
    return InvalidArgument(fmt::format("--profile {}: {} (expected the JSON of `kvstack bench engine --profile`)",
                                       source, what));
  };
  json j = json::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (j.value("format", std::string()) != "kvstack-bench-engine/1") return bad("\"format\" is not kvstack-bench-engine/1");
  auto models = j.find("cost_models");
  if (models == j.end() || !models->is_array() || models->empty()) return bad("no \"cost_models\" entries");
  const json* chosen = nullptr;
  for (const json& m : *models) {
    if (!m.is_object()) return bad("a \"cost_models\" entry is not an object");
    if (model_filter.empty() || m.value("model_path", std::string()).find(model_filter) != std::string::npos) {
      chosen = &m;
      break;
    }
  }
  if (chosen == nullptr) return bad(fmt::format("no cost model whose model_path contains \"{}\"", model_filter));
  auto model = std::make_unique<ProfileCostModel>();
  model->source = source;
  const json& m = *chosen;
  auto prefill = m.find("prefill");
  if (prefill == m.end() || !prefill->is_array() || prefill->empty()) return bad("cost model without \"prefill\" points");
  double sum = 0;
  for (const json& p : *prefill) {
    if (!p.is_object() || !p.contains("ms_per_token") || !p["ms_per_token"].is_number()) {
      return bad("a prefill point without a numeric \"ms_per_token\"");
    }
    sum += p["ms_per_token"].get<double>();
  }
  model->prefill_ms_per_token = sum / static_cast<double>(prefill->size());
  auto decode = m.find("decode");
  if (decode == m.end() || !decode->is_array() || decode->empty()) return bad("cost model without \"decode\" points");
  model->floor_ms = 1e300;
  for (const json& p : *decode) {
    if (!p.is_object() || !p.contains("ms_per_step") || !p["ms_per_step"].is_number()) {
      return bad("a decode point without a numeric \"ms_per_step\"");
    }
    model->floor_ms = std::min(model->floor_ms, p["ms_per_step"].get<double>());
  }
  auto fit = m.find("decode_step_ms_fit");
  if (fit == m.end() || !fit->is_object() || !(*fit)["base_ms"].is_number() || !(*fit)["per_sequence_ms"].is_number()) {
    return bad("cost model without \"decode_step_ms_fit\" {base_ms, per_sequence_ms}");
  }
  model->base_ms = (*fit)["base_ms"].get<double>();
  model->per_sequence_ms = std::max(0.0, (*fit)["per_sequence_ms"].get<double>());
  if (auto sf = m.find("step_ms_fit"); sf != m.end()) {
    if (!sf->is_object() || !(*sf)["base_ms"].is_number() || !(*sf)["per_token_ms"].is_number() ||
        !(*sf)["per_attended_ms"].is_number()) {
      return bad("\"step_ms_fit\" must hold numeric base_ms, per_token_ms and per_attended_ms");
    }
    StepFit f{(*sf)["base_ms"].get<double>(), (*sf)["per_token_ms"].get<double>(),
              (*sf)["per_attended_ms"].get<double>()};
    if (!(f.per_token_ms > 0) || f.per_attended_ms < 0) {
      return bad("\"step_ms_fit\": per_token_ms must be positive and per_attended_ms not negative");
    }
    model->step = f;
  }
  const std::string path = m.value("model_path", std::string("?"));
  model->description = fmt::format("{}, {} threads", path, m.value("threads", 0));
  if (auto results = j.find("results"); results != j.end() && results->is_array()) {
    for (const json& r : *results) {
      if (r.is_object() && r.value("model_path", std::string()) == path) {
        model->kv_bytes_per_token = r.value("kv_bytes_per_token", int64_t{0});
        break;
      }
    }
  }
  if (!(model->prefill_ms_per_token > 0)) return bad("prefill ms_per_token must be positive");
  return std::unique_ptr<CostModel>(std::move(model));
}

}  // namespace kvstack::sim
