// cortex_m: three agents on a bare-metal Cortex-M3 (qemu's mps2-an385), with no OS and
// no heap after start-up. README.md in this folder walks through it.
//
//   TIMER0 IRQ (10 ms) --Inbox--> "sensor" --reading--> "controller" --request,
//                                                       30 ms deadline--> "actuator"
//
//   - the sensor agent is fed from a hardware timer interrupt: the ISR pushes a sample
//     into a tern::Inbox, the only thing an ISR may touch; the reactor delivers it on
//     its own turn and the inbox handler sends it to the agent;
//   - the controller turns every 5th filtered reading into a request with a deadline to
//     the actuator;
//   - the actuator answers a third of the requests at once and keeps the Reply for the
//     others, answering from a Context::after timer: after 10 ms (in time) or 60 ms
//     (late: the controller already got Errc::timeout; Reply::ok returns Errc::late and
//     the answer is dropped and counted, never delivered);
//   - every 40th sample is an implausible spike: the sensor reports it with ctx.fail()
//     and its supervisor restarts it, as its AgentOptions say (on_failure, at most 3
//     restarts a second).
// After 150 samples (1.5 s) the interrupt stops, the requests in flight settle, runtime.shutdown()
// runs, and the program prints its counters over semihosting. Exit status 0 only if
// every path above happened and shutdown left no request, timer or message behind.
//
// Run: ports/cortex-m/run-qemu build-cm3/examples/cortex_m_example
#include <malloc.h>

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>

#include "tern/agents/agent.hpp"
#include "tern/agents/runtime.hpp"
#include "tern/port/cortex_m.hpp"
#include "tern/reactor/inbox.hpp"
#include "tern/reactor/reactor.hpp"

namespace {

using tern::AgentId;
using tern::Context;
using tern::Errc;
using tern::Message;
using tern::ms;

constexpr tern::Duration kSamplePeriod = ms(10);  // TIMER0
constexpr std::uint32_t kSamples = 150;           // then the interrupt stops
constexpr tern::Duration kSettle = ms(150);       // then the loop stops
constexpr int kReadingEvery = 5;                  // samples per controller reading
constexpr int kSpikeEvery = 40;                   // samples per implausible spike
constexpr tern::Duration kDeadline = ms(30);      // controller -> actuator
constexpr tern::Duration kAnswerSoon = ms(10);    // kept Reply, answered in time
constexpr tern::Duration kAnswerLate = ms(60);    // kept Reply, answered too late
constexpr std::int64_t kSpike = 9999;

enum MsgType : std::uint32_t { kSample = 1, kReading, kCommand };

tern::Reactor* g_reactor = nullptr;
tern::Instant g_t0;

[[gnu::format(printf, 2, 3)]] void say(const char* who, const char* fmt, ...) {
  long long t = (g_reactor->now() - g_t0).millis();
  std::printf("[%5lld ms] %-10s ", t, who);
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::putchar('\n');
}

// ---- interrupt side ----

struct Sample {
  std::uint32_t seq;
  std::int32_t value;  // tenths of a degree
};

// Set before the interrupt starts; the ISR touches nothing else of tern's.
tern::Inbox<Sample, 16>* g_samples = nullptr;
volatile std::uint32_t g_seq = 0;
volatile std::uint32_t g_isr_rejected = 0;
int g_samples_closed = 0;  // sensor stopped (between its failure and its restart)

// Runs in interrupt context every 10 ms: "read the ADC" and push. Exactly kSamples
// samples: the reactor stops the timer when it sees the last one.
void on_sample_irq() {
  if (g_seq >= kSamples) return;
  const std::uint32_t seq = g_seq + 1;
  g_seq = seq;
  // A slow triangle wave around 21.0 C, and now and then a glitch.
  const auto phase = static_cast<std::int32_t>(seq % 64);
  std::int32_t value = 200 + (phase < 32 ? phase : 64 - phase);
  if (seq % kSpikeEvery == 0) value = kSpike;
  if (g_samples->push(Sample{seq, value}) != Errc::ok) g_isr_rejected = g_isr_rejected + 1;
}

// ---- the agents ----

class Sensor final : public tern::Agent {
 public:
  AgentId controller = tern::kNoAgent;
  int failures = 0;
  int readings = 0;

