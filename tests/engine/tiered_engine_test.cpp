// The engine with tiers below its device pool (host RAM, disk, Redis): greedy
// outputs must be exactly those of the engine without tiers, whatever the
// tiers do: serve blocks, miss, hold corrupt bytes, lose their Redis, or come
// back after a restart. And the tiers must really be used (onboarded blocks),
// or equality would prove nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>

#include "kvstack/engine.h"
#include "common/process_temp_file.h"
#include "kvstack/model_gen.h"
#include "kvstack/tier_chain.h"
#include "kvstack/tiers.h"
#include "tiers/op_state.h"
#include "tiers/redis_server.h"
#include "common/requirement.h"

namespace kvstack {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(fs::temp_directory_path() / ("kvstack-tiered-" + tag + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A generated llama (random weights; 2 layers, 2 KV heads of 16): 4 KiB of
// f16 KV per 16-token block.
const std::string& ModelPath() {
  static const kvstack::testing::ProcessTempFile file("kvstack-tiered-model", ".gguf");
  static const bool written = [] {
    GenModelSpec spec;
    spec.n_ctx = 1024;
    const Status s = WriteGenModel(spec, file.path());
    EXPECT_TRUE(s.ok()) << s.ToString();
    return s.ok();
  }();
  (void)written;
  return file.path();
}

// Holds SlowTier's reads while closed (a tier that hangs, as a Redis server
// can until its timeout).
class Gate {
 public:
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void WaitOpen() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = true;  // GUARDED_BY(mu_)
};

// A RAM tier whose reads land late: each Get is answered on a thread of its
// own after `delay` (and after `gate` opens, when given), bytes written into
// the destinations only then, so an engine that reused a destination before
// the read finished would have its KV overwritten under it.
class SlowTier final : public Tier {
 public:
  SlowTier(std::unique_ptr<Tier> inner, std::chrono::microseconds delay, std::shared_ptr<Gate> gate = nullptr)
      : inner_(std::move(inner)), delay_(delay), gate_(std::move(gate)), worker_([this] { Run(); }) {}
  ~SlowTier() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  std::string_view name() const override { return "slow"; }
  size_t bytes_per_block() const override { return inner_->bytes_per_block(); }
  int64_t capacity_blocks() const override { return inner_->capacity_blocks(); }
  bool Contains(const BlockHash& hash) const override { return inner_->Contains(hash); }
  TierFuture Put(std::span<const TierPut> blocks) override { return inner_->Put(blocks); }
  TierFuture Lookup(std::span<const BlockHash> hashes) override { return inner_->Lookup(hashes); }
  TierFuture Get(std::span<const TierGet> blocks) override {
    auto state = std::make_shared<tiers_internal::OpState>(blocks.size());
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back({std::vector<TierGet>(blocks.begin(), blocks.end()), state});
    }
    cv_.notify_all();
    return TierFuture(state);
  }
  void Remove(const BlockHash& hash) override { inner_->Remove(hash); }
  TierMetrics Metrics() const override { return inner_->Metrics(); }
  void SetRemovalListener(std::function<void(const BlockHash&)> listener) override {
    inner_->SetRemovalListener(std::move(listener));
  }
  Status CheckInvariants() const override { return inner_->CheckInvariants(); }

 private:
  struct Job {
    std::vector<TierGet> gets;
    std::shared_ptr<tiers_internal::OpState> state;
  };
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      Job job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      if (gate_) gate_->WaitOpen();
      std::this_thread::sleep_for(delay_);
      // Read into scratch, then copy: the destinations change only now.
      std::vector<std::byte> scratch(job.gets.size() * bytes_per_block());
      std::vector<TierGet> into;
      for (size_t i = 0; i < job.gets.size(); ++i) {
        into.push_back({job.gets[i].hash, std::span(scratch).subspan(i * bytes_per_block(), bytes_per_block())});
      }
      TierFuture f = inner_->Get(into);
      f.Wait();
      for (size_t i = 0; i < job.gets.size(); ++i) {
        if (!f.ok(i)) continue;
        std::copy_n(into[i].dest.data(), bytes_per_block(), job.gets[i].dest.data());
        job.state->ok[i] = 1;
      }
      job.state->Finish();
      lock.lock();
    }
  }
  std::unique_ptr<Tier> inner_;
  const std::chrono::microseconds delay_;
  const std::shared_ptr<Gate> gate_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // GUARDED_BY(mu_)
  bool stop_ = false;      // GUARDED_BY(mu_)
  std::thread worker_;
};

