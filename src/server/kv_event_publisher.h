// KvEventPublisher: the server's KV events out of the process, over ZeroMQ in
// vLLM's protocol (kv_event_wire.h): a PUB socket sends each batch as
// [topic, seq, payload]; an optional ROUTER socket resends buffered batches
// from a requested sequence number.
//
// Publish() only queues (a move under a lock), so the engine thread that
// drains the cache's events never encodes or touches a socket. The
// publisher's own thread numbers nothing: sequence numbers are given in
// Publish() order, under the lock, so a snapshot taken with a drain
// (KvEventFeed) can name the last batch it covers. The thread encodes, sends,
// keeps the last `replay_batches` payloads and answers replay requests.
//
// Thread safety: Publish(), next_seq() and Stats() from any thread. Both
// sockets belong to the publisher's thread once Start() returns.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kvstack/cache_events.h"
#include "kvstack/status.h"
#include "server/log.h"

namespace kvstack::server {

struct KvEventPublisherOptions {
  std::string endpoint;         // PUB socket, bound: "tcp://*:5557", "tcp://127.0.0.1:*", "ipc://..."
  std::string replay_endpoint;  // ROUTER socket, bound; empty: no replay
  std::string topic = "kv-events";
  size_t replay_batches = 10000;  // batches kept for replay
  int32_t block_size = 16;
};

struct KvEventPublisherStats {
  uint64_t batches = 0;          // published
  uint64_t events = 0;
  uint64_t replay_requests = 0;
  uint64_t replayed_batches = 0;
};

class KvEventPublisher {
 public:
  // Binds both sockets. InvalidArgument (naming the flag) when an endpoint
  // cannot be bound: a bad address, or a port in use.
  static Result<std::unique_ptr<KvEventPublisher>> Start(const KvEventPublisherOptions& options, Log log);
  // Sends what is queued, then closes the sockets.
  ~KvEventPublisher();
  KvEventPublisher(const KvEventPublisher&) = delete;
  KvEventPublisher& operator=(const KvEventPublisher&) = delete;

  // Queues a batch and returns its sequence number; an empty batch is not
  // sent and returns -1.
  int64_t Publish(KvEventBatch batch);
  // The sequence number the next batch will get (batches below it are
  // published or queued).
  int64_t next_seq() const;

  // As bound, wildcard ports resolved ("tcp://127.0.0.1:41234").
  const std::string& endpoint() const { return endpoint_; }
  const std::string& replay_endpoint() const { return replay_endpoint_; }
  const std::string& topic() const { return options_.topic; }
  KvEventPublisherStats Stats() const;

 private:
  struct Sockets;
  struct Queued {
    int64_t seq;
    double ts;
    KvEventBatch batch;
  };
  KvEventPublisher(KvEventPublisherOptions options, std::unique_ptr<Sockets> sockets, Log log);
  void Run();
  void Send(Queued& q);
  void ServeReplay();

  const KvEventPublisherOptions options_;
  std::unique_ptr<Sockets> sockets_;  // the thread's
  Log log_;
  std::string endpoint_;
  std::string replay_endpoint_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Queued> queue_;  // GUARDED_BY(mu_)
  int64_t next_seq_ = 0;      // GUARDED_BY(mu_)
  bool stopping_ = false;     // GUARDED_BY(mu_)
  KvEventPublisherStats stats_;  // GUARDED_BY(mu_)

  std::deque<std::pair<int64_t, std::string>> sent_;  // the thread's: replay buffer
  std::thread thread_;  // last
};

}  // namespace kvstack::server
