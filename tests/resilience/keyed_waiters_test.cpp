// KeyedWaiters rules, with a manual clock (portable: runs on every port).
#include "tern/resilience/keyed_waiters.hpp"

#include <cstdio>
#include <cstring>

#include "tern/core/rng.hpp"
#include "manual_reactor.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::ManualClock;
using tern::Reactor;
using tern::Result;
using tern::WaitEnd;
using tern::WaitOutcome;

using Fixture = tern_test::ManualReactor;

using Waits = tern::KeyedWaiters<4, 16, 64>;

struct Outcome {
  int calls = 0;
  Errc err = Errc::ok;
  WaitEnd how = WaitEnd::resolved;
  char value[72] = {};
};

Waits::Callback record(Outcome* o) {
  return [o](Result<WaitOutcome> r) {
    ++o->calls;
    o->err = r.ok() ? Errc::ok : r.error();
    if (!r.ok()) return;
    o->how = r->how;
    std::snprintf(o->value, sizeof o->value, "%.*s",
                  static_cast<int>(r->value.size()), r->value.data());
  };
}

TEST(KeyedWaiters, ResolveDeliversTheValueOnce) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome o;
  ASSERT_EQ(waits.wait("plan-1", tern::seconds(300), "rejected", record(&o)),
            Errc::ok);
  EXPECT_TRUE(waits.waiting("plan-1"));
  EXPECT_EQ(o.calls, 0);
  EXPECT_EQ(waits.resolve("plan-1", "approved"), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.how, WaitEnd::resolved);
  EXPECT_STREQ(o.value, "approved");
  EXPECT_FALSE(waits.waiting("plan-1"));
  f.advance(tern::seconds(400));  // the timeout passing later changes nothing
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(waits.stats().resolved, 1u);
  EXPECT_EQ(waits.size(), 0u);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(KeyedWaiters, ApprovalDefaultsToRejectedAfter300Seconds) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome o;
  ASSERT_EQ(waits.wait("plan-7", tern::kApprovalTimeout, tern::kApprovalDefault,
                       record(&o)),
            Errc::ok);
  auto deadline = waits.deadline("plan-7");
  ASSERT_TRUE(deadline.ok());
  EXPECT_EQ(*deadline, tern::Instant(0) + tern::seconds(300));
  f.advance(tern::seconds(299));
  EXPECT_EQ(o.calls, 0);
  f.advance(tern::seconds(1));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::ok);
  EXPECT_EQ(o.how, WaitEnd::defaulted);
  EXPECT_STREQ(o.value, "rejected");
  EXPECT_EQ(waits.stats().defaulted, 1u);
  EXPECT_EQ(waits.resolve("plan-7", "approved"), Errc::late);
}

TEST(KeyedWaiters, ClarificationDefaultsToNoResponseReceived) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome o;
  ASSERT_EQ(waits.wait("clarify-3", tern::seconds(60),
                       tern::kClarificationDefault, record(&o)),
            Errc::ok);
  f.advance(tern::seconds(60));
  EXPECT_EQ(o.how, WaitEnd::defaulted);
  EXPECT_STREQ(o.value, "No response received within timeout period.");
}

TEST(KeyedWaiters, ResolveAfterTheTimeoutIsLate) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome o;
  ASSERT_EQ(waits.wait("plan-2", tern::seconds(5), "rejected", record(&o)),
            Errc::ok);
  f.advance(tern::seconds(5));
  EXPECT_EQ(waits.resolve("plan-2", "approved"), Errc::late);
  EXPECT_EQ(o.calls, 1);
  EXPECT_STREQ(o.value, "rejected");
  EXPECT_EQ(waits.stats().late, 1u);
}

TEST(KeyedWaiters, ResolveTwiceIsLate) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome o;
  ASSERT_EQ(waits.wait("q", tern::seconds(5), "", record(&o)), Errc::ok);
  EXPECT_EQ(waits.resolve("q", "yes"), Errc::ok);
  EXPECT_EQ(waits.resolve("q", "no"), Errc::late);
  EXPECT_EQ(o.calls, 1);
  EXPECT_STREQ(o.value, "yes");
  EXPECT_EQ(waits.stats().late, 1u);
}

