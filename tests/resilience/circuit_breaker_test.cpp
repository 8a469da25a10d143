// CircuitBreaker and BreakerSet: time comes in as arguments (portable: runs on every port).
#include "tern/resilience/circuit_breaker.hpp"

#include "tern/core/pending_table.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern_test.hpp"

namespace {

using tern::BreakerConfig;
using tern::BreakerSet;
using tern::BreakerState;
using tern::CircuitBreaker;
using tern::Duration;
using tern::Errc;
using tern::Instant;
using tern::ms;
using tern::seconds;

Instant at_ms(std::int64_t t) { return Instant(t * 1000); }

struct Transitions {
  BreakerState from[16] = {};
  BreakerState to[16] = {};
  int n = 0;
  CircuitBreaker::Observer observer() {
    return [this](BreakerState f, BreakerState t) {
      if (n < 16) {
        from[n] = f;
        to[n] = t;
      }
      ++n;
    };
  }
};

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresAndASuccessResetsTheCount) {
  CircuitBreaker b;  // the seeds' defaults: 5 failures, 60 s
  const Instant t = at_ms(0);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(b.allow(t), Errc::ok);
    b.record_failure(t);
  }
  ASSERT_EQ(b.allow(t), Errc::ok);
  b.record_success(t);
  EXPECT_EQ(b.consecutive_failures(), 0u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(b.allow(t), Errc::ok);
    b.record_failure(t);
  }
  EXPECT_EQ(b.state(t), BreakerState::closed);
  ASSERT_EQ(b.allow(t), Errc::ok);
  b.record_failure(t);
  EXPECT_EQ(b.state(t), BreakerState::open);
  EXPECT_EQ(b.allow(t), Errc::circuit_open);
  EXPECT_EQ(b.open_until(), t + seconds(60));
  EXPECT_EQ(b.counters().opened, 1u);
  EXPECT_EQ(b.counters().rejected, 1u);
}

TEST(CircuitBreaker, GoesClosedOpenHalfOpenClosedAndOpenAgain) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 2, .open_duration = seconds(60)});
  Transitions tr;
  b.set_observer(tr.observer());

  b.record_failure(at_ms(0));
  b.record_failure(at_ms(10));
  ASSERT_EQ(b.last_state(), BreakerState::open);
  EXPECT_EQ(b.allow(at_ms(59999)), Errc::circuit_open);
  EXPECT_EQ(b.state(at_ms(60009)), BreakerState::open);  // 60 s from the trip, not before
  EXPECT_EQ(b.state(at_ms(60010)), BreakerState::half_open);
  ASSERT_EQ(b.allow(at_ms(60010)), Errc::ok);  // the trial
  b.record_success(at_ms(60020), ms(10));
  EXPECT_EQ(b.state(at_ms(60020)), BreakerState::closed);

  // Closed again with a fresh count: one failure is not enough.
  b.record_failure(at_ms(70000));
  EXPECT_EQ(b.last_state(), BreakerState::closed);
  b.record_failure(at_ms(70001));
  EXPECT_EQ(b.last_state(), BreakerState::open);

  // Half-open again, and a failed trial reopens it for another full period.
  ASSERT_EQ(b.allow(at_ms(130001)), Errc::ok);
  EXPECT_EQ(b.last_state(), BreakerState::half_open);
  b.record_failure(at_ms(130050));
  EXPECT_EQ(b.last_state(), BreakerState::open);
  EXPECT_EQ(b.open_until(), at_ms(130050) + seconds(60));
  EXPECT_EQ(b.allow(at_ms(190049)), Errc::circuit_open);

  const BreakerState expect_from[] = {BreakerState::closed, BreakerState::open,
                                      BreakerState::half_open, BreakerState::closed,
                                      BreakerState::open, BreakerState::half_open};
  const BreakerState expect_to[] = {BreakerState::open, BreakerState::half_open,
                                    BreakerState::closed, BreakerState::open,
                                    BreakerState::half_open, BreakerState::open};
  ASSERT_EQ(tr.n, 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(tr.from[i], expect_from[i]) << "transition " << i;
    EXPECT_EQ(tr.to[i], expect_to[i]) << "transition " << i;
  }
  EXPECT_EQ(b.counters().opened, 3u);
  EXPECT_EQ(b.counters().half_opened, 2u);
  EXPECT_EQ(b.counters().closed, 1u);
  EXPECT_EQ(b.counters().rejected, 2u);
}

