// scenario_rag: the seed documents' ScenarioGenerator and HaystackPipeline, made
// impossible to get wrong. A scenario-generator agent answers "generate scenario"
// requests. With RAG on it keeps the Reply, asks a retriever agent for documents with a
// deadline (10 s by default), retries twice with full-jitter backoff under a retry
// budget, through a per-target circuit breaker (5 failures, 60 s open). On success it
// answers with a scenario built from the documents; on timeout, error or an open breaker
// it answers at once with a creative fallback, marked as such. A retriever answer that
// arrives after the generator gave up is dropped and counted. With RAG off it answers
// immediately.
//
//   scenario_rag --requests 1000 --retriever-latency-ms 5 --retriever-fail-rate 0.2
//                --timeout-ms 50 --seed 7
//
// Time is simulated by default (a ManualClock advanced 1 ms per step: deterministic for a
// seed, and fast); --real-time runs on the wall clock. Prints a table and exits non-zero
// if any request did not get exactly one answer.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tern/agents/runtime.hpp"
#include "tern/core/rng.hpp"
#include "tern/resilience/circuit_breaker.hpp"
#include "tern/resilience/retry.hpp"
#include "tern/resilience/retry_budget.hpp"

namespace {

enum MessageType : std::uint32_t { kGenerate = 1, kQuery, kDocuments, kScenario, kFallback };

struct Options {
  int requests = 1000;
  int latency_ms = 5;
  double fail_rate = 0.2;
  int timeout_ms = 10000;
  int interval_ms = 1;  // between requests from the driver
  std::uint64_t seed = 7;
  bool rag = true;
  bool real_time = false;
  std::string expect;  // comma-separated paths the run must show (see --expect)
};

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--requests" && (v = value())) {
      o->requests = std::atoi(v);
    } else if (a == "--retriever-latency-ms" && (v = value())) {
      o->latency_ms = std::atoi(v);
    } else if (a == "--retriever-fail-rate" && (v = value())) {
      o->fail_rate = std::atof(v);
    } else if (a == "--timeout-ms" && (v = value())) {
      o->timeout_ms = std::atoi(v);
    } else if (a == "--interval-ms" && (v = value())) {
      o->interval_ms = std::atoi(v);
    } else if (a == "--seed" && (v = value())) {
      o->seed = std::strtoull(v, nullptr, 10);
    } else if (a == "--rag" && (v = value())) {
      o->rag = std::strcmp(v, "off") != 0;
    } else if (a == "--real-time") {
      o->real_time = true;
    } else if (a == "--expect" && (v = value())) {
      o->expect = v;
    } else {
      return false;
    }
  }
  return o->requests > 0 && o->requests <= 100000 && o->latency_ms >= 0 && o->fail_rate >= 0 &&
         o->fail_rate <= 1 && o->timeout_ms > 0 && o->interval_ms >= 0;
}

constexpr std::size_t kSlots = 512;  // requests a generator or retriever holds at once

// The HaystackPipeline: answers after a latency, sometimes with an error. It keeps each
// Reply until then; an answer given after the requester gave up comes back late.
class Retriever : public tern::Agent {
 public:
  Retriever(const Options& o, tern::Rng& rng) : opt_(o), rng_(rng) {}
  std::uint64_t late_answers = 0;
  std::uint64_t requests = 0;

  void on_request(tern::Context& ctx, tern::Message& m, tern::Reply reply) override {
    ++requests;
    std::size_t i = 0;
    while (i < kSlots && held_[i].pending()) ++i;
    if (i == kSlots) {
      (void)reply.fail(tern::Errc::busy);
      return;
    }
    held_[i] = std::move(reply);
    fail_[i] = rng_.chance(opt_.fail_rate);
    query_[i] = m.value;
    // Latency varies by +-50% around the configured value.
    std::int64_t us = opt_.latency_ms * 1000;
    std::int64_t delay = us / 2 + static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(us) + 1));
    // Captures stay small (two words) so they fit a 32-bit target's callbacks too.
    auto t = ctx.after(tern::us(delay), [this, i](tern::Errc e) {
      if (e != tern::Errc::ok) return;  // we are stopping: the Reply answers no_reply
      tern::Errc r;
      if (fail_[i]) {
        r = held_[i].fail(tern::Errc::failed);
      } else {
        tern::Message docs;
        docs.type = kDocuments;
        docs.value = 3 + query_[i] % 5;  // documents found
        r = held_[i].ok(docs);
      }
      if (r == tern::Errc::late) ++late_answers;
    });
    if (!t) (void)held_[i].fail(t.error());
  }
  void on_stop(tern::Context&) override {
    for (tern::Reply& r : held_) r = tern::Reply();
  }

 private:
  const Options& opt_;
  tern::Rng& rng_;
  tern::Reply held_[kSlots];
  bool fail_[kSlots] = {};
  std::int64_t query_[kSlots] = {};
};

