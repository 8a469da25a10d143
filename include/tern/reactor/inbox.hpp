// Inbox<T, N>: the only way into a reactor from another thread or an interrupt handler.
// A lock-free single-producer/single-consumer ring plus the port's wake-up: the producer
// push()es (never blocks, never allocates; Errc::full when N items wait), and the
// reactor delivers the items on its own thread, in order, to the handler.
//
//   tern::Inbox<Reading, 16> readings(reactor, [](Reading& r) { filter.add(r); });
//   // in the ADC interrupt handler:
//   (void)readings.push(Reading{adc_value()});
//
// One producer per Inbox: two threads (or two interrupt priorities) need two Inboxes.
// See examples/cortex_m for an Inbox fed from a timer interrupt.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "tern/core/errc.hpp"
#include "tern/core/inplace_function.hpp"

namespace tern {

class Reactor;

// The part of an Inbox the reactor sees: it drains every registered inbox after a wake.
class InboxBase {
 public:
  InboxBase(const InboxBase&) = delete;
  InboxBase& operator=(const InboxBase&) = delete;

  // Items refused with Errc::full since construction (readable from any thread).
  std::uint32_t rejected() const { return rejected_.load(std::memory_order_relaxed); }

 protected:
  explicit InboxBase(Reactor& reactor);
  ~InboxBase();
  // Producer side: tells the reactor there is something to drain.
  void notify();
  void count_rejected() { rejected_.fetch_add(1, std::memory_order_relaxed); }

 private:
  friend class Reactor;
  // Delivers what is waiting; returns how many items were handled.
  virtual std::size_t drain() = 0;

  Reactor& reactor_;
  InboxBase* next_ = nullptr;
  std::atomic<std::uint32_t> rejected_{0};
};

template <typename T, std::size_t N, std::size_t HandlerBytes = 2 * sizeof(void*)>
class Inbox final : public InboxBase {
  static_assert(N >= 1 && N < 0x7FFFFFFF, "Inbox capacity out of range");

 public:
  using Handler = InplaceFunction<void(T&), HandlerBytes>;

  Inbox(Reactor& reactor, Handler handler) : InboxBase(reactor), handler_(std::move(handler)) {}
  ~Inbox() {
    std::uint32_t end = tail_.load(std::memory_order_acquire);
    for (std::uint32_t h = head_.load(std::memory_order_relaxed); h != end; h = step(h)) slot(h)->~T();
  }

  // Producer side (one thread or one interrupt priority). Errors: full (counted; the
  // item is not taken and nothing queued is lost).
  // `item` is anything T is made from (a T, moved or copied; a lambda for a callback;
  // a volatile register value); it is used only when there is room.
  template <typename U = T>
    requires std::is_convertible_v<U&&, T>
  [[nodiscard]] Errc push(U&& item) {
    std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    if (distance(head_.load(std::memory_order_acquire), tail) >= N) {
      count_rejected();
      return Errc::full;
    }
    new (slot(tail)) T(std::forward<U>(item));
    tail_.store(step(tail), std::memory_order_release);
    notify();
    return Errc::ok;
  }

  // Consumer side view (approximate from other threads).
  std::size_t size() const {
    return distance(head_.load(std::memory_order_acquire), tail_.load(std::memory_order_acquire));
  }

 private:
  std::size_t drain() override {
    std::size_t n = 0;
    // Only what was there when draining started, so a handler that pushes again cannot
    // hold the reactor here.
    std::uint32_t end = tail_.load(std::memory_order_acquire);
    for (std::uint32_t h = head_.load(std::memory_order_relaxed); h != end; h = step(h)) {
      T item(std::move(*slot(h)));
      slot(h)->~T();
      head_.store(step(h), std::memory_order_release);
      handler_(item);
      ++n;
    }
    return n;
  }
  // Positions run over [0, 2N) so that full (distance N) and empty (0) differ.
  static constexpr std::uint32_t kWrap = 2 * static_cast<std::uint32_t>(N);
  static std::uint32_t step(std::uint32_t i) { return i + 1 == kWrap ? 0 : i + 1; }
  static std::uint32_t distance(std::uint32_t head, std::uint32_t tail) {
    return tail >= head ? tail - head : tail + kWrap - head;
  }
  T* slot(std::uint32_t i) {
    return std::launder(reinterpret_cast<T*>(storage_ + sizeof(T) * (i >= N ? i - N : i)));
  }

  Handler handler_;
  alignas(T) unsigned char storage_[sizeof(T) * N];
  std::atomic<std::uint32_t> head_{0};  // written by the reactor
  std::atomic<std::uint32_t> tail_{0};  // written by the producer
};

}  // namespace tern