TEST(CircuitBreaker, HalfOpenAdmitsExactlyPTrialCalls) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 1, .open_duration = seconds(1),
                                 .half_open_calls = 3});
  b.record_failure(at_ms(0));
  const Instant t = at_ms(1000);
  int admitted = 0;
  for (int i = 0; i < 10; ++i) {
    if (b.allow(t) == Errc::ok) ++admitted;
  }
  EXPECT_EQ(admitted, 3);
  EXPECT_EQ(b.trials_admitted(), 3u);
  EXPECT_EQ(b.counters().rejected, 7u);
  EXPECT_EQ(b.last_state(), BreakerState::half_open);
}

TEST(CircuitBreaker, HalfOpenClosesOnlyWhenAllPTrialsSucceed) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 1, .open_duration = seconds(1),
                                 .half_open_calls = 3});
  b.record_failure(at_ms(0));
  const Instant t = at_ms(1000);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(b.allow(t), Errc::ok);
  b.record_success(t);
  b.record_success(t);
  EXPECT_EQ(b.last_state(), BreakerState::half_open);
  EXPECT_EQ(b.allow(t), Errc::circuit_open);  // all three trials are out
  b.record_success(t);
  EXPECT_EQ(b.last_state(), BreakerState::closed);
  EXPECT_EQ(b.allow(t), Errc::ok);

  // And any one failure among the trials reopens it.
  b.record_failure(t);
  const Instant t2 = t + seconds(1);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(b.allow(t2), Errc::ok);
  b.record_success(t2);
  b.record_failure(t2);
  EXPECT_EQ(b.last_state(), BreakerState::open);
  b.record_success(t2);  // the third trial, reporting after the reopen: ignored
  EXPECT_EQ(b.last_state(), BreakerState::open);
  EXPECT_EQ(b.counters().ignored, 1u);
}

// A failure of a call admitted while closed, reported after the half-open trials have
// all reported, says nothing about the probe: ignored, like a late success.
TEST(CircuitBreaker, StaleFailureWithNoTrialOutstandingIsIgnored) {
  BreakerConfig c;
  c.failure_threshold = 1;
  c.half_open_calls = 2;
  CircuitBreaker b(c);
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);  // X: admitted while closed, still out
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);
  b.record_failure(at_ms(0));  // opens
  ASSERT_EQ(b.allow(at_ms(60000)), Errc::ok);  // trial 1
  b.record_success(at_ms(60000));
  b.record_failure(at_ms(60000));  // X's outcome arrives
  EXPECT_EQ(b.state(at_ms(60000)), BreakerState::half_open);
  EXPECT_EQ(b.counters().ignored, 1u);
}

// A half-open trial that ends without an outcome (its caller cancelled it) gives the
// trial back: the next call probes at once instead of after another open duration.
TEST(CircuitBreaker, AbandonedTrialIsGivenBack) {
  BreakerConfig c;
  c.failure_threshold = 1;
  CircuitBreaker b(c);
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);
  b.record_failure(at_ms(0));
  std::uint32_t trial = 0;
  ASSERT_EQ(b.allow(at_ms(60000), &trial), Errc::ok);  // the trial
  EXPECT_EQ(b.allow(at_ms(60001)), Errc::circuit_open);
  b.record_abandoned(trial);
  EXPECT_EQ(b.counters().abandoned, 1u);
  ASSERT_EQ(b.allow(at_ms(60002), &trial), Errc::ok);  // a new trial
  b.record_success(at_ms(60003));
  EXPECT_EQ(b.state(at_ms(60003)), BreakerState::closed);
  b.record_abandoned(trial);  // closed: nothing changes
  EXPECT_EQ(b.state(at_ms(60003)), BreakerState::closed);
}

