// Batcher rules, with a manual clock (portable: runs on every port).
#include "tern/resilience/batcher.hpp"

#include "tern/core/rng.hpp"
#include "manual_reactor.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::Instant;
using tern::ManualClock;
using tern::Reactor;
using tern::Result;

using Fixture = tern_test::ManualReactor;

// Counts live instances, so a test can check that every item is destroyed once.
struct Text {
  static int live;
  int v = 0;
  explicit Text(int x) : v(x) { ++live; }
  Text(const Text& o) : v(o.v) { ++live; }
  Text(Text&& o) noexcept : v(o.v) { ++live; }
  Text& operator=(const Text&) = default;
  ~Text() { --live; }
};
int Text::live = 0;

using Embedder = tern::Batcher<Text, int, 3, 1>;

// The flush side of a test: remembers every batch it was given.
struct Upstream {
  int batches = 0;
  int sizes[8] = {};
  int first_item[8] = {};
  int items[8][3] = {};
  Embedder::Ticket tickets[8];
  auto fn() {
    return [this](std::span<Text> texts, Embedder::Ticket t) {
      if (batches >= 8) return;
      sizes[batches] = static_cast<int>(texts.size());
      first_item[batches] = texts.empty() ? -1 : texts[0].v;
      for (std::size_t i = 0; i < texts.size() && i < 3; ++i)
        items[batches][i] = texts[i].v;
      tickets[batches] = t;
      ++batches;
    };
  }
};

struct Outcome {
  int calls = 0;
  Errc err = Errc::ok;
  int value = 0;
};

Embedder::Callback record(Outcome* o) {
  return [o](Result<int> r) {
    ++o->calls;
    o->err = r.ok() ? Errc::ok : r.error();
    if (r.ok()) o->value = *r;
  };
}

TEST(Batcher, BatchFlushedWhenItHoldsBItems) {
  Fixture f;
  Upstream up;
  Outcome o[3];
  {
    Embedder batcher(f.reactor, {.max_delay = tern::ms(10)}, up.fn());
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(
          batcher.add(Text(10 + i), f.in(tern::seconds(1)), record(&o[i]))
              .ok());
    EXPECT_EQ(up.batches, 0);  // never inside add()
    f.run();  // full: flushed on the next turn, not after max_delay
    ASSERT_EQ(up.batches, 1);
    EXPECT_EQ(up.sizes[0], 3);
    EXPECT_EQ(up.items[0][0], 10);
    EXPECT_EQ(up.items[0][2], 12);
    EXPECT_EQ(Text::live, 0);  // items live only during the flush call
    EXPECT_EQ(up.tickets[0].size(), 3u);
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(up.tickets[0].complete(i, 100 + i), Errc::ok);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(o[i].calls, 1);
      EXPECT_EQ(o[i].value, 100 + i);
    }
    EXPECT_FALSE(up.tickets[0].pending());
    EXPECT_EQ(batcher.stats().flushed_full, 1u);
    EXPECT_EQ(batcher.stats().delivered, 3u);
    EXPECT_EQ(batcher.stats().in_flight, 0u);
    EXPECT_EQ(batcher.stats().waiting, 0u);
  }
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Batcher, BatchFlushedByDelayWithFewerItems) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(10)}, up.fn());
  Outcome a, b;
  ASSERT_TRUE(batcher.add(Text(1), f.in(tern::seconds(1)), record(&a)).ok());
  f.advance(tern::ms(4));
  ASSERT_TRUE(batcher.add(Text(2), f.in(tern::seconds(1)), record(&b)).ok());
  f.advance(tern::ms(5));
  EXPECT_EQ(up.batches, 0);  // 9 ms after the first item
  f.advance(tern::ms(1));
  ASSERT_EQ(up.batches, 1);
  EXPECT_EQ(up.sizes[0], 2);
  EXPECT_EQ(batcher.stats().flushed_by_delay, 1u);
  EXPECT_EQ(batcher.stats().pending, 0u);
  EXPECT_EQ(up.tickets[0].complete(1, 20), Errc::ok);
  EXPECT_EQ(up.tickets[0].complete(0, 10), Errc::ok);
  EXPECT_EQ(a.value, 10);
  EXPECT_EQ(b.value, 20);
}

