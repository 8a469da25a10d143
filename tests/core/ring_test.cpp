#include "tern/core/ring.hpp"

#include "tern/core/priority_ring.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;

TEST(Ring, FifoOrderAndFullKeepsContents) {
  tern::Ring<int, 3> q;
  EXPECT_EQ(q.push(1), Errc::ok);
  EXPECT_EQ(q.push(2), Errc::ok);
  EXPECT_EQ(q.push(3), Errc::ok);
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.push(4), Errc::full);
  EXPECT_EQ(q.rejected(), 1u);
  EXPECT_EQ(*q.pop(), 1);
  EXPECT_EQ(q.push(5), Errc::ok);  // wraps around
  EXPECT_EQ(*q.pop(), 2);
  EXPECT_EQ(*q.pop(), 3);
  EXPECT_EQ(*q.pop(), 5);
  EXPECT_EQ(q.pop().error(), Errc::not_found);
  EXPECT_EQ(q.high_water(), 3u);
}

TEST(Ring, TakeFirstKeepsOrderOfTheRest) {
  tern::Ring<int, 5> q;
  for (int v : {1, 2, 3, 4, 5}) ASSERT_EQ(q.push(v), Errc::ok);
  (void)q.pop();
  ASSERT_EQ(q.push(6), Errc::ok);  // storage now wraps: 2 3 4 5 6
  auto even = q.take_first([](const int& v) { return v % 2 == 0; });
  ASSERT_TRUE(even.ok());
  EXPECT_EQ(*even, 2);
  auto four = q.take_first([](const int& v) { return v == 4; });
  EXPECT_EQ(*four, 4);
  EXPECT_EQ(q.take_first([](const int& v) { return v > 100; }).error(), Errc::not_found);
  int expect[] = {3, 5, 6};
  for (int e : expect) EXPECT_EQ(*q.pop(), e);
  EXPECT_TRUE(q.empty());
}

struct Counted {
  static int live;
  int v;
  explicit Counted(int x) : v(x) { ++live; }
  Counted(Counted&& o) noexcept : v(o.v) { ++live; }
  Counted& operator=(Counted&& o) noexcept {
    v = o.v;
    return *this;
  }
  ~Counted() { --live; }
};
int Counted::live = 0;

TEST(Ring, DestroysWhatItHolds) {
  {
    tern::Ring<Counted, 4> q;
    ASSERT_EQ(q.emplace(1), Errc::ok);
    ASSERT_EQ(q.emplace(2), Errc::ok);
    (void)q.take_first([](const Counted& c) { return c.v == 1; });
    EXPECT_EQ(Counted::live, 1);
  }
  EXPECT_EQ(Counted::live, 0);
}

TEST(PriorityRing, HigherLevelFirstFifoWithinLevel) {
  tern::PriorityRing<int, 6, 3> q;
  ASSERT_EQ(q.push(10, 0), Errc::ok);
  ASSERT_EQ(q.push(20, 2), Errc::ok);
  ASSERT_EQ(q.push(11, 0), Errc::ok);
  ASSERT_EQ(q.push(21, 2), Errc::ok);
  ASSERT_EQ(q.push(15, 1), Errc::ok);
  EXPECT_EQ(q.push(1, 3), Errc::invalid_argument);
  int expect[] = {20, 21, 15, 10, 11};
  for (int e : expect) EXPECT_EQ(*q.pop(), e);
  EXPECT_TRUE(q.empty());
}

TEST(PriorityRing, CapacityIsSharedAndFullKeepsContents) {
  tern::PriorityRing<int, 2, 2> q;
  ASSERT_EQ(q.push(1, 0), Errc::ok);
  ASSERT_EQ(q.push(2, 1), Errc::ok);
  EXPECT_EQ(q.push(3, 1), Errc::full);
  EXPECT_EQ(q.rejected(), 1u);
  EXPECT_EQ(*q.pop(), 2);
  EXPECT_EQ(*q.pop(), 1);
}

// A refused push leaves the caller's item alone, even one passed with std::move.
TEST(PriorityRing, RefusedPushDoesNotTakeTheItem) {
  struct Token {
    int v = 0;
    explicit Token(int x) : v(x) {}
    Token(Token&& o) noexcept : v(o.v) { o.v = 0; }
    Token& operator=(Token&& o) noexcept {
      v = o.v;
      o.v = 0;
      return *this;
    }
  };
  tern::PriorityRing<Token, 1, 2> q;
  ASSERT_EQ(q.push(Token(1), 0), Errc::ok);
  Token kept(7);
  EXPECT_EQ(q.push(std::move(kept), 1), Errc::full);
  EXPECT_EQ(kept.v, 7);
  EXPECT_EQ(q.pop()->v, 1);
  EXPECT_EQ(q.push(std::move(kept), 1), Errc::ok);
  EXPECT_EQ(kept.v, 0);
  EXPECT_EQ(q.pop()->v, 7);
  // What a by-value push accepted still works: a braced list, a volatile value.
  struct Pair {
    int a = 0, b = 0;
  };
  tern::PriorityRing<Pair, 2, 2> pairs;
  EXPECT_EQ(pairs.push({1, 2}, 1), Errc::ok);
  EXPECT_EQ(pairs.pop()->b, 2);
  tern::PriorityRing<int, 2, 2> ints;
  volatile int reg = 5;
  EXPECT_EQ(ints.push(reg), Errc::ok);
  EXPECT_EQ(*ints.pop(), 5);
}

TEST(PriorityRing, TakeFirstSearchesHighestLevelFirst) {
  tern::PriorityRing<int, 8, 3> q;
  ASSERT_EQ(q.push(4, 0), Errc::ok);
  ASSERT_EQ(q.push(6, 1), Errc::ok);
  ASSERT_EQ(q.push(8, 1), Errc::ok);
  ASSERT_EQ(q.push(3, 2), Errc::ok);
  auto even = q.take_first([](const int& v) { return v % 2 == 0; });
  EXPECT_EQ(*even, 6);
  EXPECT_EQ(q.size_at(1), 1u);
  int expect[] = {3, 8, 4};
  for (int e : expect) EXPECT_EQ(*q.pop(), e);
  // Slots came back to the free list: we can fill it again.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(q.push(i, static_cast<unsigned>(i % 3)), Errc::ok);
  EXPECT_TRUE(q.full());
}

}  // namespace
