// Retries inside a deadline: RetryPolicy (how many tries, which errors, how long to wait),
// Backoff (the wait before each retry: exponential with the jitter kinds of AWS's
// "Exponential Backoff and Jitter"), and Retrier<T, N> (N retried operations in flight on a
// Reactor, each with exactly one outcome).
//
//   tern::Retrier<tern::Message, 8> retrier(reactor, rng);
//   auto id = retrier.start(tern::RetryPolicy{}, reactor.now() + tern::seconds(10),
//       [&](const tern::AttemptContext<tern::Message>& a) {         // each try
//         auto r = rt.request(retriever, query, {.timeout = a.timeout},
//             [t = a.ticket](tern::Result<tern::Message> m) { (void)t.report(std::move(m)); });
//         if (!r) (void)a.report(r.error());
//       },
//       [&](tern::Result<tern::Message> docs) { answer(docs); });   // exactly once
//
// The rules: a retry never starts at or after the overall deadline, and each try's timeout
// is cut to what is left of it; only errors the policy's retry_on accepts are retried; an
// optional RetryBudget is fed every try's outcome and asked before every retry.
// See examples/scenario_rag.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inline_storage.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/core/rng.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/slot_generation.hpp"
#include "tern/detail/survival.hpp"
#include "tern/reactor/reactor.hpp"
#include "tern/resilience/retry_budget.hpp"

namespace tern {

// The AWS article's variants. With c = min(max_delay, base_delay * multiplier^k), the
// wait before retry k (0 for the first retry) is:
//   none          c
//   full          uniform in [0, c]                        (the default)
//   equal         c - c/2 + uniform in [0, c/2]            (never less than half of c)
//   decorrelated  min(max_delay, uniform in [base_delay, 3 * previous wait]), starting
//                 from previous = base_delay; the multiplier is not used.
enum class Jitter : std::uint8_t { none, full, equal, decorrelated };

// "none", "full", "equal", "decorrelated".
const char* jitter_name(Jitter j);

// Whether an error is worth another try.
using RetryOn = bool (*)(Errc);

// The default retry_on: transient failures that a later try may not meet —
//   retried:     timeout, io, failed, no_reply, busy, closed, dns;
//   not retried: everything else, in particular invalid_argument, cancelled, shutdown,
//                circuit_open (the breaker decided; retrying it only spins), too_large,
//                protocol and tls (a malformed peer or a bad certificate stays so), full
//                (a local capacity is a back-pressure signal for the caller), not_found,
//                unsupported, late.
bool retry_on_transient(Errc e);

struct RetryPolicy {
  std::uint16_t max_attempts = 3;       // tries in all, the first included: 3 = 2 retries
  Duration base_delay = ms(100);
  Duration max_delay = seconds(5);
  double multiplier = 2.0;              // 1..1000; fixed point (1/65536) once, in Backoff
  Jitter jitter = Jitter::full;
  Duration attempt_timeout = Duration::max();  // each try's own limit (max: none), always
                                               // cut to what is left of the deadline
  RetryOn retry_on = &retry_on_transient;
  RetryBudget* budget = nullptr;        // optional; must outlive the operations using it
};

// Returns ok, or invalid_argument: max_attempts 0, base_delay < 0, max_delay < base_delay,
// multiplier outside [1, 1000] (or NaN), unknown jitter, attempt_timeout <= 0, no retry_on.
Errc validate(const RetryPolicy& policy);

// The delays between tries of one operation. A calculator with a little memory (the retry
// count, and the previous wait for decorrelated jitter); the randomness comes from the
// Rng passed in, so a seeded Rng gives the same delays on every port. All arithmetic
// after construction is integer microseconds.
class Backoff {
 public:
  Backoff() = default;
  // Out-of-range values are clamped (base < 0 to 0, max < base to base, the multiplier
  // into [1, 1000]); validate() the policy to reject them instead.
  explicit Backoff(const RetryPolicy& policy)
      : Backoff(policy.base_delay, policy.max_delay, policy.multiplier, policy.jitter) {}
  Backoff(Duration base_delay, Duration max_delay, double multiplier, Jitter jitter);

