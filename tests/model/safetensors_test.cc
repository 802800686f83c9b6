#include "model/safetensors.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/half.h"

namespace memmamba {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------- helpers

// Raw bytes of any trivially copyable values.
template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()),
                     v.size() * sizeof(T));
}

// A file from a literal header (no padding added) and data section.
std::string MakeFile(std::string_view header, std::string_view data = "") {
  std::string out;
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  out.append(header.data(), header.size());
  out.append(data.data(), data.size());
  return out;
}

// Expects FromBytes(bytes) to fail with `code` and a message containing
// every one of `parts`.
void ExpectRejected(const std::string& bytes, ErrorCode code,
                    const std::vector<std::string>& parts) {
  auto r = SafetensorsReader::FromBytes(bytes);
  ASSERT_FALSE(r.ok()) << "unexpectedly parsed";
  EXPECT_EQ(CodeOf(r.status()), code) << r.status();
  for (const std::string& p : parts) {
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(p));
  }
}

void ExpectCorrupt(const std::string& header, const std::string& data,
                   const std::vector<std::string>& parts) {
  SCOPED_TRACE(header);
  ExpectRejected(MakeFile(header, data), ErrorCode::kCorruptFile, parts);
}

// A one-tensor header: {"w": {"dtype":..., "shape":..., "data_offsets":...}}.
std::string OneTensor(const std::string& dtype, const std::string& shape,
                      const std::string& offsets) {
  return "{\"w\":{\"dtype\":" + dtype + ",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}}";
}

// A small valid file used by the robustness tests: several dtypes, a
// scalar, a zero-size tensor and metadata.
std::string SmallValidFile() {
  static const std::vector<float> f32 = {1.5f, -2.0f, 0.25f, 3.0f};
  static const std::vector<uint16_t> f16 = {0x3C00, 0xC000};   // 1, -2
  static const std::vector<uint16_t> bf16 = {0x3F80, 0x4040};  // 1, 3
  static const std::vector<double> f64 = {0.5};
  static const std::vector<int64_t> i64 = {7, -7};
  std::vector<TensorToWrite> t = {
      {"a", DType::kF32, {2, 2}, f32.data(), 16},
      {"h", DType::kF16, {2}, f16.data(), 4},
      {"empty", DType::kF32, {0, 3}, nullptr, 0},
      {"b", DType::kBF16, {1, 2}, bf16.data(), 4},
      {"s", DType::kF64, {}, f64.data(), 8},
      {"i", DType::kI64, {2}, i64.data(), 16},
  };
  auto bytes = SerializeSafetensors(t, {{"format", "pt"}, {"k", "v\"\n"}});
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : "";
}

// Reads every float-convertible tensor of a parsed file (exercises the
// conversion paths on whatever survived parsing).
void TouchAllTensors(const SafetensorsReader& r) {
  for (const TensorInfo& t : r.tensors()) {
    std::vector<float> out(t.num_elements + 1);
    absl::Status s = r.CopyAsFloat(t, out.data(), out.size());
    if (s.ok()) continue;
    EXPECT_EQ(CodeOf(s), ErrorCode::kTensorDtype) << s;
  }
}

// A fresh empty directory under the test temp dir, removed by the caller.
std::string MakeTempDir() {
  std::string tmpl = ::testing::TempDir() + "/safetensors_test.XXXXXX";
  char* dir = mkdtemp(tmpl.data());
  EXPECT_NE(dir, nullptr) << std::strerror(errno);
  return tmpl;
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void RemoveTree(const std::string& dir) {
  chmod(dir.c_str(), 0700);
  for (const std::string& n : ListDir(dir)) {
    const std::string p = dir + "/" + n;
    struct stat st;
    if (lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      RemoveTree(p);
    } else {
      unlink(p.c_str());
    }
  }
  rmdir(dir.c_str());
}

// ---------------------------------------------------------------- dtypes

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(DTypeName(DType::kF32), "F32");
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeName(DType::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
  EXPECT_EQ(DTypeSize(static_cast<DType>(999)), 0u);
  EXPECT_EQ(DTypeName(static_cast<DType>(999)), "?");
  for (DType d : {DType::kBool, DType::kU8, DType::kI8, DType::kI16,
                  DType::kU16, DType::kF16, DType::kBF16, DType::kI32,
                  DType::kU32, DType::kF32, DType::kF64, DType::kI64,
                  DType::kU64, DType::kF8E4M3, DType::kF8E5M2}) {
    auto back = DTypeFromName(DTypeName(d));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, d);
  }
  auto bad = DTypeFromName("f32");  // names are case-sensitive
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(CodeOf(bad.status()), ErrorCode::kTensorDtype);
}

TEST(ShapeTest, ToString) {
  EXPECT_EQ(ShapeToString({}), "[]");
  EXPECT_EQ(ShapeToString({3}), "[3]");
  EXPECT_EQ(ShapeToString({2, 0, 4}), "[2,0,4]");
}