using Retrier = tern::Retrier<tern::Message, kSlots>;

// The ScenarioGenerator: one Reply kept per request until documents or a fallback.
class ScenarioGenerator : public tern::Agent {
 public:
  ScenarioGenerator(const Options& o, tern::Runtime& rt, Retrier& retrier, tern::BreakerSetBase& breakers,
                    tern::RetryBudget& budget)
      : opt_(o), rt_(rt), retrier_(retrier), breakers_(breakers), budget_(budget) {
    policy_.max_attempts = 3;  // 2 retries
    policy_.base_delay = tern::ms(std::max(1, o.latency_ms));
    policy_.max_delay = tern::ms(std::max(std::max(1, o.latency_ms), o.timeout_ms / 2));
    policy_.jitter = tern::Jitter::full;
    policy_.budget = &budget_;
  }
  tern::AgentId retriever = tern::kNoAgent;
  std::uint64_t answered_with_documents = 0;
  std::uint64_t fallbacks[32] = {};

  void on_request(tern::Context& ctx, tern::Message& m, tern::Reply reply) override {
    if (!opt_.rag) {
      (void)reply.ok(scenario(m.value, 0));
      ++answered_with_documents;
      return;
    }
    std::size_t i = 0;
    while (i < kSlots && held_[i].pending()) ++i;
    if (i == kSlots) {
      answer_fallback(reply, tern::Errc::full);
      return;
    }
    held_[i] = std::move(reply);
    query_[i] = m.value;
    tern::AgentId self = ctx.self();
    auto id = retrier_.start(
        policy_, ctx.now() + tern::ms(opt_.timeout_ms),
        [this, self, i](const Retrier::Context& a) { attempt(self, i, a); },
        [this, i](tern::Result<tern::Message> docs) {
          if (docs.ok()) {
            (void)held_[i].ok(scenario(query_[i], docs->value));
            ++answered_with_documents;
          } else {
            answer_fallback(held_[i], docs.error());
          }
        },
        this);
    if (!id) answer_fallback(held_[i], id.error());
  }

  void on_stop(tern::Context&) override { retrier_.cancel_all(this); }

 private:
  // One try: through the breaker, as this agent, with the try's own timeout. An open
  // breaker fails the try at once with circuit_open, which is not retried.
  void attempt(tern::AgentId self, std::size_t i, const Retrier::Context& a) {
    tern::Instant now = rt_.reactor().now();
    std::uint32_t period = 0;  // for record_*(): which trials this try belongs to
    tern::Errc allowed = breakers_.allow(retriever, now, &period);
    if (allowed != tern::Errc::ok) {
      (void)a.report(allowed);
      return;
    }
    tern::Message q;
    q.type = kQuery;
    q.value = query_[i];
    // The ticket lives in the slot (a capture of it would not fit a 32-bit callback);
    // the attempt number tells this try's answer from an older try's.
    tickets_[i] = a.ticket;
    std::uint16_t attempt_no = a.number;
    auto r = rt_.request_from(self, retriever, q, {.timeout = a.timeout},
                              [this, i, period, attempt_no](tern::Result<tern::Message> docs) {
                                tern::Instant at = rt_.reactor().now();
                                if (docs.ok()) {
                                  (void)breakers_.record_success(retriever, at,
                                                                 tern::Duration::zero(), period);
                                } else if (docs.error() != tern::Errc::cancelled) {
                                  (void)breakers_.record_failure(retriever, at, period);
                                } else {
                                  (void)breakers_.record_abandoned(retriever, period);
                                }
                                if (tickets_[i].attempt() == attempt_no) (void)tickets_[i].report(std::move(docs));
                              });
    if (!r) {
      (void)breakers_.record_abandoned(retriever, period);  // admitted, never sent
      (void)a.report(r.error());
    }
  }

  static tern::Message scenario(std::int64_t query, std::int64_t documents) {
    tern::Message s;
    s.type = kScenario;
    s.value = query * 100 + documents;
    return s;
  }

  void answer_fallback(tern::Reply& reply, tern::Errc why) {
    tern::Message s;
    s.type = kFallback;  // marked: a creative fallback, not grounded in documents
    s.value = static_cast<std::int64_t>(why);
    (void)reply.ok(s);
    ++fallbacks[static_cast<int>(why)];
  }

