// Reactor loop benchmarks on the real Linux backend (libevent + eventfd), each next to a
// bare libevent peer. docs/BENCHMARKS.md records the figures; scripts/bench runs this.
//
// post() throughput, per iteration (the summary's ns/call = CPU time / batch):
//   BM_ReactorPost/batch:B     post() B callbacks, then run_once() until all have run.
//                              One turn runs them all: one epoll_wait(timeout 0) per batch.
//   BM_LibeventActive/batch:B  peer without allocation: event_active() on B events made
//                              beforehand, then event_base_loop(EVLOOP_NONBLOCK).
//   BM_LibeventOnce/batch:B    peer closest to post(any callback): event_base_once() with
//                              a zero timeout (malloc + activate; freed after it runs),
//                              then event_base_loop(EVLOOP_NONBLOCK).
// Both peers use the event_base flags tern's backend sets (EVENT_BASE_FLAG_NOLOCK |
// EVENT_BASE_FLAG_PRECISE_TIMER), so every turn costs the same two syscalls on each side:
// epoll_wait(timeout 0) and the timerfd_settime() that libevent's precise-timer mode
// makes before every dispatch. (Without PRECISE_TIMER libevent saves that second one.)
//
// Timer-to-callback lateness, BM_TimerLateness/<loop>: 1000 samples (--lateness_samples=N);
// sample i arms one timer (1 + i % 5) ms + a random 0..999 us ahead (the same sequence for
// every loop; the sub-millisecond part spreads deadlines evenly over the tick), runs the
// loop until it fires, and records CLOCK_MONOTONIC at the callback minus the deadline.
// Counters: p50_us, p99_us, max_us, min_us, mean_us. The loops:
//   tern_tick_1ms     Reactor with the default 1 ms tick: a timer fires at the first tick
//                     boundary at or after its deadline, so lateness includes 0..1 ms of
//                     rounding (0.5 ms on average with these deadlines). The tick_* counters
//                     measure from that boundary instead: the loop's own latency.
//   tern_tick_10us, tern_tick_1us   the same with ReactorConfig::tick = 10 us / 1 us.
//   libevent          evtimer on an event_base with libevent's default timing (only
//                     EVENT_BASE_FLAG_NOLOCK set): it reads CLOCK_MONOTONIC_COARSE, which
//                     moves in jiffies (4 ms at HZ=250 here), and sleeps in epoll_wait's
//                     millisecond timeout, so a timer fires once the coarse clock has
//                     passed its deadline.
//   libevent_precise  evtimer on an event_base with EVENT_BASE_FLAG_PRECISE_TIMER
//                     (CLOCK_MONOTONIC and a timerfd), the flag tern's backend sets.
// The timer is armed outside any callback (so libevent reads a fresh clock, not its
// cached loop time), and each loop is driven with one-turn calls (run_once(),
// event_base_loop(EVLOOP_ONCE)) until the callback has run.
//
// After the Google Benchmark output, a summary prints CPU ns per post (the median of the
// repetitions) and the lateness percentiles (over the samples of all repetitions) side by
// side, with ratios against the libevent peers. Do not run it under strace or another
// ptrace tool: the stops inflate every figure.
#include <benchmark/benchmark.h>
#include <event2/event.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tern/core/rng.hpp"
#include "tern/core/time.hpp"
#include "tern/reactor/reactor.hpp"

namespace {

int g_samples = 1000;

std::int64_t mono_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// ---- post() throughput ------------------------------------------------------------

constexpr int kMaxBatch = 1024;

// CPU ns per call of each post benchmark's reported runs (one per repetition), by
// "BM_ReactorPost/batch:1024"; the summary prints the median. CPU time (user + system,
// so each turn's epoll_wait counts) because the machine the figures come from is shared.
std::map<std::string, std::vector<double>> g_ns_per_call;

void record_rate(benchmark::State& state) {
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_ReactorPost(benchmark::State& state) {
  const auto batch = static_cast<std::uint64_t>(state.range(0));
  tern::ReactorConfig config;
  config.max_posted = kMaxBatch;
  tern::Reactor reactor(config);
  std::uint64_t ran = 0;
  std::uint64_t target = 0;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < batch; ++i) {
      if (reactor.post([&ran] { ++ran; }) != tern::Errc::ok) {
        state.SkipWithError("post() refused");
        return;
      }
    }
    target += batch;
    while (ran < target) reactor.run_once();
  }
  benchmark::DoNotOptimize(ran);
  record_rate(state);
}

