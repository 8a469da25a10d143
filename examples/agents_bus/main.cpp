// agents_bus: agents on one tern::Reactor (real Linux backend) under a
// tern::Runtime.
//
// Shows, in one run of a second or two:
//   - an event bus: "sensor" publishes sensor/temp and sensor/humidity from a
//   periodic
//     timer; "logger" subscribes with the wildcard "sensor/*", "alarm" to one
//     topic; the temperature text rides in a shared Payload (one block, fanned
//     out without copying);
//   - priority mailboxes: priority-3 alerts overtake priority-0 jobs queued
//   before them;
//   - selective receive: "worker" pulls a config message out of its mailbox
//   with
//     Context::take_first(pred) before anything queued ahead of it;
//   - request/reply with deadlines: "planner" asks "slow_worker", which keeps
//   its Reply
//     and answers later; one answer is in time, one request times out and its
//     late answer is dropped and counted;
//   - supervision: "flaky" fails on poison tasks and is restarted; "modem" in
//   group 1
//     fails more often than its restart intensity allows, so group 1 is stopped
//     and the escalation handler runs while the root group keeps going;
//   - a clean shutdown that leaves every table empty (checked; the exit status
//   says so).
//
// Usage: agents_bus [--seconds N]   (N >= 1, default 1.5; fractions allowed)
// Exit status: 0 when every expected path happened and nothing was left over, 1
// if not, 2 on bad arguments.
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tern/agents/agent.hpp"
#include "tern/agents/runtime.hpp"
#include "tern/reactor/reactor.hpp"

namespace {

using tern::AgentId;
using tern::Context;
using tern::Duration;
using tern::Errc;
using tern::Message;
using tern::ms;
using tern::Reply;
using tern::Result;
using tern::TopicId;

// ---- output ----

tern::Reactor* g_reactor = nullptr;
tern::Instant g_t0;

// One line of the timeline: "[ 123 ms] who         text".
[[gnu::format(printf, 2, 3)]] void say(const char* who, const char* fmt, ...) {
  long long t = g_reactor ? (g_reactor->now() - g_t0).millis() : 0;
  std::printf("[%5lld ms] %-12s ", t, who);
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::putchar('\n');
}

// The runtime's log sink: agents' ctx.log() lines and the runtime's own supervision
// events (restarts, escalations), on the same timeline.
int g_log_warnings = 0;  // warn and error lines, checked at the end
void log_line(void*, const tern::LogRecord& r) {
  if (r.level >= tern::LogLevel::warn) ++g_log_warnings;
  long long t = (r.at - g_t0).millis();
  std::printf("[%5lld ms] %-12s log %s: %.*s%s\n", t, r.agent_name, tern::log_level_name(r.level),
              static_cast<int>(r.text.size()), r.text.data(), r.truncated ? "..." : "");
}

// ---- message types (Message::type is ours to define) ----

enum MsgType : std::uint32_t {
  kTick =
      1,  // a timer, delivered to the agent itself (see DemoAgent::tick_after)
  kReading,  // sensor -> bus
  kJob,      // dispatcher -> worker, priority 0
  kAlert,    // dispatcher -> worker, priority 3
  kConfig,   // dispatcher -> worker, pulled out early with take_first
  kTask,     // dispatcher -> flaky
  kPlan,     // planner -> slow_worker (request); value = milliseconds of work
};

constexpr Duration kSensorPeriod = ms(150);
constexpr std::int64_t kAlarmOn = 260;   // 26.0 C, in tenths
constexpr std::int64_t kAlarmOff = 250;  // hysteresis

// What the run is expected to show; checked at the end.
struct Observed {
  TopicId temp = tern::kNoTopic;
  TopicId humidity = tern::kNoTopic;
  int temp_published = 0;
  int fanout_ok = 0;  // temp publishes whose payload was shared, not copied
  int fanout_bad = 0;
  int logger_temp = 0;
  int logger_humidity = 0;
  int alarm_readings = 0;
  int alarm_foreign = 0;  // readings on topics it did not subscribe to: 0
  int alarms_raised = 0;
  int sensor_timer_cancelled = 0;
  char worker_order[8][12] = {};
  int worker_seen = 0;
  bool config_taken_early = false;
  int plans_ok = 0;
  int plans_timed_out = 0;
  int answers_late = 0;  // Reply::ok() returned Errc::late
  int flaky_failures = 0;
  bool group1_escalated = false;
  Errc group1_reason = Errc::ok;
  bool root_escalated = false;
  int modem_stats_cancelled = 0;
};
Observed g_seen;

// Context::after's callback receives only an Errc: it runs outside any handler,
// with no Context. A timer that must act as the agent (publish, send, request,
// fail) therefore posts the agent a kTick message and does the work in
// on_message, where a Context is valid; re-arming there makes the timer
// periodic.
class DemoAgent : public tern::Agent {
 public:
  explicit DemoAgent(const char* name) : name_(name) {}
  const char* name() const { return name_; }

