// Coalescer<Key, T, N, K>: identical requests already in flight share one
// upstream call. The first get() for a key starts the upstream call; later
// get()s for the same key join it. Each waiter keeps its own deadline and gets
// exactly one outcome: the upstream's value or error, Errc::timeout, or
// Errc::cancelled.
//
//   tern::Coalescer<DocKey, Docs, 16, 8> docs(reactor);
//   auto id = docs.get(key, reactor.now() + tern::seconds(10),
//       [this](tern::Result<Docs> r) { answer(r); },
//       [this](const DocKey& k, auto ticket) { ask_retriever(k, ticket); });
//   ...                             // later, when the retriever answers:
//   ticket.complete(docs_found);    // every waiter still waiting gets a copy
//
// See examples/scenario_rag for a coalescer in front of a retriever agent.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/pending_table.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/slot_generation.hpp"
#include "tern/detail/survival.hpp"
#include "tern/reactor/reactor.hpp"

namespace tern {

struct CoalescerStats {
  std::size_t in_flight = 0;        // keys with an upstream call outstanding
  std::size_t high_water = 0;       // most keys in flight at once
  std::size_t waiting = 0;          // waiters without their outcome yet
  Count calls_started = 0;  // upstream calls made
  Count joined = 0;         // get()s that joined a call in flight
  Count delivered = 0;      // waiters that got the upstream's value
  Count failed = 0;         // waiters that got the upstream's error
  Count timed_out = 0;      // waiters whose own deadline passed first
  Count cancelled = 0;      // waiters ended by cancel()/cancel_all()
  // Calls whose waiters had all left before the answer.
  Count abandoned = 0;
  // Upstream answers for calls that had already ended (dropped).
  Count late = 0;
  Count rejected_keys = 0;     // get() refused: N keys in flight
  Count rejected_waiters = 0;  // get() refused: the key has K waiters
};

// Keys: a small trivially-copyable type with ==, compared by value: an integer
// id, an enum, a struct of those with a defaulted operator==, or
// std::array<char, L> for short strings. Never a hash of a longer request: two
// requests whose hashes collide would share one answer. Lookup compares the key
// against the N slots (N is the number of distinct keys in flight, meant to be
// small).
//
// Capacity: N keys in flight, each with at most K waiters (N * K waiter
// records, each with its own Timer). A get() that finds no room returns
// Errc::full, is counted, and changes nothing. An upstream answer is kept in
// the key's slot (N values of T) only when it must wait for the next turn (see
// get()).
//
// When the last waiter of a call leaves (timeout or cancel) the call is
// abandoned: its slot is free at once, and the upstream's eventual answer is
// dropped and counted as late. A later get() for the key starts a new upstream
// call.
//
// A waiter's on_done, and upstream, may destroy the Coalescer: nothing of it is
// touched after they return (the waiters still waiting get Errc::cancelled from
// the destructor, as always).
template <typename Key, typename T, std::size_t N, std::size_t K,
          std::size_t CallbackBytes = 4 * sizeof(void*)>
class Coalescer {
  static_assert(std::is_trivially_copyable_v<Key>,
                "Coalescer keys are copied by value");
  static_assert(std::equality_comparable<Key>, "Coalescer keys need ==");
  static_assert(std::is_copy_constructible_v<T>,
                "every waiter gets its own copy of T");
  static_assert(N > 0 && K > 0 && N * K < 0x7FFFFFFF,
                "Coalescer capacity out of range");

 public:
  static constexpr std::size_t kKeys = N;
  static constexpr std::size_t kWaitersPerKey = K;
  using Callback = InplaceFunction<void(Result<T>), CallbackBytes>;
  using Owner = const void*;
  // Names one waiter: slot (key slot * K + waiter) and the waiter's generation.
  using WaiterId = RequestId;

  // The upstream's handle on one call: answer it exactly once, now or later,
  // from any callback on the reactor's thread. Copyable; every copy names the
  // same call. The Coalescer must outlive the tickets it handed out.
  class Ticket {
   public:
    Ticket() = default;
    // Delivers `value` (a copy each) to every waiter still waiting. Returns ok;
    // late if the call already ended (answered, or abandoned by all its
    // waiters): dropped and counted; not_found for an empty ticket.
    Errc complete(T value) { return answer(Result<T>(std::move(value))); }
    // Delivers error `e` to every waiter still waiting. Same returns as
    // complete(); invalid_argument if e is Errc::ok.
    Errc fail(Errc e) {
      if (e == Errc::ok) return Errc::invalid_argument;
      return answer(Result<T>(e));
    }
    // True while the call still waits for this answer.
    bool pending() const {
      return coalescer_ != nullptr &&
             coalescer_->ticket_live(flight_, generation_);
    }

