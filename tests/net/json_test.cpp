#include "tern/net/json.hpp"

#include <cjson/cJSON.h>

#include <cstdint>

#include "alloc_counter.hpp"
#include "tern_test.hpp"

namespace {

using tern::Errc;

TEST(Json, BuildPrintParseRoundTripWithoutTheHeap) {
  tern::JsonPool pool;
  char out[256];
  std::size_t before = tern_test::allocations();
  for (int round = 0; round < 100; ++round) {
    tern::JsonDoc doc(cJSON_CreateObject());
    ASSERT_NE(doc.get(), nullptr);
    cJSON_AddStringToObject(doc.get(), "model", "tern-embed");
    cJSON* input = cJSON_AddArrayToObject(doc.get(), "input");
    cJSON_AddItemToArray(input, cJSON_CreateString("hello"));
    cJSON_AddItemToArray(input, cJSON_CreateString("world"));
    auto n = tern::json_print(doc.get(), out, sizeof out);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(std::string_view(out, *n), R"({"model":"tern-embed","input":["hello","world"]})");
    auto parsed = tern::json_parse(std::string_view(out, *n));
    ASSERT_TRUE(parsed.ok());
    const cJSON* arr = cJSON_GetObjectItemCaseSensitive(parsed->get(), "input");
    EXPECT_EQ(cJSON_GetArraySize(arr), 2);
  }
  EXPECT_EQ(tern_test::allocations() - before, 0u);
  EXPECT_EQ(pool.stats().in_use, 0u);
  EXPECT_GT(pool.stats().allocations, 0u);
}

TEST(Json, MalformedIsProtocolAndExhaustionIsFull) {
  tern::JsonPoolConfig tiny;
  for (auto& b : tiny.blocks) b = 2;
  tern::JsonPool pool(tiny);
  EXPECT_EQ(tern::json_parse("{\"a\": [1, 2,").error(), Errc::protocol);
  EXPECT_EQ(tern::json_parse("[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]").error(), Errc::full);
  EXPECT_GT(pool.stats().failures, 0u);
  EXPECT_EQ(pool.stats().in_use, 0u);  // the failed parse gave everything back
  auto ok = tern::json_parse("[1]");
  EXPECT_TRUE(ok.ok());
}

TEST(Json, BytesAfterTheValueAreProtocolAndGiveTheDocumentBack) {
  tern::JsonPool pool(tern::JsonPoolConfig{});
  EXPECT_EQ(tern::json_parse("{\"a\":1} {\"b\":2}").error(), Errc::protocol);
  EXPECT_EQ(tern::json_parse("[1]x").error(), Errc::protocol);
  EXPECT_EQ(tern::json_parse(std::string_view("[1]\0[2]", 7)).error(), Errc::protocol);
  EXPECT_EQ(pool.stats().in_use, 0u);  // the value parsed before the bytes was freed
  auto spaced = tern::json_parse(" \t[1] \r\n ");
  ASSERT_TRUE(spaced.ok());
  EXPECT_EQ(cJSON_GetArraySize(spaced->get()), 1);
}

TEST(Json, RequestNearSizeMaxIsRefusedNotWrappedToASmallBlock) {
  tern::JsonPool pool;
  for (std::size_t n : {SIZE_MAX, SIZE_MAX - 8, SIZE_MAX - 100}) {
    void* p = cJSON_malloc(n);
    EXPECT_EQ(p, nullptr) << n;
    cJSON_free(p);  // keeps the pool destructor quiet if the test fails
  }
  EXPECT_EQ(pool.stats().failures, 3u);
  EXPECT_EQ(pool.stats().in_use, 0u);
}

TEST(Json, PrintIntoTooSmallBufferIsTooLarge) {
  tern::JsonPool pool;
  auto doc = tern::json_parse(R"({"key":"a fairly long value that will not fit"})");
  ASSERT_TRUE(doc.ok());
  char small[16];
  EXPECT_EQ(tern::json_print(doc->get(), small, sizeof small).error(), Errc::too_large);
  EXPECT_EQ(tern::json_print(nullptr, small, sizeof small).error(), Errc::invalid_argument);
}

}  // namespace

// 2^20 blocks of 4096 bytes are 4 GiB, which wraps a 32-bit size_t to 0: the pool must
// stop at start-up rather than allocate the wrapped total and lay blocks past its end.
// Built for 32-bit targets only (armhf here): a 64-bit size_t cannot wrap on any
// JsonPoolConfig (6 x 2^32 x 4096 < 2^47).
#if SIZE_MAX <= UINT32_MAX
TEST(JsonDeathTest, BlocksBeyondTheAddressSpacePanic) {
  tern::JsonPoolConfig huge;
  for (auto& b : huge.blocks) b = 0;
  huge.blocks[5] = std::uint32_t{1} << 20;
  EXPECT_DEATH({ tern::JsonPool pool(huge); }, "address space");
}
#endif
