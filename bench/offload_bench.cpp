// Offload benchmark (issue 5): a multi-turn long-context chat workload whose
// working set is several times the device KV pool, run on the Engine API
// (no HTTP) twice or three times in one process over the same generated
// model and the same requests:
//   recompute  no tiers: a session's evicted history is recomputed each turn
//   host       a host-RAM tier that holds the whole working set
//   host+disk  a host tier of half the working set (--host-frac) over a disk tier
//              (temp dir) that holds all of it: blocks come back from disk,
//              and prefetch (at Submit) has to move them up in time
//   host-int8, host+disk-int8
//              the same tiers storing blocks as int8 (--tier-kv-type int8):
//              half the bytes moved; lossy, so their outputs are counted
//              against recompute's instead of required equal
// Sessions take turns round-robin, so when a session comes back its blocks
// have long left the device pool. Each turn's prompt is the previous prompt,
// the previous reply and new user text. Greedy outputs of every run must be
// identical (exit 1 otherwise), but for the lossy -int8 runs.
//
// Usage: offload_bench --model-dir DIR [--tmp-dir DIR] [--layers 8] [--embd 512]
//          [--type q8_0|f16] [--sessions 20] [--turns 2] [--context 1024]
//          [--user 128] [--gen 32] [--running 4] [--queued 4] [--pool-frac 5] [--host-frac 2]
//          [--threads 2] [--configs recompute,host,host+disk[,host-int8,host+disk-int8]] [--seed 1]
// Prints one summary line per run ("run NAME key=value ..."), then a markdown
// table of ratios to the recompute run (scripts/bench-offload).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "kvstack/engine.h"
#include "kvstack/model_gen.h"
#include "kvstack/tier_chain.h"
#include "kvstack/tiers.h"

namespace {

namespace fs = std::filesystem;
using kvstack::Token;

struct Args {
  std::string model_dir = "/tmp";
  std::string tmp_dir = "/tmp";
  int layers = 8;
  int embd = 512;
  std::string type = "q8_0";
  int sessions = 20;
  int turns = 2;
  int context = 1024;  // each session's system prompt + earlier history at turn 1
  int user = 128;      // new user tokens per turn
  int gen = 32;        // generated tokens per turn
  int running = 4;     // engine max_running
  int queued = 4;      // submitted beyond the running ones: prefetch's lead
  int pool_frac = 5;   // device pool = working set / pool_frac
  int host_frac = 2;   // host+disk: host tier = working set / host_frac
  int threads = 2;
  std::string configs = "recompute,host,host+disk";
  uint64_t seed = 1;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "offload_bench: %s\n", what.c_str());
  std::exit(2);
}

double Seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The model file, generated once per shape into the model dir.
std::string EnsureModel(const Args& a) {
  kvstack::GenModelSpec spec;
  spec.n_layer = a.layers;
  spec.n_embd = a.embd;
  spec.n_head = a.embd / 64;
  spec.n_head_kv = std::max(1, spec.n_head / 2);
  spec.n_ff = (a.embd * 11 / 4 + 31) / 32 * 32;
  spec.n_ctx = 8192;
  spec.seed = 5;
  if (a.type == "q8_0") {
    spec.weight_type = kvstack::GgmlType::kQ8_0;
  } else if (a.type == "f16") {
    spec.weight_type = kvstack::GgmlType::kF16;
  } else {
    Die("--type " + a.type + ": use q8_0 or f16");
  }
  const fs::path path =
      fs::path(a.model_dir) / ("offload-bench-l" + std::to_string(a.layers) + "-e" + std::to_string(a.embd) + "-" +
                               a.type + ".gguf");
  if (!fs::exists(path)) {
    fs::create_directories(a.model_dir);
    const kvstack::Status s = kvstack::WriteGenModel(spec, path.string());
    if (!s.ok()) Die("writing " + path.string() + ": " + s.ToString());
  }
  return path.string();
}

// One turn of one session.
struct Turn {
  int session = 0;
  int turn = 0;
};

