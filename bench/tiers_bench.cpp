// Tier throughput against raw baselines measured in the same run (see
// scripts/bench-tiers, which prints the BENCHMARKS.md table):
//   host   put and get of N blocks     vs  memcpy of the same bytes
//   disk   put and get of N blocks     vs  a naive O_DIRECT pwrite / pread loop
//                                          of large chunks in the same directory
//   redis  put and get of N blocks     (the script runs redis-benchmark on the
//                                          same server for the baseline)
// Usage: tiers_bench --dir DIR [--block-bytes B] [--host-mib M] [--disk-mib M]
//                    [--redis-port P --redis-blocks N --redis-connections C] [--reps R]
//                    [--redis-cluster 1: P is a seed of a Redis Cluster] [--only-redis 1]
// Prints one line per figure: "<name> <bytes per second>" (best of R).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "kvstack/tiers.h"

namespace {

using kvstack::BlockHash;
using kvstack::Tier;
using kvstack::TierFuture;
using kvstack::TierGet;
using kvstack::TierPut;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Args {
  std::string dir = "/tmp/kvstack-tiers-bench";
  size_t block = 256 * 1024;
  size_t host_mib = 512;
  size_t disk_mib = 512;
  int redis_port = 0;
  size_t redis_blocks = 2000;
  int redis_connections = 4;
  bool redis_cluster = false;  // --redis-port is a seed node of a Redis Cluster
  bool only_redis = false;
  int reps = 3;
};

std::byte* Alloc(size_t n) {
  auto* p = static_cast<std::byte*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096));
  for (size_t i = 0; i < n; i += 64) p[i] = static_cast<std::byte>(i * 131 + 7);  // touched, not all equal
  return p;
}

BlockHash Key(size_t i, uint64_t round) { return BlockHash{i * 0x9E3779B97F4A7C15ull + 1 + round, round + 1}; }

// Puts blocks [0, n) in batches of `batch`, all batches in flight at once,
// then waits. Returns bytes stored per second.
// With `sync_dir`, the clock stops only once the file system holding it has
// flushed (syncfs): a put timed to durability, as fio's end_fsync=1 is.
double PutAll(Tier& t, const std::byte* src, size_t n, size_t batch, uint64_t round,
              const std::string& sync_dir = "") {
  const size_t b = t.bytes_per_block();
  const double start = Now();
  std::vector<TierFuture> fs;
  size_t ok = 0;
  for (size_t at = 0; at < n; at += batch) {
    std::vector<TierPut> puts;
    for (size_t i = at; i < std::min(n, at + batch); ++i) puts.push_back({{Key(i, round), 90, 0}, {src + i * b, b}});
    fs.push_back(t.Put(puts));
  }
  for (auto& f : fs) {
    f.Wait();
    ok += f.num_ok();
  }
  if (!sync_dir.empty()) {
    const int dfd = ::open(sync_dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || ::syncfs(dfd) != 0) std::perror("syncfs");
    if (dfd >= 0) ::close(dfd);
  }
  const double secs = Now() - start;
  if (ok != n) std::fprintf(stderr, "warning: %s stored %zu of %zu blocks\n", std::string(t.name()).c_str(), ok, n);
  return static_cast<double>(ok * b) / secs;
}

double GetAll(Tier& t, std::byte* dst, size_t n, size_t batch, uint64_t round) {
  const size_t b = t.bytes_per_block();
  const double start = Now();
  std::vector<TierFuture> fs;
  size_t ok = 0;
  for (size_t at = 0; at < n; at += batch) {
    std::vector<TierGet> gets;
    for (size_t i = at; i < std::min(n, at + batch); ++i) gets.push_back({Key(i, round), {dst + i * b, b}});
    fs.push_back(t.Get(gets));
  }
  for (auto& f : fs) {
    f.Wait();
    ok += f.num_ok();
  }
  const double secs = Now() - start;
  if (ok != n) std::fprintf(stderr, "warning: %s returned %zu of %zu blocks\n", std::string(t.name()).c_str(), ok, n);
  return static_cast<double>(ok * b) / secs;
}

void Report(const char* name, double v) { std::printf("%s %.0f\n", name, v); }

void BenchHost(const Args& a) {
  const size_t n = a.host_mib * (1 << 20) / a.block;
  std::byte* src = Alloc(n * a.block);
  std::byte* dst = Alloc(n * a.block);
  double best_memcpy = 0;
  for (int r = 0; r < a.reps; ++r) {
    const double start = Now();
    for (size_t i = 0; i < n; ++i) std::memcpy(dst + i * a.block, src + i * a.block, a.block);
    best_memcpy = std::max(best_memcpy, static_cast<double>(n * a.block) / (Now() - start));
  }
  auto t = kvstack::MakeHostTier({.bytes_per_block = a.block, .capacity_blocks = static_cast<int64_t>(n)}).value();
  double best_put = 0, best_get = 0;
  for (int r = 0; r < a.reps; ++r) {
    best_put = std::max(best_put, PutAll(*t, src, n, 64, static_cast<uint64_t>(r)));
    best_get = std::max(best_get, GetAll(*t, dst, n, 64, static_cast<uint64_t>(r)));
  }
  Report("memcpy", best_memcpy);
  Report("host_put", best_put);
  Report("host_get", best_get);
  std::free(src);
  std::free(dst);
}

