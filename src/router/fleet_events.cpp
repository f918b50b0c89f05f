// The router's view of its workers: their event info, one subscriber thread
// per worker (snapshot, live batches, replay and snapshot on gaps) and the
// health thread.
#include <chrono>

#include <fmt/format.h>
#include <zmq.hpp>

#include "kvstack/kv_event_wire.h"
#include "router/fleet_impl.h"

namespace kvstack::fleet {
namespace {

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// An endpoint bound to a wildcard address is reached at the worker's host.
std::string Reachable(const std::string& endpoint, const std::string& host) {
  for (std::string_view any : {"0.0.0.0", "*", "[::]"}) {
    const std::string pattern = fmt::format("tcp://{}:", any);
    if (endpoint.rfind(pattern, 0) == 0) return fmt::format("tcp://{}:{}", host, endpoint.substr(pattern.size()));
  }
  return endpoint;
}

std::unique_ptr<httplib::Client> Client(const Worker& w, int timeout_ms) {
  auto c = std::make_unique<httplib::Client>(w.host, w.port);
  c->set_connection_timeout(std::chrono::milliseconds(timeout_ms));
  c->set_read_timeout(std::chrono::milliseconds(timeout_ms * 10));
  if (!w.key.empty()) c->set_bearer_token_auth(w.key);
  return c;
}

// GET /v1/cache/blocks into the index.
Status TakeSnapshot(FleetRouter::Impl& impl, Worker& w) {
  auto res = Client(w, 1000)->Get("/v1/cache/blocks");
  if (!res || res->status != 200) return Unavailable(fmt::format("worker {}: GET /v1/cache/blocks failed", w.url));
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("next_seq") || !j.contains("tiers")) {
    return DataLoss(fmt::format("worker {}: GET /v1/cache/blocks is not a snapshot", w.url));
  }
  std::vector<BlockIndex::SnapshotBlock> blocks;
  for (const auto& [medium, list] : j["tiers"].items()) {
    const StorageTier tier = MediumTier(medium);
    for (const auto& b : list) {
      const std::string hex = b.value("hash", "");
      if (hex.size() != 32) continue;
      BlockHash h{.lo = std::stoull(hex.substr(16), nullptr, 16), .hi = std::stoull(hex.substr(0, 16), nullptr, 16)};
      blocks.push_back({h, tier, static_cast<Priority>(b.value("priority", int{kDefaultPriority}))});
    }
  }
  {
    std::lock_guard<std::mutex> lock(impl.mu);
    impl.index->ApplySnapshot(w.id, j["next_seq"].get<int64_t>(), blocks);
  }
  w.snapshots.fetch_add(1);
  return Status::Ok();
}

constexpr auto kQuietCheck = std::chrono::milliseconds(500);

// The next sequence number the worker will publish (GET /v1/kv-events).
std::optional<int64_t> PublishedSeq(const Worker& w) {
  auto res = Client(w, 300)->Get("/v1/kv-events");
  if (!res || res->status != 200) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("next_seq")) return std::nullopt;
  return j["next_seq"].get<int64_t>();
}

// Asks the replay socket for every batch from `from` and applies them in
// order. False when the replay could not be had (no socket, no answer).
bool Replay(FleetRouter::Impl& impl, Worker& w, zmq::context_t& ctx, const std::string& endpoint, int64_t from) {
  if (endpoint.empty()) return false;
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::rcvtimeo, 1000);
  try {
    dealer.connect(endpoint);
    dealer.send(zmq::message_t(), zmq::send_flags::sndmore);
    dealer.send(zmq::buffer(SeqFrame(from)), zmq::send_flags::none);
    for (;;) {
      std::vector<zmq::message_t> frames;
      for (;;) {
        zmq::message_t m;
        if (!dealer.recv(m)) return false;  // timed out
        const bool more = m.more();
        frames.push_back(std::move(m));
        if (!more) break;
      }
      if (frames.size() != 3) return false;
      const auto seq = SeqFromFrame(frames[1].to_string_view());
      if (!seq) return false;
      if (*seq == -1) break;
      auto batch = DecodeWireBatch(frames[2].to_string_view());
      if (!batch.ok()) return false;
      std::lock_guard<std::mutex> lock(impl.mu);
      impl.index->ApplyWireBatch(w.id, *seq, *batch);
    }
  } catch (const zmq::error_t&) {
    return false;
  }
  w.replays.fetch_add(1);
  return true;
}

}  // namespace

