// Simulator cost models: what a step of the engine and a tier transfer cost
// in time. This is the modelled half of a replay (sim_replay.h says which
// half is production code): a roofline per GPU preset, or the costs
// `kvstack bench engine --profile` measured on this machine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvstack/sizing.h"
#include "kvstack/status.h"

namespace kvstack::sim {

// The levels a replay reports hits by and prices transfers from. Only names:
// the tiers themselves are a TierChain of metadata-only tiers (sim_replay.h).
enum class Tier { kDevice = 0, kHost = 1, kDisk = 2 };
inline constexpr int kNumTiers = 3;
std::string_view TierName(Tier tier);

// The work of one scheduler step.
struct StepWork {
  int64_t prefill_tokens = 0;    // prompt tokens computed (the step's chunks summed)
  int64_t prefill_context = 0;   // positions the chunks reach (their ends), summed
  int64_t prefill_attended = 0;  // over the prompt tokens, the positions each attends over, summed
  int64_t decode_batch = 0;      // decoding sequences, one token each
  int64_t decode_context = 0;    // their contexts summed
};

// Seconds that the work of one step takes. Implementations are immutable.
class CostModel {
 public:
  virtual ~CostModel() = default;
  // Prefill of `new_tokens` prompt tokens (summed over the step's requests)
  // that attend over `attended_tokens` in total (cached prefix included).
  virtual double PrefillSeconds(int64_t new_tokens, int64_t attended_tokens) const = 0;
  // One decode step of `batch` sequences whose contexts sum to `context_tokens`.
  virtual double DecodeStepSeconds(int64_t batch, int64_t context_tokens) const = 0;
  // A step that mixes prompt chunks and decoding. Default: the prefill (of
  // prefill_tokens over prefill_context) plus the decode step, added.
  virtual double StepSeconds(const StepWork& work) const;
  // Moving `tokens` of KV from `tier` to the device (one transfer).
  virtual double OnboardSeconds(Tier tier, int64_t tokens) const = 0;
  // KV bytes of one token on the device (for occupancy and capacity in bytes);
  // 0 when the model does not say.
  virtual int64_t KvBytesPerToken() const = 0;
  // "name: value (why)" lines, printed with every result.
  virtual std::vector<std::string> Describe() const = 0;
};

// Bandwidth and latency of a lower tier, device-bound direction.
struct TierLink {
  double bytes_per_second = 0;
  double latency_seconds = 0;
};

// Roofline on one GPU preset: prefill is bound by compute (2 FLOP per active
// parameter per token, plus attention 4 x layers x heads x head_dim per
// attended token pair), decode by memory bandwidth (weights once per step
// plus every sequence's KV), each the larger of its compute and memory times
// (at the given efficiencies); tier transfers by bandwidth plus latency.
struct RooflineOptions {
  sizing::ModelSpec model;
  sizing::GpuSpec gpu;
  int64_t tensor_parallel = 1;
  sizing::Precision weights = sizing::Precision::kBf16;
  sizing::Precision kv = sizing::Precision::kBf16;
  double compute_efficiency = 0.6;  // achieved / peak FLOP/s (MFU of a good prefill)
  double memory_efficiency = 0.8;   // achieved / peak bandwidth of decode
  TierLink host{25e9, 10e-6};       // PCIe Gen4 x16, pinned host memory
  TierLink disk{5e9, 100e-6};       // one NVMe SSD
};
// On failure: kInvalidArgument naming the bad field (a validation of the
// model and GPU, tensor_parallel < 1, an efficiency outside (0, 1]).
Result<std::unique_ptr<CostModel>> MakeRooflineCostModel(const RooflineOptions& options);

// The costs of `kvstack bench engine --profile FILE` (format
// "kvstack-bench-engine/1"), for the first cost model in the file (or the one
// whose model_path contains `model_filter`). With its "step_ms_fit" (a
// profile measured at several prompt lengths): every step costs base_ms +
// per_token_ms x its tokens (prompt and decode) + per_attended_ms x the
// positions they attend over, so prefix-cached prompts and long contexts cost
// what the engine measured. Without it (one prompt length): prefill ms per
// token (the mean of the measured points), decode step ms = base_ms +
// per_sequence_ms x batch (the fitted line, floored at the smallest measured
// step), neither depending on context. Tier
// links as in RooflineOptions. On failure: kInvalidArgument naming the file
// and the missing or malformed field.
Result<std::unique_ptr<CostModel>> MakeProfileCostModel(const std::string& json_text, const std::string& source,
                                                        const std::string& model_filter = "");

}  // namespace kvstack::sim
