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

alignas(Arena::kAlign) unsigned char g_memory[64 * 1024];

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
  config.payloads.classes[0] = {48, 3};  // not a multiple of the alignment
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
    int answered = 0;
    std::int64_t sum = 0;
    for (int i = 0; i < 4; ++i) {
      tern::Message m;
      m.value = i + 1;
      auto p = rt.payloads().copy_of("arena", 5);
      ASSERT_TRUE(p.ok());
      m.payload = *p;
      ASSERT_TRUE(rt.request(*id, std::move(m), {.timeout = tern::ms(10)}, [&](tern::Result<tern::Message> r) {
                    if (r.ok() && r->payload.size() == 5) sum += r->value;
                    ++answered;
                  })
                      .ok());
    }
    EXPECT_EQ(rt.payloads().copy_of("x", 1).error(), Errc::full) << "3 blocks of 48 and 1 of 200";
    reactor.run_until_idle();
    EXPECT_EQ(answered, 4);
    EXPECT_EQ(sum, 10);
    rt.shutdown();
  }
  EXPECT_EQ(arena.used(), need) << "an arena never gives back";
}

}  // namespace