  // min(max_delay, base_delay * multiplier^k): the ceiling before retry k.
  Duration ceiling(std::uint32_t k) const;
  // The wait before the next retry, drawn from `rng` by the jitter kind; counts a retry.
  Duration next(Rng& rng);
  // Forgets the retries so far (a new operation).
  void reset();

  std::uint32_t retries() const { return retries_; }
  Jitter jitter() const { return jitter_; }

 private:
  std::int64_t base_us_ = 0;
  std::int64_t max_us_ = 0;
  std::int64_t previous_us_ = 0;    // decorrelated's memory
  std::uint32_t multiplier_q16_ = 1u << 16;
  std::uint32_t retries_ = 0;
  Jitter jitter_ = Jitter::none;
};

// Names one retried operation: the same slot-index-plus-generation id as a pending
// request (Batcher and Coalescer name theirs the same way). 0 is never issued.
using RetryId = RequestId;

struct RetryStats {
  std::size_t in_use = 0;
  std::size_t high_water = 0;
  Count started = 0;           // operations accepted by start()
  Count rejected = 0;          // start() refused with full
  Count attempts = 0;          // tries begun, first tries included
  Count retries = 0;           // tries begun after the first
  Count attempt_timeouts = 0;  // tries that did not report within their timeout
  Count budget_refusals = 0;   // retries the budget refused (operation ended)
  Count succeeded = 0;         // on_done got a value
  Count failed = 0;            // ... an error other than timeout and cancelled
  Count timed_out = 0;         // ... timeout
  Count cancelled = 0;         // ... cancelled
  Count late = 0;              // reports for a try that was no longer current
};

// Not API: how a ticket reaches its Retrier without knowing its callback sizes.
template <typename T>
struct RetryReportSink {
  Errc (*report)(void* retrier, RetryId id, std::uint16_t attempt, Result<T>& outcome);
  void* retrier;
};

// The right to report one try's outcome. A small value (24 bytes on 64-bit targets) that
// fits in a reply callback's capture. Copies are the same ticket: the first report wins.
template <typename T>
class RetryTicket {
 public:
  RetryTicket() = default;

  // Reports this try's outcome: a value, or an error that the policy may retry.
  // Returns ok; late if this try is no longer current — it already reported, its timeout
  // passed, the operation was cancelled or has ended (the outcome is dropped and counted);
  // not_found for an id the retrier never issued; closed for an empty ticket.
  // The retrier must still exist.
  Errc report(Result<T> outcome) const {
    if (sink_ == nullptr) return Errc::closed;
    return sink_->report(sink_->retrier, id_, attempt_, outcome);
  }
  RetryId id() const { return id_; }
  std::uint16_t attempt() const { return attempt_; }
  explicit operator bool() const { return sink_ != nullptr; }

 private:
  template <typename, std::size_t>
  friend class RetrierBase;
  RetryTicket(const RetryReportSink<T>* sink, RetryId id, std::uint16_t attempt)
      : sink_(sink), id_(id), attempt_(attempt) {}