// The naive baseline: one file, O_DIRECT, 16 MiB pwrite / pread in a loop.
void BenchRawDisk(const Args& a, double* write_bps, double* read_bps) {
  const size_t total = a.disk_mib * (1 << 20);
  const size_t chunk = 16 << 20;
  const std::string path = a.dir + "/raw-baseline.bin";
  std::byte* buf = Alloc(chunk);
  *write_bps = *read_bps = 0;
  for (int r = 0; r < a.reps; ++r) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
    if (fd < 0) fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    double start = Now();
    for (size_t off = 0; off < total; off += chunk) {
      if (::pwrite(fd, buf, chunk, static_cast<off_t>(off)) != static_cast<ssize_t>(chunk)) std::perror("pwrite");
    }
    *write_bps = std::max(*write_bps, static_cast<double>(total) / (Now() - start));
    start = Now();
    for (size_t off = 0; off < total; off += chunk) {
      if (::pread(fd, buf, chunk, static_cast<off_t>(off)) != static_cast<ssize_t>(chunk)) std::perror("pread");
    }
    *read_bps = std::max(*read_bps, static_cast<double>(total) / (Now() - start));
    ::close(fd);
  }
  std::filesystem::remove(path);
  std::free(buf);
}

void BenchDisk(const Args& a) {
  double raw_w = 0, raw_r = 0;
  BenchRawDisk(a, &raw_w, &raw_r);
  const size_t n = a.disk_mib * (1 << 20) / a.block;
  std::byte* src = Alloc(n * a.block);
  std::byte* dst = Alloc(n * a.block);
  const std::string dir = a.dir + "/disk-tier";
  std::filesystem::remove_all(dir);
  kvstack::DiskTierOptions o;
  o.dir = dir;
  o.bytes_per_block = a.block;
  o.capacity_bytes = static_cast<uint64_t>(n) * ((a.block + 128 + 4095) / 4096 * 4096);
  auto t = kvstack::OpenDiskTier(o);
  if (!t.ok()) {
    std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
    std::exit(1);
  }
  // One tier for every repetition: after the first, each round's puts evict
  // the previous round's blocks and rewrite their records (the steady state).
  double best_put = 0, best_get = 0;
  for (int r = 0; r < a.reps; ++r) {
    best_put = std::max(best_put, PutAll(**t, src, n, 64, static_cast<uint64_t>(r), dir));
    best_get = std::max(best_get, GetAll(**t, dst, n, 64, static_cast<uint64_t>(r)));
  }
  t->reset();
  std::filesystem::remove_all(dir);
  Report("raw_odirect_write", raw_w);
  Report("raw_odirect_read", raw_r);
  Report("disk_put", best_put);
  Report("disk_get", best_get);
  std::free(src);
  std::free(dst);
}

void BenchRedis(const Args& a) {
  const size_t n = a.redis_blocks;
  std::byte* src = Alloc(n * a.block);
  std::byte* dst = Alloc(n * a.block);
  kvstack::RedisTierOptions o;
  (a.redis_cluster ? o.cluster_seeds : o.servers).push_back({"127.0.0.1", a.redis_port});
  o.model_id = "bench";
  o.bytes_per_block = a.block;
  o.op_timeout = 10'000'000;
  o.connections = a.redis_connections;
  auto t = kvstack::MakeRedisTier(o).value();
  double best_put = 0, best_get = 0;
  for (int r = 0; r < a.reps; ++r) {
    best_put = std::max(best_put, PutAll(*t, src, n, 64, static_cast<uint64_t>(r)));
    best_get = std::max(best_get, GetAll(*t, dst, n, 64, static_cast<uint64_t>(r)));
  }
  Report("redis_put", best_put);
  Report("redis_get", best_get);
  std::free(src);
  std::free(dst);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dir") a.dir = v;
    else if (k == "--block-bytes") a.block = std::stoul(v);
    else if (k == "--host-mib") a.host_mib = std::stoul(v);
    else if (k == "--disk-mib") a.disk_mib = std::stoul(v);
    else if (k == "--redis-port") a.redis_port = std::stoi(v);
    else if (k == "--redis-blocks") a.redis_blocks = std::stoul(v);
    else if (k == "--redis-connections") a.redis_connections = std::stoi(v);
    else if (k == "--redis-cluster") a.redis_cluster = v == "1";
    else if (k == "--only-redis") a.only_redis = v == "1";
    else if (k == "--reps") a.reps = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  std::filesystem::create_directories(a.dir);
  std::printf("block_bytes %zu\n", a.block);
  if (!a.only_redis) {
    BenchHost(a);
    BenchDisk(a);
  }
  if (a.redis_port > 0) BenchRedis(a);
  return 0;
}
