#include "tern/detail/slot_generation.hpp"

#include <cstdint>

#include "tern_test.hpp"

namespace {

using tern::Errc;
using tern::detail::bump_generation;
using tern::detail::classify_missed_id;
using tern::detail::classify_ticket;
using tern::detail::kFirstGeneration;

// A table of three slots as the helpers see it: each slot's generation, and
// how often the helpers looked at one (they must not look out of range).
struct Slots {
  std::uint32_t generation[3] = {kFirstGeneration, kFirstGeneration,
                                 kFirstGeneration};
  bool live[3] = {};
  int reads = 0;

  Errc missed(std::uint32_t slot, std::uint32_t offered) {
    return classify_missed_id(slot, offered, 3, [this](std::uint32_t i) {
      ++reads;
      return generation[i];
    });
  }
  Errc ticket(std::uint32_t slot, std::uint32_t offered) {
    return classify_ticket(slot, offered, 3, [&](std::uint32_t i) {
      ++reads;
      return live[i] && generation[i] == offered;
    });
  }
};

TEST(SlotGeneration, BumpCountsUpAndSkipsZeroWhenItWraps) {
  std::uint32_t g = kFirstGeneration;
  bump_generation(g);
  EXPECT_EQ(g, 2u);
  g = 0xFFFFFFFEu;
  bump_generation(g);
  EXPECT_EQ(g, 0xFFFFFFFFu);
  bump_generation(g);
  EXPECT_EQ(g, 1u);  // never 0: that generation is never issued
  bump_generation(g);
  EXPECT_EQ(g, 2u);
}

TEST(SlotGeneration, IdOfAnEndedOccupantIsLate) {
  Slots t;
  const std::uint32_t issued = t.generation[1];
  bump_generation(t.generation[1]);  // that occupant ended
  EXPECT_EQ(t.missed(1, issued), Errc::late);
  bump_generation(t.generation[1]);  // and the next one too
  EXPECT_EQ(t.missed(1, issued), Errc::late);
  EXPECT_EQ(t.missed(1, issued + 1), Errc::late);
}

TEST(SlotGeneration, IdNeverIssuedIsNotFound) {
  Slots t;
  t.generation[0] = 5;
  EXPECT_EQ(t.missed(0, 5), Errc::not_found);  // current, but not live
  EXPECT_EQ(t.missed(0, 6), Errc::not_found);  // not issued yet
  EXPECT_EQ(t.missed(0, 0), Errc::not_found);  // generation 0 is never issued
  EXPECT_EQ(t.missed(0, 4), Errc::late);       // the same slot, earlier
}

TEST(SlotGeneration, IdBeyondCapacityIsNotFoundWithoutReadingASlot) {
  Slots t;
  t.generation[2] = 9;
  EXPECT_EQ(t.missed(3, 1), Errc::not_found);
  EXPECT_EQ(t.missed(0xFFFFFFFFu, 1), Errc::not_found);
  EXPECT_EQ(t.reads, 0);
  EXPECT_EQ(t.missed(0, 0), Errc::not_found);
  EXPECT_EQ(t.reads, 0);
  EXPECT_EQ(t.missed(2, 1), Errc::late);
  EXPECT_EQ(t.reads, 1);
}

TEST(SlotGeneration, IdIssuedBeforeItsSlotWrappedIsNotFound) {
  Slots t;
  t.generation[0] = 0xFFFFFFFFu;
  const std::uint32_t issued = t.generation[0];
  bump_generation(t.generation[0]);
  ASSERT_EQ(t.generation[0], 1u);
  EXPECT_EQ(t.missed(0, issued), Errc::not_found);
}

TEST(SlotGeneration, TicketIsOkWhileLiveThenLate) {
  Slots t;
  t.live[1] = true;
  const std::uint32_t issued = t.generation[1];
  EXPECT_EQ(t.ticket(1, issued), Errc::ok);
  t.live[1] = false;
  bump_generation(t.generation[1]);  // the use ended
  EXPECT_EQ(t.ticket(1, issued), Errc::late);
  t.live[1] = true;  // the slot's next use: the old ticket stays late
  EXPECT_EQ(t.ticket(1, issued), Errc::late);
  EXPECT_EQ(t.ticket(1, t.generation[1]), Errc::ok);
}

TEST(SlotGeneration, TicketOfAnyOtherGenerationIsLateEvenAfterAWrap) {
  Slots t;
  t.generation[2] = 0xFFFFFFFFu;
  bump_generation(t.generation[2]);
  t.live[2] = true;
  // An id from before the wrap reads not_found; a ticket reads late.
  EXPECT_EQ(t.ticket(2, 0xFFFFFFFFu), Errc::late);
  EXPECT_EQ(t.ticket(2, 7), Errc::late);
}

TEST(SlotGeneration, EmptyOrOutOfRangeTicketIsNotFoundWithoutAsking) {
  Slots t;
  t.live[0] = true;
  EXPECT_EQ(t.ticket(0, 0), Errc::not_found);
  EXPECT_EQ(t.ticket(3, kFirstGeneration), Errc::not_found);
  EXPECT_EQ(t.reads, 0);
  EXPECT_EQ(t.ticket(0, kFirstGeneration), Errc::ok);
  EXPECT_EQ(t.reads, 1);
}

// The same rules hold at compile time.
constexpr std::uint32_t after(std::uint32_t g) {
  bump_generation(g);
  return g;
}
static_assert(after(0xFFFFFFFFu) == 1);
static_assert(classify_missed_id(0, 1, 1, [](std::uint32_t) { return 2u; }) ==
              Errc::late);

}  // namespace
