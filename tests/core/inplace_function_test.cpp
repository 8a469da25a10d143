#include "tern/core/inplace_function.hpp"

#include <cstdint>
#include <type_traits>

#include "tern/core/errc.hpp"
#include "tern/core/rng.hpp"
#include "tern/core/time.hpp"
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

// Besides its capture an InplaceFunction holds one pointer (to its capture type's
// table): a one-pointer callback is two pointers wide, as a function and context are.
static_assert(sizeof(tern::InplaceFunction<void(), sizeof(void*), alignof(void*)>) ==
              2 * sizeof(void*));

// A trivially copyable capture moves by copying its bytes (no move function); every
// byte of it must arrive, through several moves, an assignment, and into a wider one.
TEST(InplaceFunction, ATriviallyCopyableCaptureMovesWhole) {
  struct Wide {
    std::uint32_t a, b, c;
    std::uint8_t d;
    std::uint64_t operator()() const { return a + b * 3ull + c * 5ull + d * 7ull; }
  };
  static_assert(std::is_trivially_copyable_v<Wide>);
  const std::uint64_t want = 0x11111111u + 0x22222222u * 3ull + 0x33333333u * 5ull + 0x44 * 7ull;
  tern::InplaceFunction<std::uint64_t(), 16, 8> f = Wide{0x11111111u, 0x22222222u, 0x33333333u, 0x44};
  tern::InplaceFunction<std::uint64_t(), 16, 8> g = std::move(f);
  EXPECT_FALSE(static_cast<bool>(f));
  tern::InplaceFunction<std::uint64_t(), 16, 8> h;
  h = std::move(g);
  EXPECT_FALSE(static_cast<bool>(g));
  EXPECT_EQ(h(), want);
  tern::InplaceFunction<std::uint64_t(), 32, 8> wider = std::move(h);  // wraps h
  EXPECT_EQ(wider(), want);
  static int empty_calls = 0;
  empty_calls = 0;
  tern::InplaceFunction<void(), 16> empty_capture = [] { ++empty_calls; };
  tern::InplaceFunction<void(), 16> moved = std::move(empty_capture);
  moved();
  EXPECT_EQ(empty_calls, 1);
  int calls = 0;
  tern::InplaceFunction<void(), 16> counted = [&calls] { ++calls; };
  tern::InplaceFunction<void(), 16> counted_moved = std::move(counted);
  counted_moved();
  EXPECT_EQ(calls, 1);
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

// A null function pointer or an empty InplaceFunction of another size makes an empty
// one, so a table that checks `if (!on_done)` refuses it instead of calling null later.
TEST(InplaceFunction, ANullFunctionPointerOrAnEmptyOtherSizeIsEmpty) {
  void (*null_fn)(int) = nullptr;
  tern::InplaceFunction<void(int)> a = null_fn;
  EXPECT_FALSE(static_cast<bool>(a));
  tern::InplaceFunction<void(int)> narrow;
  tern::InplaceFunction<void(int), 8 * sizeof(void*)> b = std::move(narrow);
  EXPECT_FALSE(static_cast<bool>(b));
  static int got = 0;
  void (*fn)(int) = [](int v) { got = v; };
  tern::InplaceFunction<void(int)> c = fn;
  ASSERT_TRUE(static_cast<bool>(c));
  c(5);
  EXPECT_EQ(got, 5);
}

// A void InplaceFunction takes a callable that returns something and drops the result.
TEST(InplaceFunction, AVoidFunctionTakesACallableThatReturnsAValue) {
  int calls = 0;
  tern::InplaceFunction<void()> f = [&calls] { return ++calls; };
  f();
  f();
  EXPECT_EQ(calls, 2);
}

// between() over spans wider than INT64_MAX, the whole range included, stays in range
// with no signed overflow (UBSan in the sanitizer build).
TEST(Rng, BetweenCoversSpansWiderThanInt64Max) {
  tern::Rng rng(7);
  bool negative = false, positive = false;
  for (int i = 0; i < 1000; ++i) {
    const std::int64_t v = rng.between(INT64_MIN, INT64_MAX);
    negative |= v < 0;
    positive |= v > 0;
    const std::int64_t w = rng.between(-1, INT64_MAX);
    EXPECT_GE(w, -1);
  }
  EXPECT_TRUE(negative && positive);  // not always lo
  EXPECT_EQ(rng.between(5, 5), 5);
}

// Instant arithmetic saturates: a deadline too far to count is never(), not a wrap into
// the past.
TEST(Instant, AdditionThatWouldOverflowSaturatesAtNever) {
  using tern::Duration;
  using tern::Instant;
  EXPECT_EQ(Instant(1) + Duration(INT64_MAX), Instant::never());
  EXPECT_EQ(Instant::never() + Duration(INT64_MAX), Instant::never());
  EXPECT_EQ(Instant(-5) + Duration(INT64_MIN), Instant(INT64_MIN));
  EXPECT_EQ(Instant(1) - Duration(INT64_MIN), Instant::never());
  EXPECT_EQ(Instant(1000) + tern::ms(2), Instant(3000));
  EXPECT_EQ(Instant(1000) - tern::ms(2), Instant(-1000));
  Instant t(10);
  t += Duration(INT64_MAX);
  EXPECT_EQ(t, Instant::never());
}

}  // namespace