// A call admitted before the breaker opened and abandoned during half_open is not one
// of its trials: the trial it would give back is still out, and its failure reopens.
TEST(CircuitBreaker, AbandonedCallFromAnEarlierPeriodGivesNoTrialBack) {
  BreakerConfig c;
  c.failure_threshold = 1;
  CircuitBreaker b(c);
  std::uint32_t early = 0, trial = 0;
  ASSERT_EQ(b.allow(at_ms(0), &early), Errc::ok);  // R2: waits somewhere
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);          // R1
  b.record_failure(at_ms(0));                      // R1 fails: open
  ASSERT_EQ(b.allow(at_ms(60000), &trial), Errc::ok);  // T, the trial
  b.record_abandoned(early);                       // R2 is cancelled
  EXPECT_EQ(b.allow(at_ms(60001)), Errc::circuit_open);  // no second trial
  b.record_failure(at_ms(60002));                  // T fails
  EXPECT_EQ(b.state(at_ms(60002)), BreakerState::open);
}

// A call admitted while closed that reports while a real probe is out is not the
// probe: its outcome neither closes nor reopens the breaker; the probe's does.
TEST(CircuitBreaker, OutcomeOfACallAdmittedWhileClosedIsNotTakenForTheProbe) {
  BreakerConfig c;
  c.failure_threshold = 1;
  CircuitBreaker b(c);
  std::uint32_t a = 0, bb = 0, p = 0;
  ASSERT_EQ(b.allow(at_ms(0), &a), Errc::ok);   // A: still out
  ASSERT_EQ(b.allow(at_ms(0), &bb), Errc::ok);  // B
  b.record_failure(at_ms(0), bb);               // B fails: open
  ASSERT_EQ(b.state(at_ms(0)), BreakerState::open);
  ASSERT_EQ(b.allow(at_ms(60000), &p), Errc::ok);  // P, the probe
  ASSERT_EQ(b.last_state(), BreakerState::half_open);
  b.record_success(at_ms(60001), Duration::zero(), a);  // A's success arrives
  EXPECT_EQ(b.state(at_ms(60001)), BreakerState::half_open);
  EXPECT_EQ(b.counters().ignored, 1u);
  b.record_success(at_ms(60002), Duration::zero(), p);  // P's
  EXPECT_EQ(b.state(at_ms(60002)), BreakerState::closed);
  EXPECT_EQ(b.counters().successes, 1u);
}

TEST(CircuitBreaker, StaleFailureWhileAProbeIsOutDoesNotReopen) {
  BreakerConfig c;
  c.failure_threshold = 1;
  CircuitBreaker b(c);
  std::uint32_t a = 0, p = 0;
  ASSERT_EQ(b.allow(at_ms(0), &a), Errc::ok);  // A: still out
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);
  b.record_failure(at_ms(0));  // open
  ASSERT_EQ(b.allow(at_ms(60000), &p), Errc::ok);  // P
  b.record_failure(at_ms(60001), a);  // A's failure: not the probe's
  EXPECT_EQ(b.state(at_ms(60001)), BreakerState::half_open);
  EXPECT_EQ(b.counters().opened, 1u);
  // A slow success is a failure, and a stale one is ignored too.
  BreakerConfig slow = c;
  slow.slow_call = ms(10);
  b.reconfigure(slow);
  ASSERT_EQ(b.allow(at_ms(60002)), Errc::ok);
  b.record_failure(at_ms(60002));  // open again
  ASSERT_EQ(b.allow(at_ms(120002), &p), Errc::ok);
  b.record_success(at_ms(120003), ms(50), a);
  EXPECT_EQ(b.state(at_ms(120003)), BreakerState::half_open);
  b.record_failure(at_ms(120004), p);  // the probe's own failure reopens
  EXPECT_EQ(b.state(at_ms(120004)), BreakerState::open);
}

TEST(CircuitBreaker, OpenDurationBeyondDurationMaxIsInvalid) {
  BreakerConfig c;
  c.open_duration = tern::Duration::max();
  EXPECT_EQ(tern::validate(c), Errc::ok);
  c.open_duration = tern::Duration(INT64_MAX);  // now + this would overflow
  EXPECT_EQ(tern::validate(c), Errc::invalid_argument);
}