// The workload: each session's turn-1 context and per-turn user text, fixed
// by the seed; prompts of later turns also carry the replies of the run.
struct Workload {
  std::vector<std::vector<Token>> context;            // per session
  std::vector<std::vector<std::vector<Token>>> user;  // [session][turn]
  std::vector<Turn> order;                            // round-robin
};

Workload MakeWorkload(const Args& a) {
  std::mt19937_64 rng(a.seed);
  const int32_t vocab = 250;  // inside the generated vocabulary
  auto text = [&](int n) {
    std::vector<Token> t(static_cast<size_t>(n));
    for (Token& x : t) x = static_cast<Token>(3 + rng() % (vocab - 3));
    return t;
  };
  Workload w;
  for (int s = 0; s < a.sessions; ++s) {
    std::vector<Token> c{1};  // BOS
    const std::vector<Token> body = text(a.context - 1);
    c.insert(c.end(), body.begin(), body.end());
    w.context.push_back(std::move(c));
    w.user.emplace_back();
    for (int t = 0; t < a.turns; ++t) w.user.back().push_back(text(a.user));
  }
  for (int t = 0; t < a.turns; ++t) {
    for (int s = 0; s < a.sessions; ++s) w.order.push_back({s, t});
  }
  return w;
}

struct RunResult {
  std::string name;
  double seconds = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0, cached_tokens = 0, onboarded_tokens = 0;
  uint64_t preemptions = 0;
  std::vector<double> ttft_ms;        // every turn
  std::vector<double> ttft_later_ms;  // turns 2.. (the session came back)
  std::vector<std::vector<Token>> outputs;  // per order index
  kvstack::OnboardMetrics onboard;
  size_t tier_block_bytes = 0;
  uint64_t tier_bytes_written = 0, tier_bytes_read = 0;  // summed over the tiers
};

bool Lossy(const std::string& config) { return config.ends_with("-int8"); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * double(v.size() - 1) + 0.5));
  return v[i];
}

