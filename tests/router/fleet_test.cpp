// A real fleet on 127.0.0.1: four `kvstack serve --kv-events` workers
// (stories260K) behind `kvstack router`, ports picked at run time. A repeated
// prefix lands on the worker that holds it (learned from its events); two
// tenants are never credited with each other's blocks; a worker killed
// mid-run loses no request that had not started streaming, and a broken
// stream ends with an error event; gaps forced by dropping event batches are
// recovered through replay and through the snapshot; a restarted router
// rebuilds its index from the snapshots.
#include <signal.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "common/requirement.h"
#include "server/serve_process.h"

namespace kvstack::testing {
namespace {

constexpr int kWorkers = 4;
constexpr int kBlock = 16;

class FleetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = Stories260KPath();
    if (model_.empty()) {
      KVSTACK_SKIP_MISSING() << "../shared/models/stories260K.gguf is absent";
    }
  }

  void StartWorkers(const std::vector<std::string>& extra = {}) {
    for (int i = 0; i < kWorkers; ++i) {
      std::vector<std::string> args = {"--model", model_, "--threads", "1", "--block-size", std::to_string(kBlock),
                                       "--kv-memory", "2MiB", "--kv-events", "tcp://127.0.0.1:*",
                                       "--kv-events-replay", "tcp://127.0.0.1:*"};
      args.insert(args.end(), extra.begin(), extra.end());
      workers_.push_back(std::make_unique<ServeProcess>(args));
      ASSERT_TRUE(workers_.back()->ok()) << workers_.back()->error();
    }
  }

  std::unique_ptr<ServeProcess> StartRouter(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--host", "127.0.0.1", "--port", "0", "--model", model_};
    for (const auto& w : workers_) {
      args.push_back("--worker");
      args.push_back(Url(*w));
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = std::make_unique<ServeProcess>("router", args);
    EXPECT_TRUE(r->ok()) << r->error();
    return r;
  }

  static std::string Url(const ServeProcess& p) { return "http://127.0.0.1:" + std::to_string(p.port()); }

  int WorkerIndex(const std::string& url) const {
    for (int i = 0; i < static_cast<int>(workers_.size()); ++i) {
      if (Url(*workers_[static_cast<size_t>(i)]) == url) return i;
    }
    return -1;
  }

  // A non-streamed completion through the router: status, worker, cached tokens.
  struct Answer {
    int status = -1;
    int worker = -1;
    int cached = -1;
    std::string body;
  };
  Answer Complete(ServeProcess& router, const std::vector<int>& prompt, const std::string& salt = "") {
    auto c = router.Client();
    nlohmann::json body = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}};
    if (!salt.empty()) body["cache_salt"] = salt;
    auto r = c->Post("/v1/completions", body.dump(), "application/json");
    Answer a;
    if (!r) return a;
    a.status = r->status;
    a.body = r->body;
    a.worker = WorkerIndex(r->get_header_value("X-Kvstack-Worker"));
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_object() && j.contains("usage")) {
      a.cached = j["usage"].value("prompt_tokens_details", nlohmann::json::object()).value("cached_tokens", 0);
    }
    return a;
  }

  nlohmann::json Fleet(ServeProcess& router) { return GetJson(*router.Client(), "/v1/fleet").body; }

  // Waits until the router's index holds at least `blocks` device blocks of
  // worker `w` (its events arrived).
  bool WaitForBlocks(ServeProcess& router, int w, int64_t blocks) {
    for (int i = 0; i < 400; ++i) {
      const nlohmann::json f = Fleet(router);
      if (f.is_object() && f["workers"][w]["blocks"]["GPU"].get<int64_t>() >= blocks) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }

  static std::vector<int> Prompt(int seed, int tokens = 4 * kBlock) {
    std::vector<int> p;
    for (int i = 0; i < tokens; ++i) p.push_back(3 + (seed * 131 + i * 17) % 490);
    return p;
  }

  std::string model_;
  std::vector<std::unique_ptr<ServeProcess>> workers_;
};

