// int4 K's channel scale steps: 2^(-e/3) for e = 0..15 (kv_arena.h's int4 K
// layout). One table for the store, the scalar reference and every SIMD
// kernel, so they agree bit for bit on a scale. No includes: the kernels'
// per-instruction-set translation units take it (see simd_kernels.h).
#pragma once

namespace kvstack {

inline constexpr float kInt4KeyScaleSteps[16] = {
    1.0f,        0.79370053f, 0.62996052f,  0.5f,         0.39685026f, 0.31498026f,  0.25f,        0.19842513f,
    0.15749013f, 0.125f,      0.099212566f, 0.078745066f, 0.0625f,     0.049606283f, 0.039372533f, 0.03125f};

}  // namespace kvstack