// Opens `gate` after `after` unless disarmed first: what frees a test whose
// engine waits on a closed gate, so that it fails instead of hanging.
class Watchdog {
 public:
  Watchdog(std::shared_ptr<Gate> gate, std::chrono::seconds after)
      : gate_(std::move(gate)), thread_([this, after] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, after, [&] { return disarmed_; })) {
            fired_ = true;
            gate_->Open();
          }
        }) {}
  ~Watchdog() {
    Disarm();
    thread_.join();
  }
  // Returns whether it had fired.
  bool Disarm() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      disarmed_ = true;
    }
    cv_.notify_all();
    return fired_;
  }

 private:
  std::shared_ptr<Gate> gate_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool disarmed_ = false;  // GUARDED_BY(mu_)
  std::atomic<bool> fired_{false};
  std::thread thread_;  // last: starts once the rest is built
};

struct TierSetup {
  int64_t host_blocks = 0;  // 0: no host tier
  int64_t slow_blocks = 0;  // 0: none; else a SlowTier (RAM, reads 2 ms late) below the host tier
  std::shared_ptr<Gate> gate;  // holds the SlowTier's reads while closed
  std::string disk_dir;     // "": no disk tier
  uint64_t disk_bytes = 8 << 20;
  int redis_port = 0;       // 0: no Redis tier
  bool only_when_faster = false;
  std::optional<KvDType> tier_kv;  // EngineOptions::tier_kv_dtype
  std::string* identity = nullptr;  // where to report the identity the tiers were given
};

std::unique_ptr<Engine> MakeEngine(const TierSetup* tiers, int32_t device_blocks, KvDType kv = KvDType::kF16) {
  EngineOptions o;
  o.model_path = ModelPath();
  o.kv_dtype = kv;
  o.threads = 1;
  o.num_blocks = device_blocks;
  o.max_batch_tokens = 64;
  o.max_running = 8;
  if (tiers) {
    const TierSetup t = *tiers;
    o.onboard_only_when_faster = t.only_when_faster;
    o.tier_kv_dtype = t.tier_kv;
    o.make_tiers = [t](size_t block_bytes, const std::string& model_id) -> Result<std::unique_ptr<TierChain>> {
      if (t.identity) *t.identity = model_id;
      TierChainOptions c;
      c.min_priority = 0;  // keep every evicted block: the test wants traffic
      if (t.host_blocks > 0) {
        auto host = MakeHostTier({.bytes_per_block = block_bytes, .capacity_blocks = t.host_blocks});
        if (!host.ok()) return host.status();
        c.tiers.push_back(std::move(host).value());
      }
      if (t.slow_blocks > 0) {
        auto ram = MakeHostTier({.bytes_per_block = block_bytes, .capacity_blocks = t.slow_blocks});
        if (!ram.ok()) return ram.status();
        c.tiers.push_back(std::make_unique<SlowTier>(std::move(ram).value(), std::chrono::milliseconds(2), t.gate));
      }
      if (!t.disk_dir.empty()) {
        DiskTierOptions d;
        d.dir = t.disk_dir;
        d.bytes_per_block = block_bytes;
        d.capacity_bytes = t.disk_bytes;
        d.segment_bytes = 1 << 20;
        d.log = [](std::string_view) {};
        auto disk = OpenDiskTier(d);
        if (!disk.ok()) return disk.status();
        c.tiers.push_back(std::move(disk).value());
      }
      if (t.redis_port > 0) {
        RedisTierOptions r;
        r.servers = {{"127.0.0.1", t.redis_port}};
        r.model_id = model_id;
        r.bytes_per_block = block_bytes;
        r.op_timeout = 200'000;
        r.backoff_initial = 20'000;
        r.log = [](std::string_view) {};
        auto redis = MakeRedisTier(r);
        if (!redis.ok()) return redis.status();
        c.tiers.push_back(std::move(redis).value());
      }
      return TierChain::Create(std::move(c));
    };
  }
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e).value() : nullptr;
}

// Prompts: most start with one of a few long shared prefixes (system prompts,
// documents) and end with a short unique part.
std::vector<std::vector<Token>> MakePrompts(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int32_t vocab = 250;  // the generated vocabulary is larger; stay inside it
  std::vector<std::vector<Token>> prefixes(12);
  for (auto& p : prefixes) {
    p.resize(32 + rng() % 80);
    for (Token& t : p) t = static_cast<Token>(3 + rng() % (vocab - 3));
  }
  std::vector<std::vector<Token>> prompts(static_cast<size_t>(n));
  for (auto& p : prompts) {
    if (rng() % 10 < 8) p = prefixes[rng() % prefixes.size()];
    const size_t extra = 4 + rng() % 36;
    for (size_t i = 0; i < extra; ++i) p.push_back(static_cast<Token>(3 + rng() % (vocab - 3)));
  }
  return prompts;
}