// ---------------------------------------------------------------- half.h

TEST(HalfTest, F16WideningKnownValues) {
  EXPECT_EQ(F16ToFloat(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(F16ToFloat(0x8000)));
  EXPECT_EQ(F16ToFloat(0x3C00), 1.0f);
  EXPECT_EQ(F16ToFloat(0xC000), -2.0f);
  EXPECT_EQ(F16ToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(F16ToFloat(0x0400), std::ldexp(1.0f, -14));  // min normal
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));  // min subnormal
  EXPECT_EQ(F16ToFloat(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(F16ToFloat(0xFC00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7E00)));
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7C01)));  // signalling NaN stays NaN
}

TEST(HalfTest, F16RoundTripsEveryPattern) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToFloat(static_cast<uint16_t>(h));
    const uint16_t back = FloatToF16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToFloat(back))) << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

TEST(HalfTest, F16NarrowingRoundsToNearestEven) {
  // 1 + 2^-11 is halfway between 1 and the next F16 (1 + 2^-10): ties to
  // the even mantissa (1.0).
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9: rounds up.
  EXPECT_EQ(FloatToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Slightly above halfway rounds up.
  EXPECT_EQ(FloatToF16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)),
            0x3C01);
  // Overflow: 65520 is halfway between 65504 and 65536 -> infinity.
  EXPECT_EQ(FloatToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToF16(1e10f), 0x7C00);
  EXPECT_EQ(FloatToF16(-1e10f), 0xFC00);
  // Subnormals: 2^-25 is halfway between 0 and the min subnormal: to even.
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(FloatToF16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(FloatToF16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 ulp -> even 2
  EXPECT_EQ(FloatToF16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(FloatToF16(-std::ldexp(1.0f, -30)), 0x8000);
  // Largest subnormal + half ulp rounds into the min normal.
  EXPECT_EQ(FloatToF16(std::ldexp(1023.5f, -24)), 0x0400);
  EXPECT_EQ(FloatToF16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(FloatToF16(std::nanf("")) & 0x7E00, 0x7E00);
}

TEST(HalfTest, BF16Conversions) {
  EXPECT_EQ(BF16ToFloat(0x3F80), 1.0f);
  EXPECT_EQ(BF16ToFloat(0xC040), -3.0f);
  EXPECT_EQ(FloatToBF16(1.0f), 0x3F80);
  EXPECT_EQ(FloatToBF16(-3.0f), 0xC040);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(FloatToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  // 1 + 3*2^-8 is halfway between odd 0x3F81 and even 0x3F82.
  EXPECT_EQ(FloatToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(FloatToBF16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)),
            0x3F81);
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::max()), 0x7F80);  // inf
  EXPECT_EQ(FloatToBF16(std::numeric_limits<float>::infinity()), 0x7F80);
  // A NaN whose payload lives only in the low bits must stay NaN.
  const float low_payload_nan = FloatFromBits(0x7F800001u);
  ASSERT_TRUE(std::isnan(low_payload_nan));
  EXPECT_TRUE(std::isnan(BF16ToFloat(FloatToBF16(low_payload_nan))));
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = BF16ToFloat(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(FloatToBF16(f), h);
    }
  }
}

TEST(HalfTest, DoubleToFloatIsDefinedOutOfRange) {
  EXPECT_EQ(DoubleToFloat(0.5), 0.5f);
  EXPECT_EQ(DoubleToFloat(1e300), std::numeric_limits<float>::infinity());
  EXPECT_EQ(DoubleToFloat(-1e300), -std::numeric_limits<float>::infinity());
  const double fmax = std::numeric_limits<float>::max();
  EXPECT_EQ(DoubleToFloat(fmax), std::numeric_limits<float>::max());
  EXPECT_EQ(DoubleToFloat(fmax * (1 + 1e-9)),
            std::numeric_limits<float>::max());
  EXPECT_EQ(DoubleToFloat(std::ldexp(1.0, 128)),
            std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(DoubleToFloat(std::nan(""))));
}

// ---------------------------------------------------------------- round trip

