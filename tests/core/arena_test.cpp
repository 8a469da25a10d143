// Arena: start-up tables from a caller's buffer, sized exactly by arena_bytes()
// (portable: runs on every port).
#include "tern/core/arena.hpp"

#include "tern/agents/runtime.hpp"
#include "tern/reactor/reactor.hpp"
#include "tern_test.hpp"

namespace {

using tern::Arena;
using tern::Errc;

// Compile-time sizing is what lets firmware declare the buffer as a static array.
constexpr tern::ReactorConfig kSmallReactor{.max_timers = 8, .max_posted = 4, .max_watches = 1};
static_assert(tern::Reactor::arena_bytes(kSmallReactor) > 0);
static_assert(tern::Runtime::arena_bytes(tern::RuntimeConfig{}) > tern::PayloadPool::arena_bytes({}));

// Room for the largest configuration below: the Linux port's 1 029 watch slots take most
// of it; the Cortex-M port has one.
alignas(Arena::kAlign) unsigned char g_memory[tern::detail::kPortMaxWatches > 1 ? 128 * 1024 : 32 * 1024];

TEST(Arena, TakesAlignedPiecesInOrderAndRefusesWhatDoesNotFit) {
  Arena arena(g_memory, 3 * Arena::kAlign);
  void* a = arena.take(3, 1);
  EXPECT_EQ(a, static_cast<void*>(g_memory));
  EXPECT_EQ(arena.used(), 3u);
  void* b = arena.take(Arena::kAlign, Arena::kAlign);  // padded up to the next boundary
  EXPECT_EQ(b, static_cast<void*>(g_memory + Arena::kAlign));
  EXPECT_EQ(arena.used(), 2 * Arena::kAlign);
  EXPECT_EQ(arena.take(Arena::kAlign + 1, 1), nullptr);  // one byte too many: nothing taken
  EXPECT_EQ(arena.used(), 2 * Arena::kAlign);
  EXPECT_NE(arena.take(Arena::kAlign, 1), nullptr);  // exactly what is left
  EXPECT_EQ(arena.used(), arena.size());
  EXPECT_EQ(arena.take(1, 1), nullptr);
  EXPECT_EQ(arena.take(0, 1), static_cast<void*>(g_memory + arena.size()));  // nothing, at the end
}

TEST(Arena, ASizeThatWouldWrapIsRefused) {
  Arena arena(g_memory, sizeof g_memory);
  ASSERT_NE(arena.take(1, 1), nullptr);
  EXPECT_EQ(arena.take(static_cast<std::size_t>(-1) - 5, Arena::kAlign), nullptr);
  EXPECT_EQ(arena.take(static_cast<std::size_t>(-1), 1), nullptr);
  EXPECT_EQ(arena.used(), 1u);
}

TEST(Arena, ReactorTakesExactlyArenaBytesAndRuns) {
  tern::ManualClock clock;
  tern::ReactorConfig rc = kSmallReactor;
  rc.manual_clock = &clock;
  rc.max_posted = 0;  // taken as 1, in the arena too
  const std::size_t need = tern::Reactor::arena_bytes(rc);
  Arena arena(g_memory, need);
  rc.arena = &arena;
  {
    tern::Reactor reactor(rc);
    EXPECT_EQ(arena.used(), need);
    int fired = 0;
    tern::TimerHandle timers[8];
    for (auto& t : timers) {
      auto h = reactor.after(tern::ms(5), [&fired] { ++fired; });
      ASSERT_TRUE(h.ok());
      t = *h;
    }
    EXPECT_EQ(reactor.after(tern::ms(5), [] {}).error(), Errc::full);
    EXPECT_EQ(reactor.post([&fired] { fired += 100; }), Errc::ok);
    EXPECT_EQ(reactor.post([] {}), Errc::full);
    clock.advance(tern::ms(5));
    reactor.run_until_idle();
    EXPECT_EQ(fired, 108);
  }
}

struct Echo : tern::Agent {
  void on_request(tern::Context&, tern::Message& m, tern::Reply r) override { (void)r.ok(std::move(m)); }
};

TEST(Arena, ReactorAndRuntimeShareOneArenaSizedByTheirSum) {
  tern::ManualClock clock;
  tern::ReactorConfig rc = kSmallReactor;
  rc.manual_clock = &clock;
  tern::RuntimeConfig config;
  config.max_agents = 2;
  config.max_messages = 8;
  config.max_pending = 4;
  config.max_timers = 0;  // taken as 1, in the arena too
  config.max_topics = 2;
  config.max_wildcards = 1;
  config.payloads.classes[0] = {50, 3};  // not a multiple of the alignment (8 or 16)
  config.payloads.classes[1] = {200, 1};
  config.payloads.classes[2] = {0, 0};
  const std::size_t need = tern::Reactor::arena_bytes(rc) + tern::Runtime::arena_bytes(config);
  Arena arena(g_memory, need);
  rc.arena = &arena;
  config.arena = &arena;
  {
    tern::Reactor reactor(rc);
    tern::Runtime rt(reactor, config);
    EXPECT_EQ(arena.used(), need);

    Echo echo;
    auto id = rt.spawn(echo, {.name = "echo", .mailbox = 4});
    ASSERT_TRUE(id.ok());
    struct Tally {
      int answered = 0;
      std::int64_t sum = 0;
    } tally;
    for (int i = 0; i < 4; ++i) {
      tern::Message m;
      m.value = i + 1;
      auto p = rt.payloads().copy_of("arena", 5);
      ASSERT_TRUE(p.ok());
      m.payload = *p;
      ASSERT_TRUE(rt.request(*id, std::move(m), {.timeout = tern::ms(10)}, [t = &tally](tern::Result<tern::Message> r) {
                    if (r.ok() && r->payload.size() == 5) t->sum += r->value;
                    ++t->answered;
                  })
                      .ok());
    }
    EXPECT_EQ(rt.payloads().copy_of("x", 1).error(), Errc::full) << "3 blocks of 50 and 1 of 200";
    reactor.run_until_idle();
    EXPECT_EQ(tally.answered, 4);
    EXPECT_EQ(tally.sum, 10);
    rt.shutdown();
  }
  EXPECT_EQ(arena.used(), need) << "an arena never gives back";
}

// Objects share an arena in any order: each one's arena_bytes() is a multiple of
// Arena::kAlign, and it pads its last table to that. Here the Runtime's last table
// (one 36-byte wildcard) ends off the alignment, the clamps are exercised (more agents
// and watches than a Runtime or the port takes), and a PayloadPool follows.
TEST(Arena, ObjectsShareAnArenaInAnyOrderAndClampedSizesAreCounted) {
  tern::ManualClock clock;
  tern::RuntimeConfig config;
  config.max_agents = tern::Runtime::kMaxAgents + 10;
  config.max_messages = 4;
  config.max_pending = 3;
  config.max_timers = 1;
  config.max_topics = 1;
  config.max_wildcards = 1;
  config.payloads.classes[0] = {0, 0};
  config.payloads.classes[1] = {0, 0};
  config.payloads.classes[2] = {0, 0};
  tern::PayloadConfig pool_config;
  pool_config.classes[0] = {50, 2};
  pool_config.classes[1] = {77, 1};
  pool_config.classes[2] = {0, 0};
  tern::ReactorConfig rc = kSmallReactor;
  rc.manual_clock = &clock;
  rc.max_watches = static_cast<std::size_t>(tern::detail::kPortMaxWatches) + 5;

  const std::size_t runtime_bytes = tern::Runtime::arena_bytes(config);
  const std::size_t pool_bytes = tern::PayloadPool::arena_bytes(pool_config);
  const std::size_t reactor_bytes = tern::Reactor::arena_bytes(rc);
  EXPECT_EQ(runtime_bytes % Arena::kAlign, 0u);
  EXPECT_EQ(pool_bytes % Arena::kAlign, 0u);
  EXPECT_EQ(reactor_bytes % Arena::kAlign, 0u);
  ASSERT_LE(runtime_bytes + pool_bytes + reactor_bytes, sizeof g_memory);
  Arena arena(g_memory, runtime_bytes + pool_bytes + reactor_bytes);
  rc.arena = &arena;
  config.arena = &arena;
  {
    // The Runtime needs a reactor: this one stays on the heap.
    tern::ReactorConfig heap_rc = kSmallReactor;
    heap_rc.manual_clock = &clock;
    tern::Reactor heap_reactor(heap_rc);
    tern::Runtime rt(heap_reactor, config);
    EXPECT_EQ(arena.used(), runtime_bytes);
    tern::PayloadPool pool(pool_config, &arena);
    EXPECT_EQ(arena.used(), runtime_bytes + pool_bytes);
    tern::Reactor reactor(rc);
    EXPECT_EQ(arena.used(), arena.size());

    // Every payload block lies inside the pool's share of the arena, even filled to
    // its capacity.
    const unsigned char* pool_begin = g_memory + runtime_bytes;
    const unsigned char* pool_end = pool_begin + pool_bytes;
    tern::Payload held[3];
    for (auto& p : held) {
      auto made = pool.make(1);
      ASSERT_TRUE(made.ok());
      p = std::move(*made);
      EXPECT_GE(static_cast<const unsigned char*>(p.data()), pool_begin);
      EXPECT_LE(static_cast<const unsigned char*>(p.data()) + p.capacity(), pool_end);
      for (std::size_t i = 0; i < p.capacity(); ++i) p.data()[i] = 0xA5;
    }
    EXPECT_EQ(pool.make(1).error(), Errc::full);
    int fired = 0;
    ASSERT_TRUE(reactor.after(tern::ms(1), [&fired] { ++fired; }).ok());
    clock.advance(tern::ms(1));
    reactor.run_until_idle();
    EXPECT_EQ(fired, 1);
    rt.shutdown();
  }
}

}  // namespace
