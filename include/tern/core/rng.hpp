// Rng: a small, fast, seedable PRNG (PCG32, XSH-RR output) for jitter and tests.
// Deterministic for a given seed on every port; not for cryptography.
//
//   tern::Rng rng(7);
//   tern::Duration d = tern::us(rng.between(0, 1000));
#pragma once

#include <cstdint>

namespace tern {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0x853c49e6748fea9bULL, std::uint64_t stream = 0xda3e39cb94b95bdbULL) {
    reseed(seed, stream);
  }

  void reseed(std::uint64_t seed, std::uint64_t stream = 0xda3e39cb94b95bdbULL) {
    state_ = 0;
    inc_ = (stream << 1u) | 1u;
    next_u32();
    state_ += seed;
    next_u32();
  }

  std::uint32_t next_u32() {
    std::uint64_t old = state_;
    state_ = old * 6364136223846793005ULL + inc_;
    auto xorshifted = static_cast<std::uint32_t>(((old >> 18u) ^ old) >> 27u);
    auto rot = static_cast<std::uint32_t>(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
  }

  std::uint64_t next_u64() { return (std::uint64_t{next_u32()} << 32) | next_u32(); }

  // Uniform in [0, bound) without modulo bias; bound 0 returns 0.
  std::uint64_t below(std::uint64_t bound) {
    if (bound == 0) return 0;
    std::uint64_t threshold = (0 - bound) % bound;  // 2^64 mod bound
    for (;;) {
      std::uint64_t r = next_u64();
      if (r >= threshold) return r % bound;
    }
  }

  // Uniform in [lo, hi] (inclusive); lo > hi returns lo.
  std::int64_t between(std::int64_t lo, std::int64_t hi) {
    if (hi <= lo) return lo;
    // In unsigned arithmetic: hi - lo can exceed INT64_MAX, and the whole range is 2^64
    // values, one more than below() can bound.
    const std::uint64_t span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo);
    const std::uint64_t offset = span == UINT64_MAX ? next_u64() : below(span + 1);
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(lo) + offset);
  }

  // Uniform in [0, 1).
  double unit() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

  bool chance(double p) { return unit() < p; }

 private:
  std::uint64_t state_ = 0;
  std::uint64_t inc_ = 0;
};

}  // namespace tern