  void on_start(Context&) override {
    if (started_++ > 0) say("sensor", "restarted by its supervisor (restart #%d)", started_ - 1);
  }

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kSample) return;
    if (m.value == kSpike) {
      // Not ours to repair: report it; the supervisor restarts us from a clean state.
      ++failures;
      say("sensor", "sample %lld is implausible: ctx.fail(protocol)",
          static_cast<long long>(m.value));
      ctx.fail(Errc::protocol);
      return;
    }
    filtered_ = count_ == 0 ? m.value * 16 : filtered_ + m.value - filtered_ / 16;
    if (++count_ % kReadingEvery != 0) return;
    Message r;
    r.type = kReading;
    r.value = filtered_ / 16;
    if (ctx.send(controller, std::move(r)) == Errc::ok) ++readings;
  }

  void reset() override {
    count_ = 0;
    filtered_ = 0;
  }

 private:
  int started_ = 0;
  int count_ = 0;
  std::int64_t filtered_ = 0;  // x16
};

class Controller final : public tern::Agent {
 public:
  AgentId actuator = tern::kNoAgent;
  std::int64_t setpoint = 210;
  int requests = 0, answered = 0, timed_out = 0, other = 0, refused = 0;

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kReading) return;
    Message cmd;
    cmd.type = kCommand;
    cmd.value = setpoint - m.value;  // drive towards the setpoint
    auto id = ctx.request(actuator, std::move(cmd), tern::RequestOptions{.timeout = kDeadline},
                          [this](tern::Result<Message> r) { on_outcome(r); });
    if (id) {
      ++requests;
    } else {
      ++refused;
      say("controller", "request refused: %s", tern::errc_name(id.error()));
    }
  }

 private:
  void on_outcome(tern::Result<Message>& r) {
    if (r.ok()) {
      ++answered;
    } else if (r.error() == Errc::timeout) {
      ++timed_out;
      say("controller", "request timed out after %lld ms: holding the last output",
          static_cast<long long>(kDeadline.millis()));
    } else {
      ++other;
      say("controller", "request ended with %s", tern::errc_name(r.error()));
    }
  }
};

// Answers a third of the requests at once; keeps the Reply of the others and answers
// from a timer, sometimes after the requester's deadline.
class Actuator final : public tern::Agent {
 public:
  int answered_now = 0, answered_later = 0, late = 0, busy = 0;

  void on_request(Context& ctx, Message& m, tern::Reply reply) override {
    const int n = ++requests_;
    output_ = m.value;
    if (n % 3 == 0) {
      (void)reply.ok(ack());
      ++answered_now;
      return;
    }
    // Keep the Reply in a slot of our own, and a timer that carries only a pointer to
    // it (on this port an agent timer's capture is one pointer).
    Kept* slot = nullptr;
    for (int i = 0; i < kKept && !slot; ++i) {
      if (!kept_[i].reply.pending()) slot = &kept_[i];
    }
    if (!slot) {
      ++busy;
      (void)reply.fail(Errc::busy);
      return;
    }
    slot->owner = this;
    slot->reply = std::move(reply);
    slot->n = n;
    auto t = ctx.after(n % 3 == 1 ? kAnswerSoon : kAnswerLate,
                       [slot](Errc e) { slot->owner->answer_kept(*slot, e); });
    if (!t) (void)slot->reply.fail(t.error());
  }

 private:
  static constexpr int kKept = 8;

  Message ack() const {
    Message a;
    a.type = kCommand;
    a.value = output_;
    return a;
  }

  struct Kept {
    Actuator* owner = nullptr;
    tern::Reply reply;
    int n = 0;
  };

  void answer_kept(Kept& slot, Errc e) {
    if (e != Errc::ok) {  // we are stopping: the Reply answers no_reply as it goes
      slot.reply = tern::Reply();
      return;
    }
    Errc r = slot.reply.ok(ack());
    if (r == Errc::late) {
      ++late;
      say("actuator", "answer to request #%d came late: Errc::late, dropped and counted",
          slot.n);
    } else {
      ++answered_later;
    }
  }

  int requests_ = 0;
  std::int64_t output_ = 0;
  Kept kept_[kKept];
};

Sensor g_sensor;
Controller g_controller;
Actuator g_actuator;

