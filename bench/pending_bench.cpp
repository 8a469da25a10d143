// PendingTable benchmarks: one request's life (start + outcome) with ~1000 others pending,
// against the container a hand-written agent system would use instead.
// docs/BENCHMARKS.md records the figures; scripts/bench runs this.
//
// What each benchmark measures (per iteration, ns/op):
//
//   PendingTableStartComplete   table.start(deadline, on_done) with a random deadline in
//       0..60 s (arms the slot's timer on a TimerWheel), then table.complete(id, 42)
//       (cancels the timer, retires the slot, runs on_done with the value).
//   PendingTableStartTimeout    table.start(now + 1 ms, on_done), then wheel.advance(now +
//       1 ms): the deadline fires and on_done runs with Errc::timeout.
//   UnorderedMapStartComplete   the usual baseline: unordered_map<uint64_t,
//       std::function<void(Result<int>)>>: emplace(fresh id, on_done); on complete find,
//       move the function out, erase, call it. It tracks no deadline at all.
//   UnorderedMapDeadlineStartComplete  the same plus what PendingTable also does: the
//       deadline goes into a std::multimap<Instant, id> on start and out on complete.
//   UnorderedMapStartTimeout    emplace + multimap deadline on start; on advance, pop
//       every deadline <= now, find its id, move the function out, erase, call it with
//       Errc::timeout.
//
// Each table holds kBackground requests that stay pending throughout (deadlines in the same
// 0..60 s spread for the complete cases; 24 h ahead for the timeout cases, so that the
// fake clock, one tick per iteration, never reaches them).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tern/core/errc.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/core/rng.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"

namespace {

using tern::Errc;
using tern::Instant;
using tern::Result;

constexpr std::size_t kCapacity = 4096;
constexpr std::size_t kBackground = 1000;
constexpr std::int64_t kSpreadUs = 60'000'000;
constexpr std::int64_t kFarUs = 24LL * 3600 * 1'000'000;
constexpr std::size_t kPool = 4096;
constexpr std::size_t kPoolMask = kPool - 1;

using Table = tern::PendingTable<int, kCapacity>;

std::uint64_t iters(const benchmark::State& s) {
  return static_cast<std::uint64_t>(s.iterations());
}

std::vector<Instant> random_deadlines(std::size_t n, std::uint64_t seed, std::int64_t base_us) {
  tern::Rng rng(seed);
  std::vector<Instant> out(n);
  for (auto& d : out) d = Instant(base_us + rng.between(1000, kSpreadUs));
  return out;
}

// What on_done does in every variant: fold the outcome into a sink the optimiser must keep.
struct Sink {
  std::int64_t sum = 0;
  void take(const Result<int>& r) { sum += r.ok() ? r.value() : static_cast<int>(r.error()); }
};

// --- tern::PendingTable -------------------------------------------------------------

struct TableFixture {
  explicit TableFixture(std::int64_t background_base_us)
      : table(std::make_unique<Table>(wheel)) {
    for (Instant d : random_deadlines(kBackground, 1, background_base_us)) {
      auto id = table->start(d, [](Result<int>) {});
      if (!id) tern::panic("bench: background start failed");
    }
  }
  ~TableFixture() { table->cancel_all(); }

