// RetryBudget: gRPC-style retry throttling (portable: runs on every port).
#include "tern/resilience/retry_budget.hpp"

#include "tern/core/rng.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::RetryBudget;
using tern::RetryBudgetConfig;

TEST(RetryBudget, StartsFullAndAllowsRetries) {
  RetryBudget budget(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 0.1});
  EXPECT_EQ(budget.tokens_milli(), 10000u);
  EXPECT_EQ(budget.token_ratio_milli(), 100u);
  EXPECT_TRUE(budget.allow_retry());
  EXPECT_EQ(budget.tokens_milli(), 10000u);  // asking takes nothing
  EXPECT_EQ(budget.stats().retries_allowed, 1u);
}

TEST(RetryBudget, RefusesRetriesOnceHalfTheTokensAreGone) {
  RetryBudget budget(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 0.1});
  for (int i = 0; i < 4; ++i) budget.record_failure();
  EXPECT_EQ(budget.tokens_milli(), 6000u);
  EXPECT_TRUE(budget.allow_retry());
  budget.record_failure();  // 5 tokens: not more than half of 10
  EXPECT_EQ(budget.tokens_milli(), 5000u);
  EXPECT_FALSE(budget.allow_retry());
  EXPECT_FALSE(budget.allow_retry());
  EXPECT_EQ(budget.stats().retries_refused, 2u);
  EXPECT_EQ(budget.stats().failures, 5u);
}

TEST(RetryBudget, SuccessesRefillItAtTheTokenRatio) {
  RetryBudget budget(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 0.5});
  for (int i = 0; i < 8; ++i) budget.record_failure();
  EXPECT_EQ(budget.tokens_milli(), 2000u);
  int successes = 0;
  while (!budget.would_allow_retry()) {
    budget.record_success();
    ++successes;
    ASSERT_LT(successes, 100);
  }
  // 2 + 0.5 * k > 5 first holds at k = 7.
  EXPECT_EQ(successes, 7);
  EXPECT_EQ(budget.tokens_milli(), 5500u);
  EXPECT_TRUE(budget.allow_retry());
}

TEST(RetryBudget, TokensStayWithinZeroAndMax) {
  RetryBudget budget(RetryBudgetConfig{.max_tokens = 3, .token_ratio = 0.7});
  for (int i = 0; i < 10; ++i) budget.record_success();
  EXPECT_EQ(budget.tokens_milli(), 3000u);
  for (int i = 0; i < 10; ++i) budget.record_failure();
  EXPECT_EQ(budget.tokens_milli(), 0u);
  budget.record_success();
  EXPECT_EQ(budget.tokens_milli(), 700u);
  budget.refill();
  EXPECT_EQ(budget.tokens_milli(), 3000u);
}

TEST(RetryBudget, CapsRetriesToAFractionOfTrafficUnderAStormOfFailures) {
  // Every first try fails, and every retry fails too: without a budget each call would
  // retry. With ratio 0.1 and max 10, only the first few calls may retry; after that the
  // bucket sits at or below half and no retry goes out, however many calls come.
  RetryBudget budget(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 0.1});
  int retries = 0;
  for (int call = 0; call < 1000; ++call) {
    budget.record_failure();  // the first try
    if (budget.allow_retry()) {
      ++retries;
      budget.record_failure();  // the retry
    }
  }
  EXPECT_LE(retries, 3);
  EXPECT_EQ(budget.stats().retries_allowed, static_cast<std::uint64_t>(retries));
  EXPECT_EQ(budget.stats().retries_refused, static_cast<std::uint64_t>(1000 - retries));
}

TEST(RetryBudget, RetriesKeepFlowingWhileFailuresStayUnderTheRatio) {
  // 1 failure in 20 calls is below 0.1 tokens per success: the budget never runs dry.
  RetryBudget budget(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 0.1});
  tern::Rng rng(11);
  int refused = 0;
  for (int call = 0; call < 2000; ++call) {
    if (rng.below(20) == 0) {
      budget.record_failure();
      if (!budget.allow_retry()) ++refused;
      budget.record_success();  // the retry worked
    } else {
      budget.record_success();
    }
  }
  EXPECT_EQ(refused, 0);
  EXPECT_GT(budget.stats().retries_allowed, 50u);
}

TEST(RetryBudget, ValidateRejectsUnusableConfigs) {
  EXPECT_EQ(tern::validate(RetryBudgetConfig{}), Errc::ok);
  EXPECT_EQ(tern::validate(RetryBudgetConfig{.max_tokens = 0}), Errc::invalid_argument);
  EXPECT_EQ(tern::validate(RetryBudgetConfig{.max_tokens = 1001}), Errc::invalid_argument);
  EXPECT_EQ(tern::validate(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 0.0}),
            Errc::invalid_argument);
  EXPECT_EQ(tern::validate(RetryBudgetConfig{.max_tokens = 10, .token_ratio = 11.0}),
            Errc::invalid_argument);
  EXPECT_EQ(tern::validate(RetryBudgetConfig{.max_tokens = 1000, .token_ratio = 0.001}), Errc::ok);
}

}  // namespace