TEST(Batcher, BatchThatPartlyFailsGivesEachItemItsOwnOutcome) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(10)}, up.fn());
  Outcome o[3];
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(
        batcher.add(Text(i), f.in(tern::seconds(1)), record(&o[i])).ok());
  f.run();
  ASSERT_EQ(up.batches, 1);
  Embedder::Ticket t = up.tickets[0];
  EXPECT_EQ(t.complete(0, 7), Errc::ok);
  EXPECT_EQ(t.fail(1, Errc::too_large),
            Errc::ok);  // e.g. one input over the token limit
  EXPECT_TRUE(t.pending());
  EXPECT_EQ(t.complete(3, 1), Errc::invalid_argument);
  EXPECT_EQ(t.fail(2, Errc::ok), Errc::invalid_argument);
  EXPECT_EQ(t.complete(0, 8), Errc::late);  // item 0 already had its outcome
  EXPECT_EQ(t.finish(), Errc::ok);  // the response had nothing for item 2
  EXPECT_EQ(o[0].value, 7);
  EXPECT_EQ(o[1].err, Errc::too_large);
  EXPECT_EQ(o[2].err, Errc::no_reply);
  for (const Outcome& x : o) EXPECT_EQ(x.calls, 1);
  EXPECT_FALSE(t.pending());
  EXPECT_EQ(t.complete(2, 1), Errc::late);
  EXPECT_EQ(batcher.stats().delivered, 1u);
  EXPECT_EQ(batcher.stats().failed, 2u);
  EXPECT_EQ(batcher.stats().late, 2u);
}

TEST(Batcher, WholeBatchErrorReachesEveryItem) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(1)}, up.fn());
  Outcome a, b;
  ASSERT_TRUE(batcher.add(Text(1), Instant::never(), record(&a)).ok());
  ASSERT_TRUE(batcher.add(Text(2), Instant::never(), record(&b)).ok());
  f.advance(tern::ms(1));
  ASSERT_EQ(up.batches, 1);
  EXPECT_EQ(up.tickets[0].fail_all(Errc::failed), Errc::ok);  // e.g. HTTP 500
  EXPECT_EQ(a.err, Errc::failed);
  EXPECT_EQ(b.err, Errc::failed);
  EXPECT_EQ(up.tickets[0].fail_all(Errc::failed), Errc::late);
}

TEST(Batcher, ItemTimingOutBeforeItsBatchAnswersEndsAloneAndItsResultIsLate) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(2)}, up.fn());
  Outcome quick, patient;
  ASSERT_TRUE(batcher.add(Text(1), f.in(tern::ms(20)), record(&quick)).ok());
  ASSERT_TRUE(
      batcher.add(Text(2), f.in(tern::seconds(1)), record(&patient)).ok());
  f.advance(tern::ms(2));
  ASSERT_EQ(up.batches, 1);
  f.advance(tern::ms(20));
  EXPECT_EQ(quick.calls, 1);
  EXPECT_EQ(quick.err, Errc::timeout);
  EXPECT_EQ(patient.calls, 0);
  EXPECT_TRUE(up.tickets[0].pending());
  EXPECT_EQ(up.tickets[0].complete(0, 11), Errc::late);  // dropped, counted
  EXPECT_EQ(up.tickets[0].complete(1, 22), Errc::ok);
  EXPECT_EQ(quick.calls, 1);
  EXPECT_EQ(patient.value, 22);
  EXPECT_EQ(batcher.stats().timed_out, 1u);
  EXPECT_EQ(batcher.stats().late, 1u);
  EXPECT_EQ(batcher.stats().in_flight, 0u);
}

