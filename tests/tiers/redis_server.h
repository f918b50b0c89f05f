// RedisServer: a real redis-server for a test, on 127.0.0.1 at a port picked
// at run time, stopped (SIGKILL if it must) when the object goes away.
#pragma once

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace kvstack::tier_test {

inline constexpr const char* kRedisServerBinary = "/usr/bin/redis-server";

inline bool RedisServerInstalled() { return ::access(kRedisServerBinary, X_OK) == 0; }

// A port nobody listens on right now (bind port 0, read it, close). Another
// process may take it before the server does; Start() then retries.
inline int PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

class RedisServer {
 public:
  RedisServer() = default;
  // `extra_args` follow the defaults on redis-server's command line (later
  // options win), e.g. cluster mode and a data directory.
  explicit RedisServer(std::vector<std::string> extra_args) : extra_args_(std::move(extra_args)) {}
  ~RedisServer() { Stop(); }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts on a fresh port (up to 5 tries). False if it never answered.
  bool Start() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = PickFreePort();
      if (port_ > 0 && StartOnPort()) return true;
    }
    return false;
  }
  // Starts again on the same port (after Kill() or Stop()).
  bool Restart() {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (StartOnPort()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  void Kill() { Signal(SIGKILL, true); }
  void Stop() { Signal(SIGTERM, true); }
  void Pause() { Signal(SIGSTOP, false); }
  void Resume() { Signal(SIGCONT, false); }
  int port() const { return port_; }

  // A direct connection for checks (caller frees with redisFree).
  redisContext* Connect() const {
    timeval tv{1, 0};
    return redisConnectWithTimeout("127.0.0.1", port_, tv);
  }

 private:
  bool StartOnPort() {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args = {kRedisServerBinary, "--port", port, "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning",
                                     "--dir", "/tmp"};
    args.insert(args.end(), extra_args_.begin(), extra_args_.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execv(kRedisServerBinary, argv.data());
      ::_exit(127);
    }
    if (pid_ < 0) return false;
    // Ready when it answers PING (within ~5 s); gone if it exited (port taken).
    for (int i = 0; i < 250; ++i) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (Ping()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    Signal(SIGKILL, true);
    return false;
  }
  bool Ping() const {
    timeval tv{0, 200000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    bool ok = false;
    if (c != nullptr && c->err == 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
      if (r != nullptr) freeReplyObject(r);
    }
    if (c != nullptr) redisFree(c);
    return ok;
  }
  void Signal(int sig, bool reap) {
    if (pid_ <= 0) return;
    if (reap) ::kill(pid_, SIGCONT);  // a paused server must run to exit
    ::kill(pid_, sig);
    if (reap) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  std::vector<std::string> extra_args_;
  int port_ = -1;
  pid_t pid_ = -1;
};

}  // namespace kvstack::tier_test
