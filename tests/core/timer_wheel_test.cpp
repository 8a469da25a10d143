#include "tern/core/timer_wheel.hpp"

#include <map>
#include <utility>

#include "tern/core/rng.hpp"
#include "tern_test.hpp"

namespace {

using tern::Instant;
using tern::Timer;
using tern::TimerWheel;

struct Fired {
  int count = 0;
  static void bump(void* ctx) { ++static_cast<Fired*>(ctx)->count; }
};

TEST(TimerWheel, FiresAtFirstTickAtOrAfterDeadlineNeverEarly) {
  TimerWheel wheel(Instant(0), tern::ms(1));
  Fired f;
  Timer t(&Fired::bump, &f);
  wheel.arm(t, Instant(2500));  // 2.5 ms -> due at the 3 ms boundary
  EXPECT_EQ(wheel.next_expiry(), Instant(3000));
  EXPECT_EQ(wheel.advance(Instant(2999)), 0u);
  EXPECT_EQ(f.count, 0);
  EXPECT_EQ(wheel.advance(Instant(3000)), 1u);
  EXPECT_EQ(f.count, 1);
  EXPECT_FALSE(t.armed());
  EXPECT_EQ(wheel.next_expiry(), Instant::never());
}

TEST(TimerWheel, CancelledTimerNeverFires) {
  TimerWheel wheel;
  Fired f;
  Timer t(&Fired::bump, &f);
  wheel.arm(t, Instant(5000));
  EXPECT_TRUE(wheel.cancel(t));
  EXPECT_FALSE(wheel.cancel(t));
  wheel.advance(Instant(1000000));
  EXPECT_EQ(f.count, 0);
  EXPECT_TRUE(wheel.empty());
}

TEST(TimerWheel, SameTickFiresInArmingOrderAcrossLevels) {
  TimerWheel wheel;
  static int order[4];
  static int n;
  n = 0;
  struct Tag {
    int id;
    static void fire(void* c) { order[n++] = static_cast<Tag*>(c)->id; }
  } tags[4] = {{0}, {1}, {2}, {3}};
  Timer t0(&Tag::fire, &tags[0]), t1(&Tag::fire, &tags[1]), t2(&Tag::fire, &tags[2]),
      t3(&Tag::fire, &tags[3]);
  // t0 and t1 start far away (high level), t2 and t3 are armed later, nearby.
  wheel.arm(t0, Instant(300000000));
  wheel.arm(t1, Instant(300000000));
  wheel.advance(Instant(299990000));
  wheel.arm(t2, Instant(300000000));
  wheel.arm(t3, Instant(300000000));
  wheel.advance(Instant(300000000));
  ASSERT_EQ(n, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(order[i], i);
}

TEST(TimerWheel, NextExpiryIsExactForFarTimersWithoutWakingEarly) {
  TimerWheel wheel;
  Fired f;
  Timer a(&Fired::bump, &f), b(&Fired::bump, &f);
  wheel.arm(a, Instant(300000000) + tern::us(1));  // 300 s + 1 us
  wheel.arm(b, Instant(400000000));
  EXPECT_EQ(wheel.next_expiry(), Instant(300001000));
  EXPECT_EQ(wheel.advance(Instant(300000999)), 0u);
  EXPECT_EQ(wheel.next_expiry(), Instant(300001000));
  EXPECT_EQ(wheel.advance(Instant(300001000)), 1u);
  EXPECT_EQ(wheel.next_expiry(), Instant(400000000));
  wheel.cancel(b);
  EXPECT_EQ(wheel.next_expiry(), Instant::never());
}

TEST(TimerWheel, DeadlineBeyondSpanStillFiresExactly) {
  // 1 us ticks: the span is 2^36 us (19 hours) on Linux, 2^30 us (18 minutes) on
  // Cortex-M, where the wheel reaches 2^31 - 2^20 ticks ahead.
  TimerWheel wheel(Instant(0), tern::us(1));
  Fired f;
  Timer t(&Fired::bump, &f);
  const std::int64_t span = std::int64_t{1} << TimerWheel::kSpanBits;
  const Instant far(span + span / 4 + 12345);
  wheel.arm(t, far);
  EXPECT_EQ(wheel.next_expiry(), far);
  wheel.advance(far - tern::us(1));
  EXPECT_EQ(f.count, 0);
  wheel.advance(far);
  EXPECT_EQ(f.count, 1);
}

TEST(TimerWheel, ReachesSaysHowFarAheadArmTakesADeadline) {
  TimerWheel wheel(Instant(0), tern::ms(1));
  EXPECT_TRUE(wheel.reaches(Instant(-5)));
  EXPECT_TRUE(wheel.reaches(Instant(0)));
  // Linux: any deadline (this one 5 days ahead). Cortex-M: 2^31 - 2^20 ticks ahead of
  // current() (24.8 days at 1 ms), and not one microsecond more.
  const Instant last =
      TimerWheel::kExactDeadlines
          ? Instant(std::int64_t{5} * 24 * 3600 * 1000000)
          : Instant(static_cast<std::int64_t>(TimerWheel::kMaxTicksAhead) * 1000);
  EXPECT_TRUE(wheel.reaches(last));
  EXPECT_EQ(wheel.reaches(last + tern::us(1)), TimerWheel::kExactDeadlines);
  EXPECT_EQ(wheel.reaches(Instant::never()), TimerWheel::kExactDeadlines);
  wheel.advance(Instant(5000));  // the reach moves with current()
  const Instant due = last + tern::ms(5);
  EXPECT_TRUE(wheel.reaches(due));
  EXPECT_EQ(wheel.reaches(due + tern::us(1)), TimerWheel::kExactDeadlines);
  Fired f;
  Timer t(&Fired::bump, &f);
  wheel.arm(t, due);
  EXPECT_EQ(wheel.next_expiry(), due);
  EXPECT_EQ(wheel.advance(due - tern::us(1)), 0u);
  EXPECT_EQ(wheel.advance(due), 1u);
}

TEST(TimerWheel, DeadlineOfAnArmedTimer) {
  TimerWheel wheel(Instant(0), tern::ms(1));
  Fired f;
  Timer t(&Fired::bump, &f);
  wheel.arm(t, Instant(2500));
  // The deadline given, or on Cortex-M the instant of its tick.
  EXPECT_EQ(wheel.deadline(t), TimerWheel::kExactDeadlines ? Instant(2500) : Instant(3000));
  EXPECT_EQ(wheel.advance(Instant(10000)), 1u);
  // A deadline already passed: the one given, or on Cortex-M the tick it was armed at.
  wheel.arm(t, Instant(4000));
  EXPECT_EQ(wheel.deadline(t), TimerWheel::kExactDeadlines ? Instant(4000) : Instant(10000));
  wheel.cancel(t);
}

TEST(TimerWheel, ATimerArmedForThePastInALongAdvanceStillReadsAsPassed) {
  // 1 us ticks: on Cortex-M the wheel reaches 2^31 - 2^20 us (36 minutes) ahead, and an
  // advance here leaps 3 * 2^30 us (54 minutes). The timer armed during it for a
  // passed tick must not read back as one due far ahead.
  TimerWheel wheel(Instant(0), tern::us(1));
  struct Ctx {
    TimerWheel* wheel;
    Timer late;
    Fired fired;
  } c{&wheel, {}, {}};
  c.late.set_callback(&Fired::bump, &c.fired);
  Timer first([](void* p) {
    auto* c = static_cast<Ctx*>(p);
    c->wheel->arm(c->late, Instant(0));
  }, &c);
  wheel.arm(first, Instant(10));
  const Instant later(std::int64_t{3} << 30);
  EXPECT_EQ(wheel.advance(later), 1u);
  ASSERT_TRUE(c.late.armed());
  EXPECT_LE(wheel.deadline(c.late), later);
  EXPECT_EQ(wheel.next_expiry(), later);
  EXPECT_EQ(wheel.advance(later), 1u);
  EXPECT_EQ(c.fired.count, 1);
}

TEST(TimerWheel, CallbackMayRearmItselfAndCancelOthers) {
  TimerWheel wheel;
  struct Ctx {
    TimerWheel* wheel;
    Timer self;
    Timer victim;
    int runs = 0;
    int victim_runs = 0;
  } c{&wheel, {}, {}};
  c.self.set_callback(
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        ++c->runs;
        c->wheel->cancel(c->victim);
        if (c->runs < 3) c->wheel->arm(c->self, c->wheel->current() + tern::ms(10));
      },
      &c);
  c.victim.set_callback([](void* p) { ++static_cast<Ctx*>(p)->victim_runs; }, &c);
  wheel.arm(c.self, Instant(10000));
  wheel.arm(c.victim, Instant(10000));  // same tick, armed after: cancelled before it runs
  wheel.advance(Instant(1000000));
  EXPECT_EQ(c.runs, 3);
  EXPECT_EQ(c.victim_runs, 0);
  EXPECT_TRUE(wheel.empty());
}

// The Reactor's timer table names its entries to the wheel as a pool: the wheel hands a
// timer of the pool that fires to the release hook before its callback, which may then
// arm it again; a timer outside the pool, or a cancelled one, is not handed over.
TEST(TimerWheel, PooledTimerGoesToTheReleaseHookBeforeItsCallback) {
  TimerWheel wheel;
  struct Ctx {
    TimerWheel* wheel;
    Timer pool[2];
    Timer plain;
    int released = 0;
    int runs = 0;
    bool released_before_run = false;
  } c{&wheel, {}, {}};
  wheel.set_release_hook(
      [](void* owner, Timer& t) {
        auto* c = static_cast<Ctx*>(owner);
        EXPECT_TRUE(&t == &c->pool[0] || &t == &c->pool[1]);
        EXPECT_FALSE(t.armed());
        ++c->released;
      },
      &c, &c.pool[0], &c.pool[2]);
  c.pool[1].set_callback(
      [](void* p) {
        auto* c = static_cast<Ctx*>(p);
        c->released_before_run = c->released == c->runs + 1;
        ++c->runs;
        // Armed again from its own callback: released again when it fires.
        if (c->runs == 1) c->wheel->arm(c->pool[1], c->wheel->current() + tern::ms(5));
      },
      &c);
  c.plain.set_callback([](void* p) { ++static_cast<Ctx*>(p)->runs; }, &c);
  wheel.arm(c.pool[1], Instant(10000));
  wheel.arm(c.plain, Instant(50000));
  wheel.advance(Instant(10000));
  EXPECT_EQ(c.runs, 1);
  EXPECT_EQ(c.released, 1);
  EXPECT_TRUE(c.released_before_run);
  wheel.advance(Instant(100000));
  EXPECT_EQ(c.runs, 3);      // the re-armed timer and the plain one
  EXPECT_EQ(c.released, 2);  // the plain one is not in the pool
  // A cancelled timer of the pool is not released: its owner takes it back itself.
  wheel.arm(c.pool[1], Instant(200000));
  EXPECT_TRUE(wheel.cancel(c.pool[1]));
  wheel.advance(Instant(300000));
  EXPECT_EQ(c.released, 2);
  EXPECT_TRUE(wheel.empty());
}

// Where a timer may lie: anywhere on Linux; on Cortex-M, where timers link to each other
// in 16 bits, in the 254 KiB from the port's timer region, which holds this program's
// stack, statics and heap.
TEST(TimerWheel, CanHoldSaysWhereATimerMayLie) {
  Timer on_stack;
  static Timer in_statics;
  auto* on_heap = new Timer;
  EXPECT_TRUE(TimerWheel::can_hold(&on_stack));
  EXPECT_TRUE(TimerWheel::can_hold(&in_statics));
  EXPECT_TRUE(TimerWheel::can_hold(on_heap));
  delete on_heap;
#if TERN_PORT_TIMER_LINKS_16
  const std::uintptr_t region = tern::detail::kPortTimerRegion;
  const std::uintptr_t last = region + 4 * (0xFFFF - 512);  // the last 4-byte step named
  EXPECT_TRUE(TimerWheel::can_hold(reinterpret_cast<const void*>(region)));
  EXPECT_TRUE(TimerWheel::can_hold(reinterpret_cast<const void*>(last)));
  EXPECT_FALSE(TimerWheel::can_hold(reinterpret_cast<const void*>(last + 4)));
  EXPECT_FALSE(TimerWheel::can_hold(reinterpret_cast<const void*>(region - 4)));
#endif
}

TEST(TimerWheel, TimerArmedForPastTickFiresOnNextAdvance) {
  TimerWheel wheel;
  Fired f;
  Timer t(&Fired::bump, &f);
  wheel.advance(Instant(50000));
  wheel.arm(t, Instant(1000));
  EXPECT_EQ(wheel.next_expiry(), Instant(50000));
  wheel.advance(Instant(50000));
  EXPECT_EQ(f.count, 1);
}

// ---- randomized comparison against a reference model ----
//
// The model keeps every armed timer keyed by (effective tick, arming sequence) in a
// std::map (an ordered multimap). A timer armed for a tick already processed is due at
// that tick but, like the wheel, only becomes eligible on the next advance().

// `delay_us`, or on a port whose wheel reaches less far ahead (Cortex-M), the farthest
// delay it reaches with ticks of `tick_us`, less a few ticks for rounding.
std::int64_t within_reach(std::int64_t delay_us, std::int64_t tick_us) {
  const std::uint64_t reach = TimerWheel::kMaxTicksAhead - 4;
  if (static_cast<std::uint64_t>(delay_us / tick_us) <= reach) return delay_us;
  return static_cast<std::int64_t>(reach) * tick_us;
}

struct ModelCheck {
  static constexpr int kTimers = 96;
  TimerWheel wheel;
  tern::Rng rng;
  std::uint64_t tick_us;
  struct Entry {
    ModelCheck* check;
    int id;
    Timer timer;
    bool armed = false;
    std::uint64_t eff = 0;
    std::uint64_t seq = 0;
    bool deferred = false;  // ready-list timer armed during the current advance
  } entries[kTimers];
  std::map<std::pair<std::uint64_t, std::uint64_t>, int> model;
  std::uint64_t next_seq = 1;
  std::uint64_t processed = 0;  // model's idea of the wheel's current tick
  std::uint64_t target = 0;
  bool in_advance = false;
  int mismatches = 0;
  int why = 0;  // source line of the first mismatch, for the failure message
  std::uint64_t fired = 0;
  std::int64_t max_delay_us;

