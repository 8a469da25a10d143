// Backoff and Retrier, with a manual clock and a seeded Rng (portable: runs on every port).
#include "tern/resilience/retry.hpp"

#include "tern/core/rng.hpp"
#include "tern/reactor/reactor.hpp"
#include "tern/resilience/circuit_breaker.hpp"
#include "tern/resilience/retry_budget.hpp"
#include "manual_reactor.hpp"
#include "tern_test.hpp"

namespace {

using tern::AttemptContext;
using tern::Backoff;
using tern::Duration;
using tern::Errc;
using tern::Instant;
using tern::Jitter;
using tern::ManualClock;
using tern::ms;
using tern::Reactor;
using tern::Result;
using tern::Retrier;
using tern::RetryId;
using tern::RetryPolicy;
using tern::RetryTicket;
using tern::Rng;
using tern::seconds;

// ---- Backoff ----

TEST(Backoff, NoJitterIsExponentialAndCappedAtMaxDelay) {
  Backoff b(ms(100), seconds(1), 2.0, Jitter::none);
  Rng rng(1);
  const std::int64_t expect_ms[] = {100, 200, 400, 800, 1000, 1000, 1000};
  for (std::int64_t e : expect_ms) EXPECT_EQ(b.next(rng), ms(e));
  EXPECT_EQ(b.retries(), 7u);
  b.reset();
  EXPECT_EQ(b.next(rng), ms(100));
}

TEST(Backoff, FractionalMultiplierIsExactInFixedPoint) {
  Backoff b(ms(100), seconds(10), 1.5, Jitter::none);
  EXPECT_EQ(b.ceiling(0), ms(100));
  EXPECT_EQ(b.ceiling(1), ms(150));
  EXPECT_EQ(b.ceiling(2), ms(225));
  EXPECT_EQ(b.ceiling(3), tern::us(337500));
  EXPECT_EQ(b.ceiling(60), seconds(10));
  Backoff flat(ms(50), seconds(10), 1.0, Jitter::none);
  EXPECT_EQ(flat.ceiling(1000), ms(50));
  Backoff huge(seconds(1), Duration::max(), 1000.0, Jitter::none);
  EXPECT_EQ(huge.ceiling(50), Duration::max());  // saturates, never overflows
}

// Draws `rounds` operations of `retries` retries each and checks every delay.
template <typename Check>
void draw_many(Jitter jitter, Check check) {
  Rng rng(2024);
  for (int round = 0; round < 250; ++round) {
    Backoff b(ms(10), ms(2000), 2.0, jitter);
    std::int64_t previous = ms(10).micros();
    for (std::uint32_t k = 0; k < 10; ++k) {
      const std::int64_t c = b.ceiling(k).micros();
      const std::int64_t d = b.next(rng).micros();
      check(k, c, previous, d);
      previous = d;
    }
  }
}

TEST(Backoff, FullJitterStaysWithinZeroAndTheCeiling) {
  std::int64_t lowest = INT64_MAX, highest = 0;  // for k = 7: ceiling 1280 ms
  draw_many(Jitter::full, [&](std::uint32_t k, std::int64_t c, std::int64_t, std::int64_t d) {
    EXPECT_GE(d, 0) << "retry " << k;
    EXPECT_LE(d, c) << "retry " << k;
    if (k == 7) {
      lowest = d < lowest ? d : lowest;
      highest = d > highest ? d : highest;
    }
  });
  // And it really spreads over the range.
  EXPECT_LT(lowest, ms(1280).micros() / 10);
  EXPECT_GT(highest, ms(1280).micros() * 9 / 10);
}

TEST(Backoff, EqualJitterStaysWithinHalfAndTheCeiling) {
  std::int64_t lowest = INT64_MAX, highest = 0;
  draw_many(Jitter::equal, [&](std::uint32_t k, std::int64_t c, std::int64_t, std::int64_t d) {
    EXPECT_GE(d, c - c / 2) << "retry " << k;
    EXPECT_LE(d, c) << "retry " << k;
    if (k == 9) {  // capped: 2000 ms
      lowest = d < lowest ? d : lowest;
      highest = d > highest ? d : highest;
    }
  });
  EXPECT_LT(lowest, ms(1100).micros());
  EXPECT_GT(highest, ms(1900).micros());
}

TEST(Backoff, DecorrelatedJitterStaysWithinBaseAndThreeTimesThePrevious) {
  int capped = 0;
  draw_many(Jitter::decorrelated,
            [&](std::uint32_t k, std::int64_t, std::int64_t previous, std::int64_t d) {
              EXPECT_GE(d, ms(10).micros()) << "retry " << k;
              EXPECT_LE(d, ms(2000).micros()) << "retry " << k;
              EXPECT_LE(d, 3 * previous) << "retry " << k;
              if (d == ms(2000).micros()) ++capped;
            });
  EXPECT_GT(capped, 0);  // the cap is reached and holds
}

TEST(Backoff, SameSeedGivesTheSameDelaysForEveryJitterKind) {
  const Jitter kinds[] = {Jitter::none, Jitter::full, Jitter::equal, Jitter::decorrelated};
  for (Jitter j : kinds) {
    Rng r1(7), r2(7), r3(8);
    Backoff a(ms(10), seconds(100), 2.0, j), b(ms(10), seconds(100), 2.0, j),
        c(ms(10), seconds(100), 2.0, j);
    int differ = 0;
    for (int i = 0; i < 12; ++i) {
      const Duration da = a.next(r1);
      EXPECT_EQ(da, b.next(r2)) << tern::jitter_name(j) << " retry " << i;
      if (da != c.next(r3)) ++differ;
    }
    if (j == Jitter::none) {
      EXPECT_EQ(differ, 0);
    } else {
      EXPECT_GT(differ, 6) << tern::jitter_name(j);  // another seed, other delays
    }
  }
}

// ---- RetryPolicy ----

TEST(RetryPolicy, DefaultPredicateRetriesTransientErrorsOnly) {
  const Errc retried[] = {Errc::timeout, Errc::io,     Errc::failed, Errc::no_reply,
                          Errc::busy,    Errc::closed, Errc::dns};
  const Errc not_retried[] = {Errc::invalid_argument, Errc::cancelled, Errc::shutdown,
                              Errc::circuit_open,     Errc::too_large, Errc::full,
                              Errc::protocol,         Errc::tls,       Errc::not_found,
                              Errc::unsupported,      Errc::late};
  for (Errc e : retried) EXPECT_TRUE(tern::retry_on_transient(e)) << tern::errc_name(e);
  for (Errc e : not_retried) EXPECT_FALSE(tern::retry_on_transient(e)) << tern::errc_name(e);
  EXPECT_EQ(RetryPolicy{}.max_attempts, 3u);  // the seeds' "2 retries"
  EXPECT_EQ(RetryPolicy{}.jitter, Jitter::full);
}

TEST(RetryPolicy, ValidateRejectsUnusableValues) {
  EXPECT_EQ(tern::validate(RetryPolicy{}), Errc::ok);
  RetryPolicy p;
  p.max_attempts = 0;
  EXPECT_EQ(tern::validate(p), Errc::invalid_argument);
  p = RetryPolicy{};
  p.max_delay = ms(10);
  p.base_delay = ms(20);
  EXPECT_EQ(tern::validate(p), Errc::invalid_argument);
  p = RetryPolicy{};
  p.multiplier = 0.5;
  EXPECT_EQ(tern::validate(p), Errc::invalid_argument);
  p = RetryPolicy{};
  p.attempt_timeout = Duration::zero();
  EXPECT_EQ(tern::validate(p), Errc::invalid_argument);
  p = RetryPolicy{};
  p.retry_on = nullptr;
  EXPECT_EQ(tern::validate(p), Errc::invalid_argument);
}

// ---- Retrier ----

struct Fixture : tern_test::ManualReactor {
  Rng rng{42};
  Instant now() const { return clock.now(); }
};

// A fixed-delay policy, so that the schedule is exact.
RetryPolicy fixed_policy(std::uint16_t max_attempts = 3, Duration delay = ms(100)) {
  RetryPolicy p;
  p.max_attempts = max_attempts;
  p.base_delay = delay;
  p.max_delay = delay;
  p.multiplier = 1.0;
  p.jitter = Jitter::none;
  return p;
}

// The upstream: records every try; answers synchronously when told to.
struct Upstream {
  static constexpr int kMax = 16;
  const ManualClock* clock = nullptr;
  RetryTicket<int> tickets[kMax];
  Duration timeouts[kMax];
  Instant started[kMax];
  std::uint16_t numbers[kMax] = {};
  int calls = 0;
  // Synchronous answers by try index: Errc::ok answers `value`; anything else fails.
  bool sync = false;
  Errc script[kMax] = {};
  int value = 0;

