#include "model/json.h"

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace memmamba {
namespace {

using ::testing::HasSubstr;

// Parses `text`, expecting success.
JsonValue MustParse(std::string_view text) {
  auto v = ParseJson(text);
  EXPECT_TRUE(v.ok()) << "input: " << text << "\nerror: " << v.status();
  return v.ok() ? *std::move(v) : JsonValue();
}

// Parses `text`, expecting kCorruptFile; returns the message.
std::string MustFail(std::string_view text,
                     const JsonParseOptions& options = {}) {
  auto v = ParseJson(text, options);
  EXPECT_FALSE(v.ok()) << "input unexpectedly parsed: " << text;
  if (v.ok()) return "";
  EXPECT_EQ(CodeOf(v.status()), ErrorCode::kCorruptFile) << v.status();
  return std::string(v.status().message());
}

TEST(JsonTest, Scalars) {
  EXPECT_TRUE(MustParse("null").is_null());
  EXPECT_TRUE(MustParse("true").is_bool());
  EXPECT_TRUE(MustParse("true").bool_value());
  EXPECT_FALSE(MustParse("false").bool_value());
  JsonValue n = MustParse("-12.5e+3");
  ASSERT_TRUE(n.is_number());
  EXPECT_EQ(n.number_text(), "-12.5e+3");
  EXPECT_FALSE(n.is_integer());
  EXPECT_EQ(MustParse("\"hi\"").string_value(), "hi");
  EXPECT_EQ(MustParse("\"\"").string_value(), "");
}

TEST(JsonTest, WhitespaceAroundValueIsAllowed) {
  EXPECT_TRUE(MustParse(" \t\r\n{ \"a\" : [ 1 , 2 ] }\n  ").is_object());
}

TEST(JsonTest, NestedStructuresKeepDocumentOrder) {
  JsonValue v = MustParse(R"({"z":1,"a":[true,null,{"k":"v"}],"m":{}})");
  ASSERT_TRUE(v.is_object());
  const auto& members = v.object();
  ASSERT_EQ(members.size(), 3u);
  EXPECT_EQ(members[0].key, "z");
  EXPECT_EQ(members[1].key, "a");
  EXPECT_EQ(members[2].key, "m");
  const JsonValue* a = v.Find("a");
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->is_array());
  ASSERT_EQ(a->array().size(), 3u);
  EXPECT_TRUE(a->array()[0].bool_value());
  EXPECT_TRUE(a->array()[1].is_null());
  EXPECT_EQ(a->array()[2].Find("k")->string_value(), "v");
  EXPECT_TRUE(v.Find("m")->is_object());
  EXPECT_TRUE(v.Find("m")->object().empty());
  EXPECT_EQ(v.Find("missing"), nullptr);
  EXPECT_TRUE(MustParse("[]").array().empty());
}

TEST(JsonTest, AccessorsOnWrongTypeReturnDefaults) {
  JsonValue v = MustParse("[1]");
  EXPECT_FALSE(v.bool_value());
  EXPECT_EQ(v.string_value(), "");
  EXPECT_EQ(v.number_text(), "");
  EXPECT_TRUE(v.object().empty());
  EXPECT_EQ(v.Find("x"), nullptr);
  EXPECT_TRUE(MustParse("{}").array().empty());
}

TEST(JsonTest, AllEscapes) {
  JsonValue v = MustParse(R"("q\" b\\ s\/ \b\f\n\r\t")");
  EXPECT_EQ(v.string_value(), "q\" b\\ s/ \b\f\n\r\t");
}

TEST(JsonTest, UnicodeEscapesBecomeUtf8) {
  EXPECT_EQ(MustParse(R"("\u0041")").string_value(), "A");
  EXPECT_EQ(MustParse(R"("\u00e9")").string_value(), "\xC3\xA9");
  EXPECT_EQ(MustParse(R"("\u20AC")").string_value(), "\xE2\x82\xAC");
  EXPECT_EQ(MustParse(R"("\uFFFF")").string_value(), "\xEF\xBF\xBF");
  // Surrogate pair: U+1F600.
  EXPECT_EQ(MustParse(R"("\uD83D\uDE00")").string_value(),
            "\xF0\x9F\x98\x80");
  // Highest code point U+10FFFF.
  EXPECT_EQ(MustParse(R"("\uDBFF\uDFFF")").string_value(),
            "\xF4\x8F\xBF\xBF");
  // Embedded NUL survives.
  EXPECT_EQ(MustParse(R"("a\u0000b")").string_value(),
            std::string("a\0b", 3));
}

TEST(JsonTest, RawUtf8PassesThrough) {
  const std::string s = "\"h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\"";
  EXPECT_EQ(MustParse(s).string_value(),
            "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80");
}

TEST(JsonTest, BadSurrogatesAreRefused) {
  EXPECT_THAT(MustFail(R"("\uD83D")"), HasSubstr("high surrogate"));
  EXPECT_THAT(MustFail(R"("\uD83Dx")"), HasSubstr("high surrogate"));
  EXPECT_THAT(MustFail(R"("\uD83D\u0041")"), HasSubstr("low surrogate"));
  EXPECT_THAT(MustFail(R"("\uD83D\uD83D")"), HasSubstr("low surrogate"));
  EXPECT_THAT(MustFail(R"("\uDE00")"), HasSubstr("lone low surrogate"));
}

TEST(JsonTest, BadEscapesAreRefused) {
  EXPECT_THAT(MustFail(R"("\x41")"), HasSubstr("invalid escape"));
  EXPECT_THAT(MustFail(R"("\u12G4")"), HasSubstr("hex digit"));
  EXPECT_THAT(MustFail(R"("\u12)"), HasSubstr("\\u escape"));
  EXPECT_THAT(MustFail("\"\\"), HasSubstr("unterminated string"));
  EXPECT_THAT(MustFail(R"("\')"), HasSubstr("invalid escape"));
}

TEST(JsonTest, ControlCharactersInStringsAreRefused) {
  for (int c = 0; c < 0x20; ++c) {
    std::string s = "\"a";
    s.push_back(static_cast<char>(c));
    s += "b\"";
    EXPECT_THAT(MustFail(s), HasSubstr("control character")) << "char " << c;
  }
  // DEL is not a control character for JSON.
  EXPECT_EQ(MustParse("\"\x7F\"").string_value(), "\x7F");
}

TEST(JsonTest, InvalidUtf8IsRefused) {
  const char* bad[] = {
      "\"\x80\"",              // lone continuation byte
      "\"\xC0\x80\"",          // overlong NUL
      "\"\xC1\xBF\"",          // overlong
      "\"\xE0\x80\x80\"",      // overlong 3-byte
      "\"\xED\xA0\x80\"",      // UTF-16 surrogate U+D800
      "\"\xF0\x80\x80\x80\"",  // overlong 4-byte
      "\"\xF4\x90\x80\x80\"",  // above U+10FFFF
      "\"\xF5\x80\x80\x80\"",  // invalid lead byte
      "\"\xE2\x82\"",          // truncated sequence
      "\"\xE2\x82",            // truncated at end of input
      "\"\xFF\"",
  };
  for (const char* s : bad) {
    EXPECT_THAT(MustFail(s), HasSubstr("UTF-8")) << s;
  }
}

TEST(JsonTest, Utf8Validator) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  EXPECT_TRUE(IsValidUtf8(std::string("\0", 1)));
  EXPECT_FALSE(IsValidUtf8("\xC3"));
  EXPECT_FALSE(IsValidUtf8("\xED\xBF\xBF"));
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));
}

TEST(JsonTest, ValidNumbers) {
  for (const char* s : {"0", "-0", "1", "-1", "10", "123456789", "0.5",
                        "-0.5", "1e5", "1E5", "1e+5", "1e-5", "1.25e-10",
                        "0e0", "99999999999999999999999999"}) {
    JsonValue v = MustParse(s);
    EXPECT_TRUE(v.is_number()) << s;
    EXPECT_EQ(v.number_text(), s);
  }
}

TEST(JsonTest, InvalidNumbers) {
  for (const char* s : {"01", "-01", "00", "-", "1.", ".5", "+1", "1e", "1e+",
                        "1.e5", "--1", "NaN", "Infinity", "-Infinity", "0x10",
                        "1.5.5", "- 1"}) {
    MustFail(s);
  }
}

TEST(JsonTest, Int64Conversion) {
  EXPECT_EQ(*MustParse("0").AsInt64(), 0);
  EXPECT_EQ(*MustParse("-0").AsInt64(), 0);
  EXPECT_EQ(*MustParse("42").AsInt64(), 42);
  EXPECT_EQ(*MustParse("-42").AsInt64(), -42);
  EXPECT_EQ(*MustParse("9223372036854775807").AsInt64(), INT64_MAX);
  EXPECT_EQ(*MustParse("-9223372036854775808").AsInt64(), INT64_MIN);

  auto over = MustParse("9223372036854775808").AsInt64();
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(CodeOf(over.status()), ErrorCode::kCorruptFile);
  EXPECT_THAT(over.status().message(), HasSubstr("does not fit in int64"));
  EXPECT_FALSE(MustParse("-9223372036854775809").AsInt64().ok());
  EXPECT_FALSE(MustParse("99999999999999999999999").AsInt64().ok());

  auto frac = MustParse("1.0").AsInt64();
  ASSERT_FALSE(frac.ok());
  EXPECT_THAT(frac.status().message(), HasSubstr("not an integer"));
  EXPECT_FALSE(MustParse("1e2").AsInt64().ok());
  auto str = MustParse("\"1\"").AsInt64();
  ASSERT_FALSE(str.ok());
  EXPECT_THAT(str.status().message(), HasSubstr("got string"));
}

TEST(JsonTest, Uint64Conversion) {
  EXPECT_EQ(*MustParse("18446744073709551615").AsUint64(), UINT64_MAX);
  EXPECT_EQ(*MustParse("-0").AsUint64(), 0u);
  auto over = MustParse("18446744073709551616").AsUint64();
  ASSERT_FALSE(over.ok());
  EXPECT_THAT(over.status().message(), HasSubstr("does not fit in uint64"));
  auto neg = MustParse("-1").AsUint64();
  ASSERT_FALSE(neg.ok());
  EXPECT_THAT(neg.status().message(), HasSubstr("negative"));
  EXPECT_FALSE(MustParse("2.5").AsUint64().ok());
}

TEST(JsonTest, LiteralsMustBeComplete) {
  MustFail("tru");
  MustFail("nul");
  MustFail("falsey");
  MustFail("True");
  MustFail("undefined");
}

TEST(JsonTest, TrailingGarbageIsRefused) {
  EXPECT_THAT(MustFail("{} x"), HasSubstr("after the JSON value"));
  EXPECT_THAT(MustFail("1 2"), HasSubstr("after the JSON value"));
  EXPECT_THAT(MustFail("[]]"), HasSubstr("after the JSON value"));
  MustFail(std::string("{}\0", 3));
  // Only JSON whitespace is whitespace.
  MustFail("{}\f");
  MustFail("{}\v");
  MustFail("\xC2\xA0{}");
}

TEST(JsonTest, EmptyInputIsRefused) {
  EXPECT_THAT(MustFail(""), HasSubstr("end of input"));
  EXPECT_THAT(MustFail("   "), HasSubstr("end of input"));
}

TEST(JsonTest, StructuralErrors) {
  MustFail("[1,]");
  MustFail("[,1]");
  MustFail("[1 2]");
  MustFail("{\"a\":1,}");
  MustFail("{\"a\" 1}");
  MustFail("{\"a\":}");
  MustFail("{a:1}");
  MustFail("{'a':1}");
  MustFail("{1:1}");
  MustFail("[");
  MustFail("{");
  MustFail("{\"a\"");
  MustFail("{\"a\":1");
  MustFail("\"abc");
  MustFail("]");
}

TEST(JsonTest, ErrorMessagesCarryTheOffset) {
  EXPECT_THAT(MustFail("[1, 2, x]"), HasSubstr("at offset 7"));
  EXPECT_THAT(MustFail("\"abc"), HasSubstr("unterminated string"));
  EXPECT_THAT(MustFail("\"abc"), HasSubstr("at offset 0"));
}

TEST(JsonTest, DuplicateKeysAreRefused) {
  EXPECT_THAT(MustFail(R"({"a":1,"b":2,"a":3})"),
              HasSubstr("duplicate key \"a\""));
  // Large object (sorting path) and keys differing only late.
  std::string big = "{";
  for (int i = 0; i < 100; ++i) {
    big += "\"key" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  }
  big += "\"key57\":0}";
  EXPECT_THAT(MustFail(big), HasSubstr("duplicate key \"key57\""));
  // Duplicates found after decoding escapes.
  EXPECT_THAT(MustFail(R"({"a":1,"\u0061":2})"), HasSubstr("duplicate key"));
  // The same key in different objects is fine.
  MustParse(R"({"a":{"a":1},"b":{"a":2}})");
}

TEST(JsonTest, DepthLimit) {
  auto nested = [](int depth) {
    return std::string(depth, '[') + std::string(depth, ']');
  };
  MustParse(nested(64));
  EXPECT_THAT(MustFail(nested(65)), HasSubstr("nesting deeper than 64"));
  // Far deeper input must not exhaust the stack.
  MustFail(nested(1000000));
  MustFail(std::string(1000000, '['));
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  MustFail(objects);

  JsonParseOptions shallow;
  shallow.max_depth = 2;
  EXPECT_TRUE(ParseJson("[[1]]", shallow).ok());
  MustFail("[[[1]]]", shallow);
  MustFail("{\"a\":{\"b\":{}}}", shallow);
}

TEST(JsonTest, ValueLimit) {
  JsonParseOptions options;
  options.max_values = 4;
  EXPECT_TRUE(ParseJson("[1,2,3]", options).ok());  // 4 values
  EXPECT_THAT(MustFail("[1,2,3,4]", options), HasSubstr("more than 4 values"));
}

TEST(JsonTest, QuoteEscapesWhatItMust) {
  EXPECT_EQ(JsonQuote(""), "\"\"");
  EXPECT_EQ(JsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("\n\t\r\b\f"), "\"\\n\\t\\r\\b\\f\"");
  EXPECT_EQ(JsonQuote(std::string("\0\x01\x1f", 3)),
            "\"\\u0000\\u0001\\u001f\"");
  EXPECT_EQ(JsonQuote("/\x7F\xC3\xA9"), "\"/\x7F\xC3\xA9\"");
  std::string out = "x";
  AppendJsonString("y", &out);
  EXPECT_EQ(out, "x\"y\"");
}

TEST(JsonTest, QuoteRoundTripsThroughParser) {
  std::string all;
  for (int c = 0; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  all += "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80";
  EXPECT_EQ(MustParse(JsonQuote(all)).string_value(), all);
}

}  // namespace
}  // namespace memmamba