TEST(CircuitBreaker, FailureRateTripsOnlyOnceMinimumCallsWereSeen) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 0, .window = 10, .min_calls = 6,
                                 .failure_rate_percent = 50});
  const Instant t = at_ms(0);
  // F S F S F: 3 of 5 failed, 60%, but only 5 calls seen.
  b.record_failure(t);
  b.record_success(t);
  b.record_failure(t);
  b.record_success(t);
  b.record_failure(t);
  EXPECT_EQ(b.last_state(), BreakerState::closed);
  EXPECT_EQ(b.window_outcomes(), 5u);
  EXPECT_EQ(b.window_failures(), 3u);
  b.record_success(t);  // 3 of 6: 50%, but a success never trips
  EXPECT_EQ(b.last_state(), BreakerState::closed);
  b.record_failure(t);  // 4 of 7
  EXPECT_EQ(b.last_state(), BreakerState::open);
  EXPECT_EQ(b.window_outcomes(), 0u);  // opening starts the next window afresh
}

TEST(CircuitBreaker, FailureRateWindowSlidesOverTheLastWOutcomes) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 0, .window = 4, .min_calls = 4,
                                 .failure_rate_percent = 75});
  const Instant t = at_ms(0);
  b.record_failure(t);
  b.record_failure(t);
  for (int i = 0; i < 20; ++i) b.record_success(t);  // the failures slide out
  EXPECT_EQ(b.window_outcomes(), 4u);
  EXPECT_EQ(b.window_failures(), 0u);
  b.record_failure(t);
  b.record_failure(t);
  EXPECT_EQ(b.last_state(), BreakerState::closed);  // 2 of 4
  b.record_failure(t);                              // 3 of 4 = 75%
  EXPECT_EQ(b.last_state(), BreakerState::open);
}

TEST(CircuitBreaker, FullWidthWindowOfSixtyFourOutcomes) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 0, .window = 64, .min_calls = 64,
                                 .failure_rate_percent = 25});
  const Instant t = at_ms(0);
  for (int i = 0; i < 100; ++i) b.record_success(t);
  for (int i = 0; i < 15; ++i) b.record_failure(t);
  EXPECT_EQ(b.window_outcomes(), 64u);
  EXPECT_EQ(b.window_failures(), 15u);
  EXPECT_EQ(b.last_state(), BreakerState::closed);
  b.record_failure(t);  // 16 of 64 = 25%
  EXPECT_EQ(b.last_state(), BreakerState::open);
}

TEST(CircuitBreaker, SlowSuccessCountsAsFailure) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 2, .slow_call = ms(500)});
  const Instant t = at_ms(0);
  b.record_success(t, ms(500));  // not slower than the threshold
  EXPECT_EQ(b.consecutive_failures(), 0u);
  b.record_success(t, ms(501));
  EXPECT_EQ(b.consecutive_failures(), 1u);
  b.record_success(t, ms(2000));
  EXPECT_EQ(b.last_state(), BreakerState::open);
  EXPECT_EQ(b.counters().slow_calls, 2u);
  EXPECT_EQ(b.counters().failures, 2u);
  EXPECT_EQ(b.counters().successes, 1u);
}

TEST(CircuitBreaker, SlowTrialReopensAHalfOpenBreaker) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 1, .slow_call = ms(100),
                                 .open_duration = seconds(5)});
  b.record_failure(at_ms(0));
  ASSERT_EQ(b.allow(at_ms(5000)), Errc::ok);
  b.record_success(at_ms(5300), ms(300));
  EXPECT_EQ(b.last_state(), BreakerState::open);
  EXPECT_EQ(b.open_until(), at_ms(5300) + seconds(5));
}

