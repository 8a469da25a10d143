// Timer benchmarks: the cost of one timer operation with N timers already pending, for
// tern's TimerWheel and three peers (libevent's min-heap timers, std::multimap,
// std::priority_queue). docs/BENCHMARKS.md records the figures; scripts/bench runs this.
//
// What each benchmark measures (per iteration, ns/op; N = timers already pending):
//
//   *ArmCancel  arm one more timer at a random deadline in the same 0..60 s spread as
//               the N pending ones, then cancel it.
//     Wheel        TimerWheel::arm(t, deadline) + cancel(t); absolute deadlines.
//     Libevent     event_add(ev, &relative_timeout) + event_del(ev) on an event_base made
//                  with EVENT_BASE_FLAG_NOLOCK. The loop runs inside an event callback,
//                  so libevent uses its cached loop time (no clock read per event_add),
//                  exactly as a reactor callback arming a deadline would.
//     StdMultimap  multimap<Instant, Entry>::emplace + erase(iterator): one malloc + free.
//
//   *ArmCancelShort  the same, but the new deadline is 1..100 ms ahead, so it is earlier
//               than almost every pending one (a short RPC timeout among long waits).
//               That is a binary heap's worst case (sift to the root and back) and
//               makes no difference to the wheel; the random-spread case above is the
//               heap's best case (a random insert sifts up O(1) levels on average).
//
//   *ArmExpire  arm one timer due one tick ahead, then make time pass so that it fires
//               (its callback runs). The N pending timers lie 24 h ahead (the same 60 s
//               spread, shifted), so that none of them fires or cascades during the run:
//               the figure is the cost of the one timer, not of background expiry.
//     Wheel        arm(t, now + 1 ms) + advance(now + 1 ms) on a fake clock (tick 1 ms).
//     Libevent     event_add(ev, {0, 0}) + event_base_loop(base, EVLOOP_ONCE). libevent
//                  can only fire a timer from its loop, and reads its own monotonic
//                  clock, so this includes one loop turn: an epoll_wait(timeout 0)
//                  syscall and clock reads. BM_LibeventIdleLoopTurn measures that
//                  turn alone (nothing due), to be subtracted if wanted.
//     StdMultimap  emplace(now + 1 ms) + pop-and-fire everything <= now (malloc + free).
//     StdPriorityQueue  push + pop-and-fire on a binary heap in a reserved vector (no
//                  cancel: a heap cannot remove an arbitrary entry without extra indexing).
//
// The N pending timers are set up once per benchmark instance (not per run), because
// the N = 1e6 setups would otherwise dominate the wall time; random deadlines are
// generated before the timed loop with tern::Rng (fixed seeds: every peer sees the same
// offsets).
#include <event2/event.h>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <queue>
#include <vector>

#include "tern/core/rng.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"

namespace {

using tern::Duration;
using tern::Instant;

constexpr std::int64_t kSpreadUs = 60'000'000;             // pending deadlines: 0..60 s
constexpr std::int64_t kFarUs = 24LL * 3600 * 1'000'000;   // arm+expire background offset
constexpr std::int64_t kHourUs = 3600LL * 1'000'000;
constexpr std::size_t kPool = 4096;                        // pre-generated deadlines
constexpr std::size_t kPoolMask = kPool - 1;
constexpr std::uint64_t kBackgroundSeed = 1;
constexpr std::uint64_t kProbeSeed = 2;
constexpr std::int64_t kShortUs = 100'000;                 // *ArmCancelShort: 1..100 ms

std::uint64_t iters(const benchmark::State& s) {
  return static_cast<std::uint64_t>(s.iterations());
}

// Random offsets in [1 ms, max_us] (microseconds).
std::vector<std::int64_t> random_offsets(std::size_t n, std::uint64_t seed,
                                         std::int64_t max_us = kSpreadUs) {
  tern::Rng rng(seed);
  std::vector<std::int64_t> out(n);
  for (auto& v : out) v = rng.between(1000, max_us);
  return out;
}

timeval to_timeval(std::int64_t us) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(us / 1'000'000);
  tv.tv_usec = static_cast<suseconds_t>(us % 1'000'000);
  return tv;
}

// One live fixture at a time: the runs of one benchmark instance share it, and the next
// instance frees it before building its own (N = 1e6 fixtures are tens of MB each).
struct Fixture {
  virtual ~Fixture() = default;
};
std::unique_ptr<Fixture> g_live;
const void* g_live_kind = nullptr;
std::int64_t g_live_n = -1;

