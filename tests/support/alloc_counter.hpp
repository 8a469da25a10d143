// Counts heap allocations made by the test process, to prove "no heap after init".
// Linked only into the allocation tests (it replaces malloc, or hooks the sanitizer's).
#pragma once

#include <cstddef>

namespace tern_test {
// Allocations (malloc, calloc, realloc, operator new, ...) since the process started.
std::size_t allocations();
}  // namespace tern_test
