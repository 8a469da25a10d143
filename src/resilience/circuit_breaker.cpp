#include "tern/resilience/circuit_breaker.hpp"

#include <bit>
#include <cstring>

namespace tern {

namespace {

constexpr std::uint8_t kMaxWindow = 64;

std::uint64_t low_bits(unsigned n) { return n >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << n) - 1; }

}  // namespace

const char* breaker_state_name(BreakerState s) {
  switch (s) {
    case BreakerState::closed: return "closed";
    case BreakerState::open: return "open";
    case BreakerState::half_open: return "half_open";
  }
  return "unknown";
}

Errc validate(const BreakerConfig& c) {
  if (c.window > kMaxWindow || c.min_calls > c.window) return Errc::invalid_argument;
  if (c.window > 0 && (c.failure_rate_percent < 1 || c.failure_rate_percent > 100)) {
    return Errc::invalid_argument;
  }
  // Longer than Duration::max() would overflow when added to the time now.
  if (c.open_duration <= Duration::zero() || c.open_duration > Duration::max() ||
      c.slow_call <= Duration::zero()) {
    return Errc::invalid_argument;
  }
  if (c.half_open_calls == 0) return Errc::invalid_argument;
  return Errc::ok;
}

// ---- CircuitBreaker ----

CircuitBreaker::CircuitBreaker(const BreakerConfig& config) : config_(config) {
  if (validate(config) != Errc::ok) panic("CircuitBreaker: invalid config");
}

Errc CircuitBreaker::allow(Instant now, std::uint32_t* admitted_in) {
  // The observer may call back in: the switch reads what enter() left.
  if (state_ == BreakerState::open && now >= open_until_) enter(BreakerState::half_open, now);
  switch (state_) {
    case BreakerState::closed:
      ++counters_.admitted;
      if (admitted_in) *admitted_in = trial_period_;
      return Errc::ok;
    case BreakerState::open:
      ++counters_.rejected;
      return Errc::circuit_open;
    case BreakerState::half_open:
      if (trials_admitted_ >= config_.half_open_calls &&
          now - half_open_since_ >= config_.open_duration) {
        // Trials that never reported: forget them rather than stay half-open forever.
        ++counters_.trials_expired;
        trials_admitted_ = 0;
        trial_successes_ = 0;
        next_trial_period();
        half_open_since_ = now;
      }
      if (trials_admitted_ < config_.half_open_calls) {
        ++trials_admitted_;
        ++counters_.admitted;
        if (admitted_in) *admitted_in = trial_period_;
        return Errc::ok;
      }
      ++counters_.rejected;
      return Errc::circuit_open;
  }
  return Errc::circuit_open;
}

// A call admitted outside the current trials (while closed, or in trials that expired)
// that reports while a trial is out must not be taken for that trial.
bool CircuitBreaker::stale_in_half_open(std::uint32_t admitted_in) const {
  return admitted_in != kUnknownTrialPeriod && admitted_in != trial_period_;
}

void CircuitBreaker::next_trial_period() {
  if (++trial_period_ == kUnknownTrialPeriod) trial_period_ = 0;
}

void CircuitBreaker::record_success(Instant now, Duration elapsed, std::uint32_t admitted_in) {
  if (elapsed > config_.slow_call) {
    ++counters_.slow_calls;
    record_failure(now, admitted_in);
    return;
  }
  switch (state_) {
    case BreakerState::closed:
      ++counters_.successes;
      consecutive_ = 0;
      if (config_.window > 0) {
        outcomes_ <<= 1;
        if (seen_ < config_.window) ++seen_;
      }
      return;
    case BreakerState::open:
      ++counters_.ignored;
      return;
    case BreakerState::half_open:
      if (trial_successes_ >= trials_admitted_ || stale_in_half_open(admitted_in)) {
        ++counters_.ignored;  // not a trial's: a call admitted earlier
        return;
      }
      ++counters_.successes;
      if (++trial_successes_ >= config_.half_open_calls) enter(BreakerState::closed, now);
      return;
  }
}

void CircuitBreaker::record_failure(Instant now, std::uint32_t admitted_in) {
  switch (state_) {
    case BreakerState::closed:
      ++counters_.failures;
      if (consecutive_ < 0xFFFF) ++consecutive_;
      if (config_.window > 0) {
        outcomes_ = (outcomes_ << 1) | 1u;
        if (seen_ < config_.window) ++seen_;
      }
      if ((config_.failure_threshold > 0 && consecutive_ >= config_.failure_threshold) ||
          rate_tripped()) {
        enter(BreakerState::open, now);
      }
      return;
    case BreakerState::open:
      ++counters_.ignored;
      return;
    case BreakerState::half_open:
      if (trial_successes_ >= trials_admitted_ || stale_in_half_open(admitted_in)) {
        ++counters_.ignored;  // not a trial's: a call admitted earlier
        return;
      }
      ++counters_.failures;
      enter(BreakerState::open, now);
      return;
  }
}