 protected:
  void bind(Context& ctx) {
    rt_ = &ctx.runtime();
    self_ = ctx.self();
  }
  // One-shot: after `delay`, on_message gets {type = kTick, value = what}. If
  // the agent stops first, on_tick_cancelled(what) runs instead (during the
  // stop).
  void tick_after(Context& ctx, Duration delay, std::int64_t what) {
    Result<tern::AgentTimerId> t = ctx.after(delay, [this, what](Errc e) {
      if (e != Errc::ok) {
        on_tick_cancelled(what, e);
        return;
      }
      Message m;
      m.type = kTick;
      m.value = what;
      Errc sent = rt_->send(self_, std::move(m));
      if (sent != Errc::ok)
        say(name_, "could not deliver its own tick: %s", tern::errc_name(sent));
    });
    if (!t) say(name_, "after() refused: %s", tern::errc_name(t.error()));
  }
  virtual void on_tick_cancelled(std::int64_t, Errc) {}

  const char* name_;
  tern::Runtime* rt_ = nullptr;
  AgentId self_ = tern::kNoAgent;
};

// ---- the event bus ----

class Sensor final : public DemoAgent {
 public:
  Sensor() : DemoAgent("sensor") {}

  void on_start(Context& ctx) override {
    bind(ctx);
    tick_after(ctx, kSensorPeriod, 0);
  }

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kTick) return;
    static constexpr std::int64_t kTemps[] = {215, 231, 248, 264, 279,
                                              271, 256, 243, 238, 236};
    static constexpr std::int64_t kHumid[] = {450, 455, 462, 470, 468,
                                              461, 455, 449, 447, 446};
    constexpr int kN = sizeof(kTemps) / sizeof(kTemps[0]);
    std::int64_t temp = kTemps[n_ % kN];
    std::int64_t humid = kHumid[n_ % kN];
    ++n_;

    // The temperature also travels as text in a Payload: one pool block, shared
    // by every subscriber's copy of the message.
    char text[32];
    int len = std::snprintf(text, sizeof text, "%lld.%lld C",
                            static_cast<long long>(temp / 10),
                            static_cast<long long>(temp % 10));
    Message t;
    t.type = kReading;
    t.value = temp;
    Result<tern::Payload> p =
        ctx.runtime().payloads().copy_of(text, static_cast<std::size_t>(len));
    if (p) t.payload = *p;  // refs 2: ours and the message's
    tern::PublishResult r = ctx.publish(g_seen.temp, std::move(t));
    ++g_seen.temp_published;
    if (p) {
      // Ours + one per mailbox that took the message: the bytes were never
      // copied.
      bool shared = p->refs() == 1u + r.delivered && r.delivered >= 2;
      shared ? ++g_seen.fanout_ok : ++g_seen.fanout_bad;
      if (n_ == 1 || !shared) {
        say(name_,
            "publish sensor/temp \"%s\": %u mailboxes took it, payload refs=%u "
            "(1 here + %u queued), bytes copied 0",
            text, r.delivered, p->refs(), r.delivered);
      }
    } else {
      say(name_, "no payload block free (%s); published the value alone",
          tern::errc_name(p.error()));
    }

    Message h;
    h.type = kReading;
    h.value = humid;
    (void)ctx.publish(g_seen.humidity, std::move(h));