Result<EventInfo> FetchEventInfo(const Worker& w) {
  auto res = Client(w, 1000)->Get("/v1/kv-events");
  if (!res) return FailedPrecondition(fmt::format("worker {}: not reachable (GET /v1/kv-events)", w.url));
  if (res->status != 200) {
    if (res->status == 401) {
      return FailedPrecondition(fmt::format("worker {}: GET /v1/kv-events answered 401: the worker runs with "
                                            "keys; give the router their --admin-key with --worker-key KEY",
                                            w.url));
    }
    return FailedPrecondition(fmt::format("worker {}: GET /v1/kv-events answered {} (start it with --kv-events "
                                          "ENDPOINT --kv-events-replay ENDPOINT)",
                                          w.url, res->status));
  }
  nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
  if (!j.is_object() || !j.contains("endpoint")) {
    return FailedPrecondition(fmt::format("worker {}: GET /v1/kv-events is not kvstack's answer", w.url));
  }
  EventInfo info;
  info.endpoint = Reachable(j.value("endpoint", ""), w.host);
  info.replay_endpoint = Reachable(j.value("replay_endpoint", ""), w.host);
  info.topic = j.value("topic", "");
  info.block_size = j.value("block_size", 0);
  info.hash_seed = j.value("hash_seed", uint64_t{0});
  info.model_identity = j.value("model_identity", "");
  info.cache_identity = j.value("cache_identity", info.model_identity);
  return info;
}

