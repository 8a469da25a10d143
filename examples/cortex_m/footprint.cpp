// footprint: the RAM that tern's reference configuration takes on the Cortex-M3
// (docs/FOOTPRINT.md; scripts/footprint builds this program at -Os and runs it under
// qemu). The reference configuration (issue 7):
//
//   8 agents with 16-message mailboxes  RuntimeConfig{max_agents 8, max_messages 128}
//   64 pending requests                 RuntimeConfig::max_pending 64
//   256 timers                          ReactorConfig::max_timers 256
//   32 payload buffers of 64 bytes      PayloadConfig{{64, 32}}
//
// and, for the knobs the issue does not name, the small values an agents-only firmware
// would pick: 16 agent timers (Context::after), 16 posted calls, 8 topics, 2 wildcard
// subscriptions, 1 watch slot (the port's maximum). It then measures a smaller
// configuration the same way (kSmall: 8-message mailboxes, 16 requests, 32 reactor
// timers, 16 payload buffers), which docs/FOOTPRINT.md quotes as what fits in 16 KB,
// and the reference configuration a third time with its tables in a static Arena.
//
// What it measures, for each configuration, in this order:
//   1. newlib's own heap (stdio buffers, taken at the first printf): not tern's;
//   2. the Reactor and the Runtime, constructed in static storage (.bss) so that
//      sizeof() is the RAM they take, plus every byte they request from the heap at
//      construction (operator new is replaced here to count exact requests; newlib's
//      malloc headers and _sbrk growth are reported beside it);
//   3. that the configuration really holds what it claims: 256 reactor timers, 64
//      requests in flight, 128 queued messages, 32 payloads are all taken at once (and
//      one more of each is refused with Errc::full), then drained, with the heap flat;
//   4. the stack that tern's calls used during 2-3 (painted, then scanned);
//   5. shutdown() leaves every table at zero.
// It prints "FOOTPRINT key value" lines for scripts/footprint and exits 0 only if
// every check held. The static .data/.bss of libtern.a's own objects come from the
// linker map (scripts/footprint reads cortex_m_footprint.map).
//
// Built with -fno-access-control so that it can print the sizes of internal layouts
// (Reactor::TimerEntry, Runtime::Node, ...). Nothing else here depends on that.
#include <malloc.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "tern/agents/agent.hpp"
#include "tern/agents/runtime.hpp"
#include "tern/port/cortex_m.hpp"
#include "tern/reactor/reactor.hpp"

// ---- counting every heap request ----

namespace {

struct HeapLog {
  bool on = false;
  std::size_t requested = 0;  // bytes asked for while `on`
  std::size_t calls = 0;
  std::size_t live = 0;       // bytes asked for and not yet freed (any time)
  std::size_t counting = 0;   // bytes this file adds to each block to count it
};
HeapLog g_heap;

// Every allocation carries its requested size in front, so frees can be counted.
constexpr std::size_t kHeader = 8;

void* counted_alloc(std::size_t n, std::size_t align) {
  if (align < kHeader) align = kHeader;
  auto* base = static_cast<unsigned char*>(
      align > 8 ? memalign(align, n + align) : std::malloc(n + kHeader));
  if (!base) return nullptr;
  unsigned char* user = base + (align > 8 ? align : kHeader);
  reinterpret_cast<std::size_t*>(user)[-1] = n;
  reinterpret_cast<std::size_t*>(user)[-2] = static_cast<std::size_t>(user - base);
  g_heap.live += n;
  if (g_heap.on) {
    g_heap.requested += n;
    g_heap.counting += static_cast<std::size_t>(user - base);
    ++g_heap.calls;
  }
  return user;
}

void counted_free(void* p) {
  if (!p) return;
  auto* user = static_cast<unsigned char*>(p);
  g_heap.live -= reinterpret_cast<std::size_t*>(user)[-1];
  std::free(user - reinterpret_cast<std::size_t*>(user)[-2]);
}

void* must(void* p) {
  if (!p) {
    std::printf("footprint: out of memory\n");
    std::exit(3);
  }
  return p;
}

}  // namespace

