#include "server/request_channel.h"

#include <utility>

namespace kvstack::server {

void RequestChannel::Accept(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    id_ = id;
  }
  cv_.notify_all();
}

void RequestChannel::Reject(Status status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    rejected_ = std::move(status);
  }
  cv_.notify_all();
}

void RequestChannel::Push(GenerationEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

Status RequestChannel::WaitAccepted() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return id_.has_value() || rejected_.has_value(); });
  return rejected_ ? *rejected_ : Status::Ok();
}

bool RequestChannel::Take(std::vector<GenerationEvent>* out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (final_taken_ || rejected_) return false;
  if (events_.empty()) cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  while (!events_.empty()) {
    if (events_.front().request_finished) final_taken_ = true;
    out->push_back(std::move(events_.front()));
    events_.pop_front();
  }
  return !final_taken_;
}

std::optional<RequestId> RequestChannel::id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return id_;
}

}  // namespace kvstack::server