TEST(CircuitBreaker, OutcomesWhileOpenAreIgnored) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 1, .open_duration = seconds(1)});
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);
  ASSERT_EQ(b.allow(at_ms(0)), Errc::ok);
  b.record_failure(at_ms(1));
  b.record_success(at_ms(2));  // the other call, admitted before the trip
  b.record_failure(at_ms(3));
  EXPECT_EQ(b.counters().ignored, 2u);
  EXPECT_EQ(b.open_until(), at_ms(1) + seconds(1));  // a stale failure does not extend it
  EXPECT_EQ(b.state(at_ms(1001)), BreakerState::half_open);
  b.record_success(at_ms(1001));  // no trial was admitted: not a trial success
  EXPECT_EQ(b.last_state(), BreakerState::half_open);
  EXPECT_EQ(b.counters().ignored, 3u);
}

TEST(CircuitBreaker, TrialsThatNeverReportAreForgottenAfterTheOpenDuration) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 1, .open_duration = seconds(10),
                                 .half_open_calls = 1});
  b.record_failure(at_ms(0));
  ASSERT_EQ(b.allow(at_ms(10000)), Errc::ok);  // the trial is lost
  EXPECT_EQ(b.allow(at_ms(19999)), Errc::circuit_open);
  EXPECT_EQ(b.allow(at_ms(20000)), Errc::ok);
  EXPECT_EQ(b.counters().trials_expired, 1u);
  b.record_success(at_ms(20001));
  EXPECT_EQ(b.last_state(), BreakerState::closed);
}

TEST(CircuitBreaker, ObserverMayCallBackIntoTheBreaker) {
  CircuitBreaker b(BreakerConfig{.failure_threshold = 1, .open_duration = seconds(1)});
  struct Ctx {
    CircuitBreaker* b;
    int calls = 0;
  } ctx{&b};
  b.set_observer([&ctx](BreakerState, BreakerState to) {
    ++ctx.calls;
    if (to == BreakerState::open) ctx.b->reset();  // an operator override, from inside
  });
  b.record_failure(at_ms(0));
  EXPECT_EQ(ctx.calls, 2);  // closed -> open, then open -> closed
  EXPECT_EQ(b.last_state(), BreakerState::closed);
  EXPECT_EQ(b.allow(at_ms(1)), Errc::ok);
}

TEST(CircuitBreaker, ValidateRejectsUnusableConfigs) {
  EXPECT_EQ(tern::validate(BreakerConfig{}), Errc::ok);
  EXPECT_EQ(tern::validate(BreakerConfig{.window = 65}), Errc::invalid_argument);
  EXPECT_EQ(tern::validate(BreakerConfig{.window = 8, .min_calls = 9}), Errc::invalid_argument);
  EXPECT_EQ(tern::validate(BreakerConfig{.window = 8, .failure_rate_percent = 0}),
            Errc::invalid_argument);
  EXPECT_EQ(tern::validate(BreakerConfig{.window = 8, .failure_rate_percent = 101}),
            Errc::invalid_argument);
  EXPECT_EQ(tern::validate(BreakerConfig{.open_duration = tern::Duration::zero()}),
            Errc::invalid_argument);
  EXPECT_EQ(tern::validate(BreakerConfig{.slow_call = tern::Duration::zero()}),
            Errc::invalid_argument);
  EXPECT_EQ(tern::validate(BreakerConfig{.half_open_calls = 0}), Errc::invalid_argument);
}

// ---- BreakerSet ----

TEST(BreakerSet, TargetsAreIsolated) {
  BreakerSet<4> set(BreakerConfig{.failure_threshold = 2});
  const Instant t = at_ms(0);
  ASSERT_EQ(set.allow("retriever", t), Errc::ok);
  ASSERT_EQ(set.allow("ranker", t), Errc::ok);
  EXPECT_EQ(set.record_failure("retriever", t), Errc::ok);
  EXPECT_EQ(set.record_failure("retriever", t), Errc::ok);
  EXPECT_EQ(set.allow("retriever", t), Errc::circuit_open);
  EXPECT_EQ(set.allow("ranker", t), Errc::ok);
  EXPECT_EQ(*set.state("ranker", t), BreakerState::closed);
  EXPECT_EQ(*set.state("retriever", t), BreakerState::open);
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(set.stats().rejected, 1u);
}

