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

// A destructor that releases its own handle again (an owner's on-close hook) finds it
// already released: the object is destroyed once and the slot freed once (it used to be
// freed twice, so two later acquires shared a slot).
TEST(Pool, ADestructorReleasingItsOwnHandleAgainIsRefused) {
  struct Closes;
  using P = tern::Pool<Closes, 2>;
  struct Closes {
    P* pool = nullptr;
    tern::PoolHandle self{};
    int* destroyed = nullptr;
    Errc* again = nullptr;
    ~Closes() {
      ++*destroyed;
      if (pool) *again = pool->release(self);
    }
  };
  P pool;
  int destroyed = 0;
  Errc again = Errc::ok;
  auto h = pool.acquire();
  ASSERT_TRUE(h.ok());
  Closes* c = pool.get(*h);
  c->pool = &pool;
  c->self = *h;
  c->destroyed = &destroyed;
  c->again = &again;
  EXPECT_EQ(pool.release(*h), Errc::ok);
  EXPECT_EQ(destroyed, 1);
  EXPECT_EQ(again, Errc::not_found);
  EXPECT_EQ(pool.in_use(), 0u);
  auto a = pool.acquire();
  auto b = pool.acquire();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->index, b->index);
  for (auto x : {*a, *b}) pool.get(x)->destroyed = &destroyed;
  EXPECT_EQ(pool.acquire().error(), Errc::full);
  EXPECT_EQ(pool.release(*a), Errc::ok);
  EXPECT_EQ(pool.release(*b), Errc::ok);
}

}  // namespace
