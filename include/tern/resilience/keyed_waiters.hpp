// KeyedWaiters<N>: up to N waits, each named by a string key, each ended
// exactly once: by resolve(key, value), or by its timeout with the default
// value the waiter gave, or by cancel. The human-in-the-loop waits: a plan
// approval that defaults to "rejected" after 300 s, a clarification that
// defaults to "No response received within timeout period.". One timer on the
// reactor's wheel per wait; nothing polls.
//
//   tern::KeyedWaiters<32> approvals(reactor);
//   approvals.wait("plan-7", tern::kApprovalTimeout, tern::kApprovalDefault,
//       [](tern::Result<tern::WaitOutcome> r) {
//         // r->resolved(): a human answered; otherwise the default.
//         if (r && r->value == "approved") run_plan();
//       });
//   // Later, e.g. from an HTTP POST: ok, late or not_found.
//   approvals.resolve("plan-7", body);
//
// tests/resilience/keyed_waiters_test.cpp shows every rule. (examples/approval_gate,
// with waits resolved over HTTP, waits for the HTTP server endpoints: not built yet.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/time.hpp"
#include "tern/core/timer_wheel.hpp"
#include "tern/detail/survival.hpp"
#include "tern/reactor/reactor.hpp"

namespace tern {

// The seed documents' defaults.
inline constexpr Duration kApprovalTimeout = seconds(300);
inline constexpr std::string_view kApprovalDefault = "rejected";
inline constexpr std::string_view kClarificationDefault =
    "No response received within timeout period.";

enum class WaitEnd : std::uint8_t {
  resolved,   // resolve() gave the value
  defaulted,  // the timeout passed: the value is the waiter's default
};

struct WaitOutcome {
  WaitEnd how = WaitEnd::resolved;
  // Valid only during on_done (it points into a copy on the stack): copy to keep.
  std::string_view value;
  bool resolved() const { return how == WaitEnd::resolved; }
};

struct KeyedWaitersStats {
  std::size_t waiting = 0;
  std::size_t high_water = 0;
  Count started = 0;
  Count resolved = 0;
  Count defaulted = 0;  // ended by their timeout, with their default
  Count cancelled = 0;
  Count late = 0;       // resolve() on a key whose wait recently ended
  Count not_found = 0;  // resolve() on a key not waited on (recently)
  Count rejected = 0;   // wait() refused with Errc::full
  Count busy = 0;       // wait() refused: the key is already waited on
  Count too_large = 0;  // over-long keys or values (wait or resolve)
};

namespace detail {

// Not API: the open-addressing index behind KeyedWaiters, public only so its
// table can be allocated inside the object.
struct KeyIndexEntry {
  std::uint32_t hash = 0;
  std::uint32_t slot = 0xFFFFFFFFu;  // kEmpty
};

// Linear probing over a power-of-two table kept at most half full, with
// backward-shift deletion (no tombstones, so lookups stay short however many
// keys come and go). Entries hold the slot number and 32 bits of the key's
// hash; the key itself stays in the slot and is compared through `same` only
// when the hash bits match.
class KeyIndex {
 public:
  static constexpr std::uint32_t kEmpty = 0xFFFFFFFFu;
  using SameKey = bool (*)(const void* context, std::uint32_t slot,
                           std::string_view key);

  KeyIndex(KeyIndexEntry* table, std::size_t size, SameKey same,
           const void* context);
  // The slot holding `key`, or kEmpty.
  std::uint32_t find(std::string_view key, std::uint32_t hash) const;
  // Adds `slot` (not present; the table has room: the caller bounds the count).
  void insert(std::uint32_t hash, std::uint32_t slot);
  // Removes `slot`, filed under `hash`; false if it is not there.
  bool erase(std::uint32_t hash, std::uint32_t slot);