TEST(SafetensorsTest, RoundTripManyDtypesAndShapes) {
  const std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> f16 = {0x3C00, 0x4000, 0x4200, 0xBC00};
  const std::vector<uint16_t> bf16 = {0x3F80, 0x4000};
  const std::vector<double> f64 = {1.0, -0.5, 1e-3};
  const std::vector<int32_t> i32 = {-1, 0, 1, 2147483647};
  const std::vector<int64_t> i64 = {INT64_MIN, INT64_MAX};
  const std::vector<uint8_t> u8 = {0, 1, 255, 7, 9};
  const std::vector<uint8_t> boolean = {1, 0, 1};
  const float scalar = 42.0f;
  const std::vector<TensorToWrite> in = {
      {"layers.0.mixer.in_proj.weight", DType::kF32, {2, 3}, f32.data(), 24},
      {"zero_first", DType::kF32, {0}, nullptr, 0},
      {"h", DType::kF16, {2, 2}, f16.data(), 8},
      {"b", DType::kBF16, {2}, bf16.data(), 4},
      {"scalar", DType::kF32, {}, &scalar, 4},
      {"d", DType::kF64, {3, 1, 1}, f64.data(), 24},
      {"zero_middle", DType::kI64, {4, 0, 2}, nullptr, 0},
      {"i32", DType::kI32, {4}, i32.data(), 16},
      {"i64", DType::kI64, {2}, i64.data(), 16},
      {"u8 \xC3\xA9\xE2\x82\xAC", DType::kU8, {5}, u8.data(), 5},
      {"flags", DType::kBool, {3}, boolean.data(), 3},
      {"zero_last", DType::kBF16, {0, 0}, nullptr, 0},
  };
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"escapes", "quote\" back\\slash /\n\t\r\b\f"},
      {"control", std::string("nul\0 one\x01 us\x1f", 13)},
      {"unicode \xF0\x9F\x98\x80", "h\xC3\xA9llo \xE2\x82\xAC"},
      {"", ""},
      {"config", R"({"d_model":768,"n_layer":24})"},
  };
  auto bytes = SerializeSafetensors(in, metadata);
  ASSERT_TRUE(bytes.ok()) << bytes.status();

  // Header layout: 8-byte aligned data section, __metadata__ first.
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes->data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);
  EXPECT_THAT(bytes->substr(8, 16), StartsWith("{\"__metadata__\":"));

  auto r = SafetensorsReader::FromBytes(*bytes);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata(), metadata);
  EXPECT_EQ(r->data_section_offset(), 8 + header_len);
  ASSERT_EQ(r->tensors().size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const TensorInfo& t = r->tensors()[i];
    SCOPED_TRACE(in[i].name);
    EXPECT_EQ(t.name, in[i].name);  // file order == given order
    EXPECT_EQ(t.dtype, in[i].dtype);
    EXPECT_EQ(t.shape, in[i].shape);
    EXPECT_EQ(t.nbytes, in[i].nbytes);
    ASSERT_NE(r->data(t), nullptr);
    if (t.nbytes > 0) {
      EXPECT_EQ(std::memcmp(r->data(t), in[i].data, t.nbytes), 0);
    }
    EXPECT_EQ(r->Find(in[i].name), &t);
  }
  EXPECT_EQ(r->Find("scalar")->num_elements, 1u);
  EXPECT_EQ(r->Find("zero_middle")->num_elements, 0u);
  EXPECT_EQ(r->Find("nope"), nullptr);

  // Serializing what we read gives the same bytes.
  std::vector<TensorToWrite> again;
  for (const TensorInfo& t : r->tensors()) {
    again.push_back({t.name, t.dtype, t.shape, r->data(t), t.nbytes});
  }
  auto bytes2 = SerializeSafetensors(again, r->metadata());
  ASSERT_TRUE(bytes2.ok());
  EXPECT_EQ(*bytes2, *bytes);
}

TEST(SafetensorsTest, ExactHeaderText) {
  const std::vector<float> v = {1, 2};
  auto bytes = SerializeSafetensors({{"a", DType::kF32, {2}, v.data(), 8}},
                                    {{"format", "pt"}});
  ASSERT_TRUE(bytes.ok());
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],)"
      R"("data_offsets":[0,8]}})";
  std::string padded = header;
  while ((8 + padded.size()) % 8 != 0) padded += ' ';
  EXPECT_EQ(*bytes, MakeFile(padded, Bytes(v)));
}

TEST(SafetensorsTest, EmptyFileAndNoMetadata) {
  auto bytes = SerializeSafetensors({}, {});
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, MakeFile("{}      "));
  auto r = SafetensorsReader::FromBytes(*bytes);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->tensors().empty());
  EXPECT_TRUE(r->metadata().empty());
  EXPECT_EQ(r->data_section_size(), 0u);
}

TEST(SafetensorsTest, ForeignLayoutUnalignedAndOutOfOrder) {
  // As another writer might produce: no padding (data starts at an odd
  // offset), header keys not in data order, whitespace in the JSON.
  const std::vector<float> a = {1.5f, -2.25f, 3.0f};
  const std::vector<uint16_t> h = {0x3C00, 0x3800};  // 1.0, 0.5
  const std::string header =
      R"({ "b" : {"dtype":"F16","shape":[2],"data_offsets":[12,16]},)"
      R"( "a" : {"shape":[3],"data_offsets":[0,12],"dtype":"F32"} })";
  ASSERT_NE((8 + header.size()) % 4, 0u) << "want an unaligned data section";
  auto r = SafetensorsReader::FromBytes(MakeFile(header, Bytes(a) + Bytes(h)));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->tensors().size(), 2u);
  EXPECT_EQ(r->tensors()[0].name, "a");  // data order, not header order
  EXPECT_EQ(r->tensors()[1].name, "b");
  std::vector<float> out(3);
  ASSERT_TRUE(r->ReadAsFloat("a", {3}, out.data()).ok());
  EXPECT_EQ(out, a);
  ASSERT_TRUE(r->ReadAsFloat("b", {2}, out.data()).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 0.5f);
}