   private:
    friend class Coalescer;
    Ticket(Coalescer* c, std::uint32_t flight, std::uint32_t generation)
        : coalescer_(c), flight_(flight), generation_(generation) {}
    Errc answer(Result<T> outcome) {
      if (coalescer_ == nullptr) return Errc::not_found;
      return coalescer_->answer(flight_, generation_, std::move(outcome));
    }
    Coalescer* coalescer_ = nullptr;
    std::uint32_t flight_ = 0;
    std::uint32_t generation_ = 0;
  };

  explicit Coalescer(Reactor& reactor) : wheel_(reactor.wheel()) {
    for (std::size_t f = 0; f < N; ++f) {
      Flight& fl = flights_[f];
      fl.deliver_timer.set_callback(&Coalescer::on_deliver, &fl);
      fl.self = this;
      fl.index = static_cast<std::uint32_t>(f);
      for (std::size_t k = 0; k < K; ++k) {
        Waiter& w = fl.waiters[k];
        w.timer.set_callback(&Coalescer::on_waiter_deadline, &w);
        w.flight = &fl;
        w.index = static_cast<std::uint32_t>(k);
      }
    }
  }
  // Cancels every waiter still waiting (callbacks run with Errc::cancelled);
  // answers through tickets handed out earlier must not arrive afterwards.
  ~Coalescer() {
    detail::object_destroyed(alive_);  // stops the loop that ran us
    closing_ = true;  // a get() from a callback run here is refused
    (void)cancel_all();
    for (Flight& f : flights_) {
      wheel_.cancel(f.deliver_timer);
      if (f.has_outcome) f.drop_outcome();
    }
  }
  Coalescer(const Coalescer&) = delete;
  Coalescer& operator=(const Coalescer&) = delete;

  // Asks for `key`, to be answered by `deadline` (Instant::never(): no deadline
  // of its own). If a call for `key` is in flight, joins it; otherwise takes a
  // key slot and calls `upstream(key, ticket)` before returning, which must
  // start the real request and later answer through ticket.complete()/fail()
  // (it may also answer at once). `upstream` is not stored; it is not called
  // when joining.
  //
  // on_done runs exactly once, never inside get() (unless `upstream` itself
  // cancels this waiter or destroys the Coalescer: then at once, there): with a
  // copy of the upstream's value, its error, Errc::timeout at this waiter's own
  // deadline (the call and the other waiters go on), or Errc::cancelled. An
  // answer given inside `upstream` is delivered on the next turn, and get()s
  // for the key until then join it.
  //
  // Errors: full (no free key slot, or the key already has K waiters; counted,
  // nothing changes, upstream not called), invalid_argument (empty on_done; on
  // Cortex-M, a deadline the wheel does not reach: see TimerWheel::reaches()),
  // shutdown (from a callback run by the destructor).
  template <typename Upstream>
  Result<WaiterId> get(const Key& key, Instant deadline, Callback on_done,
                       Upstream&& upstream, Owner owner = nullptr) {
    static_assert(std::is_invocable_v<Upstream&, const Key&, Ticket>,
                  "upstream is called as upstream(const Key&, Ticket)");
    if (!on_done || !wheel_.reaches_or_never(deadline)) {
      return Errc::invalid_argument;
    }
    if (closing_) return Errc::shutdown;
    if (Flight* f = find(key)) {
      Waiter* w = free_waiter(*f);
      if (w == nullptr) {
        ++stats_.rejected_waiters;
        return Errc::full;
      }
      ++stats_.joined;
      return add_waiter(*f, *w, deadline, std::move(on_done), owner);
    }
    Flight* f = free_flight();
    if (f == nullptr) {
      ++stats_.rejected_keys;
      return Errc::full;
    }
    f->key = key;
    f->state = State::starting;
    if (++stats_.in_flight > stats_.high_water)
      stats_.high_water = stats_.in_flight;
    ++stats_.calls_started;
    WaiterId id =
        add_waiter(*f, f->waiters[0], deadline, std::move(on_done), owner);
    const std::uint32_t generation = f->generation;
    {
      detail::Survival guard(alive_);
      upstream(key, Ticket(this, f->index, generation));
      if (!guard.alive) return id;  // on_done ran, with cancelled
    }
    // Re-read: upstream may have answered (answered) or cancelled its only
    // waiter (free).
    if (f->state == State::starting && f->generation == generation)
      f->state = State::waiting;
    return id;
  }