  explicit Upstream(const ManualClock& c) : clock(&c) {}
  auto attempt() {
    return [this](const AttemptContext<int>& a) {
      if (calls < kMax) {
        tickets[calls] = a.ticket;
        timeouts[calls] = a.timeout;
        started[calls] = clock->now();
        numbers[calls] = a.number;
      }
      const int i = calls++;
      if (sync && i < kMax) {
        if (script[i] == Errc::ok) {
          (void)a.report(value);
        } else {
          (void)a.report(script[i]);
        }
      }
    };
  }
};

struct Outcome {
  int calls = 0;
  Errc err = Errc::ok;
  int value = 0;
  auto done() {
    return [this](Result<int> r) {
      ++calls;
      err = r.ok() ? Errc::ok : r.error();
      if (r.ok()) value = *r;
    };
  }
};

TEST(Retrier, SucceedsAfterFailuresAndDeliversTheValueOnce) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  auto id = retrier.start(fixed_policy(3, ms(100)), f.now() + seconds(10), up.attempt(), o.done());
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(up.calls, 1);  // the first try runs inside start()
  EXPECT_EQ(up.numbers[0], 1u);
  EXPECT_EQ(up.tickets[0].report(Errc::io), Errc::ok);
  f.advance(ms(99));
  EXPECT_EQ(up.calls, 1);
  f.advance(ms(1));
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.started[1], Instant(0) + ms(100));
  EXPECT_EQ(up.numbers[1], 2u);
  EXPECT_EQ(up.tickets[1].report(Errc::busy), Errc::ok);
  f.advance(ms(100));
  ASSERT_EQ(up.calls, 3);
  EXPECT_EQ(o.calls, 0);
  EXPECT_EQ(up.tickets[2].report(42), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::ok) << tern::errc_name(o.err);
  EXPECT_EQ(o.value, 42);
  f.advance(seconds(20));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(up.calls, 3);
  EXPECT_EQ(retrier.stats().attempts, 3u);
  EXPECT_EQ(retrier.stats().retries, 2u);
  EXPECT_EQ(retrier.stats().succeeded, 1u);
  EXPECT_EQ(retrier.in_use(), 0u);
  EXPECT_FALSE(retrier.pending(*id));
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, GivesUpAfterMaxAttemptsWithTheLastError) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  up.sync = true;
  up.script[0] = Errc::io;
  up.script[1] = Errc::busy;
  up.script[2] = Errc::failed;
  up.script[3] = Errc::ok;  // never reached
  Outcome o;
  ASSERT_TRUE(retrier.start(fixed_policy(3, ms(10)), f.now() + seconds(10), up.attempt(), o.done())
                  .ok());
  f.advance(ms(10));
  f.advance(ms(10));
  f.advance(seconds(1));
  EXPECT_EQ(up.calls, 3);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::failed) << tern::errc_name(o.err);
  EXPECT_EQ(retrier.stats().failed, 1u);
  EXPECT_EQ(retrier.stats().retries, 2u);
}