  const RetryReportSink<T>* sink_ = nullptr;
  RetryId id_;
  std::uint16_t attempt_ = 0;
};

// What one try is given. Valid during the attempt call; keep the ticket to report later.
template <typename T>
struct AttemptContext {
  RetryTicket<T> ticket;
  std::uint16_t number = 0;        // 1 for the first try
  std::uint16_t max_attempts = 0;  // the policy's
  Duration timeout;                // this try's limit: attempt_timeout cut to the time left
                                   // (Duration::max() when there is neither)
  Instant deadline;                // now + timeout: when the retrier stops waiting for it
  bool last() const { return number >= max_attempts; }
  Errc report(Result<T> outcome) const { return ticket.report(std::move(outcome)); }
};

template <typename T, std::size_t N, std::size_t CallbackBytes>
struct RetrierStorage;

// The capacity-free part; Retrier<T, N> holds the slots inline.
//
// The life of one operation: start() runs the first try at once (the attempt callback
// is called from inside start()); each try reports exactly one Result<T> through its
// ticket, now or later, or is ended by its timeout (Errc::timeout). An error that
// retry_on accepts, with tries left, schedules the next try after Backoff's delay — unless
// that would begin at or after the deadline (the operation ends with Errc::timeout at
// once: waiting could not help), or the budget refuses (it ends with the last error).
// on_done then runs exactly once, never from inside start(): with the value, the last
// error, Errc::timeout, or Errc::cancelled. An outcome decided inside start() (a try
// that answered synchronously, or a cancel from inside it) is delivered from the
// reactor's timer wheel at the next tick boundary (at most one tick later); a cancel()
// before then replaces it with cancelled.
//
// Callbacks may start, report, cancel and cancel_all anything, including their own
// operation, and may destroy the retrier (on_done and attempt callbacks alike: nothing
// of it is touched after one returns; tickets must then report no more). Do not run the
// reactor from inside them.
template <typename T, std::size_t CallbackBytes = 4 * sizeof(void*)>
class RetrierBase {
 public:
  using Attempt = InplaceFunction<void(const AttemptContext<T>&), CallbackBytes>;
  using Done = InplaceFunction<void(Result<T>), CallbackBytes>;
  using Ticket = RetryTicket<T>;
  using Context = AttemptContext<T>;
  using Owner = const void*;
  struct Slot;

  RetrierBase(Reactor& reactor, Rng& rng, Slot* slots, std::size_t capacity)
      : reactor_(reactor), rng_(rng), slots_(slots), capacity_(capacity) {
    if (capacity == 0 || capacity >= 0x7FFFFFFF) panic("Retrier capacity out of range");
    sink_.report = &RetrierBase::report_thunk;
    sink_.retrier = this;
    for (std::size_t i = 0; i < capacity_; ++i) {
      slots_[i].table = this;
      slots_[i].next_free = static_cast<std::uint32_t>(i + 1);
      slots_[i].timer.set_callback(&RetrierBase::on_timer, &slots_[i]);
    }
  }
  // Cancels whatever is still in flight; those on_done callbacks run with cancelled, and
  // start() called from them returns shutdown. Destroyed from inside a callback, it
  // tells the loops running on the stack to touch nothing more.
  ~RetrierBase() {
    detail::object_destroyed(alive_);
    closing_ = true;
    (void)cancel_matching([](const Slot&) { return true; });
  }
  RetrierBase(const RetrierBase&) = delete;
  RetrierBase& operator=(const RetrierBase&) = delete;

  // Starts an operation that must end by `deadline` (Instant::never(): only max_attempts
  // and attempt_timeout bound it) and runs its first try now. The policy is copied.
  // on_done runs exactly once if this returns an id, never otherwise (from inside this
  // call only if the first try destroys the retrier: then with cancelled).
  // Errors: invalid_argument (validate(policy) failed, or an empty callback; on
  //           Cortex-M, a deadline the wheel does not reach, or with no deadline, a
  //           max_delay or attempt_timeout from now it does not reach: see
  //           TimerWheel::reaches()),
  //         timeout (deadline is not after now: nothing was tried),
  //         full (all N slots busy; counted, nothing else changes),
  //         shutdown (called while the retrier is being destroyed).
  Result<RetryId> start(const RetryPolicy& policy, Instant deadline, Attempt attempt,
                        Done on_done, Owner owner = nullptr) {
    if (closing_) return Errc::shutdown;
    if (!attempt || !on_done || validate(policy) != Errc::ok) return Errc::invalid_argument;
    const Instant now = reactor_.now();
    // Every timer of the operation is armed for the deadline or before it. Without one,
    // for up to max_delay or attempt_timeout from the time of arming.
    if (deadline != Instant::never()
            ? !wheel().reaches(deadline)
            : !wheel().reaches(now + policy.max_delay) ||
                  (policy.attempt_timeout != Duration::max() &&
                   !wheel().reaches(now + policy.attempt_timeout))) {
      return Errc::invalid_argument;
    }
    if (deadline <= now) return Errc::timeout;
    if (free_ >= capacity_) {
      ++stats_.rejected;
      return Errc::full;
    }
    Slot& s = slots_[free_];
    free_ = s.next_free;
    s.active = true;
    s.owner = owner;
    s.attempt = std::move(attempt);
    s.on_done = std::move(on_done);
    s.backoff = Backoff(policy);
    s.deadline = deadline;
    s.attempt_timeout = policy.attempt_timeout;
    s.retry_on = policy.retry_on;
    s.budget = policy.budget;
    s.max_attempts = policy.max_attempts;
    s.attempt_no = 0;
    s.phase = Phase::idle;
    ++stats_.started;
    if (++stats_.in_use > stats_.high_water) stats_.high_water = stats_.in_use;
    const RetryId id = RetryId::make(index_of(s), s.generation);
    // While starting, an ending is held and delivered later (end()), so `s` stays ours.
    s.starting = true;
    if (!run_attempt(s)) return id;  // the try destroyed the retrier
    s.starting = false;
    return id;
  }