template <class F>
F& shared_fixture(std::int64_t n) {
  static const char kind = 0;
  if (!g_live || g_live_kind != &kind || g_live_n != n) {
    g_live.reset();
    g_live = std::make_unique<F>(n);
    g_live_kind = &kind;
    g_live_n = n;
  }
  return static_cast<F&>(*g_live);
}

void count_fire(void* context) { ++*static_cast<std::uint64_t*>(context); }
void ignore_fire(void*) {}

// --- tern::TimerWheel --------------------------------------------------------------

template <std::int64_t kBackgroundOffsetUs>
struct WheelFixture : Fixture {
  explicit WheelFixture(std::int64_t n)
      : background(new tern::Timer[static_cast<std::size_t>(n)]),
        count(static_cast<std::size_t>(n)) {
    auto offsets = random_offsets(count, kBackgroundSeed);
    for (std::size_t i = 0; i < count; ++i) {
      background[i].set_callback(&ignore_fire, nullptr);
      wheel.arm(background[i], Instant(kBackgroundOffsetUs + offsets[i]));
    }
    probe.set_callback(&count_fire, &fired);
  }
  ~WheelFixture() override {
    for (std::size_t i = 0; i < count; ++i) wheel.cancel(background[i]);
    wheel.cancel(probe);
  }

  tern::TimerWheel wheel{Instant(0), tern::ms(1)};
  std::unique_ptr<tern::Timer[]> background;
  std::size_t count;
  tern::Timer probe;
  std::uint64_t fired = 0;
  Instant now{0};
};

