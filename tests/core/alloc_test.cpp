// Steady-state use of the core allocates nothing: the wheel, the pending table and the
// rings are exercised after start-up while every heap allocation is counted.
#include <new>
#include <vector>

#include "alloc_counter.hpp"
#include "tern/agents/runtime.hpp"
#include "tern/core/arena.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/core/priority_ring.hpp"
#include "tern/core/ring.hpp"
#include "tern/core/rng.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern_test.hpp"

namespace {

TEST(NoHeap, CounterSeesAllocations) {
  std::size_t before = tern_test::allocations();
  void* p = ::operator new(64);
  ::operator delete(p);
  EXPECT_GT(tern_test::allocations(), before);
}

TEST(NoHeap, SteadyStateCoreAllocatesNothing) {
  tern::TimerWheel wheel;
  static tern::PendingTable<int, 256> table(wheel);
  static tern::Ring<int, 128> ring;
  static tern::PriorityRing<int, 128, 4> prio;
  static tern::Timer timers[512];
  int fired = 0;
  for (auto& t : timers) t.set_callback([](void* c) { ++*static_cast<int*>(c); }, &fired);
  tern::Rng rng(3);
  int outcomes = 0;
  tern::Instant now(0);

  std::size_t before = tern_test::allocations();
  for (int round = 0; round < 20000; ++round) {
    tern::Timer& t = timers[rng.below(512)];
    wheel.arm(t, now + tern::us(rng.between(0, 10000000)));
    if (rng.chance(0.3)) wheel.cancel(timers[rng.below(512)]);
    auto id = table.start(now + tern::ms(50), [&outcomes](tern::Result<int>) { ++outcomes; });
    if (id.ok() && rng.chance(0.7)) (void)table.complete(*id, round);
    (void)ring.push(round);
    if (ring.size() > 64) (void)ring.pop();
    (void)prio.push(round, static_cast<unsigned>(round % 4));
    if (prio.size() > 64) (void)prio.pop();
    now = now + tern::us(rng.between(0, 3000));
    wheel.advance(now);
    (void)wheel.next_expiry();
  }
  std::size_t after = tern_test::allocations();
  EXPECT_EQ(after - before, 0u);
  EXPECT_GT(fired, 0);
  EXPECT_GT(outcomes, 0);
  for (auto& t : timers) wheel.cancel(t);
  table.cancel_all();
}

TEST(NoHeap, SteadyStateMessagingAllocatesNothing) {
  tern::ManualClock clock;
  tern::ReactorConfig rc;
  rc.manual_clock = &clock;
  tern::Reactor reactor(rc);
  tern::Runtime rt(reactor, tern::RuntimeConfig{});
  struct Echo : tern::Agent {
    int events = 0;
    void on_message(tern::Context&, tern::Message&) override { ++events; }
    void on_request(tern::Context&, tern::Message& m, tern::Reply r) override { (void)r.ok(std::move(m)); }
  } a, b;
  auto ia = rt.spawn(a, {.name = "a", .mailbox = 32});
  auto ib = rt.spawn(b, {.name = "b", .mailbox = 32});
  auto topic = rt.topic("t");
  ASSERT_TRUE(ia.ok() && ib.ok() && topic.ok());
  ASSERT_EQ(rt.subscribe(*ia, *topic), tern::Errc::ok);
  ASSERT_EQ(rt.subscribe(*ib, *topic), tern::Errc::ok);
  int replies = 0;
  std::size_t before = tern_test::allocations();
  for (int i = 0; i < 5000; ++i) {
    tern::Message m;
    m.value = i;
    auto p = rt.payloads().copy_of("payload", 7);
    if (p) m.payload = *p;
    (void)rt.send(*ia, m);
    (void)rt.publish(*topic, m);
    (void)rt.request(*ib, std::move(m), {.timeout = tern::ms(5)}, [&replies](tern::Result<tern::Message>) { ++replies; });
    if (i % 7 == 0) clock.advance(tern::ms(1));
    reactor.run_until_idle();
  }
  std::size_t after = tern_test::allocations();
  EXPECT_EQ(after - before, 0u);
  EXPECT_EQ(replies, 5000);
  EXPECT_GT(a.events, 0);
  rt.shutdown();
}

// Firmware that links no heap gives the reactor and runtime an arena: construction then
// allocates nothing of tern's (on Linux the reactor's libevent base still does: compared
// against the same reactor on the heap, exactly its three tables are missing).
TEST(NoHeap, ConstructionInAnArenaTakesNoHeap) {
  alignas(tern::Arena::kAlign) static unsigned char memory[256 * 1024];
  tern::ManualClock clock;
  tern::ReactorConfig rc;
  rc.manual_clock = &clock;
  tern::RuntimeConfig config;
  std::size_t before = tern_test::allocations();
  { tern::Reactor on_heap(rc); }
  const std::size_t heap_reactor = tern_test::allocations() - before;

  tern::Arena arena(memory, sizeof memory);
  rc.arena = &arena;
  config.arena = &arena;
  before = tern_test::allocations();
  tern::Reactor reactor(rc);
  const std::size_t arena_reactor = tern_test::allocations() - before;
  EXPECT_EQ(heap_reactor - arena_reactor, 3u) << "timers, posted calls and watches";
  before = tern_test::allocations();
  {
    tern::Runtime rt(reactor, config);
    EXPECT_EQ(tern_test::allocations() - before, 0u);
    rt.shutdown();
  }
  EXPECT_EQ(arena.used(), tern::Reactor::arena_bytes(rc) + tern::Runtime::arena_bytes(config));
}

TEST(NoHeapDeathTest, AnArenaTooSmallIsAStartUpFailureNamingTheFix) {
  alignas(tern::Arena::kAlign) static unsigned char memory[4096];
  tern::ManualClock clock;
  tern::ReactorConfig rc;
  rc.manual_clock = &clock;
  ASSERT_LT(sizeof memory, tern::Reactor::arena_bytes(rc));
  EXPECT_DEATH(
      {
        tern::Arena arena(memory, sizeof memory);
        rc.arena = &arena;
        tern::Reactor reactor(rc);
      },
      "arena_bytes");
}

// A block in use keeps its size and reference count in 16 bits each on 32-bit targets
// (the header is 8 bytes there) and 32 bits each on 64-bit ones. Within the limit
// every copy counts; past it is a contract violation, not a wrapped count.
TEST(PayloadLimits, CopiesCountUpToThePortsLimit) {
  tern::PayloadConfig config;
  config.classes[0] = {64, 1};
  config.classes[1] = {0, 0};
  config.classes[2] = {0, 0};
  tern::PayloadPool pool(config);
  auto p = pool.copy_of("x", 1);
  ASSERT_TRUE(p.ok());
  constexpr bool k16 = sizeof(void*) < 8;
  // 32-bit: up to the last count the header holds; 64-bit: past what 16 bits would.
  std::vector<tern::Payload> copies(k16 ? 0xFFFE : 0x10005, *p);
  EXPECT_EQ(p->refs(), copies.size() + 1);
  if (k16) {  // the overflow itself: on 32-bit targets (armhf in scripts/test)
    EXPECT_DEATH({ tern::Payload one_more(*p); }, "too many copies");
  }
  copies.clear();
  EXPECT_EQ(p->refs(), 1u);
}

TEST(PayloadLimits, ABlockOver65535BytesIsRefusedOn32BitTargets) {
  tern::PayloadConfig config;
  config.classes[0] = {70000, 1};
  config.classes[1] = {0, 0};
  config.classes[2] = {0, 0};
  if (sizeof(void*) < 8) {
    EXPECT_DEATH({ tern::PayloadPool pool(config); }, "at most 65535 bytes");
  } else {
    tern::PayloadPool pool(config);
    auto p = pool.make(70000);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->size(), 70000u);
    EXPECT_EQ(p->capacity(), 70000u);
  }
}

}  // namespace
