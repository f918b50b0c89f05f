// The pump, the snapshot and their routes (see kv_event_feed.h).
#include "server/kv_event_feed.h"

#include <chrono>

#include <fmt/format.h>
#include <httplib.h>

#include "kvstack/kv_event_wire.h"
#include "server/server_context.h"

namespace kvstack::server {
namespace {

constexpr auto kPumpPeriod = std::chrono::milliseconds(5);

// Every block in the device pool's prefix cache: in use, cached or pinned.
std::vector<std::pair<BlockHash, Priority>> HeldBlocks(const KvCache& cache) {
  std::vector<std::pair<BlockHash, Priority>> out;
  for (int32_t i = 0; i < cache.num_blocks(); ++i) {
    const BlockInfo b = cache.DescribeBlock(BlockId{i});
    if (b.state == BlockInfo::State::kFree || b.hash.IsZero()) continue;
    out.emplace_back(b.hash, b.priority);
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<KvEventFeed>> KvEventFeed::Start(const ServerOptions::KvEvents& options, EngineLoop* loop,
                                                        Log log) {
  KvEventPublisherOptions po{.endpoint = options.endpoint,
                             .replay_endpoint = options.replay_endpoint,
                             .topic = options.topic,
                             .replay_batches = options.replay_batches,
                             .block_size = loop->block_size()};
  auto publisher = KvEventPublisher::Start(po, log);
  if (!publisher.ok()) return publisher.status();
  log(fmt::format("KV events: publishing on {} (topic \"{}\"){}", (*publisher)->endpoint(), options.topic,
                  (*publisher)->replay_endpoint().empty()
                      ? std::string()
                      : fmt::format(", replay on {}", (*publisher)->replay_endpoint())));
  return std::unique_ptr<KvEventFeed>(new KvEventFeed(loop, std::move(publisher).value(), std::move(log)));
}

KvEventFeed::KvEventFeed(EngineLoop* loop, std::unique_ptr<KvEventPublisher> publisher, Log log)
    : loop_(loop), publisher_(std::move(publisher)), log_(std::move(log)) {
  // A fresh worker holds nothing: subscribers drop what a previous life held.
  KvEventBatch cleared;
  cleared.events.push_back(KvEvent{.seq = 0, .kind = KvEventKind::kAllCleared});
  publisher_->Publish(std::move(cleared));
  pump_ = std::thread([this] { Pump(); });
}

KvEventFeed::~KvEventFeed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  pump_.join();
}

void KvEventFeed::DrainOnEngineThread(Engine& engine) {
  KvCache& cache = engine.cache();
  KvEventBatch batch = cache.DrainEvents();
  if (batch.events.empty()) return;
  const bool gap = batch.events.front().seq != next_event_seq_;
  next_event_seq_ = batch.events.back().seq + 1;
  if (gap) {
    // The log overflowed: what was lost cannot be told, the present can.
    KvEventBatch resync;
    resync.events.push_back(KvEvent{.seq = 0, .kind = KvEventKind::kAllCleared});
    for (const auto& [hash, priority] : HeldBlocks(cache)) {
      resync.events.push_back(KvEvent{.seq = 0, .kind = KvEventKind::kBlockStored, .hash = hash, .priority = priority});
    }
    resyncs_.fetch_add(1);
    batch = std::move(resync);
  }
  publisher_->Publish(std::move(batch));
}

void KvEventFeed::Pump() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, kPumpPeriod, [&] { return stopping_; })) return;
    }
    auto done = loop_->Call([this](Engine& e) {
      DrainOnEngineThread(e);
      return true;
    });
    if (!done.ok()) return;  // the engine thread stopped
  }
}

Result<nlohmann::json> KvEventFeed::Snapshot() {
  auto taken = loop_->Call([this](Engine& e) {
    DrainOnEngineThread(e);
    return std::pair(publisher_->next_seq(), HeldBlocks(e.cache()));
  });
  if (!taken.ok()) return taken.status();
  nlohmann::json gpu = nlohmann::json::array();
  for (const auto& [hash, priority] : taken->second) gpu.push_back({{"hash", hash.ToHex()}, {"priority", priority}});
  return nlohmann::json{{"object", "kv.blocks"},
                        {"next_seq", taken->first},
                        {"block_size", loop_->block_size()},
                        {"tiers", {{std::string(MediumName(StorageTier::kDevice)), std::move(gpu)}}}};
}

nlohmann::json KvEventFeed::Info() const {
  const KvEventPublisherStats s = publisher_->Stats();
  return {{"object", "kv.events"},
          {"endpoint", publisher_->endpoint()},
          {"replay_endpoint", publisher_->replay_endpoint()},
          {"topic", publisher_->topic()},
          {"block_size", loop_->block_size()},
          {"hash_seed", loop_->info().hash_seed},
          {"model_identity", loop_->info().model_identity},
          // What block keys root in: the model plus the KV layout (a router
          // keys requests with it, so they match this worker's blocks).
          {"cache_identity", loop_->info().cache_identity},
          {"next_seq", publisher_->next_seq()},
          {"batches", s.batches},
          {"events", s.events},
          {"replay_requests", s.replay_requests},
          {"resyncs", resyncs_.load()}};
}

void AddKvEventRoutes(httplib::Server& http, ServerContext& ctx, KvEventFeed* feed) {
  // Operator views (#17): a router is an operator; with keys set it sends the admin key.
  http.Get("/v1/kv-events", [&ctx, feed](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.PrecheckOperator(req)) return SendError(res, *e);
    if (feed == nullptr) {
      return SendError(res, ApiError{.http_status = 404,
                                     .message = "KV events are off: start the server with --kv-events ENDPOINT",
                                     .code = "kv_events_off"});
    }
    SendJson(res, 200, feed->Info());
  });
  http.Get("/v1/cache/blocks", [&ctx, feed](const httplib::Request& req, httplib::Response& res) {
    if (auto e = ctx.PrecheckOperator(req)) return SendError(res, *e);
    if (feed == nullptr) {
      return SendError(res, ApiError{.http_status = 404,
                                     .message = "KV events are off: start the server with --kv-events ENDPOINT",
                                     .code = "kv_events_off"});
    }
    auto snapshot = feed->Snapshot();
    if (!snapshot.ok()) return SendError(res, FromStatus(snapshot.status()));
    SendJson(res, 200, *snapshot);
  });
}

}  // namespace kvstack::server
