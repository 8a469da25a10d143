// Agent runtime benchmarks: mailbox send + dispatch, publish fan-out, request/reply.
// docs/BENCHMARKS.md ("Agents: mailbox, publish, request/reply") records the figures;
// scripts/bench_agents runs this next to bench/python/seed_agents.py (the seed
// documents' asyncio way) and prints the ratios.
//
// Every benchmark owns one Reactor and one Runtime. The reactor runs on a ManualClock
// (ReactorConfig::manual_clock; clock:1 variants excepted), so now() is a load, not a
// clock_gettime(), and no wait ever blocks: what is timed is the runtime and the
// reactor, not the clock. Two ways to
// drive the dispatch (the `driver` argument):
//   driver:0 (turn)  reactor.run_once(Duration::zero()) until the work is done: a full
//                    reactor turn, which on the Linux port includes one non-blocking
//                    event_base_loop() (an epoll_wait syscall) per turn, clock or not.
//   driver:1 (wheel) reactor.wheel().advance(clock.now()): the part of a turn that fires
//                    the runtime's dispatch timer, without the port's syscall. This is
//                    the runtime's own cost.
// BM_EmptyTurn measures that per-turn floor by itself (clock:0 manual, clock:1 the
// real CLOCK_MONOTONIC backend), and BM_RequestReply/clock:1 repeats one workload on the
// real clock.
//
// Each iteration is one batch; the `*_ns` counters divide its CPU time by the batch's
// operations (console: "12.3n" = 12.3 ns). scripts/bench_agents compares them with
// Python's CPU time per op (time.thread_time), since the machine may be shared.
//
//   BM_MailboxExternal/K:256/budget:B/driver:D   runtime.send() K events to one agent,
//       then dispatch until its on_message has run K times. ns per message (msg_ns).
//   BM_MailboxAgentToAgent/K:256/budget:B/driver:D   one runtime.send() of a kick to a
//       producer agent whose on_message sends K events with Context::send() to a sink
//       agent; dispatch until the sink has them all. msg_ns counts K + 1 messages.
//       budget is RuntimeConfig::dispatch_budget (messages per agent per turn; default 8).
//   BM_Publish/subs:S/payload:P/driver:D   64 runtime.publish() calls to one topic with S
//       subscriber agents, then dispatch until every subscriber has all 64. publish_ns
//       is per publish() (its share of the dispatch included), delivery_ns per handler
//       call. payload:0 none; 1 one 64-byte Payload shared by every publish (refcount
//       only); 2 a fresh 64-byte PayloadPool::copy_of() per publish. Subscribers read
//       the payload's first byte. dispatch_budget = 64 (one turn per batch).
//   BM_RequestReply/inflight:F/driver:D/clock:C   a kick to a requester agent whose
//       on_message makes F Context::request() calls (10 s deadline: armed on the wheel,
//       cancelled by the reply) to a responder agent that answers reply.ok() at once;
//       dispatch until all F reply callbacks have run. rt_ns per round trip (the kick
//       included). F=1 is latency (two dispatch passes per round trip, the reply is
//       completed on the pass after the handler's), F=64 throughput.
//   BM_RequestReplyExternal/inflight:F/driver:D   the same with runtime.request() from
//       outside any agent: no kick message.
//
// Every benchmark fails (SkipWithError) if a send, publish or request was refused, a
// message dropped, a reply late, a request timed out or failed, or a count is off.
//
// Profiling: TERN_BENCH_ITERATIONS=N fixes every benchmark at N batches, so that two
// callgrind runs (say N = 50 and 550) differ by exactly 500 batches and no set-up:
//   TERN_BENCH_ITERATIONS=550 valgrind --tool=callgrind <build>/bench/agents_bench
//       --benchmark_filter='BM_MailboxExternal/K:256/budget:256/driver:1'
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "tern/agents/agent.hpp"
#include "tern/agents/message.hpp"
#include "tern/agents/payload.hpp"
#include "tern/agents/runtime.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/time.hpp"
#include "tern/reactor/reactor.hpp"

