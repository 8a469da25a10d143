// CircuitBreaker: stops calling a target that keeps failing, and probes it again later.
// closed (calls flow) -> open (calls fail at once with Errc::circuit_open) after N
// consecutive failures, or a failure rate over the last W outcomes once M were seen ->
// half_open after the open duration (exactly P trial calls admitted) -> closed when all
// P succeed, open again when any fails. Time comes in as arguments (no clock inside), so
// it is portable and trivially testable. BreakerSet<N> keeps one breaker per target.
//
//   tern::BreakerSet<16> breakers(tern::BreakerConfig{});    // 5 failures, 60 s open
//   std::uint32_t period = 0;                                   // which trials, if any
//   if (breakers.allow("retriever", now, &period) != tern::Errc::ok) return fallback();
//   ... make the call ...
//   (void)breakers.record_success("retriever", now, elapsed, period);  // or record_failure()
//
// Every call that allow() admitted must be followed by exactly one record_*(): the
// half-open state counts its trials by them. Pass what allow() noted to the record_*()
// calls, so that a late outcome of a call admitted before the breaker opened is not
// taken for a trial's. A call that ended saying nothing about the target (cancelled,
// never sent) reports record_abandoned() with what allow() noted.
// See examples/scenario_rag.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"
#include "tern/core/inline_storage.hpp"
#include "tern/core/inplace_function.hpp"
#include "tern/core/time.hpp"

namespace tern {

enum class BreakerState : std::uint8_t { closed, open, half_open };

// "closed", "open", "half_open".
const char* breaker_state_name(BreakerState s);

struct BreakerConfig {
  // Consecutive failures (in closed) that open the breaker; 0 turns this rule off.
  std::uint16_t failure_threshold = 5;
  // W: outcomes remembered for the failure-rate rule, at most 64; 0 turns it off.
  std::uint8_t window = 0;
  // M: outcomes the window must hold before the rate is judged, 1..W; 0 means W.
  std::uint8_t min_calls = 0;
  // Opens when failures * 100 >= failure_rate_percent * outcomes (1..100).
  std::uint8_t failure_rate_percent = 50;
  // A success that took longer than this counts as a failure (Duration::max(): never).
  Duration slow_call = Duration::max();
  // How long the breaker stays open before it lets trial calls through.
  Duration open_duration = seconds(60);
  // P: trial calls admitted in half_open; all must succeed to close.
  std::uint16_t half_open_calls = 1;
};

// Returns ok, or invalid_argument: window > 64, min_calls > window,
// failure_rate_percent outside 1..100 with a window, open_duration or slow_call <= 0,
// open_duration over Duration::max(), half_open_calls 0.
Errc validate(const BreakerConfig& config);

struct BreakerCounters {
  Count admitted = 0;        // allow() said ok
  Count rejected = 0;        // allow() said circuit_open
  Count successes = 0;       // outcomes recorded as success
  Count failures = 0;        // outcomes recorded as failure (slow calls included)
  Count slow_calls = 0;      // successes counted as failures for their duration
  Count ignored = 0;         // outcomes that arrived while open, or in half_open
                                     // with no trial outstanding or from a call that was
                                     // not one of the trials (calls admitted earlier)
  Count trials_expired = 0;  // half-open trials that never reported (see allow())
  Count abandoned = 0;       // admitted calls reported by record_abandoned()
  Count opened = 0;          // transitions into open
  Count half_opened = 0;     // ... into half_open
  Count closed = 0;          // ... into closed
};

// What a record_*() call passes when it does not know what allow() noted for its call.
inline constexpr std::uint32_t kUnknownTrialPeriod = 0xFFFFFFFFu;

class CircuitBreaker {
 public:
  using Observer = InplaceFunction<void(BreakerState from, BreakerState to), 2 * sizeof(void*)>;