TEST(Batcher, ItemTimingOutBeforeTheFlushIsLeftOutOfTheBatch) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(10)}, up.fn());
  Outcome d, e, g;
  ASSERT_TRUE(batcher.add(Text(4), f.in(tern::seconds(1)), record(&d)).ok());
  ASSERT_TRUE(batcher.add(Text(5), f.in(tern::ms(3)), record(&e)).ok());
  f.advance(tern::ms(3));
  EXPECT_EQ(e.err, Errc::timeout);
  EXPECT_EQ(Text::live, 1);
  ASSERT_TRUE(batcher.add(Text(6), f.in(tern::seconds(1)), record(&g)).ok());
  f.advance(tern::ms(6));
  EXPECT_EQ(up.batches, 0);
  f.advance(tern::ms(1));  // max_delay after the first item
  ASSERT_EQ(up.batches, 1);
  EXPECT_EQ(up.sizes[0], 2);  // 4 and 6, in order, without 5
  EXPECT_EQ(up.items[0][0], 4);
  EXPECT_EQ(up.items[0][1], 6);
  EXPECT_EQ(up.tickets[0].complete(1, 60), Errc::ok);
  EXPECT_EQ(up.tickets[0].complete(0, 40), Errc::ok);
  EXPECT_EQ(d.value, 40);
  EXPECT_EQ(g.value, 60);
  EXPECT_EQ(e.calls, 1);
  EXPECT_EQ(Text::live, 0);
}

TEST(Batcher,
     DueBatchWaitsForAnInFlightSlotAndAddIsFullWhenEveryBufferIsTaken) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(5)},
                   up.fn());  // 1 in flight
  Outcome o[7];
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(batcher.add(Text(i), Instant::never(), record(&o[i])).ok());
  f.run();
  ASSERT_EQ(up.batches, 1);
  for (int i = 3; i < 6; ++i)
    ASSERT_TRUE(batcher.add(Text(i), Instant::never(), record(&o[i])).ok());
  Text extra(6);
  auto refused = batcher.add(extra, Instant::never(), record(&o[6]));
  EXPECT_EQ(refused.error(), Errc::full);
  EXPECT_EQ(extra.v, 6);  // not consumed
  EXPECT_EQ(batcher.stats().rejected, 1u);
  f.advance(tern::ms(50));
  EXPECT_EQ(up.batches, 1);  // due, but the one call allowed is still out
  EXPECT_EQ(batcher.stats().deferred, 1u);
  EXPECT_EQ(up.tickets[0].fail_all(Errc::io), Errc::ok);
  EXPECT_EQ(up.batches,
            1);  // the waiting batch goes on the next turn, not inside
  f.run();
  ASSERT_EQ(up.batches, 2);
  EXPECT_EQ(up.first_item[1], 3);
  EXPECT_EQ(batcher.stats().in_flight_high_water, 1u);
  EXPECT_EQ(up.tickets[1].finish(), Errc::ok);
  EXPECT_EQ(o[6].calls, 0);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(o[i].calls, 1);
}

TEST(Batcher, BatchWhoseItemsAllLeftIsAbandonedAndItsAnswerIsLate) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::ms(1)}, up.fn());
  Outcome a;
  auto id = batcher.add(Text(1), f.in(tern::ms(30)), record(&a));
  ASSERT_TRUE(id.ok());
  f.advance(tern::ms(1));
  ASSERT_EQ(up.batches, 1);
  EXPECT_EQ(batcher.cancel(*id), Errc::ok);
  EXPECT_EQ(a.err, Errc::cancelled);
  EXPECT_EQ(batcher.cancel(*id), Errc::late);
  EXPECT_FALSE(up.tickets[0].pending());
  EXPECT_EQ(batcher.stats().abandoned, 1u);
  EXPECT_EQ(batcher.stats().in_flight,
            0u);  // the slot is free for the next batch
  EXPECT_EQ(up.tickets[0].complete(0, 5), Errc::late);
  EXPECT_EQ(batcher.stats().late, 1u);
  EXPECT_EQ(a.calls, 1);
}