TEST(KeyedWaiters, UnknownKeyIsNotFound) {
  Fixture f;
  Waits waits(f.reactor);
  EXPECT_EQ(waits.resolve("nobody", "x"), Errc::not_found);
  EXPECT_EQ(waits.resolve("", "x"), Errc::not_found);
  EXPECT_EQ(waits.cancel("nobody"), Errc::not_found);
  EXPECT_EQ(waits.stats().not_found, 2u);
  EXPECT_FALSE(waits.waiting("nobody"));
  EXPECT_EQ(waits.deadline("nobody").error(), Errc::not_found);
}

TEST(KeyedWaiters, OverLongKeyOrValueIsTooLarge) {
  Fixture f;
  Waits waits(f.reactor);  // keys up to 16 bytes, values up to 64
  Outcome o;
  const char* long_key = "0123456789abcdefX";  // 17 bytes
  EXPECT_EQ(waits.wait(long_key, tern::seconds(1), "", record(&o)),
            Errc::too_large);
  EXPECT_EQ(waits.resolve(long_key, "v"), Errc::too_large);
  EXPECT_FALSE(waits.waiting(long_key));
  ASSERT_EQ(waits.wait("0123456789abcdef", tern::seconds(1), "d", record(&o)),
            Errc::ok);
  char body[65];
  std::memset(body, 'b', sizeof body);
  const std::string_view too_long(body, sizeof body);
  EXPECT_EQ(waits.wait("other", tern::seconds(1), too_long, record(&o)),
            Errc::too_large);
  EXPECT_EQ(waits.resolve("0123456789abcdef", too_long), Errc::too_large);
  EXPECT_TRUE(waits.waiting("0123456789abcdef"));  // the wait goes on
  EXPECT_EQ(waits.resolve("0123456789abcdef", too_long.substr(1)), Errc::ok);
  EXPECT_EQ(std::strlen(o.value), 64u);
  EXPECT_EQ(waits.stats().too_large, 4u);
  EXPECT_EQ(o.calls, 1);
}

TEST(KeyedWaiters, FullTableReturnsFullAndKeepsItsWaits) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome o[5];
  const char* keys[] = {"a", "b", "c", "d", "e"};
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(waits.wait(keys[i], tern::seconds(10), "", record(&o[i])),
              Errc::ok);
  EXPECT_TRUE(waits.full());
  EXPECT_EQ(waits.wait("e", tern::seconds(10), "", record(&o[4])), Errc::full);
  EXPECT_EQ(waits.stats().rejected, 1u);
  EXPECT_FALSE(waits.waiting("e"));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(waits.waiting(keys[i]));
  EXPECT_EQ(waits.resolve("b", "ok"), Errc::ok);
  EXPECT_EQ(waits.wait("e", tern::seconds(10), "", record(&o[4])), Errc::ok);
  EXPECT_EQ(waits.stats().high_water, 4u);
}

TEST(KeyedWaiters, SecondWaitOnTheSameKeyIsBusy) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome a, b;
  ASSERT_EQ(waits.wait("k", tern::seconds(10), "", record(&a)), Errc::ok);
  EXPECT_EQ(waits.wait("k", tern::seconds(10), "", record(&b)), Errc::busy);
  EXPECT_EQ(waits.stats().busy, 1u);
  EXPECT_EQ(waits.wait("", tern::seconds(10), "", record(&b)),
            Errc::invalid_argument);
  EXPECT_EQ(waits.wait("j", tern::seconds(10), "", nullptr),
            Errc::invalid_argument);
  EXPECT_EQ(waits.size(), 1u);
}