void CircuitBreaker::record_abandoned(std::uint32_t admitted_in) {
  ++counters_.abandoned;
  if (state_ == BreakerState::half_open && admitted_in == trial_period_ &&
      trials_admitted_ > trial_successes_) {
    --trials_admitted_;
  }
}

BreakerState CircuitBreaker::state(Instant now) {
  if (state_ == BreakerState::open && now >= open_until_) enter(BreakerState::half_open, now);
  return state_;
}

void CircuitBreaker::reset() {
  if (state_ != BreakerState::closed) {
    enter(BreakerState::closed, Instant());
  } else {
    clear_window();
  }
}

void CircuitBreaker::reconfigure(const BreakerConfig& config) {
  if (validate(config) != Errc::ok) panic("CircuitBreaker: invalid config");
  config_ = config;
  reset();
}

void CircuitBreaker::set_observer(Observer observer) {
  if (notifying_ != 0) panic("CircuitBreaker: set_observer() from inside the observer");
  observer_ = std::move(observer);
}

std::uint8_t CircuitBreaker::window_outcomes() const { return seen_; }

std::uint8_t CircuitBreaker::window_failures() const {
  return static_cast<std::uint8_t>(std::popcount(outcomes_ & low_bits(seen_)));
}

bool CircuitBreaker::rate_tripped() const {
  if (config_.window == 0) return false;
  const unsigned need = config_.min_calls == 0 ? config_.window : config_.min_calls;
  if (seen_ < need) return false;
  return unsigned{window_failures()} * 100u >= unsigned{config_.failure_rate_percent} * seen_;
}

void CircuitBreaker::clear_window() {
  outcomes_ = 0;
  seen_ = 0;
  consecutive_ = 0;
}

// Makes the state change complete before the observer runs, so that it may call back in.
void CircuitBreaker::enter(BreakerState to, Instant now) {
  const BreakerState from = state_;
  state_ = to;
  trials_admitted_ = 0;
  trial_successes_ = 0;
  next_trial_period();
  switch (to) {
    case BreakerState::open:
      ++counters_.opened;
      open_until_ = now + config_.open_duration;
      clear_window();
      break;
    case BreakerState::half_open:
      ++counters_.half_opened;
      half_open_since_ = now;
      break;
    case BreakerState::closed:
      ++counters_.closed;
      clear_window();
      break;
  }
  if (observer_) {
    ++notifying_;
    observer_(from, to);
    --notifying_;
  }
}

// ---- BreakerSet ----

namespace {

// FNV-1a over the key's bytes, seeded differently for numbers and strings.
std::uint32_t hash_bytes(const unsigned char* p, std::size_t n, bool numeric) {
  std::uint32_t h = numeric ? 0x811c9dc5u ^ 0x5bd1e995u : 0x811c9dc5u;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x01000193u;
  }
  return h;
}

// The bytes a key is stored and compared as: the text, or the number little-endian.
struct KeyBytes {
  unsigned char bytes[8];
  const unsigned char* data;
  std::size_t size;
  explicit KeyBytes(const BreakerKey& k) {
    if (k.is_number()) {
      std::uint64_t v = k.number();
      for (unsigned char& b : bytes) {
        b = static_cast<unsigned char>(v & 0xFF);
        v >>= 8;
      }
      data = bytes;
      size = sizeof(bytes);
    } else {
      data = reinterpret_cast<const unsigned char*>(k.text().data());
      size = k.text().size();
    }
  }
};

}  // namespace

BreakerSetBase::BreakerSetBase(Entry* entries, std::size_t capacity, const BreakerConfig& defaults)
    : entries_(entries), capacity_(capacity), defaults_(defaults) {
  if (capacity == 0) panic("BreakerSet capacity out of range");
  if (validate(defaults) != Errc::ok) panic("BreakerSet: invalid default config");
  for (std::size_t i = 0; i < capacity_; ++i) {
    Entry& e = entries_[i];
    e.breaker.reconfigure(defaults_);
    // Entries never move, so each breaker's observer can name its entry once, here.
    e.breaker.set_observer([this, &e](BreakerState from, BreakerState to) { notify(e, from, to); });
  }
}

BreakerKey BreakerSetBase::key_of(const Entry& e) {
  if (!e.numeric) return BreakerKey(std::string_view(e.key, e.key_len));
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(e.key[i]);
  return BreakerKey(v);
}