TEST(SafetensorsTest, ReadAsFloatConvertsEveryFloatDtype) {
  const std::vector<float> f32 = {1.5f, -0.0f, 1e-30f};
  const std::vector<uint16_t> f16 = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x7C00};
  const std::vector<uint16_t> bf16 = {FloatToBF16(3.140625f), 0xBF80};
  const std::vector<double> f64 = {0.1, -1e300, 2.5};
  auto bytes = SerializeSafetensors(
      {{"f32", DType::kF32, {3}, f32.data(), 12},
       {"f16", DType::kF16, {5}, f16.data(), 10},
       {"bf16", DType::kBF16, {2, 1}, bf16.data(), 4},
       {"f64", DType::kF64, {3}, f64.data(), 24}},
      {});
  ASSERT_TRUE(bytes.ok());
  auto r = SafetensorsReader::FromBytes(*bytes);
  ASSERT_TRUE(r.ok()) << r.status();

  std::vector<float> out(5);
  ASSERT_TRUE(r->ReadAsFloat("f32", {3}, out.data()).ok());
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_TRUE(std::signbit(out[1]));
  EXPECT_EQ(out[2], 1e-30f);
  ASSERT_TRUE(r->ReadAsFloat("f16", {5}, out.data()).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.5f);
  EXPECT_EQ(out[2], 65504.0f);
  EXPECT_EQ(out[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(out[4]));
  ASSERT_TRUE(r->ReadAsFloat("bf16", {2, 1}, out.data()).ok());
  EXPECT_EQ(out[0], 3.140625f);
  EXPECT_EQ(out[1], -1.0f);
  ASSERT_TRUE(r->ReadAsFloat("f64", {3}, out.data()).ok());
  EXPECT_EQ(out[0], 0.1f);
  EXPECT_EQ(out[1], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[2], 2.5f);
}

TEST(SafetensorsTest, ReadAsFloatScalarAndEmpty) {
  const float s = 7.0f;
  auto bytes = SerializeSafetensors(
      {{"s", DType::kF32, {}, &s, 4}, {"e", DType::kF16, {0, 4}, nullptr, 0}},
      {});
  ASSERT_TRUE(bytes.ok());
  auto r = SafetensorsReader::FromBytes(*bytes);
  ASSERT_TRUE(r.ok());
  float out = 0;
  ASSERT_TRUE(r->ReadAsFloat("s", {}, &out).ok());
  EXPECT_EQ(out, 7.0f);
  EXPECT_TRUE(r->ReadAsFloat("e", {0, 4}, nullptr).ok());
  // A scalar is not a [1] vector.
  absl::Status st = r->ReadAsFloat("s", {1}, &out);
  EXPECT_EQ(CodeOf(st), ErrorCode::kTensorShape);
  EXPECT_EQ(st.message(), "tensor s: expected [1], got []");
}

TEST(SafetensorsTest, ReadAsFloatErrors) {
  const std::vector<float> w = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> ids = {1, 2};
  auto bytes = SerializeSafetensors(
      {{"w", DType::kF32, {2, 3}, w.data(), 24},
       {"ids", DType::kI64, {2}, ids.data(), 16}},
      {});
  ASSERT_TRUE(bytes.ok());
  auto r = SafetensorsReader::FromBytes(*bytes);
  ASSERT_TRUE(r.ok());
  std::vector<float> out(6);

  absl::Status st = r->ReadAsFloat("missing.weight", {2, 3}, out.data());
  EXPECT_EQ(CodeOf(st), ErrorCode::kTensorMissing);
  EXPECT_THAT(st.message(), HasSubstr("missing.weight"));

  st = r->ReadAsFloat("w", {3, 2}, out.data());
  EXPECT_EQ(CodeOf(st), ErrorCode::kTensorShape);
  EXPECT_EQ(st.message(), "tensor w: expected [3,2], got [2,3]");

  st = r->ReadAsFloat("ids", {2}, out.data());
  EXPECT_EQ(CodeOf(st), ErrorCode::kTensorDtype);
  EXPECT_THAT(st.message(), HasSubstr("I64"));

  st = r->ReadAsFloat("w", {2, 3}, nullptr);
  EXPECT_EQ(CodeOf(st), ErrorCode::kInvalidArgument);

  st = r->CopyAsFloat(*r->Find("w"), out.data(), 5);
  EXPECT_EQ(CodeOf(st), ErrorCode::kBufferTooSmall);
  EXPECT_THAT(st.message(), HasSubstr("6 elements"));

  TensorInfo forged = *r->Find("w");
  forged.offset = 1 << 20;
  EXPECT_EQ(r->data(forged), nullptr);
  EXPECT_EQ(CodeOf(r->CopyAsFloat(forged, out.data(), 6)),
            ErrorCode::kInvalidArgument);
}