void count_cb(evutil_socket_t, short, void* arg) { ++*static_cast<std::uint64_t*>(arg); }

void BM_LibeventActive(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  std::uint64_t ran = 0;
  std::vector<event*> events(batch);
  for (auto& ev : events) ev = event_new(base, -1, 0, &count_cb, &ran);
  std::uint64_t target = 0;
  for (auto _ : state) {
    for (event* ev : events) event_active(ev, EV_TIMEOUT, 1);
    target += batch;
    while (ran < target) event_base_loop(base, EVLOOP_NONBLOCK);
  }
  benchmark::DoNotOptimize(ran);
  for (event* ev : events) event_free(ev);
  event_base_free(base);
  record_rate(state);
}

void BM_LibeventOnce(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  event_base* base = event_base_new_with_config(cfg);
  event_config_free(cfg);
  std::uint64_t ran = 0;
  std::uint64_t target = 0;
  const timeval zero{0, 0};
  for (auto _ : state) {
    for (std::size_t i = 0; i < batch; ++i) {
      if (event_base_once(base, -1, EV_TIMEOUT, &count_cb, &ran, &zero) != 0) {
        state.SkipWithError("event_base_once() failed");
        return;
      }
    }
    target += batch;
    while (ran < target) event_base_loop(base, EVLOOP_NONBLOCK);
  }
  benchmark::DoNotOptimize(ran);
  event_base_free(base);
  record_rate(state);
}

// ---- timer-to-callback lateness ---------------------------------------------------

struct Lateness {
  double p50 = 0, p99 = 0, max = 0, min = 0, mean = 0;
};

Lateness summarize(std::vector<std::int64_t> ns) {
  Lateness l;
  if (ns.empty()) return l;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    auto i = static_cast<std::size_t>(q * static_cast<double>(ns.size() - 1) + 0.5);
    return static_cast<double>(ns[i]) / 1e3;
  };
  l.p50 = at(0.50);
  l.p99 = at(0.99);
  l.max = static_cast<double>(ns.back()) / 1e3;
  l.min = static_cast<double>(ns.front()) / 1e3;
  double sum = 0;
  for (auto v : ns) sum += static_cast<double>(v);
  l.mean = sum / static_cast<double>(ns.size()) / 1e3;
  return l;
}

void set_counters(benchmark::State& state, const Lateness& l, const char* prefix) {
  std::string p(prefix);
  state.counters[p + "p50_us"] = l.p50;
  state.counters[p + "p99_us"] = l.p99;
  state.counters[p + "max_us"] = l.max;
  if (p.empty()) {
    state.counters["min_us"] = l.min;
    state.counters["mean_us"] = l.mean;
  }
}

// The delays, in microseconds: (1 + i % 5) ms plus a random 0..999 us.
std::vector<std::int64_t> sample_delays() {
  tern::Rng rng(7);
  std::vector<std::int64_t> d(static_cast<std::size_t>(g_samples));
  for (std::size_t i = 0; i < d.size(); ++i) {
    d[i] = static_cast<std::int64_t>(1000 * (1 + i % 5)) + rng.between(0, 999);
  }
  return d;
}

// Every sample of every repetition, by loop name, pooled for the summary.
struct LatenessSamples {
  std::vector<std::int64_t> vs_deadline;  // ns
  std::vector<std::int64_t> vs_tick;      // tern only
};
std::map<std::string, LatenessSamples> g_lateness;

