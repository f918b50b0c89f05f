// `kvstack bench engine`: prefill and decode throughput of the CPU engine at
// several concurrencies, each decode step set against the memory-bandwidth
// floor measured in the same run. The figures behind BENCHMARKS.md's engine
// section, and (with --profile) the measured costs a simulator replays.
//
// Method, per configuration (model x threads x sequences), on a fresh Engine:
//  - warm-up: one short request, untimed, so weights are paged in;
//  - each repeat submits S requests at once, each a distinct prompt of
//    BOS + random non-special tokens (seeded; distinct so nothing hits the
//    prefix cache), greedy, max_tokens = --gen-tokens; the step budget is
//    S x prompt tokens unless --batch-tokens says otherwise, so every prompt is
//    prefilled in the first step and all S sequences decode together, as
//    llama.cpp's llama-batched-bench does;
//  - prefill tok/s = S x prompt tokens / (submission to the end of the step in
//    which the last request got its first token);
//  - decode tok/s (aggregate) = tokens produced by the steps after that one /
//    the time of those steps; ms per decode step = that time / their number;
//  - bytes read per decode step = the model's weight bytes + the KV each
//    sequence attends over (context length x KV bytes per token, summed over
//    the step's sequences, averaged over the steps); floor = those bytes / the
//    read bandwidth of as many threads as the configuration runs, measured
//    at the start of the run (loads only: a decode step reads its weights
//    and KV and writes almost nothing). memcpy is measured and reported too.
// Every figure is the median over --repeats. The engine ends a sequence at
// EOS (it has no ignore-EOS option), so sequences may stop early: the number
// of tokens generated is reported next to every figure.
//
// The --profile JSON ("format": "kvstack-bench-engine/1") holds the run's
// memcpy bandwidth, one "results" entry per configuration (model identity and
// shape, threads, sequences, prompt and generated tokens, the figures above),
// and one "cost_models" entry per model and thread count for a simulator:
// prefill milliseconds per token at each batch of S prompts, decode step
// milliseconds at each batch size (with the mean context it was measured at),
// and the least-squares line ms = base_ms + per_sequence_ms x batch through the
// decode points (base_ms may come out slightly negative from noise; a
// simulator interpolates between points and clamps at the ends). With
// several --prompt-tokens it also fits one engine step's cost,
//   ms = base_ms + per_token_ms x tokens + per_attended_ms x attended,
// through every prefill and decode point ("step_ms_fit"): tokens are the
// step's tokens, attended the sum over them of the positions each attends
// over (a prefill of S prompts of P tokens: S x P(P+1)/2; a decode step: the
// contexts summed). Least squares of the relative error, so that the
// sub-millisecond decode steps weigh as much as the long prefills.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/engine.h"
#include "kvstack/tokenizer.h"

namespace kvstack::cli {
namespace {

using SteadyTime = std::chrono::steady_clock;

struct EngineBenchArgs {
  std::vector<std::string> models;
  std::string threads = "0";
  std::string sequences = "1,4,16";
  std::string prompt_tokens = "128";
  int gen_tokens = 64;
  KvTypeArgs kv_type;
  kernels::MatMulPrecision matmul = EngineOptions{}.matmul_precision;
  int block_size = 16;
  int batch_tokens = 0;
  int repeats = 3;
  uint64_t seed = 1;
  int copy_mib = 256;
  std::string profile;
  bool markdown = false;
};

// The KV types the flags name ("int8", "k=int8,v=int4"); flags already checked.
std::string TypesOf(const KvTypeArgs& k) {
  EngineOptions o;
  (void)ApplyKvTypeOptions(k, &o);
  return KvTypesName(o);
}

// One timed repeat: S requests submitted together and stepped to the end.
struct RunFigures {
  double prefill_s = 0;       // submission to the step that gave the last first token
  double decode_s = 0;        // the steps after it, summed
  int64_t decode_steps = 0;
  int64_t decode_tokens = 0;  // tokens those steps produced
  double kv_bytes_read = 0;   // KV the decode steps attended over, summed
  int64_t generated = 0;      // every token produced, first tokens included
  int32_t early_stops = 0;    // sequences that ended before --gen-tokens (EOS)
  int32_t cached_tokens = 0;  // prompt tokens the prefix cache served (0 by design)
  int32_t preemptions = 0;    // 0 by design: the pool holds every sequence
};

// A configuration's medians over its repeats.
struct ConfigResult {
  std::string model_path;
  EngineInfo info;
  int sequences = 0;
  int prompt_tokens = 0;       // per sequence
  int64_t prefill_tokens = 0;  // sequences x prompt tokens
  int batch_tokens = 0;        // the engine's step budget
  std::vector<RunFigures> runs;
  double prefill_tok_s = 0;
  double decode_tok_s = 0;
  double ms_per_step = 0;
  double mean_batch = 0;      // decode tokens per decode step
  double bytes_per_step = 0;  // weights + KV
  double floor_ms = 0;        // bytes_per_step at the measured copy bandwidth
  int64_t generated = 0;      // median tokens generated per repeat
  int32_t early_stops = 0;    // most sequences any repeat saw stop early
  int32_t cached_tokens = 0;  // summed over repeats
  int32_t preemptions = 0;    // summed over repeats
};

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "kvstack bench engine: %s\n", message.c_str());
  return code;
}

