// Converting one whole KV block between two layouts of the same shape: the
// engine's tiers may store offloaded blocks at a lower precision than the
// device pool (EngineOptions::tier_kv_dtype), so an evicted f16 block leaves
// as int8 (half the bytes moved and stored) and is widened back on
// onboarding.
//
// Contract: only the element types differ (layers, KV heads, head dim and
// block size are equal); a block is converted head by head through the
// kernels' own store and load of each type (kernels::QuantizeKvHead,
// DequantizeKvRow), so a converted block is exactly what kv_arena.h says a
// block of the target layout is, and the attention kernels read it as any
// other. Converting to a quantized type is lossy; widening back does not
// restore what was lost (onboarded KV differs from computed KV, which is why
// the tier type is opt-in).
//
// Thread safety: stateless; distinct destinations may convert in parallel.
#pragma once

#include <cstddef>

#include "kvstack/kv_arena.h"
#include "kvstack/status.h"

namespace kvstack::engine {

// The layout the tiers store for a device pool of `device` when asked to
// keep `tier_type` (K and V both). InvalidArgument, naming both, unless the
// device's types are float (f32, f16, bf16: converting already-quantized KV
// would round it twice) and the tier layout's block is smaller than the
// device's (a conversion that stores more bytes has no use).
Result<KvShape> TierKvShape(const KvShape& device, KvDType tier_type);

// dst (to.block_bytes()) = the block at src (from.block_bytes()) in `to`'s
// types. REQUIRES: from and to equal but for their element types; src and
// dst do not overlap.
void ConvertKvBlock(const KvShape& from, const std::byte* src, const KvShape& to, std::byte* dst);

}  // namespace kvstack::engine
