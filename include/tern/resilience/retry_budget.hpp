// RetryBudget: caps retries to a fraction of recent traffic, so a failing upstream never
// gets a retry storm. It is gRPC's retry throttling (gRFC A6 "gRPC Retry Design",
// section "Retry Throttling"): a token bucket that starts full at max_tokens; every
// successful call adds token_ratio tokens (never above max_tokens), every failed call
// takes one away (never below 0), and a retry is allowed only while the bucket holds
// more than max_tokens / 2. Like gRPC it counts in thousandths of a token, so a ratio has
// three decimal places, and the arithmetic is integer and exact on every port.
//
//   tern::RetryBudget budget({.max_tokens = 10, .token_ratio = 0.1});
//   tern::RetryPolicy policy;
//   policy.budget = &budget;   // a Retrier records every try and asks before each retry
//
// By hand: record_success()/record_failure() for every call (first tries too), and
// allow_retry() before each retry. With the bucket's floor at half, retries keep flowing
// while failures stay under about token_ratio per success; past that they stop until
// successes refill it. One budget is typically shared by every caller of one upstream.
// See examples/scenario_rag.
#pragma once

#include <cstdint>

#include "tern/core/count.hpp"
#include "tern/core/errc.hpp"

namespace tern {

struct RetryBudgetConfig {
  std::uint32_t max_tokens = 10;  // bucket size, 1..1000 (gRPC's range)
  double token_ratio = 0.1;       // tokens a success adds, 0.001..max_tokens; read once
};

struct RetryBudgetStats {
  Count successes = 0;        // record_success() calls
  Count failures = 0;         // record_failure() calls
  Count retries_allowed = 0;  // allow_retry() said yes
  Count retries_refused = 0;  // allow_retry() said no
};

// Returns ok, or invalid_argument if max_tokens or token_ratio is out of range.
Errc validate(const RetryBudgetConfig& config);

class RetryBudget {
 public:
  static constexpr std::uint32_t kMilli = 1000;

  // Starts full. An invalid config (see validate()) is a contract violation (panic).
  explicit RetryBudget(const RetryBudgetConfig& config = RetryBudgetConfig{});
  RetryBudget(const RetryBudget&) = delete;
  RetryBudget& operator=(const RetryBudget&) = delete;

  // A call succeeded: adds token_ratio tokens, up to max_tokens.
  void record_success();
  // A call failed in a way worth retrying: takes one token, down to zero.
  void record_failure();

  // True if a retry may go out now (tokens > max_tokens / 2); counted either way.
  // Asking takes no token: the failure that prompted the retry already did.
  bool allow_retry();
  // The same answer without counting.
  bool would_allow_retry() const { return tokens_milli_ * 2 > max_milli_; }

  // The bucket's level in thousandths of a token, 0..max_tokens * 1000.
  std::uint32_t tokens_milli() const { return tokens_milli_; }
  std::uint32_t max_tokens_milli() const { return max_milli_; }
  std::uint32_t token_ratio_milli() const { return ratio_milli_; }
  const RetryBudgetStats& stats() const { return stats_; }
  // Back to full; statistics are kept.
  void refill() { tokens_milli_ = max_milli_; }

 private:
  std::uint32_t max_milli_;
  std::uint32_t ratio_milli_;
  std::uint32_t tokens_milli_;
  RetryBudgetStats stats_;
};

}  // namespace tern