// Runs every prompt to completion, at most `concurrency` in flight, in order.
// Returns each prompt's generated tokens; counts requests that failed.
// `cancel`, when given, is asked after every step about each request that
// has no token yet; those it names are cancelled then (finishing as
// cancelled is then no failure) and `cancelled` marks them.
std::vector<std::vector<Token>> RunPrompts(Engine& e, const std::vector<std::vector<Token>>& prompts, int concurrency,
                                           int* failures, std::vector<RequestMetrics>* metrics = nullptr,
                                           const std::function<bool(size_t)>& cancel = {},
                                           std::vector<bool>* cancelled = nullptr) {
  std::vector<std::vector<Token>> out(prompts.size());
  std::vector<bool> gone(prompts.size(), false);
  if (metrics) metrics->assign(prompts.size(), RequestMetrics{});
  std::map<RequestId, size_t> live;
  size_t next = 0;
  std::vector<GenerationEvent> events;
  while (next < prompts.size() || !live.empty()) {
    while (next < prompts.size() && static_cast<int>(live.size()) < concurrency) {
      GenerationRequest r;
      r.prompt = prompts[next];
      // Enough tokens that a wrong block brought up from a tier changes the
      // output (a few greedy tokens can survive one).
      r.sampling.max_tokens = 16;
      r.ignore_eos = true;
      auto id = e.Submit(std::move(r));
      if (!id.ok()) {
        ++*failures;
        ++next;
        continue;
      }
      live[*id] = next++;
    }
    events.clear();
    if (!e.Step(&events).ok()) {
      ++*failures;
      break;
    }
    for (const GenerationEvent& ev : events) {
      const size_t i = live.at(ev.id);
      out[i].insert(out[i].end(), ev.tokens.begin(), ev.tokens.end());
      if (ev.finish == FinishReason::kNone) continue;
      if (ev.finish != (gone[i] ? FinishReason::kCancelled : FinishReason::kLength)) ++*failures;
      if (metrics) (*metrics)[i] = ev.metrics;
      live.erase(ev.id);
    }
    if (!cancel) continue;
    for (const auto& [id, i] : live) {
      if (gone[i] || !out[i].empty() || !cancel(i)) continue;
      if (!e.Cancel(id).ok()) ++*failures;
      gone[i] = true;
    }
  }
  if (cancelled) *cancelled = gone;
  return out;
}

// The acceptance test: 1,000 requests with shared prefixes under heavy
// memory pressure (a 48-block device pool), tiers on and off.
TEST(TieredEngineTest, ThousandRequestsEqualWithTiersOnAndOff) {
  const auto prompts = MakePrompts(1000, 20261127);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 48);
  ASSERT_TRUE(plain);
  const auto expected = RunPrompts(*plain, prompts, 6, &failures);
  ASSERT_EQ(failures, 0);

  TempDir disk("random");
  TierSetup tiers{.host_blocks = 24, .disk_dir = disk.path().string()};
  auto tiered = MakeEngine(&tiers, 48);
  ASSERT_TRUE(tiered);
  std::vector<RequestMetrics> metrics;
  const auto got = RunPrompts(*tiered, prompts, 6, &failures, &metrics);
  ASSERT_EQ(failures, 0);
  for (size_t i = 0; i < prompts.size(); ++i) ASSERT_EQ(got[i], expected[i]) << "request " << i;

  const OnboardMetrics m = tiered->onboard_metrics();
  EXPECT_GT(m.offloaded_blocks, 0u);
  EXPECT_GT(m.onboarded_blocks, 0u) << "the tiers were never used: equality proves nothing";
  EXPECT_GT(m.timely_blocks, 0u);
  int64_t onboarded_tokens = 0;
  for (const RequestMetrics& r : metrics) onboarded_tokens += r.onboarded_tokens;
  EXPECT_EQ(onboarded_tokens, int64_t(m.onboarded_blocks) * 16) << "every onboarded block served one request";
  const TierChainMetrics chain = tiered->tiers()->Metrics();
  ASSERT_EQ(chain.tiers.size(), 2u);
  EXPECT_GT(chain.tiers[0].hits, 0u);
}

