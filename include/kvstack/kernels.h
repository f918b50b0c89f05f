// Kernels: the CPU math under the engine's forward pass.
//
// Weight matrices stay in their GGUF type (F32, F16, BF16, Q8_0, Q4_0, Q4_K,
// Q6_K) and are consumed in place: a matrix of `rows` x `cols` stores each row
// (cols elements, ggml's ne[0]) contiguously in row_bytes bytes. The products
// compute y = W x for one activation vector (MatVec, decode) or many (MatMul,
// prefill and batched decode), splitting rows across a ThreadPool. Each type
// has a scalar reference (the truth the tests compare against) and vectorized
// versions chosen at run time from the CPU's features (AMX, AVX-512 VNNI,
// AVX-512, AVX2, else portable), so one binary runs everywhere.
//
// Numerics. Dequantization is exact and identical at every level: each value
// is the float ggml's dequantize_row_* produces, bit for bit, the sign of
// zero included. Products come in two precisions (MatMulPrecision). Exact
// float multiplies those exact values into float accumulators; levels differ
// only in summation order (relative differences around 1e-6 of the sum of
// |terms|). Int8 activations do what llama.cpp does on the CPU: each
// activation row is quantized to 8-bit blocks (QuantizeActivationRow) and
// multiplied with the weights' integer quants in exact int32 sums per block,
// then scaled in float; levels differ only in the float summation of those
// scaled block sums, and a row's result never depends on how many rows its
// MatMul had (batch invariance: a prompt chunked differently, or a prefix
// served from a cache, gives the same bits).
//
// Callers: the engine's forward pass; kvstack gen-model (quantizers).
// Thread safety: the free functions are pure and may run on any threads at
// once, except SetCpuLevel, which should be called before kernels run (a
// kernel already running keeps the level it started with). A ThreadPool is
// driven by one thread at a time (the engine step loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>

#include "kvstack/gguf.h"
#include "kvstack/kv_arena.h"
#include "kvstack/status.h"

