// Coalescer rules, with a manual clock (portable: runs on every port).
#include "tern/resilience/coalescer.hpp"

#include <array>
#include <cstring>

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

using Docs = tern::Coalescer<std::uint32_t, int, 4, 4>;

struct Outcome {
  int calls = 0;
  Errc err = Errc::ok;
  int value = 0;
};

Docs::Callback record(Outcome* o) {
  return [o](Result<int> r) {
    ++o->calls;
    o->err = r.ok() ? Errc::ok : r.error();
    if (r.ok()) o->value = *r;
  };
}

// An upstream that counts its calls and keeps the last ticket for the test to
// answer.
struct Upstream {
  int calls = 0;
  std::uint32_t last_key = 0;
  Docs::Ticket ticket;
  auto fn() {
    return [this](std::uint32_t key, Docs::Ticket t) {
      ++calls;
      last_key = key;
      ticket = t;
    };
  }
};

TEST(Coalescer, WaitersWithDifferentDeadlinesShareOneUpstreamCall) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome a, b, c;
  auto ia = docs.get(7, f.in(tern::ms(10)), record(&a), up.fn());
  auto ib = docs.get(7, f.in(tern::ms(50)), record(&b), up.fn());
  auto ic = docs.get(7, Instant::never(), record(&c), up.fn());
  ASSERT_TRUE(ia.ok() && ib.ok() && ic.ok());
  EXPECT_EQ(up.calls, 1);
  EXPECT_EQ(up.last_key, 7u);
  EXPECT_EQ(docs.waiters(7), 3u);

  f.advance(
      tern::ms(20));  // a's own deadline passes; the call and the others go on
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.err, Errc::timeout);
  EXPECT_EQ(b.calls, 0);
  EXPECT_TRUE(docs.in_flight(7));
  EXPECT_EQ(docs.waiters(7), 2u);

  EXPECT_EQ(up.ticket.complete(42), Errc::ok);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(b.value, 42);
  EXPECT_EQ(c.calls, 1);
  EXPECT_EQ(c.value, 42);
  EXPECT_EQ(a.calls, 1);  // exactly one outcome each
  EXPECT_EQ(up.calls, 1);
  EXPECT_FALSE(docs.in_flight(7));

  f.advance(tern::ms(100));  // b's deadline passing later changes nothing
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(docs.stats().calls_started, 1u);
  EXPECT_EQ(docs.stats().joined, 2u);
  EXPECT_EQ(docs.stats().delivered, 2u);
  EXPECT_EQ(docs.stats().timed_out, 1u);
  EXPECT_EQ(docs.stats().in_flight, 0u);
  EXPECT_EQ(docs.stats().waiting, 0u);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Coalescer, UpstreamErrorReachesEveryWaiter) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome a, b;
  ASSERT_TRUE(docs.get(1, f.in(tern::seconds(1)), record(&a), up.fn()).ok());
  ASSERT_TRUE(docs.get(1, f.in(tern::seconds(2)), record(&b), up.fn()).ok());
  EXPECT_EQ(up.ticket.fail(Errc::failed), Errc::ok);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.err, Errc::failed);
  EXPECT_EQ(b.calls, 1);
  EXPECT_EQ(b.err, Errc::failed);
  EXPECT_EQ(docs.stats().failed, 2u);
  EXPECT_EQ(up.ticket.fail(Errc::ok), Errc::invalid_argument);
}

TEST(Coalescer, LateUpstreamAnswerAfterAllWaitersLeftIsDroppedAndCounted) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome a, b;
  ASSERT_TRUE(docs.get(3, f.in(tern::ms(5)), record(&a), up.fn()).ok());
  ASSERT_TRUE(docs.get(3, f.in(tern::ms(8)), record(&b), up.fn()).ok());
  Docs::Ticket first = up.ticket;
  EXPECT_TRUE(first.pending());
  f.advance(tern::ms(10));
  EXPECT_EQ(a.err, Errc::timeout);
  EXPECT_EQ(b.err, Errc::timeout);
  EXPECT_FALSE(docs.in_flight(3));  // abandoned: the slot is free at once
  EXPECT_FALSE(first.pending());
  EXPECT_EQ(docs.stats().abandoned, 1u);

  EXPECT_EQ(first.complete(9), Errc::late);
  EXPECT_EQ(docs.stats().late, 1u);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 1);

  // A new get() for the key starts a new call; the old ticket stays late.
  Outcome c;
  ASSERT_TRUE(docs.get(3, f.in(tern::ms(5)), record(&c), up.fn()).ok());
  EXPECT_EQ(up.calls, 2);
  EXPECT_EQ(first.complete(9), Errc::late);
  EXPECT_EQ(up.ticket.complete(10), Errc::ok);
  EXPECT_EQ(c.value, 10);
  EXPECT_EQ(docs.stats().late, 2u);
}