void* operator new(std::size_t n) { return must(counted_alloc(n, 8)); }
void* operator new[](std::size_t n) { return must(counted_alloc(n, 8)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 8); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 8); }
void* operator new(std::size_t n, std::align_val_t a) {
  return must(counted_alloc(n, static_cast<std::size_t>(a)));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return must(counted_alloc(n, static_cast<std::size_t>(a)));
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  counted_free(p);
}

namespace {

using tern::Errc;

// ---- the configurations ----

// What a measurement varies. Everything not here is the same in both: 16 posted calls,
// 8 topics, 2 wildcard subscriptions, 1 watch slot (the port's maximum), tick 1 ms.
struct Config {
  const char* name;
  std::size_t agents;
  std::uint16_t mailbox;      // per agent
  std::size_t pending;        // requests in flight
  std::size_t timers;         // reactor after()/at() timers
  std::size_t agent_timers;   // Context::after() timers
  std::uint32_t payloads;     // payload blocks ...
  std::uint32_t payload_bytes;  // ... of this size
};
// Issue 7's reference configuration.
constexpr Config kReference{"reference", 8, 16, 64, 256, 16, 32, 64};
// A smaller one, for docs/FOOTPRINT.md's "fits in 16 KB today".
constexpr Config kSmall{"small", 8, 8, 16, 32, 16, 16, 64};
constexpr std::size_t kMaxAgents = 8;

constexpr tern::ReactorConfig reactor_config(const Config& k) {
  tern::ReactorConfig c;
  c.max_timers = k.timers;
  c.max_posted = 16;
  c.max_watches = 1;
  return c;
}

constexpr tern::RuntimeConfig runtime_config(const Config& k) {
  tern::RuntimeConfig c;
  c.max_agents = k.agents;
  c.max_messages = k.agents * k.mailbox;
  c.max_pending = k.pending;
  c.max_timers = k.agent_timers;
  c.max_topics = 8;
  c.max_wildcards = 2;
  c.payloads = tern::PayloadConfig{};
  c.payloads.classes[0] = {k.payload_bytes, k.payloads};
  for (int i = 1; i < tern::PayloadConfig::kMaxClasses; ++i) c.payloads.classes[i] = {0, 0};
  return c;
}

// The reference configuration once more, its tables in an Arena instead of the heap: a
// static buffer sized at compile time, as a firmware without a heap would declare it.
constexpr std::size_t kReferenceArenaBytes = tern::Reactor::arena_bytes(reactor_config(kReference)) +
                                             tern::Runtime::arena_bytes(runtime_config(kReference));
alignas(tern::Arena::kAlign) unsigned char g_arena_mem[kReferenceArenaBytes];

// Static storage, constructed in main() once the baseline is taken: this is where a
// firmware keeps them, and sizeof() is then exactly their .bss.
alignas(tern::Reactor) unsigned char g_reactor_mem[sizeof(tern::Reactor)];
alignas(tern::Runtime) unsigned char g_runtime_mem[sizeof(tern::Runtime)];

// Answers every request at once; counts what it sees.
class Worker final : public tern::Agent {
 public:
  void on_message(tern::Context&, tern::Message& m) override {
    ++events;
    if (!m.payload.empty()) ++with_payload;
  }
  void on_request(tern::Context&, tern::Message& m, tern::Reply reply) override {
    ++requests;
    (void)reply.ok(std::move(m));
  }
  int events = 0, with_payload = 0, requests = 0;
};
Worker g_workers[kMaxAgents];

// ---- checks ----

int g_failures = 0;
const char* g_config = "";  // the configuration being measured, for failure lines
void check(bool ok, const char* what) {
  if (!ok) {
    ++g_failures;
    std::printf("CHECK FAILED (%s configuration): %s\n", g_config, what);
  }
}

// ---- stack high water ----

extern "C" char __stack_limit[];
constexpr unsigned char kPaint = 0xA5;

char* stack_pointer() {
  char* sp;
  asm volatile("mov %0, sp" : "=r"(sp));
  return sp;
}

// Paints the free stack below the caller's frame (leaving a margin for this call).
char* paint_stack() {
  char* top = stack_pointer() - 64;
  for (char* p = __stack_limit; p < top; ++p) *p = static_cast<char>(kPaint);
  return top;
}

// Bytes below `top` that were written since paint_stack().
std::size_t stack_used_below(char* top) {
  char* p = __stack_limit;
  while (p < top && static_cast<unsigned char>(*p) == kPaint) ++p;
  return static_cast<std::size_t>(top - p);
}

struct Mallinfo {
  std::size_t in_use;  // newlib: bytes in allocated chunks, headers included
};
Mallinfo heap_in_use() { return Mallinfo{static_cast<std::size_t>(mallinfo().uordblks)}; }

void kv(const char* key, std::size_t value) {
  std::printf("FOOTPRINT %s %lu\n", key, static_cast<unsigned long>(value));
}

}  // namespace

