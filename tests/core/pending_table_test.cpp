#include "tern/core/pending_table.hpp"

#include "tern/core/rng.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::Instant;
using tern::PendingTable;
using tern::RequestId;
using tern::Result;
using tern::TimerWheel;

struct Outcome {
  int calls = 0;
  Errc err = Errc::ok;
  int value = 0;
};

auto recorder(Outcome* o) {
  return [o](Result<int> r) {
    ++o->calls;
    o->err = r.ok() ? Errc::ok : r.error();
    if (r.ok()) o->value = *r;
  };
}

TEST(PendingTable, CompleteDeliversValueOnce) {
  TimerWheel wheel;
  PendingTable<int, 4> table(wheel);
  Outcome o;
  auto id = table.start(Instant(1000000), recorder(&o));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(table.in_use(), 1u);
  EXPECT_EQ(table.complete(*id, 42), Errc::ok);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.value, 42);
  EXPECT_EQ(table.in_use(), 0u);
  EXPECT_TRUE(wheel.empty());
}

TEST(PendingTable, LateReplyAfterTimeoutIsDroppedAndCounted) {
  TimerWheel wheel;
  PendingTable<int, 4> table(wheel);
  Outcome o;
  auto id = table.start(Instant(10000), recorder(&o));
  ASSERT_TRUE(id.ok());
  wheel.advance(Instant(10000));
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.err, Errc::timeout);
  EXPECT_EQ(table.complete(*id, 7), Errc::late);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(table.stats().late, 1u);
  EXPECT_EQ(table.stats().timed_out, 1u);
}

TEST(PendingTable, DuplicateReplyIsLate) {
  TimerWheel wheel;
  PendingTable<int, 2> table(wheel);
  Outcome o;
  auto id = table.start(Instant(10000), recorder(&o));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(table.complete(*id, 1), Errc::ok);
  EXPECT_EQ(table.complete(*id, 2), Errc::late);
  EXPECT_EQ(table.fail(*id, Errc::io), Errc::late);
  EXPECT_EQ(table.cancel(*id), Errc::late);
  EXPECT_EQ(o.calls, 1);
  EXPECT_EQ(o.value, 1);
  EXPECT_EQ(table.stats().late, 3u);
}

TEST(PendingTable, StaleIdIsLateEvenAfterSlotReuse) {
  TimerWheel wheel;
  PendingTable<int, 1> table(wheel);
  Outcome a, b;
  auto first = table.start(Instant(10000), recorder(&a));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(table.cancel(*first), Errc::ok);
  auto second = table.start(Instant(10000), recorder(&b));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first->slot(), second->slot());
  EXPECT_EQ(table.complete(*first, 5), Errc::late);
  EXPECT_EQ(b.calls, 0);
  EXPECT_EQ(table.complete(*second, 6), Errc::ok);
  EXPECT_EQ(b.value, 6);
  EXPECT_EQ(a.err, Errc::cancelled);
}

TEST(PendingTable, UnknownIdIsNotFound) {
  TimerWheel wheel;
  PendingTable<int, 2> table(wheel);
  EXPECT_EQ(table.complete(RequestId{}, 1), Errc::not_found);
  EXPECT_EQ(table.complete(RequestId::make(7, 1), 1), Errc::not_found);
  EXPECT_EQ(table.complete(RequestId::make(0, 99), 1), Errc::not_found);
  EXPECT_EQ(table.stats().not_found, 3u);
}

TEST(PendingTable, FullTableRefusesAndKeepsWhatItHolds) {
  TimerWheel wheel;
  PendingTable<int, 2> table(wheel);
  Outcome o1, o2, o3;
  auto a = table.start(Instant(10000), recorder(&o1));
  auto b = table.start(Instant(10000), recorder(&o2));
  auto c = table.start(Instant(10000), recorder(&o3));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(c.error(), Errc::full);
  EXPECT_EQ(table.stats().rejected, 1u);
  EXPECT_EQ(table.complete(*a, 1), Errc::ok);
  EXPECT_EQ(table.complete(*b, 2), Errc::ok);
  EXPECT_EQ(o3.calls, 0);
}