TEST(Coalescer, SecondAnswerIsLate) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome a;
  ASSERT_TRUE(docs.get(3, Instant::never(), record(&a), up.fn()).ok());
  EXPECT_EQ(up.ticket.complete(1), Errc::ok);
  EXPECT_EQ(up.ticket.complete(2), Errc::late);
  EXPECT_EQ(up.ticket.fail(Errc::io), Errc::late);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.value, 1);
  EXPECT_EQ(docs.stats().late, 2u);
  EXPECT_EQ(Docs::Ticket().complete(1), Errc::not_found);
}

TEST(Coalescer, FullKeyTableAndFullWaiterListReturnFull) {
  Fixture f;
  tern::Coalescer<std::uint32_t, int, 2, 2> small(f.reactor);
  int upstream_calls = 0;
  auto up = [&upstream_calls](std::uint32_t, auto) { ++upstream_calls; };
  int outcomes = 0;
  auto cb = [&outcomes](Result<int>) { ++outcomes; };
  ASSERT_TRUE(small.get(1, Instant::never(), cb, up).ok());
  ASSERT_TRUE(small.get(1, Instant::never(), cb, up).ok());
  EXPECT_EQ(small.get(1, Instant::never(), cb, up).error(),
            Errc::full);  // K waiters
  ASSERT_TRUE(small.get(2, Instant::never(), cb, up).ok());
  EXPECT_EQ(small.get(3, Instant::never(), cb, up).error(),
            Errc::full);  // N keys
  EXPECT_EQ(upstream_calls, 2);
  EXPECT_EQ(small.stats().rejected_waiters, 1u);
  EXPECT_EQ(small.stats().rejected_keys, 1u);
  EXPECT_EQ(small.stats().high_water, 2u);
  EXPECT_EQ(small.waiters(1), 2u);  // nothing already accepted was lost
  EXPECT_EQ(small.get(4, Instant::never(), nullptr, up).error(),
            Errc::invalid_argument);
  EXPECT_EQ(small.cancel_all(), 3u);
  EXPECT_EQ(outcomes, 3);
  EXPECT_TRUE(small.get(3, Instant::never(), cb, up).ok());  // room again
}

TEST(Coalescer,
     AnswerGivenInsideUpstreamIsDeliveredOnTheNextTurnToAllWhoJoined) {
  Fixture f;
  Docs docs(f.reactor);
  int calls = 0;
  auto cached = [&calls](std::uint32_t key, Docs::Ticket t) {
    ++calls;
    EXPECT_EQ(t.complete(static_cast<int>(key) * 2), Errc::ok);
  };
  Outcome a, b;
  ASSERT_TRUE(docs.get(21, f.in(tern::ms(5)), record(&a), cached).ok());
  EXPECT_EQ(a.calls, 0);  // never inside get()
  ASSERT_TRUE(
      docs.get(21, f.in(tern::ms(5)), record(&b), cached).ok());  // joins
  EXPECT_EQ(calls, 1);
  f.run();
  EXPECT_EQ(a.value, 42);
  EXPECT_EQ(b.value, 42);
  EXPECT_EQ(docs.stats().delivered, 2u);
  EXPECT_FALSE(docs.in_flight(21));
}