// What one configuration took, and what it held at once.
struct Measured {
  std::size_t reactor_heap, reactor_calls, runtime_heap, runtime_calls;
  std::size_t init_requested, init_calls, init_counting;
  std::size_t sbrk_init, inuse_after_init, steady_requested, sbrk_after_traffic;
  std::size_t timers_peak, pending_peak, messages_peak, payloads;
  std::size_t stack_used;
};

// Builds the Reactor and Runtime of `k` in static storage, counts what they take from
// the heap (nothing, given an arena), fills every table to its capacity at once (one
// more of each refused), drains it, shuts down and destroys them.
Measured measure(const Config& k, tern::Arena* arena = nullptr) {
  g_config = arena ? "reference, in an arena" : k.name;
  Measured out{};
  for (Worker& w : g_workers) w = Worker{};
  const std::size_t sbrk_before = tern::cortex_m::heap_used();
  // 2. Construction: everything tern takes for the configuration.
  char* stack_top = paint_stack();
  g_heap.on = true;
  g_heap.requested = 0;
  g_heap.calls = 0;
  g_heap.counting = 0;
  tern::ReactorConfig rc = reactor_config(k);
  tern::RuntimeConfig uc = runtime_config(k);
  rc.arena = arena;
  uc.arena = arena;
  auto* reactor = new (g_reactor_mem) tern::Reactor(rc);
  const std::size_t reactor_heap = g_heap.requested;
  const std::size_t reactor_calls = g_heap.calls;
  auto* runtime = new (g_runtime_mem) tern::Runtime(*reactor, uc);
  const std::size_t runtime_heap = g_heap.requested - reactor_heap;
  const std::size_t runtime_calls = g_heap.calls - reactor_calls;
  tern::AgentId ids[kMaxAgents];
  for (std::size_t i = 0; i < k.agents; ++i) {
    auto id = runtime->spawn(g_workers[i], {.name = "worker", .mailbox = k.mailbox});
    check(id.ok(), "spawn");
    ids[i] = id.ok() ? *id : tern::kNoAgent;
  }
  const std::size_t init_requested = g_heap.requested;
  const std::size_t init_calls = g_heap.calls;
  if (arena) {
    check(init_requested == 0, "no heap at init with an arena");
    check(arena->used() == tern::Reactor::arena_bytes(rc) + tern::Runtime::arena_bytes(uc),
          "the arena holds exactly arena_bytes()");
  }
  const std::size_t init_counting = g_heap.counting;
  const std::size_t sbrk_after_init = tern::cortex_m::heap_used();
  const std::size_t inuse_after_init = heap_in_use().in_use;

  // 3. Fill every table to its capacity at once, then drain it.
  int timers_fired = 0;
  std::size_t timers_armed = 0;
  for (std::size_t i = 0; i < k.timers; ++i) {
    auto t = reactor->after(tern::ms(1 + static_cast<std::int64_t>(i % 20)),
                            [&timers_fired] { ++timers_fired; });
    if (t.ok()) ++timers_armed;
  }
  check(timers_armed == k.timers, "every reactor timer armed");
  check(reactor->after(tern::ms(1), [] {}).error() == Errc::full, "one timer more refused");

  int replies = 0;
  std::size_t requests_made = 0;
  for (std::size_t i = 0; i < k.pending; ++i) {
    tern::Message m;
    m.type = 1;
    m.value = static_cast<std::int64_t>(i);
    auto id = runtime->request(ids[i % k.agents], std::move(m),
                               tern::RequestOptions{.timeout = tern::seconds(5)},
                               [&replies](tern::Result<tern::Message> r) { replies += r.ok(); });
    if (id.ok()) ++requests_made;
  }
  check(requests_made == k.pending, "every request in flight");
  check(runtime->pending_in_use() == k.pending, "pending table full");
  {
    auto extra = runtime->request(ids[0], tern::Message{}, tern::RequestOptions{},
                                  [](tern::Result<tern::Message>) {});
    check(!extra.ok() && extra.error() == Errc::full, "one request more refused");
  }
  // Events fill each mailbox to capacity beside its requests; as many carry a payload
  // as the pool has blocks (the reference: 8 requests + 8 events per mailbox, 32 of the
  // 64 events with a payload).
  const std::size_t events_each = k.mailbox - k.pending / k.agents;
  std::size_t payloads = 0, events_sent = 0;
  for (std::size_t a = 0; a < k.agents; ++a) {
    for (std::size_t e = 0; e < events_each; ++e) {
      tern::Message m;
      m.type = 2;
      auto p = runtime->payloads().make(k.payload_bytes);
      if (p) {
        m.payload = std::move(*p);
        ++payloads;
      }
      if (runtime->send(ids[a], std::move(m)) == Errc::ok) ++events_sent;
    }
  }
  check(payloads == k.payloads, "every payload taken");
  check(events_sent == k.agents * events_each, "every event queued");
  check(runtime->messages_in_use() == k.agents * k.mailbox, "every mailbox full");
  check(runtime->send(ids[0], tern::Message{}) == Errc::full, "one message more refused");
  check(runtime->payloads().make(1).error() == Errc::full, "one payload more refused");
  const std::size_t messages_peak = runtime->messages_in_use();
  const std::size_t pending_peak = runtime->pending_in_use();
  const std::size_t timers_peak = reactor->wheel().size();

  // Drain: run until every timer fired and every reply arrived (bounded in time).
  const tern::Instant give_up = reactor->now() + tern::seconds(10);
  while ((timers_fired < static_cast<int>(k.timers) || replies < static_cast<int>(k.pending)) &&
         reactor->now() < give_up) {
    (void)reactor->run_once(tern::ms(5));
  }
  check(timers_fired == static_cast<int>(k.timers), "every timer fired");
  check(replies == static_cast<int>(k.pending), "every request answered");
  int events = 0, with_payload = 0;
  for (const Worker& w : g_workers) {
    events += w.events;
    with_payload += w.with_payload;
  }
  check(events == static_cast<int>(k.agents * events_each), "every event delivered");
  check(with_payload == static_cast<int>(k.payloads), "every payload delivered");
  check(runtime->payloads().stats().in_use == 0, "payloads back in the pool");
  const std::size_t steady_requested = g_heap.requested - init_requested;
  const std::size_t sbrk_after_traffic = tern::cortex_m::heap_used();
  check(steady_requested == 0, "no heap after init");
  check(sbrk_after_traffic == sbrk_after_init, "heap flat after init");

  // 5. Shutdown leaves nothing behind.
  runtime->shutdown(tern::ms(100));
  check(runtime->pending_in_use() == 0, "pending 0 after shutdown");
  check(runtime->timers_in_use() == 0, "agent timers 0 after shutdown");
  check(runtime->messages_in_use() == 0, "messages 0 after shutdown");
  check(reactor->wheel().size() == 0, "wheel empty after shutdown");
  g_heap.on = false;
  const std::size_t stack_used = stack_used_below(stack_top);

  runtime->~Runtime();
  reactor->~Reactor();
  check(g_heap.live == 0, "everything freed after destruction");

  out.reactor_heap = reactor_heap;
  out.reactor_calls = reactor_calls;
  out.runtime_heap = runtime_heap;
  out.runtime_calls = runtime_calls;
  out.init_requested = init_requested;
  out.init_calls = init_calls;
  out.init_counting = init_counting;
  out.sbrk_init = sbrk_after_init - sbrk_before;
  out.inuse_after_init = inuse_after_init;
  out.steady_requested = steady_requested;
  out.sbrk_after_traffic = sbrk_after_traffic - sbrk_after_init;
  out.timers_peak = timers_peak;
  out.pending_peak = pending_peak;
  out.messages_peak = messages_peak;
  out.payloads = payloads;
  out.stack_used = stack_used;
  return out;
}