TEST(SafetensorsTest, ReaderSurvivesMove) {
  const std::vector<float> w = {1, 2};
  auto bytes = SerializeSafetensors({{"w", DType::kF32, {2}, w.data(), 8}},
                                    {{"k", "v"}});
  ASSERT_TRUE(bytes.ok());
  auto r = SafetensorsReader::FromBytes(*bytes);
  ASSERT_TRUE(r.ok());
  SafetensorsReader moved = *std::move(r);
  std::vector<float> out(2);
  ASSERT_TRUE(moved.ReadAsFloat("w", {2}, out.data()).ok());
  EXPECT_EQ(out, w);
  EXPECT_EQ(moved.metadata().at("k"), "v");
}

// ---------------------------------------------------------------- validation

TEST(SafetensorsValidationTest, ShorterThanEightBytes) {
  for (size_t n = 0; n < 8; ++n) {
    ExpectRejected(std::string(n, '\0'), ErrorCode::kCorruptFile,
                   {"file is " + std::to_string(n) + " bytes", "shorter"});
  }
}

TEST(SafetensorsValidationTest, HeaderLengthAboveLimit) {
  std::string f = MakeFile("{}");
  const uint64_t huge = (uint64_t{100} << 20) + 1;
  std::memcpy(f.data(), &huge, 8);
  ExpectRejected(f, ErrorCode::kCorruptFile,
                 {"header length 104857601", "limit"});
  const uint64_t max = UINT64_MAX;
  std::memcpy(f.data(), &max, 8);
  ExpectRejected(f, ErrorCode::kCorruptFile, {"18446744073709551615"});
}

TEST(SafetensorsValidationTest, HeaderLengthAboveFileSize) {
  std::string f = MakeFile("{}");
  const uint64_t n = 9999;
  std::memcpy(f.data(), &n, 8);
  ExpectRejected(f, ErrorCode::kCorruptFile,
                 {"header length 9999 exceeds the 2 bytes",
                  "file size 10"});
}

TEST(SafetensorsValidationTest, HeaderNotJson) {
  ExpectCorrupt("", "", {"not valid JSON", "end of input"});
  ExpectCorrupt("{\"w\":", "", {"not valid JSON"});
  ExpectCorrupt("{} trailing", "", {"not valid JSON", "after the JSON value"});
  ExpectCorrupt("{\"\xFF\":1}", "", {"not valid JSON", "UTF-8"});
  ExpectCorrupt(std::string(100, '[') + std::string(100, ']'), "",
                {"not valid JSON", "nesting deeper than 64"});
  // Header padded with NULs instead of spaces is not JSON whitespace.
  ExpectCorrupt(std::string("{}\0\0\0\0\0\0", 8), "", {"not valid JSON"});
}

TEST(SafetensorsValidationTest, HeaderNotAnObject) {
  ExpectCorrupt("[]", "", {"header is a JSON array, expected an object"});
  ExpectCorrupt("\"x\"", "", {"header is a JSON string"});
  ExpectCorrupt("12", "", {"header is a JSON number"});
}

TEST(SafetensorsValidationTest, EntryNotAnObject) {
  ExpectCorrupt("{\"w\":5}", "", {"tensor w", "entry is a JSON number"});
  ExpectCorrupt("{\"w\":[1]}", "", {"tensor w", "entry is a JSON array"});
  ExpectCorrupt("{\"w\":null}", "", {"entry is a JSON null"});
}

TEST(SafetensorsValidationTest, MissingFields) {
  ExpectCorrupt(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd",
                {"tensor w", "missing \"dtype\""});
  ExpectCorrupt(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "abcd",
                {"tensor w", "missing \"shape\""});
  ExpectCorrupt(R"({"w":{"dtype":"F32","shape":[1]}})", "abcd",
                {"tensor w", "missing \"data_offsets\""});
  ExpectCorrupt(R"({"w":{}})", "", {"missing"});
}

TEST(SafetensorsValidationTest, UnknownField) {
  ExpectCorrupt(
      R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":1}})",
      "abcd", {"tensor w", "unknown field \"extra\""});
}

TEST(SafetensorsValidationTest, UnknownDtype) {
  ExpectRejected(MakeFile(OneTensor("\"Q7\"", "[1]", "[0,1]"), "a"),
                 ErrorCode::kTensorDtype, {"tensor w", "unknown dtype \"Q7\""});
  ExpectRejected(MakeFile(OneTensor("\"F4\"", "[2]", "[0,1]"), "a"),
                 ErrorCode::kTensorDtype, {"\"F4\""});
  ExpectRejected(MakeFile(OneTensor("\"f32\"", "[1]", "[0,4]"), "abcd"),
                 ErrorCode::kTensorDtype, {"\"f32\""});
  ExpectCorrupt(OneTensor("7", "[1]", "[0,4]"), "abcd",
                {"\"dtype\" is a JSON number"});
}

