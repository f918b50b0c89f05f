// LingeringServer: an httplib::Server whose connections end with a lingering
// close, so a response to a request rejected before its body was read (414,
// a refusal at the edge, a malformed request) reaches the client instead of
// a TCP reset.
//
// Why: closing a socket whose receive buffer still holds unread bytes (or
// that keeps receiving them) makes the kernel send RST, and the client's
// kernel then drops the response it had not yet read. httplib closes at once.
// This server shuts down its write side first (the client sees the response
// and a FIN), then reads and discards what the client still sends, up to
// kLingerBytes or kLingerTime, whichever comes first, and only then closes.
// Model: Apache's lingering_close() and nginx's lingering_close.
//
// Everything else (routing, keep-alive, timeouts) is httplib's: the
// per-connection loop below mirrors httplib 0.11's process_server_socket.
// Thread safety: as httplib::Server.
#pragma once

#include <chrono>
#include <cstddef>

#include <httplib.h>

namespace kvstack::server {

class LingeringServer : public httplib::Server {
 public:
  // Bounds on what a closing connection reads and discards.
  static constexpr size_t kLingerBytes = 64u << 20;
  static constexpr std::chrono::milliseconds kLingerTime{2000};

 private:
  // httplib calls this once per accepted connection, on a pool thread.
  bool process_and_close_socket(socket_t sock) override;
};

// Marks the response being written on this thread as the connection's last:
// the connection then ends with a lingering close instead of waiting for the
// next request. For refusals after which the rest of the request cannot be
// trusted to be a request (a 414's body, a malformed request): httplib itself
// would keep the connection and read those bytes as the next request. Call
// it from a handler or the error handler (they run on the connection's
// thread), and send "Connection: close" with the response.
void CloseAfterThisResponse();

// Shuts down `sock`'s write side, reads and discards until the peer closes or
// a bound is hit, then closes it. `linger` false: discards only what has
// already arrived (the connection ended idle, nothing is in flight).
void LingeringClose(int sock, bool linger, size_t max_bytes, std::chrono::milliseconds max_time);

}  // namespace kvstack::server