  // Ends operation `id` with Errc::cancelled (on_done runs before this returns, unless
  // called from inside its own start()). Returns ok; late if it already ended (counted);
  // not_found if `id` was never issued here.
  Errc cancel(RetryId id) {
    Slot* s = lookup(id);
    if (s == nullptr) return miss(id);
    end(*s, Result<T>(Errc::cancelled));
    return Errc::ok;
  }
  // Cancels every operation started with `owner`; returns how many.
  std::size_t cancel_all(Owner owner) {
    return cancel_matching([owner](const Slot& s) { return s.owner == owner; });
  }
  // Cancels every operation; returns how many.
  std::size_t cancel_all() {
    return cancel_matching([](const Slot&) { return true; });
  }

  bool pending(RetryId id) const { return lookup(id) != nullptr; }
  // The number of the try in flight or last made (1 = first); not_found if ended.
  Result<std::uint16_t> attempts(RetryId id) const {
    const Slot* s = lookup(id);
    if (s == nullptr) return Errc::not_found;
    return s->attempt_no;
  }
  const RetryStats& stats() const { return stats_; }
  std::size_t in_use() const { return stats_.in_use; }
  bool full() const { return stats_.in_use == capacity_; }
  std::size_t capacity() const { return capacity_; }

  // Not API: the slot layout, public only so storage can be allocated for it. The small
  // fields sit together after the Timer (which has no padding of its own); the slot
  // index is the slot's position.
  enum class Phase : std::uint8_t { idle, attempting, waiting, delivering };
  struct Slot {
    // attempting: the try's timeout; waiting: the next try; delivering: now.
    Timer timer;
    Phase phase = Phase::idle;
    bool active = false;
    bool starting = false;
    bool holding = false;    // held_value holds a T (an outcome decided inside start())
    Errc held = Errc::ok;    // ... or this error
    std::uint16_t max_attempts = 0;
    std::uint16_t attempt_no = 0;
    std::uint32_t generation = detail::kFirstGeneration;
    std::uint32_t next_free = 0;
    Attempt attempt;
    Done on_done;
    Backoff backoff;
    Instant deadline;
    Duration attempt_timeout;
    RetryOn retry_on = nullptr;
    RetryBudget* budget = nullptr;
    Owner owner = nullptr;
    RetrierBase* table = nullptr;
    alignas(T) unsigned char held_value[sizeof(T)];
  };

 private:
  TimerWheel& wheel() { return reactor_.wheel(); }
  std::uint32_t index_of(const Slot& s) const { return static_cast<std::uint32_t>(&s - slots_); }

  Slot* lookup(RetryId id) const {
    const std::uint32_t i = id.slot();
    if (i >= capacity_) return nullptr;
    Slot& s = slots_[i];
    return (s.active && s.generation == id.generation()) ? &s : nullptr;
  }

  Errc miss(RetryId id) {
    const Errc e = detail::classify_missed_id(
        id.slot(), id.generation(), capacity_,
        [this](std::uint32_t i) { return slots_[i].generation; });
    if (e == Errc::late) ++stats_.late;
    return e;
  }