TEST(SafetensorsValidationTest, BadShapes) {
  ExpectCorrupt(OneTensor("\"F32\"", "[2,-3]", "[0,4]"), "abcd",
                {"tensor w", "shape[1] is negative (-3)"});
  ExpectCorrupt(OneTensor("\"F32\"", "[2.5]", "[0,4]"), "abcd",
                {"tensor w", "shape[0]", "not an integer"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1e2]", "[0,4]"), "abcd",
                {"not an integer"});
  ExpectCorrupt(OneTensor("\"F32\"", "[\"1\"]", "[0,4]"), "abcd",
                {"shape[0]", "got string"});
  ExpectCorrupt(OneTensor("\"F32\"", "5", "[0,4]"), "abcd",
                {"\"shape\" is a JSON number, expected an array"});
  ExpectCorrupt(OneTensor("\"F32\"", "[99999999999999999999]", "[0,4]"),
                "abcd", {"shape[0]", "does not fit in int64"});
  // Element count overflow: 2^32 * 2^32.
  ExpectCorrupt(OneTensor("\"F32\"", "[4294967296,4294967296]", "[0,4]"),
                "abcd", {"tensor w", "[4294967296,4294967296]",
                         "more than 2^63-1 elements"});
  // Byte size overflow: 2^62 elements of 8 bytes.
  ExpectCorrupt(OneTensor("\"F64\"", "[4611686018427387904]", "[0,8]"),
                "abcdefgh", {"tensor w", "needs more than 2^64 bytes"});
}