    tick_after(ctx, kSensorPeriod, 0);  // periodic: re-arm from the handler
  }

  void on_tick_cancelled(std::int64_t, Errc e) override {
    ++g_seen.sensor_timer_cancelled;
    say(name_,
        "periodic timer ended with Errc::%s (agent stopping), not re-armed",
        tern::errc_name(e));
  }

  void reset() override { n_ = 0; }

 private:
  int n_ = 0;
};

class Logger final : public DemoAgent {
 public:
  Logger() : DemoAgent("logger") {}

  void on_message(Context&, Message& m) override {
    if (m.topic == g_seen.temp) {
      ++g_seen.logger_temp;
      last_temp_ = m.value;
      std::size_t n = m.payload.size() < sizeof(text_) - 1 ? m.payload.size()
                                                           : sizeof(text_) - 1;
      std::memcpy(text_, m.payload.view().data(), n);
      text_[n] = '\0';
    } else if (m.topic == g_seen.humidity) {
      ++g_seen.logger_humidity;
      say(name_,
          "sensor/temp %lld.%lld C (payload \"%s\")  sensor/humidity %lld.%lld "
          "%%",
          static_cast<long long>(last_temp_ / 10),
          static_cast<long long>(last_temp_ % 10), text_,
          static_cast<long long>(m.value / 10),
          static_cast<long long>(m.value % 10));
    }
  }

 private:
  std::int64_t last_temp_ = 0;
  char text_[32] = "";
};

class Alarm final : public DemoAgent {
 public:
  Alarm() : DemoAgent("alarm") {}

  void on_message(Context&, Message& m) override {
    if (m.topic != g_seen.temp) {
      ++g_seen.alarm_foreign;
      return;
    }
    ++g_seen.alarm_readings;
    if (!raised_ && m.value >= kAlarmOn) {
      raised_ = true;
      ++g_seen.alarms_raised;
      say(name_, "ALARM: temperature %.*s >= 26.0 C",
          static_cast<int>(m.payload.size()), m.payload.view().data());
    } else if (raised_ && m.value < kAlarmOff) {
      raised_ = false;
      say(name_, "cleared: temperature %.*s < 25.0 C",
          static_cast<int>(m.payload.size()), m.payload.view().data());
    }
  }

 private:
  bool raised_ = false;
};

// ---- priority mailbox and selective receive ----

class Worker final : public DemoAgent {
 public:
  Worker() : DemoAgent("worker") {}

  void on_message(Context& ctx, Message& m) override {
    if (!configured_ && m.type != kConfig) {
      // Before handling anything, apply a configuration if one is queued
      // anywhere in the mailbox: a predicate receive takes it out of order.
      std::size_t queued = ctx.runtime().mailbox_size(ctx.self());
      Result<Message> c =
          ctx.take_first([](const Message& q) { return q.type == kConfig; });
      if (c) {
        g_seen.config_taken_early = true;
        say(name_,
            "take_first(type == config) pulled \"%.*s\" from behind %zu queued "
            "messages",
            static_cast<int>(c->payload.size()), c->payload.view().data(),
            queued - 1);
        apply(*c);
      }
    }
    if (m.type == kConfig) {
      apply(m);
      return;
    }
    char label[12];
    std::snprintf(label, sizeof label, "%s#%lld",
                  m.type == kAlert ? "alert" : "job",
                  static_cast<long long>(m.value));
    record(label);
    say(name_, "handles %-8s (priority %u)", label, m.priority);
  }

  void reset() override { configured_ = false; }

 private:
  void apply(const Message&) {
    configured_ = true;
    record("config");
  }
  void record(const char* label) {
    if (g_seen.worker_seen < 8) {
      std::snprintf(g_seen.worker_order[g_seen.worker_seen++],
                    sizeof g_seen.worker_order[0], "%s", label);
    }
  }
  bool configured_ = false;
};

// Sends the worker a burst and feeds "flaky" a task list, both from its own
// timers.
class Dispatcher final : public DemoAgent {
 public:
  Dispatcher() : DemoAgent("dispatcher") {}
  AgentId worker = tern::kNoAgent;
  AgentId flaky = tern::kNoAgent;