// "1,4,16" -> {1, 4, 16}; each value in [min, max].
Result<std::vector<int>> ParseIntList(std::string_view flag, const std::string& text, int min, int max) {
  std::vector<int> values;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    long v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return InvalidArgument(fmt::format("{} '{}': '{}' is not a whole number (expected a list such as 1,4,16)",
                                         flag, text, item));
    }
    if (v < min || v > max) return InvalidArgument(fmt::format("{} '{}': {} is outside {}..{}", flag, text, v, min, max));
    values.push_back(static_cast<int>(v));
    pos = comma + 1;
  }
  return values;
}

// Single-thread memcpy bandwidth in GB/s (bytes copied per second), the best
// of `copies` copies of a `bytes` buffer. Both buffers are touched first so
// page faults are not timed.
double MeasureCopyGBps(size_t bytes, int copies) {
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = std::numeric_limits<double>::infinity();
  unsigned sink = 0;
  for (int i = 0; i < copies; ++i) {
    src[static_cast<size_t>(i) * 4099 % bytes] = static_cast<char>(i);
    const auto t0 = SteadyTime::now();
    std::memcpy(dst.data(), src.data(), bytes);
    const double s = std::chrono::duration<double>(SteadyTime::now() - t0).count();
    sink += static_cast<unsigned char>(dst[static_cast<size_t>(i) * 4099 % bytes]);  // keeps the copy
    best = std::min(best, s);
  }
  if (sink == 0xffffffffu) std::fputc(' ', stderr);
  return static_cast<double>(bytes) / best / 1e9;
}

// Read bandwidth in GB/s of `threads` threads each summing its own slice of a
// `bytes` buffer as 64-bit words (loads only), the best of `reads` passes.
// The buffer is touched first so page faults are not timed; starting the
// threads is timed, a few microseconds against milliseconds of reading.
double MeasureReadGBps(size_t bytes, int threads, int reads) {
  std::vector<uint64_t> buf(bytes / sizeof(uint64_t), 1);
  const size_t words = buf.size();
  std::vector<uint64_t> sums(static_cast<size_t>(threads) * 8, 0);  // a cache line per thread
  double best = std::numeric_limits<double>::infinity();
  for (int r = 0; r < reads; ++r) {
    buf[static_cast<size_t>(r) * 4099 % words] = static_cast<uint64_t>(r);
    std::vector<std::thread> pool;
    const auto t0 = SteadyTime::now();
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, t] {
        const size_t lo = words * static_cast<size_t>(t) / static_cast<size_t>(threads);
        const size_t hi = words * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
        uint64_t acc[4] = {0, 0, 0, 0};
        size_t i = lo;
        for (; i + 4 <= hi; i += 4) {
          for (size_t k = 0; k < 4; ++k) acc[k] += buf[i + k];
        }
        for (; i < hi; ++i) acc[0] += buf[i];
        sums[static_cast<size_t>(t) * 8] += acc[0] + acc[1] + acc[2] + acc[3];
      });
    }
    for (std::thread& th : pool) th.join();
    best = std::min(best, std::chrono::duration<double>(SteadyTime::now() - t0).count());
  }
  uint64_t sink = 0;
  for (uint64_t v : sums) sink += v;
  if (sink == 0) std::fputc(' ', stderr);  // never: keeps the reads
  return static_cast<double>(bytes) / best / 1e9;
}

// Draws distinct-looking prompts: BOS (if the model wants it), then ordinary
// and byte tokens, never a control token that could end or restructure them.
class PromptSource {
 public:
  PromptSource(const Tokenizer& tok, uint64_t seed) : rng_(seed) {
    if (tok.add_bos() && tok.bos()) bos_ = *tok.bos();
    for (Token t = 0; t < tok.vocab_size(); ++t) {
      const TokenKind k = tok.Kind(t);
      if (k == TokenKind::kNormal || k == TokenKind::kByte) pool_.push_back(t);
    }
  }
  bool empty() const { return pool_.empty(); }
  std::vector<Token> Next(int length) {
    std::vector<Token> p;
    if (bos_) p.push_back(*bos_);
    // A plain modulo, not a distribution class: the same seed gives the same
    // prompts with any standard library (the bias is immaterial here).
    while (static_cast<int>(p.size()) < length) p.push_back(pool_[rng_() % pool_.size()]);
    return p;
  }

 private:
  std::mt19937_64 rng_;
  std::optional<Token> bos_;
  std::vector<Token> pool_;
};