TEST_F(FleetTest, RepeatedPrefixLandsOnItsHolderFromEvents) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers());
  // Predictions expire at once: only the workers' events can steer.
  auto router = StartRouter({"--prediction-ttl", "0"});
  ASSERT_TRUE(router->ok());
  const auto p = Prompt(1);
  const Answer first = Complete(*router, p);
  ASSERT_EQ(first.status, 200) << first.body;
  ASSERT_GE(first.worker, 0);
  ASSERT_TRUE(WaitForBlocks(*router, first.worker, 4));
  // Cold prompts in between spread over the fleet; the repeated one sticks.
  for (int i = 0; i < 6; ++i) {
    const Answer cold = Complete(*router, Prompt(100 + i));
    ASSERT_EQ(cold.status, 200);
    const Answer again = Complete(*router, p);
    ASSERT_EQ(again.status, 200);
    EXPECT_EQ(again.worker, first.worker);
    EXPECT_EQ(again.cached, 3 * kBlock);  // all but the block holding the last prompt token
  }
  const nlohmann::json f = Fleet(*router);
  EXPECT_GE(f["decisions"]["kv_hit"].get<int>(), 6);
  std::set<int> used;
  for (int w = 0; w < kWorkers; ++w) {
    if (f["workers"][w]["requests"].get<int>() > 0) used.insert(w);
  }
  EXPECT_GE(used.size(), 3u) << f.dump();
  // The router's own metrics.
  auto m = router->Client()->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("kvstack_router_decisions_total{reason=\"kv_hit\"}"), std::string::npos);
  EXPECT_NE(m->body.find("kvstack_router_reported_hit_tokens_total"), std::string::npos);
  auto page = router->Client()->Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("kvstack fleet"), std::string::npos);
}

TEST_F(FleetTest, TenantsAreNeverCreditedWithEachOthersBlocks) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers());
  auto router = StartRouter({"--prediction-ttl", "0"});
  ASSERT_TRUE(router->ok());
  const auto p = Prompt(2);
  const Answer a = Complete(*router, p, "tenant-secret-alpha");
  ASSERT_EQ(a.status, 200);
  ASSERT_TRUE(WaitForBlocks(*router, a.worker, 4));
  const int hits_before = Fleet(*router)["decisions"]["kv_hit"].get<int>();
  const Answer b = Complete(*router, p, "tenant-secret-beta");
  ASSERT_EQ(b.status, 200);
  EXPECT_EQ(b.cached, 0);
  const nlohmann::json f = Fleet(*router);
  EXPECT_EQ(f["decisions"]["kv_hit"].get<int>(), hits_before);
  // Tenant a again: credited with its own blocks.
  const Answer a2 = Complete(*router, p, "tenant-secret-alpha");
  EXPECT_EQ(a2.worker, a.worker);
  EXPECT_EQ(a2.cached, 3 * kBlock);
  // No view names a tenant.
  for (const char* path : {"/v1/fleet", "/metrics", "/"}) {
    auto r = router->Client()->Get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body.find("tenant-secret"), std::string::npos) << path;
  }
}

TEST_F(FleetTest, KilledWorkerLosesNoUnstartedRequestAndBreaksStreamsWithAnError) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers());
  auto router = StartRouter();
  ASSERT_TRUE(router->ok());
  const auto p = Prompt(3);
  const Answer first = Complete(*router, p);
  ASSERT_EQ(first.status, 200);
  ASSERT_TRUE(WaitForBlocks(*router, first.worker, 4));

  // A stream on the holder; kill it at the first chunk.
  auto c = router->Client();
  nlohmann::json body = {{"prompt", p}, {"max_tokens", 400}, {"temperature", 0}, {"stream", true},
                         {"ignore_eos", true}};
  ServeProcess& holder = *workers_[static_cast<size_t>(first.worker)];
  const StreamReply s = PostStream(*c, "/v1/completions", body, [&] { holder.Signal(SIGKILL); });
  EXPECT_EQ(s.status, 200);
  ASSERT_FALSE(s.data.empty());
  EXPECT_NE(s.data.back().find("worker_failed"), std::string::npos) << s.data.back();

  // Requests that had not started: every one answered, by the others.
  for (int i = 0; i < 8; ++i) {
    const Answer a = Complete(*router, i % 2 ? p : Prompt(200 + i));
    EXPECT_EQ(a.status, 200) << a.body;
    EXPECT_NE(a.worker, first.worker);
  }
  const nlohmann::json f = Fleet(*router);
  EXPECT_FALSE(f["workers"][first.worker]["healthy"].get<bool>());
}