TEST(Coalescer, CancelEndsOneWaiterAndCancelAllEndsAnOwnersWaiters) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome a, b, c;
  int owner1 = 0, owner2 = 0;
  auto ia = docs.get(5, Instant::never(), record(&a), up.fn(), &owner1);
  auto ib = docs.get(5, Instant::never(), record(&b), up.fn(), &owner2);
  auto ic = docs.get(6, Instant::never(), record(&c), up.fn(), &owner2);
  ASSERT_TRUE(ia.ok() && ib.ok() && ic.ok());
  EXPECT_EQ(docs.cancel(*ia), Errc::ok);
  EXPECT_EQ(a.err, Errc::cancelled);
  EXPECT_EQ(docs.cancel(*ia), Errc::late);
  EXPECT_EQ(docs.cancel(tern::RequestId{}), Errc::not_found);
  EXPECT_TRUE(docs.in_flight(5));  // b still waits on it
  EXPECT_EQ(docs.cancel_all(&owner2), 2u);
  EXPECT_EQ(b.err, Errc::cancelled);
  EXPECT_EQ(c.err, Errc::cancelled);
  EXPECT_EQ(docs.stats().cancelled, 3u);
  EXPECT_EQ(docs.stats().in_flight, 0u);
  EXPECT_EQ(a.calls + b.calls + c.calls, 3);
}

TEST(Coalescer, WaiterCallbackMayStartANewCallForTheSameKey) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome second;
  bool asked_again = false;
  auto again = [&](Result<int> r) {
    EXPECT_TRUE(r.ok());
    asked_again = docs.get(8, Instant::never(), record(&second), up.fn()).ok();
  };
  ASSERT_TRUE(docs.get(8, Instant::never(), again, up.fn()).ok());
  Docs::Ticket first = up.ticket;
  EXPECT_EQ(first.complete(1), Errc::ok);
  EXPECT_TRUE(asked_again);
  EXPECT_EQ(up.calls, 2);  // the answered call was not joinable any more
  EXPECT_EQ(second.calls, 0);
  EXPECT_EQ(up.ticket.complete(2), Errc::ok);
  EXPECT_EQ(second.value, 2);
}

