// The open-addressing index behind KeyedWaiters (linear probing, backward-shift
// deletion) and the key hash. Kept out of the template so every
// KeyedWaiters<...> shares one copy of the probing code.
#include "tern/resilience/keyed_waiters.hpp"

namespace tern::detail {

KeyIndex::KeyIndex(KeyIndexEntry* table, std::size_t size, SameKey same,
                   const void* context)
    : table_(table),
      mask_(static_cast<std::uint32_t>(size - 1)),
      same_(same),
      context_(context) {
  if (size < 2 || (size & (size - 1)) != 0 || size > 0x80000000u)
    panic("KeyIndex: size must be a power of two");
  for (std::size_t i = 0; i < size; ++i) table_[i] = KeyIndexEntry{};
}

std::uint32_t KeyIndex::find(std::string_view key, std::uint32_t hash) const {
  // The table is never more than half full, so every probe run ends at an empty
  // entry.
  for (std::uint32_t i = hash & mask_;; i = (i + 1) & mask_) {
    const KeyIndexEntry& e = table_[i];
    if (e.slot == kEmpty) return kEmpty;
    if (e.hash == hash && same_(context_, e.slot, key)) return e.slot;
  }
}

void KeyIndex::insert(std::uint32_t hash, std::uint32_t slot) {
  std::uint32_t i = hash & mask_;
  while (table_[i].slot != kEmpty) i = (i + 1) & mask_;
  table_[i] = KeyIndexEntry{hash, slot};
}

bool KeyIndex::erase(std::uint32_t hash, std::uint32_t slot) {
  std::uint32_t hole = hash & mask_;
  for (;; hole = (hole + 1) & mask_) {
    if (table_[hole].slot == kEmpty) return false;
    if (table_[hole].slot == slot) break;
  }
  // Backward shift: pull later entries of the run into the hole when the hole
  // lies on their probe path (between their home and where they sit), so no
  // lookup ever has to step over a gap, and no tombstones pile up.
  for (std::uint32_t j = (hole + 1) & mask_; table_[j].slot != kEmpty;
       j = (j + 1) & mask_) {
    const std::uint32_t home = table_[j].hash & mask_;
    if (((hole - home) & mask_) < ((j - home) & mask_)) {
      table_[hole] = table_[j];
      hole = j;
    }
  }
  table_[hole] = KeyIndexEntry{};
  return true;
}

std::uint64_t key_hash(std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (char c : key) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  // MurmurHash3's fmix64: FNV's low bits, which pick the bucket, mix poorly
  // alone.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace tern::detail
