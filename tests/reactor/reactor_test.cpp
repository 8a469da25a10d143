// Reactor behaviour with a manual clock: never sleeps, runs on every port.
#include "tern/reactor/reactor.hpp"

#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::Instant;
using tern::ManualClock;
using tern::Reactor;
using tern::ReactorConfig;

ReactorConfig manual(const ManualClock& clock, std::size_t timers = 64, std::size_t posted = 16) {
  ReactorConfig c;
  c.manual_clock = &clock;
  c.max_timers = timers;
  c.max_posted = posted;
  c.max_watches = 4;
  return c;
}

TEST(Reactor, TimersFireInDeadlineOrderAndNotBefore) {
  ManualClock clock;
  Reactor r(manual(clock));
  // Timer callbacks capture one pointer, so the tests run on the Cortex-M port too.
  struct Log {
    int order[3] = {};
    int n = 0;
  } log;
  ASSERT_TRUE(r.after(tern::ms(30), [l = &log] { l->order[l->n++] = 30; }).ok());
  ASSERT_TRUE(r.after(tern::ms(10), [l = &log] { l->order[l->n++] = 10; }).ok());
  ASSERT_TRUE(r.after(tern::ms(20), [l = &log] { l->order[l->n++] = 20; }).ok());
  clock.advance(tern::ms(9));
  r.run_until_idle();
  EXPECT_EQ(log.n, 0);
  clock.advance(tern::ms(21));
  r.run_until_idle();
  ASSERT_EQ(log.n, 3);
  EXPECT_EQ(log.order[0], 10);
  EXPECT_EQ(log.order[1], 20);
  EXPECT_EQ(log.order[2], 30);
}

TEST(Reactor, PostedCallsRunNextTurnInOrder) {
  ManualClock clock;
  Reactor r(manual(clock));
  // Posted calls capture one pointer, so the test runs on the Cortex-M port too.
  struct Log {
    Reactor* r;
    int order[4] = {};
    int n = 0;
  } log{&r};
  ASSERT_EQ(r.post([l = &log] {
    l->order[l->n++] = 1;
    // Posted from inside a posted call: must wait for the next turn.
    EXPECT_EQ(l->r->post([l] { l->order[l->n++] = 3; }), Errc::ok);
  }), Errc::ok);
  ASSERT_EQ(r.post([l = &log] { l->order[l->n++] = 2; }), Errc::ok);
  EXPECT_EQ(log.n, 0);  // nothing runs inside post()
  r.run_once(tern::Duration::zero());
  EXPECT_EQ(log.n, 2);
  r.run_once(tern::Duration::zero());
  ASSERT_EQ(log.n, 3);
  EXPECT_EQ(log.order[0], 1);
  EXPECT_EQ(log.order[1], 2);
  EXPECT_EQ(log.order[2], 3);
}

TEST(Reactor, InTurnIsTrueOnlyInsideCallbacks) {
  ManualClock clock;
  Reactor r(manual(clock));
  struct Seen {
    Reactor* r;
    int in_turn = 0;
  } seen{&r};
  ASSERT_EQ(r.post([s = &seen] { s->in_turn += s->r->in_turn(); }), Errc::ok);
  ASSERT_TRUE(r.after(tern::ms(1), [s = &seen] { s->in_turn += s->r->in_turn(); }).ok());
  EXPECT_FALSE(r.in_turn());
  r.run_once(tern::Duration::zero());
  EXPECT_FALSE(r.in_turn());
  clock.advance(tern::ms(1));
  r.run_until_idle();
  EXPECT_FALSE(r.in_turn());
  EXPECT_EQ(seen.in_turn, 2);
}

TEST(Reactor, PostQueueFullReturnsFullAndKeepsQueued) {
  ManualClock clock;
  Reactor r(manual(clock, 8, 2));
  int ran = 0;
  EXPECT_EQ(r.post([&] { ++ran; }), Errc::ok);
  EXPECT_EQ(r.post([&] { ++ran; }), Errc::ok);
  EXPECT_EQ(r.post([&] { ++ran; }), Errc::full);
  EXPECT_EQ(r.stats().rejected, 1u);
  r.run_until_idle();
  EXPECT_EQ(ran, 2);
}

