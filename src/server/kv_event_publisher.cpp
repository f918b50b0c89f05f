// The publisher's thread: encode and send queued batches, keep them for
// replay, answer replay requests (see kv_event_publisher.h).
#include "server/kv_event_publisher.h"

#include <chrono>

#include <fmt/format.h>
#include <zmq.hpp>

#include "kvstack/kv_event_wire.h"

namespace kvstack::server {

struct KvEventPublisher::Sockets {
  zmq::context_t context{1};
  zmq::socket_t pub{context, zmq::socket_type::pub};
  std::optional<zmq::socket_t> replay;
};

namespace {

// Polls the ROUTER this long when nothing is queued: the latency of a batch
// queued while the thread sleeps.
constexpr auto kIdleWait = std::chrono::milliseconds(5);

Status BindError(std::string_view flag, const std::string& endpoint, const zmq::error_t& e) {
  return InvalidArgument(fmt::format("{} {}: cannot bind: {} (use tcp://HOST:PORT, tcp://HOST:* for a free port, or "
                                     "ipc://PATH)",
                                     flag, endpoint, e.what()));
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Result<std::unique_ptr<KvEventPublisher>> KvEventPublisher::Start(const KvEventPublisherOptions& options, Log log) {
  auto sockets = std::make_unique<Sockets>();
  try {
    sockets->pub.set(zmq::sockopt::sndhwm, 100000);
    sockets->pub.set(zmq::sockopt::linger, 500);
    sockets->pub.bind(options.endpoint);
  } catch (const zmq::error_t& e) {
    return BindError("--kv-events", options.endpoint, e);
  }
  if (!options.replay_endpoint.empty()) {
    try {
      sockets->replay.emplace(sockets->context, zmq::socket_type::router);
      sockets->replay->set(zmq::sockopt::linger, 0);
      sockets->replay->bind(options.replay_endpoint);
    } catch (const zmq::error_t& e) {
      return BindError("--kv-events-replay", options.replay_endpoint, e);
    }
  }
  return std::unique_ptr<KvEventPublisher>(new KvEventPublisher(options, std::move(sockets), std::move(log)));
}

KvEventPublisher::KvEventPublisher(KvEventPublisherOptions options, std::unique_ptr<Sockets> sockets, Log log)
    : options_(std::move(options)), sockets_(std::move(sockets)), log_(std::move(log)) {
  endpoint_ = sockets_->pub.get(zmq::sockopt::last_endpoint);
  if (sockets_->replay) replay_endpoint_ = sockets_->replay->get(zmq::sockopt::last_endpoint);
  thread_ = std::thread([this] { Run(); });
}

KvEventPublisher::~KvEventPublisher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

int64_t KvEventPublisher::Publish(KvEventBatch batch) {
  if (batch.events.empty()) return -1;
  int64_t seq;
  {
    std::lock_guard<std::mutex> lock(mu_);
    seq = next_seq_++;
    queue_.push_back(Queued{seq, UnixNow(), std::move(batch)});
  }
  cv_.notify_one();
  return seq;
}

int64_t KvEventPublisher::next_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_seq_;
}

KvEventPublisherStats KvEventPublisher::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void KvEventPublisher::Send(Queued& q) {
  std::string payload = EncodeKvEventBatch(q.batch, options_.block_size, q.ts);
  const std::string seq = SeqFrame(q.seq);
  try {
    sockets_->pub.send(zmq::buffer(options_.topic), zmq::send_flags::sndmore);
    sockets_->pub.send(zmq::buffer(seq), zmq::send_flags::sndmore);
    sockets_->pub.send(zmq::buffer(payload), zmq::send_flags::none);
  } catch (const zmq::error_t& e) {
    // A PUB socket drops rather than blocks; an error here is the context
    // going away. Subscribers see the gap and replay.
    log_(fmt::format("kv events: batch {} not sent: {}", q.seq, e.what()));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.batches;
    stats_.events += q.batch.events.size();
  }
  if (options_.replay_batches == 0) return;
  sent_.emplace_back(q.seq, std::move(payload));
  while (sent_.size() > options_.replay_batches) sent_.pop_front();
}

// Request: [identity, "", start_seq]. Reply: one [identity, "", seq, payload]
// per kept batch with seq >= start_seq, then [identity, "", -1, ""].
void KvEventPublisher::ServeReplay() {
  zmq::socket_t& router = *sockets_->replay;
  for (;;) {
    std::vector<zmq::message_t> frames;
    for (;;) {
      zmq::message_t m;
      if (!router.recv(m, zmq::recv_flags::dontwait)) break;
      const bool more = m.more();
      frames.push_back(std::move(m));
      if (!more) break;
    }
    if (frames.empty()) return;
    if (frames.size() != 3) continue;  // not a replay request; ignore it
    const auto start = SeqFromFrame(frames[2].to_string_view());
    if (!start) continue;
    const std::string identity = frames[0].to_string();
    uint64_t replayed = 0;
    try {
      for (const auto& [seq, payload] : sent_) {
        if (seq < *start) continue;
        router.send(zmq::buffer(identity), zmq::send_flags::sndmore);
        router.send(zmq::message_t(), zmq::send_flags::sndmore);
        router.send(zmq::buffer(SeqFrame(seq)), zmq::send_flags::sndmore);
        router.send(zmq::buffer(payload), zmq::send_flags::none);
        ++replayed;
      }
      router.send(zmq::buffer(identity), zmq::send_flags::sndmore);
      router.send(zmq::message_t(), zmq::send_flags::sndmore);
      router.send(zmq::buffer(SeqFrame(-1)), zmq::send_flags::sndmore);
      router.send(zmq::message_t(), zmq::send_flags::none);
    } catch (const zmq::error_t& e) {
      log_(fmt::format("kv events: replay from {} failed: {}", *start, e.what()));
    }
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.replay_requests;
    stats_.replayed_batches += replayed;
  }
}

void KvEventPublisher::Run() {
  for (;;) {
    std::deque<Queued> work;
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (queue_.empty() && !stopping_ && !sockets_->replay) {
        cv_.wait_for(lock, kIdleWait * 20, [&] { return !queue_.empty() || stopping_; });
      }
      work.swap(queue_);
      stopping = stopping_;
    }
    for (Queued& q : work) Send(q);
    if (sockets_->replay) {
      if (work.empty() && !stopping) {
        zmq::pollitem_t item{sockets_->replay->handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, kIdleWait);
      }
      ServeReplay();
    }
    if (stopping && work.empty()) return;
  }
}

}  // namespace kvstack::server