TEST(PendingTable, CancelAllByOwnerRunsCallbacksWithCancelled) {
  TimerWheel wheel;
  PendingTable<int, 8> table(wheel);
  int owner_a = 0, owner_b = 0;
  Outcome o[4];
  for (int i = 0; i < 4; ++i) {
    auto id = table.start(Instant(10000), recorder(&o[i]), i % 2 ? &owner_a : &owner_b);
    ASSERT_TRUE(id.ok());
  }
  EXPECT_EQ(table.cancel_all(&owner_a), 2u);
  EXPECT_EQ(o[1].err, Errc::cancelled);
  EXPECT_EQ(o[3].err, Errc::cancelled);
  EXPECT_EQ(o[0].calls, 0);
  EXPECT_EQ(table.in_use(), 2u);
  EXPECT_EQ(table.cancel_all(), 2u);
  EXPECT_EQ(table.in_use(), 0u);
}

TEST(PendingTable, CallbackMayStartAndCompleteReentrantly) {
  TimerWheel wheel;
  PendingTable<int, 1> table(wheel);
  Outcome inner;
  RequestId first_id;
  bool restarted = false;
  auto id = table.start(Instant(10000), [&](Result<int> r) {
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(table.complete(first_id, 3), Errc::late);  // our own id: already ended
    auto again = table.start(Instant(20000), recorder(&inner));  // the slot is free again
    restarted = again.ok();
  });
  ASSERT_TRUE(id.ok());
  first_id = *id;
  EXPECT_EQ(table.complete(*id, 1), Errc::ok);
  EXPECT_TRUE(restarted);
  wheel.advance(Instant(20000));
  EXPECT_EQ(inner.err, Errc::timeout);
  EXPECT_EQ(table.in_use(), 0u);
}

// Random interleavings: every accepted request ends exactly once; afterwards nothing
// is in use and the counters add up.
TEST(PendingTable, RandomInterleavingsEndEveryRequestExactlyOnce) {
  constexpr int kN = 32;
  constexpr int kMaxRequests = 4096 / TERN_TEST_SCALE;
  TimerWheel wheel;
  static int outcomes[kMaxRequests];
  for (int& x : outcomes) x = 0;
  tern::Rng rng(99);
  int accepted = 0;
  std::uint64_t extra = 0;  // late or duplicate offers we made
  {
    PendingTable<int, kN> table(wheel);
    RequestId ids[kMaxRequests];
    Instant now(0);
    int issued = 0;
    const int steps = 40000 / TERN_TEST_SCALE;
    for (int step = 0; step < steps; ++step) {
      std::uint64_t r = rng.below(100);
      if (r < 35 && issued < kMaxRequests) {
        int n = issued;
        auto id = table.start(now + tern::us(rng.between(0, 50000)), [n](Result<int>) { ++outcomes[n]; });
        if (id.ok()) {
          ids[issued++] = *id;
          ++accepted;
        } else {
          EXPECT_EQ(id.error(), Errc::full);
        }
      } else if (r < 80 && issued > 0) {
        RequestId id = ids[rng.below(static_cast<std::uint64_t>(issued))];
        bool live = table.pending(id);
        Errc e;
        switch (rng.below(3)) {
          case 0: e = table.complete(id, 1); break;
          case 1: e = table.fail(id, Errc::io); break;
          default: e = table.cancel(id); break;
        }
        EXPECT_EQ(e, live ? Errc::ok : Errc::late);
        if (!live) ++extra;
      } else {
        now = now + tern::us(rng.between(0, 20000));
        wheel.advance(now);
      }
    }
    const auto& s = table.stats();
    EXPECT_EQ(s.late, extra);
    EXPECT_EQ(s.started, static_cast<std::uint64_t>(accepted));
    EXPECT_LE(s.high_water, static_cast<std::size_t>(kN));
    table.cancel_all();
    EXPECT_EQ(table.in_use(), 0u);
    EXPECT_EQ(s.completed + s.failed + s.timed_out + s.cancelled, s.started);
  }  // the destructor cancels what is left
  for (int i = 0; i < accepted; ++i) ASSERT_EQ(outcomes[i], 1);
  EXPECT_TRUE(wheel.empty());
}

