// PendingTable<T, N>: N in-flight requests, each with a correlation RequestId, a deadline
// on a TimerWheel, and exactly one outcome delivered to its on_done callback: the value
// (complete), an error (fail), Errc::timeout or Errc::cancelled. Anything that arrives
// for a request that already ended is recognised in O(1), dropped, and counted as late.
//
//   tern::PendingTable<Doc, 64> table(wheel);
//   auto id = table.start(now + tern::seconds(10), [](tern::Result<Doc> r) { ... });
//   ...
//   if (table.complete(*id, doc) == tern::Errc::late) { /* dropped, counted */ }
//
// See examples/scenario_rag for the table behind agent request/reply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inline_storage.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/slot_generation.hpp"

namespace tern {

// Slot index (low 32 bits) and the slot's generation (high 32 bits). 0 is never issued.
struct RequestId {
  std::uint64_t value = 0;
  std::uint32_t slot() const { return static_cast<std::uint32_t>(value); }
  std::uint32_t generation() const { return static_cast<std::uint32_t>(value >> 32); }
  static RequestId make(std::uint32_t slot, std::uint32_t generation) {
    return RequestId{(std::uint64_t{generation} << 32) | slot};
  }
  explicit operator bool() const { return value != 0; }
  friend bool operator==(RequestId, RequestId) = default;
};

struct PendingStats {
  std::size_t in_use = 0;
  std::size_t high_water = 0;
  Count started = 0;
  Count completed = 0;   // ended with a value
  Count failed = 0;      // ended with fail()
  Count timed_out = 0;
  Count cancelled = 0;
  Count late = 0;        // outcome offered for a request that had already ended
  Count not_found = 0;   // outcome offered for an id never issued
  Count rejected = 0;    // start() refused with Errc::full
};

template <typename T, std::size_t N, std::size_t CallbackBytes>
struct PendingTableStorage;

// The capacity-free part: PendingTable<T, N> holds the slots inline;
// PendingTableBuffer<T> takes slots the caller allocated once (capacity from a config).
template <typename T, std::size_t CallbackBytes = 4 * sizeof(void*),
          std::size_t CallbackAlign = alignof(std::max_align_t)>
class PendingTableBase {
 public:
  using Callback = InplaceFunction<void(Result<T>), CallbackBytes, CallbackAlign>;
  using Owner = const void*;
  struct Slot;

  PendingTableBase(TimerWheel& wheel, Slot* slots, std::size_t capacity)
      : wheel_(wheel), slots_(slots), capacity_(capacity) {
    if (capacity == 0 || capacity >= 0x7FFFFFFF) panic("PendingTable capacity out of range");
    const std::size_t N = capacity_;
    for (std::size_t i = 0; i < N; ++i) {
      slots_[i].table_ = reinterpret_cast<std::uintptr_t>(this);
      slots_[i].next_free = static_cast<std::uint32_t>(i + 1);
      slots_[i].timer.set_callback(&PendingTableBase::on_deadline, &slots_[i]);
    }
  }
  // Cancels whatever is still pending; those callbacks run with Errc::cancelled.
  // A callback run from here that starts a request is refused (Errc::shutdown).
  ~PendingTableBase() {
    closing_ = true;
    (void)cancel_all_matching([](const Slot&) { return true; });
  }
  PendingTableBase(const PendingTableBase&) = delete;
  PendingTableBase& operator=(const PendingTableBase&) = delete;

  // Accepts a request that must end by `deadline` (Instant::never(): no deadline).
  // on_done runs exactly once, later, never from inside start().
  // Errors: full (all N slots busy; counted, nothing else changes),
  //         invalid_argument (empty on_done, or a deadline the wheel does not reach:
  //         about 24.8 days ahead at 1 ms on Cortex-M), shutdown (the table is being
  //         destroyed).
  Result<RequestId> start(Instant deadline, Callback on_done, Owner owner = nullptr) {
    if (!on_done || !wheel_.reaches_or_never(deadline)) {
      return Errc::invalid_argument;
    }
    if (free_ >= capacity_ || closing_) [[unlikely]] {
      if (closing_) return Errc::shutdown;
      ++stats_.rejected;
      return Errc::full;
    }
    Slot& s = slots_[free_];
    free_ = s.next_free;
    s.owner = owner;
    s.on_done = std::move(on_done);
    if (deadline != Instant::never()) wheel_.arm(s.timer, deadline);
    ++stats_.started;
    if (++stats_.in_use > stats_.high_water) stats_.high_water = stats_.in_use;
    return RequestId::make(index_of(s), s.generation);
  }

  // Ends request `id` with `value`. Returns ok; late if it already ended (the value is
  // dropped and counted); not_found if `id` was never issued by this table.
  Errc complete(RequestId id, T value) {
    Slot* s = lookup(id);
    if (!s) return miss(id);
    ++stats_.completed;
    finish(*s, Result<T>(std::move(value)));
    return Errc::ok;
  }