TEST(SafetensorsValidationTest, BadDataOffsets) {
  const std::string d12(12, 'x');
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[0]"), d12,
                {"tensor w", "two unsigned integers"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[0,4,8]"), d12,
                {"two unsigned integers"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "{}"), d12,
                {"two unsigned integers"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[-4,0]"), d12,
                {"data_offsets[0]", "negative"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[0,4.0]"), d12,
                {"data_offsets[1]", "not an integer"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[0,18446744073709551616]"), d12,
                {"data_offsets[1]", "does not fit in uint64"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[8,4]"), d12,
                {"tensor w", "data_offsets [8, 4] are not ascending"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[12,16]"), d12,
                {"data_offsets [12, 16] extend past the end of the 12-byte "
                 "data section"});
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[0,18446744073709551615]"), d12,
                {"extend past"});
}

TEST(SafetensorsValidationTest, ByteCountMismatch) {
  ExpectCorrupt(OneTensor("\"F32\"", "[3]", "[0,8]"), std::string(8, 'x'),
                {"tensor w", "hold 8 bytes but shape [3] of F32 needs 12"});
  ExpectCorrupt(OneTensor("\"F16\"", "[]", "[0,4]"), std::string(4, 'x'),
                {"shape [] of F16 needs 2"});
  ExpectCorrupt(OneTensor("\"U8\"", "[0]", "[0,1]"), "x",
                {"hold 1 bytes but shape [0] of U8 needs 0"});
}

TEST(SafetensorsValidationTest, OverlappingTensors) {
  ExpectCorrupt(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                std::string(12, 'x'), {"a [0, 8)", "b [4, 12)", "overlap"});
  // Exact aliasing is overlap too.
  ExpectCorrupt(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                std::string(8, 'x'), {"overlap"});
}

TEST(SafetensorsValidationTest, ZeroSizeTensorsOverlapNothing) {
  // A zero-size tensor owns no bytes, so one placed inside another
  // tensor's range is accepted (documented choice).
  auto r = SafetensorsReader::FromBytes(MakeFile(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
      std::string(8, 'x')));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tensors().size(), 2u);
}

TEST(SafetensorsValidationTest, DataSectionNotFullyCovered) {
  // A gap between tensors.
  ExpectCorrupt(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                std::string(12, 'x'),
                {"data section bytes [4, 8) are not covered"});
  // A gap at the start.
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[4,8]"), std::string(8, 'x'),
                {"data section bytes [0, 4) are not covered"});
  // Trailing bytes after the last tensor.
  ExpectCorrupt(OneTensor("\"F32\"", "[1]", "[0,4]"), std::string(16, 'x'),
                {"data section bytes [4, 16) after the last tensor"});
  // Data with no tensors at all.
  ExpectCorrupt("{}", "x", {"data section bytes [0, 1)"});
}

TEST(SafetensorsValidationTest, BadMetadata) {
  ExpectCorrupt(R"({"__metadata__":[]})", "",
                {"__metadata__ is a JSON array, expected an object"});
  ExpectCorrupt(R"({"__metadata__":"x"})", "", {"__metadata__ is a JSON"});
  ExpectCorrupt(R"({"__metadata__":{"a":"b","n":1}})", "",
                {"__metadata__ value for key n is a JSON number"});
  ExpectCorrupt(R"({"__metadata__":{"a":{"nested":"x"}}})", "",
                {"key a is a JSON object"});
  // null is not a string either.
  ExpectCorrupt(R"({"__metadata__":{"a":null}})", "", {"JSON null"});
  // __metadata__ may come anywhere in the header.
  auto r = SafetensorsReader::FromBytes(
      MakeFile(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
               R"("__metadata__":{"k":"v"}})",
               "x"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->metadata().at("k"), "v");
}

TEST(SafetensorsValidationTest, DuplicateNames) {
  ExpectCorrupt(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                "xy", {"duplicate key \"w\""});
  ExpectCorrupt(R"({"__metadata__":{},"__metadata__":{}})", "",
                {"duplicate key \"__metadata__\""});
}

TEST(SafetensorsValidationTest, OddNamesAreQuotedInMessages) {
  ExpectCorrupt("{\"we ird\\n\":5}", "", {"tensor \"we ird\\n\""});
  const std::string long_name(500, 'n');
  auto r = SafetensorsReader::FromBytes(
      MakeFile("{\"" + long_name + "\":5}"));
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.status().message().size(), 300u);
}

// ---------------------------------------------------------------- robustness

TEST(SafetensorsRobustnessTest, EveryTruncationIsRejected) {
  const std::string file = SmallValidFile();
  ASSERT_TRUE(SafetensorsReader::FromBytes(file).ok());
  for (size_t n = 0; n < file.size(); ++n) {
    auto r = SafetensorsReader::FromBytes(file.substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(CodeOf(r.status()), ErrorCode::kCorruptFile)
        << n << ": " << r.status();
  }
  // Extra bytes at the end are refused too (uncovered data).
  EXPECT_FALSE(SafetensorsReader::FromBytes(file + "x").ok());
}

TEST(SafetensorsRobustnessTest, SingleByteFlipsNeverCrash) {
  const std::string file = SmallValidFile();
  int parsed = 0, rejected = 0;
  for (size_t i = 0; i < file.size(); ++i) {
    for (uint8_t mask : {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80,
                         0xFF}) {
      std::string f = file;
      f[i] = static_cast<char>(f[i] ^ mask);
      auto r = SafetensorsReader::FromBytes(std::move(f));
      if (r.ok()) {
        ++parsed;
        TouchAllTensors(*r);
      } else {
        ++rejected;
        const ErrorCode code = CodeOf(r.status());
        EXPECT_TRUE(code == ErrorCode::kCorruptFile ||
                    code == ErrorCode::kTensorDtype)
            << r.status();
      }
    }
  }
  // Flips in the data section parse; flips in the length prefix and most
  // of the header do not.
  EXPECT_GT(parsed, 0);
  EXPECT_GT(rejected, 0);
}

TEST(SafetensorsRobustnessTest, EveryByteValueAtEveryHeaderPosition) {
  // Exhaustive single-byte substitutions over a tiny file.
  const std::vector<float> v = {1.0f};
  auto file = SerializeSafetensors({{"w", DType::kF32, {1}, v.data(), 4}}, {});
  ASSERT_TRUE(file.ok());
  for (size_t i = 0; i < file->size(); ++i) {
    for (int b = 0; b < 256; ++b) {
      std::string f = *file;
      f[i] = static_cast<char>(b);
      auto r = SafetensorsReader::FromBytes(std::move(f));
      if (r.ok()) TouchAllTensors(*r);
    }
  }
}

// ---------------------------------------------------------------- writer

TEST(SafetensorsWriterTest, RejectsInvalidInput) {
  const std::vector<float> v = {1, 2, 3};
  auto expect_invalid = [](const std::vector<TensorToWrite>& t,
                           const std::map<std::string, std::string>& m,
                           const std::string& part) {
    auto r = SerializeSafetensors(t, m);
    ASSERT_FALSE(r.ok()) << part;
    EXPECT_EQ(CodeOf(r.status()), ErrorCode::kInvalidArgument);
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(part));
  };
  expect_invalid({{"w", DType::kF32, {3}, v.data(), 12},
                  {"w", DType::kF32, {3}, v.data(), 12}},
                 {}, "more than once");
  expect_invalid({{"__metadata__", DType::kF32, {3}, v.data(), 12}}, {},
                 "reserved");
  expect_invalid({{"w", DType::kF32, {3}, v.data(), 8}}, {},
                 "nbytes 8 does not match shape [3] of F32");
  expect_invalid({{"w", DType::kF32, {-3}, v.data(), 12}}, {}, "negative");
  expect_invalid({{"w", DType::kF32, {3}, nullptr, 12}}, {}, "NULL");
  expect_invalid({{"w\xFF", DType::kF32, {3}, v.data(), 12}}, {}, "UTF-8");
  expect_invalid({{"w", static_cast<DType>(77), {3}, v.data(), 12}}, {},
                 "invalid dtype");
  expect_invalid({{"w", DType::kF32, {4294967296, 4294967296}, v.data(), 12}},
                 {}, "does not match");
  expect_invalid({}, {{"k", "\xC3"}}, "metadata entry k is not UTF-8");
}

// ---------------------------------------------------------------- files

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir(); }
  void TearDown() override { RemoveTree(dir_); }
  std::string dir_;
};

