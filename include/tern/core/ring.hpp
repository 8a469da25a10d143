// Ring<T, N>: a fixed-capacity FIFO. push() returns Errc::full when N items are held and
// keeps them all; take_first(pred) removes the first item matching a predicate and keeps
// the others in order (selective receive). RingBase<T> takes any capacity.
//
//   tern::Ring<Event, 32> q;
//   if (q.push(ev) == tern::Errc::full) count_drop();
//   while (auto e = q.pop()) handle(*e);
//   auto urgent = q.take_first([](const Event& e) { return e.urgent; });
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "tern/core/errc.hpp"

namespace tern {

template <typename T>
class RingBase {
 public:
  RingBase(const RingBase&) = delete;
  RingBase& operator=(const RingBase&) = delete;

  std::size_t size() const { return count_; }
  std::size_t capacity() const { return capacity_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == capacity_; }
  // How many pushes were refused with Errc::full since construction.
  std::uint64_t rejected() const { return rejected_; }
  std::size_t high_water() const { return high_water_; }

  // Appends. Errors: full (nothing is changed, the item is not consumed).
  [[nodiscard]] Errc push(T&& item) { return emplace(std::move(item)); }
  [[nodiscard]] Errc push(const T& item) { return emplace(item); }

  template <typename... A>
  [[nodiscard]] Errc emplace(A&&... args) {
    if (full()) {
      ++rejected_;
      return Errc::full;
    }
    new (slot(index(count_))) T(std::forward<A>(args)...);
    ++count_;
    if (count_ > high_water_) high_water_ = count_;
    return Errc::ok;
  }

  // Removes and returns the oldest item; Errc::not_found when empty.
  Result<T> pop() {
    if (empty()) return Errc::not_found;
    T* p = slot(head_);
    Result<T> out(std::move(*p));
    p->~T();
    head_ = index(1);
    --count_;
    return out;
  }

  // The oldest item; contract violation (panic) when empty.
  T& front() {
    if (empty()) panic("Ring::front() on an empty ring");
    return *slot(head_);
  }
  // The i-th oldest item (0 = front); contract violation when out of range.
  T& at(std::size_t i) {
    if (i >= count_) panic("Ring::at() out of range");
    return *slot(index(i));
  }

  // Removes the first item (oldest first) for which pred(item) is true, keeping
  // the order of the rest. Errc::not_found when none matches. O(size).
  template <typename Pred>
  Result<T> take_first(Pred&& pred) {
    for (std::size_t i = 0; i < count_; ++i) {
      T* p = slot(index(i));
      if (!pred(static_cast<const T&>(*p))) continue;
      Result<T> out(std::move(*p));
      // Close the gap by shifting the younger items one place towards the front.
      for (std::size_t j = i; j + 1 < count_; ++j) *slot(index(j)) = std::move(*slot(index(j + 1)));
      slot(index(count_ - 1))->~T();
      --count_;
      return out;
    }
    return Errc::not_found;
  }

  // Removes every item (their destructors run).
  void clear() {
    while (!empty()) {
      slot(head_)->~T();
      head_ = index(1);
      --count_;
    }
  }

 protected:
  RingBase(void* storage, std::size_t capacity)
      : storage_(static_cast<T*>(storage)), capacity_(capacity) {}
  ~RingBase() { clear(); }

 private:
  std::size_t index(std::size_t offset) const {
    std::size_t i = head_ + offset;
    return i >= capacity_ ? i - capacity_ : i;
  }
  T* slot(std::size_t i) { return std::launder(storage_ + i); }

  T* storage_;
  std::size_t capacity_;
  std::size_t head_ = 0;
  std::size_t count_ = 0;
  std::size_t high_water_ = 0;
  std::uint64_t rejected_ = 0;
};

// A ring over storage the caller provides (capacity chosen at run time, e.g. from a
// config struct read once). `storage` must hold `capacity` suitably aligned Ts and
// outlive the ring.
template <typename T>
class RingBuffer : public RingBase<T> {
 public:
  RingBuffer(void* storage, std::size_t capacity) : RingBase<T>(storage, capacity) {
    if (capacity == 0) panic("RingBuffer capacity must be positive");
  }
};

template <typename T, std::size_t N>
class Ring : public RingBase<T> {
  static_assert(N > 0, "Ring capacity must be positive");

 public:
  Ring() : RingBase<T>(storage_, N) {}
  // Empties the ring here, while storage_ still exists (~RingBase runs after it is gone).
  ~Ring() { this->clear(); }
  static constexpr std::size_t kCapacity = N;

 private:
  alignas(T) unsigned char storage_[sizeof(T) * N];
};

}  // namespace tern