// Requests cancelled between steps, among them some whose blocks are still
// coming up from a slow tier (admitted, waiting for reads into their device
// blocks, which land 2 ms late): a cancelled read must finish before its
// blocks are reused, or its late bytes overwrite another request's KV.
// Every request left runs as it would without tiers, and the same engine
// then serves the whole set again exactly, from blocks the abandoned reads
// had been writing into.
TEST(TieredEngineTest, RequestsCancelledWhileTheirBlocksComeUpLeaveEveryOtherOutputExact) {
  const auto prompts = MakePrompts(240, 20261206);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 32);
  ASSERT_TRUE(plain);
  const auto expected = RunPrompts(*plain, prompts, 6, &failures);
  ASSERT_EQ(failures, 0);

  TierSetup tiers{.host_blocks = 1, .slow_blocks = 256};
  auto e = MakeEngine(&tiers, 32);
  ASSERT_TRUE(e);
  // Every third request that has no token yet is cancelled after a step:
  // queued, computing its prompt, or waiting for its blocks to arrive.
  std::vector<bool> cancelled;
  const auto out =
      RunPrompts(*e, prompts, 6, &failures, nullptr, [](size_t i) { return i % 3 == 0; }, &cancelled);
  ASSERT_EQ(failures, 0);
  ASSERT_TRUE(e->cache().CheckInvariants().ok());
  int kept = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (cancelled[i]) continue;
    ++kept;
    ASSERT_EQ(out[i], expected[i]) << "request " << i;
  }
  EXPECT_GT(kept, 100);
  const OnboardMetrics m = e->onboard_metrics();
  // Admissions that fetched blocks, against those whose fetch was polled to
  // the end: the rest were abandoned with their reads.
  EXPECT_GT(m.onboard_requests, m.wait_us.count()) << "no request was cancelled while its blocks came up";
  std::cerr << m.onboard_requests - m.wait_us.count() << " of " << m.onboard_requests
            << " admissions that fetched blocks were cancelled before their blocks arrived\n";
  EXPECT_GT(m.onboarded_blocks, 0u);

  const auto again = RunPrompts(*e, prompts, 6, &failures);
  ASSERT_EQ(failures, 0);
  for (size_t i = 0; i < prompts.size(); ++i) ASSERT_EQ(again[i], expected[i]) << "request " << i << ", second pass";
}

// A request that ends while its blocks are still being read from a tier that
// hangs is let go at once: Cancel does not wait for the read (with a Redis
// tier that could be its whole timeout, every running request stalled
// behind it), other requests run meanwhile, and the blocks the read writes
// into stay held, never reused under it, until it stops; then they are
// freed and the same prompt is served exactly.
TEST(TieredEngineTest, CancelDuringAStuckReadNeitherWaitsNorReusesItsBlocks) {
  std::mt19937_64 rng(41);
  const auto unique_prompt = [&](int tokens) {
    std::vector<Token> p(static_cast<size_t>(tokens));
    for (Token& t : p) t = static_cast<Token>(3 + rng() % 240);
    return p;
  };
  const std::vector<Token> target = unique_prompt(6 * 16 + 5);
  std::vector<std::vector<Token>> churn, others;
  for (int i = 0; i < 24; ++i) churn.push_back(unique_prompt(40));
  for (int i = 0; i < 4; ++i) others.push_back(unique_prompt(30));
  int failures = 0;
  auto plain = MakeEngine(nullptr, 32);
  ASSERT_TRUE(plain);
  const auto expected_target = RunPrompts(*plain, {target}, 1, &failures);
  const auto expected_others = RunPrompts(*plain, others, 4, &failures);
  ASSERT_EQ(failures, 0);

  auto gate = std::make_shared<Gate>();
  TierSetup tiers{.host_blocks = 1, .slow_blocks = 256, .gate = gate};
  auto e = MakeEngine(&tiers, 32);
  ASSERT_TRUE(e);
  // The target's blocks end up in the slow tier only: the churn pushes them
  // out of the device pool and the one-block host tier.
  ASSERT_EQ(RunPrompts(*e, {target}, 1, &failures), expected_target);
  RunPrompts(*e, churn, 4, &failures);
  ASSERT_EQ(failures, 0);

  // If Cancel waited for the read, only this opens the gate.
  Watchdog watchdog(gate, std::chrono::seconds(30));
  gate->Close();
  const uint64_t fetching_before = e->onboard_metrics().onboard_requests;
  GenerationRequest r;
  r.prompt = target;
  r.sampling.max_tokens = 16;
  r.ignore_eos = true;
  auto id = e->Submit(std::move(r));
  ASSERT_TRUE(id.ok());
  std::vector<GenerationEvent> events;
  for (int i = 0; i < 20 && e->onboard_metrics().onboard_requests == fetching_before; ++i) {
    ASSERT_TRUE(e->Step(&events).ok());
  }
  ASSERT_GT(e->onboard_metrics().onboard_requests, fetching_before) << "the target never waited for the slow tier";
  ASSERT_TRUE(e->Cancel(*id).ok());
  events.clear();
  ASSERT_TRUE(e->Step(&events).ok());
  EXPECT_FALSE(watchdog.Disarm()) << "Cancel waited for the read";
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].finish, FinishReason::kCancelled);

  // Still closed: others run; the abandoned read still holds its blocks.
  EXPECT_EQ(RunPrompts(*e, others, 4, &failures), expected_others);
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(e->onboard_metrics().abandoned_fetches, 0u);
  EXPECT_TRUE(e->HasWork()) << "the abandoned read's blocks were let go before it stopped";

  gate->Open();
  for (int i = 0; i < 100000 && e->HasWork(); ++i) ASSERT_TRUE(e->Step(&events).ok());
  EXPECT_FALSE(e->HasWork());
  EXPECT_GE(e->onboard_metrics().abandoned_fetches, 1u);
  EXPECT_TRUE(e->cache().CheckInvariants().ok());
  EXPECT_EQ(e->cache().num_available_blocks(), e->cache().num_blocks()) << "a block stayed held";
  EXPECT_EQ(RunPrompts(*e, {target}, 1, &failures), expected_target);
  EXPECT_EQ(failures, 0);
}