TEST_F(FleetTest, GapsAreRecoveredThroughReplay) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers());
  auto router = StartRouter({"--fault-drop-events", "3"});
  ASSERT_TRUE(router->ok());
  for (int i = 0; i < 12; ++i) ASSERT_EQ(Complete(*router, Prompt(300 + i)).status, 200);
  // The index equals each worker's own snapshot once the events settle.
  for (int w = 0; w < kWorkers; ++w) {
    const auto snap = GetJson(*workers_[static_cast<size_t>(w)]->Client(), "/v1/cache/blocks").body;
    const int64_t held = static_cast<int64_t>(snap["tiers"]["GPU"].size());
    bool equal = false;
    for (int t = 0; t < 400 && !equal; ++t) {
      equal = Fleet(*router)["workers"][w]["blocks"]["GPU"].get<int64_t>() == held;
      if (!equal) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    EXPECT_TRUE(equal) << "worker " << w << ": " << Fleet(*router).dump();
  }
  const nlohmann::json f = Fleet(*router);
  int64_t gaps = 0, replays = 0;
  for (const auto& w : f["workers"]) gaps += w["events"]["gaps"].get<int64_t>(), replays += w["events"]["replays"].get<int64_t>();
  // Every third batch was dropped: each drop is noticed (by the next batch's
  // sequence number, or, for a last batch, by asking the worker) and replayed.
  EXPECT_GT(replays, 0) << "gaps seen by sequence number: " << gaps;
}

TEST_F(FleetTest, GapsBeyondTheReplayBufferAreRecoveredThroughTheSnapshot) {
  // A replay buffer of one batch cannot fill a gap: the snapshot must.
  ASSERT_NO_FATAL_FAILURE(StartWorkers({"--kv-events-buffer", "1"}));
  auto router = StartRouter({"--fault-drop-events", "2"});
  ASSERT_TRUE(router->ok());
  for (int i = 0; i < 12; ++i) ASSERT_EQ(Complete(*router, Prompt(400 + i)).status, 200);
  int64_t snapshots = 0;
  for (int w = 0; w < kWorkers; ++w) {
    const auto snap = GetJson(*workers_[static_cast<size_t>(w)]->Client(), "/v1/cache/blocks").body;
    const int64_t held = static_cast<int64_t>(snap["tiers"]["GPU"].size());
    bool equal = false;
    for (int t = 0; t < 400 && !equal; ++t) {
      equal = Fleet(*router)["workers"][w]["blocks"]["GPU"].get<int64_t>() == held;
      if (!equal) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    EXPECT_TRUE(equal) << "worker " << w;
    snapshots += Fleet(*router)["workers"][w]["events"]["snapshots"].get<int64_t>();
  }
  EXPECT_GT(snapshots, kWorkers);  // one each at start, more for the gaps
}

TEST_F(FleetTest, RestartedRouterRebuildsItsIndexFromSnapshots) {
  ASSERT_NO_FATAL_FAILURE(StartWorkers());
  int holder = -1;
  const auto p = Prompt(5);
  {
    auto router = StartRouter();
    ASSERT_TRUE(router->ok());
    const Answer a = Complete(*router, p);
    ASSERT_EQ(a.status, 200);
    holder = a.worker;
    ASSERT_TRUE(WaitForBlocks(*router, holder, 4));
  }
  auto router = StartRouter({"--prediction-ttl", "0"});
  ASSERT_TRUE(router->ok());
  ASSERT_TRUE(WaitForBlocks(*router, holder, 4));
  const Answer again = Complete(*router, p);
  EXPECT_EQ(again.worker, holder);
  EXPECT_EQ(again.cached, 3 * kBlock);
}

TEST_F(FleetTest, RefusesWorkersWithoutEventsOrWithAnotherBlockSize) {
  std::vector<std::string> args = {"--model", model_, "--threads", "1"};
  workers_.push_back(std::make_unique<ServeProcess>(args));
  ASSERT_TRUE(workers_.back()->ok());
  ServeProcess r("router", {"--port", "0", "--model", model_, "--worker", Url(*workers_.back())});
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error().find("--kv-events"), std::string::npos) << r.error();
}

