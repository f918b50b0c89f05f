// Requests the server refuses, sent over fresh connections as a client sends
// them (the whole body, then wait for the answer): every refusal must reach
// the client as its 4xx response, never as a TCP reset. A server that closes
// a connection with request bytes still unread (or still arriving) resets it,
// and the client loses the response; see src/server/lingering_server.h.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>

#include "common/requirement.h"
#include "server/serve_process.h"

namespace kvstack::testing {
namespace {

constexpr int kTimes = 200;
constexpr char kMaxBody[] = "262144";

struct Exchange {
  int status = -1;       // parsed from the status line; -1: none arrived
  std::string body;      // the response body (Content-Length bytes)
  std::string failure;   // what went wrong, empty when the response arrived whole
};

// Sends `request` on a fresh connection to 127.0.0.1:port while reading, as a
// client does, and returns the response once its Content-Length body is in.
// A reset (or any error) before the whole request is sent or the whole
// response is read is a failure: a real client reports it as a reset.
Exchange Send(int port, const std::string& request) {
  Exchange ex;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {.failure = std::string("socket: ") + std::strerror(errno)};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ex.failure = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return ex;
  }
  // A modest send buffer, as over a real network: a large body is still
  // being sent when the server answers, so an early close resets it.
  const int sndbuf = 64 * 1024;
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t sent = 0;
  std::string in;
  size_t need = std::string::npos;  // header bytes + Content-Length, once known
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  // Until the whole request is sent (a client sends its body to the end,
  // whatever arrives meanwhile) and the whole response is in.
  while (ex.failure.empty()) {
    if (need != std::string::npos && in.size() >= need && sent == request.size()) break;
    if (std::chrono::steady_clock::now() > deadline) {
      ex.failure = "timed out";
      break;
    }
    const bool reading = need == std::string::npos || in.size() < need;
    const short events = static_cast<short>((reading ? POLLIN : 0) | (sent < request.size() ? POLLOUT : 0));
    pollfd p{.fd = fd, .events = events, .revents = 0};
    if (::poll(&p, 1, 100) < 0 && errno != EINTR) {
      ex.failure = std::string("poll: ") + std::strerror(errno);
      break;
    }
    if (sent < request.size() && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        ex.failure = "send after " + std::to_string(sent) + " of " + std::to_string(request.size()) +
                     " bytes: " + std::strerror(errno);
        break;
      }
    }
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) && reading) {
      char buf[65536];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        ex.failure = std::string("recv: ") + std::strerror(errno) + " after " + std::to_string(in.size()) +
                     " response bytes";
        break;
      }
      if (n == 0 && (need == std::string::npos || in.size() < need)) {
        ex.failure = "the server closed after " + std::to_string(in.size()) + " response bytes";
        break;
      }
      if (n > 0) in.append(buf, static_cast<size_t>(n));
      const size_t head = in.find("\r\n\r\n");
      if (need == std::string::npos && head != std::string::npos) {
        const std::string headers = in.substr(0, head);
        const size_t cl = headers.find("Content-Length: ");
        need = head + 4 + (cl == std::string::npos ? 0 : std::stoul(headers.substr(cl + 16)));
      }
    }
  }
  ::close(fd);
  if (in.rfind("HTTP/1.1 ", 0) == 0) ex.status = std::stoi(in.substr(9, 3));
  if (need != std::string::npos && in.size() >= need) ex.body = in.substr(in.find("\r\n\r\n") + 4);
  if (ex.failure.empty() && sent < request.size()) ex.failure = "the request was not sent whole";
  return ex;
}

std::string Post(const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

class ServeResetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (Stories260KPath().empty()) return;
    server_ = new ServeProcess({"--model", Stories260KPath(), "--threads", "1", "--max-body-bytes", kMaxBody});
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    if (Stories260KPath().empty()) KVSTACK_SKIP_MISSING() << "needs ../shared/models/stories260K.gguf";
    ASSERT_TRUE(server_->ok()) << server_->error();
  }
  // Sends `request` kTimes over fresh connections; each must get `status`
  // with an OpenAI error object whose message contains `says`.
  void ExpectEveryResponse(const std::string& request, int status, const std::string& says) {
    int arrived = 0;
    std::string first_failure;
    for (int i = 0; i < kTimes; ++i) {
      const Exchange ex = Send(server_->port(), request);
      const bool ok = ex.failure.empty() && ex.status == status && ex.body.find("\"error\"") != std::string::npos &&
                      ex.body.find(says) != std::string::npos;
      if (ok) {
        ++arrived;
      } else if (first_failure.empty()) {
        first_failure = "try " + std::to_string(i) + ": status " + std::to_string(ex.status) + ", " +
                        (ex.failure.empty() ? "body " + ex.body.substr(0, 300) : ex.failure);
      }
    }
    EXPECT_EQ(arrived, kTimes) << "responses that arrived whole; the first that did not: " << first_failure;
  }
  static ServeProcess* server_;
};
ServeProcess* ServeResetTest::server_ = nullptr;

// A body over --max-body-bytes: refused from its Content-Length, unread.
TEST_F(ServeResetTest, BodyTooLarge413AlwaysArrives) {
  const std::string body = "{\"prompt\": \"" + std::string(1 << 20, 'a') + "\"}";
  ExpectEveryResponse(Post("/v1/completions", body), 413, "request body too large");
}

// A 120,000-character prompt: far past stories260K's context.
TEST_F(ServeResetTest, HugePrompt400AlwaysArrives) {
  std::string prompt;
  while (prompt.size() < 120000) prompt += "Once upon a time ";
  const std::string body = "{\"prompt\": \"" + prompt.substr(0, 120000) + "\", \"max_tokens\": 4}";
  ExpectEveryResponse(Post("/v1/completions", body), 400, "context");
}

// JSON nested 50,000 deep.
TEST_F(ServeResetTest, DeepNesting400AlwaysArrives) {
  const std::string body = "{\"prompt\": " + std::string(50000, '[') + std::string(50000, ']') + "}";
  ExpectEveryResponse(Post("/v1/completions", body), 400, "message");
}

// A request line over httplib's 8 KiB limit, with a body behind it that the
// server never reads.
TEST_F(ServeResetTest, UriTooLong414AlwaysArrives) {
  const std::string body = "{\"prompt\": \"" + std::string(1 << 20, 'a') + "\"}";
  ExpectEveryResponse(Post("/v1/completions?q=" + std::string(9000, 'a'), body), 414, "HTTP 414");
}

}  // namespace
}  // namespace kvstack::testing
