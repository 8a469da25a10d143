// tern::Count: what tern's counters and statistics count in (AgentCounters, ReactorStats,
// RuntimeStats, PendingStats, the resilience tables' stats): 64 bits on Linux; 32 bits
// on Cortex-M, where a counter wraps after 2^32 events.
#pragma once

#include "tern/detail/port_state.hpp"

namespace tern {

using Count = detail::PortCount;

}  // namespace tern