  const Options& opt_;
  tern::Runtime& rt_;
  Retrier& retrier_;
  tern::BreakerSetBase& breakers_;
  tern::RetryBudget& budget_;
  tern::RetryPolicy policy_;
  tern::Reply held_[kSlots];
  std::int64_t query_[kSlots] = {};
  Retrier::Ticket tickets_[kSlots];
};

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!parse(argc, argv, &opt)) {
    std::fprintf(stderr,
                 "usage: scenario_rag [--requests N] [--retriever-latency-ms L] [--retriever-fail-rate P]\n"
                 "                    [--timeout-ms T] [--interval-ms I] [--seed S] [--rag on|off] [--real-time]\n"
                 "                    [--expect PATHS]   PATHS: comma-separated, each must have happened:\n"
                 "                    documents, no-documents, retries, budget-refused, breaker-opened,\n"
                 "                    late-replies, no-retriever-calls\n");
    return 2;
  }
  tern::ManualClock clock;
  tern::ReactorConfig rc;
  rc.manual_clock = opt.real_time ? nullptr : &clock;
  rc.max_timers = 64;
  tern::Reactor reactor(rc);
  tern::RuntimeConfig cfg;
  cfg.max_agents = 4;
  cfg.max_messages = 2048;
  cfg.max_pending = 2 * kSlots + 64;
  cfg.max_timers = kSlots + 16;
  tern::Runtime rt(reactor, cfg);
  tern::Rng rng(opt.seed);
  Retrier retrier(reactor, rng);
  tern::BreakerSet<4> breakers(tern::BreakerConfig{});  // 5 failures, 60 s open: the seeds'
  // gRPC-style throttling: a failure costs a token, a success earns half of one, and
  // retries stop while the bucket is under half full — so at the 20% failure rate above
  // retries flow, and against a retriever that always fails they dry up at once.
  tern::RetryBudget budget(tern::RetryBudgetConfig{.max_tokens = 20, .token_ratio = 0.5});
  Retriever retriever(opt, rng);
  ScenarioGenerator generator(opt, rt, retrier, breakers, budget);
  auto rid = rt.spawn(retriever, {.name = "retriever", .mailbox = 1000});
  auto gid = rt.spawn(generator, {.name = "generator", .mailbox = 1000});
  if (!rid || !gid) {
    std::fprintf(stderr, "scenario_rag: spawn failed\n");
    return 1;
  }
  generator.retriever = *rid;

  // The driver: one request every interval, each expecting exactly one answer.
  struct Driver {
    tern::Reactor* reactor;
    std::vector<int> answers;
    std::vector<double> latency_ms;
    int with_documents = 0, by_fallback = 0, errors = 0, sent = 0, refused = 0;
  } d{&reactor, std::vector<int>(static_cast<std::size_t>(opt.requests), 0), {}};
  std::vector<int>& answers = d.answers;
  std::vector<double>& latency_ms = d.latency_ms;
  int& with_documents = d.with_documents;
  int& by_fallback = d.by_fallback;
  int& errors = d.errors;
  int& sent = d.sent;
  int& refused = d.refused;
  tern::Instant start = reactor.now();
  auto send_one = [&]() {
    int n = sent++;
    tern::Message m;
    m.type = kGenerate;
    m.value = n;
    tern::Instant t0 = reactor.now();
    auto r = rt.request(*gid, m, {.timeout = tern::ms(opt.timeout_ms) * 3},
                        [dp = &d, n, t0](tern::Result<tern::Message> s) {
                          ++dp->answers[static_cast<std::size_t>(n)];
                          dp->latency_ms.push_back(static_cast<double>((dp->reactor->now() - t0).us) / 1000.0);
                          if (!s.ok()) {
                            ++dp->errors;
                          } else if (s->type == kScenario) {
                            ++dp->with_documents;
                          } else {
                            ++dp->by_fallback;
                          }
                        });
    if (!r) {
      ++refused;
      ++answers[static_cast<std::size_t>(n)];  // refused at the call: that is its one answer
    }
  };
  auto answered = [&]() { return with_documents + by_fallback + errors + refused; };
  tern::Instant next_send = reactor.now();
  tern::Instant give_up = reactor.now() + tern::ms(opt.timeout_ms) * 4 +
                          tern::ms(static_cast<std::int64_t>(opt.requests) * (opt.interval_ms + 1)) + tern::seconds(5);
  while (answered() < opt.requests && reactor.now() < give_up) {
    while (sent < opt.requests && reactor.now() >= next_send) {
      send_one();
      next_send = next_send + tern::ms(opt.interval_ms);
      if (opt.interval_ms == 0) continue;
    }
    if (opt.real_time) {
      reactor.run_once(tern::ms(1));
    } else {
      reactor.run_until_idle();
      clock.advance(tern::ms(1));
    }
  }
  reactor.run_until_idle();
  double seconds = static_cast<double>((reactor.now() - start).us) / 1e6;
  rt.shutdown();

  int missing = 0, twice = 0;
  for (int a : answers) {
    if (a == 0) ++missing;
    if (a > 1) ++twice;
  }
  std::sort(latency_ms.begin(), latency_ms.end());
  auto pct = [&](double p) {
    return latency_ms.empty() ? 0.0 : latency_ms[static_cast<std::size_t>(p * static_cast<double>(latency_ms.size() - 1))];
  };
  const auto& rs = retrier.stats();
  std::uint64_t opens = 0;
  breakers.for_each([&](tern::BreakerKey, tern::CircuitBreaker& b) { opens += b.counters().opened; });

  std::printf("scenario_rag: %d requests, retriever latency %d ms, fail rate %.2f, timeout %d ms, seed %llu, RAG %s, %s time %.2f s\n",
              opt.requests, opt.latency_ms, opt.fail_rate, opt.timeout_ms, static_cast<unsigned long long>(opt.seed),
              opt.rag ? "on" : "off", opt.real_time ? "real" : "simulated", seconds);
  std::printf("  %-34s %8d\n", "requests", opt.requests);
  std::printf("  %-34s %8d\n", "answered with documents", with_documents);
  std::printf("  %-34s %8d\n", "answered by fallback", by_fallback);
  for (int e = 0; e < 32; ++e) {
    if (generator.fallbacks[e]) {
      std::printf("    %-32s %8llu\n", (std::string("because of ") + tern::errc_name(static_cast<tern::Errc>(e))).c_str(),
                  static_cast<unsigned long long>(generator.fallbacks[e]));
    }
  }
  std::printf("  %-34s %8d\n", "errors / refused at the call", errors + refused);
  std::printf("  %-34s %8llu\n", "retries", static_cast<unsigned long long>(rs.retries));
  std::printf("  %-34s %8llu\n", "retries refused by the budget", static_cast<unsigned long long>(rs.budget_refusals));
  std::printf("  %-34s %8llu\n", "breaker opens", static_cast<unsigned long long>(opens));
  std::printf("  %-34s %8llu\n", "late replies dropped", static_cast<unsigned long long>(rt.stats().replies_late));
  std::printf("  %-34s %8.1f ms / %.1f ms\n", "latency p50 / p99", pct(0.50), pct(0.99));
  std::printf("  %-34s %8s\n", "exactly one answer each",
              missing == 0 && twice == 0 ? "yes" : "NO");
  if (missing || twice) {
    std::printf("  missing %d, answered twice %d\n", missing, twice);
    return 1;
  }
  bool clean = rt.pending_in_use() == 0 && rt.timers_in_use() == 0 && rt.messages_in_use() == 0;
  if (!clean) {
    std::printf("  left over after shutdown: pending %zu timers %zu messages %zu\n", rt.pending_in_use(),
                rt.timers_in_use(), rt.messages_in_use());
    return 1;
  }
  // Every answer the retriever gave late is one the runtime dropped and counted.
  if (retriever.late_answers != rt.stats().replies_late) {
    std::printf("  late answers: retriever %llu, runtime %llu\n",
                static_cast<unsigned long long>(retriever.late_answers),
                static_cast<unsigned long long>(rt.stats().replies_late));
    return 1;
  }
  // The paths this run is meant to show (--expect), so a broken breaker, budget or
  // retry cannot pass as "every request answered once".
  int unmet = 0;
  std::size_t from = 0;
  while (from < opt.expect.size()) {
    std::size_t comma = opt.expect.find(',', from);
    if (comma == std::string::npos) comma = opt.expect.size();
    const std::string what = opt.expect.substr(from, comma - from);
    from = comma + 1;
    bool ok;
    if (what == "documents") {
      ok = with_documents > 0;
    } else if (what == "no-documents") {
      ok = with_documents == 0;
    } else if (what == "retries") {
      ok = rs.retries > 0;
    } else if (what == "budget-refused") {
      ok = rs.budget_refusals > 0;
    } else if (what == "breaker-opened") {
      ok = opens > 0;
    } else if (what == "late-replies") {
      ok = rt.stats().replies_late > 0;
    } else if (what == "no-retriever-calls") {
      ok = retriever.requests == 0;
    } else {
      std::printf("  unknown --expect path: %s\n", what.c_str());
      return 2;
    }
    std::printf("  expected %-25s %s\n", what.c_str(), ok ? "yes" : "NO");
    if (!ok) ++unmet;
  }
  return unmet ? 1 : 0;
}