  ModelCheck(std::uint64_t seed, tern::Duration tick, std::int64_t max_delay)
      : wheel(Instant(0), tick), rng(seed), tick_us(static_cast<std::uint64_t>(tick.us)),
        max_delay_us(max_delay) {
    for (int i = 0; i < kTimers; ++i) {
      entries[i].check = this;
      entries[i].id = i;
      entries[i].timer.set_callback(&ModelCheck::on_fire, &entries[i]);
    }
  }
  ~ModelCheck() {
    for (auto& e : entries) wheel.cancel(e.timer);
  }

  void model_cancel(Entry& e) {
    if (e.armed) model.erase({e.eff, e.seq});
    e.armed = false;
  }

  std::int64_t random_delay() {
    switch (rng.below(5)) {
      case 0: return static_cast<std::int64_t>(rng.below(3 * tick_us));  // same/next ticks
      case 1: return static_cast<std::int64_t>(rng.below(64 * tick_us));
      case 2: return static_cast<std::int64_t>(rng.below(5000 * tick_us));
      case 3: return -static_cast<std::int64_t>(rng.below(10 * tick_us));  // in the past
      default: return static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(max_delay_us)));
    }
  }

  void arm(Entry& e, Instant now) {
    Instant deadline = now + tern::us(random_delay());
    model_cancel(e);
    wheel.arm(e.timer, deadline);
    std::uint64_t due = deadline.us <= 0 ? 0 : (static_cast<std::uint64_t>(deadline.us) + tick_us - 1) / tick_us;
    e.deferred = false;
    if (due <= processed) {
      due = processed;
      e.deferred = in_advance;
    }
    e.armed = true;
    e.eff = due;
    e.seq = next_seq++;
    model.emplace(std::make_pair(e.eff, e.seq), e.id);
  }

  // The model's next timer to fire within this advance, or -1.
  int expected_next() {
    for (auto& [key, id] : model) {
      if (key.first > target) return -1;
      if (!entries[id].deferred) return id;
    }
    return -1;
  }

  static void on_fire(void* ctx) {
    Entry& e = *static_cast<Entry*>(ctx);
    ModelCheck& c = *e.check;
    int want = c.expected_next();
    if (want != e.id) {
      { ++c.mismatches; c.why = __LINE__; }
    } else if (e.eff > c.processed) {
      // Fired from the wheel proper: exactly at its due tick.
      if (c.wheel.current().us != static_cast<std::int64_t>(e.eff * c.tick_us)) { ++c.mismatches; c.why = __LINE__; }
      c.processed = e.eff;
    }
    if (c.wheel.current() < c.wheel.deadline(e.timer)) { ++c.mismatches; c.why = __LINE__; }  // never early
    c.model_cancel(e);
    ++c.fired;
    // Re-entrant work from inside a callback.
    Instant now = c.wheel.current();
    switch (c.rng.below(6)) {
      case 0: c.arm(e, now); break;
      case 1: c.arm(c.entries[c.rng.below(kTimers)], now); break;
      case 2: {
        Entry& v = c.entries[c.rng.below(kTimers)];
        c.wheel.cancel(v.timer);
        c.model_cancel(v);
        break;
      }
      default: break;
    }
  }

  void run(int steps) {
    Instant now(0);
    for (int step = 0; step < steps && mismatches == 0; ++step) {
      std::uint64_t r = rng.below(100);
      if (r < 45) {
        arm(entries[rng.below(kTimers)], now);
      } else if (r < 60) {
        Entry& e = entries[rng.below(kTimers)];
        bool was = wheel.cancel(e.timer);
        if (was != e.armed) { ++mismatches; why = __LINE__; }
        model_cancel(e);
      } else {
        std::int64_t jump;
        std::uint64_t k = rng.below(10);
        if (k < 6) {
          jump = static_cast<std::int64_t>(rng.below(4 * tick_us));
        } else if (k < 9) {
          jump = static_cast<std::int64_t>(rng.below(3000 * tick_us));
        } else {
          jump = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(max_delay_us)));
        }
        // next_expiry() must equal the model's earliest effective tick.
        // (A timer left over from a past tick is due "now", at the last processed tick.)
        std::uint64_t first = model.empty() ? 0 : model.begin()->first.first;
        if (first < processed) first = processed;
        Instant expect = model.empty() ? Instant::never() : Instant(static_cast<std::int64_t>(first * tick_us));
        if (wheel.next_expiry() != expect) { ++mismatches; why = __LINE__; }
        now = now + tern::us(jump);
        target = static_cast<std::uint64_t>(now.us) / tick_us;
        in_advance = true;
        wheel.advance(now);
        in_advance = false;
        processed = target;
        // Nothing due at or before `target` may remain, except timers armed during
        // this advance for a tick already processed.
        for (auto& [key, id] : model) {
          if (key.first > target) break;
          if (!entries[id].deferred) { ++mismatches; why = __LINE__; }
        }
        for (auto& e : entries) e.deferred = false;
      }
      if (wheel.size() != model.size()) { ++mismatches; why = __LINE__; }
    }
  }
};

TEST(TimerWheel, MatchesReferenceModelMillisecondTicks) {
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    ModelCheck check(seed, tern::ms(1), within_reach(std::int64_t{4} * 24 * 3600 * 1000000, 1000));
    check.run(20000);  // full length on every port: the 16-bit links run here too
    EXPECT_EQ(check.why, 0);
    EXPECT_GT(check.fired, 1000u);
  }
}

TEST(TimerWheel, MatchesReferenceModelMicrosecondTicksPastTheSpan) {
  for (std::uint64_t seed = 11; seed <= 13; ++seed) {
    // 3 days at 1 us ticks is past 2^36 ticks: exercises the overflow list. On
    // Cortex-M, the wheel's reach (2^31 - 2^20 ticks, 36 minutes) is past its span.
    ModelCheck check(seed, tern::us(1), within_reach(std::int64_t{3} * 24 * 3600 * 1000000, 1));
    check.run(20000);  // full length on every port: the 16-bit links run here too
    EXPECT_EQ(check.why, 0);
    EXPECT_GT(check.fired, 1000u);
  }
}

}  // namespace