  // Ends request `id` with error `e` (not ok). Same returns as complete();
  // invalid_argument if e is Errc::ok.
  Errc fail(RequestId id, Errc e) {
    if (e == Errc::ok) return Errc::invalid_argument;
    Slot* s = lookup(id);
    if (!s) return miss(id);
    if (e == Errc::timeout) {
      ++stats_.timed_out;
    } else if (e == Errc::cancelled) {
      ++stats_.cancelled;
    } else {
      ++stats_.failed;
    }
    finish(*s, Result<T>(e));
    return Errc::ok;
  }

  // Ends request `id` with Errc::cancelled. Same returns as complete().
  Errc cancel(RequestId id) { return fail(id, Errc::cancelled); }

  // Cancels every pending request started with `owner`; returns how many.
  std::size_t cancel_all(Owner owner) {
    return cancel_all_matching([owner](const Slot& s) { return s.owner == owner; });
  }
  // Cancels every pending request; returns how many.
  std::size_t cancel_all() {
    return cancel_all_matching([](const Slot&) { return true; });
  }

  bool pending(RequestId id) const { return lookup(id) != nullptr; }
  // The deadline of a pending request; not_found otherwise.
  Result<Instant> deadline(RequestId id) const {
    const Slot* s = lookup(id);
    if (!s) return Errc::not_found;
    return !s->held() && s->timer.armed() ? wheel_.deadline(s->timer) : Instant::never();
  }
  const PendingStats& stats() const { return stats_; }
  std::size_t in_use() const { return stats_.in_use; }

  // Not API (the Runtime's request table): when set, every outcome goes to `runner`
  // with the request's owner and its on_done, which the runner must call, instead of to
  // on_done directly. So an owner's per-request bookkeeping takes one word per table,
  // not room in every slot's callback. `release` is for hold(): see there.
  using Runner = void (*)(void* context, Owner owner, Callback& on_done, Result<T>&& outcome);
  using Release = void (*)(void* context, std::uint32_t slot, void* bytes);
  void set_runner(Runner runner, void* context, Release release = nullptr) {
    runner_ = runner;
    runner_context_ = context;
    release_ = release;
  }

  // Not API (the Runtime's request table, where a request's answer waits for the
  // requester's next dispatch): lends the storage of pending request `id`'s deadline
  // timer, kHeldBytes bytes aligned like a pointer, to the caller and stops the
  // deadline: the outcome is on its way, so the request no longer times out. It still
  // ends by complete(), fail() or cancel(). The caller gives the bytes back with
  // unhold(); if the request ends while they are lent, the outcome they held counts as
  // late and the release hook gets them (and the slot's index) first, before anything
  // else of the ending runs, and must destroy what it put there; it may read the table
  // (held(), id_at()) but not start or end requests.
  // Null if `id` is not pending or its storage is already lent.
  static constexpr std::size_t kHeldBytes = sizeof(Timer);
  void* hold(RequestId id) {
    Slot* s = lookup(id);
    if (!s || s->held() || !release_) return nullptr;
    wheel_.cancel(s->timer);
    s->timer.~Timer();
    s->table_ |= kHeld;
    return s->held_bytes;
  }
  // The bytes hold() lent for `id`, or null.
  void* held(RequestId id) const {
    Slot* s = lookup(id);
    return s && s->held() ? s->held_bytes : nullptr;
  }
  // The same for the slot at `index`, which the caller knows is held (unchecked: for an
  // owner walking its own list of held slots).
  void* held_at(std::uint32_t index) const { return slots_[index].held_bytes; }
  // Takes back what hold() lent: the request stays pending, with no deadline.
  void unhold(RequestId id) {
    if (Slot* s = lookup(id); s && s->held()) end_hold(*s);
  }
  // The id of the request pending in slot `index` (which a held request's owner
  // records), or an id that pending() denies.
  RequestId id_at(std::uint32_t index) const {
    if (index >= capacity_ || !slots_[index].active()) return RequestId{};
    return RequestId::make(index, slots_[index].generation);
  }

  // The id of the request whose callback this table ran last: read at the start of a
  // callback, it names the request that callback ends (to log or trace it). A callback
  // that ends another request of this table changes it. The table writes nothing after
  // a callback returns, so a callback may still destroy it.
  RequestId finishing() const { return finishing_; }
  bool full() const { return stats_.in_use == capacity_; }
  std::size_t capacity() const { return capacity_; }

  // Calls f(id, owner) for every pending request (for owners that need to find theirs).
  template <typename F>
  void for_each_pending(F&& f) const {
    for (std::size_t i = 0; i < capacity_; ++i) {
      const Slot& s = slots_[i];
      if (s.active()) f(RequestId::make(static_cast<std::uint32_t>(i), s.generation), s.owner);
    }
  }