// The same with int8 KV blocks (scales inside each block): tiers move a
// quantized block as its bytes, so onboarded KV equals computed KV exactly.
// One request at a time: an int8 key block's per-channel scales depend on how
// its tokens arrived (one prefill chunk, or several), so two schedules that
// chunk a prompt differently may store different bytes for the same prefix;
// run alone, a prompt is chunked the same way with tiers on and off.
TEST(TieredEngineTest, Int8KvEqualWithTiersOnAndOff) {
  const auto prompts = MakePrompts(300, 20261204);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 48, KvDType::kInt8);
  ASSERT_TRUE(plain);
  const auto expected = RunPrompts(*plain, prompts, 1, &failures);
  ASSERT_EQ(failures, 0);
  TempDir disk("int8");
  TierSetup tiers{.host_blocks = 24, .disk_dir = disk.path().string()};
  auto tiered = MakeEngine(&tiers, 48, KvDType::kInt8);
  ASSERT_TRUE(tiered);
  const auto got = RunPrompts(*tiered, prompts, 1, &failures);
  ASSERT_EQ(failures, 0);
  for (size_t i = 0; i < prompts.size(); ++i) ASSERT_EQ(got[i], expected[i]) << "request " << i;
  EXPECT_GT(tiered->onboard_metrics().onboarded_blocks, 0u) << "the tiers were never used: equality proves nothing";
}

