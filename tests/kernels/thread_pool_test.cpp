// ThreadPool: exact coverage for every n / grain / size combination, chunk
// sizes, who runs what, many back-to-back jobs (spinning workers) and jobs
// spaced out so that the workers fall asleep between them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "kvstack/kernels.h"

namespace kvstack::kernels {
namespace {

TEST(ThreadPoolTest, Size) {
  EXPECT_EQ(ThreadPool(1).size(), 1);
  EXPECT_EQ(ThreadPool(3).size(), 3);
  EXPECT_GE(ThreadPool(0).size(), 1);
  EXPECT_GE(ThreadPool(-2).size(), 1);
}

TEST(ThreadPoolTest, CoversEveryIndexOnceInChunksOfAtLeastGrain) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 4, 7, 100, 1001}) {
      for (int64_t grain : {0, 1, 3, 64, 5000}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> short_chunks{0};
        std::atomic<int> chunks{0};
        pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
          ASSERT_LT(begin, end);
          ASSERT_LE(end, n);
          chunks.fetch_add(1);
          if (end - begin < grain) short_chunks.fetch_add(1);
          for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "threads=" << threads << " n=" << n << " grain=" << grain
                                                             << " index " << i;
        }
        EXPECT_LE(short_chunks.load(), 1) << "only the last chunk may be shorter than the grain";
        if (n == 0) {
          EXPECT_EQ(chunks.load(), 0);
        } else if (grain >= n) {
          EXPECT_EQ(chunks.load(), 1);
        }
      }
    }
  }
}

TEST(ThreadPoolTest, SizeOneRunsEverythingOnTheCaller) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  int calls = 0;
  pool.ParallelFor(1000, 1, [&](int64_t begin, int64_t end) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 1000);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

// The workers take chunks: with two threads, a job whose chunks wait for a
// second thread to show up completes only if a worker runs one of them.
TEST(ThreadPoolTest, WorkersTakePart) {
  ThreadPool pool(2);
  std::mutex mu;
  std::set<std::thread::id> seen;
  pool.ParallelFor(8, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mu);
      seen.insert(std::this_thread::get_id());
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      std::lock_guard<std::mutex> lock(mu);
      if (seen.size() >= 2) break;
    }
  });
  EXPECT_EQ(seen.size(), 2u);
}

// Many small jobs back to back (workers still spinning) must each see all of
// their indices exactly once and see the results of the job before.
TEST(ThreadPoolTest, BackToBackJobs) {
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::vector<int64_t> data(64, 0);
    for (int round = 0; round < 20000; ++round) {
      const int64_t n = 1 + round % 64;
      pool.ParallelFor(n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) data[static_cast<size_t>(i)] += i + 1;
      });
    }
    // Index i was touched by every round with n > i.
    for (int64_t i = 0; i < 64; ++i) {
      int64_t rounds = 0;
      for (int round = 0; round < 20000; ++round) rounds += (1 + round % 64) > i;
      EXPECT_EQ(data[static_cast<size_t>(i)], rounds * (i + 1)) << "threads=" << threads << " index " << i;
    }
  }
}

// Jobs spaced beyond the workers' spin time: they sleep and must be woken.
TEST(ThreadPoolTest, JobsAfterWorkersSleep) {
  ThreadPool pool(3);
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 3 == 0 ? 2 : 0));
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(1000, 10, [&](int64_t begin, int64_t end) {
      int64_t s = 0;
      for (int64_t i = begin; i < end; ++i) s += i;
      sum.fetch_add(s);
    });
    EXPECT_EQ(sum.load(), 999 * 1000 / 2);
  }
}

TEST(ThreadPoolTest, DestroyWhileWorkersSpinOrSleep) {
  for (int i = 0; i < 50; ++i) {
    ThreadPool pool(2);
    if (i % 2 == 0) pool.ParallelFor(100, 1, [](int64_t, int64_t) {});
    if (i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

TEST(ThreadPoolDeathTest, NestedParallelForAborts) {
  EXPECT_DEATH(
      {
        ThreadPool pool(1);
        pool.ParallelFor(4, 1, [&](int64_t, int64_t) { pool.ParallelFor(2, 1, [](int64_t, int64_t) {}); });
      },
      "called from inside a job of the same pool");
}

}  // namespace
}  // namespace kvstack::kernels
