#include "tern/core/inplace_function.hpp"

#include "tern/core/errc.hpp"
#include "tern/core/rng.hpp"
#include "tern_test.hpp"

namespace {

TEST(InplaceFunction, CallsAndMovesCapture) {
  int hits = 0;
  tern::InplaceFunction<int(int), 16> f = [&hits](int x) {
    ++hits;
    return x * 2;
  };
  EXPECT_EQ(f(21), 42);
  tern::InplaceFunction<int(int), 16> g = std::move(f);
  EXPECT_FALSE(static_cast<bool>(f));
  EXPECT_EQ(g(1), 2);
  EXPECT_EQ(hits, 2);
  g = nullptr;
  EXPECT_FALSE(static_cast<bool>(g));
}

struct Probe {
  int* destroyed;
  explicit Probe(int* d) : destroyed(d) {}
  Probe(Probe&& o) noexcept : destroyed(o.destroyed) { o.destroyed = nullptr; }
  ~Probe() {
    if (destroyed) ++*destroyed;
  }
  void operator()() {}
};

TEST(InplaceFunction, DestroysCaptureExactlyOnce) {
  int destroyed = 0;
  {
    tern::InplaceFunction<void(), 16> f = Probe(&destroyed);
    tern::InplaceFunction<void(), 16> g = std::move(f);
    g();
  }
  EXPECT_EQ(destroyed, 1);
}

TEST(Errc, NamesAreDistinct) {
  EXPECT_STREQ(tern::errc_name(tern::Errc::full), "full");
  EXPECT_STREQ(tern::errc_name(tern::Errc::late), "late");
  EXPECT_STREQ(tern::errc_name(tern::Errc::timeout), "timeout");
}

TEST(Result, HoldsValueOrError) {
  tern::Result<int> ok(5);
  tern::Result<int> bad(tern::Errc::timeout);
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 5);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), tern::Errc::timeout);
  EXPECT_EQ(bad.value_or(9), 9);
}

TEST(Rng, SameSeedSameSequenceAndBoundsHold) {
  tern::Rng a(7), b(7), c(8);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    std::uint32_t x = a.next_u32();
    EXPECT_EQ(x, b.next_u32());
    if (x != c.next_u32()) differs = true;
    std::int64_t v = a.between(-5, 5);
    b.between(-5, 5);
    EXPECT_GE(v, -5);
    EXPECT_LE(v, 5);
  }
  EXPECT_TRUE(differs);
}

}  // namespace