int main() {
  // 1. newlib's own heap: semihosting handles and the stdio buffers at the first printf.
  const std::size_t sbrk_at_main = tern::cortex_m::heap_used();
  std::printf("tern footprint, reference and small configurations, Cortex-M3 (mps2-an385)\n");
  const std::size_t sbrk_newlib = tern::cortex_m::heap_used();
  const std::size_t inuse_newlib = heap_in_use().in_use;

  const Measured m = measure(kReference);
  // The second run reuses the heap the first one freed: its sbrk growth is not its own.
  const Measured small = measure(kSmall);
  tern::Arena arena(g_arena_mem, sizeof g_arena_mem);
  const Measured in_arena = measure(kReference, &arena);
  g_config = "";

  // ---- report ----
  std::printf("\nlayouts (bytes, ARM32):\n");
  using tern::Reactor;
  using tern::Runtime;
  const struct {
    const char* name;
    std::size_t size;
  } layouts[] = {
      {"Reactor", sizeof(Reactor)},
      {"Runtime", sizeof(Runtime)},
      {"TimerWheel", sizeof(tern::TimerWheel)},
      {"Timer", sizeof(tern::Timer)},
      {"Reactor::Callback", sizeof(Reactor::Callback)},
      {"Reactor::TimerEntry", sizeof(Reactor::TimerEntry)},
      {"Reactor::WatchEntry", sizeof(Reactor::WatchEntry)},
      {"Reactor::CallInbox", sizeof(Reactor::CallInbox)},
      {"Message", sizeof(tern::Message)},
      {"Runtime::Node (mailbox message)", sizeof(Runtime::Node)},
      {"Runtime::Pending::Slot", sizeof(Runtime::Pending::Slot)},
      {"Runtime::WaitingAnswer (in a pending slot)", sizeof(Runtime::WaitingAnswer)},
      {"Runtime::TimerEntry (agent timer)", sizeof(Runtime::TimerEntry)},
      {"Runtime::AgentSlot", sizeof(Runtime::AgentSlot)},
      {"Runtime::Topic", sizeof(Runtime::Topic)},
      {"Runtime::Wildcard", sizeof(Runtime::Wildcard)},
      {"payload block header", sizeof(tern::detail::PayloadBlock)},
      {"ReplyCallback", sizeof(tern::ReplyCallback)},
      {"AgentTimerCallback", sizeof(tern::AgentTimerCallback)},
      {"Reply", sizeof(tern::Reply)},
  };
  for (const auto& l : layouts) std::printf("  %-34s %5u\n", l.name, unsigned(l.size));

  // The heap by table: capacity x entry size, from the configuration; "other" is what
  // the measurement finds beyond that (0 since tables are exact capacity x entry).
  {
    const tern::ReactorConfig rc = reactor_config(kReference);
    const tern::RuntimeConfig uc = runtime_config(kReference);
    struct Row {
      const char* what;
      std::size_t count, each;
    };
    constexpr std::size_t kAlign = alignof(std::max_align_t);
    const Row reactor_rows[] = {
        {"reactor timers (after/at)", rc.max_timers, sizeof(tern::Reactor::TimerEntry)},
        {"posted calls", rc.max_posted, sizeof(tern::Reactor::Callback)},
        {"watch slots", rc.max_watches, sizeof(tern::Reactor::WatchEntry)},
    };
    const Row runtime_rows[] = {
        {"payload blocks (64 B + header)", kReference.payloads,
         sizeof(tern::detail::PayloadBlock) +
             (kReference.payload_bytes + kAlign - 1) / kAlign * kAlign},
        {"agent slots", uc.max_agents, sizeof(tern::Runtime::AgentSlot)},
        {"mailbox message nodes", uc.max_messages, sizeof(tern::Runtime::Node)},
        {"pending request slots", uc.max_pending, sizeof(tern::Runtime::Pending::Slot)},
        {"request sides (agent, status)", uc.max_pending,
         sizeof(tern::Runtime::RequestSide)},
        {"agent timers (Context::after)", uc.max_timers, sizeof(tern::Runtime::TimerEntry)},
        {"topics", uc.max_topics, sizeof(tern::Runtime::Topic)},
        {"wildcard subscriptions", uc.max_wildcards, sizeof(tern::Runtime::Wildcard)},
    };
    auto print = [](const char* who, const Row* rows, std::size_t n, std::size_t measured) {
      std::size_t sum = 0;
      for (std::size_t i = 0; i < n; ++i) {
        std::printf("  %-8s %-32s %4lu x %4lu = %6lu\n", who, rows[i].what,
                    static_cast<unsigned long>(rows[i].count),
                    static_cast<unsigned long>(rows[i].each),
                    static_cast<unsigned long>(rows[i].count * rows[i].each));
        sum += rows[i].count * rows[i].each;
      }
      std::printf("  %-8s %-32s %20ld\n", who, "other (beyond capacity x entry)",
                  static_cast<long>(measured) - static_cast<long>(sum));
    };
    std::printf("\nheap at init, by table (bytes):\n");
    print("Reactor", reactor_rows, sizeof reactor_rows / sizeof reactor_rows[0], m.reactor_heap);
    print("Runtime", runtime_rows, sizeof runtime_rows / sizeof runtime_rows[0], m.runtime_heap);
  }

  std::printf("\ncapacities held at once: %lu timers on the wheel, %lu requests, %lu messages, "
              "%lu payloads\n",
              static_cast<unsigned long>(m.timers_peak), static_cast<unsigned long>(m.pending_peak),
              static_cast<unsigned long>(m.messages_peak), static_cast<unsigned long>(m.payloads));

  kv("sizeof_reactor", sizeof(tern::Reactor));
  kv("sizeof_runtime", sizeof(tern::Runtime));
  kv("heap_reactor", m.reactor_heap);
  kv("heap_reactor_allocs", m.reactor_calls);
  kv("heap_runtime", m.runtime_heap);
  kv("heap_runtime_allocs", m.runtime_calls);
  kv("heap_init_requested", m.init_requested);
  kv("heap_init_allocs", m.init_calls);
  // newlib's chunk headers and padding: what malloc holds beyond the requests (this
  // file's own counting header in front of each block taken out).
  kv("heap_init_malloc_overhead", m.inuse_after_init - inuse_newlib - m.init_requested - m.init_counting);
  kv("heap_init_sbrk", m.sbrk_init);
  kv("heap_after_init_requested", m.steady_requested);
  kv("heap_after_init_sbrk", m.sbrk_after_traffic);
  kv("newlib_heap_sbrk", sbrk_newlib - sbrk_at_main);
  kv("newlib_heap_in_use", inuse_newlib);
  kv("stack_used", m.stack_used);
  kv("small_heap_init_requested", small.init_requested);
  kv("small_heap_after_init_requested", small.steady_requested);
  kv("arena_reference_bytes", arena.used());
  kv("arena_reference_heap_init_requested", in_arena.init_requested);
  kv("arena_reference_heap_after_init_requested", in_arena.steady_requested);
  kv("agents_user_objects", sizeof(g_workers));
  kv("failures", static_cast<std::size_t>(g_failures));
  std::printf("%s\n",
              g_failures == 0 ? "footprint: all checks passed" : "footprint: CHECKS FAILED");
  return g_failures == 0 ? 0 : 1;
}