TEST(Retrier, SecondReportForTheSameTryIsLateAndDropped) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  ASSERT_TRUE(retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), o.done()).ok());
  EXPECT_EQ(up.tickets[0].report(Errc::io), Errc::ok);
  RetryTicket<int> copy = up.tickets[0];
  EXPECT_EQ(copy.report(7), Errc::late);  // a copy is the same ticket
  EXPECT_EQ(retrier.stats().late, 1u);
  f.advance(ms(100));
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.tickets[1].report(5), Errc::ok);
  EXPECT_EQ(up.tickets[1].report(6), Errc::late);  // after the end: the slot moved on
  EXPECT_EQ(o.value, 5);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(retrier.stats().late, 2u);
  EXPECT_EQ(RetryTicket<int>().report(1), Errc::closed);
}

TEST(Retrier, DeadlineCutsTheLastAttemptsTimeout) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  RetryPolicy p = fixed_policy(3, ms(100));
  p.attempt_timeout = seconds(1);
  ASSERT_TRUE(retrier.start(p, f.now() + ms(1500), up.attempt(), o.done()).ok());
  EXPECT_EQ(up.timeouts[0], seconds(1));
  f.advance(ms(1000));  // the first try times out; the retry waits 100 ms
  EXPECT_EQ(retrier.stats().attempt_timeouts, 1u);
  EXPECT_EQ(up.calls, 1);
  f.advance(ms(100));
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.timeouts[1], ms(400));  // what is left of the 1.5 s, not 1 s
  f.advance(ms(399));
  EXPECT_EQ(o.calls, 0);
  f.advance(ms(1));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::timeout) << tern::errc_name(o.err);
  EXPECT_EQ(up.calls, 2);  // no third try: the deadline has passed
  EXPECT_EQ(up.tickets[1].report(9), Errc::late);
  EXPECT_EQ(retrier.stats().timed_out, 1u);
  EXPECT_EQ(retrier.stats().late, 1u);
}

TEST(Retrier, NoRetryStartsAtOrAfterTheDeadline) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  const Instant deadline = f.now() + ms(500);
  ASSERT_TRUE(retrier.start(fixed_policy(5, ms(300)), deadline, up.attempt(), o.done()).ok());
  f.advance(ms(199));
  EXPECT_EQ(up.tickets[0].report(Errc::io), Errc::ok);  // the retry fits: at 499 ms
  f.advance(ms(300));
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.started[1], Instant(0) + ms(499));
  EXPECT_EQ(up.timeouts[1], ms(1));
  EXPECT_EQ(up.tickets[1].report(Errc::io), Errc::ok);  // the next would start at 799 ms
  EXPECT_EQ(o.calls, 1);                              // so it ends now, not at 500 ms
  EXPECT_EQ(o.err, Errc::timeout) << tern::errc_name(o.err);
  f.advance(seconds(2));
  EXPECT_EQ(up.calls, 2);
  for (int i = 0; i < up.calls; ++i) EXPECT_LT(up.started[i], deadline);

  // A retry that would start exactly at the deadline is not scheduled either.
  Upstream up2(f.clock);
  Outcome o2;
  const Instant deadline2 = f.now() + ms(500);
  ASSERT_TRUE(retrier.start(fixed_policy(5, ms(300)), deadline2, up2.attempt(), o2.done()).ok());
  f.advance(ms(200));
  EXPECT_EQ(up2.tickets[0].report(Errc::io), Errc::ok);
  EXPECT_EQ(o2.calls, 1);
  EXPECT_EQ(o2.err, Errc::timeout) << tern::errc_name(o2.err);
  EXPECT_EQ(retrier.in_use(), 0u);
}

TEST(Retrier, NonRetryableErrorEndsAtOnce) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  const Errc finals[] = {Errc::invalid_argument, Errc::circuit_open, Errc::too_large,
                         Errc::shutdown};
  for (Errc e : finals) {
    Upstream up(f.clock);
    Outcome o;
    ASSERT_TRUE(retrier.start(RetryPolicy{}, f.now() + seconds(10), up.attempt(), o.done()).ok());
    EXPECT_EQ(up.tickets[0].report(e), Errc::ok);
    EXPECT_EQ(o.calls, 1) << tern::errc_name(e);
    EXPECT_EQ(o.err, e) << tern::errc_name(o.err);
    f.advance(seconds(10));
    EXPECT_EQ(up.calls, 1) << tern::errc_name(e);
  }
  EXPECT_EQ(retrier.stats().retries, 0u);
  EXPECT_EQ(retrier.stats().failed, 4u);
}

TEST(Retrier, CustomRetryOnPredicateDecidesWhatIsRetried) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  RetryPolicy p = fixed_policy(3, ms(10));
  p.retry_on = [](Errc e) { return e == Errc::protocol; };
  ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), up.attempt(), o.done()).ok());
  EXPECT_EQ(up.tickets[0].report(Errc::protocol), Errc::ok);
  f.advance(ms(10));
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.tickets[1].report(Errc::io), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::io) << tern::errc_name(o.err);
}