  // Not API: the slot layout, public only so storage can be allocated for it. Packed:
  // a slot is active while it holds a callback, the slot index is the slot's position,
  // a slot has an owner only while active and a next free slot only while free, and
  // its timer's bytes are lent while it is held (hold()).
  struct Slot {
    Slot() : timer() {}
    ~Slot() { timer.~Timer(); }  // the table's destructor ended every hold
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    union {
      Timer timer;                                              // unless held
      alignas(Timer) unsigned char held_bytes[sizeof(Timer)];  // while held
    };
    std::uint32_t generation = detail::kFirstGeneration;
    Callback on_done;
    std::uintptr_t table_ = 0;  // the PendingTableBase, | kHeld while held
    union {
      Owner owner = nullptr;    // while active
      std::uint32_t next_free;  // while free
    };
    bool active() const { return static_cast<bool>(on_done); }
    bool held() const { return (table_ & kHeld) != 0; }
    PendingTableBase& table() const {
      return *reinterpret_cast<PendingTableBase*>(table_ & ~kHeld);
    }
  };

 private:
  static constexpr std::uintptr_t kHeld = 1;

  std::uint32_t index_of(const Slot& s) const { return static_cast<std::uint32_t>(&s - slots_); }

  void end_hold(Slot& s) {
    new (&s.timer) Timer(&PendingTableBase::on_deadline, &s);
    s.table_ &= ~kHeld;
  }

  Slot* lookup(RequestId id) const {
    std::uint32_t i = id.slot();
    if (i >= capacity_) return nullptr;
    Slot& s = const_cast<Slot&>(slots_[i]);
    return (s.active() && s.generation == id.generation()) ? &s : nullptr;
  }

  Errc miss(RequestId id) {
    const Errc e = detail::classify_missed_id(
        id.slot(), id.generation(), capacity_,
        [this](std::uint32_t i) { return slots_[i].generation; });
    if (e == Errc::late) {
      ++stats_.late;
    } else {
      ++stats_.not_found;
    }
    return e;
  }

  // Retires the slot before running user code, so the callback may start, complete or
  // cancel anything (this id now reads as late) and may reuse the slot.
  void finish(Slot& s, Result<T> outcome) {
    if (s.held()) {  // ended another way while its outcome waited: that one is late
      ++stats_.late;
      release_(runner_context_, index_of(s), s.held_bytes);
      end_hold(s);
    } else {
      wheel_.cancel(s.timer);
    }
    const RequestId id = RequestId::make(index_of(s), s.generation);
    Callback cb = std::move(s.on_done);  // leaves the slot inactive
    const Owner owner = s.owner;
    s.owner = nullptr;
    detail::bump_generation(s.generation);
    s.next_free = free_;
    free_ = index_of(s);
    --stats_.in_use;
    finishing_ = id;
    // Last: nothing of the table is touched afterwards.
    if (const Runner runner = runner_) {
      runner(runner_context_, owner, cb, std::move(outcome));
    } else {
      cb(std::move(outcome));
    }
  }

  static void on_deadline(void* context) {
    Slot& s = *static_cast<Slot*>(context);
    PendingTableBase& table = s.table();
    ++table.stats_.timed_out;
    table.finish(s, Result<T>(Errc::timeout));
  }

  template <typename Pred>
  std::size_t cancel_all_matching(Pred pred) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < capacity_; ++i) {
      Slot& s = slots_[i];
      if (!s.active() || !pred(s)) continue;
      ++stats_.cancelled;
      ++n;
      finish(s, Result<T>(Errc::cancelled));
    }
    return n;
  }

  TimerWheel& wheel_;
  Slot* slots_;
  std::size_t capacity_;
  std::uint32_t free_ = 0;
  bool closing_ = false;  // being destroyed: start() refuses
  PendingStats stats_;
  RequestId finishing_;
  Runner runner_ = nullptr;
  void* runner_context_ = nullptr;
  Release release_ = nullptr;
};

template <typename T, std::size_t N, std::size_t CallbackBytes = 4 * sizeof(void*),
          std::size_t CallbackAlign = alignof(std::max_align_t)>
class PendingTable
    : private detail::InlineStorage<
          typename PendingTableBase<T, CallbackBytes, CallbackAlign>::Slot, N>,
      public PendingTableBase<T, CallbackBytes, CallbackAlign> {
  static_assert(N > 0 && N < 0x7FFFFFFF, "PendingTable capacity out of range");

 public:
  static constexpr std::size_t kCapacity = N;
  explicit PendingTable(TimerWheel& wheel)
      : PendingTableBase<T, CallbackBytes, CallbackAlign>(wheel, this->items, N) {}
};

// Slots allocated by the caller, once: `new Slot[n]` at start-up, or a static array.
template <typename T, std::size_t CallbackBytes = 4 * sizeof(void*),
          std::size_t CallbackAlign = alignof(std::max_align_t)>
using PendingTableBuffer = PendingTableBase<T, CallbackBytes, CallbackAlign>;

}  // namespace tern
