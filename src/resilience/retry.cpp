#include "tern/resilience/retry.hpp"

namespace tern {

namespace {

constexpr double kMaxMultiplier = 1000.0;
constexpr std::uint32_t kOne = 1u << 16;  // 1.0 in the multiplier's fixed point

}  // namespace

const char* jitter_name(Jitter j) {
  switch (j) {
    case Jitter::none: return "none";
    case Jitter::full: return "full";
    case Jitter::equal: return "equal";
    case Jitter::decorrelated: return "decorrelated";
  }
  return "unknown";
}

bool retry_on_transient(Errc e) {
  switch (e) {
    case Errc::timeout:
    case Errc::io:
    case Errc::failed:
    case Errc::no_reply:
    case Errc::busy:
    case Errc::closed:
    case Errc::dns:
      return true;
    default:
      return false;
  }
}

Errc validate(const RetryPolicy& p) {
  if (p.max_attempts == 0) return Errc::invalid_argument;
  if (p.base_delay < Duration::zero() || p.max_delay < p.base_delay) {
    return Errc::invalid_argument;
  }
  // Written so that NaN fails too.
  if (!(p.multiplier >= 1.0 && p.multiplier <= kMaxMultiplier)) return Errc::invalid_argument;
  if (p.jitter != Jitter::none && p.jitter != Jitter::full && p.jitter != Jitter::equal &&
      p.jitter != Jitter::decorrelated) {
    return Errc::invalid_argument;
  }
  if (p.attempt_timeout <= Duration::zero()) return Errc::invalid_argument;
  if (p.retry_on == nullptr) return Errc::invalid_argument;
  return Errc::ok;
}

Backoff::Backoff(Duration base_delay, Duration max_delay, double multiplier, Jitter jitter)
    : jitter_(jitter) {
  // Clamped so that 3 * previous (decorrelated) and the ceiling's products cannot overflow.
  const std::int64_t cap = Duration::max().micros();
  base_us_ = base_delay.micros() < 0 ? 0 : base_delay.micros();
  if (base_us_ > cap) base_us_ = cap;
  max_us_ = max_delay.micros() < base_us_ ? base_us_ : max_delay.micros();
  if (max_us_ > cap) max_us_ = cap;
  if (!(multiplier >= 1.0)) multiplier = 1.0;
  if (multiplier > kMaxMultiplier) multiplier = kMaxMultiplier;
  multiplier_q16_ = static_cast<std::uint32_t>(multiplier * kOne + 0.5);
  previous_us_ = base_us_;
}

Duration Backoff::ceiling(std::uint32_t k) const {
  std::int64_t c = base_us_;
  // Stops growing at max_delay, so the loop is short for any real k.
  for (std::uint32_t i = 0; i < k && c < max_us_ && multiplier_q16_ > kOne; ++i) {
    if (c > INT64_MAX / multiplier_q16_) {
      c = max_us_;
      break;
    }
    c = (c * multiplier_q16_) >> 16;
  }
  return Duration(c < max_us_ ? c : max_us_);
}

Duration Backoff::next(Rng& rng) {
  const std::int64_t c = ceiling(retries_).micros();
  std::int64_t d = c;
  switch (jitter_) {
    case Jitter::none:
      break;
    case Jitter::full:
      d = rng.between(0, c);
      break;
    case Jitter::equal: {
      const std::int64_t half = c / 2;
      d = (c - half) + rng.between(0, half);
      break;
    }
    case Jitter::decorrelated: {
      d = rng.between(base_us_, previous_us_ * 3);
      if (d > max_us_) d = max_us_;
      previous_us_ = d;
      break;
    }
  }
  ++retries_;
  return Duration(d);
}

void Backoff::reset() {
  retries_ = 0;
  previous_us_ = base_us_;
}

}  // namespace tern