double Seconds(SteadyTime::time_point a, SteadyTime::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

Result<RunFigures> TimedRun(Engine& engine, const std::vector<std::vector<Token>>& prompts, int gen_tokens) {
  struct Track {
    int32_t prompt = 0;
    int32_t generated = 0;
  };
  std::map<RequestId, Track> track;
  RunFigures f;
  const auto t0 = SteadyTime::now();
  for (const std::vector<Token>& p : prompts) {
    GenerationRequest r;
    r.prompt = p;
    r.sampling.temperature = 0;  // greedy: no sampling cost beyond the argmax
    r.sampling.max_tokens = gen_tokens;
    r.ignore_eos = true;  // every sequence runs the full length, as llama-batched-bench does
    auto id = engine.Submit(std::move(r));
    if (!id.ok()) return id.status();
    track[*id] = Track{.prompt = static_cast<int32_t>(p.size())};
  }
  const double kv_per_token = static_cast<double>(engine.info().kv_bytes_per_token);
  size_t waiting_first = prompts.size();
  int idle_steps = 0;
  std::vector<GenerationEvent> events;
  while (engine.HasWork()) {
    events.clear();
    const auto a = SteadyTime::now();
    KVSTACK_RETURN_IF_ERROR(engine.Step(&events));
    const auto b = SteadyTime::now();
    const bool decode_step = waiting_first == 0;
    idle_steps = events.empty() ? idle_steps + 1 : 0;
    if (idle_steps > 1000) return Internal("the engine has work but produced nothing in 1000 steps");
    double kv_tokens = 0;
    int64_t tokens = 0;
    for (const GenerationEvent& ev : events) {
      Track& t = track.at(ev.id);
      // The step fed the sequence's last token, which attends over every
      // position so far: prompt + tokens generated before this step.
      if (decode_step && !ev.tokens.empty()) kv_tokens += t.prompt + t.generated;
      if (!ev.tokens.empty() && t.generated == 0) --waiting_first;
      t.generated += static_cast<int32_t>(ev.tokens.size());
      tokens += static_cast<int64_t>(ev.tokens.size());
      if (ev.finish != FinishReason::kNone) {
        if (ev.metrics.generated_tokens < gen_tokens) ++f.early_stops;
        f.cached_tokens += ev.metrics.cached_tokens;
        f.preemptions += ev.metrics.preemptions;
      }
    }
    f.generated += tokens;
    if (decode_step) {
      f.decode_s += Seconds(a, b);
      ++f.decode_steps;
      f.decode_tokens += tokens;
      f.kv_bytes_read += kv_tokens * kv_per_token;
    } else if (waiting_first == 0) {
      f.prefill_s = Seconds(t0, b);
    }
  }
  return f;
}

template <typename Fn>
double Median(const std::vector<RunFigures>& runs, Fn value) {
  std::vector<double> v;
  for (const RunFigures& r : runs) v.push_back(value(r));
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void Summarize(ConfigResult& c, double read_gbps) {
  const auto& runs = c.runs;
  c.prefill_tok_s = Median(runs, [&](const RunFigures& r) { return r.prefill_s > 0 ? c.prefill_tokens / r.prefill_s : 0; });
  c.decode_tok_s = Median(runs, [](const RunFigures& r) { return r.decode_s > 0 ? r.decode_tokens / r.decode_s : 0; });
  c.ms_per_step = Median(runs, [](const RunFigures& r) { return r.decode_steps ? 1e3 * r.decode_s / r.decode_steps : 0; });
  c.mean_batch = Median(runs, [](const RunFigures& r) {
    return r.decode_steps ? static_cast<double>(r.decode_tokens) / r.decode_steps : 0;
  });
  const double kv_per_step = Median(runs, [](const RunFigures& r) { return r.decode_steps ? r.kv_bytes_read / r.decode_steps : 0; });
  c.bytes_per_step = static_cast<double>(c.info.weight_bytes) + kv_per_step;
  c.floor_ms = 1e3 * c.bytes_per_step / (read_gbps * 1e9);
  c.generated = static_cast<int64_t>(Median(runs, [](const RunFigures& r) { return static_cast<double>(r.generated); }));
  for (const RunFigures& r : runs) {
    c.early_stops = std::max(c.early_stops, r.early_stops);
    c.cached_tokens += r.cached_tokens;
    c.preemptions += r.preemptions;
  }
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20) {
      out += fmt::format("\\u{:04x}", u);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// Least squares y = base + slope * x; slope 0 with fewer than two distinct x.
std::pair<double, double> FitLine(const std::vector<std::pair<double, double>>& points) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = static_cast<double>(points.size());
  for (const auto& [x, y] : points) sx += x, sy += y, sxx += x * x, sxy += x * y;
  const double det = n * sxx - sx * sx;
  if (points.size() < 2 || det <= 1e-12) return {n > 0 ? sy / n : 0, 0};
  const double slope = (n * sxy - sx * sy) / det;
  return {(sy - slope * sx) / n, slope};
}

// One measured step (or a prefill's steps): its tokens, the positions they
// attend over summed, and its milliseconds.
struct StepPoint {
  double tokens = 0, attended = 0, ms = 0;
};
struct StepFit {
  double base_ms = 0, per_token_ms = 0, per_attended_ms = 0;
  double max_relative_error = 0;  // over the points
};
// ms = base + per_token x tokens + per_attended x attended, least squares of
// the relative error (each row divided by its ms). Nothing when the system is
// singular (too few distinct points).
std::optional<StepFit> FitStep(const std::vector<StepPoint>& points) {
  double m[3][4] = {};
  for (const StepPoint& p : points) {
    if (!(p.ms > 0)) continue;
    const double row[3] = {1 / p.ms, p.tokens / p.ms, p.attended / p.ms};
    for (int i = 0; i < 3; ++i) {
      for (int k = 0; k < 3; ++k) m[i][k] += row[i] * row[k];
      m[i][3] += row[i];  // target: ms / ms = 1
    }
  }
  // Gaussian elimination with partial pivoting on the normal equations.
  for (int c = 0; c < 3; ++c) {
    int pivot = c;
    for (int r = c + 1; r < 3; ++r) {
      if (std::abs(m[r][c]) > std::abs(m[pivot][c])) pivot = r;
    }
    if (std::abs(m[pivot][c]) < 1e-300) return std::nullopt;
    std::swap(m[c], m[pivot]);
    for (int r = 0; r < 3; ++r) {
      if (r == c) continue;
      const double f = m[r][c] / m[c][c];
      for (int k = c; k < 4; ++k) m[r][k] -= f * m[c][k];
    }
  }
  StepFit f{m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2], 0};
  if (!std::isfinite(f.base_ms) || !std::isfinite(f.per_token_ms) || !std::isfinite(f.per_attended_ms)) {
    return std::nullopt;
  }
  for (const StepPoint& p : points) {
    const double predicted = f.base_ms + f.per_token_ms * p.tokens + f.per_attended_ms * p.attended;
    if (p.ms > 0) f.max_relative_error = std::max(f.max_relative_error, std::abs(predicted / p.ms - 1));
  }
  return f;
}

// The --profile file: one entry per configuration, then per (model, threads)
// the prefill cost per token and the decode step cost against batch size.
std::string ProfileJson(const EngineBenchArgs& a, double copy_gbps, const std::map<int, double>& read_gbps,
                        const std::vector<ConfigResult>& results) {
  std::string j = "{\n  \"format\": \"kvstack-bench-engine/1\",\n";
  j += fmt::format(
      "  \"method\": {},\n",
      JsonString("per configuration a fresh engine, S distinct random-token prompts submitted at once, greedy; "
                 "prefill_tok_s = S*prompt_tokens / (submission to the step that produced the last first token); "
                 "decode_tok_s = tokens of the later steps / their time; every figure the median of the repeats; "
                 "bytes_per_decode_step = weight bytes + KV attended; floor = bytes / read_gbps at the configuration's "
                 "thread count"));
  j += fmt::format("  \"memcpy_gbps\": {:.3f},\n  \"memcpy_bytes\": {},\n  \"memcpy_threads\": 1,\n", copy_gbps,
                   static_cast<int64_t>(a.copy_mib) << 20);
  j += "  \"read_gbps\": {";
  for (auto it = read_gbps.begin(); it != read_gbps.end(); ++it) {
    j += fmt::format("{}\"{}\": {:.6g}", it == read_gbps.begin() ? "" : ", ", it->first, it->second);
  }
  j += "},\n";
  j += fmt::format("  \"kv_type\": {},\n  \"block_size\": {},\n  \"repeats\": {},\n  \"seed\": {},\n",
                   JsonString(TypesOf(a.kv_type)), a.block_size, a.repeats, a.seed);
  j += "  \"results\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    const ConfigResult& c = results[i];
    const EngineInfo& m = c.info;
    j += i ? ",\n    {" : "\n    {";
    j += fmt::format(
        "\"model_path\": {}, \"model_identity\": {}, \"architecture\": {}, \"n_layer\": {}, \"n_embd\": {}, "
        "\"n_head\": {}, \"n_head_kv\": {}, \"head_dim\": {}, \"n_vocab\": {}, \"weight_bytes\": {}, "
        "\"kv_bytes_per_token\": {}, \"cpu_level\": {}, \"matmul\": {}, ",
        JsonString(c.model_path), JsonString(m.model_identity), JsonString(m.architecture), m.n_layer, m.n_embd,
        m.n_head, m.n_head_kv, m.head_dim, m.n_vocab, m.weight_bytes, m.kv_bytes_per_token, JsonString(m.cpu_level),
        JsonString(std::string(MatMulPrecisionName(m.matmul_precision))));
    j += fmt::format(
        "\"threads\": {}, \"sequences\": {}, \"prompt_tokens\": {}, \"gen_tokens\": {}, \"batch_tokens\": {}, "
        "\"generated_tokens\": {}, \"early_stops\": {}, \"cached_tokens\": {}, \"preemptions\": {}, "
        "\"prefill_tok_s\": {:.3f}, \"prefill_ms_per_token\": {:.6f}, \"decode_tok_s\": {:.3f}, "
        "\"ms_per_decode_step\": {:.4f}, \"mean_decode_batch\": {:.3f}, \"bytes_per_decode_step\": {:.0f}, "
        "\"floor_ms_per_decode_step\": {:.4f}, \"step_to_floor\": {:.3f}}}",
        m.threads, c.sequences, c.prompt_tokens, a.gen_tokens, c.batch_tokens, c.generated, c.early_stops,
        c.cached_tokens, c.preemptions, c.prefill_tok_s, c.prefill_tok_s > 0 ? 1e3 / c.prefill_tok_s : 0.0,
        c.decode_tok_s, c.ms_per_step, c.mean_batch, c.bytes_per_step, c.floor_ms,
        c.floor_ms > 0 ? c.ms_per_step / c.floor_ms : 0.0);
  }
  j += "\n  ],\n  \"cost_models\": [";
  bool first = true;
  for (size_t i = 0; i < results.size(); ++i) {
    const ConfigResult& head = results[i];
    const auto same = [&](const ConfigResult& c) {
      return c.model_path == head.model_path && c.info.threads == head.info.threads;
    };
    if (std::any_of(results.begin(), results.begin() + static_cast<std::ptrdiff_t>(i), same)) continue;
    std::vector<std::pair<double, double>> decode;
    std::vector<StepPoint> steps;
    std::set<int> prompt_lengths;
    std::string prefill_points, decode_points;
    for (const ConfigResult& c : results) {
      if (!same(c)) continue;
      decode.emplace_back(c.mean_batch, c.ms_per_step);
      prompt_lengths.insert(c.prompt_tokens);
      const double mean_context = c.info.kv_bytes_per_token && c.mean_batch > 0
                                      ? (c.bytes_per_step - static_cast<double>(c.info.weight_bytes)) /
                                            static_cast<double>(c.info.kv_bytes_per_token) / c.mean_batch
                                      : 0.0;
      if (!prefill_points.empty()) prefill_points += ", ", decode_points += ", ";
      prefill_points += fmt::format(
          "{{\"sequences\": {}, \"prompt_tokens\": {}, \"tokens\": {}, \"ms_per_token\": {:.6f}}}", c.sequences,
          c.prompt_tokens, c.prefill_tokens, c.prefill_tok_s > 0 ? 1e3 / c.prefill_tok_s : 0.0);
      decode_points += fmt::format("{{\"batch\": {:.3f}, \"ms_per_step\": {:.4f}, \"mean_context\": {:.1f}}}",
                                   c.mean_batch, c.ms_per_step, mean_context);
      const double p = c.prompt_tokens;
      if (c.prefill_tok_s > 0) {
        steps.push_back({static_cast<double>(c.prefill_tokens), c.sequences * p * (p + 1) / 2,
                         1e3 * static_cast<double>(c.prefill_tokens) / c.prefill_tok_s});
      }
      if (c.ms_per_step > 0) steps.push_back({c.mean_batch, c.mean_batch * mean_context, c.ms_per_step});
    }
    const auto [base, slope] = FitLine(decode);
    std::string step_fit;
    if (prompt_lengths.size() >= 2) {
      if (const std::optional<StepFit> f = FitStep(steps)) {
        step_fit = fmt::format(
            ", \"step_ms_fit\": {{\"base_ms\": {:.5f}, \"per_token_ms\": {:.6f}, \"per_attended_ms\": {:.8f}, "
            "\"points\": {}, \"max_relative_error\": {:.3f}}}",
            f->base_ms, f->per_token_ms, f->per_attended_ms, steps.size(), f->max_relative_error);
      }
    }
    j += first ? "\n    {" : ",\n    {";
    first = false;
    j += fmt::format(
        "\"model_path\": {}, \"model_identity\": {}, \"threads\": {}, \"prompt_tokens\": {}, "
        "\"prefill\": [{}], \"decode\": [{}], \"decode_step_ms_fit\": {{\"base_ms\": {:.4f}, "
        "\"per_sequence_ms\": {:.4f}}}{}}}",
        JsonString(head.model_path), JsonString(head.info.model_identity), head.info.threads, head.prompt_tokens,
        prefill_points, decode_points, base, slope, step_fit);
  }
  j += "\n  ]\n}\n";
  return j;
}