TEST(Retrier, TryThatOutlivesItsTimeoutIsRetriedAndItsLateReportDropped) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  RetryPolicy p = fixed_policy(3, ms(50));
  p.attempt_timeout = ms(100);
  ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), up.attempt(), o.done()).ok());
  f.advance(ms(100));
  EXPECT_EQ(retrier.stats().attempt_timeouts, 1u);
  EXPECT_EQ(up.tickets[0].report(1), Errc::late);  // in the backoff wait
  f.advance(ms(50));
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.tickets[0].report(1), Errc::late);  // during the next try
  EXPECT_EQ(o.calls, 0);
  EXPECT_EQ(up.tickets[1].report(2), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.value, 2);
  EXPECT_EQ(retrier.stats().late, 2u);
}

TEST(Retrier, OverallDeadlinePassingDuringATryEndsWithTimeout) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  ASSERT_TRUE(retrier.start(RetryPolicy{}, f.now() + seconds(2), up.attempt(), o.done()).ok());
  EXPECT_EQ(up.timeouts[0], seconds(2));  // no attempt_timeout: the whole deadline
  f.advance(ms(1999));
  EXPECT_EQ(o.calls, 0);
  f.advance(ms(1));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::timeout) << tern::errc_name(o.err);
  EXPECT_EQ(up.calls, 1);
}

TEST(Retrier, CancelRunsOnDoneWithCancelledExactlyOnce) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome during_try, during_wait;
  auto a = retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), during_try.done());
  auto b = retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), during_wait.done());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(up.tickets[1].report(Errc::io), Errc::ok);  // b waits for its retry
  EXPECT_EQ(retrier.cancel(*a), Errc::ok);
  EXPECT_EQ(retrier.cancel(*b), Errc::ok);
  EXPECT_EQ(during_try.calls, 1);
  EXPECT_EQ(during_try.err, Errc::cancelled) << tern::errc_name(during_try.err);
  EXPECT_EQ(during_wait.calls, 1);
  EXPECT_EQ(during_wait.err, Errc::cancelled) << tern::errc_name(during_wait.err);
  EXPECT_EQ(retrier.cancel(*a), Errc::late);
  EXPECT_EQ(up.tickets[0].report(3), Errc::late);
  f.advance(seconds(20));
  EXPECT_EQ(up.calls, 2);  // b's retry never started
  EXPECT_EQ(during_try.calls, 1);
  EXPECT_EQ(during_wait.calls, 1);
  EXPECT_EQ(retrier.stats().cancelled, 2u);
  EXPECT_EQ(retrier.cancel(RetryId::make(99, 1)), Errc::not_found);
}

TEST(Retrier, CancelAllEndsOnlyTheOwnersOperationsExactlyOnce) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  int owner_a = 0, owner_b = 0;
  Outcome o[3];
  ASSERT_TRUE(
      retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), o[0].done(), &owner_a)
          .ok());
  ASSERT_TRUE(
      retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), o[1].done(), &owner_b)
          .ok());
  ASSERT_TRUE(
      retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), o[2].done(), &owner_a)
          .ok());
  EXPECT_EQ(up.tickets[2].report(Errc::io), Errc::ok);  // one of A's is between tries
  EXPECT_EQ(retrier.cancel_all(&owner_a), 2u);
  EXPECT_EQ(retrier.cancel_all(&owner_a), 0u);
  EXPECT_EQ(o[0].calls, 1);
  EXPECT_EQ(o[0].err, Errc::cancelled) << tern::errc_name(o[0].err);
  EXPECT_EQ(o[2].calls, 1);
  EXPECT_EQ(o[2].err, Errc::cancelled) << tern::errc_name(o[2].err);
  EXPECT_EQ(o[1].calls, 0);
  EXPECT_EQ(retrier.in_use(), 1u);
  EXPECT_EQ(up.tickets[1].report(8), Errc::ok);
  EXPECT_EQ(o[1].value, 8);
  f.advance(seconds(20));
  EXPECT_EQ(up.calls, 3);
}

TEST(Retrier, BudgetRefusalEndsWithTheLastErrorAndSuccessesRestoreIt) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  tern::RetryBudget budget(tern::RetryBudgetConfig{.max_tokens = 4, .token_ratio = 1.0});
  RetryPolicy p = fixed_policy(3, ms(10));
  p.budget = &budget;

  // 4 tokens: a failure leaves 3 (> 2, a retry may go); the retry's failure leaves 2.
  Upstream up1(f.clock);
  Outcome o1;
  ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), up1.attempt(), o1.done()).ok());
  EXPECT_EQ(up1.tickets[0].report(Errc::io), Errc::ok);
  f.advance(ms(10));
  ASSERT_EQ(up1.calls, 2);
  EXPECT_EQ(up1.tickets[1].report(Errc::busy), Errc::ok);
  EXPECT_EQ(o1.calls, 1);
  EXPECT_EQ(o1.err, Errc::busy) << tern::errc_name(o1.err);
  EXPECT_EQ(retrier.stats().budget_refusals, 1u);
  EXPECT_EQ(budget.tokens_milli(), 2000u);
  f.advance(seconds(1));
  EXPECT_EQ(up1.calls, 2);  // although a third try was allowed by max_attempts

  // Two first-try successes put two tokens back, and retries flow again.
  for (int i = 0; i < 2; ++i) {
    Upstream ok(f.clock);
    Outcome o;
    ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), ok.attempt(), o.done()).ok());
    EXPECT_EQ(ok.tickets[0].report(1), Errc::ok);
  }
  EXPECT_EQ(budget.tokens_milli(), 4000u);
  Upstream up2(f.clock);
  Outcome o2;
  ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), up2.attempt(), o2.done()).ok());
  EXPECT_EQ(up2.tickets[0].report(Errc::io), Errc::ok);
  f.advance(ms(10));
  ASSERT_EQ(up2.calls, 2);
  EXPECT_EQ(up2.tickets[1].report(77), Errc::ok);
  EXPECT_EQ(o2.value, 77);
  EXPECT_EQ(retrier.stats().budget_refusals, 1u);
  EXPECT_EQ(budget.stats().retries_refused, 1u);
  EXPECT_EQ(budget.stats().retries_allowed, 2u);
}

