// One way to write a portable test: GoogleTest's names. On hosts with GoogleTest this is
// GoogleTest; on bare metal (TERN_MINITEST) the in-tree runner provides the same subset
// (TEST, EXPECT_*/ASSERT_* comparisons, streaming of strings and numbers; stream
// errc_name(e) rather than an Errc, which GoogleTest cannot print).
#pragma once

#if defined(TERN_MINITEST)
#include "minitest.hpp"
#else
#include <gtest/gtest.h>
#endif

// Long randomized tests shrink on slow targets (emulated Cortex-M: 4), and the arrays
// that record them with them; same code paths.
#ifndef TERN_TEST_SCALE
#define TERN_TEST_SCALE 1
#endif
