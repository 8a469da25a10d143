// Not API: the array behind a fixed-capacity table (PendingTable<T, N>, Retrier<T, N>,
// BreakerSet<N>). The table inherits it first, privately, so that the array exists
// before the table's base class, which takes a pointer to it, is constructed.
#pragma once

#include <cstddef>

namespace tern::detail {

template <typename T, std::size_t N>
struct InlineStorage {
  T items[N];
};

}  // namespace tern::detail