TEST(Retrier, NonRetryableErrorsDoNotDrainTheBudget) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  tern::RetryBudget budget(tern::RetryBudgetConfig{.max_tokens = 4, .token_ratio = 1.0});
  RetryPolicy p;
  p.budget = &budget;
  for (int i = 0; i < 10; ++i) {
    Upstream up(f.clock);
    Outcome o;
    ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), up.attempt(), o.done()).ok());
    EXPECT_EQ(up.tickets[0].report(Errc::invalid_argument), Errc::ok);
  }
  EXPECT_EQ(budget.tokens_milli(), 4000u);
  EXPECT_EQ(budget.stats().failures, 0u);
}

TEST(Retrier, OnDoneNeverRunsInsideStart) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  up.sync = true;
  up.script[0] = Errc::ok;
  up.value = 11;
  Outcome o;
  auto id = retrier.start(fixed_policy(), f.now() + seconds(10), up.attempt(), o.done());
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(o.calls, 0);  // answered inside start(): delivered on the next turn
  EXPECT_TRUE(retrier.pending(*id));
  f.run();
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.value, 11);

  // A cancel that comes before the delivery wins, and still only once.
  Upstream up2(f.clock);
  up2.sync = true;
  up2.script[0] = Errc::ok;
  Outcome o2;
  auto id2 = retrier.start(fixed_policy(), f.now() + seconds(10), up2.attempt(), o2.done());
  ASSERT_TRUE(id2.ok());
  EXPECT_EQ(retrier.cancel(*id2), Errc::ok);
  EXPECT_EQ(o2.calls, 1);
  EXPECT_EQ(o2.err, Errc::cancelled) << tern::errc_name(o2.err);
  f.run();
  EXPECT_EQ(o2.calls, 1);
  EXPECT_EQ(retrier.stats().succeeded, 1u);
  EXPECT_EQ(retrier.stats().cancelled, 1u);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, SynchronousFailuresAreRetriedOnSchedule) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  up.sync = true;
  up.script[0] = Errc::io;
  up.script[1] = Errc::io;
  up.script[2] = Errc::ok;
  up.value = 3;
  Outcome o;
  RetryPolicy p = fixed_policy(3, ms(10));
  p.multiplier = 2.0;
  p.max_delay = seconds(1);
  ASSERT_TRUE(retrier.start(p, f.now() + seconds(10), up.attempt(), o.done()).ok());
  f.advance(ms(10));
  f.advance(ms(20));
  ASSERT_EQ(up.calls, 3);
  EXPECT_EQ(up.started[1], Instant(0) + ms(10));
  EXPECT_EQ(up.started[2], Instant(0) + ms(30));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.value, 3);
}

TEST(Retrier, StartRefusesBadArgumentsAndAPassedDeadline) {
  Fixture f;
  Retrier<int, 2> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  RetryPolicy bad;
  bad.max_attempts = 0;
  EXPECT_EQ(retrier.start(bad, f.now() + seconds(1), up.attempt(), o.done()).error(),
            Errc::invalid_argument);
  EXPECT_EQ(retrier.start(RetryPolicy{}, f.now() + seconds(1), nullptr, o.done()).error(),
            Errc::invalid_argument);
  EXPECT_EQ(retrier.start(RetryPolicy{}, f.now() + seconds(1), up.attempt(), nullptr).error(),
            Errc::invalid_argument);
  EXPECT_EQ(retrier.start(RetryPolicy{}, f.now(), up.attempt(), o.done()).error(), Errc::timeout);
  f.run();
  EXPECT_EQ(up.calls, 0);
  EXPECT_EQ(o.calls, 0);
  EXPECT_EQ(retrier.stats().started, 0u);
}

TEST(Retrier, FullTableReturnsFullAndKeepsWhatItHolds) {
  Fixture f;
  Retrier<int, 2> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o[3];
  ASSERT_TRUE(retrier.start(RetryPolicy{}, f.now() + seconds(1), up.attempt(), o[0].done()).ok());
  ASSERT_TRUE(retrier.start(RetryPolicy{}, f.now() + seconds(1), up.attempt(), o[1].done()).ok());
  EXPECT_TRUE(retrier.full());
  EXPECT_EQ(retrier.start(RetryPolicy{}, f.now() + seconds(1), up.attempt(), o[2].done()).error(),
            Errc::full);
  EXPECT_EQ(retrier.stats().rejected, 1u);
  EXPECT_EQ(up.calls, 2);
  EXPECT_EQ(up.tickets[0].report(1), Errc::ok);
  EXPECT_EQ(up.tickets[1].report(2), Errc::ok);
  EXPECT_EQ(o[0].value + o[1].value, 3);
  EXPECT_EQ(o[2].calls, 0);
  EXPECT_EQ(retrier.stats().high_water, 2u);
}