  void on_start(Context& ctx) override {
    bind(ctx);
    tick_after(ctx, ms(200), kBurst);
    tick_after(ctx, ms(250), kFeed);
  }

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kTick) return;
    if (m.value == kBurst) {
      burst(ctx);
    } else if (m.value == kFeed) {
      feed(ctx);
    }
  }

 private:
  static constexpr std::int64_t kBurst = 1;
  static constexpr std::int64_t kFeed = 2;
  static constexpr int kTasks = 8;

  // All of these are queued in one handler, so the worker sees them together on
  // its next turn: priority first, FIFO within a priority.
  void burst(Context& ctx) {
    for (int i = 1; i <= 3; ++i) (void)send(ctx, kJob, i, 0);
    for (int i = 4; i <= 5; ++i) (void)send(ctx, kAlert, i, 3);
    Message c;
    c.type = kConfig;
    Result<tern::Payload> p = ctx.runtime().payloads().copy_of("mode=eco");
    if (p) c.payload = *p;
    Errc e = ctx.send(worker, std::move(c));
    say(name_,
        "queued job#1 job#2 job#3 (priority 0), alert#4 alert#5 (priority 3), "
        "then config (priority 0): %s",
        tern::errc_name(e));
  }

  void feed(Context& ctx) {
    ++task_;
    Errc e = send(ctx, kTask, task_, 0);
    if (e != Errc::ok)
      say(name_, "task #%d refused: %s", task_, tern::errc_name(e));
    if (task_ < kTasks) tick_after(ctx, ms(60), kFeed);
  }

  Errc send(Context& ctx, std::uint32_t type, std::int64_t value,
            std::uint8_t priority) {
    Message m;
    m.type = type;
    m.value = value;
    m.priority = priority;
    return ctx.send(type == kTask ? flaky : worker, std::move(m));
  }

  int task_ = 0;
};

// ---- supervision ----

class Flaky final : public DemoAgent {
 public:
  Flaky() : DemoAgent("flaky") {}

  void on_start(Context& ctx) override {
    if (ctx.counters().restarts > 0) {
      say(name_, "restarted by its supervisor (restarts=%llu)",
          static_cast<unsigned long long>(ctx.counters().restarts));
    }
  }

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kTask) return;
    if (m.value % 3 == 0) {
      ++g_seen.flaky_failures;
      say(name_, "task #%lld is poison -> ctx.fail(Errc::failed)",
          static_cast<long long>(m.value));
      ctx.fail(Errc::failed);
      return;
    }
    ++done_;
    say(name_, "task #%lld done (%d since this start)",
        static_cast<long long>(m.value), done_);
  }

  void on_stop(Context& ctx) override {
    if (ctx.stop_reason() == Errc::failed) say(name_, "stopped: failed");
  }

  void reset() override { done_ = 0; }

 private:
  int done_ = 0;
};

// Group 1: a modem whose link keeps dropping, and a statistics agent that lives
// and dies with it.
class Modem final : public DemoAgent {
 public:
  Modem() : DemoAgent("modem") {}

  void on_start(Context& ctx) override {
    bind(ctx);
    tick_after(ctx, ms(110), 0);
  }

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kTick) return;
    say(name_,
        "link down -> ctx.fail(Errc::io) (restarts so far: %llu of 2 allowed)",
        static_cast<unsigned long long>(ctx.counters().restarts));
    ctx.fail(Errc::io);
  }
};

class ModemStats final : public DemoAgent {
 public:
  ModemStats() : DemoAgent("modem_stats") {}

  void on_start(Context& ctx) override {
    bind(ctx);
    tick_after(ctx, tern::seconds(60),
               0);  // a report that never comes: the group stops first
  }

  void on_tick_cancelled(std::int64_t, Errc e) override {
    ++g_seen.modem_stats_cancelled;
    say(name_, "report timer ended with Errc::%s", tern::errc_name(e));
  }

  void on_stop(Context& ctx) override {
    say(name_, "stopped with its group (reason Errc::%s)",
        tern::errc_name(ctx.stop_reason()));
  }
};

// ---- request/reply with deadlines ----

class SlowWorker final : public DemoAgent {
 public:
  SlowWorker() : DemoAgent("slow_worker") {}