// Sized for this program. Every table comes from one static buffer, sized at compile
// time, so tern takes nothing from the heap (the way a firmware without one runs it).
constexpr tern::ReactorConfig kReactorConfig{.max_timers = 8, .max_posted = 8, .max_watches = 1};
constexpr tern::RuntimeConfig runtime_config() {
  tern::RuntimeConfig c;
  c.max_agents = 4;
  c.max_messages = 48;
  c.max_pending = 16;
  c.max_timers = 16;
  c.max_topics = 2;
  c.max_wildcards = 1;
  c.payloads.classes[0] = {64, 4};
  c.payloads.classes[1] = {0, 0};
  c.payloads.classes[2] = {0, 0};
  return c;
}
alignas(tern::Arena::kAlign) unsigned char g_memory[tern::Reactor::arena_bytes(kReactorConfig) +
                                                    tern::Runtime::arena_bytes(runtime_config())];

// Bytes newlib's malloc has handed out and not had back (chunk headers included).
std::size_t heap_in_use() { return static_cast<std::size_t>(mallinfo().uordblks); }

int g_failed_checks = 0;
void expect(bool ok, const char* what) {
  std::printf("  [%s] %s\n", ok ? " ok " : "FAIL", what);
  if (!ok) ++g_failed_checks;
}

}  // namespace