namespace {

using tern::AgentId;
using tern::Context;
using tern::Duration;
using tern::Errc;
using tern::Message;
using tern::Result;

constexpr int kMaxPasses = 1'000'000;  // a batch that needs more has hung

enum Driver : int { kTurn = 0, kWheel = 1 };

// A reactor on a ManualClock (or the real clock) and how to run it.
struct Loop {
  explicit Loop(bool real_clock = false)
      : reactor(real_clock ? tern::ReactorConfig{} : tern::ReactorConfig{.manual_clock = &clock}) {}

  // Runs dispatch passes until done() or the guard trips; false if it tripped.
  template <typename Done>
  bool drive(Driver d, Done&& done) {
    for (int i = 0; i < kMaxPasses; ++i) {
      if (done()) return true;
      if (d == kTurn) {
        (void)reactor.run_once(Duration::zero());
      } else {
        (void)reactor.wheel().advance(reactor.now());
      }
    }
    return done();
  }

  tern::ManualClock clock;
  tern::Reactor reactor;
};

void set_per_op(benchmark::State& state, const char* name, double ops_per_iteration) {
  state.counters[name] = benchmark::Counter(
      ops_per_iteration, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

// Fails the benchmark if the runtime dropped, refused or was late with anything.
bool runtime_clean(benchmark::State& state, const tern::Runtime& rt, const tern::Reactor& r) {
  const tern::RuntimeStats& s = rt.stats();
  const tern::PendingStats& p = rt.pending_stats();
  std::string why;
  if (s.dropped) why += " dropped=" + std::to_string(s.dropped);
  if (s.replies_late) why += " replies_late=" + std::to_string(s.replies_late);
  if (s.flushed) why += " flushed=" + std::to_string(s.flushed);
  if (s.restarts) why += " restarts=" + std::to_string(s.restarts);
  if (p.late) why += " pending.late=" + std::to_string(p.late);
  if (p.timed_out) why += " pending.timed_out=" + std::to_string(p.timed_out);
  if (p.failed) why += " pending.failed=" + std::to_string(p.failed);
  if (p.cancelled) why += " pending.cancelled=" + std::to_string(p.cancelled);
  if (p.rejected) why += " pending.rejected=" + std::to_string(p.rejected);
  if (r.stats().rejected) why += " reactor.rejected=" + std::to_string(r.stats().rejected);
  if (why.empty()) return true;
  state.SkipWithError(("runtime lost work:" + why).c_str());
  return false;
}

// ---- agents ------------------------------------------------------------------------

struct Sink : tern::Agent {
  void on_message(Context&, Message& m) override {
    ++received;
    sum += m.value;
    if (!m.payload.empty()) sum += m.payload.data()[0];
  }
  std::uint64_t received = 0;
  std::int64_t sum = 0;
};

struct Producer : tern::Agent {
  void on_message(Context& ctx, Message&) override {
    for (int i = 0; i < count; ++i) {
      Message m;
      m.type = 1;
      m.value = i;
      if (ctx.send(to, std::move(m)) != Errc::ok) ++refused;
    }
  }
  AgentId to = tern::kNoAgent;
  int count = 0;
  std::uint64_t refused = 0;
};

struct Responder : tern::Agent {
  void on_request(Context&, Message& m, tern::Reply reply) override {
    Message out;
    out.value = m.value + 1;
    if (reply.ok(std::move(out)) != Errc::ok) ++refused;
  }
  std::uint64_t refused = 0;
};

struct Requester : tern::Agent {
  void on_message(Context& ctx, Message&) override {
    for (int i = 0; i < count; ++i) {
      Message m;
      m.value = i;
      Result<tern::RequestId> id =
          ctx.request(to, std::move(m), tern::RequestOptions{.timeout = tern::seconds(10)},
                      [this](Result<Message> r) {
                        if (r.ok()) {
                          ++answered;
                          sum += r->value;
                        } else {
                          ++errors;
                        }
                      });
      if (!id) ++refused;
    }
  }
  AgentId to = tern::kNoAgent;
  int count = 0;
  std::uint64_t answered = 0;
  std::uint64_t errors = 0;
  std::uint64_t refused = 0;
  std::int64_t sum = 0;
};

// For profiling: TERN_BENCH_ITERATIONS=N runs every benchmark for exactly N batches, so
// that two callgrind runs (N1, N2) give the cost of N2 - N1 batches without the set-up.
void fixed_iterations(benchmark::internal::Benchmark* b) {
  if (const char* n = std::getenv("TERN_BENCH_ITERATIONS")) b->Iterations(std::atoll(n));
}

// ---- BM_EmptyTurn ------------------------------------------------------------------

void BM_EmptyTurn(benchmark::State& state) {
  Loop loop(state.range(0) == 1);
  for (auto _ : state) benchmark::DoNotOptimize(loop.reactor.run_once(Duration::zero()));
  set_per_op(state, "turn_ns", 1);
}
BENCHMARK(BM_EmptyTurn)->Apply(fixed_iterations)->ArgName("clock")->Arg(0)->Arg(1);

// ---- mailbox -----------------------------------------------------------------------

tern::RuntimeConfig mailbox_config(std::size_t k, std::size_t budget) {
  tern::RuntimeConfig c;
  c.max_agents = 4;
  c.max_messages = 2 * k + 16;
  c.dispatch_budget = budget;
  return c;
}

void BM_MailboxExternal(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const auto driver = static_cast<Driver>(state.range(2));
  Loop loop;
  Sink sink;  // agents outlive the runtime
  tern::Runtime rt(loop.reactor, mailbox_config(k, state.range(1)));
  Result<AgentId> to = rt.spawn(sink, {.name = "sink", .mailbox = static_cast<std::uint16_t>(k)});
  if (!to) return state.SkipWithError("spawn failed");
  std::uint64_t refused = 0;
  std::uint64_t expected = 0;
  for (auto _ : state) {
    for (int i = 0; i < k; ++i) {
      Message m;
      m.type = 1;
      m.value = i;
      if (rt.send(*to, std::move(m)) != Errc::ok) ++refused;
    }
    expected += static_cast<std::uint64_t>(k);
    if (!loop.drive(driver, [&] { return sink.received >= expected; })) break;
  }
  if (refused) return state.SkipWithError("send refused (mailbox full)");
  if (sink.received != expected) return state.SkipWithError("messages missing");
  if (!runtime_clean(state, rt, loop.reactor)) return;
  set_per_op(state, "msg_ns", k);
  state.SetItemsProcessed(state.iterations() * k);
}

void BM_MailboxAgentToAgent(benchmark::State& state) {
  const int k = static_cast<int>(state.range(0));
  const auto driver = static_cast<Driver>(state.range(2));
  Loop loop;
  Producer producer;
  Sink sink;
  tern::Runtime rt(loop.reactor, mailbox_config(k, state.range(1)));
  Result<AgentId> from = rt.spawn(producer, {.name = "producer", .mailbox = 4});
  Result<AgentId> to = rt.spawn(sink, {.name = "sink", .mailbox = static_cast<std::uint16_t>(k)});
  if (!from || !to) return state.SkipWithError("spawn failed");
  producer.to = *to;
  producer.count = k;
  std::uint64_t refused = 0;
  std::uint64_t expected = 0;
  for (auto _ : state) {
    if (rt.send(*from, Message{}) != Errc::ok) ++refused;
    expected += static_cast<std::uint64_t>(k);
    if (!loop.drive(driver, [&] { return sink.received >= expected; })) break;
  }
  if (refused || producer.refused) return state.SkipWithError("send refused (mailbox full)");
  if (sink.received != expected) return state.SkipWithError("messages missing");
  if (!runtime_clean(state, rt, loop.reactor)) return;
  set_per_op(state, "msg_ns", k + 1);
  state.SetItemsProcessed(state.iterations() * (k + 1));
}

void mailbox_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"K", "budget", "driver"});
  for (int budget : {8, 256}) {
    for (int driver : {kTurn, kWheel}) b->Args({256, budget, driver});
  }
}
BENCHMARK(BM_MailboxExternal)->Apply(mailbox_args)->Apply(fixed_iterations);
BENCHMARK(BM_MailboxAgentToAgent)->Apply(mailbox_args)->Apply(fixed_iterations);