  void on_request(Context& ctx, Message& m, Reply reply) override {
    int slot = -1;
    for (int i = 0; i < kHeld && slot < 0; ++i) {
      if (!held_[i].pending()) slot = i;
    }
    if (slot < 0) {
      (void)reply.fail(Errc::busy);
      return;
    }
    held_[slot] = std::move(reply);  // answered later, from a timer
    std::int64_t work = m.value;
    say(name_, "got plan request (%lld ms of work); keeps the Reply",
        static_cast<long long>(work));
    Result<tern::AgentTimerId> t =
        ctx.after(ms(work), [this, slot, work](Errc e) {
          if (e != Errc::ok)
            return;  // stopping: the request was already cancelled
          Message answer;
          answer.type = kPlan;
          answer.value = work * 10;
          Errc r = held_[slot].ok(std::move(answer));
          if (r == Errc::late) {
            ++g_seen.answers_late;
            say(name_,
                "answer after %lld ms: Reply::ok -> Errc::late (requester gave "
                "up; dropped, counted)",
                static_cast<long long>(work));
          } else {
            say(name_, "answer after %lld ms: Reply::ok -> Errc::%s",
                static_cast<long long>(work), tern::errc_name(r));
          }
        });
    if (!t) (void)held_[slot].fail(t.error());
  }

  // A held Reply must not outlive the runtime: answer or drop it when stopping.
  void on_stop(Context&) override { reset(); }
  void reset() override {
    for (Reply& r : held_) r = Reply();
  }

 private:
  static constexpr int kHeld = 4;
  Reply held_[kHeld];
};

class Planner final : public DemoAgent {
 public:
  Planner() : DemoAgent("planner") {}
  AgentId worker = tern::kNoAgent;

  void on_start(Context& ctx) override {
    bind(ctx);
    tick_after(ctx, ms(100), 0);
  }

  void on_message(Context& ctx, Message& m) override {
    if (m.type != kTick) return;
    ask(ctx, "plan A", 40);
    ask(ctx, "plan B", 250);
  }

 private:
  static constexpr Duration kDeadline = ms(150);

  void ask(Context& ctx, const char* label, std::int64_t work) {
    Message m;
    m.type = kPlan;
    m.value = work;
    tern::Instant sent = ctx.now();
    Result<tern::RequestId> id = ctx.request(
        worker, std::move(m), {.timeout = kDeadline, .priority = 1},
        [label, sent](Result<Message> r) {
          long long waited = (g_reactor->now() - sent).millis();
          if (r) {
            ++g_seen.plans_ok;
            say("planner", "%s answered in %lld ms (value %lld)", label, waited,
                static_cast<long long>(r->value));
          } else if (r.error() == Errc::timeout) {
            ++g_seen.plans_timed_out;
            say("planner",
                "%s: Errc::timeout after %lld ms -> uses its fallback plan",
                label, waited);
          } else {
            say("planner", "%s failed: Errc::%s", label,
                tern::errc_name(r.error()));
          }
        });
    if (id) {
      say(name_, "requests %s (%lld ms of work, deadline %lld ms)", label,
          static_cast<long long>(work),
          static_cast<long long>(kDeadline.millis()));
    } else {
      say(name_, "request %s refused: %s", label, tern::errc_name(id.error()));
    }
  }
};

// ---- main ----

bool parse_args(int argc, char** argv, Duration* run_for, bool* simulated) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--simulated") == 0) {
      *simulated = true;
    } else if (std::strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
      char* end = nullptr;
      double s = std::strtod(argv[++i], &end);
      if (end == argv[i] || *end != '\0' || !(s >= 1.0 && s <= 3600.0))
        return false;
      *run_for = tern::us(static_cast<std::int64_t>(s * 1e6));
    } else {
      return false;
    }
  }
  return true;
}

int check(bool ok, const char* what) {
  std::printf("  [%s] %s\n", ok ? "ok" : "FAIL", what);
  return ok ? 0 : 1;
}

AgentId must(Result<AgentId> id, const char* what) {
  if (!id) {
    std::fprintf(stderr, "spawn %s failed: %s\n", what,
                 tern::errc_name(id.error()));
    std::exit(1);
  }
  return *id;
}

}  // namespace