std::string Label(const std::string& path) { return std::filesystem::path(path).filename().string(); }

std::string Thousands(double v) {
  const std::string digits = std::to_string(static_cast<int64_t>(v + 0.5));
  std::string s;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s += ',';
    s += digits[i];
  }
  return s;
}

void PrintTable(const EngineBenchArgs& a, double copy_gbps, const std::map<int, double>& read_gbps,
                const std::vector<ConfigResult>& results) {
  // A "prompt" column only when several lengths were measured, so the
  // single-length table keeps its shape.
  const bool prompts = std::any_of(results.begin(), results.end(), [&](const ConfigResult& c) {
    return c.prompt_tokens != results.front().prompt_tokens;
  });
  std::vector<std::string> header = {"model", "threads", "seqs", "prefill tok/s", "decode tok/s",
                                     "ms/step", "MB read/step", "floor ms", "step/floor", "generated"};
  if (prompts) header.insert(header.begin() + 2, "prompt");
  std::vector<std::vector<std::string>> rows;
  for (const ConfigResult& c : results) {
    rows.push_back({Label(c.model_path), std::to_string(c.info.threads), std::to_string(c.sequences),
                    Thousands(c.prefill_tok_s), Thousands(c.decode_tok_s), fmt::format("{:.3f}", c.ms_per_step),
                    fmt::format("{:.2f}", c.bytes_per_step / 1e6), fmt::format("{:.3f}", c.floor_ms),
                    fmt::format("{:.2f}x", c.floor_ms > 0 ? c.ms_per_step / c.floor_ms : 0.0),
                    fmt::format("{}/{}{}", c.generated, static_cast<int64_t>(c.sequences) * a.gen_tokens,
                                c.early_stops ? fmt::format(" ({} hit EOS)", c.early_stops) : "")});
    if (prompts) rows.back().insert(rows.back().begin() + 2, std::to_string(c.prompt_tokens));
  }
  std::string reads;
  for (const auto& [t, gbps] : read_gbps) reads += fmt::format("{}{:.1f} GB/s with {}", reads.empty() ? "" : ", ", gbps, t);
  std::printf("read %s thread(s) (the floor's; best of 5 reads of %d MiB); memcpy %.1f GB/s (1 thread); prompt %s "
              "tokens, %d generated per sequence; KV %s, block %d; median of %d repeats\n",
              reads.c_str(), a.copy_mib, copy_gbps, a.prompt_tokens.c_str(), a.gen_tokens, TypesOf(a.kv_type).c_str(), a.block_size, a.repeats);
  if (a.markdown) {
    std::string line = "|", rule = "|";
    for (size_t i = 0; i < header.size(); ++i) {
      line += " " + header[i] + " |";
      rule += i == 0 ? "---|" : "---:|";
    }
    std::printf("\n%s\n%s\n", line.c_str(), rule.c_str());
    for (const auto& r : rows) {
      std::string l = "|";
      for (const std::string& cell : r) l += " " + cell + " |";
      std::printf("%s\n", l.c_str());
    }
    return;
  }
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
    for (const auto& r : rows) width[i] = std::max(width[i], r[i].size());
  }
  const auto print = [&](const std::vector<std::string>& r) {
    std::string l;
    for (size_t i = 0; i < r.size(); ++i) {
      l += i == 0 ? fmt::format("{:<{}}", r[i], width[i]) : fmt::format("  {:>{}}", r[i], width[i]);
    }
    std::printf("%s\n", l.c_str());
  };
  print(header);
  for (const auto& r : rows) print(r);
}