RunResult Run(const Args& a, const std::string& config, const std::string& model, const Workload& w,
              int32_t pool_blocks, int64_t ws_blocks) {
  kvstack::EngineOptions o;
  o.model_path = model;
  o.threads = a.threads;
  o.num_blocks = pool_blocks;
  o.max_running = a.running;
  o.max_batch_tokens = 256;
  const fs::path disk_dir = fs::path(a.tmp_dir) / ("offload-bench-disk-" + std::to_string(::getpid()));
  if (config != "recompute") {
    const bool with_disk = config.starts_with("host+disk");
    if (Lossy(config)) o.tier_kv_dtype = kvstack::KvDType::kInt8;
    const int64_t host_blocks = with_disk ? std::max<int64_t>(ws_blocks / a.host_frac, 64) : ws_blocks * 5 / 4;
    fs::remove_all(disk_dir);
    o.make_tiers = [=](size_t block_bytes, const std::string&) -> kvstack::Result<std::unique_ptr<kvstack::TierChain>> {
      kvstack::TierChainOptions c;
      // Chat history is worth keeping whatever its priority or hit count.
      c.min_priority = 0;
      auto host = kvstack::MakeHostTier({.bytes_per_block = block_bytes, .capacity_blocks = host_blocks});
      if (!host.ok()) return host.status();
      c.tiers.push_back(std::move(host).value());
      if (with_disk) {
        kvstack::DiskTierOptions d;
        d.dir = disk_dir.string();
        d.bytes_per_block = block_bytes;
        d.capacity_bytes = static_cast<uint64_t>(ws_blocks) * 3 / 2 * ((block_bytes + 128 + 4095) / 4096 * 4096);
        d.segment_bytes = 64ull << 20;
        auto disk = kvstack::OpenDiskTier(d);
        if (!disk.ok()) return disk.status();
        c.tiers.push_back(std::move(disk).value());
      }
      return kvstack::TierChain::Create(std::move(c));
    };
  }
  auto created = kvstack::Engine::Create(o);
  if (!created.ok()) Die("engine (" + config + "): " + created.status().ToString());
  std::unique_ptr<kvstack::Engine> engine = std::move(created).value();

  RunResult r;
  r.name = config;
  r.outputs.resize(w.order.size());
  // The prompt each session sends next (grows by the reply and the user text).
  std::vector<std::vector<Token>> history = w.context;
  std::vector<int> done_turns(static_cast<size_t>(a.sessions), 0);
  std::map<kvstack::RequestId, size_t> live;  // id -> order index
  size_t next = 0;
  std::vector<kvstack::GenerationEvent> events;
  const double start = Seconds();
  while (next < w.order.size() || !live.empty()) {
    // Keep running + queued requests submitted; a session's next turn waits
    // for its previous reply.
    while (next < w.order.size() && static_cast<int>(live.size()) < a.running + a.queued) {
      const Turn t = w.order[next];
      if (done_turns[static_cast<size_t>(t.session)] < t.turn) break;
      std::vector<Token>& h = history[static_cast<size_t>(t.session)];
      const auto& u = w.user[static_cast<size_t>(t.session)][static_cast<size_t>(t.turn)];
      h.insert(h.end(), u.begin(), u.end());
      kvstack::GenerationRequest req;
      req.prompt = h;
      req.sampling.max_tokens = a.gen;
      req.ignore_eos = true;
      auto id = engine->Submit(std::move(req));
      if (!id.ok()) Die("submit (" + config + "): " + id.status().ToString());
      live[*id] = next++;
    }
    events.clear();
    const kvstack::Status s = engine->Step(&events);
    if (!s.ok()) Die("step (" + config + "): " + s.ToString());
    for (const kvstack::GenerationEvent& ev : events) {
      const size_t i = live.at(ev.id);
      const Turn t = w.order[i];
      r.outputs[i].insert(r.outputs[i].end(), ev.tokens.begin(), ev.tokens.end());
      if (ev.finish == kvstack::FinishReason::kNone) continue;
      if (ev.finish != kvstack::FinishReason::kLength) Die("a request ended early (" + config + ")");
      const kvstack::RequestMetrics& m = ev.metrics;
      const double ttft = double(m.first_token_at - m.queued_at) / 1000.0;
      r.ttft_ms.push_back(ttft);
      if (t.turn > 0) r.ttft_later_ms.push_back(ttft);
      r.prompt_tokens += static_cast<uint64_t>(m.prompt_tokens);
      r.generated_tokens += static_cast<uint64_t>(m.generated_tokens);
      r.cached_tokens += static_cast<uint64_t>(m.cached_tokens);
      r.onboarded_tokens += static_cast<uint64_t>(m.onboarded_tokens);
      std::vector<Token>& h = history[static_cast<size_t>(t.session)];
      h.insert(h.end(), r.outputs[i].begin(), r.outputs[i].end());
      ++done_turns[static_cast<size_t>(t.session)];
      live.erase(ev.id);
    }
  }
  r.seconds = Seconds() - start;
  r.preemptions = engine->preemptions();
  r.onboard = engine->onboard_metrics();
  if (kvstack::TierChain* chain = engine->tiers()) {
    chain->Flush();
    r.tier_block_bytes = chain->bytes_per_block();
    for (const kvstack::TierMetrics& m : chain->Metrics().tiers) {
      r.tier_bytes_written += m.bytes_in;
      r.tier_bytes_read += m.bytes_out;
    }
  }
  engine.reset();
  fs::remove_all(disk_dir);
  return r;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) {
    if (!x.empty()) out.push_back(x);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model-dir") a.model_dir = v;
    else if (k == "--tmp-dir") a.tmp_dir = v;
    else if (k == "--layers") a.layers = std::stoi(v);
    else if (k == "--embd") a.embd = std::stoi(v);
    else if (k == "--type") a.type = v;
    else if (k == "--sessions") a.sessions = std::stoi(v);
    else if (k == "--turns") a.turns = std::stoi(v);
    else if (k == "--context") a.context = std::stoi(v);
    else if (k == "--user") a.user = std::stoi(v);
    else if (k == "--gen") a.gen = std::stoi(v);
    else if (k == "--running") a.running = std::stoi(v);
    else if (k == "--queued") a.queued = std::stoi(v);
    else if (k == "--pool-frac") a.pool_frac = std::stoi(v);
    else if (k == "--host-frac") a.host_frac = std::stoi(v);
    else if (k == "--threads") a.threads = std::stoi(v);
    else if (k == "--configs") a.configs = v;
    else if (k == "--seed") a.seed = std::stoull(v);
    else Die("unknown option " + k);
  }
  if (a.sessions < 1 || a.turns < 1 || a.context < 2 || a.user < 1 || a.gen < 1 || a.pool_frac < 1 || a.host_frac < 1) {
    Die("--sessions, --turns, --user, --gen, --pool-frac, --host-frac must be >= 1 and --context >= 2");
  }
  const std::vector<std::string> configs = Split(a.configs);
  if (configs.empty() || configs[0] != "recompute") Die("--configs must start with recompute (the baseline)");

  const std::string model = EnsureModel(a);
  const Workload w = MakeWorkload(a);
  const int32_t block = 16;
  const int64_t final_ctx = a.context + int64_t(a.turns) * a.user + int64_t(a.turns) * a.gen;
  const int64_t ws_blocks = a.sessions * ((final_ctx + block - 1) / block);
  // The pool must hold the running requests' longest prompts, or the engine
  // would preempt forever.
  const int64_t need = int64_t(a.running) * ((final_ctx + block) / block) + 16;
  const int32_t pool_blocks = static_cast<int32_t>(std::max<int64_t>(ws_blocks / a.pool_frac, need));
  std::printf("model %s\n", model.c_str());
  std::printf("workload sessions=%d turns=%d context=%d user=%d gen=%d running=%d queued=%d\n", a.sessions, a.turns,
              a.context, a.user, a.gen, a.running, a.queued);
  std::printf("working_set_blocks %lld device_pool_blocks %d (1/%.1f of the working set)\n",
              static_cast<long long>(ws_blocks), pool_blocks, double(ws_blocks) / pool_blocks);
  std::fflush(stdout);

  std::vector<RunResult> runs;
  for (const std::string& c : configs) {
    if (c != "recompute" && c != "host" && c != "host+disk" && c != "host-int8" && c != "host+disk-int8") {
      Die("--configs: unknown run " + c);
    }
    runs.push_back(Run(a, c, model, w, pool_blocks, ws_blocks));
    const RunResult& r = runs.back();
    const kvstack::OnboardMetrics& m = r.onboard;
    std::printf(
        "run %s seconds=%.1f tokens_per_s=%.1f ttft_p50_ms=%.1f ttft_p95_ms=%.1f later_ttft_p50_ms=%.1f "
        "later_ttft_p95_ms=%.1f prompt_tokens=%llu cached_tokens=%llu onboarded_tokens=%llu preemptions=%llu "
        "offloaded_blocks=%llu onboard_blocks_requested=%llu onboarded_blocks=%llu timely_blocks=%llu "
        "prefetched_blocks=%llu recompute_chosen_blocks=%llu tier_block_bytes=%zu tier_bytes_written=%llu "
        "tier_bytes_read=%llu\n",
        r.name.c_str(), r.seconds, double(r.prompt_tokens + r.generated_tokens) / r.seconds,
        Percentile(r.ttft_ms, 0.5), Percentile(r.ttft_ms, 0.95), Percentile(r.ttft_later_ms, 0.5),
        Percentile(r.ttft_later_ms, 0.95), (unsigned long long)r.prompt_tokens, (unsigned long long)r.cached_tokens,
        (unsigned long long)r.onboarded_tokens, (unsigned long long)r.preemptions,
        (unsigned long long)m.offloaded_blocks, (unsigned long long)m.onboard_blocks_requested,
        (unsigned long long)m.onboarded_blocks, (unsigned long long)m.timely_blocks,
        (unsigned long long)m.prefetched_blocks, (unsigned long long)m.recompute_chosen_blocks, r.tier_block_bytes,
        (unsigned long long)r.tier_bytes_written, (unsigned long long)r.tier_bytes_read);
    std::fflush(stdout);
  }

  bool same = true;
  for (size_t k = 1; k < runs.size(); ++k) {
    if (Lossy(runs[k].name)) {
      size_t differ = 0;
      for (size_t i = 0; i < w.order.size(); ++i) differ += runs[k].outputs[i] != runs[0].outputs[i];
      std::printf("lossy run %s: %zu of %zu requests' greedy outputs differ from recompute\n", runs[k].name.c_str(),
                  differ, w.order.size());
      continue;
    }
    for (size_t i = 0; i < w.order.size(); ++i) {
      if (runs[k].outputs[i] != runs[0].outputs[i]) {
        std::printf("MISMATCH: run %s, session %d turn %d differs from recompute\n", runs[k].name.c_str(),
                    w.order[i].session, w.order[i].turn + 1);
        same = false;
        break;
      }
    }
  }
  std::printf("greedy outputs %s across the exact runs (%zu requests each)\n", same ? "IDENTICAL" : "DIFFER",
              w.order.size());

  const RunResult& base = runs[0];
  const double base_tps = double(base.prompt_tokens + base.generated_tokens) / base.seconds;
  std::printf("\n| run | TTFT p50 | TTFT p95 | TTFT p50, turns 2+ | TTFT p95, turns 2+ | throughput | onboarded blocks | "
              "prefetch timeliness |\n|---|---|---|---|---|---|---|---|\n");
  for (const RunResult& r : runs) {
    const double tps = double(r.prompt_tokens + r.generated_tokens) / r.seconds;
    auto ratio = [](double x, double b) { return b > 0 ? x / b : 0.0; };
    const bool is_base = &r == &base;
    auto cell = [&](double v, double b, const char* unit) {
      char buf[96];
      if (is_base) std::snprintf(buf, sizeof buf, "%.0f %s (1.00x)", v, unit);
      else std::snprintf(buf, sizeof buf, "%.0f %s (%.2fx)", v, unit, ratio(v, b));
      return std::string(buf);
    };
    const kvstack::OnboardMetrics& m = r.onboard;
    char timely[64] = "-";
    if (m.onboard_blocks_requested > 0) {
      std::snprintf(timely, sizeof timely, "%.2f (%llu / %llu)", double(m.timely_blocks) / m.onboard_blocks_requested,
                    (unsigned long long)m.timely_blocks, (unsigned long long)m.onboard_blocks_requested);
    }
    std::printf("| %s | %s | %s | %s | %s | %s | %llu | %s |\n", r.name.c_str(),
                cell(Percentile(r.ttft_ms, 0.5), Percentile(base.ttft_ms, 0.5), "ms").c_str(),
                cell(Percentile(r.ttft_ms, 0.95), Percentile(base.ttft_ms, 0.95), "ms").c_str(),
                cell(Percentile(r.ttft_later_ms, 0.5), Percentile(base.ttft_later_ms, 0.5), "ms").c_str(),
                cell(Percentile(r.ttft_later_ms, 0.95), Percentile(base.ttft_later_ms, 0.95), "ms").c_str(),
                cell(tps, base_tps, "tok/s").c_str(), (unsigned long long)m.onboarded_blocks, timely);
  }
  std::printf("\n| run | tier block bytes | MiB written to tiers | MiB read from tiers |\n|---|---|---|---|\n");
  for (const RunResult& r : runs) {
    if (r.tier_block_bytes == 0) continue;
    std::printf("| %s | %zu | %.1f | %.1f |\n", r.name.c_str(), r.tier_block_bytes,
                double(r.tier_bytes_written) / (1 << 20), double(r.tier_bytes_read) / (1 << 20));
  }
  return same ? 0 : 1;
}