  // Starts closed. An invalid config (see validate()) is a contract violation (panic).
  explicit CircuitBreaker(const BreakerConfig& config = BreakerConfig{});
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // May a call go out now? Returns ok (counted admitted) or circuit_open (counted
  // rejected). An open breaker whose open duration has passed turns half_open here and
  // admits the first P calls. If all P trials were admitted but some never reported
  // within another open duration, they are forgotten and new trials admitted
  // (trials_expired), so a lost outcome cannot wedge the breaker.
  // `admitted_in` (optional): where to note the admitting trial period, for the
  // record_*() call of this call. Never kUnknownTrialPeriod.
  Errc allow(Instant now, std::uint32_t* admitted_in = nullptr);
  // The admitted call succeeded after `elapsed`; a success slower than slow_call is
  // recorded as a failure instead. In half_open, the P-th trial success closes it.
  // `admitted_in`: what allow() noted for the call. In half_open an outcome of a call
  // that was not admitted as one of the current trials (one admitted while closed,
  // reported while a probe is out) is ignored. kUnknownTrialPeriod: not known, so any
  // outcome while a trial is outstanding counts as that trial's.
  void record_success(Instant now, Duration elapsed = Duration::zero(),
                      std::uint32_t admitted_in = kUnknownTrialPeriod);
  // The admitted call failed. In closed this may open the breaker; in half_open it opens
  // again at once, unless the call was not one of the current trials (ignored; see
  // record_success() for `admitted_in`) or no trial is outstanding (ignored).
  void record_failure(Instant now, std::uint32_t admitted_in = kUnknownTrialPeriod);
  // The admitted call ended without an outcome that says anything about the target
  // (cancelled by its caller, never sent). `admitted_in`: what allow() noted for it. If
  // it was a trial of the current half-open period, the trial is given back, so the
  // next call may probe at once; otherwise nothing changes.
  void record_abandoned(std::uint32_t admitted_in);

  // The state at `now`: an open breaker whose open duration has passed turns half_open.
  BreakerState state(Instant now);
  // The state as of the last call, without looking at the time.
  BreakerState last_state() const { return state_; }
  // While open: when it turns half_open.
  Instant open_until() const { return open_until_; }

  // Back to closed with an empty window (counters are kept); notifies if it was not
  // closed.
  void reset();
  // reset() with a new config (invalid: panic).
  void reconfigure(const BreakerConfig& config);

  // Runs on every state change, after the breaker is consistent: it may call back into
  // this breaker. Calling set_observer() from inside the observer is a contract
  // violation (panic).
  void set_observer(Observer observer);

  const BreakerConfig& config() const { return config_; }
  const BreakerCounters& counters() const { return counters_; }
  std::uint16_t consecutive_failures() const { return consecutive_; }
  // The failure-rate window: outcomes held (<= W) and failures among them.
  std::uint8_t window_outcomes() const;
  std::uint8_t window_failures() const;
  // In half_open: trials admitted and trial successes so far.
  std::uint16_t trials_admitted() const { return trials_admitted_; }
  std::uint16_t trial_successes() const { return trial_successes_; }

 private:
  friend class BreakerSetBase;  // clears an erased target's counters

  void clear_counters() { counters_ = BreakerCounters{}; }
  bool stale_in_half_open(std::uint32_t admitted_in) const;
  void next_trial_period();
  void on_failure(Instant now);
  void enter(BreakerState to, Instant now);
  void clear_window();
  bool rate_tripped() const;

  BreakerConfig config_;
  BreakerCounters counters_;
  Observer observer_;
  Instant open_until_;
  Instant half_open_since_;
  std::uint64_t outcomes_ = 0;  // newest in bit 0; 1 = failure
  std::uint8_t seen_ = 0;       // outcomes in the window, saturating at W
  std::uint16_t consecutive_ = 0;
  std::uint16_t trials_admitted_ = 0;
  std::uint16_t trial_successes_ = 0;
  std::uint32_t trial_period_ = 0;  // bumped whenever a new set of trials may start
  std::uint8_t notifying_ = 0;
  BreakerState state_ = BreakerState::closed;
};

// The longest BreakerSet key, in bytes.
inline constexpr std::size_t kBreakerKeyMax = 48;

// Names a target: a short string ("api.example.com:443", "retriever", a request type) or
// an integer (an AgentId). A view: the set copies what it keeps. The string "7" and the
// number 7 are different targets.
class BreakerKey {
 public:
  BreakerKey(std::string_view text) : text_(text) {}  // NOLINT: implicit by design
  BreakerKey(const char* text)                        // NOLINT
      : text_(text == nullptr ? std::string_view() : std::string_view(text)) {}
  template <std::integral I>
    requires(!std::same_as<I, bool>)
  BreakerKey(I number)  // NOLINT
      : number_(static_cast<std::uint64_t>(number)), numeric_(true) {}

  bool is_number() const { return numeric_; }
  std::uint64_t number() const { return number_; }
  std::string_view text() const { return text_; }