TEST(Retrier, DestructionCancelsWhatIsInFlight) {
  Fixture f;
  Upstream up(f.clock);
  Outcome o[2];
  {
    Retrier<int, 2> retrier(f.reactor, f.rng);
    ASSERT_TRUE(
        retrier.start(fixed_policy(), f.now() + seconds(1), up.attempt(), o[0].done()).ok());
    ASSERT_TRUE(
        retrier.start(fixed_policy(), f.now() + seconds(1), up.attempt(), o[1].done()).ok());
    EXPECT_EQ(up.tickets[1].report(Errc::io), Errc::ok);  // waiting on its timer
  }
  EXPECT_EQ(o[0].err, Errc::cancelled) << tern::errc_name(o[0].err);
  EXPECT_EQ(o[1].err, Errc::cancelled) << tern::errc_name(o[1].err);
  EXPECT_EQ(o[0].calls + o[1].calls, 2);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// Counts live copies of itself, to see when a callback's capture is destroyed.
struct Tracker {
  int* live;
  explicit Tracker(int* l) : live(l) { ++*live; }
  Tracker(Tracker&& o) noexcept : live(o.live) { ++*live; }
  Tracker(const Tracker&) = delete;
  ~Tracker() { --*live; }
};

TEST(Retrier, EndingReleasesWhatTheCallbacksCaptured) {
  Fixture f;
  Retrier<int, 2> retrier(f.reactor, f.rng);
  int live = 0;
  Upstream up(f.clock);
  Outcome o;
  {
    Tracker in_attempt(&live), in_done(&live);
    ASSERT_TRUE(retrier
                    .start(fixed_policy(), f.now() + seconds(10),
                           [t = std::move(in_attempt), &up](const AttemptContext<int>& a) {
                             up.attempt()(a);
                           },
                           [t = std::move(in_done), &o](Result<int> r) { o.done()(std::move(r)); })
                    .ok());
  }
  EXPECT_EQ(live, 2);  // held by the operation
  EXPECT_EQ(up.tickets[0].report(Errc::io), Errc::ok);
  f.advance(ms(100));
  EXPECT_EQ(live, 2);
  EXPECT_EQ(up.tickets[1].report(4), Errc::ok);
  EXPECT_EQ(o.value, 4);
  EXPECT_EQ(live, 0);  // both released when it ended, not when the slot is reused
}

// The attempt's captures are destroyed when the operation ends; a destructor that
// calls back into the retrier (cancel_all) finds the operation already retired.
TEST(Retrier, AttemptCaptureWhoseDestructorCallsBackInEndsItOnce) {
  Fixture f;
  Retrier<int, 2> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  struct Guard {
    Retrier<int, 2>* r;
    bool live = true;
    explicit Guard(Retrier<int, 2>* p) : r(p) {}
    Guard(Guard&& g) noexcept : r(g.r), live(g.live) { g.live = false; }
    ~Guard() {
      if (live) {
        live = false;
        (void)r->cancel_all();
      }
    }
  };
  auto id = retrier.start(fixed_policy(), f.now() + seconds(10),
                          [g = Guard(&retrier), u = &up](const AttemptContext<int>& a) {
                            u->attempt()(a);
                          },
                          o.done());
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(retrier.cancel(*id), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::cancelled);
  EXPECT_EQ(retrier.in_use(), 0u);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// A retrier on the heap that one of its callbacks deletes: under ASan, anything the
// retrier touches after that callback returns is a heap-use-after-free.
struct Doomed {
  using R = Retrier<int, 2>;
  R* retrier = nullptr;
  int done_calls = 0;
  Errc errs[2] = {};
  int tries = 0;
  std::uint16_t destroy_on_try = 0;  // the attempt callback deletes the retrier on it
  Errc report_on_try = Errc::ok;     // ... or reports this synchronously (ok: nothing)

  void destroy() {
    R* r = retrier;
    retrier = nullptr;  // the callbacks the destructor runs must not delete it again
    delete r;
  }
  R::Done done() {
    return [this](Result<int> r) {
      if (done_calls < 2) errs[done_calls] = r.ok() ? Errc::ok : r.error();
      ++done_calls;
      if (retrier != nullptr) destroy();
    };
  }
  R::Attempt attempt() {
    return [this](const AttemptContext<int>& a) {
      ++tries;
      if (a.number == destroy_on_try) {
        destroy();
      } else if (a.number == 1) {
        (void)a.report(Errc::io);  // retried
      } else if (report_on_try != Errc::ok) {
        (void)a.report(report_on_try);
      }
    };
  }
};

TEST(Retrier, OnDoneRunByASynchronousReportInsideARetryMayDestroyTheRetrier) {
  Fixture f;
  Doomed d;
  d.retrier = new Doomed::R(f.reactor, f.rng);
  d.report_on_try = Errc::invalid_argument;  // not retried: try 2 ends the operation
  ASSERT_TRUE(
      d.retrier->start(fixed_policy(3, ms(10)), f.now() + seconds(1), d.attempt(), d.done()).ok());
  f.advance(ms(10));  // try 2 runs from the wheel; its on_done deletes the retrier
  EXPECT_EQ(d.retrier, nullptr);
  EXPECT_EQ(d.tries, 2);
  EXPECT_EQ(d.done_calls, 1);
  EXPECT_EQ(d.errs[0], Errc::invalid_argument) << tern::errc_name(d.errs[0]);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, AttemptCallbackMayDestroyTheRetrier) {
  Fixture f;
  // From a retry run by the wheel.
  Doomed d;
  d.retrier = new Doomed::R(f.reactor, f.rng);
  d.destroy_on_try = 2;
  ASSERT_TRUE(
      d.retrier->start(fixed_policy(3, ms(10)), f.now() + seconds(1), d.attempt(), d.done()).ok());
  f.advance(ms(10));
  EXPECT_EQ(d.retrier, nullptr);
  EXPECT_EQ(d.done_calls, 1);
  EXPECT_EQ(d.errs[0], Errc::cancelled) << tern::errc_name(d.errs[0]);

  // From the first try, inside start(): no later turn will come, so on_done runs there.
  Doomed e;
  e.retrier = new Doomed::R(f.reactor, f.rng);
  e.destroy_on_try = 1;
  Result<RetryId> id =
      e.retrier->start(fixed_policy(), f.now() + seconds(1), e.attempt(), e.done());
  EXPECT_TRUE(id.ok());  // on_done ran: the id is owed
  EXPECT_EQ(e.retrier, nullptr);
  EXPECT_EQ(e.done_calls, 1);
  EXPECT_EQ(e.errs[0], Errc::cancelled) << tern::errc_name(e.errs[0]);
  f.advance(seconds(2));
  EXPECT_EQ(e.done_calls, 1);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, OnDoneRunByCancelAllMayDestroyTheRetrier) {
  Fixture f;
  Doomed d;
  d.retrier = new Doomed::R(f.reactor, f.rng);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(
        d.retrier->start(fixed_policy(), f.now() + seconds(1), d.attempt(), d.done()).ok());
  }
  f.advance(ms(1));  // both wait for their retry
  // The first on_done deletes the retrier; its destructor cancels the second.
  (void)d.retrier->cancel_all();
  EXPECT_EQ(d.retrier, nullptr);
  EXPECT_EQ(d.done_calls, 2);
  EXPECT_EQ(d.errs[0], Errc::cancelled) << tern::errc_name(d.errs[0]);
  EXPECT_EQ(d.errs[1], Errc::cancelled) << tern::errc_name(d.errs[1]);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, StartFromOnDoneDuringDestructionIsRefused) {
  Fixture f;
  Upstream up(f.clock);
  struct Ctx {
    Retrier<int, 1>* retrier = nullptr;
    Upstream* up = nullptr;
    Instant deadline;
    Errc restart = Errc::ok;
    int done = 0;
  } ctx;
  {
    Retrier<int, 1> retrier(f.reactor, f.rng);
    ctx.retrier = &retrier;
    ctx.up = &up;
    ctx.deadline = f.now() + seconds(1);
    ASSERT_TRUE(retrier
                    .start(fixed_policy(), ctx.deadline, up.attempt(),
                           [&ctx](Result<int>) {
                             ++ctx.done;
                             // Would land in the slot just freed, which the sweep has passed.
                             auto again = ctx.retrier->start(fixed_policy(), ctx.deadline,
                                                             ctx.up->attempt(),
                                                             [](Result<int>) {});
                             ctx.restart = again.ok() ? Errc::ok : again.error();
                           })
                    .ok());
  }
  EXPECT_EQ(ctx.done, 1);
  EXPECT_EQ(ctx.restart, Errc::shutdown) << tern::errc_name(ctx.restart);
  EXPECT_EQ(up.calls, 1);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, CallbacksMayStartAndCancelReentrantly) {
  Fixture f;
  Retrier<int, 1> retrier(f.reactor, f.rng);  // one slot: reuse is forced
  struct State {
    Retrier<int, 1>* retrier = nullptr;
    Fixture* f = nullptr;
    int attempts = 0;
    int done = 0;
    Errc last = Errc::ok;
  } st;
  st.retrier = &retrier;
  st.f = &f;

  // The second try cancels its own operation from inside the attempt.
  auto self_cancelling = [&st](const AttemptContext<int>& a) {
    ++st.attempts;
    if (a.number == 1) {
      (void)a.report(Errc::io);
    } else {
      EXPECT_EQ(st.retrier->cancel(a.ticket.id()), Errc::ok);
      EXPECT_EQ(a.report(5), Errc::late);
    }
  };
  // on_done starts another operation in the slot it just freed.
  auto chain = [&st](Result<int> r) {
    ++st.done;
    st.last = r.ok() ? Errc::ok : r.error();
    if (st.done == 1) {
      auto id = st.retrier->start(
          fixed_policy(), st.f->now() + seconds(1),
          [&st](const AttemptContext<int>& a) {
            ++st.attempts;
            EXPECT_EQ(st.retrier->cancel(a.ticket.id()), Errc::ok);  // inside start()
          },
          [&st](Result<int> r2) {
            ++st.done;
            st.last = r2.ok() ? Errc::ok : r2.error();
          });
      EXPECT_TRUE(id.ok());
      EXPECT_EQ(st.done, 1);  // not from inside that start()
    }
  };
  ASSERT_TRUE(retrier.start(fixed_policy(3, ms(10)), f.now() + seconds(1), self_cancelling, chain)
                  .ok());
  f.advance(ms(10));
  EXPECT_EQ(st.attempts, 3);
  EXPECT_EQ(st.done, 2);
  EXPECT_EQ(st.last, Errc::cancelled) << tern::errc_name(st.last);
  EXPECT_EQ(retrier.in_use(), 0u);
  EXPECT_EQ(retrier.stats().cancelled, 2u);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Retrier, OpenBreakerEndsTheOperationAtOnceWithoutRetrying) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  tern::BreakerSet<4> breakers(tern::BreakerConfig{.failure_threshold = 2});
  struct Target {
    tern::BreakerSet<4>* breakers;
    const ManualClock* clock;
    int calls = 0;  // calls that got past the breaker
  } target{&breakers, &f.clock};
  auto attempt = [&target](const AttemptContext<int>& a) {
    if (target.breakers->allow("retriever", target.clock->now()) != Errc::ok) {
      (void)a.report(Errc::circuit_open);
      return;
    }
    ++target.calls;
    (void)target.breakers->record_failure("retriever", target.clock->now());
    (void)a.report(Errc::io);
  };
  Outcome o;
  ASSERT_TRUE(retrier.start(fixed_policy(3, ms(10)), f.now() + seconds(10), attempt, o.done()).ok());
  f.advance(ms(10));  // the second failure opens the breaker
  f.advance(ms(10));  // the third try meets the open breaker
  EXPECT_EQ(target.calls, 2);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::circuit_open) << tern::errc_name(o.err);

  Outcome o2;  // the next operation fails at once, with no retries
  ASSERT_TRUE(retrier.start(fixed_policy(3, ms(10)), f.now() + seconds(10), attempt, o2.done()).ok());
  f.run();
  EXPECT_EQ(o2.calls, 1);
  EXPECT_EQ(o2.err, Errc::circuit_open) << tern::errc_name(o2.err);
  EXPECT_EQ(target.calls, 2);
  EXPECT_EQ(retrier.stats().retries, 2u);
}

