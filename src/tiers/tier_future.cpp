#include <algorithm>

#include "tiers/op_state.h"

namespace kvstack {

TierFuture::TierFuture(std::shared_ptr<tiers_internal::OpState> state) : state_(std::move(state)) {}

TierFuture& TierFuture::operator=(TierFuture&& other) noexcept {
  if (this != &other) {
    if (state_) state_->Wait();  // the old batch may still write its destinations
    state_ = std::move(other.state_);
  }
  return *this;
}

TierFuture::~TierFuture() {
  if (state_) state_->Wait();
}

bool TierFuture::IsReady() const { return !state_ || state_->IsReady(); }

void TierFuture::Wait() const {
  if (state_) state_->Wait();
}

size_t TierFuture::size() const { return state_ ? state_->ok.size() : 0; }

bool TierFuture::ok(size_t i) const { return state_->ok[i] != 0; }

size_t TierFuture::num_ok() const {
  if (!state_) return 0;
  return static_cast<size_t>(std::count(state_->ok.begin(), state_->ok.end(), uint8_t{1}));
}

}  // namespace kvstack