// Runs one configuration: a fresh engine, a warm-up, then the repeats;
// `announce` prints the model's shape first. InvalidArgument / NotFound for
// bad input (the model, a prompt that does not fit), other codes otherwise.
Result<ConfigResult> RunConfig(const EngineBenchArgs& a, const std::string& model, int threads, int prompt_tokens,
                               int sequences, const EngineOptions& kv, double read_gbps, const std::string& progress, bool announce) {
  EngineOptions o;
  o.model_path = model;
  o.threads = threads;
  o.matmul_precision = a.matmul;
  o.block_size = a.block_size;
  o.kv_dtype = kv.kv_dtype;
  o.kv_dtype_v = kv.kv_dtype_v;
  const int64_t batch = a.batch_tokens > 0 ? a.batch_tokens : static_cast<int64_t>(sequences) * prompt_tokens;
  o.max_batch_tokens = static_cast<int32_t>(std::min<int64_t>(batch, std::numeric_limits<int32_t>::max()));
  o.max_running = std::max(64, sequences);
  // Room for every sequence's whole context plus the warm-up, so nothing is
  // preempted: the benchmark measures compute, not the scheduler's choices.
  const int64_t per_seq = (prompt_tokens + a.gen_tokens + a.block_size - 1) / a.block_size + 1;
  o.num_blocks = static_cast<int32_t>((sequences + 1) * per_seq + 4);
  auto created = Engine::Create(o);
  if (!created.ok()) return created.status();
  Engine& engine = **created;
  const EngineInfo& info = engine.info();
  if (announce) {
    std::fprintf(stderr, "model %s: %s, %d layers, embd %d, %d heads / %d KV heads, %.1f MB weights, %zu KV bytes/token, %s kernels, %s matmul\n",
                 model.c_str(), info.architecture.c_str(), info.n_layer, info.n_embd, info.n_head, info.n_head_kv,
                 info.weight_bytes / 1e6, info.kv_bytes_per_token, info.cpu_level.c_str(),
                 std::string(MatMulPrecisionName(info.matmul_precision)).c_str());
  }
  if (prompt_tokens + a.gen_tokens > info.n_ctx) {
    return InvalidArgument(fmt::format("--prompt-tokens {} + --gen-tokens {} exceed the context of {} ({} tokens)",
                                       prompt_tokens, a.gen_tokens, model, info.n_ctx));
  }
  PromptSource prompts(engine.tokenizer(), a.seed);
  if (prompts.empty()) return InvalidArgument(fmt::format("{}: the vocabulary has no ordinary tokens to build prompts", model));

  ConfigResult c;
  c.model_path = model;
  c.info = info;
  c.sequences = sequences;
  c.prompt_tokens = prompt_tokens;
  c.prefill_tokens = static_cast<int64_t>(sequences) * prompt_tokens;
  c.batch_tokens = o.max_batch_tokens;
  {
    auto warm = TimedRun(engine, {prompts.Next(std::min(prompt_tokens, 16))}, 2);
    if (!warm.ok()) return warm.status();
  }
  for (int r = 0; r < a.repeats; ++r) {
    std::vector<std::vector<Token>> batch_prompts;
    for (int s = 0; s < sequences; ++s) batch_prompts.push_back(prompts.Next(prompt_tokens));
    auto run = TimedRun(engine, batch_prompts, a.gen_tokens);
    if (!run.ok()) return run.status();
    const RunFigures& f = *run;
    std::fprintf(stderr, "%s repeat %d/%d: prefill %.0f tok/s, decode %.0f tok/s (%.3f ms/step), %lld tokens\n",
                 progress.c_str(), r + 1, a.repeats, f.prefill_s > 0 ? c.prefill_tokens / f.prefill_s : 0.0,
                 f.decode_s > 0 ? f.decode_tokens / f.decode_s : 0.0,
                 f.decode_steps ? 1e3 * f.decode_s / f.decode_steps : 0.0, static_cast<long long>(f.generated));
    c.runs.push_back(f);
  }
  Summarize(c, read_gbps);
  return c;
}