  static Errc report_thunk(void* retrier, RetryId id, std::uint16_t attempt, Result<T>& r) {
    return static_cast<RetrierBase*>(retrier)->report(id, attempt, r);
  }

  Errc report(RetryId id, std::uint16_t attempt, Result<T>& outcome) {
    Slot* s = lookup(id);
    if (s == nullptr) return miss(id);
    if (s->phase != Phase::attempting || s->attempt_no != attempt) {
      ++stats_.late;
      return Errc::late;
    }
    wheel().cancel(s->timer);
    attempt_ended(*s, std::move(outcome));
    return Errc::ok;
  }

  // Begins the next try (or ends the operation if the deadline has come). False if the
  // try destroyed the retrier: then nothing of it may be touched.
  bool run_attempt(Slot& s) {
    const Instant now = reactor_.now();
    if (now >= s.deadline) {
      end(s, Result<T>(Errc::timeout));
      return true;  // end() holds the outcome when starting, else ran on_done last
    }
    if (s.attempt_no > 0) ++stats_.retries;
    ++stats_.attempts;
    ++s.attempt_no;
    s.phase = Phase::attempting;

    Context ctx;
    ctx.ticket = Ticket(&sink_, RetryId::make(index_of(s), s.generation), s.attempt_no);
    ctx.number = s.attempt_no;
    ctx.max_attempts = s.max_attempts;
    const Duration left = s.deadline - now;
    if (s.attempt_timeout != Duration::max() && s.attempt_timeout < left) {
      ctx.deadline = now + s.attempt_timeout;
      ctx.timeout = s.attempt_timeout;
    } else {
      ctx.deadline = s.deadline;
      ctx.timeout = s.deadline == Instant::never() ? Duration::max() : left;
    }

    // The callable leaves the slot while it runs, so that ending (and even reusing) the
    // slot from inside it never destroys a running function. Re-read the slot afterwards.
    const std::uint32_t index = index_of(s);
    const std::uint32_t generation = s.generation;
    Attempt fn = std::move(s.attempt);
    {
      detail::Survival guard(alive_);
      fn(ctx);
      if (!guard.alive) return false;  // fn, a local, is destroyed on the way out
    }
    Slot& after = slots_[index];
    if (!after.active || after.generation != generation || after.phase == Phase::delivering) {
      return true;  // it ended inside the call; fn is destroyed here
    }
    after.attempt = std::move(fn);
    // Armed after the call: a try's own timer at the same deadline (a request's) fires
    // first, so its timeout arrives as a report rather than as a late one.
    if (after.phase == Phase::attempting && after.attempt_no == ctx.number &&
        ctx.deadline != Instant::never()) {
      wheel().arm(after.timer, ctx.deadline);
    }
    return true;
  }

  // One try's outcome: end, or schedule the next try.
  void attempt_ended(Slot& s, Result<T> outcome) {
    if (outcome.ok()) {
      if (s.budget) s.budget->record_success();
      end(s, std::move(outcome));
      return;
    }
    const Errc e = outcome.error();
    const bool retryable = s.retry_on(e);
    if (retryable && s.budget) s.budget->record_failure();
    if (!retryable || s.attempt_no >= s.max_attempts) {
      end(s, std::move(outcome));
      return;
    }
    const Instant now = reactor_.now();
    if (now >= s.deadline) {
      end(s, Result<T>(Errc::timeout));
      return;
    }
    const Duration delay = s.backoff.next(rng_);
    if (now + delay >= s.deadline) {
      // The retry could only start at or after the deadline: end now instead of waiting.
      end(s, Result<T>(Errc::timeout));
      return;
    }
    if (s.budget && !s.budget->allow_retry()) {
      ++stats_.budget_refusals;
      end(s, std::move(outcome));
      return;
    }
    s.phase = Phase::waiting;
    wheel().arm(s.timer, now + delay);
  }

