// Monotonic time in microseconds: Instant is a point, Duration a span (both int64).
//
//   tern::Instant deadline = reactor.now() + tern::ms(250);
//
// A ManualClock drives reactors and tables in tests without sleeping.
#pragma once

#include <compare>
#include <cstdint>

namespace tern {

struct Duration {
  std::int64_t us = 0;

  constexpr Duration() = default;
  constexpr explicit Duration(std::int64_t micros) : us(micros) {}
  static constexpr Duration max() { return Duration(INT64_MAX / 4); }
  static constexpr Duration zero() { return Duration(0); }

  constexpr std::int64_t micros() const { return us; }
  constexpr std::int64_t millis() const { return us / 1000; }
  constexpr Duration operator+(Duration o) const { return Duration(us + o.us); }
  constexpr Duration operator-(Duration o) const { return Duration(us - o.us); }
  constexpr Duration operator*(std::int64_t k) const { return Duration(us * k); }
  constexpr Duration operator/(std::int64_t k) const { return Duration(us / k); }
  constexpr Duration operator-() const { return Duration(-us); }
  constexpr Duration& operator+=(Duration o) { us += o.us; return *this; }
  constexpr Duration& operator-=(Duration o) { us -= o.us; return *this; }
  constexpr auto operator<=>(const Duration&) const = default;
};

struct Instant {
  std::int64_t us = 0;

  constexpr Instant() = default;
  constexpr explicit Instant(std::int64_t micros) : us(micros) {}
  // Later than any deadline anyone arms ("never").
  static constexpr Instant never() { return Instant(INT64_MAX / 2); }

  constexpr std::int64_t micros() const { return us; }
  // Saturating: a sum that would overflow is never() (or the earliest Instant), so
  // `now + timeout` with a timeout too long to count (Duration(INT64_MAX)) is a deadline
  // that never comes, not a wrap into the past.
  constexpr Instant operator+(Duration d) const {
    std::int64_t sum = 0;
    if (__builtin_add_overflow(us, d.us, &sum)) [[unlikely]] {
      return d.us > 0 ? never() : Instant(INT64_MIN);
    }
    return Instant(sum);
  }
  constexpr Instant operator-(Duration d) const {
    std::int64_t diff = 0;
    if (__builtin_sub_overflow(us, d.us, &diff)) [[unlikely]] {
      return d.us < 0 ? never() : Instant(INT64_MIN);
    }
    return Instant(diff);
  }
  constexpr Duration operator-(Instant o) const { return Duration(us - o.us); }
  constexpr Instant& operator+=(Duration d) { return *this = *this + d; }
  constexpr auto operator<=>(const Instant&) const = default;
};

constexpr Duration us(std::int64_t n) { return Duration(n); }
constexpr Duration ms(std::int64_t n) { return Duration(n * 1000); }
constexpr Duration seconds(std::int64_t n) { return Duration(n * 1000000); }

// A clock that moves only when told: tests and simulations.
class ManualClock {
 public:
  explicit ManualClock(Instant start = Instant(0)) : now_(start) {}
  Instant now() const { return now_; }
  void advance(Duration d) { now_ += d; }
  void set(Instant t) { now_ = t; }

 private:
  Instant now_;
};

}  // namespace tern