int RunEngineBench(const EngineBenchArgs& a) {
  if (a.models.empty()) {
    return Fail(2, "no model: pass --model PATH (a llama/qwen2 GGUF, repeatable), e.g. ../shared/models/stories260K.gguf "
                   "or one written by `kvstack gen-model --preset llama-3.2-1b-shape --type q8_0 --out 1b.gguf`");
  }
  auto threads = ParseIntList("--threads", a.threads, 0, 1024);
  if (!threads.ok()) return Fail(2, threads.status().message());
  auto sequences = ParseIntList("--sequences", a.sequences, 1, 4096);
  if (!sequences.ok()) return Fail(2, sequences.status().message());
  auto prompt_lengths = ParseIntList("--prompt-tokens", a.prompt_tokens, 1, 1 << 20);
  if (!prompt_lengths.ok()) return Fail(2, prompt_lengths.status().message());
  EngineOptions kv;
  if (Status st = ApplyKvTypeOptions(a.kv_type, &kv); !st.ok()) return Fail(2, st.message());
  for (const std::string& m : a.models) {
    if (!std::filesystem::is_regular_file(m)) {
      return Fail(2, fmt::format("--model {}: no such file (write one with `kvstack gen-model --out {}`)", m, m));
    }
  }

  std::fprintf(stderr, "measuring memcpy bandwidth (%d MiB, 1 thread)...\n", a.copy_mib);
  const double copy_gbps = MeasureCopyGBps(static_cast<size_t>(a.copy_mib) << 20, 5);
  std::fprintf(stderr, "memcpy: %.1f GB/s\n", copy_gbps);
  std::map<int, double> read_gbps;
  for (const int t : *threads) {
    if (read_gbps.count(t)) continue;
    // 0 threads: the engine's one per CPU.
    const int n = t > 0 ? t : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    read_gbps[t] = MeasureReadGBps(static_cast<size_t>(a.copy_mib) << 20, n, 5);
    std::fprintf(stderr, "read, %d thread(s): %.1f GB/s\n", t, read_gbps[t]);
  }

  std::vector<ConfigResult> results;
  const size_t total = a.models.size() * threads->size() * prompt_lengths->size() * sequences->size();
  for (const std::string& model : a.models) {
    for (const int t : *threads) {
      for (const int p : *prompt_lengths) {
        for (const int s : *sequences) {
          const std::string progress = fmt::format("[{}/{}] {}, threads {}, prompt {}, sequences {}:",
                                                   results.size() + 1, total, Label(model), t, p, s);
          const bool announce = results.empty() || results.back().model_path != model;
          auto c = RunConfig(a, model, t, p, s, kv, read_gbps.at(t), progress, announce);
          if (!c.ok()) {
            const StatusCode code = c.status().code();
            const bool input = code == StatusCode::kInvalidArgument || code == StatusCode::kNotFound ||
                               code == StatusCode::kDataLoss;
            return Fail(input ? 2 : 1, c.status().message());
          }
          results.push_back(std::move(c).value());
        }
      }
    }
  }
  PrintTable(a, copy_gbps, read_gbps, results);
  if (!a.profile.empty()) {
    if (Status s = WriteOutputFile("--profile", a.profile, ProfileJson(a, copy_gbps, read_gbps, results)); !s.ok()) {
      return Fail(1, s.message());
    }
  }
  return 0;
}

