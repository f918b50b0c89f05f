// RespRound: one pipelined round of Redis commands in RESP, sent with
// sendmsg() straight from where the caller's bytes already are. Short
// arguments (command names, keys, the TTL) are copied into one small buffer;
// large values are referenced, not copied, so a SET of a staged 256 KiB block
// costs the kernel's copy only (hiredis's redisAppendCommand would copy it
// twice more into its output buffer, and again each time that buffer grows).
//
// Used by the Redis tier's workers, each with its own round.
// Thread safety: none; one thread per round.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace kvstack::tiers_internal {

class RespRound {
 public:
  // Forgets the commands gathered so far (the small buffer's memory stays).
  void Clear();
  // Appends a command whose arguments are all copied.
  void Command(std::initializer_list<std::string_view> args);
  // Appends `SET key value EX ttl`. REQUIRES: `value` stays valid and
  // unchanged until Send() returned or Clear() was called.
  void SetWithTtl(std::string_view key, const std::byte* value, size_t value_size, long long ttl_seconds);
  bool empty() const { return segments_.empty(); }

  // Writes every gathered byte to the blocking socket `fd` (partial writes
  // resumed, EINTR retried, no SIGPIPE). False on an error or a send timeout
  // (the socket's SO_SNDTIMEO), with `*error` saying which; how much of the
  // round was written is then unknown and the connection must be dropped.
  bool Send(int fd, std::string* error);

 private:
  struct Segment {
    const std::byte* external = nullptr;  // nullptr: bytes [offset, offset+size) of small_
    size_t offset = 0;
    size_t size = 0;
  };
  void Small(std::string_view s);
  void BulkHeader(size_t n);

  std::string small_;
  std::vector<Segment> segments_;
};

}  // namespace kvstack::tiers_internal