// 30 days at 1 ms ticks: within the wheel's reach on Linux, beyond it on Cortex-M,
// where a timer keeps its due tick in 32 bits (2^31 - 2^20 ticks: 24.8 days).
TEST(PendingTable, ADeadlineTheWheelDoesNotReachIsRefused) {
  TimerWheel wheel;
  PendingTable<int, 4> table(wheel);
  Outcome o;
  const Instant far(std::int64_t{30} * 24 * 3600 * 1000000);
  auto id = table.start(far, recorder(&o));
  if (TimerWheel::kExactDeadlines) {
    ASSERT_TRUE(id.ok());
    EXPECT_EQ(table.deadline(*id).value(), far);
    EXPECT_EQ(table.cancel(*id), Errc::ok);
    EXPECT_EQ(o.err, Errc::cancelled);
  } else {
    EXPECT_EQ(id.error(), Errc::invalid_argument);
    EXPECT_EQ(table.stats().started, 0u);
    EXPECT_EQ(o.calls, 0);
  }
  EXPECT_EQ(table.in_use(), 0u);
  EXPECT_TRUE(wheel.empty());
  // No deadline at all is taken everywhere.
  auto none = table.start(Instant::never(), recorder(&o));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(table.complete(*none, 7), Errc::ok);
  EXPECT_EQ(o.value, 7);
}

}  // namespace

TEST(PendingTable, FinishingNamesTheRequestWhoseCallbackRuns) {
  TimerWheel wheel;
  PendingTable<int, 4> table(wheel);
  RequestId inner_seen, outer_seen_before, outer_seen_after;
  Result<RequestId> inner = table.start(Instant(1000000), [&](Result<int>) { inner_seen = table.finishing(); });
  ASSERT_TRUE(inner.ok());
  Result<RequestId> outer = table.start(Instant(1000000), [&](Result<int>) {
    outer_seen_before = table.finishing();
    EXPECT_EQ(table.complete(*inner, 1), Errc::ok);  // ends another request inside
    outer_seen_after = table.finishing();
  });
  ASSERT_TRUE(outer.ok());
  EXPECT_FALSE(static_cast<bool>(table.finishing()));
  EXPECT_EQ(table.fail(*outer, Errc::failed), Errc::ok);
  EXPECT_TRUE(outer_seen_before == *outer);
  EXPECT_TRUE(inner_seen == *inner);
  EXPECT_TRUE(outer_seen_after == *inner);  // as documented: the last callback run
  // Timeouts name theirs too.
  RequestId timed_out_seen;
  Result<RequestId> t = table.start(Instant(5000), [&](Result<int>) { timed_out_seen = table.finishing(); });
  ASSERT_TRUE(t.ok());
  wheel.advance(Instant(5000));
  EXPECT_TRUE(timed_out_seen == *t);
}

// A callback may destroy its table: the table touches nothing after running it (under
// ASan a write after the callback would be a heap-use-after-free).
// The destructor cancels what is pending; a callback that starts a request then is
// refused, so nothing is left armed in a table that is going away.
TEST(PendingTable, StartFromACallbackRunByTheDestructorIsRefused) {
  TimerWheel wheel;
  Errc again = Errc::ok;
  int calls = 0;
  {
    PendingTable<int, 2> table(wheel);
    PendingTable<int, 2>* t = &table;
    ASSERT_TRUE(table.start(Instant(1000000), [&, t](Result<int> r) {
      ++calls;
      EXPECT_EQ(r.error(), Errc::cancelled);
      auto second = t->start(Instant(1000000), [](Result<int>) {});
      again = second.ok() ? Errc::ok : second.error();
    }).ok());
  }
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(again, Errc::shutdown);
  EXPECT_TRUE(wheel.empty());
}

TEST(PendingTable, CallbackMayDestroyItsTable) {
  TimerWheel wheel;
  auto* table = new PendingTable<int, 2>(wheel);
  int calls = 0;
  Result<RequestId> id = table->start(Instant(1000000), [&](Result<int>) {
    ++calls;
    delete table;
  });
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(table->complete(*id, 3), Errc::ok);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(wheel.empty());
}

