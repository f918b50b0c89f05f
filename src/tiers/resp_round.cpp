#include "tiers/resp_round.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include <fmt/format.h>

namespace kvstack::tiers_internal {

void RespRound::Clear() {
  small_.clear();
  segments_.clear();
}

void RespRound::Small(std::string_view s) {
  if (s.empty()) return;
  if (segments_.empty() || segments_.back().external != nullptr) {
    segments_.push_back({nullptr, small_.size(), 0});
  }
  small_.append(s);
  segments_.back().size += s.size();
}

void RespRound::BulkHeader(size_t n) { Small(fmt::format("${}\r\n", n)); }

void RespRound::Command(std::initializer_list<std::string_view> args) {
  Small(fmt::format("*{}\r\n", args.size()));
  for (std::string_view a : args) {
    BulkHeader(a.size());
    Small(a);
    Small("\r\n");
  }
}

void RespRound::SetWithTtl(std::string_view key, const std::byte* value, size_t value_size, long long ttl_seconds) {
  Small("*5\r\n$3\r\nSET\r\n");
  BulkHeader(key.size());
  Small(key);
  Small("\r\n");
  BulkHeader(value_size);
  if (value_size > 0) segments_.push_back({value, 0, value_size});
  Small("\r\n$2\r\nEX\r\n");
  const std::string ttl = fmt::format("{}", ttl_seconds);
  BulkHeader(ttl.size());
  Small(ttl);
  Small("\r\n");
}

bool RespRound::Send(int fd, std::string* error) {
  std::vector<iovec> iov;
  iov.reserve(segments_.size());
  for (const Segment& s : segments_) {
    const std::byte* base = s.external != nullptr ? s.external : reinterpret_cast<const std::byte*>(small_.data()) + s.offset;
    iov.push_back({const_cast<std::byte*>(base), s.size});  // sendmsg does not write through it
  }
  size_t i = 0;  // the first iovec not completely sent; segments are never empty
  while (i < iov.size()) {
    msghdr m{};
    m.msg_iov = &iov[i];
    m.msg_iovlen = std::min<size_t>(iov.size() - i, IOV_MAX);
    const ssize_t n = ::sendmsg(fd, &m, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *error = errno == EAGAIN || errno == EWOULDBLOCK ? std::string("send timed out") : std::string(std::strerror(errno));
      return false;
    }
    size_t left = static_cast<size_t>(n);
    while (i < iov.size() && left >= iov[i].iov_len) {
      left -= iov[i].iov_len;
      ++i;
    }
    if (left > 0) {
      iov[i].iov_base = static_cast<std::byte*>(iov[i].iov_base) + left;
      iov[i].iov_len -= left;
    }
  }
  return true;
}

}  // namespace kvstack::tiers_internal