int main(int argc, char** argv) {
  Duration run_for = ms(1500);
  bool simulated = false;
  if (!parse_args(argc, argv, &run_for, &simulated)) {
    std::fprintf(stderr,
                 "usage: %s [--seconds N] [--simulated]   (1 <= N <= 3600, default 1.5;\n"
                 "       --simulated: a manual clock stepped 1 ms at a time, so the run\n"
                 "       does not depend on how busy the machine is)\n",
                 argv[0]);
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  // Agents outlive the runtime (spawn's contract), the runtime outlives nothing
  // else.
  Sensor sensor;
  Logger logger;
  Alarm alarm;
  Worker worker;
  Dispatcher dispatcher;
  Flaky flaky;
  SlowWorker slow_worker;
  Planner planner;
  Modem modem;
  ModemStats modem_stats;

  tern::ManualClock clock;
  tern::ReactorConfig reactor_config;
  if (simulated) reactor_config.manual_clock = &clock;
  tern::Reactor reactor(reactor_config);
  g_reactor = &reactor;
  g_t0 = reactor.now();
  tern::RuntimeConfig rt_config;
  rt_config.log_sink = &log_line;
  rt_config.log_level = tern::LogLevel::warn;
  tern::Runtime rt(reactor, rt_config);
  if (reactor.stop_on_signals() != Errc::ok)
    std::fprintf(stderr, "(no signal handling)\n");

  // Replaces the default handler (which stops the reactor when the root group
  // escalates), so it keeps that behaviour for the root group.
  rt.set_escalation_handler(
      [&rt](tern::GroupId g, AgentId culprit, Errc reason) {
        if (g == tern::kRootGroup) {
          g_seen.root_escalated = true;
          say("supervisor", "root group escalated (culprit %s): stopping",
              rt.name(culprit));
          g_reactor->stop();
          return;
        }
        g_seen.group1_escalated = true;
        g_seen.group1_reason = reason;
        say("supervisor",
            "group %u exceeded its restart intensity (culprit %s, Errc::%s): "
            "group stopped, root group keeps running",
            g, rt.name(culprit), tern::errc_name(reason));
      });

  Result<TopicId> temp = rt.topic("sensor/temp");
  Result<TopicId> humidity = rt.topic("sensor/humidity");
  if (!temp || !humidity) return 1;
  g_seen.temp = *temp;
  g_seen.humidity = *humidity;

  AgentId sensor_id =
      must(rt.spawn(sensor, {.name = "sensor", .mailbox = 4}), "sensor");
  AgentId logger_id =
      must(rt.spawn(logger, {.name = "logger", .mailbox = 8}), "logger");
  AgentId alarm_id =
      must(rt.spawn(alarm, {.name = "alarm", .mailbox = 8}), "alarm");
  AgentId worker_id =
      must(rt.spawn(worker, {.name = "worker", .mailbox = 8}), "worker");
  AgentId flaky_id = must(rt.spawn(flaky, {.name = "flaky",
                                           .mailbox = 4,
                                           .restart = tern::Restart::on_failure,
                                           .max_restarts = 3,
                                           .restart_window = tern::seconds(5)}),
                          "flaky");
  dispatcher.worker = worker_id;
  dispatcher.flaky = flaky_id;
  AgentId dispatcher_id = must(
      rt.spawn(dispatcher, {.name = "dispatcher", .mailbox = 4}), "dispatcher");
  AgentId slow_id =
      must(rt.spawn(slow_worker, {.name = "slow_worker", .mailbox = 4}),
           "slow_worker");
  planner.worker = slow_id;
  AgentId planner_id =
      must(rt.spawn(planner, {.name = "planner", .mailbox = 4}), "planner");
  constexpr tern::GroupId kRadioGroup = 1;
  AgentId modem_id = must(rt.spawn(modem, {.name = "modem",
                                           .mailbox = 2,
                                           .restart = tern::Restart::on_failure,
                                           .max_restarts = 2,
                                           .restart_window = tern::seconds(10),
                                           .group = kRadioGroup}),
                          "modem");
  AgentId modem_stats_id =
      must(rt.spawn(modem_stats, {.name = "modem_stats",
                                  .mailbox = 2,
                                  .restart = tern::Restart::on_failure,
                                  .group = kRadioGroup}),
           "modem_stats");

  if (rt.subscribe(logger_id, "sensor/*") != Errc::ok ||
      rt.subscribe(alarm_id, "sensor/temp") != Errc::ok) {
    std::fprintf(stderr, "subscribe failed\n");
    return 1;
  }

  std::printf("agents_bus: %zu agents on one reactor for %.1f s\n",
              rt.agent_count(), static_cast<double>(run_for.micros()) / 1e6);
  Result<tern::TimerHandle> stopper =
      reactor.after(run_for, [&reactor] { reactor.stop(); });
  if (!stopper) return 1;
  if (simulated) {
    while (!reactor.stopping()) {
      clock.advance(ms(1));
      (void)reactor.run_until_idle();
    }
  } else {
    reactor.run();
  }

  // Snapshot before shutdown: who was still running.
  bool root_running = rt.state(sensor_id) == tern::AgentState::running &&
                      rt.state(logger_id) == tern::AgentState::running &&
                      rt.state(flaky_id) == tern::AgentState::running;
  bool group1_stopped = rt.state(modem_id) == tern::AgentState::stopped &&
                        rt.state(modem_stats_id) == tern::AgentState::stopped;

  constexpr Duration kGrace = ms(200);
  say("main", "runtime.shutdown(grace %lld ms)",
      static_cast<long long>(kGrace.millis()));
  rt.shutdown(kGrace);

  std::printf("\nper-agent counters\n");
  std::printf("  %-12s %4s %4s %6s %7s %8s %5s %8s %8s\n", "agent", "in", "out",
              "req_ok", "req_err", "req_tout", "late", "mbox_hw", "restarts");
  const AgentId all[] = {sensor_id, logger_id,     alarm_id, worker_id,
                         flaky_id,  dispatcher_id, slow_id,  planner_id,
                         modem_id,  modem_stats_id};
  for (AgentId a : all) {
    const tern::AgentCounters* c = rt.counters(a);
    if (!c) continue;
    std::printf("  %-12s %4llu %4llu %6llu %7llu %8llu %5llu %8zu %8llu\n",
                rt.name(a), static_cast<unsigned long long>(c->messages_in),
                static_cast<unsigned long long>(c->messages_out),
                static_cast<unsigned long long>(c->requests_ok),
                static_cast<unsigned long long>(c->requests_failed),
                static_cast<unsigned long long>(c->requests_timed_out),
                static_cast<unsigned long long>(c->late_replies),
                c->mailbox_high_water,
                static_cast<unsigned long long>(c->restarts));
  }
  const tern::RuntimeStats& s = rt.stats();
  std::printf(
      "runtime: sent %llu, published %llu, delivered %llu, dropped %llu, late "
      "replies %llu, "
      "restarts %llu, escalations %llu, flushed %llu\n",
      static_cast<unsigned long long>(s.sent),
      static_cast<unsigned long long>(s.published),
      static_cast<unsigned long long>(s.delivered),
      static_cast<unsigned long long>(s.dropped),
      static_cast<unsigned long long>(s.replies_late),
      static_cast<unsigned long long>(s.restarts),
      static_cast<unsigned long long>(s.escalations),
      static_cast<unsigned long long>(s.flushed));
  const tern::PayloadStats& ps = rt.payloads().stats();
  std::printf("payloads: allocated %llu, high water %zu, in use %zu\n",
              static_cast<unsigned long long>(ps.allocated), ps.high_water,
              ps.in_use);
  const tern::ReactorStats& rs = reactor.stats();
  std::printf(
      "reactor: %llu turns, %llu of them slept until the next deadline (no "
      "polling)\n",
      static_cast<unsigned long long>(rs.turns),
      static_cast<unsigned long long>(rs.waits));

  char order[96] = "";
  for (int i = 0; i < g_seen.worker_seen; ++i) {
    std::strncat(order, i ? " " : "", sizeof order - std::strlen(order) - 1);
    std::strncat(order, g_seen.worker_order[i],
                 sizeof order - std::strlen(order) - 1);
  }
  static const char* const kExpectedOrder =
      "config alert#4 alert#5 job#1 job#2 job#3";
  const tern::AgentCounters* flaky_c = rt.counters(flaky_id);
  const tern::AgentCounters* slow_c = rt.counters(slow_id);
  const tern::AgentCounters* modem_c = rt.counters(modem_id);
  char what[160];

  std::printf("\nchecks\n");
  int failed = 0;
  failed +=
      check(g_seen.logger_temp > 0 && g_seen.logger_humidity > 0,
            "logger (\"sensor/*\") got both sensor/temp and sensor/humidity");
  failed += check(g_seen.alarm_readings > 0 && g_seen.alarm_foreign == 0,
                  "alarm (\"sensor/temp\") got sensor/temp only");
  failed += check(g_seen.alarms_raised > 0, "alarm raised at least once");
  std::snprintf(what, sizeof what,
                "payload fan-out shared one block on %d of %d temp publishes",
                g_seen.fanout_ok, g_seen.temp_published);
  failed += check(g_seen.fanout_ok > 0 && g_seen.fanout_bad == 0, what);
  std::snprintf(
      what, sizeof what,
      "worker order \"%s\" (sent: job#1 job#2 job#3 alert#4 alert#5 config)",
      order);
  failed += check(
      std::strcmp(order, kExpectedOrder) == 0 && g_seen.config_taken_early,
      what);
  failed +=
      check(g_seen.plans_ok == 1, "one request answered within its deadline");
  failed += check(g_seen.plans_timed_out == 1,
                  "one request ended with Errc::timeout");
  std::snprintf(
      what, sizeof what,
      "late answer dropped and counted (Reply::ok -> late: %d, "
      "stats().replies_late: %llu, slow_worker late: %llu)",
      g_seen.answers_late, static_cast<unsigned long long>(s.replies_late),
      static_cast<unsigned long long>(slow_c ? slow_c->late_replies : 0));
  failed += check(g_seen.answers_late == 1 && s.replies_late == 1 && slow_c &&
                      slow_c->late_replies == 1,
                  what);
  std::snprintf(
      what, sizeof what,
      "flaky restarted after each failure (failures %d, restarts %llu)",
      g_seen.flaky_failures,
      static_cast<unsigned long long>(flaky_c ? flaky_c->restarts : 0));
  failed += check(
      flaky_c && g_seen.flaky_failures >= 1 &&
          flaky_c->restarts == static_cast<unsigned>(g_seen.flaky_failures),
      what);
  std::snprintf(what, sizeof what,
                "every restart and the escalation logged at warn or above (%d lines)",
                g_log_warnings);
  failed += check(flaky_c && modem_c &&
                      g_log_warnings ==
                          static_cast<int>(flaky_c->restarts + modem_c->restarts) + 1,
                  what);
  std::snprintf(
      what, sizeof what,
      "group 1 escalated after %llu restarts (group_stop_reason(1) = %s), "
      "its agents stopped",
      static_cast<unsigned long long>(modem_c ? modem_c->restarts : 0),
      tern::errc_name(rt.group_stop_reason(kRadioGroup)));
  failed += check(g_seen.group1_escalated && group1_stopped &&
                      g_seen.modem_stats_cancelled == 1 &&
                      rt.group_stop_reason(kRadioGroup) == Errc::io &&
                      g_seen.group1_reason == Errc::io,
                  what);
  failed += check(!g_seen.root_escalated && root_running &&
                      rt.group_stop_reason(tern::kRootGroup) == Errc::ok,
                  "root group kept running until shutdown");
  failed +=
      check(g_seen.sensor_timer_cancelled == 1,
            "sensor's periodic timer ended with Errc::cancelled at shutdown");
  std::snprintf(
      what, sizeof what,
      "nothing left over: pending %zu, timers %zu, messages %zu, payloads %zu",
      rt.pending_in_use(), rt.timers_in_use(), rt.messages_in_use(), ps.in_use);
  failed += check(rt.pending_in_use() == 0 && rt.timers_in_use() == 0 &&
                      rt.messages_in_use() == 0 && ps.in_use == 0,
                  what);
  std::printf(failed ? "agents_bus: %d check(s) FAILED\n"
                     : "agents_bus: all checks passed\n",
              failed);
  return failed ? 1 : 0;
}