TEST(Reactor, CancelFromInsideCallbackStopsOtherTimerOnSameTick) {
  ManualClock clock;
  Reactor r(manual(clock));
  struct State {
    int victim_runs = 0;
    tern::TimerHandle victim;
  } st;
  ASSERT_TRUE(r.after(tern::ms(5), [s = &st] { EXPECT_TRUE(s->victim.cancel()); }).ok());
  auto v = r.after(tern::ms(5), [s = &st] { ++s->victim_runs; });
  ASSERT_TRUE(v.ok());
  st.victim = *v;
  clock.advance(tern::ms(5));
  r.run_until_idle();
  EXPECT_EQ(st.victim_runs, 0);
  EXPECT_FALSE(st.victim.pending());
  EXPECT_FALSE(st.victim.cancel());
}

TEST(Reactor, CallbackMayCancelItsOwnHandleAndRearm) {
  ManualClock clock;
  Reactor r(manual(clock));
  struct State {
    Reactor* r;
    int runs = 0;
    tern::TimerHandle self;
    void arm() {
      auto h = r->after(tern::ms(1), [this] {
        ++runs;
        EXPECT_FALSE(self.cancel());  // already fired: stale
        if (runs < 5) arm();
      });
      ASSERT_TRUE(h.ok());
      self = *h;
    }
  } st{&r, 0, {}};
  st.arm();
  for (int i = 0; i < 10; ++i) {
    clock.advance(tern::ms(1));
    r.run_until_idle();
  }
  EXPECT_EQ(st.runs, 5);
}

// A timer's entry is free again when its callback runs: with one entry, the callback
// can arm the next timer in it, and the first timer's handle reads as stale.
TEST(Reactor, TimerCallbackMayReuseItsOwnEntry) {
  ManualClock clock;
  Reactor r(manual(clock, 1));
  struct State {
    Reactor* r;
    tern::TimerHandle first;
    tern::TimerHandle second;
    int runs = 0;
    bool first_stale = false;
  } st{&r, {}, {}};
  auto h = r.after(tern::ms(1), [s = &st] {
    ++s->runs;
    s->first_stale = !s->first.pending() && !s->first.cancel();
    auto again = s->r->after(tern::ms(1), [s] { s->runs += 10; });
    if (again.ok()) s->second = *again;
  });
  ASSERT_TRUE(h.ok());
  st.first = *h;
  EXPECT_EQ(r.after(tern::ms(1), [] {}).error(), Errc::full);
  clock.advance(tern::ms(1));
  r.run_until_idle();
  EXPECT_EQ(st.runs, 1);
  EXPECT_TRUE(st.first_stale);
  EXPECT_TRUE(st.second.pending());
  EXPECT_FALSE(st.first.cancel());  // the old handle must not cancel the new timer
  EXPECT_TRUE(st.second.pending());
  clock.advance(tern::ms(1));
  r.run_until_idle();
  EXPECT_EQ(st.runs, 11);
  EXPECT_EQ(r.stats().timers_fired, 2u);
}

int g_plain_runs = 0;
void plain_timer() { ++g_plain_runs; }

TEST(Reactor, FunctionTimersRunAndANullFunctionIsRefused) {
  ManualClock clock;
  Reactor r(manual(clock));
  g_plain_runs = 0;
  ASSERT_TRUE(r.after(tern::ms(1), plain_timer).ok());
  ASSERT_TRUE(r.after(tern::ms(1), &plain_timer).ok());
  void (*none)() = nullptr;
  EXPECT_EQ(r.after(tern::ms(1), none).error(), Errc::invalid_argument);
  clock.advance(tern::ms(1));
  r.run_until_idle();
  EXPECT_EQ(g_plain_runs, 2);
}