 private:
  KeyIndexEntry* table_;
  std::uint32_t mask_;
  SameKey same_;
  const void* context_;
};

// 64-bit FNV-1a with a final avalanche, so every bit depends on every byte.
std::uint64_t key_hash(std::string_view key);

constexpr std::size_t key_index_size(std::size_t n) {
  std::size_t size = 2;
  while (size < 2 * n) size *= 2;
  return size;
}

}  // namespace detail

// Template parameters: N waits at once; keys of 1..KeyMax bytes and values of
// at most ValueMax bytes, copied into the wait's slot (a value from outside,
// e.g. an HTTP body, is bounded by ValueMax: too_large); Recent ended keys
// remembered to tell late from not_found.
//
// Rules:
// - One wait per key: wait() on a key already waited on returns Errc::busy.
// - resolve() on a waiting key ends it with the value. On any other key it
//   returns late if a wait on that key ended (resolved, defaulted or
//   cancelled) among the last Recent waits to end, not_found otherwise. Ended
//   keys are remembered by their 64-bit hash in a fixed ring, so a key that
//   ended longer ago reads as not_found.
// - on_done may wait, resolve and cancel anything, and may destroy this object
//   however its wait ended.
template <std::size_t N, std::size_t KeyMax = 64, std::size_t ValueMax = 256,
          std::size_t Recent = 2 * N,
          std::size_t CallbackBytes = 4 * sizeof(void*)>
class KeyedWaiters {
  static_assert(N > 0 && N < 0x7FFFFFFF, "KeyedWaiters capacity out of range");
  static_assert(KeyMax > 0 && KeyMax <= 0xFFFF, "KeyMax out of range");
  static_assert(ValueMax <= 0xFFFFFFFFu, "ValueMax out of range");
  static_assert(Recent > 0, "remember at least one ended key");

 public:
  static constexpr std::size_t kCapacity = N;
  static constexpr std::size_t kKeyMax = KeyMax;
  static constexpr std::size_t kValueMax = ValueMax;
  using Callback = InplaceFunction<void(Result<WaitOutcome>), CallbackBytes>;
  using Owner = const void*;

  explicit KeyedWaiters(Reactor& reactor)
      : reactor_(reactor),
        wheel_(reactor.wheel()),
        index_(index_table_, kIndexSize, &KeyedWaiters::same_key, this) {
    for (std::size_t i = 0; i < N; ++i) {
      slots_[i].self = this;
      slots_[i].index = static_cast<std::uint32_t>(i);
      slots_[i].next_free = static_cast<std::uint32_t>(i + 1);
      slots_[i].timer.set_callback(&KeyedWaiters::on_timeout, &slots_[i]);
    }
  }
  // Cancels every wait still open (callbacks run with Errc::cancelled; a wait()
  // from one of them is refused with Errc::shutdown).
  ~KeyedWaiters() {
    detail::object_destroyed(alive_);  // stops the loop that ran us
    closing_ = true;
    (void)cancel_all();
  }
  KeyedWaiters(const KeyedWaiters&) = delete;
  KeyedWaiters& operator=(const KeyedWaiters&) = delete;

  // Waits on `key` for at most `timeout` (Duration::max(): no timeout; zero or
  // less: defaults on the next turn). on_done runs exactly once, never inside
  // wait(), with one of:
  //   {resolved, value} from resolve();
  //   {defaulted, default_value} when the timeout passes;
  //   Errc::cancelled from cancel(), cancel_all() or destruction.
  // Errors: invalid_argument (empty key or on_done; on Cortex-M, a timeout other
  // than Duration::max() that the wheel does not reach: about 24.8 days at 1 ms, see
  // TimerWheel::reaches()), too_large (key over
  // KeyMax or default over ValueMax), busy (the key is already waited on),
  // full (N waits open), shutdown (from a callback run by the destructor). All
  // but invalid_argument and shutdown are counted; nothing changes.
  Errc wait(std::string_view key, Duration timeout,
            std::string_view default_value, Callback on_done,
            Owner owner = nullptr) {
    if (!on_done || key.empty()) return Errc::invalid_argument;
    const Instant deadline = timeout < Duration::max() ? reactor_.now() + timeout : Instant::never();
    if (timeout < Duration::max() && !wheel_.reaches(deadline)) return Errc::invalid_argument;
    if (closing_) return Errc::shutdown;
    if (key.size() > KeyMax || default_value.size() > ValueMax) {
      ++stats_.too_large;
      return Errc::too_large;
    }
    const std::uint64_t hash = detail::key_hash(key);
    if (index_.find(key, static_cast<std::uint32_t>(hash)) !=
        detail::KeyIndex::kEmpty) {
      ++stats_.busy;
      return Errc::busy;
    }
    if (free_ >= N) {
      ++stats_.rejected;
      return Errc::full;
    }
    Slot& s = slots_[free_];
    free_ = s.next_free;
    s.state = State::waiting;
    s.hash = hash;
    s.key_len = static_cast<std::uint16_t>(key.size());
    std::memcpy(s.key, key.data(), key.size());
    set_value(s, default_value);
    s.owner = owner;
    s.on_done = std::move(on_done);
    index_.insert(static_cast<std::uint32_t>(hash), s.index);
    if (timeout < Duration::max()) wheel_.arm(s.timer, deadline);
    ++stats_.started;
    if (++stats_.waiting > stats_.high_water)
      stats_.high_water = stats_.waiting;
    return Errc::ok;
  }