TEST_F(SafetensorsFileTest, WriteAndReadFile) {
  const std::vector<float> v = {1, 2, 3, 4};
  const std::string path = dir_ + "/model.safetensors";
  ASSERT_TRUE(WriteSafetensorsFile(path, {{"w", DType::kF32, {2, 2}, v.data(),
                                           16}},
                                   {{"k", "v"}})
                  .ok());
  EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"model.safetensors"});
  auto r = SafetensorsReader::ReadFile(path);
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<float> out(4);
  ASSERT_TRUE(r->ReadAsFloat("w", {2, 2}, out.data()).ok());
  EXPECT_EQ(out, v);
  EXPECT_EQ(r->metadata().at("k"), "v");
}

TEST_F(SafetensorsFileTest, ReadFileErrors) {
  auto missing = SafetensorsReader::ReadFile(dir_ + "/nope.safetensors");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(CodeOf(missing.status()), ErrorCode::kIo);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("No such file or directory"));
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("nope.safetensors"));

  auto dir = SafetensorsReader::ReadFile(dir_);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(CodeOf(dir.status()), ErrorCode::kIo);

  const std::string bad = dir_ + "/bad.safetensors";
  ASSERT_TRUE(WriteFileAtomically(bad, "abc").ok());
  auto corrupt = SafetensorsReader::ReadFile(bad);
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(CodeOf(corrupt.status()), ErrorCode::kCorruptFile);
  EXPECT_THAT(std::string(corrupt.status().message()),
              StartsWith(bad + ": safetensors: file is 3 bytes"));
}

TEST_F(SafetensorsFileTest, AtomicWriteReplacesAndLeavesNoTempFiles) {
  const std::string path = dir_ + "/f.bin";
  ASSERT_TRUE(WriteFileAtomically(path, "old contents").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "new").ok());
  EXPECT_EQ(ReadAll(path), "new");
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_EQ(ReadAll(path), "");
  const std::string big(3 << 20, 'z');
  ASSERT_TRUE(WriteFileAtomically(path, big).ok());
  EXPECT_EQ(ReadAll(path), big);
  EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"f.bin"});
}

TEST_F(SafetensorsFileTest, AtomicWriteOntoDirectoryFails) {
  const std::string target = dir_ + "/target";
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  ASSERT_TRUE(WriteFileAtomically(target + "/inside", "keep").ok());
  absl::Status st = WriteFileAtomically(target, "data");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(CodeOf(st), ErrorCode::kIo);
  EXPECT_THAT(std::string(st.message()), HasSubstr("cannot rename"));
  // The directory and its contents are intact and no temp file remains.
  struct stat s;
  ASSERT_EQ(stat(target.c_str(), &s), 0);
  EXPECT_TRUE(S_ISDIR(s.st_mode));
  EXPECT_EQ(ReadAll(target + "/inside"), "keep");
  EXPECT_EQ(ListDir(dir_), std::vector<std::string>{"target"});
}

TEST_F(SafetensorsFileTest, AtomicWriteIntoMissingDirectoryFails) {
  absl::Status st = WriteFileAtomically(dir_ + "/no/such/dir/f", "x");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(CodeOf(st), ErrorCode::kIo);
  EXPECT_THAT(std::string(st.message()), HasSubstr("No such file"));
}

TEST_F(SafetensorsFileTest, AtomicWriteInReadOnlyDirectoryKeepsOldFile) {
  const std::string ro = dir_ + "/ro";
  ASSERT_EQ(mkdir(ro.c_str(), 0755), 0);
  const std::string path = ro + "/f.bin";
  ASSERT_TRUE(WriteFileAtomically(path, "old").ok());
  ASSERT_EQ(chmod(ro.c_str(), 0555), 0);
  // Privileged users (root, CAP_DAC_OVERRIDE) can write anyway.
  const std::string probe = ro + "/probe";
  FILE* f = std::fopen(probe.c_str(), "w");
  if (f != nullptr) {
    std::fclose(f);
    unlink(probe.c_str());
    chmod(ro.c_str(), 0755);
    GTEST_SKIP() << "permissions are not enforced for this user";
  }
  absl::Status st = WriteFileAtomically(path, "new");
  chmod(ro.c_str(), 0755);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(CodeOf(st), ErrorCode::kIo);
  EXPECT_THAT(std::string(st.message()), HasSubstr("Permission denied"));
  EXPECT_EQ(ReadAll(path), "old");
  EXPECT_EQ(ListDir(ro), std::vector<std::string>{"f.bin"});
}

}  // namespace
}  // namespace memmamba