// On ports whose timers take captures wider than a pointer (Linux: four pointers), the
// whole capture is held and survives other timers reusing entries around it.
template <std::size_t CaptureBytes>
void check_wide_captures() {
  if constexpr (CaptureBytes >= 4 * sizeof(void*)) {
    ManualClock clock;
    Reactor r(manual(clock, 4));
    long sums[3] = {};
    for (long i = 0; i < 3; ++i) {
      long* out = &sums[i];
      long a = 1 + i, b = 100 * (i + 1), c = 10000 * (i + 1);
      ASSERT_TRUE(r.after(tern::ms(1 + i), [out, a, b, c] { *out = a + b + c; }).ok());
    }
    ASSERT_TRUE(r.after(tern::ms(1), [] {}).ok());
    clock.advance(tern::ms(5));
    r.run_until_idle();
    EXPECT_EQ(sums[0], 10101);
    EXPECT_EQ(sums[1], 20202);
    EXPECT_EQ(sums[2], 30303);

    // A wide capture is copied out before its callback runs: the callback can arm a
    // timer in the same (only) entry and still read its own capture afterwards. A
    // 64-bit value rides along too (8-byte aligned even on 32-bit ARM).
    Reactor one(manual(clock, 1));
    struct Got {
      Reactor* r;
      long first = 0;
      long second = 0;
    } got{&one};
    long a = 111;  // not const: a const capture lets the compiler read it early
    std::int64_t c = 333;
    ASSERT_TRUE(one.after(tern::ms(1), [g = &got, a, c] {
      EXPECT_TRUE(g->r->after(tern::ms(1), [g, x = -1L, z = std::int64_t{-3}] {
        g->second = x + static_cast<long>(z);
      }).ok());
      g->first = a + static_cast<long>(c);  // read after the entry was reused
    }).ok());
    clock.advance(tern::ms(1));
    one.run_until_idle();
    EXPECT_EQ(got.first, 444);
    clock.advance(tern::ms(1));
    one.run_until_idle();
    EXPECT_EQ(got.second, -4);
  }
}

TEST(Reactor, WideCapturesAreHeldWholeWhereThePortAllowsThem) {
  check_wide_captures<Reactor::kTimerCaptureBytes>();
}

TEST(Reactor, StopFromCallbackEndsRun) {
  ManualClock clock;
  Reactor r(manual(clock));
  struct State {
    Reactor* r;
    int after_stop = 0;
  } st{&r};
  ASSERT_EQ(r.post([s = &st] {
    s->r->stop();
    EXPECT_EQ(s->r->post([s] { ++s->after_stop; }), Errc::ok);
  }), Errc::ok);
  r.run();  // returns after the turn in which stop() was called
  EXPECT_EQ(st.after_stop, 0);
  r.run_until_idle();
  EXPECT_EQ(st.after_stop, 1);
}

TEST(Reactor, ManyTimersOnOneTickAllFireInArmingOrder) {
  ManualClock clock;
  constexpr int kCount = 500;
  Reactor r(manual(clock, kCount));
  struct Seen {
    int order[kCount];
    int n = 0;
  };
  static Seen log;
  static int ids[kCount];  // each timer captures a pointer to its id
  log.n = 0;
  for (int i = 0; i < kCount; ++i) {
    ids[i] = i;
    ASSERT_TRUE(r.at(Instant(7000), [id = &ids[i]] { log.order[log.n++] = *id; }).ok());
  }
  EXPECT_EQ(r.after(tern::ms(1), [] {}).error(), Errc::full);
  clock.set(Instant(7000));
  r.run_until_idle();
  ASSERT_EQ(log.n, kCount);
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(log.order[i], i);
  // Every entry came back: the table is usable to capacity again.
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(r.after(tern::ms(1), [] {}).ok());
}

TEST(Reactor, InboxDeliversInOrderAndReportsFull) {
  ManualClock clock;
  Reactor r(manual(clock));
  int got[8] = {};
  int n = 0;
  tern::Inbox<int, 4> inbox(r, [&](int& v) { got[n++] = v; });
  for (int round = 0; round < 3; ++round) {  // wraps the ring several times
    for (int i = 0; i < 4; ++i) ASSERT_EQ(inbox.push(round * 10 + i), Errc::ok);
    EXPECT_EQ(inbox.push(99), Errc::full);
    r.run_until_idle();
    ASSERT_EQ(n, 4);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(got[i], round * 10 + i);
    n = 0;
  }
  EXPECT_EQ(inbox.rejected(), 3u);
}