// An erased target's entry goes to the next new target with zero counters.
TEST(BreakerSet, NewTargetInAnErasedEntryStartsWithZeroCounters) {
  BreakerConfig c;
  c.failure_threshold = 1;
  BreakerSet<1> set(c);
  ASSERT_EQ(set.allow("old", at_ms(0)), Errc::ok);
  ASSERT_EQ(set.record_failure("old", at_ms(0)), Errc::ok);
  ASSERT_EQ(set.state("old", at_ms(0)).value(), BreakerState::open);
  ASSERT_EQ(set.erase("old"), Errc::ok);
  ASSERT_EQ(set.allow("new", at_ms(1)), Errc::ok);
  const tern::BreakerCounters& n = set.find("new")->counters();
  EXPECT_EQ(n.admitted, 1u);
  EXPECT_EQ(n.rejected, 0u);
  EXPECT_EQ(n.successes, 0u);
  EXPECT_EQ(n.failures, 0u);
  EXPECT_EQ(n.opened, 0u);
  EXPECT_EQ(n.half_opened, 0u);
  EXPECT_EQ(n.closed, 0u);
  EXPECT_EQ(set.find("new")->last_state(), BreakerState::closed);
}

TEST(BreakerSet, FullTableRefusesNewTargetsOnlyAndKeepsTheOthers) {
  BreakerSet<2> set(BreakerConfig{.failure_threshold = 1});
  const Instant t = at_ms(0);
  ASSERT_EQ(set.allow("a:80", t), Errc::ok);
  ASSERT_EQ(set.allow("b:80", t), Errc::ok);
  EXPECT_TRUE(set.full());
  EXPECT_EQ(set.allow("c:80", t), Errc::full);
  EXPECT_EQ(set.stats().full, 1u);
  EXPECT_EQ(set.allow("a:80", t), Errc::ok);  // known targets still work
  EXPECT_EQ(set.record_failure("c:80", t), Errc::not_found);
  EXPECT_EQ(set.record_failure("b:80", t), Errc::ok);
  EXPECT_EQ(set.allow("b:80", t), Errc::circuit_open);
  ASSERT_EQ(set.erase("a:80"), Errc::ok);
  EXPECT_EQ(set.allow("c:80", t), Errc::ok);  // the freed entry is reused
  EXPECT_EQ(set.find("a:80"), nullptr);
  EXPECT_EQ(set.size(), 2u);
}

TEST(BreakerSet, IntegerAndStringKeysAreDistinctTargets) {
  BreakerSet<4> set(BreakerConfig{.failure_threshold = 1});
  const Instant t = at_ms(0);
  const std::uint16_t retriever = 7;  // an AgentId
  ASSERT_EQ(set.allow(retriever, t), Errc::ok);
  ASSERT_EQ(set.record_failure(retriever, t), Errc::ok);
  EXPECT_EQ(set.allow(std::uint16_t{7}, t), Errc::circuit_open);
  EXPECT_EQ(set.allow("7", t), Errc::ok);  // the text "7" is another target
  EXPECT_EQ(set.allow(8, t), Errc::ok);
  EXPECT_EQ(set.size(), 3u);

  // Even when the number's bytes spell the text ("12345678" little-endian).
  BreakerSet<2> same_bytes(BreakerConfig{.failure_threshold = 1});
  const std::uint64_t spelled = 0x3837363534333231ULL;
  ASSERT_EQ(same_bytes.allow(spelled, t), Errc::ok);
  ASSERT_EQ(same_bytes.record_failure(spelled, t), Errc::ok);
  EXPECT_EQ(same_bytes.allow("12345678", t), Errc::ok);
  EXPECT_EQ(same_bytes.allow(spelled, t), Errc::circuit_open);
  EXPECT_EQ(same_bytes.size(), 2u);
}

TEST(BreakerSet, OverLongAndEmptyKeysAreRefused) {
  BreakerSet<2> set;
  char key[tern::kBreakerKeyMax + 2] = {};
  for (std::size_t i = 0; i < tern::kBreakerKeyMax; ++i) key[i] = 'k';
  EXPECT_EQ(set.allow(key, at_ms(0)), Errc::ok);  // exactly the maximum fits
  key[tern::kBreakerKeyMax] = 'k';
  EXPECT_EQ(set.allow(key, at_ms(0)), Errc::too_large);
  EXPECT_EQ(set.allow("", at_ms(0)), Errc::invalid_argument);
  EXPECT_EQ(set.size(), 1u);
}