namespace kvstack::kernels {

// The instruction set the dispatched kernels use on this machine.
// kAvx2 needs AVX2, FMA and F16C; kAvx512 also AVX-512 F, BW, VL and DQ;
// kAvx512Vnni also AVX-512 VNNI (only the integer products differ from
// kAvx512); kAvx512Amx also AMX-TILE, AMX-INT8 and AMX-BF16, with the OS's
// permission to use them (Linux: arch_prctl, asked once at detection), for
// the Q8_0, BF16 and F16 products of kInt8Activations.
enum class CpuLevel : uint8_t { kPortable, kAvx2, kAvx512, kAvx512Vnni, kAvx512Amx };
CpuLevel DetectedCpuLevel();
// "portable", "avx2", "avx512", "avx512-vnni", "avx512-amx".
std::string_view CpuLevelName(CpuLevel level);
// Forces a lower level (tests compare levels; users may debug with it).
// Levels above the detected one are clamped to it, so no kernel ever runs
// instructions this CPU lacks.
void SetCpuLevel(CpuLevel level);
CpuLevel ActiveCpuLevel();

// Whether the kernels can multiply by a matrix of this type.
bool IsSupportedWeightType(GgmlType type);

struct WeightMatrix {
  GgmlType type = GgmlType::kF32;
  const void* data = nullptr;  // rows * row_bytes bytes
  int64_t rows = 0;            // output features (ggml ne[1])
  int64_t cols = 0;            // input features (ggml ne[0]); a multiple of the type's block
  size_t row_bytes = 0;        // at least cols / block_elements * block_bytes
};

// OK when MatVec and MatMul accept `w`; otherwise InvalidArgument saying
// what is wrong: an unsupported type (naming it), negative dimensions, cols
// not a multiple of the type's block, row_bytes too small for a row, or no
// data. Loaders call this so that a bad file is an error, not an abort.
Status CheckWeightMatrix(const WeightMatrix& w);

// Runs f(begin, end) over [0, n) split into chunks across the pool's threads
// (the calling thread takes part). Workers spin briefly between jobs before
// sleeping: waking a sleeping thread costs tens of microseconds, more than a
// small decode kernel.
class ThreadPool {
 public:
  // threads >= 1: that many threads in all, the caller included (1: no
  // thread is created and everything runs on the caller). threads <= 0: one
  // per CPU this process may run on.
  explicit ThreadPool(int threads = 0);
  // Stops and joins the workers. REQUIRES: no ParallelFor is running.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Calls f on disjoint chunks that cover [0, n) exactly once, each at least
  // `grain` long except the last, and returns when all have returned. Chunks
  // may run on any of the pool's threads in any order; n <= 0 does nothing;
  // a single chunk (n <= grain) runs on the caller.
  // REQUIRES: one driving thread at a time; not called from inside f (that
  // aborts, naming the pool); f does not throw. grain < 1 is taken as 1.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& f);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Element i of a row, dequantized: dst[0..n) from a row of n elements. Every
// level gives the reference's bits.
// REQUIRES: IsSupportedWeightType(type); n >= 0 and a multiple of the type's
// block elements (either violation aborts with a message naming it).
void DequantizeRow(GgmlType type, const void* src, float* dst, int64_t n);
// Scalar reference of the same (what the dispatched one is tested against).
void DequantizeRowReference(GgmlType type, const void* src, float* dst, int64_t n);

// dot(row, x) over n elements: the dispatched form accumulates in float, the
// reference in double (then rounds once). REQUIRES: as DequantizeRow.
float DotRow(GgmlType type, const void* row, const float* x, int64_t n);
float DotRowReference(GgmlType type, const void* row, const float* x, int64_t n);

// How MatVec and MatMul multiply a quantized weight matrix.
enum class MatMulPrecision : uint8_t {
  // Weights dequantized exactly, products in float: the path checked against
  // the naive reference forward pass.
  kExactFloat,
  // Activations rounded as llama.cpp rounds them for the weight type: 8-bit
  // blocks and integer dot products for the types with one (HasIntegerDot,
  // see Numerics). BF16 weights, where the CPU multiplies bf16 (HasBf16Dot),
  // take activations rounded to bf16, whose products are then exact in
  // float, summed in float (denormal inputs count as zero there). Either
  // way a row's result does not depend on its batch. F16 weights at
  // kAvx512Amx, in batches of 16 rows or more, are split exactly into two
  // bf16s each and take activations to 16 significant bits (finer than
  // llama.cpp's f16): exact products again, the same bits in every such
  // batch; fewer rows take the exact float path. F32, F16 elsewhere, and
  // BF16 on other CPUs take the exact float path.
  kInt8Activations,
};

// Whether the active level multiplies BF16 weights by bf16-rounded
// activations under kInt8Activations: AMX-BF16 (tdpbf16ps) at kAvx512Amx,
// AVX-512 BF16 (vdpbf16ps) at the AVX-512 levels of CPUs that have it.
bool HasBf16Dot();

// Integer products (MatMulPrecision::kInt8Activations) and their pieces.
//
// The activations paired with a weight type are ggml's blocks: Q8_0 (32
// elements in 34 bytes: f16 d, int8 qs[32]) for Q8_0 and Q4_0 weights, Q8_K
// (256 elements in 292 bytes: f32 d, int8 qs[256], int16 bsums[16], each
// bsum the sum of 16 quants) for Q4_K and Q6_K. Quants are in -127..127.

// Whether `type` has an integer product: Q8_0, Q4_0, Q4_K, Q6_K.
bool HasIntegerDot(GgmlType type);
// Bytes of the activation blocks of n elements paired with `weight_type`.
// REQUIRES: HasIntegerDot(weight_type); n a multiple of its block.
size_t ActivationRowBytes(GgmlType weight_type, int64_t n);
// Quantizes n floats into dst (ActivationRowBytes bytes) as llama.cpp's
// x86 build does: Q8_0 with d = amax / 127 (stored as f16) and quants
// round(x * 127 / amax), ties to even; Q8_K with d = max / -127, where max
// is the value of largest magnitude, and ggml's quantize_row_q8_K rounding.
// An all-zero block gets d = 0 and zero quants (and sums). The same bytes at
// every level. REQUIRES: as ActivationRowBytes; finite x.
void QuantizeActivationRow(GgmlType weight_type, const float* x, void* dst, int64_t n);
// The integer product of one weight row with activation blocks of n
// elements, dispatched: float accumulation of exact int32 block sums.
// REQUIRES: as ActivationRowBytes; activation quants in -127..127.
float DotRowInt8(GgmlType type, const void* row, const void* xq, int64_t n);
// Its scalar reference: the same int32 block sums, combined in double (each
// block's scale product d_w * d_x is a float product, as in the kernels).
float DotRowInt8Reference(GgmlType type, const void* row, const void* xq, int64_t n);

// y[r] = dot(W[r], x) for every row. y has w.rows entries. pool may be null
// (the caller does all the work). With kInt8Activations, x is quantized once
// (per-thread scratch, kept) and each row's product is DotRowInt8's.
// REQUIRES: CheckWeightMatrix(w) is OK (otherwise aborts with its message);
// x has w.cols entries; y does not overlap x or the weights.
void MatVec(const WeightMatrix& w, const float* x, float* y, ThreadPool* pool,
            MatMulPrecision precision = MatMulPrecision::kExactFloat);
// Y[i][r] = dot(W[r], X[i]) for i < n; X is n x w.cols, Y is n x w.rows, both
// row-major and dense. The weights are read from memory and decoded once per
// call, whatever n: blocks of rows are dequantized into a float copy that
// stays in cache while every row of X passes over them (prefill is one
// MatMul per weight matrix, not one MatVec per token). n == 1 is MatVec;
// n <= 0 does nothing. Uses a per-thread scratch buffer that grows to the
// largest n * w.cols seen and is kept. With kInt8Activations every row of X
// is quantized once, and each weight row is unpacked once per tile of up to
// 8 rows of X (AMX: 16) and multiplied into all of them: Y[i][r] is DotRowInt8(W[r],
// X[i] quantized), bit for bit, at the same level, for every n.
// REQUIRES: as MatVec.
void MatMul(const WeightMatrix& w, const float* x, int64_t n, float* y, ThreadPool* pool,
            MatMulPrecision precision = MatMulPrecision::kExactFloat);

// Quantizes n floats into one row of `type` (for kvstack gen-model and tests),
// writing n / block_elements * block_bytes bytes to dst.
// Q8_0 and Q4_0 reproduce ggml's reference quantizers byte for byte; Q4_K and
// Q6_K follow ggml's reference algorithms (what llama-quantize uses without
// an importance matrix) in the same float operation order; F16 and BF16
// round to nearest even. Fails with InvalidArgument, writing nothing, when
// the type is not supported, n is negative or not a multiple of the block,
// or (block types only) a value is infinite or NaN.
Status QuantizeRow(GgmlType type, const float* src, void* dst, int64_t n);

// KV cache heads (one head of K or V of one block: `head` points at its
// KvHeadBytes(type, part, block_size, head_dim) bytes, laid out as kv_arena.h
// says). Callers: the engine's forward pass (store and attention), tests.
//
// Stores token `slot` (head_dim floats) into the head. int8, fp8 and int4 V
// round to nearest (scales from the token's groups; fp8's row scale chosen
// for the least squared error). REQUIRES: not int8, int4 or fp8 K, whose
// channel scales or offsets come from the whole block (QuantizeKvHead;
// aborts, naming it); 0 <= slot < block_size; the layout's REQUIRES (even
// head_dim for int4); finite x.
void QuantizeKvRow(KvDType type, KvPart part, std::byte* head, int32_t block_size, int32_t head_dim, int32_t slot,
                   const float* x);
// Stores a whole head of block_size tokens (rows: block_size x head_dim
// floats) at once: how the engine writes a full block and a tier converts
// one. For int8, int4 and fp8 K the channel scales (int8, int4) and offsets
// (int4, fp8) come from the whole block; every other case equals
// QuantizeKvRow over slots 0..B-1. REQUIRES: as QuantizeKvRow, keys of any
// type allowed.
void QuantizeKvHead(KvDType type, KvPart part, std::byte* head, int32_t block_size, int32_t head_dim,
                    const float* rows);
// out[0..head_dim) = token `slot` of the head as floats (the reference the
// attention kernels are tested against; tiers and tests read blocks with it).
void DequantizeKvRow(KvDType type, KvPart part, const std::byte* head, int32_t block_size, int32_t head_dim,
                     int32_t slot, float* out);
// scores[j] = dot(q, key j) for j < len of a K head, dequantizing in
// registers: no float copy of the keys is made. Dispatched per CpuLevel for
// the quantized types (every level equals the reference up to summation
// order); float types take the scalar path. REQUIRES: 0 <= len <= block_size.
void KvScores(KvDType type, const std::byte* k_head, int32_t block_size, int32_t head_dim, int32_t len,
              const float* q, float* scores);
// out[d] += sum over j < len of w[j] * value j [d] for a V head, dequantizing
// in registers. REQUIRES: as KvScores.
void KvAccumulate(KvDType type, const std::byte* v_head, int32_t block_size, int32_t head_dim, int32_t len,
                  const float* w, float* out);

}  // namespace kvstack::kernels