void BreakerSetBase::notify(const Entry& e, BreakerState from, BreakerState to) {
  if (!e.used || !observer_) return;  // erase() resets silently
  ++notifying_;
  observer_(key_of(e), from, to);
  --notifying_;
}

void BreakerSetBase::set_observer(Observer observer) {
  if (notifying_ != 0) panic("BreakerSet: set_observer() from inside the observer");
  observer_ = std::move(observer);
}

BreakerSetBase::Entry* BreakerSetBase::lookup(BreakerKey key, std::uint32_t hash) {
  const KeyBytes kb(key);
  for (std::size_t i = 0; i < capacity_; ++i) {
    Entry& e = entries_[i];
    if (e.used && e.hash == hash && e.numeric == key.is_number() && e.key_len == kb.size &&
        std::memcmp(e.key, kb.data, kb.size) == 0) {
      return &e;
    }
  }
  return nullptr;
}

Result<BreakerSetBase::Entry*> BreakerSetBase::find_or_insert(BreakerKey key) {
  const KeyBytes kb(key);
  if (kb.size == 0) return Errc::invalid_argument;
  if (kb.size > kBreakerKeyMax) return Errc::too_large;
  const std::uint32_t hash = hash_bytes(kb.data, kb.size, key.is_number());
  if (Entry* e = lookup(key, hash)) return e;
  for (std::size_t i = 0; i < capacity_; ++i) {
    Entry& e = entries_[i];
    if (e.used) continue;
    std::memcpy(e.key, kb.data, kb.size);
    e.key_len = static_cast<std::uint8_t>(kb.size);
    e.numeric = key.is_number();
    e.hash = hash;
    e.used = true;
    ++size_;
    ++stats_.inserted;
    return &e;
  }
  ++stats_.full;
  return Errc::full;
}

CircuitBreaker* BreakerSetBase::find(BreakerKey key) {
  const KeyBytes kb(key);
  if (kb.size == 0 || kb.size > kBreakerKeyMax) return nullptr;
  Entry* e = lookup(key, hash_bytes(kb.data, kb.size, key.is_number()));
  return e ? &e->breaker : nullptr;
}

Result<CircuitBreaker*> BreakerSetBase::insert(BreakerKey key) {
  Result<Entry*> e = find_or_insert(key);
  if (!e) return e.error();
  return &(*e)->breaker;
}

Result<CircuitBreaker*> BreakerSetBase::configure(BreakerKey key, const BreakerConfig& config) {
  if (validate(config) != Errc::ok) return Errc::invalid_argument;
  Result<Entry*> e = find_or_insert(key);
  if (!e) return e.error();
  CircuitBreaker& b = (*e)->breaker;
  b.reconfigure(config);  // may notify (open -> closed); the entry stays where it is
  return &b;
}

Errc BreakerSetBase::erase(BreakerKey key) {
  const KeyBytes kb(key);
  if (kb.size == 0 || kb.size > kBreakerKeyMax) return Errc::not_found;
  Entry* e = lookup(key, hash_bytes(kb.data, kb.size, key.is_number()));
  if (e == nullptr) return Errc::not_found;
  e->used = false;  // first, so that the reset below is not reported
  e->breaker.reconfigure(defaults_);
  // The next target to take this entry must not inherit this one's history.
  e->breaker.clear_counters();
  --size_;
  ++stats_.erased;
  return Errc::ok;
}

Errc BreakerSetBase::allow(BreakerKey key, Instant now, std::uint32_t* admitted_in) {
  Result<Entry*> e = find_or_insert(key);
  if (!e) return e.error();
  const Errc r = (*e)->breaker.allow(now, admitted_in);
  if (r == Errc::circuit_open) ++stats_.rejected;
  return r;
}

Errc BreakerSetBase::record_success(BreakerKey key, Instant now, Duration elapsed,
                                    std::uint32_t admitted_in) {
  CircuitBreaker* b = find(key);
  if (b == nullptr) return Errc::not_found;
  b->record_success(now, elapsed, admitted_in);
  return Errc::ok;
}

Errc BreakerSetBase::record_failure(BreakerKey key, Instant now, std::uint32_t admitted_in) {
  CircuitBreaker* b = find(key);
  if (b == nullptr) return Errc::not_found;
  b->record_failure(now, admitted_in);
  return Errc::ok;
}

Errc BreakerSetBase::record_abandoned(BreakerKey key, std::uint32_t admitted_in) {
  CircuitBreaker* b = find(key);
  if (b == nullptr) return Errc::not_found;
  b->record_abandoned(admitted_in);
  return Errc::ok;
}

Result<BreakerState> BreakerSetBase::state(BreakerKey key, Instant now) {
  CircuitBreaker* b = find(key);
  if (b == nullptr) return Errc::not_found;
  return b->state(now);
}

}  // namespace tern