void RunSubscriber(FleetRouter::Impl& impl, Worker& w) {
  zmq::context_t ctx(1);
  std::optional<zmq::socket_t> sub;
  EventInfo info;
  bool need_snapshot = true;
  uint64_t received = 0;
  auto last_check = std::chrono::steady_clock::now();
  bool foreign_restart = false;
  while (!impl.stopping.load()) {
    if (w.resubscribe.exchange(false) || !sub) {
      {
        std::lock_guard<std::mutex> lock(impl.mu);
        info = w.events;
      }
      sub.emplace(ctx, zmq::socket_type::sub);
      sub->set(zmq::sockopt::linger, 0);
      sub->set(zmq::sockopt::subscribe, w.foreign ? std::string() : info.topic);
      try {
        sub->connect(info.endpoint);
      } catch (const zmq::error_t& e) {
        impl.log(fmt::format("worker {}: cannot subscribe to {}: {}", w.url, info.endpoint, e.what()));
        sub.reset();
        impl.SleepFor(500);
        continue;
      }
      need_snapshot = true;
    }
    if (need_snapshot && w.foreign) {
      // No snapshot to be had: start afresh from the next batch that comes.
      foreign_restart = true;
      need_snapshot = false;
    }
    if (need_snapshot) {
      // After subscribing, so no batch falls between the snapshot and the
      // first live one (any that does shows as a gap and is replayed).
      if (!TakeSnapshot(impl, w).ok()) {
        impl.SleepFor(200);
        continue;
      }
      need_snapshot = false;
    }
    zmq::pollitem_t item{sub->handle(), 0, ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, std::chrono::milliseconds(100));
    if (!(item.revents & ZMQ_POLLIN)) {
      // Quiet: a lost last batch shows no gap until the next one comes, so
      // ask the worker how far it has published.
      if (w.foreign || std::chrono::steady_clock::now() - last_check < kQuietCheck) continue;
      last_check = std::chrono::steady_clock::now();
      const auto published = PublishedSeq(w);
      int64_t expected;
      {
        std::lock_guard<std::mutex> lock(impl.mu);
        expected = impl.index->Stats(w.id).next_seq;
      }
      if (!published || *published <= expected) continue;
      if (!Replay(impl, w, ctx, info.replay_endpoint, expected)) need_snapshot = true;
      {
        std::lock_guard<std::mutex> lock(impl.mu);
        if (impl.index->Stats(w.id).next_seq < *published) need_snapshot = true;
      }
      continue;
    }
    last_check = std::chrono::steady_clock::now();
    std::vector<zmq::message_t> frames;
    for (;;) {
      zmq::message_t m;
      if (!sub->recv(m, zmq::recv_flags::dontwait)) break;
      const bool more = m.more();
      frames.push_back(std::move(m));
      if (!more) break;
    }
    if (frames.size() != 3) continue;
    const int drop = impl.options.drop_every_nth_batch;
    if (drop > 0 && ++received % static_cast<uint64_t>(drop) == 0) continue;
    const auto seq = SeqFromFrame(frames[1].to_string_view());
    auto batch = DecodeWireBatch(frames[2].to_string_view());
    if (!seq || !batch.ok()) {
      impl.log(fmt::format("worker {}: an event message that is not vLLM's schema: {}", w.url,
                           batch.ok() ? "bad sequence frame" : batch.status().message()));
      continue;
    }
    w.event_lag_s.store(std::max(0.0, UnixNow() - batch->ts));
    BatchOutcome out;
    {
      std::lock_guard<std::mutex> lock(impl.mu);
      if (foreign_restart) {
        impl.index->ApplySnapshot(w.id, *seq, {});
        foreign_restart = false;
      }
      // A worker that restarted numbers from 0 again, starting with AllBlocksCleared.
      if (*seq == 0 && !batch->events.empty() && batch->events.front().kind == KvEventKind::kAllCleared &&
          impl.index->Stats(w.id).next_seq > 0) {
        impl.index->ApplySnapshot(w.id, 0, {});
      }
      out = impl.index->ApplyWireBatch(w.id, *seq, *batch);
    }
    if (out.kind != BatchOutcome::Kind::kGap) continue;
    // Fill [expected, seq) from the replay buffer, else from the snapshot.
    if (!Replay(impl, w, ctx, info.replay_endpoint, out.expected)) {
      impl.log(fmt::format("worker {}: events {}..{} missed and not replayed: taking its snapshot", w.url,
                           out.expected, *seq - 1));
      need_snapshot = true;
      continue;
    }
    std::lock_guard<std::mutex> lock(impl.mu);
    if (impl.index->ApplyWireBatch(w.id, *seq, *batch).kind == BatchOutcome::Kind::kGap) need_snapshot = true;
  }
}

void RunHealth(FleetRouter::Impl& impl) {
  while (impl.SleepFor(impl.options.health_interval_ms)) {
    {
      // Predictions the workers never confirmed, and sessions past their TTL.
      std::lock_guard<std::mutex> lock(impl.mu);
      impl.index->ExpirePredictions(SteadyClock::Default().Now());
      impl.router->ForgetExpiredSessions();
    }
    for (auto& wp : impl.workers) {
      Worker& w = *wp;
      auto c = Client(w, 300);
      c->set_read_timeout(std::chrono::milliseconds(500));
      auto res = c->Get("/health");
      const bool up = res && res->status == 200;
      if (up) {
        nlohmann::json j = nlohmann::json::parse(res->body, nullptr, false);
        if (j.is_object()) w.reported_in_flight.store(j.value("requests_in_flight", 0));
      }
      const bool was = w.healthy.load();
      if (up && !was && w.foreign) {
        w.resubscribe.store(true);
      } else if (up && !was) {
        // Back: its event endpoints may have moved (a restart on other ports).
        auto info = FetchEventInfo(w);
        if (!info.ok()) continue;
        {
          std::lock_guard<std::mutex> lock(impl.mu);
          w.events = *info;
        }
        w.resubscribe.store(true);
        impl.log(fmt::format("worker {}: up again", w.url));
      } else if (!up && was) {
        impl.log(fmt::format("worker {}: down (health check failed)", w.url));
      }
      w.healthy.store(up);
    }
  }
}

}  // namespace kvstack::fleet