// --tier-kv-type int8: f16 blocks leave the device pool as int8 (the tiers
// hold blocks of the int8 layout, a little over half the bytes) and come
// back widened. Lossy by design, so outputs are compared with the engine
// without tiers and the share that differs is bounded by what was measured,
// not required to be zero; the tiers must really have served blocks.
TEST(TieredEngineTest, Int8TierStoresHalfTheBytesAndServesBlocks) {
  const auto prompts = MakePrompts(300, 20261205);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 48);
  ASSERT_TRUE(plain);
  const auto expected = RunPrompts(*plain, prompts, 1, &failures);
  ASSERT_EQ(failures, 0);
  TempDir disk("int8-tier");
  std::string identity, f16_identity;
  TierSetup tiers{.host_blocks = 24, .disk_dir = disk.path().string(), .tier_kv = KvDType::kInt8,
                  .identity = &identity};
  auto tiered = MakeEngine(&tiers, 48);
  ASSERT_TRUE(tiered);
  TierSetup f16_tiers{.host_blocks = 24, .identity = &f16_identity};
  ASSERT_TRUE(MakeEngine(&f16_tiers, 48));
  // Tiers shared with an engine storing f16 blocks never mix the two layouts.
  EXPECT_NE(identity, f16_identity);
  EXPECT_NE(identity.find("/tier:kv:k=int8,v=int8"), std::string::npos) << identity;

  const KvShape device{.num_layers = 2, .num_kv_heads = 2, .head_dim = 16, .block_size = 16, .dtype = KvDType::kF16};
  const KvShape stored{.num_layers = 2, .num_kv_heads = 2, .head_dim = 16, .block_size = 16, .dtype = KvDType::kInt8};
  ASSERT_EQ(tiered->cache().arena().block_bytes(), device.block_bytes());
  EXPECT_EQ(tiered->tiers()->bytes_per_block(), stored.block_bytes());
  EXPECT_EQ(tiered->info().tier_kv_types, "int8");
  EXPECT_EQ(tiered->info().tier_block_bytes, stored.block_bytes());
  EXPECT_LT(double(stored.block_bytes()), 0.6 * double(device.block_bytes()));

  const auto got = RunPrompts(*tiered, prompts, 1, &failures);
  ASSERT_EQ(failures, 0);
  size_t differ = 0;
  for (size_t i = 0; i < prompts.size(); ++i) differ += got[i] != expected[i];
  const OnboardMetrics m = tiered->onboard_metrics();
  std::printf("int8 tiers: %llu blocks onboarded; %zu of %zu requests' 16 greedy tokens differ from f16 without tiers\n",
              static_cast<unsigned long long>(m.onboarded_blocks), differ, prompts.size());
  EXPECT_GT(m.onboarded_blocks, 0u) << "the tiers were never used";
  EXPECT_LE(differ, prompts.size() / 10) << "int8 tiers changed far more outputs than measured";
  // Every byte a tier wrote or read was a block of the int8 layout.
  tiered->tiers()->Flush();
  for (const TierMetrics& t : tiered->tiers()->Metrics().tiers) {
    EXPECT_EQ(t.bytes_in % stored.block_bytes(), 0u) << t.name;
    EXPECT_EQ(t.bytes_out % stored.block_bytes(), 0u) << t.name;
  }
}

TEST(TieredEngineTest, TierKvTypeMustBeNarrowerThanFloatDeviceKv) {
  EngineOptions o;
  o.model_path = ModelPath();
  o.num_blocks = 16;
  o.tier_kv_dtype = KvDType::kInt8;
  o.kv_dtype = KvDType::kInt4;
  auto quantized = Engine::Create(o);
  ASSERT_FALSE(quantized.ok());
  EXPECT_NE(quantized.status().message().find("already quantized"), std::string::npos) << quantized.status().ToString();
  o.kv_dtype = KvDType::kF16;
  o.tier_kv_dtype = KvDType::kF32;
  auto wider = Engine::Create(o);
  ASSERT_FALSE(wider.ok());
  EXPECT_NE(wider.status().message().find("not smaller"), std::string::npos) << wider.status().ToString();
  // The device's own type is no conversion at all.
  TierSetup same{.host_blocks = 8, .tier_kv = KvDType::kF16};
  auto e = MakeEngine(&same, 16);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->tiers()->bytes_per_block(), e->cache().arena().block_bytes());
  EXPECT_EQ(e->info().tier_kv_types, "f16");
}

// Onboarding is a choice: with the bandwidth check on, and a recompute rate
// measured, outputs still match (whichever way each block went).
TEST(TieredEngineTest, OnboardOnlyWhenFasterKeepsOutputs) {
  const auto prompts = MakePrompts(200, 7);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 48);
  const auto expected = RunPrompts(*plain, prompts, 4, &failures);
  TierSetup tiers{.host_blocks = 64, .only_when_faster = true};
  auto tiered = MakeEngine(&tiers, 48);
  const auto got = RunPrompts(*tiered, prompts, 4, &failures);
  ASSERT_EQ(failures, 0);
  EXPECT_EQ(got, expected);
  const OnboardMetrics m = tiered->onboard_metrics();
  EXPECT_GT(m.recompute_tokens_per_s, 0);
  EXPECT_EQ(m.onboard_blocks_requested, m.onboarded_blocks) << "the host tier never misses a block it reported";
}