// A worker with a host tier: the device pool's evictions are offloaded into
// host RAM, and its CPU-medium events reach the router's index, which counts
// exactly the blocks the worker's snapshot lists in its CPU tier.
TEST_F(FleetTest, HostTierBlocksReachTheRouterIndexAsCpuBlocks) {
  workers_.push_back(std::make_unique<ServeProcess>(std::vector<std::string>{
      "--model", model_, "--threads", "1", "--block-size", std::to_string(kBlock), "--kv-memory", "200KiB",
      "--host-tier", "400KiB", "--offload-min-priority", "0", "--kv-events", "tcp://127.0.0.1:*",
      "--kv-events-replay", "tcp://127.0.0.1:*"}));
  ASSERT_TRUE(workers_.back()->ok()) << workers_.back()->error();
  auto router = StartRouter({"--prediction-ttl", "0"});
  ASSERT_TRUE(router->ok());
  for (int p = 0; p < 10; ++p) ASSERT_EQ(Complete(*router, Prompt(100 + p)).status, 200);
  // Settled: the router's CPU count equals the worker's snapshot (which is
  // taken with the events published up to it).
  int64_t listed = -1, indexed = -2;
  for (int i = 0; i < 400 && listed != indexed; ++i) {
    const nlohmann::json snap = GetJson(*workers_[0]->Client(), "/v1/cache/blocks").body;
    listed = snap["tiers"].contains("CPU") ? static_cast<int64_t>(snap["tiers"]["CPU"].size()) : 0;
    indexed = Fleet(*router)["workers"][0]["blocks"]["CPU"].get<int64_t>();
    if (listed != indexed) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_GT(listed, 0) << "no block was offloaded into host RAM";
  EXPECT_EQ(indexed, listed);
  // The first prompt (likely evicted from the 20-block pool by the 40 blocks
  // computed since) is served from the worker's cache again, device or host.
  const Answer back = Complete(*router, Prompt(100));
  EXPECT_EQ(back.status, 200);
  EXPECT_GT(back.cached, 0) << back.body;
}

// A worker restarted over its disk tier holds the blocks of its earlier run
// there; its fresh start clears subscribers (AllBlocksCleared), so it must
// announce them again: its snapshot lists them from the start, and a router
// indexes them as DISK blocks before any request.
TEST_F(FleetTest, DiskBlocksOfAnEarlierRunReachTheRouterAfterARestart) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kvstack-fleet-disk-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::vector<std::string> args = {
      "--model", model_, "--threads", "1", "--block-size", std::to_string(kBlock), "--kv-memory", "200KiB",
      "--host-tier", "100KiB", "--disk-tier", dir.string(), "--disk-tier-size", "8MiB", "--offload-min-priority", "0",
      "--kv-events", "tcp://127.0.0.1:*", "--kv-events-replay", "tcp://127.0.0.1:*"};
  const auto disk_blocks = [](ServeProcess& w) -> int64_t {
    const nlohmann::json snap = GetJson(*w.Client(), "/v1/cache/blocks").body;
    return snap.is_object() && snap["tiers"].contains("DISK") ? static_cast<int64_t>(snap["tiers"]["DISK"].size()) : 0;
  };
  {
    ServeProcess first(args);
    ASSERT_TRUE(first.ok()) << first.error();
    for (int p = 0; p < 12; ++p) {
      nlohmann::json body = {{"prompt", Prompt(200 + p)}, {"max_tokens", 4}, {"temperature", 0}};
      ASSERT_EQ(PostJson(*first.Client(), "/v1/completions", body).status, 200);
    }
    int64_t written = 0;
    for (int i = 0; i < 400 && written == 0; ++i) {
      written = disk_blocks(first);
      if (written == 0) std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    ASSERT_GT(written, 0) << "nothing reached the disk tier";
    first.Signal(SIGTERM);
    ASSERT_EQ(first.WaitExit(std::chrono::seconds(30)), std::optional<int>(0));
  }
  workers_.push_back(std::make_unique<ServeProcess>(args));
  ASSERT_TRUE(workers_.back()->ok()) << workers_.back()->error();
  const int64_t listed = disk_blocks(*workers_.back());
  EXPECT_GT(listed, 0) << "the restarted worker's snapshot lists no disk block";
  auto router = StartRouter({"--prediction-ttl", "0"});
  ASSERT_TRUE(router->ok());
  int64_t indexed = -1;
  for (int i = 0; i < 400 && indexed != listed; ++i) {
    const nlohmann::json f = Fleet(*router);
    indexed = f.is_object() && f["workers"][0]["blocks"].contains("DISK") ? f["workers"][0]["blocks"]["DISK"].get<int64_t>() : 0;
    if (indexed != listed) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(indexed, listed);
  workers_.clear();
  std::filesystem::remove_all(dir);
}

// Workers started with a client key and an admin key: a router without the
// admin key refuses to start, naming --worker-key; with it, its event info,
// snapshots (operator views) and health calls get through, and a client's
// request with the client key is routed and answered.
TEST_F(FleetTest, WorkerKeyLetsTheRouterReachWorkersStartedWithAnApiKey) {
  for (int i = 0; i < 2; ++i) {
    workers_.push_back(std::make_unique<ServeProcess>(std::vector<std::string>{
        "--model", model_, "--threads", "1", "--block-size", std::to_string(kBlock), "--kv-memory", "2MiB",
        "--kv-events", "tcp://127.0.0.1:*", "--kv-events-replay", "tcp://127.0.0.1:*", "--api-key", "s3cret",
        "--admin-key", "adm1n"}));
    ASSERT_TRUE(workers_.back()->ok()) << workers_.back()->error();
  }
  {
    ServeProcess keyless("router", {"--port", "0", "--model", model_, "--worker", Url(*workers_[0]), "--worker",
                                    Url(*workers_[1])});
    EXPECT_FALSE(keyless.ok());
    EXPECT_NE(keyless.error().find("--worker-key"), std::string::npos) << keyless.error();
  }
  {
    // The client key opens no operator view: the router names the flag.
    ServeProcess client_keyed("router", {"--port", "0", "--model", model_, "--worker", Url(*workers_[0]),
                                         "--worker", Url(*workers_[1]), "--worker-key", "s3cret"});
    EXPECT_FALSE(client_keyed.ok());
    EXPECT_NE(client_keyed.error().find("--worker-key"), std::string::npos) << client_keyed.error();
  }
  auto router = StartRouter({"--worker-key", "adm1n", "--prediction-ttl", "0"});
  ASSERT_TRUE(router->ok());
  const std::vector<int> prompt = Prompt(42);
  nlohmann::json body = {{"prompt", prompt}, {"max_tokens", 4}, {"temperature", 0}};
  auto c = router->Client();
  auto first = c->Post("/v1/completions", httplib::Headers{{"Authorization", "Bearer s3cret"}}, body.dump(),
                       "application/json");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200) << first->body;
  const int holder = WorkerIndex(first->get_header_value("X-Kvstack-Worker"));
  ASSERT_GE(holder, 0);
  // Its events reached the router (subscribed after an authorized /v1/kv-events).
  bool indexed = false;
  for (int i = 0; i < 400 && !indexed; ++i) {
    const nlohmann::json f = Fleet(*router);
    indexed = f.is_object() && f["workers"][holder]["blocks"]["GPU"].get<int64_t>() >= 3 &&
              f["workers"][holder]["healthy"].get<bool>();
    if (!indexed) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_TRUE(indexed) << Fleet(*router).dump();
  auto again = c->Post("/v1/completions", httplib::Headers{{"Authorization", "Bearer s3cret"}}, body.dump(),
                       "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
  EXPECT_EQ(WorkerIndex(again->get_header_value("X-Kvstack-Worker")), holder);
  // A client without the key gets the worker's 401, passed through unchanged.
  auto denied = c->Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401) << denied->body;
}

}  // namespace
}  // namespace kvstack::testing

