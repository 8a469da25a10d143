// PriorityRing<T, N, Levels>: N items shared by `Levels` priorities; pop() returns the
// oldest item of the highest non-empty level (FIFO within a level). push() returns
// Errc::full when N items are held. take_first(pred) searches highest level first.
//
//   tern::PriorityRing<Message, 16, 4> mailbox;
//   (void)mailbox.push(msg, /*level=*/3);   // 3 = most urgent
//   auto next = mailbox.pop();
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "tern/core/errc.hpp"

namespace tern {

template <typename T, std::size_t N, unsigned Levels = 4>
class PriorityRing {
  static_assert(N > 0 && N < 0xFFFF, "PriorityRing capacity must be in 1..65534");
  static_assert(Levels >= 1 && Levels <= 32, "PriorityRing supports 1..32 levels");
  using Index = std::uint16_t;
  static constexpr Index kNil = 0xFFFF;

 public:
  static constexpr std::size_t kCapacity = N;
  static constexpr unsigned kLevels = Levels;

  PriorityRing() {
    for (std::size_t i = 0; i < N; ++i) next_[i] = static_cast<Index>(i + 1 < N ? i + 1 : kNil);
    free_ = 0;
    for (unsigned l = 0; l < Levels; ++l) head_[l] = tail_[l] = kNil;
  }
  ~PriorityRing() { clear(); }
  PriorityRing(const PriorityRing&) = delete;
  PriorityRing& operator=(const PriorityRing&) = delete;

  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == N; }
  std::size_t high_water() const { return high_water_; }
  std::uint64_t rejected() const { return rejected_; }
  std::size_t size_at(unsigned level) const { return level < Levels ? per_level_[level] : 0; }

  // Appends to `level` (0 = lowest priority). Errors: full (nothing changed, `item`
  // not taken), invalid_argument (level >= Levels).
  // `item` is anything T is made from; it is used only when there is room.
  template <typename U = T>
    requires std::is_convertible_v<U&&, T>
  [[nodiscard]] Errc push(U&& item, unsigned level = 0) {
    if (level >= Levels) return Errc::invalid_argument;
    if (free_ == kNil) {
      ++rejected_;
      return Errc::full;
    }
    Index i = free_;
    free_ = next_[i];
    new (slot(i)) T(std::forward<U>(item));
    next_[i] = kNil;
    if (tail_[level] == kNil) {
      head_[level] = i;
    } else {
      next_[tail_[level]] = i;
    }
    tail_[level] = i;
    occupied_ |= 1u << level;
    ++per_level_[level];
    if (++count_ > high_water_) high_water_ = count_;
    return Errc::ok;
  }

  // The oldest item of the highest non-empty level; not_found when empty.
  Result<T> pop() {
    if (occupied_ == 0) return Errc::not_found;
    unsigned level = 31u - static_cast<unsigned>(std::countl_zero(occupied_));
    return unlink(level, kNil, head_[level]);
  }

  // The level pop() would take from next; contract violation when empty.
  unsigned top_level() const {
    if (occupied_ == 0) panic("PriorityRing::top_level() on an empty ring");
    return 31u - static_cast<unsigned>(std::countl_zero(occupied_));
  }

  // Removes the first item matching pred, searching the highest level first and
  // oldest first within a level. not_found when none matches. O(size).
  template <typename Pred>
  Result<T> take_first(Pred&& pred) {
    for (unsigned l = Levels; l-- > 0;) {
      Index prev = kNil;
      for (Index i = head_[l]; i != kNil; prev = i, i = next_[i]) {
        if (pred(static_cast<const T&>(*slot(i)))) return unlink(l, prev, i);
      }
    }
    return Errc::not_found;
  }

  // Calls f(item, level) for every item, highest level first, oldest first.
  template <typename F>
  void for_each(F&& f) {
    for (unsigned l = Levels; l-- > 0;)
      for (Index i = head_[l]; i != kNil; i = next_[i]) f(*slot(i), l);
  }

  void clear() {
    while (!empty()) (void)pop();
  }

 private:
  Result<T> unlink(unsigned level, Index prev, Index i) {
    if (prev == kNil) {
      head_[level] = next_[i];
    } else {
      next_[prev] = next_[i];
    }
    if (tail_[level] == i) tail_[level] = prev;
    if (head_[level] == kNil) occupied_ &= ~(1u << level);
    Result<T> out(std::move(*slot(i)));
    slot(i)->~T();
    next_[i] = free_;
    free_ = i;
    --per_level_[level];
    --count_;
    return out;
  }
  T* slot(Index i) { return std::launder(reinterpret_cast<T*>(storage_ + sizeof(T) * i)); }
  const T* slot(Index i) const {
    return std::launder(reinterpret_cast<const T*>(storage_ + sizeof(T) * i));
  }

  alignas(T) unsigned char storage_[sizeof(T) * N];
  Index next_[N];
  Index head_[Levels];
  Index tail_[Levels];
  std::uint16_t per_level_[Levels] = {};
  Index free_ = kNil;
  std::uint32_t occupied_ = 0;
  std::size_t count_ = 0;
  std::size_t high_water_ = 0;
  std::uint64_t rejected_ = 0;
};

}  // namespace tern