// Every byte of the disk tier's segments flipped after the blocks were
// written: the blocks are detected, dropped and recomputed.
TEST(TieredEngineTest, CorruptDiskSegmentIsRecomputedWithEqualOutputs) {
  const auto prompts = MakePrompts(120, 99);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 32);
  const auto expected = RunPrompts(*plain, prompts, 4, &failures);

  TempDir disk("corrupt");
  TierSetup tiers{.host_blocks = 1, .disk_dir = disk.path().string()};
  auto tiered = MakeEngine(&tiers, 32);
  ASSERT_EQ(RunPrompts(*tiered, prompts, 4, &failures), expected);
  tiered->tiers()->Flush();
  // Corrupt the middle of every segment file (its block records).
  int corrupted = 0;
  for (const auto& f : fs::directory_iterator(disk.path())) {
    if (!f.is_regular_file() || f.file_size() < 8192) continue;
    std::fstream io(f.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> bytes(f.file_size());
    io.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    for (size_t i = 4096; i < bytes.size(); i += 7) bytes[i] = static_cast<char>(bytes[i] ^ 0x5a);
    io.seekp(0);
    io.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ++corrupted;
  }
  ASSERT_GT(corrupted, 0) << "the disk tier wrote no segment";
  // The same prompts again: the device pool evicted most of them long ago.
  const auto again = RunPrompts(*tiered, prompts, 4, &failures);
  ASSERT_EQ(failures, 0);
  EXPECT_EQ(again, expected);
  const TierChainMetrics chain = tiered->tiers()->Metrics();
  EXPECT_GT(chain.tiers[1].faults, 0u) << "corrupt blocks must be detected and counted";
}

// A warm disk tier survives a restart: a new engine on the same directory
// serves the old blocks (onboarded, equal outputs).
TEST(TieredEngineTest, DiskTierServesHitsAfterRestart) {
  const auto prompts = MakePrompts(60, 5);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 32);
  const auto expected = RunPrompts(*plain, prompts, 4, &failures);

  TempDir disk("restart");
  TierSetup tiers{.host_blocks = 1, .disk_dir = disk.path().string()};
  {
    auto first = MakeEngine(&tiers, 32);
    ASSERT_EQ(RunPrompts(*first, prompts, 4, &failures), expected);
  }  // the engine (and its tiers) stop here; queued disk writes are flushed
  auto second = MakeEngine(&tiers, 32);
  const auto got = RunPrompts(*second, prompts, 4, &failures);
  ASSERT_EQ(failures, 0);
  EXPECT_EQ(got, expected);
  EXPECT_GT(second->onboard_metrics().onboarded_blocks, 0u) << "the restarted disk tier served nothing";
  EXPECT_GT(second->tiers()->Metrics().tiers[1].hits, 0u);
}

// Redis is killed halfway: no request fails and outputs stay exact; the
// blocks that lived only there are recomputed.
TEST(TieredEngineTest, RedisKilledMidRunFailsNothing) {
  if (!tier_test::RedisServerInstalled()) KVSTACK_SKIP_MISSING() << "needs redis-server (" << tier_test::kRedisServerBinary << ")";
  tier_test::RedisServer redis;
  ASSERT_TRUE(redis.Start());
  const auto prompts = MakePrompts(200, 31);
  int failures = 0;
  auto plain = MakeEngine(nullptr, 32);
  const auto expected = RunPrompts(*plain, prompts, 4, &failures);

  TierSetup tiers{.host_blocks = 2, .redis_port = redis.port()};
  auto tiered = MakeEngine(&tiers, 32);
  const std::vector<std::vector<Token>> first(prompts.begin(), prompts.begin() + 100);
  const std::vector<std::vector<Token>> second(prompts.begin() + 100, prompts.end());
  auto got = RunPrompts(*tiered, first, 4, &failures);
  tiered->tiers()->Flush();
  const uint64_t redis_hits_before = tiered->tiers()->Metrics().tiers[1].hits;
  redis.Kill();
  auto rest = RunPrompts(*tiered, second, 4, &failures);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(got, expected);
  EXPECT_GT(redis_hits_before, 0u) << "Redis served nothing before it died: the test proves nothing";
  EXPECT_GT(tiered->tiers()->Metrics().tiers[1].faults, 0u);
}

}  // namespace
}  // namespace kvstack

