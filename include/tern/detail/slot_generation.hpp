// Not API: the slot-plus-generation rule behind the ids and tickets of
// PendingTable, Retrier, Batcher and Coalescer, kept in one place so that a
// late answer reads the same in all of them. Each table's comments give its
// contract, including which outcomes it counts.
//
// A slot starts at kFirstGeneration and takes bump_generation() each time what
// it held ends; an id or a ticket carries the slot index and the generation it
// was issued with. A table tests a hit itself (in range, live, same generation)
// and asks here only why an id missed:
//
//   Slot* s = lookup(id);
//   if (s == nullptr) {
//     return detail::classify_missed_id(id.slot(), id.generation(), capacity_,
//         [this](std::uint32_t i) { return slots_[i].generation; });
//   }
//
// PendingTableBase (tern/core/pending_table.hpp) shows it in full.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tern/core/errc.hpp"

namespace tern::detail {

// No id or ticket is issued with generation 0, so an all-zero one names
// nothing.
inline constexpr std::uint32_t kFirstGeneration = 1;

// Moves a slot to its next generation when what it held ends: one more,
// skipping 0 (0xFFFFFFFF is followed by 1). Always inlined: at -Os GCC would
// otherwise call it out of line from PendingTable's finish(), a measured path.
[[gnu::always_inline]] constexpr void bump_generation(
    std::uint32_t& generation) {
  if (++generation == 0) generation = kFirstGeneration;
}

// Why the id (slot, generation), offered to a table of `capacity` slots, names
// nothing live there; call it once the table's own test has failed. Returns
// Errc::late if the slot exists and `generation` is an earlier one of it
// (generations only grow, so what the id named existed and has ended), and
// Errc::not_found otherwise: never issued by this table (an id issued before
// its slot's generation wrapped also reads so). `current(slot)` returns the
// slot's generation; it is called only for slot < capacity and generation != 0.
template <typename CurrentGeneration>
constexpr Errc classify_missed_id(std::uint32_t slot, std::uint32_t generation,
                                  std::size_t capacity,
                                  CurrentGeneration current) {
  if (slot >= capacity || generation == 0) return Errc::not_found;
  return generation < current(slot) ? Errc::late : Errc::not_found;
}

// What the ticket (slot, generation) names: the right to answer one use of a
// slot (a batch call, an upstream call). Only its table makes tickets, so none
// is forged. Returns Errc::ok while `live(slot)` says that use is open under
// this generation; Errc::late for any other nonzero generation of a real slot
// (that use has ended, however the generations compare after a wrap);
// Errc::not_found for slot >= capacity or generation 0. `live(slot)` is called
// only for slot < capacity and generation != 0.
template <typename Live>
constexpr Errc classify_ticket(std::uint32_t slot, std::uint32_t generation,
                               std::size_t capacity, Live live) {
  if (slot >= capacity || generation == 0) return Errc::not_found;
  return live(slot) ? Errc::ok : Errc::late;
}

}  // namespace tern::detail