namespace kvstack::testing {
namespace {

// `kvstack fleet` starts its workers and a router, serves through them, and
// stops them all on SIGTERM.
TEST(FleetCommandTest, StartsServesAndStopsEverything) {
  const std::string model = Stories260KPath();
  if (model.empty()) {
    KVSTACK_SKIP_MISSING() << "../shared/models/stories260K.gguf is absent";
  }
  ServeProcess fleet("fleet", {"--workers", "2", "--model", model, "--port", "0", "--kv-memory", "2MiB"});
  ASSERT_TRUE(fleet.ok()) << fleet.error();
  const auto f = GetJson(*fleet.Client(), "/v1/fleet").body;
  ASSERT_EQ(f["workers"].size(), 2u);
  auto r = PostJson(*fleet.Client(), "/v1/completions", {{"prompt", "Once upon a time"}, {"max_tokens", 4}});
  EXPECT_EQ(r.status, 200) << r.raw;
  fleet.Signal(SIGTERM);
  EXPECT_EQ(fleet.WaitExit(std::chrono::seconds(30)), 0) << fleet.Output();
  // The workers are gone too.
  for (const auto& w : f["workers"]) {
    const std::string url = w["url"];
    httplib::Client c(url);
    c.set_connection_timeout(std::chrono::milliseconds(300));
    EXPECT_FALSE(c.Get("/health")) << url << " still answers";
  }
}

}  // namespace
}  // namespace kvstack::testing

