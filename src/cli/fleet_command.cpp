// `kvstack fleet`: a fleet on one machine in one command. Starts N `kvstack
// serve` workers (this same binary) on ports they pick with KV events on,
// waits until each says where it listens, runs `kvstack router` in front of them in this
// process, and on SIGINT/SIGTERM stops the router and then every worker.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "kvstack/fleet_router.h"

namespace kvstack::cli {
namespace {

struct FleetArgs {
  int workers = 4;
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string kv_memory = "256MiB";
  int block_size = 16;
  int threads = 1;
  std::string policy = "kv-aware";
  std::string log_dir;
  std::vector<std::string> serve_args;  // passed to every worker
};

// The URL a worker printed once it listened ("kvstack serve: listening on
// URL (model ...)"), read from its log. Each worker binds port 0 itself, so
// no other process can take its port between a pick and the bind (picking a
// free port here and passing it on raced with anything else binding on the
// machine). Empty if the worker exited, or printed no such line in time.
std::string WaitForListening(pid_t pid, const std::string& log, std::chrono::seconds timeout) {
  const std::string mark = "kvstack serve: listening on ";
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) {
      const size_t at = line.find(mark);
      if (at == std::string::npos) continue;
      const size_t begin = at + mark.size();
      const size_t end = line.find(" (", begin);
      if (end != std::string::npos) return line.substr(begin, end - begin);  // else still being written
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return {};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  std::vector<std::string> copy = args;
  for (std::string& s : copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    ::execv("/proc/self/exe", argv.data());
    std::perror("execv");
    ::_exit(127);
  }
  return pid;
}

void StopAll(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) ::kill(p, SIGTERM);
  for (pid_t p : pids) {
    int status = 0;
    ::waitpid(p, &status, 0);
  }
}

int RunFleet(FleetArgs& a) {
  auto policy = ParseRoutingPolicy(a.policy);
  if (!policy.ok()) return ReportFailure("fleet", policy.status());
  if (a.workers < 1) return ReportFailure("fleet", InvalidArgument("--workers must be at least 1"));
  if (a.log_dir.empty()) {
    a.log_dir = (std::filesystem::temp_directory_path() / fmt::format("kvstack-fleet-{}", ::getpid())).string();
  }
  std::filesystem::create_directories(a.log_dir);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::vector<pid_t> pids;
  std::vector<std::string> urls;
  std::vector<std::string> logs;
  for (int i = 0; i < a.workers; ++i) {
    std::vector<std::string> args = {"kvstack", "serve", "--model", a.model, "--host", "127.0.0.1",
                                     "--port", "0", "--kv-memory", a.kv_memory,
                                     "--block-size", std::to_string(a.block_size), "--threads",
                                     std::to_string(a.threads), "--kv-events", "tcp://127.0.0.1:*",
                                     "--kv-events-replay", "tcp://127.0.0.1:*"};
    args.insert(args.end(), a.serve_args.begin(), a.serve_args.end());
    logs.push_back(fmt::format("{}/worker-{}.log", a.log_dir, i));
    pids.push_back(Spawn(args, logs.back()));
  }
  // Each worker says where it listens once its model is loaded.
  for (int i = 0; i < a.workers; ++i) {
    const std::string url = WaitForListening(pids[static_cast<size_t>(i)], logs[static_cast<size_t>(i)],
                                             std::chrono::seconds(120));
    if (url.empty()) {
      StopAll(pids);
      return ReportFailure("fleet", Unavailable(fmt::format("worker {} did not come up; see {}", i,
                                                            logs[static_cast<size_t>(i)])));
    }
    urls.push_back(url);
    std::printf("kvstack fleet: worker %d on %s (log %s)\n", i, url.c_str(), logs[static_cast<size_t>(i)].c_str());
  }
  FleetRouterOptions o;
  o.workers = urls;
  o.model_path = a.model;
  o.host = a.host;
  o.port = a.port;
  o.routing.policy = *policy;
  // Workers started with keys (passed after --): the router's own calls carry
  // the admin key (its calls are operator views), else the client key.
  for (size_t i = 0; i + 1 < a.serve_args.size(); ++i) {
    if (a.serve_args[i] == "--admin-key") o.worker_key = a.serve_args[i + 1];
    if (a.serve_args[i] == "--api-key" && o.worker_key.empty()) o.worker_key = a.serve_args[i + 1];
  }
  auto router = FleetRouter::Start(o);
  if (!router.ok()) {
    StopAll(pids);
    return ReportFailure("fleet", router.status());
  }
  std::printf("kvstack fleet: listening on %s (%d workers, policy %s; fleet page %s/)\n", (*router)->url().c_str(),
              a.workers, a.policy.c_str(), (*router)->url().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "kvstack fleet: %s: stopping the router, then the workers\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*router)->Shutdown();
  const Status s = (*router)->Wait();
  StopAll(pids);
  return s.ok() ? 0 : ReportFailure("fleet", s);
}

}  // namespace

CommandRunner AddFleetCommand(CLI::App& app) {
  auto a = std::make_shared<FleetArgs>();
  CLI::App* cmd = app.add_subcommand(
      "fleet",
      "Start N `kvstack serve` workers with KV events on, and `kvstack router` in front of them; Ctrl-C stops them "
      "all. For several machines, run `kvstack serve --kv-events tcp://*:5557 --kv-events-replay tcp://*:5558` on "
      "each and `kvstack router --worker http://HOST:PORT ...`.");
  cmd->add_option("-n,--workers", a->workers, "Workers to start.")->capture_default_str();
  cmd->add_option("-m,--model", a->model, "GGUF model every worker serves.")
      ->required()
      ->check(CLI::ExistingFile)
      ->type_name("PATH");
  cmd->add_option("--host", a->host, "The router's address.")->capture_default_str();
  cmd->add_option("--port", a->port, "The router's port; 0 picks a free one.")->capture_default_str();
  cmd->add_option("--kv-memory", a->kv_memory, "Each worker's KV cache size.")->capture_default_str();
  cmd->add_option("--block-size", a->block_size, "Tokens per KV block (every worker).")->capture_default_str();
  cmd->add_option("-t,--threads", a->threads, "Kernel threads per worker.")->capture_default_str();
  cmd->add_option("--policy", a->policy, "kv-aware, round-robin, least-loaded or random.")->capture_default_str();
  cmd->add_option("--log-dir", a->log_dir, "Where the workers' logs go (default: a temporary folder).")
      ->type_name("DIR");
  cmd->add_option("--serve-arg", a->serve_args, "One more argument for every worker's `kvstack serve`; repeat.")
      ->type_name("ARG")
      ->allow_extra_args(false);
  return [a] { return RunFleet(*a); };
}

}  // namespace kvstack::cli
