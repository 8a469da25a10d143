#include "tern/resilience/retry_budget.hpp"

namespace tern {

namespace {

// Converted once, at construction: the bucket itself never touches floating point.
std::uint32_t ratio_to_milli(double ratio) {
  return static_cast<std::uint32_t>(ratio * RetryBudget::kMilli + 0.5);
}

}  // namespace

Errc validate(const RetryBudgetConfig& config) {
  if (config.max_tokens < 1 || config.max_tokens > 1000) return Errc::invalid_argument;
  // Written so that NaN fails too.
  if (!(config.token_ratio >= 0.001 && config.token_ratio <= config.max_tokens)) {
    return Errc::invalid_argument;
  }
  return Errc::ok;
}

RetryBudget::RetryBudget(const RetryBudgetConfig& config) {
  if (validate(config) != Errc::ok) panic("RetryBudget: invalid config");
  max_milli_ = config.max_tokens * kMilli;
  ratio_milli_ = ratio_to_milli(config.token_ratio);
  tokens_milli_ = max_milli_;
}

void RetryBudget::record_success() {
  ++stats_.successes;
  const std::uint32_t room = max_milli_ - tokens_milli_;
  tokens_milli_ += ratio_milli_ < room ? ratio_milli_ : room;
}

void RetryBudget::record_failure() {
  ++stats_.failures;
  tokens_milli_ = tokens_milli_ > kMilli ? tokens_milli_ - kMilli : 0;
}

bool RetryBudget::allow_retry() {
  if (would_allow_retry()) {
    ++stats_.retries_allowed;
    return true;
  }
  ++stats_.retries_refused;
  return false;
}

}  // namespace tern