TEST(Coalescer, FixedLengthStringKeysCoalesceByValue) {
  Fixture f;
  using Key = std::array<char, 16>;
  tern::Coalescer<Key, int, 2, 2> by_name(f.reactor);
  auto key = [](const char* s) {
    Key k{};
    std::memcpy(k.data(), s, std::strlen(s));
    return k;
  };
  int calls = 0;
  tern::Coalescer<Key, int, 2, 2>::Ticket ticket;
  auto up = [&](const Key&, auto t) {
    ++calls;
    ticket = t;
  };
  int got = 0;
  auto cb = [&got](Result<int> r) { got += r.ok() ? *r : 0; };
  ASSERT_TRUE(by_name.get(key("weather"), Instant::never(), cb, up).ok());
  ASSERT_TRUE(by_name.get(key("weather"), Instant::never(), cb, up).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(by_name.in_flight(key("news")));
  EXPECT_EQ(ticket.complete(5), Errc::ok);
  EXPECT_EQ(got, 10);
}

TEST(Coalescer, DestructionCancelsWaitersStillWaiting) {
  Fixture f;
  Outcome a;
  Upstream up;
  {
    Docs docs(f.reactor);
    ASSERT_TRUE(docs.get(1, f.in(tern::seconds(1)), record(&a), up.fn()).ok());
  }
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.err, Errc::cancelled);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Coalescer, GetFromACallbackRunByTheDestructorIsRefused) {
  Fixture f;
  struct Inside {
    Fixture* f = nullptr;
    Docs* docs = nullptr;
    Upstream up;
    Outcome second;
    Errc again = Errc::ok;
  } in;
  in.f = &f;
  {
    Docs docs(f.reactor);
    in.docs = &docs;
    ASSERT_TRUE(docs.get(7, Instant::never(),
                         [&in](Result<int>) {
                           auto r = in.docs->get(7, in.f->in(tern::seconds(1)), record(&in.second),
                                                 in.up.fn());
                           in.again = r.ok() ? Errc::ok : r.error();
                         },
                         in.up.fn())
                    .ok());
  }
  EXPECT_EQ(in.again, Errc::shutdown);
  EXPECT_EQ(in.up.calls, 1);
  EXPECT_EQ(in.second.calls, 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// A Coalescer on the heap that a callback deletes: under ASan, anything it
// touches after that callback returns is a heap-use-after-free.
struct Doomed {
  Docs* docs = nullptr;
  Docs::Ticket ticket;
  int calls = 0;
  Errc errs[2] = {};
  bool destroy_in_upstream = false;

  void destroy() {
    Docs* d = docs;
    docs = nullptr;  // the callbacks the destructor runs must not delete it again
    delete d;
  }
  Docs::Callback done() {
    return [this](Result<int> r) {
      if (calls < 2) errs[calls] = r.ok() ? Errc::ok : r.error();
      ++calls;
      if (docs != nullptr) destroy();
    };
  }
  auto upstream() {
    return [this](std::uint32_t, Docs::Ticket t) {
      ticket = t;
      if (destroy_in_upstream) destroy();
    };
  }
};

TEST(Coalescer, WaiterCallbackRunByTheAnswerMayDestroyTheCoalescer) {
  Fixture f;
  Doomed d;
  d.docs = new Docs(f.reactor);
  ASSERT_TRUE(d.docs->get(7, Instant::never(), d.done(), d.upstream()).ok());
  ASSERT_TRUE(d.docs->get(7, Instant::never(), d.done(), d.upstream()).ok());
  // The first waiter deletes it; the destructor cancels the second.
  EXPECT_EQ(d.ticket.complete(42), Errc::ok);
  EXPECT_EQ(d.docs, nullptr);
  EXPECT_EQ(d.calls, 2);
  EXPECT_EQ(d.errs[0], Errc::ok);
  EXPECT_EQ(d.errs[1], Errc::cancelled);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Coalescer, WaiterCallbackRunByCancelAllMayDestroyTheCoalescer) {
  Fixture f;
  Doomed d;
  d.docs = new Docs(f.reactor);
  ASSERT_TRUE(d.docs->get(1, Instant::never(), d.done(), d.upstream()).ok());
  ASSERT_TRUE(d.docs->get(2, Instant::never(), d.done(), d.upstream()).ok());
  EXPECT_EQ(d.docs->cancel_all(), 1u);  // the rest were cancelled by the destructor
  EXPECT_EQ(d.docs, nullptr);
  EXPECT_EQ(d.calls, 2);
  EXPECT_EQ(d.errs[0], Errc::cancelled);
  EXPECT_EQ(d.errs[1], Errc::cancelled);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

TEST(Coalescer, UpstreamMayDestroyTheCoalescer) {
  Fixture f;
  Doomed d;
  d.docs = new Docs(f.reactor);
  d.destroy_in_upstream = true;
  // on_done runs inside get(), with cancelled: the waiter is owed its one outcome.
  EXPECT_TRUE(d.docs->get(7, Instant::never(), d.done(), d.upstream()).ok());
  EXPECT_EQ(d.docs, nullptr);
  EXPECT_EQ(d.calls, 1);
  EXPECT_EQ(d.errs[0], Errc::cancelled);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// Random gets, answers (at once or later), cancels and clock steps: every
// accepted waiter ends exactly once, with its own key's answer, and at most one
// upstream call per key is ever in flight.
TEST(Coalescer, EveryWaiterEndsExactlyOnceUnderRandomTraffic) {
  Fixture f;
  using Small = tern::Coalescer<std::uint32_t, int, 4, 3>;
  Small table(f.reactor);
  tern::Rng rng(77);
  struct Waiter {
    std::uint32_t key = 0;
    int outcomes = 0;
    Errc err = Errc::ok;
    int value = 0;
  };
  static Waiter waiters[4000 / TERN_TEST_SCALE];
  const int steps = 4000 / TERN_TEST_SCALE;
  int accepted = 0;
  tern::RequestId ids[4000 / TERN_TEST_SCALE];
  struct Held {
    Small::Ticket ticket;
    std::uint32_t key = 0;
  } held[16];
  int owners[2] = {};
  int serial = 0;
  int upstream_calls = 0;
  bool answer_now = false;
  for (int step = 0; step < steps; ++step) {
    switch (rng.below(6)) {
      case 0:
      case 1: {
        const auto key = static_cast<std::uint32_t>(rng.below(6));
        Waiter* w = &waiters[accepted];
        w->key = key;
        const Instant deadline = rng.chance(0.2)
                                     ? Instant::never()
                                     : f.in(tern::ms(rng.between(1, 30)));
        answer_now = rng.chance(0.1);
        const bool was_in_flight = table.in_flight(key);
        const int calls_before = upstream_calls;
        auto id = table.get(
            key, deadline,
            [w](Result<int> r) {
              ++w->outcomes;
              w->err = r.ok() ? Errc::ok : r.error();
              if (r.ok()) w->value = *r;
            },
            [&](std::uint32_t k, Small::Ticket t) {
              ++upstream_calls;
              const int v = static_cast<int>(k) * 100000 + ++serial;
              if (answer_now) {
                EXPECT_EQ(t.complete(v), Errc::ok);
              } else {
                held[rng.below(16)] = Held{t, k};
              }
            },
            &owners[rng.below(2)]);
        if (was_in_flight) {
          ASSERT_EQ(upstream_calls, calls_before) << "step " << step;
        }
        if (id.ok()) ids[accepted++] = *id;
        EXPECT_EQ(w->outcomes, 0) << "step " << step;  // never inside get()
        break;
      }
      case 2: {
        Held& h = held[rng.below(16)];
        const int v = static_cast<int>(h.key) * 100000 + ++serial;
        Errc e =
            rng.chance(0.7) ? h.ticket.complete(v) : h.ticket.fail(Errc::io);
        EXPECT_NE(e, Errc::invalid_argument);
        break;
      }
      case 3:
        if (accepted > 0) (void)table.cancel(ids[rng.below(accepted)]);
        break;
      case 4:
        if (rng.chance(0.05)) (void)table.cancel_all(&owners[rng.below(2)]);
        break;
      default:
        f.advance(tern::ms(rng.between(0, 4)));
        break;
    }
    for (int i = 0; i < accepted; ++i) {
      ASSERT_LE(waiters[i].outcomes, 1) << "step " << step << " waiter " << i;
    }
  }
  (void)table.cancel_all();
  f.run();
  int values = 0;
  for (int i = 0; i < accepted; ++i) {
    const Waiter& w = waiters[i];
    ASSERT_EQ(w.outcomes, 1) << "waiter " << i;
    if (w.err == Errc::ok) {  // the value carries the key it was given for
      EXPECT_EQ(static_cast<std::uint32_t>(w.value / 100000), w.key);
      ++values;
    }
  }
  EXPECT_GT(values, 0);
  EXPECT_GT(table.stats().joined, 0u);
  EXPECT_GT(table.stats().timed_out, 0u);
  EXPECT_GT(table.stats().late, 0u);
  EXPECT_EQ(table.stats().waiting, 0u);
  EXPECT_EQ(table.stats().in_flight, 0u);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

// 30 days at 1 ms ticks: within the wheel's reach on Linux, beyond it on Cortex-M,
// where a timer keeps its due tick in 32 bits (2^31 - 2^20 ticks: 24.8 days).
TEST(Coalescer, ADeadlineBeyondTheWheelsReachIsRefusedWhereThereIsOne) {
  Fixture f;
  Docs docs(f.reactor);
  Upstream up;
  Outcome o;
  const tern::Duration far = tern::seconds(std::int64_t{30} * 24 * 3600);
  const bool taken = tern::TimerWheel::kExactDeadlines;
  auto id = docs.get(7, f.in(far), record(&o), up.fn());
  EXPECT_EQ(id.ok() ? Errc::ok : id.error(), taken ? Errc::ok : Errc::invalid_argument);
  EXPECT_EQ(up.calls, taken ? 1 : 0);  // refused: upstream not called
  if (taken) {
    EXPECT_EQ(up.ticket.complete(42), Errc::ok);
    f.run();
    EXPECT_EQ(o.value, 42);
  }
  EXPECT_EQ(o.calls, taken ? 1 : 0);
  EXPECT_TRUE(f.reactor.wheel().empty());
}

}  // namespace