namespace kvstack {
namespace {

// A session hint moves a conversation's evicted context from disk up into
// host RAM before its next turn, so that turn's blocks are found in the
// fastest tier (timely) when it is admitted.
TEST(TieredEngineTest, SessionPrefetchBringsTheLastContextUpBeforeTheNextTurn) {
  TempDir disk("session");
  TierSetup tiers{.host_blocks = 8, .disk_dir = disk.path().string()};
  auto e = MakeEngine(&tiers, 24);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->PrefetchSession("nobody").status().code(), StatusCode::kNotFound);
  int failures = 0;
  const auto turn = MakePrompts(1, 3)[0];
  GenerationRequest r;
  r.prompt = turn;
  r.sampling.max_tokens = 3;
  r.ignore_eos = true;
  r.session_id = "chat-1";
  ASSERT_TRUE(e->Submit(r).ok());
  std::vector<GenerationEvent> events;
  while (e->HasWork()) ASSERT_TRUE(e->Step(&events).ok());
  // Other traffic pushes the conversation out of the device pool and host RAM.
  RunPrompts(*e, MakePrompts(60, 4), 4, &failures);
  ASSERT_EQ(failures, 0);
  e->tiers()->Flush();
  const uint64_t before = e->onboard_metrics().prefetched_blocks;
  auto blocks = e->PrefetchSession("chat-1");
  ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
  EXPECT_GT(*blocks, 0);
  EXPECT_GT(e->onboard_metrics().prefetched_blocks, before) << "nothing was below host RAM to bring up";
  // The conversation's blocks, to check where they are.
  AdmissionRequest a;
  a.tokens = turn;
  a.keys = ExtraKeys{.model_id = e->info().cache_identity};
  const std::vector<BlockHash> keys = e->cache().PlanAdmission(a).hashes;
  auto in_host = [&] {
    const PrefixLocation where = e->tiers()->LookupPrefix(keys);
    if (where.blocks == 0) return false;
    for (int32_t i = 0; i < where.blocks; ++i) {
      if (where.tier[static_cast<size_t>(i)] != 0) return false;
    }
    return true;
  };
  // The engine keeps stepping while a prefetch is in flight; when it has no
  // work left, the prefetched blocks are in host RAM.
  while (e->HasWork()) ASSERT_TRUE(e->Step(&events).ok());
  ASSERT_TRUE(in_host());
  const OnboardMetrics m0 = e->onboard_metrics();
  std::vector<RequestMetrics> metrics;
  RunPrompts(*e, {turn}, 1, &failures, &metrics);
  const OnboardMetrics m1 = e->onboard_metrics();
  EXPECT_GT(metrics[0].onboarded_tokens, 0);
  EXPECT_GT(m1.timely_blocks - m0.timely_blocks, 0u) << "the prefetched blocks were not in host RAM in time";
}

TEST(TieredEngineTest, SessionPrefetchNeedsTiers) {
  auto e = MakeEngine(nullptr, 24);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->PrefetchSession("chat-1").status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace kvstack

namespace kvstack {
namespace {

// Prefetched blocks are held until their request comes, so offloads churning
// through a small host tier in between cannot push them out first (they
// would enter host RAM as its least valuable blocks).
TEST(TieredEngineTest, PrefetchedBlocksOutliveHostChurnUntilTheirTurn) {
  TempDir disk("churn");
  TierSetup tiers{.host_blocks = 2, .disk_dir = disk.path().string()};
  auto e = MakeEngine(&tiers, 24);
  ASSERT_TRUE(e);
  int failures = 0;
  const auto turn = MakePrompts(1, 11)[0];
  GenerationRequest r;
  r.prompt = turn;
  r.sampling.max_tokens = 3;
  r.ignore_eos = true;
  r.session_id = "chat-2";
  ASSERT_TRUE(e->Submit(r).ok());
  std::vector<GenerationEvent> events;
  while (e->HasWork()) ASSERT_TRUE(e->Step(&events).ok());
  RunPrompts(*e, MakePrompts(40, 12), 4, &failures);
  e->tiers()->Flush();
  auto blocks = e->PrefetchSession("chat-2");
  ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
  while (e->HasWork()) ASSERT_TRUE(e->Step(&events).ok());
  ASSERT_GT(e->onboard_metrics().prefetched_blocks, 0u);
  // More traffic: its evictions go through the 2-block host tier.
  RunPrompts(*e, MakePrompts(20, 13), 4, &failures);
  const OnboardMetrics m0 = e->onboard_metrics();
  std::vector<RequestMetrics> metrics;
  RunPrompts(*e, {turn}, 1, &failures, &metrics);
  const OnboardMetrics m1 = e->onboard_metrics();
  ASSERT_EQ(failures, 0);
  EXPECT_GT(metrics[0].onboarded_tokens, 0);
  EXPECT_EQ(m1.timely_blocks - m0.timely_blocks, m1.onboard_blocks_requested - m0.onboard_blocks_requested)
      << "every block of the turn should have been waiting in RAM";
}

}  // namespace
}  // namespace kvstack