TEST(BreakerSet, PerTargetConfigOverridesTheDefaults) {
  BreakerSet<4> set(BreakerConfig{.failure_threshold = 5});
  const Instant t = at_ms(0);
  auto fragile = set.configure("fragile", BreakerConfig{.failure_threshold = 1});
  ASSERT_TRUE(fragile.ok());
  EXPECT_EQ((*fragile)->config().failure_threshold, 1u);
  ASSERT_EQ(set.record_failure("fragile", t), Errc::ok);
  EXPECT_EQ(set.allow("fragile", t), Errc::circuit_open);
  ASSERT_EQ(set.allow("sturdy", t), Errc::ok);
  ASSERT_EQ(set.record_failure("sturdy", t), Errc::ok);
  EXPECT_EQ(set.allow("sturdy", t), Errc::ok);
  EXPECT_EQ(set.configure("x", BreakerConfig{.half_open_calls = 0}).error(),
            Errc::invalid_argument);
}

TEST(BreakerSet, ObserverNamesTheTarget) {
  BreakerSet<4> set(BreakerConfig{.failure_threshold = 1, .open_duration = seconds(1)});
  struct Seen {
    char key[16] = {};
    std::uint64_t number = 0;
    bool numeric = false;
    BreakerState to = BreakerState::closed;
    int n = 0;
  } seen;
  set.set_observer([&seen](tern::BreakerKey key, BreakerState, BreakerState to) {
    ++seen.n;
    seen.to = to;
    seen.numeric = key.is_number();
    seen.number = key.number();
    const std::size_t len = key.text().size() < 15 ? key.text().size() : 15;
    for (std::size_t i = 0; i < 16; ++i) seen.key[i] = i < len ? key.text()[i] : '\0';
  });
  ASSERT_EQ(set.allow("origin:443", at_ms(0)), Errc::ok);
  ASSERT_EQ(set.record_failure("origin:443", at_ms(0)), Errc::ok);
  EXPECT_EQ(seen.n, 1);
  EXPECT_STREQ(seen.key, "origin:443");
  EXPECT_EQ(seen.to, BreakerState::open);
  ASSERT_EQ(set.allow(42, at_ms(0)), Errc::ok);
  ASSERT_EQ(set.record_failure(42, at_ms(0)), Errc::ok);
  EXPECT_EQ(seen.n, 2);
  EXPECT_TRUE(seen.numeric);
  EXPECT_EQ(seen.number, 42u);
  ASSERT_EQ(set.erase(42), Errc::ok);  // erasing an open target is not a transition
  EXPECT_EQ(seen.n, 2);
}

TEST(BreakerSet, OpenTargetFailsAtOnceAndCostsNoRequestSlot) {
  // The pattern: ask the breaker before taking a pending-table slot.
  tern::TimerWheel wheel;
  tern::PendingTable<int, 2> pending(wheel);
  BreakerSet<2> set(BreakerConfig{.failure_threshold = 1});
  int fallbacks = 0;
  int outcomes = 0;
  auto call = [&](Instant now) {
    if (set.allow("down", now) != Errc::ok) {
      ++fallbacks;
      return;
    }
    auto id = pending.start(now + seconds(1), [&](tern::Result<int>) { ++outcomes; });
    ASSERT_TRUE(id.ok());
    ASSERT_EQ(pending.fail(*id, Errc::io), Errc::ok);
    ASSERT_EQ(set.record_failure("down", now), Errc::ok);
  };
  call(at_ms(0));
  for (int i = 0; i < 10; ++i) call(at_ms(1 + i));
  EXPECT_EQ(outcomes, 1);
  EXPECT_EQ(fallbacks, 10);
  EXPECT_EQ(pending.stats().started, 1u);
  EXPECT_EQ(pending.in_use(), 0u);
}

}  // namespace