int main() {
  const std::size_t heap_at_start = heap_in_use();
  tern::Arena arena(g_memory, sizeof g_memory);
  tern::ReactorConfig rc = kReactorConfig;
  rc.arena = &arena;
  tern::Reactor reactor(rc);
  g_reactor = &reactor;
  tern::RuntimeConfig cfg = runtime_config();
  cfg.arena = &arena;
  tern::Runtime runtime(reactor, cfg);
  const std::size_t heap_after_tern = heap_in_use();

  auto sensor = runtime.spawn(g_sensor, {.name = "sensor",
                                         .mailbox = 16,
                                         .restart = tern::Restart::on_failure,
                                         .max_restarts = 3,
                                         .restart_window = tern::seconds(1)});
  auto controller = runtime.spawn(g_controller, {.name = "controller", .mailbox = 16});
  auto actuator = runtime.spawn(g_actuator, {.name = "actuator", .mailbox = 16});
  if (!sensor || !controller || !actuator) {
    std::printf("spawn failed\n");
    return 1;
  }
  g_sensor.controller = *controller;
  g_controller.actuator = *actuator;

  // The interrupt's way in. The handler runs on the reactor's turn, so it may send.
  const AgentId sensor_id = *sensor;
  struct Wiring {
    tern::Reactor& reactor;
    tern::Runtime& runtime;
    AgentId sensor;
    tern::TimerHandle settle;
  } wiring{reactor, runtime, *sensor, {}};
  tern::Inbox<Sample, 16> samples(reactor, [w = &wiring](Sample& s) {
    Message m;
    m.type = kSample;
    m.value = s.value;
    if (w->runtime.send(w->sensor, std::move(m)) != Errc::ok) ++g_samples_closed;
    if (s.seq != kSamples) return;
    tern::cortex_m::stop_periodic_irq();
    say("main", "TIMER0 stopped after %lu samples; letting requests in flight settle",
        static_cast<unsigned long>(s.seq));
    auto settle = w->reactor.after(kSettle, [r = &w->reactor] { r->stop(); });
    if (!settle) w->reactor.stop();
  });
  g_samples = &samples;

  g_t0 = reactor.now();
  std::printf("cortex_m example: sensor IRQ every %lld ms, deadline %lld ms, answers after "
              "0/%lld/%lld ms\n",
              static_cast<long long>(kSamplePeriod.millis()),
              static_cast<long long>(kDeadline.millis()),
              static_cast<long long>(kAnswerSoon.millis()),
              static_cast<long long>(kAnswerLate.millis()));
  // After the first printf: newlib takes its stdio buffer then, once.
  const std::size_t heap_after_init = heap_in_use();

  // A bound on the run in case the interrupt never comes (then the checks fail).
  auto give_up = reactor.after(tern::seconds(20), [&] { reactor.stop(); });
  if (!give_up) return 1;
  const std::uint32_t systick0 = tern::cortex_m::systick_count();
  const std::uint32_t wfi0 = tern::cortex_m::wfi_count();
  if (tern::cortex_m::start_periodic_irq(kSamplePeriod, on_sample_irq) != Errc::ok) return 1;

  reactor.run();
  tern::cortex_m::stop_periodic_irq();  // already stopped, unless we gave up
  (void)give_up->cancel();

  const std::uint32_t systicks = tern::cortex_m::systick_count() - systick0;
  const std::uint32_t wfis = tern::cortex_m::wfi_count() - wfi0;
  const std::size_t heap_after_run = heap_in_use();
  const tern::RuntimeStats st = runtime.stats();
  const tern::AgentCounters sensor_counters = *runtime.counters(sensor_id);

  runtime.shutdown(ms(100));

  std::printf("\ncounters\n");
  std::printf("  interrupts %lu, samples pushed %lu, inbox rejected %lu (ISR saw %lu)\n",
              static_cast<unsigned long>(tern::cortex_m::periodic_irq_count()),
              static_cast<unsigned long>(g_seq), static_cast<unsigned long>(samples.rejected()),
              static_cast<unsigned long>(g_isr_rejected));
  std::printf("  sensor: %d readings sent, %d failures, %llu restarts\n", g_sensor.readings,
              g_sensor.failures, static_cast<unsigned long long>(sensor_counters.restarts));
  std::printf("  controller: %d requests: %d answered, %d timed out, %d other, %d refused\n",
              g_controller.requests, g_controller.answered, g_controller.timed_out,
              g_controller.other, g_controller.refused);
  std::printf("  actuator: %d answered at once, %d answered later in time, %d late (dropped), "
              "%d busy\n",
              g_actuator.answered_now, g_actuator.answered_later, g_actuator.late,
              g_actuator.busy);
  std::printf("  runtime: %llu delivered, %d samples refused (sensor closed while restarting), "
              "%llu late replies, %llu restarts, %llu escalations\n",
              static_cast<unsigned long long>(st.delivered), g_samples_closed,
              static_cast<unsigned long long>(st.replies_late),
              static_cast<unsigned long long>(st.restarts),
              static_cast<unsigned long long>(st.escalations));
  std::printf("  reactor: %llu turns over %lu SysTicks (%lu WFIs)\n",
              static_cast<unsigned long long>(reactor.stats().turns),
              static_cast<unsigned long>(systicks), static_cast<unsigned long>(wfis));
  std::printf("  memory: tern's tables %lu B in a static arena; heap in use %lu B before tern, "
              "%lu B after it, %lu B after the first printf, %lu B after the run\n",
              static_cast<unsigned long>(arena.used()), static_cast<unsigned long>(heap_at_start),
              static_cast<unsigned long>(heap_after_tern), static_cast<unsigned long>(heap_after_init),
              static_cast<unsigned long>(heap_after_run));
  std::printf("  after shutdown: %lu pending, %lu agent timers, %lu messages, %lu on the wheel\n",
              static_cast<unsigned long>(runtime.pending_in_use()),
              static_cast<unsigned long>(runtime.timers_in_use()),
              static_cast<unsigned long>(runtime.messages_in_use()),
              static_cast<unsigned long>(reactor.wheel().size()));

  std::printf("\nchecks\n");
  expect(g_seq == kSamples && samples.rejected() == 0,
         "every sample arrived from the interrupt, none refused");
  expect(g_controller.answered > 0 && g_actuator.answered_now > 0 && g_actuator.answered_later > 0,
         "requests answered at once and from a kept Reply in time");
  expect(g_controller.timed_out > 0, "requests timed out at their deadline");
  expect(g_actuator.late > 0, "late answers returned Errc::late");
  expect(st.replies_late == static_cast<std::uint64_t>(g_controller.timed_out),
         "every timed-out request's answer was counted late, none delivered");
  expect(g_controller.other == 0 && g_controller.refused == 0, "no other outcome");
  expect(g_sensor.failures > 0 && st.restarts == static_cast<std::uint64_t>(g_sensor.failures) &&
             st.escalations == 0,
         "every sensor failure was restarted by its supervisor, no escalation");
  expect(heap_after_tern == heap_at_start && arena.used() == sizeof g_memory,
         "tern took its tables from the static arena, nothing from the heap");
  expect(heap_after_run == heap_after_init, "no heap used after init");
  expect(wfis > 0 && reactor.stats().turns < systicks,
         "the loop slept in WFI between events (fewer turns than SysTicks)");
  expect(runtime.pending_in_use() == 0 && runtime.timers_in_use() == 0 &&
             runtime.messages_in_use() == 0 && reactor.wheel().size() == 0,
         "shutdown left no request, timer or message");
  std::printf("%s\n", g_failed_checks == 0 ? "cortex_m example: every expected path happened"
                                           : "cortex_m example: SOME PATHS DID NOT HAPPEN");
  g_samples = nullptr;
  return g_failed_checks == 0 ? 0 : 1;
}
