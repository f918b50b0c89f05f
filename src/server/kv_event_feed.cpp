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
  auto tiers = loop->Call([](Engine& e) { return e.tiers(); });
  if (!tiers.ok()) return tiers.status();
  return std::unique_ptr<KvEventFeed>(new KvEventFeed(loop, std::move(publisher).value(), std::move(log), *tiers));
}

namespace {
std::shared_ptr<TierEventCollector> MakeCollector(TierChain* tiers) {
  if (tiers == nullptr) return nullptr;
  std::vector<StorageTier> media;
  for (int t = 0; t < tiers->num_tiers(); ++t) media.push_back(TierMedium(tiers->tier(t).name()));
  return std::make_shared<TierEventCollector>(std::move(media));
}
}  // namespace

KvEventFeed::KvEventFeed(EngineLoop* loop, std::unique_ptr<KvEventPublisher> publisher, Log log, TierChain* tiers)
    : loop_(loop),
      publisher_(std::move(publisher)),
      log_(std::move(log)),
      tiers_(tiers),
      tier_events_(MakeCollector(tiers)) {
  // A fresh worker holds nothing: subscribers drop what a previous life held.
  KvEventBatch cleared;
  cleared.events.push_back(KvEvent{.seq = 0, .kind = KvEventKind::kAllCleared});
  publisher_->Publish(std::move(cleared));
  if (tiers_ != nullptr) tiers_->SetListener(tier_events_);
  pump_ = std::thread([this] { Pump(); });
}

KvEventFeed::~KvEventFeed() {
  if (tiers_ != nullptr) tiers_->SetListener(nullptr);
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
  if (batch.events.empty()) {
    if (tier_events_ != nullptr) publisher_->Publish(tier_events_->Take());
    return;
  }
  const bool gap = batch.events.front().seq != next_event_seq_;
  next_event_seq_ = batch.events.back().seq + 1;
  if (gap) {
    // The log overflowed: what was lost cannot be told, the present can.
    KvEventBatch resync;
    resync.events.push_back(KvEvent{.seq = 0, .kind = KvEventKind::kAllCleared});
    for (const auto& [hash, priority] : HeldBlocks(cache)) {
      resync.events.push_back(KvEvent{.seq = 0, .kind = KvEventKind::kBlockStored, .hash = hash, .priority = priority});
    }
    if (tier_events_ != nullptr) {
      // AllBlocksCleared empties every tier at the subscriber: tell it the tiers' blocks again.
      for (const auto& [medium, blocks] : tier_events_->TakeAndList([](KvEventBatch) {})) {
        for (const auto& [hash, priority] : blocks) {
          resync.events.push_back(
              KvEvent{.seq = 0, .kind = KvEventKind::kBlockStored, .tier = medium, .hash = hash, .priority = priority});
        }
      }
    }
    resyncs_.fetch_add(1);
    batch = std::move(resync);
  }
  publisher_->Publish(std::move(batch));
  if (tier_events_ != nullptr) publisher_->Publish(tier_events_->Take());
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
  using Listing = std::vector<std::pair<StorageTier, std::vector<std::pair<BlockHash, Priority>>>>;
  auto taken = loop_->Call([this](Engine& e) {
    DrainOnEngineThread(e);
    Listing listing{{StorageTier::kDevice, HeldBlocks(e.cache())}};
    if (tier_events_ != nullptr) {
      // Under the collector's lock: no tier event slips between the publish and the listing.
      Listing tiers = tier_events_->TakeAndList([this](KvEventBatch b) { publisher_->Publish(std::move(b)); });
      listing.insert(listing.end(), tiers.begin(), tiers.end());
    }
    return std::pair(publisher_->next_seq(), std::move(listing));
  });
  if (!taken.ok()) return taken.status();
  nlohmann::json tiers = nlohmann::json::object();
  for (const auto& [medium, blocks] : taken->second) {
    nlohmann::json& list = tiers[std::string(MediumName(medium))];
    if (list.is_null()) list = nlohmann::json::array();
    for (const auto& [hash, priority] : blocks) list.push_back({{"hash", hash.ToHex()}, {"priority", priority}});
  }
  return nlohmann::json{{"object", "kv.blocks"},
                        {"next_seq", taken->first},
                        {"block_size", loop_->block_size()},
                        {"tiers", std::move(tiers)}};
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