TEST(Batcher, AnswerInsideTheFlushCallIsDeliveredAndTheBufferIsReused) {
  Fixture f;
  int batches = 0;
  int first_seen[4] = {};
  tern::Batcher<Text, int, 2, 1> batcher(
      f.reactor, {.max_delay = tern::ms(1)},
      [&](std::span<Text> texts, tern::Batcher<Text, int, 2, 1>::Ticket t) {
        if (batches < 4) first_seen[batches] = texts[0].v;
        ++batches;
        for (std::size_t i = 0; i < texts.size(); ++i)
          EXPECT_EQ(t.complete(i, texts[i].v * 10), Errc::ok);
        EXPECT_EQ(texts[0].v,
                  first_seen[batches - 1]);  // items still readable here
      });
  int sum = 0;
  auto cb = [&sum](Result<int> r) { sum += r.ok() ? *r : -1000; };
  for (int i = 1; i <= 6; ++i) {
    ASSERT_TRUE(batcher.add(Text(i), Instant::never(), cb).ok());
    f.run();
  }
  EXPECT_EQ(batches, 3);
  EXPECT_EQ(sum, 210);
  EXPECT_EQ(first_seen[2], 5);
  EXPECT_EQ(Text::live, 0);
}

TEST(Batcher, FlushSendsTheOpenBatchOnTheNextTurn) {
  Fixture f;
  Upstream up;
  Embedder batcher(f.reactor, {.max_delay = tern::seconds(10)}, up.fn());
  Outcome a;
  ASSERT_TRUE(batcher.add(Text(1), Instant::never(), record(&a)).ok());
  batcher.flush();
  EXPECT_EQ(up.batches, 0);
  f.run();
  ASSERT_EQ(up.batches, 1);
  EXPECT_EQ(up.tickets[0].complete(0, 3), Errc::ok);
  EXPECT_EQ(a.value, 3);
}

