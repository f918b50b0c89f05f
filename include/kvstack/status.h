// Status and Result<T>: kvstack's errors are values.
//
// Every fallible call returns a Status (success or a code plus a message) or a
// Result<T> (a value or a non-OK Status). Both are [[nodiscard]]: an ignored
// error is a compile-time warning. Exceptions never cross a component boundary.
//
// Expected outcomes are codes too, not failures of the program: "not enough
// free blocks" is kResourceExhausted, which a scheduler answers by preempting or
// queueing. Messages name the thing that was wrong and the values involved
// ("block_size 24: must be a power of two from 1 to 512").
//
// Thread safety: Status and Result are values; distinct objects may be used from
// distinct threads freely.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kvstack {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller passed something malformed or out of range
  kNotFound,            // the named thing does not exist
  kAlreadyExists,       // the named thing exists and may not be created twice
  kResourceExhausted,   // not enough blocks, pins over their cap, queue full
  kFailedPrecondition,  // the object is not in a state that allows the call
  kOutOfRange,          // an offset or index past the end of its container
  kDataLoss,            // corrupt or truncated data (a file, a block checksum)
  kUnavailable,         // a dependency is down; retrying later may succeed
  kInternal,            // a bug in kvstack
};

std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: block_size 24: must be a power of two" (or "OK").
  std::string ToString() const;

  // Explicitly discards a status the caller has decided not to act on.
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
inline Status ResourceExhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status DataLoss(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// A value of type T, or the Status that explains why there is none.
// REQUIRES: value() only when ok(); status() may always be called.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    assert(!status_.ok() && "Result constructed from an OK status without a value");
    if (status_.ok()) status_ = Internal("Result constructed from OK status without a value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace kvstack

// Returns early from the enclosing function when `expr` is not OK.
#define KVSTACK_RETURN_IF_ERROR(expr)                 \
  do {                                                \
    ::kvstack::Status kvstack_status_ = (expr);       \
    if (!kvstack_status_.ok()) return kvstack_status_; \
  } while (0)
