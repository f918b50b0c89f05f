// ThreadPool: persistent workers that claim chunks of a ParallelFor.
//
// Protocol. The driving thread publishes job number g (generation) in slot
// g % 2, runs chunks itself, and returns once every chunk is done. Workers
// claim chunks from the slot with an atomic counter, so a worker that is slow
// to wake costs nothing: the others (the caller included) take its chunks.
//
// A worker may still be inside a slot after the job's last chunk is done
// (it is about to find the counter exhausted). Each slot therefore counts the
// workers inside it (`active`), and the caller rewrites a slot only when that
// count is zero. A worker enters by incrementing `active` and then re-reading
// the generation: if it is no longer g, the slot may be rewritten under it,
// and it backs out without reading anything. Both sides use sequentially
// consistent operations, so either the caller sees the worker's increment and
// waits, or the worker sees the newer generation and leaves.
//
// Waiting. Between jobs a worker spins for kSpinTime on the generation, then
// sleeps on a condition variable. Waking a sleeping thread costs ~40 us on
// these VMs (REFERENCE.md section 3), longer than a decode-sized MatVec, so
// back-to-back kernels find their workers still spinning. The caller
// notifies only when some worker sleeps (`sleepers`).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

constexpr auto kSpinTime = std::chrono::microseconds(150);
// Chunks per thread: a thread that the VM preempts in the middle of a chunk
// holds the job up by that chunk, so chunks are kept small; few enough that
// claiming them stays cheap.
constexpr int64_t kChunksPerThread = 4;
constexpr size_t kCacheLine = 64;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

int OnlineCpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

struct ThreadPool::State {
  // Fields that different threads write sit on separate cache lines, so a
  // claim does not invalidate the line the caller polls.
  struct alignas(kCacheLine) Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t chunk = 1;
    int64_t num_chunks = 0;
    alignas(kCacheLine) std::atomic<int64_t> next{0};
    alignas(kCacheLine) std::atomic<int64_t> done{0};
    alignas(kCacheLine) std::atomic<int> active{0};
  };

  explicit State(int threads) : size(threads) {}

  void RunChunks(Job& job);
  void WorkerLoop();
  // Returns the first generation other than `seen`, or `seen` when stopping.
  uint64_t WaitForJob(uint64_t seen);

  const int size;
  Job jobs[2];
  alignas(kCacheLine) std::atomic<uint64_t> generation{0};
  std::atomic<bool> stop{false};
  std::atomic<int> sleepers{0};
  std::mutex mu;
  std::condition_variable wake;
  std::vector<std::thread> workers;
};

namespace {
// The pool whose job this thread is running, to catch a nested ParallelFor
// (it would wait forever for chunks that only it could finish).
// (State is private to ThreadPool, hence the untyped pointer.)
thread_local const void* t_running = nullptr;
}  // namespace

void ThreadPool::State::RunChunks(Job& job) {
  const void* outer = t_running;
  t_running = this;
  for (;;) {
    const int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= job.num_chunks) break;
    const int64_t begin = c * job.chunk;
    const int64_t end = std::min(job.n, begin + job.chunk);
    (*job.fn)(begin, end);
    job.done.fetch_add(1, std::memory_order_release);
  }
  t_running = outer;
}

uint64_t ThreadPool::State::WaitForJob(uint64_t seen) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (int i = 1;; ++i) {
    const uint64_t g = generation.load(std::memory_order_acquire);
    if (g != seen || stop.load(std::memory_order_relaxed)) return g;
    CpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
  }
  std::unique_lock<std::mutex> lock(mu);
  sleepers.fetch_add(1, std::memory_order_seq_cst);
  wake.wait(lock, [&] {
    return generation.load(std::memory_order_seq_cst) != seen || stop.load(std::memory_order_seq_cst);
  });
  sleepers.fetch_sub(1, std::memory_order_relaxed);
  return generation.load(std::memory_order_acquire);
}

void ThreadPool::State::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    const uint64_t g = WaitForJob(seen);
    if (stop.load(std::memory_order_acquire)) return;
    seen = g;
    Job& job = jobs[g % 2];
    job.active.fetch_add(1, std::memory_order_seq_cst);
    if (generation.load(std::memory_order_seq_cst) == g) RunChunks(job);
    job.active.fetch_sub(1, std::memory_order_release);
  }
}

ThreadPool::ThreadPool(int threads) : state_(std::make_unique<State>(threads >= 1 ? threads : OnlineCpus())) {
  state_->workers.reserve(static_cast<size_t>(state_->size - 1));
  for (int i = 1; i < state_->size; ++i) state_->workers.emplace_back([s = state_.get()] { s->WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop.store(true, std::memory_order_seq_cst);
  }
  state_->wake.notify_all();
  for (std::thread& t : state_->workers) t.join();
}

int ThreadPool::size() const { return state_->size; }

void ThreadPool::ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
  State& s = *state_;
  if (t_running == &s) {
    std::fprintf(stderr, "ThreadPool::ParallelFor: called from inside a job of the same pool (n=%lld)\n",
                 static_cast<long long>(n));
    std::abort();
  }
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // As many chunks of at least `grain` as fit, up to kChunksPerThread per
  // thread, all the same size but the last.
  const int64_t num_chunks = std::clamp<int64_t>(n / grain, 1, s.size * kChunksPerThread);
  const int64_t chunk = (n + num_chunks - 1) / num_chunks;
  if (s.size == 1 || chunk >= n) {
    const void* outer = t_running;
    t_running = &s;
    f(0, n);
    t_running = outer;
    return;
  }

  const uint64_t g = s.generation.load(std::memory_order_relaxed) + 1;
  State::Job& job = s.jobs[g % 2];
  // Workers that entered this slot two jobs ago may still be leaving it.
  while (job.active.load(std::memory_order_seq_cst) != 0) CpuRelax();
  job.fn = &f;
  job.n = n;
  job.chunk = chunk;
  job.num_chunks = (n + chunk - 1) / chunk;
  job.next.store(0, std::memory_order_relaxed);
  job.done.store(0, std::memory_order_relaxed);
  s.generation.store(g, std::memory_order_seq_cst);
  if (s.sleepers.load(std::memory_order_seq_cst) > 0) {
    // Taking the lock orders this notify after a sleeper's predicate check.
    { std::lock_guard<std::mutex> lock(s.mu); }
    s.wake.notify_all();
  }

  s.RunChunks(job);
  // Chunks claimed by workers may still be running; the VM may have
  // descheduled one, so yield instead of burning the CPU it needs.
  for (int i = 0; job.done.load(std::memory_order_acquire) < job.num_chunks; ++i) {
    if (i < 4096) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace kvstack::kernels