// ---- publish fan-out ---------------------------------------------------------------

constexpr int kPublishBatch = 64;
constexpr std::size_t kPayloadBytes = 64;

void BM_Publish(benchmark::State& state) {
  const int subs = static_cast<int>(state.range(0));
  const int payload_mode = static_cast<int>(state.range(1));
  const auto driver = static_cast<Driver>(state.range(2));
  Loop loop;
  tern::RuntimeConfig config;
  config.max_agents = 64;
  config.max_messages = static_cast<std::size_t>(subs) * kPublishBatch;
  config.dispatch_budget = kPublishBatch;
  config.max_topics = 4;
  config.payloads.classes[0] = {static_cast<std::uint32_t>(kPayloadBytes), 2 * kPublishBatch};
  config.payloads.classes[1] = {256, 1};
  config.payloads.classes[2] = {0, 0};
  auto sinks = std::make_unique<Sink[]>(static_cast<std::size_t>(subs));
  tern::Runtime rt(loop.reactor, config);
  Result<tern::TopicId> topic = rt.topic("bench/topic");
  if (!topic) return state.SkipWithError("topic failed");
  for (int i = 0; i < subs; ++i) {
    Result<AgentId> a = rt.spawn(sinks[i], {.name = "sub", .mailbox = kPublishBatch});
    if (!a || rt.subscribe(*a, *topic) != Errc::ok) return state.SkipWithError("spawn failed");
  }
  unsigned char bytes[kPayloadBytes];
  for (std::size_t i = 0; i < kPayloadBytes; ++i) bytes[i] = static_cast<unsigned char>(i + 1);
  std::uint64_t refused = 0;
  std::uint64_t expected = 0;  // per subscriber
  {
    tern::Payload shared;
    if (payload_mode == 1) {
      Result<tern::Payload> p = rt.payloads().copy_of(bytes, kPayloadBytes);
      if (!p) return state.SkipWithError("payload pool empty");
      shared = std::move(*p);
    }
    for (auto _ : state) {
      for (int i = 0; i < kPublishBatch; ++i) {
        Message m;
        m.type = 2;
        m.value = i;
        if (payload_mode == 1) {
          m.payload = shared;
        } else if (payload_mode == 2) {
          Result<tern::Payload> p = rt.payloads().copy_of(bytes, kPayloadBytes);
          if (!p) {
            ++refused;
            continue;
          }
          m.payload = std::move(*p);
        }
        tern::PublishResult r = rt.publish(*topic, std::move(m));
        if (r.dropped || r.delivered != subs) ++refused;
      }
      expected += kPublishBatch;
      auto all_delivered = [&] {
        for (int i = 0; i < subs; ++i) {
          if (sinks[i].received < expected) return false;
        }
        return true;
      };
      if (!loop.drive(driver, all_delivered)) break;
    }
  }
  if (refused) return state.SkipWithError("publish dropped or payload refused");
  for (int i = 0; i < subs; ++i) {
    if (sinks[i].received != expected) return state.SkipWithError("deliveries missing");
  }
  if (rt.payloads().stats().in_use != 0 || rt.payloads().stats().rejected != 0) {
    return state.SkipWithError("payload blocks leaked or refused");
  }
  if (!runtime_clean(state, rt, loop.reactor)) return;
  set_per_op(state, "publish_ns", kPublishBatch);
  set_per_op(state, "delivery_ns", static_cast<double>(kPublishBatch) * subs);
  state.counters["subs"] = subs;
  state.SetItemsProcessed(state.iterations() * kPublishBatch * subs);
}
BENCHMARK(BM_Publish)
    ->Apply(fixed_iterations)
    ->ArgNames({"subs", "payload", "driver"})
    ->ArgsProduct({{1, 8, 64}, {0, 1, 2}, {kTurn, kWheel}});

