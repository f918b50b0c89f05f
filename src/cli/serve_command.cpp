// `kvstack serve`: the OpenAI-compatible HTTP server over the CPU engine and
// its paged KV cache. This file is the edge: it reads the command line and
// the environment, handles SIGTERM/SIGINT, and prints where to connect.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <tuple>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/serve_access.h"
#include "kvstack/sizing.h"
#include "kvstack/server.h"

namespace kvstack::cli {
namespace {

struct ServeArgs {
  ServerOptions options;
  std::string kv_memory = "256MiB";
  std::string host_tier = "0";
  std::string disk_tier_size = "4GiB";
  AccessFiles access;
  KvTypeArgs kv_type;
  std::string tier_kv_type;  // empty: the device's
};

constexpr char kFooter[] = R"(
Endpoints (OpenAI-compatible, JSON):
  POST   /v1/completions        prompt (text or token ids) -> text; "stream": true for SSE
  POST   /v1/chat/completions   messages -> message; the model's chat template
  GET    /v1/models             the served model
  GET    /health                liveness and requests in flight (no key needed)
  POST   /v1/cache/pin          compute a prefix and pin its KV blocks: {"prompt"|"messages"|
                                "token_ids", "cache_salt", "ttl_s"} -> {"id": "pin-N", ...}
  GET    /v1/cache/pin          the pins of one tenant: its salt in the header 'X-Cache-Salt'
                                (none: the pins made without a salt; the admin key: all)
  DELETE /v1/cache/pin/{id}     release a pin: its tenant's salt in {"cache_salt"} or
                                'X-Cache-Salt' (another tenant's pin answers 404)
  POST   /v1/cache/prefetch     {"session_id", "cache_salt"}: with tiers, bring a conversation's
                                last context up into host RAM before its next turn (a session
                                is its tenant's: the salt its requests used)
  GET    /v1/cache/stats        KV cache blocks, prefix hits (overall, per tenant, per
                                priority class), evictions by priority, pins [operator]
  GET    /v1/memory             memory split (weights, KV in use/cached/pinned/free,
                                workspace), prompt-length and TTFT-by-hit percentiles,
                                hit rates, hottest prefixes, evictions by priority [operator]
  GET    /metrics               Prometheus text [operator; --public-metrics opens it]
  GET    /v1/kv-events          with --kv-events: where the events are, block size, model
                                identity [operator]
  GET    /v1/cache/blocks       with --kv-events: every block key held, per tier, and the
                                event sequence number the snapshot covers [operator]
  GET    /                      live memory dashboard (with keys set: /#key=ADMIN_KEY)
[operator]: every tenant's figures, tenants shown by label (never by salt); once any
key is set these want --admin-key as the bearer token (401 otherwise).

KV controls in completion requests, besides OpenAI's fields:
  "cache_salt": "SECRET"        prefixes are shared only within the same salt; a
                                tenant's secret (unguessable, e.g. 128 random bits),
                                shown everywhere as a label, never as itself
  "retention": {"ranges": [{"start": 0, "end": 120, "priority": 90, "duration_s": 600}],
                "decode_priority": 10, "decode_duration_s": 5}
                                keep these prompt tokens' blocks longer (priority 0-100,
                                default 35; evicted lowest first)
  "priority": 50                preemption order under memory pressure (lowest first)
  "session_id": "..."           a conversation: echoed; with tiers, /v1/cache/prefetch
                                brings its context back up
usage.prompt_tokens_details.cached_tokens reports the prompt tokens the cache served.

Errors are OpenAI-style {"error": {"message", "type", "param", "code"}}: 400 bad
fields, 401 key, 404 unknown route or pin, 413 body too large, 429 queue full,
503 shutting down. SIGTERM or SIGINT: stop taking requests, finish those in flight,
exit 0 (a second signal exits at once).

Example:
  kvstack serve --model ../shared/models/stories260K.gguf --port 8080
  curl http://127.0.0.1:8080/v1/completions -H 'Content-Type: application/json' \
       -d '{"prompt": "Once upon a time", "max_tokens": 32}')";


// The server's URL as a user on this machine can reach it (a wildcard bind
// is reached through loopback).
std::string ReachableUrl(const Server& server, const ServerOptions& o) {
  const std::string host = (o.host == "0.0.0.0" || o.host == "::") ? "127.0.0.1" : o.host;
  return fmt::format("http://{}:{}", host, server.port());
}

// The first curl a user can paste, with the key if one is set.
std::string CurlExample(const Server& server, const ServerOptions& o) {
  return fmt::format(
      "curl {}/v1/completions -H 'Content-Type: application/json'{} -d '{{\"model\": \"{}\", \"prompt\": "
      "\"Once upon a time\", \"max_tokens\": 32}}'",
      ReachableUrl(server, o),
      o.api_key.empty() && o.api_keys.empty() ? "" : " -H 'Authorization: Bearer $KVSTACK_API_KEY'",
      server.model_name());
}

int RunServe(ServeArgs& a) {
  auto kv = ParseKvMemory(a.kv_memory);
  if (!kv.ok()) {
    std::fprintf(stderr, "kvstack serve: %s\n", kv.status().message().c_str());
    return 2;
  }
  ServerOptions& o = a.options;
  o.engine.kv_memory_bytes = *kv;
  if (Status st = ApplyKvTypeOptions(a.kv_type, &o.engine); !st.ok()) {
    std::fprintf(stderr, "kvstack serve: %s\n", st.message().c_str());
    return 2;
  }
  if (!a.tier_kv_type.empty()) {
    auto t = ParseKvDType(a.tier_kv_type);
    if (!t.ok()) {
      std::fprintf(stderr, "kvstack serve: --tier-kv-type: %s\n", t.status().message().c_str());
      return 2;
    }
    o.engine.tier_kv_dtype = *t;
  }
  for (auto [flag, text, out] : {std::tuple{"--host-tier", &a.host_tier, &o.tiers.host_bytes},
                                 std::tuple{"--disk-tier-size", &a.disk_tier_size, &o.tiers.disk_bytes}}) {
    auto bytes = sizing::ParseByteSize(*text);
    if (!bytes.ok()) {
      std::fprintf(stderr, "kvstack serve: %s: %s\n", flag, bytes.status().message().c_str());
      return 2;
    }
    *out = *bytes;
  }
  if (Status s = ReadAccessFiles(a.access, o); !s.ok()) {
    std::fprintf(stderr, "kvstack serve: %s\n", s.message().c_str());
    return 2;
  }
  if (o.model_cache_dir.empty()) o.model_cache_dir = DefaultModelCacheDir(std::getenv("XDG_CACHE_HOME"), std::getenv("HOME"));

  // Signals go to this thread only (sigwait below); every thread the server
  // starts inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client that hangs up mid-stream must cost a failed write, not the process.
  std::signal(SIGPIPE, SIG_IGN);

  auto server = Server::Start(o);
  if (!server.ok()) {
    std::fprintf(stderr, "kvstack serve: %s\n", server.status().message().c_str());
    return server.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  Server& s = **server;
  std::printf("kvstack serve: listening on %s (model \"%s\")\n", s.url().c_str(), s.model_name().c_str());
  const bool keyed = !o.api_key.empty() || !o.api_keys.empty() || !o.admin_key.empty();
  std::printf("dashboard: %s/%s\n", ReachableUrl(s, o).c_str(), keyed ? "#key=$KVSTACK_ADMIN_KEY" : "");
  std::printf("try: %s\n", CurlExample(s, o).c_str());
  std::fflush(stdout);

  // Wait() returns when the server has stopped, after a signal or a failure.
  std::atomic<bool> stopped{false};
  Status result;
  std::thread waiter([&] {
    result = s.Wait();
    stopped = true;
  });
  bool signalled = false;
  while (!stopped) {
    const timespec tick{0, 200'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig < 0) continue;  // timeout or EINTR
    if (!signalled) {
      signalled = true;
      std::fprintf(stderr, "kvstack serve: %s: finishing requests in flight, then exiting (send it again to exit now)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      s.Shutdown();
    } else {
      std::fprintf(stderr, "kvstack serve: second signal: exiting now\n");
      std::_Exit(1);
    }
  }
  waiter.join();
  if (!result.ok()) {
    std::fprintf(stderr, "kvstack serve: %s\n", result.message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

CommandRunner AddServeCommand(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  ServerOptions& o = a->options;
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve a GGUF model over an OpenAI-compatible HTTP API (completions, chat, streaming) with kvstack's KV cache "
      "controls: tenant isolation, retention priorities, pinned prefixes and cache statistics.");
  cmd->add_option("-m,--model", o.model_path,
                  "GGUF model file (llama or qwen2). Without it: a demo model with RANDOM weights (gibberish output) "
                  "is generated into --model-cache-dir on first use.")
      ->check(CLI::ExistingFile)
      ->type_name("PATH");
  cmd->add_option("--host", o.host,
                  "Address to listen on. The default serves this machine only; 0.0.0.0 serves every interface "
                  "(then set --api-key).")
      ->capture_default_str();
  cmd->add_option("--port", o.port, "TCP port; 0 picks a free one (printed on start).")->capture_default_str();
  cmd->add_option("--kv-memory", a->kv_memory,
                  "KV cache size (B, KiB, MiB, GiB): how many blocks of KV the server keeps, shared by running "
                  "requests and cached prefixes.")
      ->capture_default_str()
      ->type_name("SIZE");
  cmd->add_option("--block-size", o.engine.block_size,
                  "Tokens per KV block, a power of two from 1 to 512. Prefix hits are counted in whole blocks.")
      ->capture_default_str();
  cmd->add_option("--max-context", o.engine.max_context,
                  "Most tokens a request may hold (prompt + generated); 0: the model's training context.")
      ->capture_default_str();
  AddAccessOptions(cmd, o, a->access);
  AddKvTypeOptions(cmd, &a->kv_type);
  AddExactMatmulFlag(cmd, &a->options.engine.matmul_precision);
  AddCpuLevelOption(cmd);
  cmd->add_option("--eviction-policy", o.engine.eviction_policy,
                  "Which cached block is evicted first: priority-lru (retention priority, then least recently "
                  "used), lru or lfu.")
      ->capture_default_str();
  cmd->add_option("--max-pinned-fraction", o.engine.max_pinned_fraction,
                  "Most of the KV pool that pinned prefixes may hold (0-1); pins beyond it are refused.")
      ->capture_default_str();
  cmd->add_option("--hash-seed", o.engine.hash_seed,
                  "Seed of the block hashes; every process of one deployment (servers, router, sim) must share it.")
      ->capture_default_str();
  cmd->add_option("-t,--threads", o.engine.threads, "Kernel threads for the forward pass; 0: one per CPU.")
      ->capture_default_str();
  cmd->add_option("--max-batch-tokens", o.engine.max_batch_tokens,
                  "Token budget of one engine step: decode tokens of running requests plus chunks of prompts.")
      ->capture_default_str();
  cmd->add_option("--max-running", o.engine.max_running, "Most requests decoded together in one batch.")
      ->capture_default_str();
  cmd->add_option("--max-queue", o.max_queue,
                  "Most requests waiting beyond --max-running; more get 429 (retry later).")
      ->capture_default_str();
  cmd->add_option("--max-body-bytes", o.max_body_bytes, "Largest request body accepted; larger ones get 413.")
      ->capture_default_str();
  cmd->add_option("--max-tokens-limit", o.max_tokens_limit,
                  "Largest max_tokens a request may ask for; more gets 400.")
      ->capture_default_str();
  cmd->add_option("--max-n", o.max_n,
                  "Most choices (n) one completion may ask for; its prompt is computed once and shared.")
      ->capture_default_str();
  cmd->add_option("--model-cache-dir", o.model_cache_dir,
                  "Where the demo model is generated and kept. Default: $XDG_CACHE_HOME/kvstack, else "
                  "~/.cache/kvstack.")
      ->type_name("DIR");
  cmd->add_option("--served-model-name", o.served_model_name,
                  "The model name in responses and /v1/models. Default: the model file's name without .gguf.")
      ->type_name("NAME");
  cmd->add_option("--record-trace", o.record_trace,
                  "Append every finished request (arrival, tenant, session, prompt token ids, retention, output "
                  "length, measured TTFT) to FILE in kvstack's trace format, for `kvstack sim --trace FILE`.")
      ->type_name("FILE");
  const std::string tiers = "Tiers (off unless set)";
  cmd->add_option("--host-tier", a->host_tier,
                  "Host RAM tier size (B, KiB, MiB, GiB; 0: off): evicted KV blocks worth keeping are copied here and "
                  "brought back instead of recomputed.")
      ->capture_default_str()
      ->type_name("SIZE")
      ->group(tiers);
  cmd->add_option("--disk-tier", o.tiers.disk_dir,
                  "Directory of the local disk tier (large segment files, O_DIRECT through io_uring, checksummed; "
                  "re-indexed on start, so the cache survives a restart). Off when not given.")
      ->type_name("DIR")
      ->group(tiers);
  cmd->add_option("--disk-tier-size", a->disk_tier_size, "Disk tier capacity.")
      ->capture_default_str()
      ->type_name("SIZE")
      ->group(tiers);
  cmd->add_option("--redis", o.tiers.redis,
                  "A Redis server for the shared remote tier, HOST:PORT; repeat for several (keys spread by "
                  "consistent hashing). A server that is down or slow makes its blocks misses, never errors.")
      ->type_name("HOST:PORT")
      ->group(tiers);
  cmd->add_option("--redis-cluster", o.tiers.redis_cluster,
                  "Seed nodes of a Redis Cluster for the shared remote tier, HOST:PORT[,HOST:PORT...] (one that "
                  "answers is enough). Each block goes to the master of its key's hash slot; MOVED and ASK "
                  "redirections are followed and the slot map re-read, so failovers and reshards cost misses, "
                  "never errors. Instead of --redis.")
      ->delimiter(',')
      ->type_name("HOST:PORT[,...]")
      ->group(tiers);
  cmd->add_flag("--redis-read-from-replicas", o.tiers.redis_read_from_replicas,
                "With --redis-cluster: read blocks from replicas (spreads reads; a block written a moment ago may "
                "miss there, as replication is asynchronous).")
      ->group(tiers);
  cmd->add_option("--redis-ttl", o.tiers.redis_ttl_s, "Seconds a block lives in Redis.")
      ->capture_default_str()
      ->group(tiers);
  cmd->add_option("--offload-min-priority", o.tiers.offload_min_priority,
                  "Offload an evicted block if its retention priority is at least this (0-100; the default "
                  "priority is 35, so by default only durable context qualifies by priority)...")
      ->capture_default_str()
      ->group(tiers);
  cmd->add_option("--offload-min-hits", o.tiers.offload_min_hits, "...or if it was hit at least this often.")
      ->capture_default_str()
      ->group(tiers);
  cmd->add_option("--tier-kv-type", a->tier_kv_type,
                  "Store offloaded blocks in the tiers as this type (int8: half the bytes of f16 moved and stored), "
                  "widened back on onboarding. Off by default: onboarded KV then differs slightly from computed KV "
                  "(BENCHMARKS.md). Needs f32/f16/bf16 --kv-type and a narrower type.")
      ->type_name("TYPE")
      ->group(tiers);
  cmd->add_flag("--onboard-always", o.tiers.onboard_always,
                "Bring tier blocks back even when recomputing them would be faster (by default the tiers' measured "
                "bandwidth is compared with the measured prefill rate).")
      ->group(tiers);
  const std::string fleet = "Fleet (KV events for a KV-aware router; off unless set)";
  cmd->add_option("--kv-events", o.kv_events.endpoint,
                  "Publish KV cache events (blocks stored/removed per tier) on this ZeroMQ PUB endpoint in vLLM's "
                  "schema: tcp://*:5557, tcp://127.0.0.1:* (a free port; GET /v1/kv-events tells which).")
      ->type_name("ENDPOINT")
      ->group(fleet);
  cmd->add_option("--kv-events-replay", o.kv_events.replay_endpoint,
                  "ZeroMQ ROUTER endpoint that resends buffered event batches from a requested sequence number.")
      ->type_name("ENDPOINT")
      ->group(fleet);
  cmd->add_option("--kv-events-topic", o.kv_events.topic, "Topic frame of every event message.")
      ->capture_default_str()
      ->group(fleet);
  cmd->add_option("--kv-events-buffer", o.kv_events.replay_batches, "Event batches kept for replay.")
      ->capture_default_str()
      ->group(fleet);
  cmd->footer(kFooter);
  return [a] { return RunServe(*a); };
}

}  // namespace kvstack::cli