  tern::TimerWheel wheel{Instant(0), tern::ms(1)};
  std::unique_ptr<Table> table;  // ~400 KB: keep it off the stack
};

void BM_PendingTableStartComplete(benchmark::State& state) {
  TableFixture f(0);
  auto deadlines = random_deadlines(kPool, 2, 0);
  Sink sink;
  Sink* s = &sink;
  std::size_t i = 0;
  for (auto _ : state) {
    auto id = f.table->start(deadlines[i++ & kPoolMask], [s](Result<int> r) { s->take(r); });
    Errc e = f.table->complete(*id, 42);
    benchmark::DoNotOptimize(e);
  }
  benchmark::DoNotOptimize(sink.sum);
  if (sink.sum != 42 * static_cast<std::int64_t>(state.iterations())) {
    state.SkipWithError("on_done did not run once per request");
  }
  if (f.table->in_use() != kBackground) state.SkipWithError("table size drifted");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_PendingTableStartTimeout(benchmark::State& state) {
  TableFixture f(kFarUs);
  Sink sink;
  Sink* s = &sink;
  Instant now(0);
  for (auto _ : state) {
    now += tern::ms(1);
    auto id = f.table->start(now, [s](Result<int> r) { s->take(r); });
    benchmark::DoNotOptimize(id);
    std::size_t fired = f.wheel.advance(now);
    benchmark::DoNotOptimize(fired);
  }
  if (f.table->stats().timed_out != iters(state)) {
    state.SkipWithError("request did not time out once per iteration");
  }
  if (now.us > kFarUs / 2) state.SkipWithError("fake clock reached the background requests");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// --- baseline: std::unordered_map + std::function (+ std::multimap of deadlines) ----

using Callback = std::function<void(Result<int>)>;

void BM_UnorderedMapStartComplete(benchmark::State& state) {
  std::unordered_map<std::uint64_t, Callback> pending;
  pending.reserve(kCapacity);
  std::uint64_t next_id = 1;
  for (std::size_t k = 0; k < kBackground; ++k) pending.emplace(next_id++, [](Result<int>) {});
  Sink sink;
  Sink* s = &sink;
  for (auto _ : state) {
    std::uint64_t id = next_id++;
    pending.emplace(id, [s](Result<int> r) { s->take(r); });
    benchmark::DoNotOptimize(id);
    auto it = pending.find(id);
    Callback cb = std::move(it->second);
    pending.erase(it);
    cb(Result<int>(42));
  }
  benchmark::DoNotOptimize(sink.sum);
  if (sink.sum != 42 * static_cast<std::int64_t>(state.iterations())) {
    state.SkipWithError("callback did not run once per request");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_UnorderedMapDeadlineStartComplete(benchmark::State& state) {
  using Deadlines = std::multimap<Instant, std::uint64_t>;
  struct Request {
    Callback on_done;
    Deadlines::iterator deadline;
  };
  Deadlines deadlines_by_time;
  std::unordered_map<std::uint64_t, Request> pending;
  pending.reserve(kCapacity);
  std::uint64_t next_id = 1;
  for (Instant d : random_deadlines(kBackground, 1, 0)) {
    std::uint64_t id = next_id++;
    pending.emplace(id, Request{[](Result<int>) {}, deadlines_by_time.emplace(d, id)});
  }
  auto deadlines = random_deadlines(kPool, 2, 0);
  Sink sink;
  Sink* s = &sink;
  std::size_t i = 0;
  for (auto _ : state) {
    std::uint64_t id = next_id++;
    auto dl = deadlines_by_time.emplace(deadlines[i++ & kPoolMask], id);
    pending.emplace(id, Request{[s](Result<int> r) { s->take(r); }, dl});
    benchmark::DoNotOptimize(id);
    auto it = pending.find(id);
    Callback cb = std::move(it->second.on_done);
    deadlines_by_time.erase(it->second.deadline);
    pending.erase(it);
    cb(Result<int>(42));
  }
  benchmark::DoNotOptimize(sink.sum);
  if (sink.sum != 42 * static_cast<std::int64_t>(state.iterations())) {
    state.SkipWithError("callback did not run once per request");
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void BM_UnorderedMapStartTimeout(benchmark::State& state) {
  std::multimap<Instant, std::uint64_t> deadlines_by_time;
  std::unordered_map<std::uint64_t, Callback> pending;
  pending.reserve(kCapacity);
  std::uint64_t next_id = 1;
  for (Instant d : random_deadlines(kBackground, 1, kFarUs)) {
    std::uint64_t id = next_id++;
    pending.emplace(id, [](Result<int>) {});
    deadlines_by_time.emplace(d, id);
  }
  Sink sink;
  Sink* s = &sink;
  std::uint64_t timed_out = 0;
  Instant now(0);
  for (auto _ : state) {
    now += tern::ms(1);
    std::uint64_t id = next_id++;
    pending.emplace(id, [s](Result<int> r) { s->take(r); });
    deadlines_by_time.emplace(now, id);
    benchmark::DoNotOptimize(id);
    // advance(now)
    while (!deadlines_by_time.empty() && deadlines_by_time.begin()->first <= now) {
      std::uint64_t due = deadlines_by_time.begin()->second;
      deadlines_by_time.erase(deadlines_by_time.begin());
      auto it = pending.find(due);
      if (it == pending.end()) continue;  // completed earlier
      Callback cb = std::move(it->second);
      pending.erase(it);
      ++timed_out;
      cb(Result<int>(Errc::timeout));
    }
  }
  benchmark::DoNotOptimize(sink.sum);
  if (timed_out != iters(state)) state.SkipWithError("request did not time out once per iteration");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

void options(benchmark::internal::Benchmark* b) {
  b->Unit(benchmark::kNanosecond)->MinTime(0.2);
}

}  // namespace

BENCHMARK(BM_PendingTableStartComplete)->Apply(options);
BENCHMARK(BM_UnorderedMapStartComplete)->Apply(options);
BENCHMARK(BM_UnorderedMapDeadlineStartComplete)->Apply(options);
BENCHMARK(BM_PendingTableStartTimeout)->Apply(options);
BENCHMARK(BM_UnorderedMapStartTimeout)->Apply(options);

BENCHMARK_MAIN();