constexpr char kEngineFooter[] = R"footer(
Method: each configuration (model x threads x prompt x sequences) gets a fresh engine
and an untimed warm-up. Each repeat submits S requests at once with distinct
random-token prompts (BOS + ordinary tokens, seeded; no prefix-cache hits),
greedy, --gen-tokens each. The step budget is S x --prompt-tokens unless
--batch-tokens is given, so all prompts are prefilled in one step and the S
sequences then decode together (as llama-batched-bench does).
  prefill tok/s  S x prompt tokens / (submission to the end of the step that
                 gave the last request its first token)
  decode tok/s   tokens produced by the later steps / their time (aggregate
                 over the sequences); ms/step is that time per step
  MB read/step   weight bytes + KV attended (context x KV bytes per token,
                 summed over the step's sequences, averaged over the steps)
  floor ms       MB read/step / the read bandwidth of the configuration's
                 thread count (loads only, best of 5 reads of --copy-mib,
                 measured at the start of the run); step/floor = ms/step /
                 it, so 1.00x would be reading at the machine's limit
  generated      tokens generated (median repeat) / S x --gen-tokens: the
                 engine ends a sequence at EOS, so it can be lower; "(N hit
                 EOS)": the most sequences any repeat saw end early
Figures are medians of --repeats. Progress goes to stderr, the table to
stdout. Exit codes: 0 done, 1 the engine or the --profile write failed,
2 bad options or model.