void BM_TernTimerLateness(benchmark::State& state, std::int64_t tick_us, const char* name) {
  tern::ReactorConfig config;
  config.tick = tern::us(tick_us);
  const auto delays = sample_delays();
  std::vector<std::int64_t> late, late_tick;
  for (auto _ : state) {
    tern::Reactor reactor(config);
    late.clear();
    late_tick.clear();
    for (std::int64_t d : delays) {
      std::int64_t fired_ns = 0;
      const tern::Instant deadline = reactor.now() + tern::us(d);
      auto h = reactor.at(deadline, [&fired_ns] { fired_ns = mono_ns(); });
      if (!h) {
        state.SkipWithError("at() refused");
        return;
      }
      while (fired_ns == 0) reactor.run_once();
      const std::int64_t boundary_us = (deadline.us + tick_us - 1) / tick_us * tick_us;
      late.push_back(fired_ns - deadline.us * 1000);
      late_tick.push_back(fired_ns - boundary_us * 1000);
    }
  }
  set_counters(state, summarize(late), "");
  set_counters(state, summarize(late_tick), "tick_");
  auto& pooled = g_lateness[name];
  pooled.vs_deadline.insert(pooled.vs_deadline.end(), late.begin(), late.end());
  pooled.vs_tick.insert(pooled.vs_tick.end(), late_tick.begin(), late_tick.end());
}

void BM_LibeventTimerLateness(benchmark::State& state, bool precise, const char* name) {
  const auto delays = sample_delays();
  std::vector<std::int64_t> late;
  for (auto _ : state) {
    event_config* cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    if (precise) event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    event_base* base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    std::int64_t fired_ns = 0;
    event* ev = evtimer_new(
        base,
        [](evutil_socket_t, short, void* arg) { *static_cast<std::int64_t*>(arg) = mono_ns(); },
        &fired_ns);
    late.clear();
    for (std::int64_t d : delays) {
      fired_ns = 0;
      const timeval tv{static_cast<time_t>(d / 1'000'000), static_cast<suseconds_t>(d % 1'000'000)};
      const std::int64_t deadline_ns = mono_ns() + d * 1000;
      evtimer_add(ev, &tv);
      while (fired_ns == 0) event_base_loop(base, EVLOOP_ONCE);
      late.push_back(fired_ns - deadline_ns);
    }
    event_free(ev);
    event_base_free(base);
  }
  set_counters(state, summarize(late), "");
  auto& pooled = g_lateness[name];
  pooled.vs_deadline.insert(pooled.vs_deadline.end(), late.begin(), late.end());
}