// The whole schedule of a jittered run, for determinism checks.
struct Schedule {
  Instant starts[8];
  int n = 0;
};

Schedule run_jittered(std::uint64_t seed) {
  Fixture f;
  f.rng.reseed(seed);
  Retrier<int, 2> retrier(f.reactor, f.rng);
  Schedule s;
  RetryPolicy p;
  p.max_attempts = 6;
  p.base_delay = ms(20);
  p.max_delay = seconds(1);
  p.jitter = Jitter::full;
  Outcome o;
  struct Ctx {
    Schedule* s;
    const ManualClock* clock;
  } ctx{&s, &f.clock};
  (void)retrier.start(p, f.now() + seconds(30),
                      [&ctx](const AttemptContext<int>& a) {
                        if (ctx.s->n < 8) ctx.s->starts[ctx.s->n++] = ctx.clock->now();
                        (void)a.report(Errc::io);
                      },
                      o.done());
  for (int i = 0; i < 3000 && o.calls == 0; ++i) f.advance(ms(1));
  return s;
}

TEST(Retrier, SameSeedGivesTheSameScheduleAndAnotherSeedAnother) {
  const Schedule a = run_jittered(5);
  const Schedule b = run_jittered(5);
  const Schedule c = run_jittered(6);
  ASSERT_EQ(a.n, 6);
  ASSERT_EQ(b.n, 6);
  ASSERT_EQ(c.n, 6);
  int differ = 0;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(a.starts[i], b.starts[i]) << "try " << i;
    if (a.starts[i] != c.starts[i]) ++differ;
  }
  EXPECT_GT(differ, 0);
}