Example:
  kvstack bench engine --model ../shared/models/stories260K.gguf --threads 1,2 --markdown
)footer";

}  // namespace

CommandRunner AddBenchCommand(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks of kvstack's components (run `kvstack bench engine --help`)");
  // No require_subcommand: a bare `kvstack bench` gets our message listing
  // the benchmarks rather than CLI11's "A subcommand is required".
  auto args = std::make_shared<EngineBenchArgs>();
  CLI::App* engine = bench->add_subcommand(
      "engine",
      "Prefill and decode tokens per second of the CPU engine at several concurrencies, and each decode step against "
      "the memory-bandwidth floor (bytes of weights and KV read / memcpy bandwidth measured in the same run).");
  engine->footer(kEngineFooter);
  engine->add_option("-m,--model", args->models, "GGUF model (llama or qwen2); repeat for several")->take_all();
  engine->add_option("-t,--threads", args->threads, "Kernel threads, a list such as 1,2 (0: one per CPU)")
      ->capture_default_str();
  engine->add_option("-s,--sequences", args->sequences, "Concurrent sequences, a list")->capture_default_str();
  engine->add_option("--prompt-tokens", args->prompt_tokens,
                     "Prompt length per sequence, BOS included; a list such as 32,128,320 (with --profile, two or "
                     "more lengths add the step cost fit: base + per token + per attended position)")
      ->capture_default_str();
  engine->add_option("--gen-tokens", args->gen_tokens, "Tokens to generate per sequence (at least 2: one from prefill, "
                                                        "the rest from decode steps)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  AddKvTypeOptions(engine, &args->kv_type);
  AddExactMatmulFlag(engine, &args->matmul);
  AddCpuLevelOption(engine);
  engine->add_option("--block-size", args->block_size, "Tokens per KV block: a power of two from 1 to 512")
      ->capture_default_str();
  engine->add_option("--batch-tokens", args->batch_tokens,
                     "Engine token budget per step (0: sequences x prompt tokens, one prefill step)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  engine->add_option("--repeats", args->repeats, "Timed repeats per configuration; figures are their median")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  engine->add_option("--seed", args->seed, "Seed of the random prompts")->capture_default_str();
  engine->add_option("--copy-mib", args->copy_mib, "Size of the buffer the memcpy and read bandwidths are measured on, in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 16384));
  engine->add_option("--profile", args->profile,
                     "Write the results as JSON to this file: every configuration, and per model and thread count the "
                     "prefill cost per token and the decode step cost against batch size");
  engine->add_flag("--markdown", args->markdown, "Print the table as Markdown (for BENCHMARKS.md)");
  auto kv_accuracy = AddKvAccuracyBench(bench);
  return [args, engine, kv_accuracy] {
    if (engine->parsed()) return RunEngineBench(*args);
    if (int rc = kv_accuracy(); rc >= 0) return rc;
    std::fprintf(stderr, "kvstack bench: name a benchmark: engine or kv-accuracy (see kvstack bench engine --help)\n");
    return 2;
  };
}

}  // namespace kvstack::cli