// ---- request/reply -----------------------------------------------------------------

tern::RuntimeConfig request_config() {
  tern::RuntimeConfig c;
  c.max_agents = 4;
  c.max_messages = 512;
  c.max_pending = 128;
  c.dispatch_budget = 64;
  return c;
}

void BM_RequestReply(benchmark::State& state) {
  const int inflight = static_cast<int>(state.range(0));
  const auto driver = static_cast<Driver>(state.range(1));
  Loop loop(state.range(2) == 1);
  Requester requester;
  Responder responder;
  tern::Runtime rt(loop.reactor, request_config());
  Result<AgentId> from = rt.spawn(requester, {.name = "requester", .mailbox = 4});
  Result<AgentId> to = rt.spawn(responder, {.name = "responder", .mailbox = 256});
  if (!from || !to) return state.SkipWithError("spawn failed");
  requester.to = *to;
  requester.count = inflight;
  std::uint64_t refused = 0;
  std::uint64_t expected = 0;
  for (auto _ : state) {
    if (rt.send(*from, Message{}) != Errc::ok) ++refused;
    expected += static_cast<std::uint64_t>(inflight);
    if (!loop.drive(driver, [&] { return requester.answered + requester.errors >= expected; })) break;
  }
  if (refused || requester.refused || responder.refused) {
    return state.SkipWithError("request refused");
  }
  if (requester.errors || requester.answered != expected) {
    return state.SkipWithError("a request ended without its reply");
  }
  if (rt.pending_in_use() != 0) return state.SkipWithError("requests left pending");
  if (!runtime_clean(state, rt, loop.reactor)) return;
  set_per_op(state, "rt_ns", inflight);
  state.SetItemsProcessed(state.iterations() * inflight);
}
BENCHMARK(BM_RequestReply)
    ->Apply(fixed_iterations)
    ->ArgNames({"inflight", "driver", "clock"})
    ->Args({1, kTurn, 0})
    ->Args({1, kWheel, 0})
    ->Args({64, kTurn, 0})
    ->Args({64, kWheel, 0})
    ->Args({1, kTurn, 1})
    ->Args({64, kTurn, 1});