// The Runtime's request table hands every outcome to a runner with the request's owner;
// the runner calls the callback. Each of the four outcomes goes through it, once.
TEST(PendingTable, ARunnerSeesEveryOutcomeWithItsOwnerAndCallsTheCallback) {
  TimerWheel wheel;
  using Table = PendingTable<int, 4>;
  Table table(wheel);
  struct Seen {
    int runs = 0;
    const void* owners[4] = {};
    Errc errs[4] = {};
  } seen;
  table.set_runner(
      [](void* context, Table::Owner owner, Table::Callback& cb, Result<int>&& r) {
        auto& s = *static_cast<Seen*>(context);
        s.owners[s.runs] = owner;
        s.errs[s.runs] = r.ok() ? Errc::ok : r.error();
        ++s.runs;
        cb(std::move(r));
      },
      &seen);
  int owner_a = 0, owner_b = 0;
  Outcome done, failed, timed_out, cancelled;
  auto a = table.start(Instant(1000000), recorder(&done), &owner_a);
  auto b = table.start(Instant(1000000), recorder(&failed), &owner_b);
  auto c = table.start(Instant(5000), recorder(&timed_out));
  auto d = table.start(Instant(1000000), recorder(&cancelled), &owner_a);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ(table.complete(*a, 7), Errc::ok);
  EXPECT_EQ(table.fail(*b, Errc::io), Errc::ok);
  wheel.advance(Instant(5000));
  EXPECT_EQ(table.cancel_all(&owner_a), 1u);
  EXPECT_EQ(table.complete(*a, 8), Errc::late);  // not run again
  ASSERT_EQ(seen.runs, 4);
  EXPECT_EQ(seen.owners[0], &owner_a);
  EXPECT_EQ(seen.errs[0], Errc::ok);
  EXPECT_EQ(seen.owners[1], &owner_b);
  EXPECT_EQ(seen.errs[1], Errc::io);
  EXPECT_EQ(seen.owners[2], nullptr);
  EXPECT_EQ(seen.errs[2], Errc::timeout);
  EXPECT_EQ(seen.owners[3], &owner_a);
  EXPECT_EQ(seen.errs[3], Errc::cancelled);
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(done.value, 7);
  EXPECT_EQ(failed.err, Errc::io);
  EXPECT_EQ(timed_out.err, Errc::timeout);
  EXPECT_EQ(cancelled.err, Errc::cancelled);
  EXPECT_EQ(table.in_use(), 0u);
  EXPECT_TRUE(wheel.empty());
}

// hold() (not API: where the runtime keeps an answer until the requester's next
// dispatch) stops the deadline and lends the timer's bytes; a request that ends while
// they are lent hands them to the release hook first and counts its held outcome late.
TEST(PendingTable, AHeldRequestNoLongerTimesOutAndAnEndingWhileHeldReleasesItsBytes) {
  TimerWheel wheel;
  using Table = PendingTable<int, 4>;
  Table table(wheel);
  struct Released {
    int calls = 0;
    std::uint32_t slot = 99;
    int kept = 0;
    int callbacks_before = -1;
    const Outcome* watched = nullptr;
  } released;
  auto run = [](void*, Table::Owner, Table::Callback& cb, Result<int>&& r) { cb(std::move(r)); };
  Outcome a, b, c;
  released.watched = &b;
  auto ia = table.start(Instant(5000), recorder(&a));
  ASSERT_TRUE(ia.ok());
  EXPECT_EQ(table.hold(*ia), nullptr);  // no release hook: nothing is lent
  table.set_runner(run, &released, [](void* context, std::uint32_t slot, void* bytes) {
    auto& r = *static_cast<Released*>(context);
    ++r.calls;
    r.slot = slot;
    r.kept = *static_cast<int*>(bytes);
    r.callbacks_before = r.watched->calls;  // the hook runs before the callback
  });
  void* held = table.hold(*ia);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(table.held(*ia), held);
  EXPECT_EQ(table.hold(*ia), nullptr);  // lent already
  *static_cast<int*>(held) = 41;
  EXPECT_EQ(table.deadline(*ia).value(), Instant::never());
  wheel.advance(Instant(10000));  // past the deadline: the request is still pending
  EXPECT_EQ(a.calls, 0);
  EXPECT_TRUE(table.pending(*ia));
  table.unhold(*ia);  // given back: still pending, still with no deadline
  EXPECT_EQ(table.held(*ia), nullptr);
  EXPECT_EQ(released.calls, 0);
  EXPECT_EQ(table.complete(*ia, 42), Errc::ok);
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(a.value, 42);

  auto ib = table.start(Instant(20000), recorder(&b));
  auto ic = table.start(Instant(20000), recorder(&c));
  ASSERT_TRUE(ib.ok() && ic.ok());
  *static_cast<int*>(table.hold(*ib)) = 7;
  EXPECT_EQ(table.cancel(*ib), Errc::ok);
  EXPECT_EQ(released.calls, 1);
  EXPECT_EQ(released.slot, ib->slot());
  EXPECT_EQ(released.kept, 7);
  EXPECT_EQ(released.callbacks_before, 0);
  EXPECT_EQ(b.err, Errc::cancelled);
  EXPECT_EQ(table.stats().late, 1u);  // the outcome it held
  EXPECT_EQ(table.held(*ib), nullptr);
  // The slot's timer works again for its next request.
  auto id = table.start(Instant(30000), recorder(&b));
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->slot(), ib->slot());
  wheel.advance(Instant(30000));
  EXPECT_EQ(b.calls, 2);
  EXPECT_EQ(b.err, Errc::timeout);
  EXPECT_EQ(c.err, Errc::timeout);
  EXPECT_EQ(table.hold(*ic), nullptr);  // ended
  EXPECT_EQ(table.in_use(), 0u);
  EXPECT_TRUE(wheel.empty());
}