  // Ends waiter `id` with Errc::cancelled; the call goes on for the others (if
  // it was the last waiter, the call is abandoned). Returns ok; late if that
  // waiter already ended (not counted); not_found if `id` was never issued
  // here.
  Errc cancel(WaiterId id) {
    Waiter* w = lookup(id);
    if (w == nullptr) return miss(id);
    ++stats_.cancelled;
    end_waiter(*w, Result<T>(Errc::cancelled));
    return Errc::ok;
  }
  // Cancels every waiter started with `owner`; returns how many.
  std::size_t cancel_all(Owner owner) {
    return cancel_matching(
        [owner](const Waiter& w) { return w.owner == owner; });
  }
  // Cancels every waiter; returns how many.
  std::size_t cancel_all() {
    return cancel_matching([](const Waiter&) { return true; });
  }

  // True while a call for `key` can still be joined.
  bool in_flight(const Key& key) const { return find(key) != nullptr; }
  // Waiters still waiting on the call for `key` (0 if none is in flight).
  std::size_t waiters(const Key& key) const {
    const Flight* f = find(key);
    return f ? f->active : 0;
  }
  bool pending(WaiterId id) const { return lookup(id) != nullptr; }
  const CoalescerStats& stats() const { return stats_; }

 private:
  enum class State : std::uint8_t {
    free,
    starting,  // inside upstream(): an answer now is delivered on the next turn
    waiting,   // upstream called, answer outstanding
    answered,  // answer stored, delivery armed for the next turn
    delivering,  // handing the answer out; no longer joinable
  };
  struct Flight;
  struct Waiter {
    Timer timer;
    Callback on_done;
    Owner owner = nullptr;
    Flight* flight = nullptr;
    std::uint32_t index = 0;
    std::uint32_t generation = detail::kFirstGeneration;
    bool active = false;
  };
  struct Flight {
    Waiter waiters[K];
    Timer deliver_timer;
    Key key{};
    Coalescer* self = nullptr;
    std::uint32_t index = 0;
    // Of the call; a Ticket carries it.
    std::uint32_t generation = detail::kFirstGeneration;
    std::uint32_t active = 0;      // waiters still waiting
    State state = State::free;
    bool has_outcome = false;
    Errc outcome_error = Errc::ok;
    alignas(T) unsigned char outcome_value[sizeof(T)];

    T& value() { return *std::launder(reinterpret_cast<T*>(outcome_value)); }
    void store(Result<T>&& r) {
      outcome_error = r.error();
      if (r.ok()) new (outcome_value) T(std::move(r.value()));
      has_outcome = true;
    }
    Result<T> copy_outcome() {
      if (outcome_error != Errc::ok) return Result<T>(outcome_error);
      return Result<T>(value());
    }
    void drop_outcome() {
      if (outcome_error == Errc::ok) value().~T();
      has_outcome = false;
    }
  };

  static bool joinable(State s) {
    return s == State::starting || s == State::waiting || s == State::answered;
  }

  Flight* find(const Key& key) {
    for (Flight& f : flights_)
      if (joinable(f.state) && f.key == key) return &f;
    return nullptr;
  }
  const Flight* find(const Key& key) const {
    return const_cast<Coalescer*>(this)->find(key);
  }

  Flight* free_flight() {
    for (Flight& f : flights_)
      if (f.state == State::free) return &f;
    return nullptr;
  }
  static Waiter* free_waiter(Flight& f) {
    for (Waiter& w : f.waiters)
      if (!w.active) return &w;
    return nullptr;
  }

  WaiterId add_waiter(Flight& f, Waiter& w, Instant deadline, Callback on_done,
                      Owner owner) {
    w.active = true;
    w.owner = owner;
    w.on_done = std::move(on_done);
    if (deadline != Instant::never()) wheel_.arm(w.timer, deadline);
    ++f.active;
    ++stats_.waiting;
    return WaiterId::make(static_cast<std::uint32_t>(f.index * K + w.index),
                          w.generation);
  }