void BM_RequestReplyExternal(benchmark::State& state) {
  const int inflight = static_cast<int>(state.range(0));
  const auto driver = static_cast<Driver>(state.range(1));
  Loop loop;
  Responder responder;
  tern::Runtime rt(loop.reactor, request_config());
  Result<AgentId> to = rt.spawn(responder, {.name = "responder", .mailbox = 256});
  if (!to) return state.SkipWithError("spawn failed");
  std::uint64_t refused = 0;
  std::uint64_t answered = 0;
  std::uint64_t errors = 0;
  std::uint64_t expected = 0;
  for (auto _ : state) {
    for (int i = 0; i < inflight; ++i) {
      Message m;
      m.value = i;
      Result<tern::RequestId> id =
          rt.request(*to, std::move(m), tern::RequestOptions{.timeout = tern::seconds(10)},
                     [&answered, &errors](Result<Message> r) { ++(r.ok() ? answered : errors); });
      if (!id) ++refused;
    }
    expected += static_cast<std::uint64_t>(inflight);
    if (!loop.drive(driver, [&] { return answered + errors >= expected; })) break;
  }
  if (refused || responder.refused) return state.SkipWithError("request refused");
  if (errors || answered != expected) return state.SkipWithError("a request ended without its reply");
  if (rt.pending_in_use() != 0) return state.SkipWithError("requests left pending");
  if (!runtime_clean(state, rt, loop.reactor)) return;
  set_per_op(state, "rt_ns", inflight);
  state.SetItemsProcessed(state.iterations() * inflight);
}
BENCHMARK(BM_RequestReplyExternal)
    ->Apply(fixed_iterations)
    ->ArgNames({"inflight", "driver"})
    ->ArgsProduct({{1, 64}, {kTurn, kWheel}});

}  // namespace

BENCHMARK_MAIN();