  static void on_timer(void* context) {
    Slot& s = *static_cast<Slot*>(context);
    RetrierBase& self = *s.table;
    switch (s.phase) {
      case Phase::attempting:
        ++self.stats_.attempt_timeouts;
        self.attempt_ended(s, Result<T>(Errc::timeout));
        break;
      case Phase::waiting:
        self.run_attempt(s);
        break;
      case Phase::delivering:
        self.deliver(s);
        break;
      case Phase::idle:
        break;
    }
  }

  // The operation has its outcome: deliver it now, or on a later turn if we are still
  // inside its start() (on_done never runs from inside start(), unless the retrier is
  // being destroyed: no later turn will come, and no timer may stay armed).
  void end(Slot& s, Result<T> outcome) {
    if (!s.starting || closing_) {
      finish(s, std::move(outcome));
      return;
    }
    wheel().cancel(s.timer);
    release_held(s);
    if (outcome.ok()) {
      new (s.held_value) T(std::move(outcome.value()));
      s.holding = true;
    } else {
      s.held = outcome.error();
    }
    s.phase = Phase::delivering;
    wheel().arm(s.timer, reactor_.now());
  }

  void deliver(Slot& s) {
    if (s.holding) {
      Result<T> r(std::move(*std::launder(reinterpret_cast<T*>(s.held_value))));
      finish(s, std::move(r));
    } else {
      finish(s, Result<T>(s.held));
    }
  }

  void release_held(Slot& s) {
    if (s.holding) std::launder(reinterpret_cast<T*>(s.held_value))->~T();
    s.holding = false;
    s.held = Errc::ok;
  }

  // Retires the slot before running user code, so on_done may start, cancel or report
  // anything (this id now reads as late) and may reuse the slot.
  void finish(Slot& s, Result<T> outcome) {
    wheel().cancel(s.timer);
    release_held(s);
    Done cb = std::move(s.on_done);
    s.active = false;
    s.owner = nullptr;
    s.budget = nullptr;
    s.phase = Phase::idle;
    detail::bump_generation(s.generation);
    s.next_free = free_;
    free_ = index_of(s);
    --stats_.in_use;
    // Taken out (and below destroyed) only now that the slot is retired: moving and
    // destroying its captures is user code too. Empty if a try is running (run_attempt).
    Attempt attempt = std::move(s.attempt);
    if (outcome.ok()) {
      ++stats_.succeeded;
    } else if (outcome.error() == Errc::timeout) {
      ++stats_.timed_out;
    } else if (outcome.error() == Errc::cancelled) {
      ++stats_.cancelled;
    } else {
      ++stats_.failed;
    }
    attempt = nullptr;  // its captures' destructors may call back in: the slot is retired
    cb(std::move(outcome));
  }

  template <typename Pred>
  std::size_t cancel_matching(Pred pred) {
    detail::Survival guard(alive_);  // an on_done may destroy this object
    std::size_t n = 0;
    for (std::size_t i = 0; i < capacity_; ++i) {
      Slot& s = slots_[i];
      if (!s.active || !pred(s)) continue;
      ++n;
      end(s, Result<T>(Errc::cancelled));
      if (!guard.alive) break;
    }
    return n;
  }

  Reactor& reactor_;
  Rng& rng_;
  Slot* slots_;
  std::size_t capacity_;
  std::uint32_t free_ = 0;
  bool closing_ = false;
  bool* alive_ = nullptr;  // the innermost Survival's flag
  RetryReportSink<T> sink_{};
  RetryStats stats_;
};

// N retried operations in flight at once, on `reactor`'s timer wheel (no reactor timer
// slots are used), drawing jitter from `rng`. Both must outlive the Retrier.
template <typename T, std::size_t N, std::size_t CallbackBytes = 4 * sizeof(void*)>
class Retrier : private detail::InlineStorage<typename RetrierBase<T, CallbackBytes>::Slot, N>,
                public RetrierBase<T, CallbackBytes> {
  static_assert(N > 0 && N < 0x7FFFFFFF, "Retrier capacity out of range");

 public:
  static constexpr std::size_t kCapacity = N;
  Retrier(Reactor& reactor, Rng& rng)
      : RetrierBase<T, CallbackBytes>(reactor, rng, this->items, N) {}
};

}  // namespace tern