  Waiter* lookup(WaiterId id) const {
    std::uint32_t slot = id.slot();
    if (slot >= N * K) return nullptr;
    Waiter& w = const_cast<Waiter&>(flights_[slot / K].waiters[slot % K]);
    return (w.active && w.generation == id.generation()) ? &w : nullptr;
  }
  Errc miss(WaiterId id) const {
    return detail::classify_missed_id(
        id.slot(), id.generation(), N * K, [this](std::uint32_t slot) {
          return flights_[slot / K].waiters[slot % K].generation;
        });
  }

  bool ticket_live(std::uint32_t flight, std::uint32_t generation) const {
    if (flight >= N) return false;
    const Flight& f = flights_[flight];
    return f.generation == generation &&
           (f.state == State::starting || f.state == State::waiting);
  }

  Errc answer(std::uint32_t flight, std::uint32_t generation,
              Result<T> outcome) {
    const Errc e = detail::classify_ticket(
        flight, generation, N,
        [&](std::uint32_t f) { return ticket_live(f, generation); });
    if (e == Errc::late) ++stats_.late;
    if (e != Errc::ok) return e;
    Flight& f = flights_[flight];
    // The ticket is spent.
    detail::bump_generation(f.generation);
    f.store(std::move(outcome));
    if (f.state == State::starting) {
      // Still inside get(): hand the answer out from the wheel on the next
      // turn.
      f.state = State::answered;
      wheel_.arm(f.deliver_timer, wheel_.current());
      return Errc::ok;
    }
    deliver(f);
    return Errc::ok;
  }

  static void on_deliver(void* context) {
    Flight& f = *static_cast<Flight*>(context);
    f.self->deliver(f);
  }

  // Every waiter still waiting gets a copy. Waiter callbacks may cancel the
  // others (they then get cancelled, once) or start new calls for the same key
  // (a new slot: this one is no longer joinable).
  void deliver(Flight& f) {
    f.state = State::delivering;
    detail::Survival guard(alive_);
    for (Waiter& w : f.waiters) {
      if (!w.active) continue;
      if (f.outcome_error == Errc::ok) {
        ++stats_.delivered;
      } else {
        ++stats_.failed;
      }
      end_waiter(w, f.copy_outcome());
      // Destroyed by on_done: the destructor cancelled the rest and dropped
      // the outcome.
      if (!guard.alive) return;
    }
    f.drop_outcome();
    release(f);
  }

  void release(Flight& f) {
    wheel_.cancel(f.deliver_timer);
    f.state = State::free;
    f.active = 0;
    --stats_.in_flight;
  }

  static void on_waiter_deadline(void* context) {
    Waiter& w = *static_cast<Waiter*>(context);
    Coalescer& self = *w.flight->self;
    ++self.stats_.timed_out;
    self.end_waiter(w, Result<T>(Errc::timeout));
  }

  // Retires the waiter before running user code, so its callback may do
  // anything (its id now reads as late).
  void end_waiter(Waiter& w, Result<T> outcome) {
    Flight& f = *w.flight;
    wheel_.cancel(w.timer);
    Callback cb = std::move(w.on_done);
    w.active = false;
    w.owner = nullptr;
    detail::bump_generation(w.generation);
    --f.active;
    --stats_.waiting;
    if (f.active == 0 && joinable(f.state)) {
      // Nobody is left to answer: free the slot now; the upstream's answer will
      // be late.
      ++stats_.abandoned;
      detail::bump_generation(f.generation);
      if (f.has_outcome) f.drop_outcome();
      release(f);
    }
    cb(std::move(outcome));
  }

  template <typename Pred>
  std::size_t cancel_matching(Pred pred) {
    detail::Survival guard(alive_);  // an on_done may destroy this object
    std::size_t n = 0;
    for (Flight& f : flights_) {
      for (Waiter& w : f.waiters) {
        if (!w.active || !pred(static_cast<const Waiter&>(w))) continue;
        ++stats_.cancelled;
        ++n;
        end_waiter(w, Result<T>(Errc::cancelled));
        if (!guard.alive) return n;
      }
    }
    return n;
  }

  TimerWheel& wheel_;
  Flight flights_[N];
  bool closing_ = false;  // being destroyed: get() refuses
  bool* alive_ = nullptr;  // the innermost Survival's flag
  CoalescerStats stats_;
};

}  // namespace tern