#include <zmq.hpp>

#include "kvstack/kv_event_wire.h"

namespace kvstack::testing {
namespace {

// A stand-in for a vLLM worker: an HTTP server that answers completions and
// publishes vLLM's events with its own 32-byte hashes and token ids (no
// kvstack priority, no /v1/kv-events, no snapshot).
class FakeVllmWorker {
 public:
  FakeVllmWorker() {
    pub_.bind("tcp://127.0.0.1:*");
    endpoint_ = pub_.get(zmq::sockopt::last_endpoint);
    http_.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const auto body = nlohmann::json::parse(req.body);
      const std::vector<int> prompt = body["prompt"].get<std::vector<int>>();
      Publish(prompt);
      ++requests_;
      res.set_content(nlohmann::json{{"object", "text_completion"},
                                     {"choices", {{{"index", 0}, {"text", "x"}, {"finish_reason", "length"}}}},
                                     {"usage", {{"prompt_tokens", prompt.size()}, {"completion_tokens", 1}}}}
                          .dump(),
                      "application/json");
    });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeVllmWorker() {
    http_.stop();
    thread_.join();
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string Spec() const { return Url() + "=" + endpoint_; }
  int requests() const { return requests_.load(); }

 private:
  void Publish(const std::vector<int>& prompt) {
    WireEvent e{.kind = KvEventKind::kBlockStored, .block_size = 16, .medium = "GPU"};
    std::string parent;
    for (size_t b = 0; b + 16 <= prompt.size(); b += 16) {
      std::string h(32, '\0');
      uint64_t x = std::hash<std::string>{}(parent) ^ (b * 0x9e3779b97f4a7c15ull);
      for (size_t i = 0; i < 16; ++i) x = x * 1099511628211ull ^ static_cast<uint64_t>(prompt[b + i]);
      for (size_t i = 0; i < 32; ++i) h[i] = static_cast<char>(x >> (8 * (i % 8)));
      e.block_hashes.push_back(h);
      e.token_ids.insert(e.token_ids.end(), prompt.begin() + static_cast<long>(b), prompt.begin() + static_cast<long>(b) + 16);
      parent = h;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const std::string payload = EncodeWireBatch(WireBatch{.ts = 1.0, .events = {e}});
    const std::string seq = SeqFrame(seq_++);
    pub_.send(zmq::buffer(std::string("vllm")), zmq::send_flags::sndmore);
    pub_.send(zmq::buffer(seq), zmq::send_flags::sndmore);
    pub_.send(zmq::buffer(payload), zmq::send_flags::none);
  }

  zmq::context_t ctx_{1};
  zmq::socket_t pub_{ctx_, zmq::socket_type::pub};
  std::string endpoint_;
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  int64_t seq_ = 0;
  std::atomic<int> requests_{0};
};

TEST(ForeignWorkerTest, RouterIndexesAVllmStreamAndRoutesARepeatedPrefixToIt) {
  const std::string model = Stories260KPath();
  if (model.empty()) {
    KVSTACK_SKIP_MISSING() << "../shared/models/stories260K.gguf is absent";
  }
  std::vector<std::unique_ptr<ServeProcess>> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(std::make_unique<ServeProcess>(std::vector<std::string>{
        "--model", model, "--threads", "1", "--kv-events", "tcp://127.0.0.1:*", "--kv-events-replay",
        "tcp://127.0.0.1:*"}));
    ASSERT_TRUE(workers.back()->ok()) << workers.back()->error();
  }
  FakeVllmWorker vllm;
  ServeProcess router("router", {"--host", "127.0.0.1", "--port", "0", "--model", model, "--prediction-ttl", "0",
                                 "--worker", "http://127.0.0.1:" + std::to_string(workers[0]->port()), "--worker",
                                 "http://127.0.0.1:" + std::to_string(workers[1]->port()), "--foreign-worker",
                                 vllm.Spec()});
  ASSERT_TRUE(router.ok()) << router.error();
  std::vector<int> p;
  for (int i = 0; i < 4 * 16 + 5; ++i) p.push_back(3 + (i * 37) % 490);
  // Warm the vLLM worker directly: its events reach the router's index.
  httplib::Client direct("127.0.0.1", std::stoi(vllm.Url().substr(17)));
  bool indexed = false;
  for (int i = 0; i < 400 && !indexed; ++i) {
    // Again every second: a PUB drops what it sends before the SUB joined.
    if (i % 40 == 0) {
      ASSERT_TRUE(direct.Post("/v1/completions", nlohmann::json{{"prompt", p}, {"max_tokens", 1}}.dump(),
                              "application/json"));
    }
    const auto f = GetJson(*router.Client(), "/v1/fleet").body;
    indexed = f["workers"][2]["blocks"]["GPU"].get<int>() == 4;
    if (!indexed) std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_TRUE(indexed) << GetJson(*router.Client(), "/v1/fleet").raw;
  auto r = router.Client()->Post("/v1/completions", nlohmann::json{{"prompt", p}, {"max_tokens", 1}}.dump(),
                                 "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("X-Kvstack-Worker"), vllm.Url());
  const int direct_requests = vllm.requests() - 1;
  EXPECT_GE(direct_requests, 1);
  // A salted request is never credited with the foreign worker's blocks.
  const int hits = GetJson(*router.Client(), "/v1/fleet").body["decisions"]["kv_hit"].get<int>();
  auto salted = router.Client()->Post(
      "/v1/completions", nlohmann::json{{"prompt", p}, {"max_tokens", 1}, {"cache_salt", "t"}}.dump(),
      "application/json");
  ASSERT_TRUE(salted);
  EXPECT_EQ(GetJson(*router.Client(), "/v1/fleet").body["decisions"]["kv_hit"].get<int>(), hits);
}

}  // namespace
}  // namespace kvstack::testing