  // Ends the wait on `key` with `value` (copied; the waiter sees it during
  // on_done). Returns ok, or (each counted):
  //   late: the wait on this key recently ended (resolved before, defaulted
  //     or cancelled);
  //   not_found: no wait on this key, nor one that ended recently;
  //   too_large: key over KeyMax, or value over ValueMax (the wait goes on).
  Errc resolve(std::string_view key, std::string_view value) {
    if (key.size() > KeyMax) {
      ++stats_.too_large;
      return Errc::too_large;
    }
    const std::uint64_t hash = detail::key_hash(key);
    const std::uint32_t slot =
        index_.find(key, static_cast<std::uint32_t>(hash));
    if (slot == detail::KeyIndex::kEmpty) {
      if (recently_ended(hash)) {
        ++stats_.late;
        return Errc::late;
      }
      ++stats_.not_found;
      return Errc::not_found;
    }
    if (value.size() > ValueMax) {
      ++stats_.too_large;
      return Errc::too_large;
    }
    Slot& s = slots_[slot];
    set_value(s, value);
    ++stats_.resolved;
    end(s, Errc::ok, WaitEnd::resolved);
    return Errc::ok;
  }

  // Ends the wait on `key` with Errc::cancelled. Returns ok; late if it
  // recently ended, not_found otherwise (neither counted); too_large for a key
  // over KeyMax.
  Errc cancel(std::string_view key) {
    if (key.size() > KeyMax) return Errc::too_large;
    const std::uint64_t hash = detail::key_hash(key);
    const std::uint32_t slot =
        index_.find(key, static_cast<std::uint32_t>(hash));
    if (slot == detail::KeyIndex::kEmpty)
      return recently_ended(hash) ? Errc::late : Errc::not_found;
    ++stats_.cancelled;
    end(slots_[slot], Errc::cancelled, WaitEnd::resolved);
    return Errc::ok;
  }
  // Cancels every wait opened with `owner`; returns how many.
  std::size_t cancel_all(Owner owner) {
    return cancel_matching([owner](const Slot& s) { return s.owner == owner; });
  }
  // Cancels every wait; returns how many.
  std::size_t cancel_all() {
    return cancel_matching([](const Slot&) { return true; });
  }

