// `kvstack router`: a KV-aware front for a fleet of `kvstack serve
// --kv-events` workers (see kvstack/fleet_router.h). This file is the edge:
// flags, signals, the listening line.
#include <pthread.h>
#include <signal.h>

#include <csignal>
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "kvstack/fleet_router.h"

namespace kvstack::cli {
namespace {

struct RouterArgs {
  FleetRouterOptions options;
  std::string policy = "kv-aware";
  double prediction_ttl_s = 2;
  double affinity_ttl_s = 300;
};

int RunRouter(RouterArgs& a) {
  auto policy = ParseRoutingPolicy(a.policy);
  if (!policy.ok()) return ReportFailure("router", policy.status());
  FleetRouterOptions& o = a.options;
  o.routing.policy = *policy;
  o.routing.prediction_ttl = static_cast<Micros>(a.prediction_ttl_s * 1e6);
  o.routing.affinity_ttl = static_cast<Micros>(a.affinity_ttl_s * 1e6);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto router = FleetRouter::Start(o);
  if (!router.ok()) return ReportFailure("router", router.status());
  std::printf("kvstack router: listening on %s (%zu workers, policy %s)\n", (*router)->url().c_str(),
              o.workers.size(), a.policy.c_str());
  std::printf("fleet: %s/ and %s/v1/fleet\n", (*router)->url().c_str(), (*router)->url().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "kvstack router: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*router)->Shutdown();
  const Status s = (*router)->Wait();
  return s.ok() ? 0 : ReportFailure("router", s);
}

}  // namespace

CommandRunner AddRouterCommand(CLI::App& app) {
  auto a = std::make_shared<RouterArgs>();
  FleetRouterOptions& o = a->options;
  CLI::App* cmd = app.add_subcommand(
      "router",
      "Route OpenAI-compatible requests over a fleet of `kvstack serve --kv-events` workers, each to the worker whose "
      "KV cache already holds the most of its prefix (learned from the workers' KV events).");
  cmd->add_option("-w,--worker", o.workers,
                  "A worker's URL, http://HOST:PORT; repeat for each. It must run with --kv-events (and "
                  "--kv-events-replay); the router asks it where its events are.")
      ->required()
      ->type_name("URL");
  cmd->add_option("--foreign-worker", o.foreign_workers,
                  "A worker of another engine (vLLM, SGLang) publishing vLLM's KV events: "
                  "http://HOST:PORT=tcp://EVENTS[,tcp://REPLAY]. Its blocks are keyed by their token ids; they match "
                  "requests without a cache_salt.")
      ->type_name("URL=ENDPOINT");
  cmd->add_option("-m,--model", o.model_path,
                  "The workers' GGUF: the router tokenizes and keys each request as the workers will, and refuses "
                  "workers that serve another model.")
      ->required()
      ->check(CLI::ExistingFile)
      ->type_name("PATH");
  cmd->add_option("--worker-key", o.worker_key,
                  "The workers' --admin-key, for workers started with keys: sent on the router's own calls to "
                  "them (event info and snapshots are operator views; health); clients' requests pass their own "
                  "Authorization through.");
  cmd->add_option("--host", o.host, "Address to listen on.")->capture_default_str();
  cmd->add_option("--port", o.port, "TCP port; 0 picks a free one (printed on start).")->capture_default_str();
  cmd->add_option("--policy", a->policy, "kv-aware, round-robin, least-loaded or random.")->capture_default_str();
  cmd->add_option("--weight-device", o.routing.tier_weight[0], "Credit of a block held in a worker's KV pool.")
      ->capture_default_str();
  cmd->add_option("--weight-host", o.routing.tier_weight[1], "Credit of a block in its host RAM tier.")
      ->capture_default_str();
  cmd->add_option("--weight-disk", o.routing.tier_weight[2], "Credit of a block in its disk tier.")
      ->capture_default_str();
  cmd->add_option("--weight-remote", o.routing.tier_weight[3], "Credit of a block in its Redis tier.")
      ->capture_default_str();
  cmd->add_option("--oneoff-weight", o.routing.oneoff_weight,
                  "Credit of a one-off block (retention priority below 50) relative to a durable one.")
      ->capture_default_str();
  cmd->add_option("--queue-weight", o.routing.queue_weight,
                  "Cost of each prefill block queued on a worker, against a block it would have to compute.")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--running-weight", o.routing.running_weight,
                  "Cost of each request in flight on a worker, in blocks it would have to compute.")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", o.routing.temperature,
                  "0: the lowest cost wins; above 0: pick by softmax over -cost / temperature.")
      ->capture_default_str();
  cmd->add_option("--prediction-ttl", a->prediction_ttl_s,
                  "Seconds a routed request's blocks count as held by its worker before its events confirm them.")
      ->capture_default_str();
  cmd->add_option("--affinity-ttl", a->affinity_ttl_s,
                  "Seconds a session_id sticks to its worker (kv-aware; the other policies ignore session_id).")
      ->capture_default_str();
  cmd->add_option("--overload", o.routing.overload_in_flight,
                  "Requests in flight at which a worker no longer gets its sessions' requests.")
      ->capture_default_str();
  cmd->add_option("--fault-drop-events", o.drop_every_nth_batch,
                  "Testing: drop every Nth event batch of each worker on arrival, to exercise gap recovery.")
      ->group("Testing");
  return [a] { return RunRouter(*a); };
}

}  // namespace kvstack::cli
