#include "tern/core/pool.hpp"

#include "tern_test.hpp"

namespace {

using tern::Errc;

TEST(Pool, StaleHandleIsDetectedAfterReuse) {
  tern::Pool<int, 2> pool;
  auto a = pool.acquire(1);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*pool.get(*a), 1);
  EXPECT_EQ(pool.release(*a), Errc::ok);
  EXPECT_EQ(pool.get(*a), nullptr);
  EXPECT_EQ(pool.release(*a), Errc::not_found);
  auto b = pool.acquire(2);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->index, a->index);  // same slot, new generation
  EXPECT_EQ(pool.get(*a), nullptr);
  EXPECT_EQ(*pool.get(*b), 2);
}

TEST(Pool, FullReturnsFullAndKeepsObjects) {
  tern::Pool<int, 2> pool;
  auto a = pool.acquire(1);
  auto b = pool.acquire(2);
  auto c = pool.acquire(3);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(c.error(), Errc::full);
  EXPECT_EQ(pool.rejected(), 1u);
  EXPECT_EQ(*pool.get(*a), 1);
  EXPECT_EQ(*pool.get(*b), 2);
  EXPECT_EQ(pool.get(tern::PoolHandle{}), nullptr);
}

}  // namespace
