#include "server/lingering_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace kvstack::server {
namespace {

using Clock = std::chrono::steady_clock;

// Set by CloseAfterThisResponse() on the connection's thread, read and reset
// by that connection's loop after each request.
thread_local bool close_after_response = false;

// >0 ready, 0 timed out, <0 error.
int PollOne(int sock, short events, int timeout_ms) {
  pollfd p{.fd = sock, .events = events, .revents = 0};
  for (;;) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r > 0 && (p.revents & POLLNVAL)) return -1;
    return r;
  }
}

int TimeoutMs(time_t sec, time_t usec) { return static_cast<int>(sec * 1000 + usec / 1000); }

void IpAndPort(const sockaddr_storage& addr, std::string& ip, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
    port = ntohs(a->sin6_port);
  }
  ip = buf;
}

// A plain socket stream with httplib's read and write timeouts.
class SocketStream final : public httplib::Stream {
 public:
  SocketStream(int sock, int read_timeout_ms, int write_timeout_ms)
      : sock_(sock), read_timeout_ms_(read_timeout_ms), write_timeout_ms_(write_timeout_ms) {}

  bool is_readable() const override { return PollOne(sock_, POLLIN, read_timeout_ms_) > 0; }

  // Writable and not closed by the peer (a peek that reads 0 is its FIN): the
  // server's handlers ask this to notice a client that went away.
  bool is_writable() const override {
    if (PollOne(sock_, POLLOUT, write_timeout_ms_) <= 0) return false;
    char c;
    const ssize_t n = ::recv(sock_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
  }

  ssize_t read(char* ptr, size_t size) override {
    if (PollOne(sock_, POLLIN, read_timeout_ms_) <= 0) return -1;
    for (;;) {
      const ssize_t n = ::recv(sock_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  // As httplib's: refuses once the peer has closed (its FIN is readable), so
  // a client that hung up is noticed at the next write, not the one after.
  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    for (;;) {
      const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getpeername(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) IpAndPort(addr, ip, port);
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    if (::getsockname(sock_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) IpAndPort(addr, ip, port);
  }

  socket_t socket() const override { return sock_; }

 private:
  const int sock_;
  const int read_timeout_ms_;
  const int write_timeout_ms_;
};

// httplib's keep_alive(): waits up to `timeout_s` for the next request's
// first byte, polling in short steps so a stopped server is noticed.
bool NextRequestArrives(const std::atomic<socket_t>& listener, int sock, time_t timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (listener != INVALID_SOCKET) {
    const int r = PollOne(sock, POLLIN, 10);
    if (r < 0) return false;
    if (r > 0) return true;
    if (Clock::now() > deadline) return false;
  }
  return false;
}

}  // namespace

void CloseAfterThisResponse() { close_after_response = true; }

void LingeringClose(int sock, bool linger, size_t max_bytes, std::chrono::milliseconds max_time) {
  ::shutdown(sock, SHUT_WR);  // the response is complete: FIN after it
  const auto deadline = Clock::now() + max_time;
  char buf[16384];
  size_t discarded = 0;
  while (discarded < max_bytes) {
    int wait_ms = 0;
    if (linger) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) break;
      wait_ms = static_cast<int>(left);
    }
    if (PollOne(sock, POLLIN, wait_ms) <= 0) break;
    const ssize_t n = ::recv(sock, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the peer's FIN (0) or an error: nothing more will come
    discarded += static_cast<size_t>(n);
  }
  ::close(sock);
}

bool LingeringServer::process_and_close_socket(socket_t sock) {
  SocketStream strm(sock, TimeoutMs(read_timeout_sec_, read_timeout_usec_),
                    TimeoutMs(write_timeout_sec_, write_timeout_usec_));
  bool ret = false;
  bool after_request = false;  // the loop ended right after a request, not idle
  for (size_t count = keep_alive_max_count_; count > 0; --count) {
    if (!NextRequestArrives(svr_sock_, sock, keep_alive_timeout_sec_)) break;
    bool connection_closed = false;
    close_after_response = false;
    ret = process_request(strm, count == 1, connection_closed, nullptr);
    // count 1: this response said "Connection: close".
    if (!ret || connection_closed || close_after_response || count == 1) {
      close_after_response = false;
      after_request = true;
      break;
    }
  }
  LingeringClose(sock, after_request, kLingerBytes, kLingerTime);
  return ret;
}

}  // namespace kvstack::server