// Every way a held request can end runs the release hook once, before its callback:
// complete() and fail() called on it directly, cancel_all(owner), and the table's
// destructor. Each ending counts the outcome the bytes held as late.
TEST(PendingTable, EveryEndingOfAHeldRequestReleasesItsBytesOnceBeforeTheCallback) {
  TimerWheel wheel;
  using Table = PendingTable<int, 4>;
  struct Seen {
    int released = 0;
    int callbacks = 0;
    int released_before_callback[4] = {};
  } seen;
  auto release = [](void* context, std::uint32_t, void* bytes) {
    ++static_cast<Seen*>(context)->released;
    *static_cast<int*>(bytes) = -1;  // scribbled over: the Timer must be rebuilt
  };
  auto run = [](void* context, Table::Owner, Table::Callback& cb, Result<int>&& r) {
    auto& s = *static_cast<Seen*>(context);
    if (s.callbacks < 4) s.released_before_callback[s.callbacks] = s.released;
    ++s.callbacks;
    cb(std::move(r));
  };
  Outcome done, failed, by_owner, by_destructor;
  int owner = 0;
  {
    Table table(wheel);
    table.set_runner(run, &seen, release);
    auto a = table.start(Instant(5000), recorder(&done));
    auto b = table.start(Instant(5000), recorder(&failed));
    auto c = table.start(Instant(5000), recorder(&by_owner), &owner);
    auto d = table.start(Instant(5000), recorder(&by_destructor));
    ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
    for (RequestId id : {*a, *b, *c, *d}) ASSERT_NE(table.hold(id), nullptr);
    EXPECT_EQ(table.complete(*a, 5), Errc::ok);
    EXPECT_EQ(table.fail(*b, Errc::io), Errc::ok);
    EXPECT_EQ(table.cancel_all(&owner), 1u);
    EXPECT_EQ(table.stats().late, 3u);
    EXPECT_EQ(table.stats().completed, 1u);
    wheel.advance(Instant(10000));  // no deadline left to fire: d is still held
    EXPECT_EQ(by_destructor.calls, 0);
  }
  EXPECT_EQ(seen.released, 4);
  EXPECT_EQ(seen.callbacks, 4);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(seen.released_before_callback[k], k + 1);
  EXPECT_EQ(done.value, 5);
  EXPECT_EQ(failed.err, Errc::io);
  EXPECT_EQ(by_owner.err, Errc::cancelled);
  EXPECT_EQ(by_destructor.err, Errc::cancelled);
  EXPECT_TRUE(wheel.empty());
}