// 30 days at 1 ms ticks: within the wheel's reach on Linux, beyond it on Cortex-M,
// where a timer keeps its due tick in 32 bits (2^31 - 2^20 ticks: 24.8 days).
TEST(Retrier, ADeadlineOrDelayBeyondTheWheelsReachIsRefusedWhereThereIsOne) {
  Fixture f;
  const Duration far = seconds(std::int64_t{30} * 24 * 3600);
  const Errc want = tern::TimerWheel::kExactDeadlines ? Errc::ok : Errc::invalid_argument;
  Outcome o[3];
  {
    Retrier<int, 4> retrier(f.reactor, f.rng);
    Upstream up(f.clock);
    auto a = retrier.start(fixed_policy(3, ms(100)), f.now() + far, up.attempt(), o[0].done());
    auto b = retrier.start(fixed_policy(3, far), Instant::never(), up.attempt(), o[1].done());
    RetryPolicy limited = fixed_policy(3, ms(100));
    limited.attempt_timeout = far;
    auto c = retrier.start(limited, Instant::never(), up.attempt(), o[2].done());
    EXPECT_EQ(a.ok() ? Errc::ok : a.error(), want);
    EXPECT_EQ(b.ok() ? Errc::ok : b.error(), want);
    EXPECT_EQ(c.ok() ? Errc::ok : c.error(), want);
    EXPECT_EQ(up.calls, want == Errc::ok ? 3 : 0);  // refused: nothing was tried
    EXPECT_EQ(retrier.in_use(), want == Errc::ok ? 3u : 0u);
  }
  EXPECT_EQ(o[0].calls + o[1].calls + o[2].calls, want == Errc::ok ? 3 : 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// With no deadline, a try's own timeout as long as the wheel reaches from start() is
// armed again for each retry, from a clock that has moved past the wheel's tick (here
// by half a tick): on Cortex-M reaches() keeps ticks in hand for that. With a deadline,
// only the deadline needs reaching, so an uncapped backoff is taken on every port.
TEST(Retrier, ATimeoutAtTheWheelsReachIsArmedAgainForEachRetry) {
  Fixture f;
  Retrier<int, 4> retrier(f.reactor, f.rng);
  Upstream up(f.clock);
  Outcome o;
  RetryPolicy p = fixed_policy(3, ms(100));
  p.attempt_timeout = tern::TimerWheel::kExactDeadlines
                          ? seconds(std::int64_t{30} * 24 * 3600)
                          : ms(static_cast<std::int64_t>(tern::TimerWheel::kMaxTicksAhead));
  ASSERT_TRUE(retrier.start(p, Instant::never(), up.attempt(), o.done()).ok());
  ASSERT_EQ(up.calls, 1);
  EXPECT_EQ(up.tickets[0].report(Errc::io), Errc::ok);
  f.advance(tern::us(100500));  // the retry runs at the 100 ms tick, seen at 100.5 ms
  ASSERT_EQ(up.calls, 2);
  EXPECT_EQ(up.timeouts[1], p.attempt_timeout);
  EXPECT_EQ(up.tickets[1].report(7), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.value, 7);

  RetryPolicy uncapped = fixed_policy(3, ms(100));
  uncapped.max_delay = Duration::max();
  uncapped.multiplier = 2.0;
  Outcome o2;
  ASSERT_TRUE(retrier.start(uncapped, f.now() + seconds(10), up.attempt(), o2.done()).ok());
  EXPECT_EQ(up.tickets[2].report(Errc::io), Errc::ok);
  f.advance(ms(100));  // 200.5 ms: the retry is due at the 201 ms tick
  EXPECT_EQ(up.calls, 3);
  f.advance(ms(1));
  ASSERT_EQ(up.calls, 4);
  EXPECT_EQ(up.tickets[3].report(9), Errc::ok);
  EXPECT_EQ(o2.value, 9);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

}  // namespace