TEST(Reactor, InboxRefusedPushDoesNotTakeTheItem) {
  ManualClock clock;
  Reactor r(manual(clock));
  int ran = 0;
  tern::Inbox<Reactor::Callback, 1> inbox(r, [](Reactor::Callback& cb) { cb(); });
  ASSERT_EQ(inbox.push(Reactor::Callback([&] { ++ran; })), Errc::ok);
  Reactor::Callback kept([&] { ran += 10; });
  EXPECT_EQ(inbox.push(std::move(kept)), Errc::full);
  EXPECT_TRUE(static_cast<bool>(kept));  // still the caller's
  r.run_until_idle();
  EXPECT_EQ(ran, 1);
  EXPECT_EQ(inbox.push(std::move(kept)), Errc::ok);
  r.run_until_idle();
  EXPECT_EQ(ran, 11);
}

TEST(Reactor, CallInboxRunsCallsOnTheReactor) {
  ManualClock clock;
  Reactor r(manual(clock));
  int ran = 0;
  ASSERT_EQ(r.inbox().push([&ran] { ++ran; }), Errc::ok);
  ASSERT_EQ(r.inbox().push([&ran] { ran *= 10; }), Errc::ok);
  r.run_until_idle();
  EXPECT_EQ(ran, 10);
}

TEST(Reactor, IdleReactorWaitsForTheNextDueTimerOnly) {
  ManualClock clock;
  Reactor r(manual(clock, 1000));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(r.after(tern::seconds(3600) + tern::ms(i), [] {}).ok());
  }
  EXPECT_EQ(r.wheel().next_expiry(), Instant(0) + tern::seconds(3600));
  clock.advance(tern::seconds(3599));
  EXPECT_EQ(r.run_until_idle(), 0u);
  clock.advance(tern::seconds(1));
  EXPECT_EQ(r.run_until_idle(), 1u);
}

TEST(Reactor, InvalidArgumentsAreRefused) {
  ManualClock clock;
  Reactor r(manual(clock));
  EXPECT_EQ(r.post(nullptr), Errc::invalid_argument);
  EXPECT_EQ(r.after(tern::ms(1), nullptr).error(), Errc::invalid_argument);
  EXPECT_EQ(r.watch(-1, tern::kReadable, [](unsigned) {}).error(), Errc::invalid_argument);
  EXPECT_EQ(r.unwatch(tern::WatchHandle{}), Errc::not_found);
}

// 30 days at 1 ms ticks: within the wheel's reach on Linux, beyond it on Cortex-M
// (2^31 - 2^20 ticks: 24.8 days), where at() and after() refuse it.
TEST(Reactor, ATimerBeyondTheWheelsReachIsRefusedWhereThereIsOne) {
  ManualClock clock;
  Reactor r(manual(clock));
  int fired = 0;
  const tern::Duration far = tern::seconds(std::int64_t{30} * 24 * 3600);
  auto h = r.after(far, [f = &fired] { ++*f; });
  if (tern::TimerWheel::kExactDeadlines) {
    ASSERT_TRUE(h.ok());
    EXPECT_TRUE(h->cancel());
  } else {
    EXPECT_EQ(h.error(), Errc::invalid_argument);
    EXPECT_EQ(r.stats().rejected, 0u);  // not counted as a full table
  }
  EXPECT_TRUE(r.wheel().empty());
  // The farthest it reaches is taken, and fires then.
  const Instant last = r.now() + tern::ms(static_cast<std::int64_t>(
                                     tern::TimerWheel::kExactDeadlines ? 1000000
                                                                       : tern::TimerWheel::kMaxTicksAhead));
  ASSERT_TRUE(r.at(last, [f = &fired] { ++*f; }).ok());
  clock.advance(last - r.now() - tern::ms(1));
  r.run_until_idle();
  EXPECT_EQ(fired, 0);
  clock.advance(tern::ms(1));
  r.run_until_idle();
  EXPECT_EQ(fired, 1);
}

}  // namespace