 private:
  std::string_view text_;
  std::uint64_t number_ = 0;
  bool numeric_ = false;
};

struct BreakerSetStats {
  Count inserted = 0;  // targets added
  Count erased = 0;
  Count full = 0;      // new targets refused: the table was full
  Count rejected = 0;  // calls refused with circuit_open, all targets together
};

// The capacity-free part; BreakerSet<N> holds the entries inline. Lookup is a scan of
// the N entries comparing a 32-bit hash first: meant for tens of targets.
class BreakerSetBase {
 public:
  using Observer = InplaceFunction<void(BreakerKey target, BreakerState from, BreakerState to),
                                   2 * sizeof(void*)>;
  struct Entry;

  // Every entry starts with `defaults` (invalid: panic).
  BreakerSetBase(Entry* entries, std::size_t capacity, const BreakerConfig& defaults);
  BreakerSetBase(const BreakerSetBase&) = delete;
  BreakerSetBase& operator=(const BreakerSetBase&) = delete;

  // CircuitBreaker::allow() for `key`, adding the target (with the defaults) if unknown.
  // Returns ok or circuit_open; full (unknown target, every entry in use: counted,
  // nothing else changes), too_large (key longer than kBreakerKeyMax), invalid_argument
  // (empty text key).
  Errc allow(BreakerKey key, Instant now, std::uint32_t* admitted_in = nullptr);
  // CircuitBreaker::record_*() for `key`. Errors: not_found (unknown target: nothing is
  // added).
  Errc record_success(BreakerKey key, Instant now, Duration elapsed = Duration::zero(),
                      std::uint32_t admitted_in = kUnknownTrialPeriod);
  Errc record_failure(BreakerKey key, Instant now,
                      std::uint32_t admitted_in = kUnknownTrialPeriod);
  Errc record_abandoned(BreakerKey key, std::uint32_t admitted_in);
  // The target's state at `now`. Errors: not_found.
  Result<BreakerState> state(BreakerKey key, Instant now);

  // The target's breaker, or nullptr (nothing is added).
  CircuitBreaker* find(BreakerKey key);
  // The target's breaker, added with the defaults if unknown. Errors: full, too_large,
  // invalid_argument (as allow()).
  Result<CircuitBreaker*> insert(BreakerKey key);
  // Gives one target its own config, adding it if unknown; a known target is reset.
  // Errors: full, too_large, invalid_argument (as allow(), or validate(config) failed).
  Result<CircuitBreaker*> configure(BreakerKey key, const BreakerConfig& config);
  // Forgets a target: its entry is free again, and a target that takes it later starts
  // with the defaults and zero counters. Errors: not_found.
  Errc erase(BreakerKey key);

  // Runs on every state change of any target, with the target's key (valid during the
  // call). Calling set_observer() from inside it is a contract violation (panic).
  void set_observer(Observer observer);

  // Calls f(BreakerKey, CircuitBreaker&) for every target.
  template <typename F>
  void for_each(F&& f) {
    for (std::size_t i = 0; i < capacity_; ++i) {
      if (entries_[i].used) f(key_of(entries_[i]), entries_[i].breaker);
    }
  }

  std::size_t size() const { return size_; }
  std::size_t capacity() const { return capacity_; }
  bool full() const { return size_ == capacity_; }
  const BreakerSetStats& stats() const { return stats_; }
  const BreakerConfig& defaults() const { return defaults_; }

  // Not API: the entry layout, public only so storage can be allocated for it.
  struct Entry {
    CircuitBreaker breaker;
    std::uint32_t hash = 0;
    std::uint8_t key_len = 0;
    bool numeric = false;
    bool used = false;
    char key[kBreakerKeyMax];
  };

 private:
  Entry* lookup(BreakerKey key, std::uint32_t hash);
  Result<Entry*> find_or_insert(BreakerKey key);
  static BreakerKey key_of(const Entry& e);
  void notify(const Entry& e, BreakerState from, BreakerState to);

  Entry* entries_;
  std::size_t capacity_;
  std::size_t size_ = 0;
  BreakerConfig defaults_;
  Observer observer_;
  BreakerSetStats stats_;
  std::uint8_t notifying_ = 0;
};

// One breaker per target, N targets, all with the same config unless configure()d.
template <std::size_t N>
class BreakerSet : private detail::InlineStorage<BreakerSetBase::Entry, N>, public BreakerSetBase {
  static_assert(N > 0, "BreakerSet needs at least one entry");

 public:
  static constexpr std::size_t kCapacity = N;
  explicit BreakerSet(const BreakerConfig& defaults = BreakerConfig{})
      : BreakerSetBase(this->items, N, defaults) {}
};

}  // namespace tern