  // True while a wait on `key` is open. O(1) on average.
  bool waiting(std::string_view key) const {
    return find(key) != detail::KeyIndex::kEmpty;
  }
  // When the wait on `key` defaults (Instant::never() without a timeout).
  // Errors: not_found.
  Result<Instant> deadline(std::string_view key) const {
    const std::uint32_t slot = find(key);
    if (slot == detail::KeyIndex::kEmpty) return Errc::not_found;
    const Slot& s = slots_[slot];
    return s.timer.armed() ? wheel_.deadline(s.timer) : Instant::never();
  }
  // Calls f(key, deadline, owner) for every open wait (e.g. to list pending
  // approvals); f must not start or end waits.
  template <typename F>
  void for_each_waiting(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.state != State::waiting) continue;
      f(std::string_view(s.key, s.key_len),
        s.timer.armed() ? wheel_.deadline(s.timer) : Instant::never(), s.owner);
    }
  }

  std::size_t size() const { return stats_.waiting; }
  bool full() const { return stats_.waiting == N; }
  const KeyedWaitersStats& stats() const { return stats_; }

 private:
  static constexpr std::size_t kIndexSize = detail::key_index_size(N);
  enum class State : std::uint8_t {
    free,
    waiting,
  };
  struct Slot {
    Timer timer;
    Callback on_done;
    Owner owner = nullptr;
    KeyedWaiters* self = nullptr;
    std::uint64_t hash = 0;
    std::uint32_t index = 0;
    std::uint32_t next_free = 0;
    std::uint32_t value_len = 0;
    std::uint16_t key_len = 0;
    State state = State::free;
    char key[KeyMax];
    char value[ValueMax > 0 ? ValueMax : 1];
  };

  static bool same_key(const void* context, std::uint32_t slot,
                       std::string_view key) {
    const Slot& s = static_cast<const KeyedWaiters*>(context)->slots_[slot];
    return std::string_view(s.key, s.key_len) == key;
  }

  std::uint32_t find(std::string_view key) const {
    if (key.size() > KeyMax || key.empty()) return detail::KeyIndex::kEmpty;
    return index_.find(key, static_cast<std::uint32_t>(detail::key_hash(key)));
  }

  static void set_value(Slot& s, std::string_view v) {
    s.value_len = static_cast<std::uint32_t>(v.size());
    if (!v.empty()) std::memcpy(s.value, v.data(), v.size());
  }

  bool recently_ended(std::uint64_t hash) const {
    for (std::size_t i = 0; i < recent_count_; ++i)
      if (recent_[i] == hash) return true;
    return false;
  }

  static void on_timeout(void* context) {
    Slot& s = *static_cast<Slot*>(context);
    ++s.self->stats_.defaulted;
    s.self->end(s, Errc::ok, WaitEnd::defaulted);
  }

  // Retires the wait (index, timer, late-ring) and frees its slot before running
  // user code, so on_done may wait again (on this key or, in a full table, any
  // other) or resolve it (late), and destroy this object: nothing here is
  // touched after on_done (cancel_matching() checks). The value it is shown is
  // a copy on this stack frame.
  void end(Slot& s, Errc error, WaitEnd how) {
    wheel_.cancel(s.timer);
    (void)index_.erase(static_cast<std::uint32_t>(s.hash), s.index);
    recent_[recent_next_] = s.hash;
    recent_next_ = (recent_next_ + 1) % Recent;
    if (recent_count_ < Recent) ++recent_count_;
    Callback cb = std::move(s.on_done);
    char value[ValueMax > 0 ? ValueMax : 1];
    const std::size_t value_len = error == Errc::ok ? s.value_len : 0;
    if (value_len) std::memcpy(value, s.value, value_len);
    s.owner = nullptr;
    s.state = State::free;
    s.next_free = free_;
    free_ = s.index;
    --stats_.waiting;
    if (error == Errc::ok) {
      cb(Result<WaitOutcome>(WaitOutcome{how, std::string_view(value, value_len)}));
    } else {
      cb(Result<WaitOutcome>(error));
    }
  }

  template <typename Pred>
  std::size_t cancel_matching(Pred pred) {
    detail::Survival guard(alive_);  // an on_done may destroy this object
    std::size_t n = 0;
    for (Slot& s : slots_) {
      if (s.state != State::waiting || !pred(static_cast<const Slot&>(s)))
        continue;
      ++stats_.cancelled;
      ++n;
      end(s, Errc::cancelled, WaitEnd::resolved);
      if (!guard.alive) return n;
    }
    return n;
  }

  Reactor& reactor_;
  TimerWheel& wheel_;
  Slot slots_[N];
  detail::KeyIndexEntry index_table_[kIndexSize];
  detail::KeyIndex index_;
  std::uint32_t free_ = 0;
  std::uint64_t recent_[Recent] = {};
  std::size_t recent_next_ = 0;
  std::size_t recent_count_ = 0;
  bool closing_ = false;  // being destroyed: wait() refuses
  bool* alive_ = nullptr;  // the innermost Survival's flag
  KeyedWaitersStats stats_;
};

}  // namespace tern
