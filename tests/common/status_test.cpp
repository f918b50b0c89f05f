#include "kvstack/status.h"

#include <gtest/gtest.h>

#include "kvstack/clock.h"
#include "kvstack/histogram.h"

namespace kvstack {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgument("x " + std::to_string(x) + ": must be even");
  return x / 2;
}

Status Chain(int x) {
  KVSTACK_RETURN_IF_ERROR(Half(x).status());
  return Status::Ok();
}

TEST(StatusTest, OkAndErrors) {
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(Status::Ok().ToString(), "OK");
  Status s = NotFound("block 3");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.ToString(), "NotFound: block 3");
}

TEST(StatusTest, ResultCarriesValueOrStatus) {
  Result<int> r = Half(8);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 4);
  Result<int> bad = Half(3);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "x 3: must be even");
  EXPECT_EQ(Chain(3).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Chain(4).ok());
}

TEST(ClockTest, ManualClockMovesOnlyWhenTold) {
  ManualClock c(100);
  EXPECT_EQ(c.Now(), 100);
  c.Advance(50);
  EXPECT_EQ(c.Now(), 150);
  const Micros a = SteadyClock::Default().Now();
  EXPECT_LE(a, SteadyClock::Default().Now());
}

TEST(HistogramTest, BucketsAndPercentiles) {
  Histogram h({1, 10, 100});
  for (double v : {0.5, 5.0, 5.0, 50.0, 500.0}) h.Observe(v);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_EQ(h.counts(), (std::vector<uint64_t>{1, 2, 1, 1}));
  EXPECT_DOUBLE_EQ(h.sum(), 560.5);
  EXPECT_DOUBLE_EQ(h.max(), 500.0);
  EXPECT_GT(h.Percentile(0.5), 1.0);
  EXPECT_LE(h.Percentile(0.5), 10.0);
  EXPECT_DOUBLE_EQ(h.Percentile(1.0), 500.0);
  EXPECT_EQ(Histogram::Decades125(1, 100).upper_bounds(), (std::vector<double>{1, 2, 5, 10, 20, 50, 100}));
}

}  // namespace
}  // namespace kvstack