TEST(KeyedWaiters, CancelAndCancelAllByOwnerEndWithCancelled) {
  Fixture f;
  Outcome a, b, c;
  int owner = 0;
  {
    Waits waits(f.reactor);
    ASSERT_EQ(waits.wait("a", tern::seconds(10), "", record(&a)), Errc::ok);
    ASSERT_EQ(waits.wait("b", tern::seconds(10), "", record(&b), &owner),
              Errc::ok);
    ASSERT_EQ(waits.wait("c", tern::Duration::max(), "", record(&c), &owner),
              Errc::ok);
    EXPECT_EQ(waits.deadline("c").value_or(tern::Instant(0)),
              tern::Instant::never());
    EXPECT_EQ(waits.cancel("a"), Errc::ok);
    EXPECT_EQ(a.err, Errc::cancelled);
    EXPECT_EQ(waits.cancel("a"), Errc::late);
    EXPECT_EQ(waits.resolve("a", "x"), Errc::late);
    EXPECT_EQ(waits.cancel_all(&owner), 2u);
    EXPECT_EQ(waits.size(), 0u);
    ASSERT_EQ(waits.wait("d", tern::seconds(10), "", record(&a)), Errc::ok);
  }  // destruction cancels "d"
  EXPECT_EQ(a.calls, 2);
  EXPECT_EQ(b.err, Errc::cancelled);
  EXPECT_EQ(c.err, Errc::cancelled);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(KeyedWaiters, CallbackMayWaitOnTheSameKeyAgain) {
  Fixture f;
  Waits waits(f.reactor);
  struct Inside {
    Waits* waits = nullptr;
    Outcome second;
    Errc rewait = Errc::failed;
    Errc resolve_inside = Errc::failed;
    char seen[16] = {};
  } in;
  in.waits = &waits;
  ASSERT_EQ(waits.wait("k", tern::seconds(1), "",
                       [&in](Result<WaitOutcome> r) {
                         std::snprintf(in.seen, sizeof in.seen, "%.*s",
                                       static_cast<int>(r->value.size()),
                                       r->value.data());
                         in.resolve_inside = in.waits->resolve(
                             "k", "again");  // ended before on_done: late
                         in.rewait = in.waits->wait("k", tern::seconds(1),
                                                    "dflt", record(&in.second));
                       }),
            Errc::ok);
  EXPECT_EQ(waits.resolve("k", "first"), Errc::ok);
  EXPECT_STREQ(in.seen, "first");
  EXPECT_EQ(in.resolve_inside, Errc::late);
  EXPECT_EQ(in.rewait, Errc::ok);
  EXPECT_TRUE(waits.waiting("k"));
  f.advance(tern::seconds(1));
  EXPECT_STREQ(in.second.value, "dflt");
}

// The ended wait's slot is free when on_done runs: a full table takes a new wait
// from inside it, and on_done may destroy the table that called it.
TEST(KeyedWaiters, OnDoneRunsWithItsSlotAlreadyFree) {
  Fixture f;
  using One = tern::KeyedWaiters<1, 16, 64>;
  One one(f.reactor);
  Outcome next;
  Errc rewait = Errc::failed;
  char seen[16] = {};
  ASSERT_EQ(one.wait("a", tern::ms(10), "dflt",
                     [&](Result<WaitOutcome> r) {
                       std::snprintf(seen, sizeof seen, "%.*s", static_cast<int>(r->value.size()),
                                     r->value.data());
                       rewait = one.wait("b", tern::ms(10), "b-dflt", record(&next));
                     }),
            Errc::ok);
  f.advance(tern::ms(10));
  EXPECT_STREQ(seen, "dflt");
  EXPECT_EQ(rewait, Errc::ok);
  EXPECT_TRUE(one.waiting("b"));
  f.advance(tern::ms(10));
  EXPECT_EQ(next.calls, 1);
  EXPECT_STREQ(next.value, "b-dflt");

  // A table destroyed by the callback it runs (ASan reports a write after free if
  // end() touches the slot afterwards).
  auto* owned = new One(f.reactor);
  bool ran = false;
  ASSERT_EQ(owned->wait("c", tern::ms(10), "", [&](Result<WaitOutcome>) {
    ran = true;
    delete owned;
  }), Errc::ok);
  EXPECT_EQ(owned->resolve("c", "yes"), Errc::ok);
  EXPECT_TRUE(ran);
}

// A table on the heap that an on_done run by cancel_all() deletes: under ASan,
// anything the loop touches afterwards is a heap-use-after-free.
TEST(KeyedWaiters, OnDoneRunByCancelAllMayDestroyTheTable) {
  Fixture f;
  struct Doomed {
    Waits* waits = nullptr;
    int calls = 0;
    Errc errs[2] = {};
    Waits::Callback done() {
      return [this](Result<WaitOutcome> r) {
        if (calls < 2) errs[calls] = r.ok() ? Errc::ok : r.error();
        ++calls;
        if (Waits* w = waits) {
          waits = nullptr;  // the callbacks the destructor runs must not delete it again
          delete w;
        }
      };
    }
  } d;
  d.waits = new Waits(f.reactor);
  ASSERT_EQ(d.waits->wait("a", tern::seconds(1), "", d.done()), Errc::ok);
  ASSERT_EQ(d.waits->wait("b", tern::seconds(1), "", d.done()), Errc::ok);
  EXPECT_EQ(d.waits->cancel_all(), 1u);  // the destructor cancelled the other
  EXPECT_EQ(d.waits, nullptr);
  EXPECT_EQ(d.calls, 2);
  EXPECT_EQ(d.errs[0], Errc::cancelled);
  EXPECT_EQ(d.errs[1], Errc::cancelled);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(KeyedWaiters, WaitFromACallbackRunByTheDestructorIsRefused) {
  Fixture f;
  Errc again = Errc::ok;
  Outcome second;
  {
    Waits waits(f.reactor);
    Waits* w = &waits;
    ASSERT_EQ(waits.wait("k", tern::seconds(1), "",
                         [&, w](Result<WaitOutcome>) {
                           again = w->wait("k", tern::seconds(1), "", record(&second));
                         }),
              Errc::ok);
  }
  EXPECT_EQ(again, Errc::shutdown);
  EXPECT_EQ(second.calls, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(KeyedWaiters, EndedKeysAreRememberedOnlyInTheRecentRing) {
  Fixture f;
  tern::KeyedWaiters<2, 8, 8, 2> waits(
      f.reactor);  // remembers the last 2 ended keys
  auto ignore = [](Result<WaitOutcome>) {};
  for (const char* k : {"k1", "k2", "k3"}) {
    ASSERT_EQ(waits.wait(k, tern::seconds(1), "", ignore), Errc::ok);
    ASSERT_EQ(waits.resolve(k, ""), Errc::ok);
  }
  EXPECT_EQ(waits.resolve("k1", ""), Errc::not_found);  // forgotten
  EXPECT_EQ(waits.resolve("k2", ""), Errc::late);
  EXPECT_EQ(waits.resolve("k3", ""), Errc::late);
}

// The open-addressing index against a plain array: random waits, resolves,
// cancels and timeouts over a small key space, so probe runs collide, wrap and
// get shifted back on deletion; after every step each key must be found exactly
// when the reference has it.
TEST(KeyedWaiters, IndexAgreesWithAReferenceUnderRandomChurn) {
  constexpr int kKeys = 40;
  constexpr std::size_t kCap = 16;
  Fixture f;
  tern::KeyedWaiters<kCap, 8, 8> waits(f.reactor);
  tern::Rng rng(2024);
  char names[kKeys][8];
  for (int k = 0; k < kKeys; ++k)
    std::snprintf(names[k], sizeof names[k], "key%d", k);
  struct Ref {
    bool waiting = false;
    std::int64_t deadline_ms = 0;
    int ended = 0;     // outcomes seen by the callback
    int expected = 0;  // outcomes the reference predicts
  } ref[kKeys];
  std::size_t open = 0;
  std::int64_t now_ms = 0;
  const int steps = 20000 / TERN_TEST_SCALE;
  for (int step = 0; step < steps; ++step) {
    const int k = static_cast<int>(rng.below(kKeys));
    const std::string_view key(names[k]);
    switch (rng.below(5)) {
      case 0:
      case 1: {
        const std::int64_t timeout = rng.between(1, 40);
        Errc e = waits.wait(key, tern::ms(timeout), "d",
                            [&ref, k](Result<WaitOutcome>) { ++ref[k].ended; });
        if (ref[k].waiting) {
          ASSERT_EQ(e, Errc::busy) << "step " << step;
        } else if (open == kCap) {
          ASSERT_EQ(e, Errc::full) << "step " << step;
        } else {
          ASSERT_EQ(e, Errc::ok) << "step " << step;
          ref[k] = Ref{true, now_ms + timeout, ref[k].ended, ref[k].expected};
          ++open;
        }
        break;
      }
      case 2: {
        Errc e = waits.resolve(key, "v");
        if (ref[k].waiting) {
          ASSERT_EQ(e, Errc::ok) << "step " << step;
          ref[k].waiting = false;
          ++ref[k].expected;
          --open;
        } else {
          ASSERT_NE(e, Errc::ok) << "step " << step;
        }
        break;
      }
      case 3: {
        Errc e = waits.cancel(key);
        if (ref[k].waiting) {
          ASSERT_EQ(e, Errc::ok) << "step " << step;
          ref[k].waiting = false;
          ++ref[k].expected;
          --open;
        } else {
          ASSERT_NE(e, Errc::ok) << "step " << step;
        }
        break;
      }
      default: {
        const std::int64_t dt = rng.between(0, 3);
        now_ms += dt;
        f.advance(tern::ms(dt));
        for (Ref& r : ref) {
          if (r.waiting && r.deadline_ms <= now_ms) {
            r.waiting = false;
            ++r.expected;
            --open;
          }
        }
        break;
      }
    }
    for (int j = 0; j < kKeys; ++j) {
      ASSERT_EQ(waits.waiting(names[j]), ref[j].waiting)
          << "step " << step << " key " << j;
      ASSERT_EQ(ref[j].ended, ref[j].expected)
          << "step " << step << " key " << j;
    }
    ASSERT_EQ(waits.size(), open) << "step " << step;
  }
  EXPECT_GT(waits.stats().resolved, 100u / TERN_TEST_SCALE);
  EXPECT_GT(waits.stats().defaulted, 100u / TERN_TEST_SCALE);
  EXPECT_GT(waits.stats().rejected, 0u);
}

// 30 days at 1 ms ticks: within the wheel's reach on Linux, beyond it on Cortex-M,
// where a timer keeps its due tick in 32 bits (2^31 - 2^20 ticks: 24.8 days).
TEST(KeyedWaiters, ATimeoutBeyondTheWheelsReachIsRefusedWhereThereIsOne) {
  Fixture f;
  Waits waits(f.reactor);
  Outcome far_o, open_o;
  const tern::Duration far = tern::seconds(std::int64_t{30} * 24 * 3600);
  const bool taken = tern::TimerWheel::kExactDeadlines;
  EXPECT_EQ(waits.wait("plan-far", far, "rejected", record(&far_o)),
            taken ? Errc::ok : Errc::invalid_argument);
  EXPECT_EQ(waits.waiting("plan-far"), taken);
  EXPECT_EQ(waits.size(), taken ? 1u : 0u);
  // No timeout at all is taken everywhere.
  EXPECT_EQ(waits.wait("plan-open", tern::Duration::max(), "rejected", record(&open_o)),
            Errc::ok);
  EXPECT_EQ(waits.resolve("plan-open", "approved"), Errc::ok);
  EXPECT_STREQ(open_o.value, "approved");
  EXPECT_EQ(waits.resolve("plan-far", "approved"), taken ? Errc::ok : Errc::not_found);
  EXPECT_EQ(far_o.calls, taken ? 1 : 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

}  // namespace