TEST(Batcher, CancelAllEndsAnOwnersItemsGatheredOrFlushed) {
  Fixture f;
  Upstream up;
  Outcome o[4];
  int owner = 0;
  {
    Embedder batcher(f.reactor, {.max_delay = tern::ms(5)}, up.fn());
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(
          batcher.add(Text(i), Instant::never(), record(&o[i]), &owner).ok());
    f.run();  // flushed
    ASSERT_TRUE(
        batcher.add(Text(3), Instant::never(), record(&o[3]), &owner).ok());
    EXPECT_EQ(batcher.cancel_all(&owner), 4u);
    EXPECT_EQ(batcher.stats().waiting, 0u);
    EXPECT_EQ(batcher.stats().pending, 0u);
    EXPECT_EQ(up.tickets[0].complete(0, 1), Errc::late);
  }
  for (const Outcome& x : o) {
    EXPECT_EQ(x.calls, 1);
    EXPECT_EQ(x.err, Errc::cancelled);
  }
  EXPECT_EQ(Text::live, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Batcher, DestructionCancelsItemsStillWaiting) {
  Fixture f;
  Upstream up;
  Outcome a;
  {
    Embedder batcher(f.reactor, {.max_delay = tern::ms(5)}, up.fn());
    ASSERT_TRUE(batcher.add(Text(1), f.in(tern::seconds(1)), record(&a)).ok());
  }
  EXPECT_EQ(a.err, Errc::cancelled);
  EXPECT_EQ(up.batches, 0);
  EXPECT_EQ(Text::live, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Batcher, AddFromACallbackRunByTheDestructorIsRefused) {
  Fixture f;
  Upstream up;
  Outcome second;
  Errc again = Errc::ok;
  {
    Embedder batcher(f.reactor, {.max_delay = tern::ms(5)}, up.fn());
    Embedder* b = &batcher;
    ASSERT_TRUE(batcher
                    .add(Text(1), f.in(tern::seconds(1)),
                         [&, b](Result<int>) {
                           auto r = b->add(Text(2), f.in(tern::seconds(1)), record(&second));
                           again = r.ok() ? Errc::ok : r.error();
                         })
                    .ok());
  }
  EXPECT_EQ(again, Errc::shutdown);
  EXPECT_EQ(second.calls, 0);
  EXPECT_EQ(Text::live, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// A Batcher on the heap that an item's on_done deletes: under ASan, anything it
// touches after that callback returns is a heap-use-after-free.
struct Doomed {
  Embedder* batcher = nullptr;
  int calls = 0;
  Errc errs[2] = {};

  Embedder::Callback done() {
    return [this](Result<int> r) {
      if (calls < 2) errs[calls] = r.ok() ? Errc::ok : r.error();
      ++calls;
      if (Embedder* b = batcher) {
        batcher = nullptr;  // the callbacks the destructor runs must not delete it again
        delete b;
      }
    };
  }
};

TEST(Batcher, ItemCallbackRunByFinishMayDestroyTheBatcher) {
  Fixture f;
  Upstream up;
  Doomed d;
  d.batcher = new Embedder(f.reactor, {.max_delay = tern::ms(5)}, up.fn());
  ASSERT_TRUE(d.batcher->add(Text(1), Instant::never(), d.done()).ok());
  ASSERT_TRUE(d.batcher->add(Text(2), Instant::never(), d.done()).ok());
  f.advance(tern::ms(5));
  ASSERT_EQ(up.batches, 1);
  // The first item's on_done deletes it; the destructor cancels the second.
  EXPECT_EQ(up.tickets[0].finish(), Errc::ok);
  EXPECT_EQ(d.batcher, nullptr);
  EXPECT_EQ(d.calls, 2);
  EXPECT_EQ(d.errs[0], Errc::no_reply);
  EXPECT_EQ(d.errs[1], Errc::cancelled);
  EXPECT_EQ(Text::live, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Batcher, ItemCallbackRunByCancelAllMayDestroyTheBatcher) {
  Fixture f;
  Upstream up;
  Doomed d;
  d.batcher = new Embedder(f.reactor, {.max_delay = tern::ms(5)}, up.fn());
  ASSERT_TRUE(d.batcher->add(Text(1), Instant::never(), d.done()).ok());
  ASSERT_TRUE(d.batcher->add(Text(2), Instant::never(), d.done()).ok());
  EXPECT_EQ(d.batcher->cancel_all(), 1u);  // the destructor cancelled the other
  EXPECT_EQ(d.batcher, nullptr);
  EXPECT_EQ(d.calls, 2);
  EXPECT_EQ(d.errs[0], Errc::cancelled);
  EXPECT_EQ(d.errs[1], Errc::cancelled);
  EXPECT_EQ(up.batches, 0);
  EXPECT_EQ(Text::live, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// Random adds, per-item and whole-batch answers, cancels and clock steps: every
// accepted item ends exactly once, a value reaches the item it was computed
// from, at most MaxInFlight calls are ever out, and every item is destroyed.
TEST(Batcher, EveryItemEndsExactlyOnceUnderRandomTraffic) {
  Fixture f;
  using Small = tern::Batcher<Text, int, 4, 2>;
  struct Item {
    int outcomes = 0;
    Errc err = Errc::ok;
    int value = 0;
  };
  static Item items[4000 / TERN_TEST_SCALE];
  struct Sent {
    Small::Ticket ticket;
    int values[4] = {};
  };
  static Sent sent[8];
  tern::Rng rng(99);
  int over_limit = 0;
  Small* self = nullptr;
  Small batcher(f.reactor, {.max_delay = tern::ms(8)},
                [&](std::span<Text> texts, Small::Ticket t) {
                  if (self->stats().in_flight > 2) ++over_limit;
                  Sent& s = sent[rng.below(8)];
                  s.ticket = t;
                  for (std::size_t i = 0; i < texts.size(); ++i)
                    s.values[i] = texts[i].v;
                  if (rng.chance(0.1)) (void)t.complete(0, s.values[0] * 10);
                });
  self = &batcher;
  const int steps = 4000 / TERN_TEST_SCALE;
  int accepted = 0;
  tern::RequestId ids[4000 / TERN_TEST_SCALE];
  int owners[2] = {};
  for (int step = 0; step < steps; ++step) {
    switch (rng.below(7)) {
      case 0:
      case 1: {
        Item* it = &items[accepted];
        const Instant deadline = rng.chance(0.2)
                                     ? Instant::never()
                                     : f.in(tern::ms(rng.between(1, 20)));
        auto id = batcher.add(
            Text(accepted), deadline,
            [it](Result<int> r) {
              ++it->outcomes;
              it->err = r.ok() ? Errc::ok : r.error();
              if (r.ok()) it->value = *r;
            },
            &owners[rng.below(2)]);
        if (id.ok()) ids[accepted++] = *id;
        EXPECT_EQ(it->outcomes, 0) << "step " << step;  // never inside add()
        break;
      }
      case 2: {
        Sent& s = sent[rng.below(8)];
        const std::size_t i = rng.below(4);
        if (i >= s.ticket.size()) break;
        if (rng.chance(0.8)) {
          (void)s.ticket.complete(i, s.values[i] * 10);
        } else {
          (void)s.ticket.fail(i, Errc::too_large);
        }
        break;
      }
      case 3: {
        Sent& s = sent[rng.below(8)];
        (void)(rng.chance(0.5) ? s.ticket.finish()
                               : s.ticket.fail_all(Errc::io));
        break;
      }
      case 4:
        if (accepted > 0) (void)batcher.cancel(ids[rng.below(accepted)]);
        break;
      case 5:
        if (rng.chance(0.05)) (void)batcher.cancel_all(&owners[rng.below(2)]);
        break;
      default:
        f.advance(tern::ms(rng.between(0, 3)));
        break;
    }
    for (int i = 0; i < accepted; ++i) {
      ASSERT_LE(items[i].outcomes, 1) << "step " << step << " item " << i;
    }
  }
  (void)batcher.cancel_all();
  f.run();
  int values = 0;
  for (int i = 0; i < accepted; ++i) {
    ASSERT_EQ(items[i].outcomes, 1) << "item " << i;
    if (items[i].err == Errc::ok) {
      EXPECT_EQ(items[i].value, i * 10) << "item " << i;
      ++values;
    }
  }
  EXPECT_EQ(over_limit, 0);
  EXPECT_GT(values, 0);
  EXPECT_GT(batcher.stats().flushed_full, 0u);
  EXPECT_GT(batcher.stats().flushed_by_delay, 0u);
  EXPECT_GT(batcher.stats().timed_out, 0u);
  EXPECT_GT(batcher.stats().late, 0u);
  EXPECT_EQ(batcher.stats().waiting, 0u);
  EXPECT_EQ(batcher.stats().pending, 0u);
  EXPECT_EQ(batcher.stats().in_flight, 0u);
  EXPECT_EQ(Text::live, 0);
}

// 30 days at 1 ms ticks: within the wheel's reach on Linux, beyond it on Cortex-M,
// where a timer keeps its due tick in 32 bits (2^31 - 2^20 ticks: 24.8 days).
TEST(Batcher, ADeadlineOrMaxDelayBeyondTheWheelsReachIsRefusedWhereThereIsOne) {
  Fixture f;
  Upstream up;
  Outcome o[2];
  const tern::Duration far = tern::seconds(std::int64_t{30} * 24 * 3600);
  const Errc want = tern::TimerWheel::kExactDeadlines ? Errc::ok : Errc::invalid_argument;
  {
    Embedder batcher(f.reactor, {.max_delay = tern::ms(10)}, up.fn());
    auto a = batcher.add(Text(1), f.in(far), record(&o[0]));
    EXPECT_EQ(a.ok() ? Errc::ok : a.error(), want);
    Embedder patient(f.reactor, {.max_delay = far}, up.fn());
    auto b = patient.add(Text(2), Instant::never(), record(&o[1]));
    EXPECT_EQ(b.ok() ? Errc::ok : b.error(), want);
    EXPECT_EQ(Text::live, want == Errc::ok ? 2 : 0);  // a refused item is not kept
    EXPECT_EQ(batcher.stats().added + patient.stats().added, want == Errc::ok ? 2u : 0u);
  }
  EXPECT_EQ(Text::live, 0);
  EXPECT_EQ(o[0].calls + o[1].calls, want == Errc::ok ? 2 : 0);  // cancelled, if taken
  EXPECT_TRUE(f.reactor.wheel().empty());
}

}  // namespace