void wheel_arm_cancel(benchmark::State& state, std::int64_t max_us) {
  auto& f = shared_fixture<WheelFixture<0>>(state.range(0));
  std::vector<Instant> deadlines;
  for (auto off : random_offsets(kPool, kProbeSeed, max_us)) {
    deadlines.push_back(f.now + Duration(off));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    f.wheel.arm(f.probe, deadlines[i++ & kPoolMask]);
    bool was_armed = f.wheel.cancel(f.probe);
    benchmark::DoNotOptimize(was_armed);
  }
  if (f.wheel.size() != f.count) state.SkipWithError("wheel lost or gained timers");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
void BM_WheelArmCancel(benchmark::State& state) { wheel_arm_cancel(state, kSpreadUs); }
void BM_WheelArmCancelShort(benchmark::State& state) { wheel_arm_cancel(state, kShortUs); }

void BM_WheelArmExpire(benchmark::State& state) {
  auto& f = shared_fixture<WheelFixture<kFarUs>>(state.range(0));
  std::uint64_t fired_before = f.fired;
  for (auto _ : state) {
    f.now += tern::ms(1);
    f.wheel.arm(f.probe, f.now);
    std::size_t n = f.wheel.advance(f.now);
    benchmark::DoNotOptimize(n);
  }
  if (f.fired - fired_before != iters(state)) {
    state.SkipWithError("probe did not fire once per iteration");
  }
  if (f.now.us > kFarUs - kHourUs) state.SkipWithError("fake clock reached the background timers");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// --- libevent (min-heap timers) -----------------------------------------------------

template <std::int64_t kBackgroundOffsetUs>
struct LibeventFixture : Fixture {
  explicit LibeventFixture(std::int64_t n) : count(static_cast<std::size_t>(n)) {
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    // Contiguous storage, like the wheel's Timer array.
    stride = (event_get_struct_event_size() + alignof(std::max_align_t) - 1) &
             ~(alignof(std::max_align_t) - 1);
    storage.reset(new unsigned char[stride * (count + 1)]);
    auto offsets = random_offsets(count, kBackgroundSeed);
    for (std::size_t i = 0; i < count; ++i) {
      event* ev = at(i);
      event_assign(ev, base, -1, 0, &background_fired, event_self_cbarg());
      timeval tv = to_timeval(kBackgroundOffsetUs + offsets[i]);
      event_add(ev, &tv);
    }
    probe = at(count);
    event_assign(probe, base, -1, 0, &probe_fired, &fired);
  }
  ~LibeventFixture() override {
    for (std::size_t i = 0; i <= count; ++i) event_del(at(i));
    event_base_free(base);
  }
  event* at(std::size_t i) { return reinterpret_cast<event*>(storage.get() + i * stride); }

  // Keeps N constant if a background timer comes due while the fixture lives on.
  static void background_fired(evutil_socket_t, short, void* arg) {
    timeval tv = to_timeval(kSpreadUs);
    event_add(static_cast<event*>(arg), &tv);
  }
  static void probe_fired(evutil_socket_t, short, void* arg) {
    ++*static_cast<std::uint64_t*>(arg);
  }

  event_base* base = nullptr;
  std::size_t count;
  std::size_t stride = 0;
  std::unique_ptr<unsigned char[]> storage;
  event* probe = nullptr;
  std::uint64_t fired = 0;
};

struct LibeventDrive {
  benchmark::State* state;
  LibeventFixture<0>* fixture;
  std::vector<timeval> timeouts;
};

// Runs the timed loop from inside a libevent callback (see the banner).
void libevent_arm_cancel_loop(evutil_socket_t, short, void* arg) {
  auto& d = *static_cast<LibeventDrive*>(arg);
  auto& f = *d.fixture;
  const timeval* timeouts = d.timeouts.data();
  std::size_t i = 0;
  for (auto _ : *d.state) {
    event_add(f.probe, &timeouts[i++ & kPoolMask]);
    int rc = event_del(f.probe);
    benchmark::DoNotOptimize(rc);
  }
}

void libevent_arm_cancel(benchmark::State& state, std::int64_t max_us) {
  auto& f = shared_fixture<LibeventFixture<0>>(state.range(0));
  LibeventDrive drive{&state, &f, {}};
  for (auto off : random_offsets(kPool, kProbeSeed, max_us)) {
    drive.timeouts.push_back(to_timeval(off));
  }
  event* driver = event_new(f.base, -1, 0, &libevent_arm_cancel_loop, &drive);
  event_active(driver, EV_TIMEOUT, 0);
  event_base_loop(f.base, EVLOOP_ONCE);
  event_free(driver);
  if (state.iterations() == 0) state.SkipWithError("driver callback did not run");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
void BM_LibeventArmCancel(benchmark::State& state) { libevent_arm_cancel(state, kSpreadUs); }
void BM_LibeventArmCancelShort(benchmark::State& state) { libevent_arm_cancel(state, kShortUs); }

void BM_LibeventArmExpire(benchmark::State& state) {
  auto& f = shared_fixture<LibeventFixture<kFarUs>>(state.range(0));
  const timeval zero = {0, 0};
  std::uint64_t fired_before = f.fired;
  for (auto _ : state) {
    event_add(f.probe, &zero);
    int rc = event_base_loop(f.base, EVLOOP_ONCE);
    benchmark::DoNotOptimize(rc);
  }
  if (f.fired - fired_before != iters(state)) {
    state.SkipWithError("probe did not fire once per iteration");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// One loop turn with nothing due: the fixed cost inside BM_LibeventArmExpire.
void BM_LibeventIdleLoopTurn(benchmark::State& state) {
  auto& f = shared_fixture<LibeventFixture<kFarUs>>(state.range(0));
  for (auto _ : state) {
    int rc = event_base_loop(f.base, EVLOOP_NONBLOCK);
    benchmark::DoNotOptimize(rc);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// --- std::multimap ------------------------------------------------------------------

struct Entry {
  void (*callback)(void*);
  void* context;
};

template <std::int64_t kBackgroundOffsetUs>
struct MultimapFixture : Fixture {
  explicit MultimapFixture(std::int64_t n) {
    for (auto off : random_offsets(static_cast<std::size_t>(n), kBackgroundSeed)) {
      timers.emplace(Instant(kBackgroundOffsetUs + off), Entry{&ignore_fire, nullptr});
    }
  }
  // Fires (and removes) every entry due at or before `t`, earliest first.
  std::size_t advance(Instant t) {
    std::size_t n = 0;
    while (!timers.empty() && timers.begin()->first <= t) {
      Entry e = timers.begin()->second;
      timers.erase(timers.begin());
      e.callback(e.context);
      ++n;
    }
    return n;
  }

  std::multimap<Instant, Entry> timers;
  std::uint64_t fired = 0;
  Instant now{0};
};

void multimap_arm_cancel(benchmark::State& state, std::int64_t max_us) {
  auto& f = shared_fixture<MultimapFixture<0>>(state.range(0));
  std::vector<Instant> deadlines;
  for (auto off : random_offsets(kPool, kProbeSeed, max_us)) {
    deadlines.push_back(f.now + Duration(off));
  }
  const Entry probe{&count_fire, &f.fired};
  std::size_t i = 0;
  for (auto _ : state) {
    auto it = f.timers.emplace(deadlines[i++ & kPoolMask], probe);
    benchmark::DoNotOptimize(it);
    f.timers.erase(it);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
void BM_StdMultimapArmCancel(benchmark::State& state) { multimap_arm_cancel(state, kSpreadUs); }
void BM_StdMultimapArmCancelShort(benchmark::State& state) { multimap_arm_cancel(state, kShortUs); }

void BM_StdMultimapArmExpire(benchmark::State& state) {
  auto& f = shared_fixture<MultimapFixture<kFarUs>>(state.range(0));
  const Entry probe{&count_fire, &f.fired};
  std::uint64_t fired_before = f.fired;
  for (auto _ : state) {
    f.now += tern::ms(1);
    f.timers.emplace(f.now, probe);
    std::size_t n = f.advance(f.now);
    benchmark::DoNotOptimize(n);
  }
  if (f.fired - fired_before != iters(state)) {
    state.SkipWithError("probe did not fire once per iteration");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// --- std::priority_queue (arm+expire only) ------------------------------------------

struct HeapItem {
  Instant deadline;
  std::uint64_t seq;  // FIFO among equal deadlines, as the wheel does
  Entry entry;
};
struct Later {
  bool operator()(const HeapItem& a, const HeapItem& b) const {
    return a.deadline != b.deadline ? a.deadline > b.deadline : a.seq > b.seq;
  }
};

struct PriorityQueueFixture : Fixture {
  explicit PriorityQueueFixture(std::int64_t n) : heap(Later{}, reserved(n)) {
    for (auto off : random_offsets(static_cast<std::size_t>(n), kBackgroundSeed)) {
      heap.push(HeapItem{Instant(kFarUs + off), seq++, Entry{&ignore_fire, nullptr}});
    }
  }
  static std::vector<HeapItem> reserved(std::int64_t n) {
    std::vector<HeapItem> v;
    v.reserve(static_cast<std::size_t>(n) + 16);
    return v;
  }
  std::size_t advance(Instant t) {
    std::size_t n = 0;
    while (!heap.empty() && heap.top().deadline <= t) {
      Entry e = heap.top().entry;
      heap.pop();
      e.callback(e.context);
      ++n;
    }
    return n;
  }

  std::priority_queue<HeapItem, std::vector<HeapItem>, Later> heap;
  std::uint64_t seq = 0;
  std::uint64_t fired = 0;
  Instant now{0};
};

void BM_StdPriorityQueueArmExpire(benchmark::State& state) {
  auto& f = shared_fixture<PriorityQueueFixture>(state.range(0));
  const Entry probe{&count_fire, &f.fired};
  std::uint64_t fired_before = f.fired;
  for (auto _ : state) {
    f.now += tern::ms(1);
    f.heap.push(HeapItem{f.now, f.seq++, probe});
    std::size_t n = f.advance(f.now);
    benchmark::DoNotOptimize(n);
  }
  if (f.fired - fired_before != iters(state)) {
    state.SkipWithError("probe did not fire once per iteration");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void pending_counts(benchmark::internal::Benchmark* b) {
  for (std::int64_t n : {1'000, 10'000, 100'000, 1'000'000}) b->Arg(n);
  b->ArgName("N")->Unit(benchmark::kNanosecond)->MinTime(0.2);
}

}  // namespace

BENCHMARK(BM_WheelArmCancel)->Apply(pending_counts);
BENCHMARK(BM_LibeventArmCancel)->Apply(pending_counts);
BENCHMARK(BM_StdMultimapArmCancel)->Apply(pending_counts);
BENCHMARK(BM_WheelArmCancelShort)->Apply(pending_counts);
BENCHMARK(BM_LibeventArmCancelShort)->Apply(pending_counts);
BENCHMARK(BM_StdMultimapArmCancelShort)->Apply(pending_counts);
BENCHMARK(BM_WheelArmExpire)->Apply(pending_counts);
BENCHMARK(BM_LibeventArmExpire)->Apply(pending_counts);
BENCHMARK(BM_LibeventIdleLoopTurn)->Apply(pending_counts);
BENCHMARK(BM_StdMultimapArmExpire)->Apply(pending_counts);
BENCHMARK(BM_StdPriorityQueueArmExpire)->Apply(pending_counts);

BENCHMARK_MAIN();