void register_benchmarks() {
  for (auto* b : {benchmark::RegisterBenchmark("BM_ReactorPost", BM_ReactorPost),
                  benchmark::RegisterBenchmark("BM_LibeventActive", BM_LibeventActive),
                  benchmark::RegisterBenchmark("BM_LibeventOnce", BM_LibeventOnce)}) {
    b->ArgName("batch")->Arg(1)->Arg(16)->Arg(256)->Arg(kMaxBatch);
  }
  struct TernLoop {
    const char* name;
    std::int64_t tick_us;
  };
  static const TernLoop tern_loops[] = {
      {"tern_tick_1ms", 1000}, {"tern_tick_10us", 10}, {"tern_tick_1us", 1}};
  for (const TernLoop& l : tern_loops) {
    benchmark::RegisterBenchmark((std::string("BM_TimerLateness/") + l.name).c_str(),
                                 BM_TernTimerLateness, l.tick_us, l.name)
        ->Iterations(1)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("BM_TimerLateness/libevent", BM_LibeventTimerLateness, false,
                               "libevent")
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("BM_TimerLateness/libevent_precise", BM_LibeventTimerLateness, true,
                               "libevent_precise")
      ->Iterations(1)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
}

// Google Benchmark's own display reporter (as its flags configure it), plus a copy of
// each post benchmark's CPU ns per call for the summary.
class CapturingReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context& context) override { return display_->ReportContext(context); }
  void ReportRuns(const std::vector<Run>& runs) override {
    display_->ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      const std::string& args = run.run_name.args;
      if (args.rfind("batch:", 0) != 0 || run.time_unit != benchmark::kNanosecond) continue;
      const double batch = std::strtod(args.c_str() + 6, nullptr);
      if (batch > 0) {
        g_ns_per_call[run.run_name.function_name + "/" + args].push_back(run.GetAdjustedCPUTime() /
                                                                         batch);
      }
    }
  }
  void Finalize() override { display_->Finalize(); }

 private:
  benchmark::BenchmarkReporter* display_ = benchmark::CreateDefaultDisplayReporter();  // not ours
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void print_summary() {
  if (!g_ns_per_call.empty()) {
    std::printf(
        "\npost() throughput: CPU ns per call (post + run; median of repetitions), and the peers / "
        "tern\n");
    std::printf("  %6s %12s %14s %6s %14s %6s\n", "batch", "ReactorPost", "LibeventActive", "x",
                "LibeventOnce", "x");
    for (int b : {1, 16, 256, kMaxBatch}) {
      auto get = [&](const char* n) {
        auto it = g_ns_per_call.find(std::string(n) + "/batch:" + std::to_string(b));
        return it == g_ns_per_call.end() || it->second.empty() ? -1.0 : median(it->second);
      };
      double t = get("BM_ReactorPost"), a = get("BM_LibeventActive"), o = get("BM_LibeventOnce");
      if (t < 0) continue;
      std::printf("  %6d %12.1f", b, t);
      for (double peer : {a, o}) {
        if (peer < 0) {
          std::printf(" %14s %6s", "n/a", "");
        } else {
          std::printf(" %14.1f %5.2fx", peer, peer / t);
        }
      }
      std::printf("   (tern: %.1f M calls/s)\n", 1e3 / t);
    }
  }
  if (!g_lateness.empty()) {
    std::printf(
        "\ntimer-to-callback lateness, us (%zu samples a loop: %d a repetition, pooled;"
        " delays 1..5 ms + 0..999 us)\n",
        g_lateness.begin()->second.vs_deadline.size(), g_samples);
    std::printf("  %-17s %8s %8s %8s %8s %8s | %-24s\n", "loop", "p50", "p99", "max", "min", "mean",
                "from tick: p50/p99/max");
    for (const char* n :
         {"tern_tick_1ms", "tern_tick_10us", "tern_tick_1us", "libevent", "libevent_precise"}) {
      auto it = g_lateness.find(n);
      if (it == g_lateness.end()) continue;
      const Lateness l = summarize(it->second.vs_deadline);
      std::printf("  %-17s %8.1f %8.1f %8.1f %8.1f %8.1f |", n, l.p50, l.p99, l.max, l.min, l.mean);
      if (!it->second.vs_tick.empty()) {
        const Lateness t = summarize(it->second.vs_tick);
        std::printf(" %.1f / %.1f / %.1f", t.p50, t.p99, t.max);
      }
      std::printf("\n");
    }
    auto ratio = [&](const char* a, const char* b) {
      auto ia = g_lateness.find(a), ib = g_lateness.find(b);
      if (ia == g_lateness.end() || ib == g_lateness.end()) return;
      const Lateness x = summarize(ia->second.vs_deadline), y = summarize(ib->second.vs_deadline);
      std::printf("  %s / %s: p50 %.2fx, p99 %.2fx\n", a, b, y.p50 != 0 ? x.p50 / y.p50 : 0,
                  y.p99 != 0 ? x.p99 / y.p99 : 0);
    };
    ratio("tern_tick_1us", "libevent_precise");
    ratio("tern_tick_10us", "libevent_precise");
    ratio("tern_tick_1ms", "libevent");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first, then Google Benchmark's.
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--lateness_samples=", 19) == 0) {
      g_samples = std::atoi(argv[i] + 19);
      if (g_samples < 1) g_samples = 1;
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  CapturingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  print_summary();
  return 0;
}
