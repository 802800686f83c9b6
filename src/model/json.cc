#include "model/json.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace memmamba {
namespace {

// Debian's Abseil (20220623) keeps its own absl::string_view, which
// absl::StrCat accepts but std::string_view does not convert to; wrapping
// works with either Abseil configuration.
absl::string_view Sv(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Messages quote at most this many bytes of an offending key or literal, so
// a 100 MiB string in a hostile file cannot produce a 100 MiB message.
constexpr size_t kMaxQuotedBytes = 64;

// Length of the well-formed UTF-8 sequence starting at p[0] (with `avail`
// bytes available), or 0 when the bytes there are not well-formed.
// Table 3-7 of the Unicode standard: no overlong forms, no surrogates,
// nothing above U+10FFFF.
size_t Utf8SequenceLength(const unsigned char* p, size_t avail) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  auto in = [](unsigned char b, unsigned char lo, unsigned char hi) {
    return b >= lo && b <= hi;
  };
  if (in(c, 0xC2, 0xDF)) {
    return (avail >= 2 && in(p[1], 0x80, 0xBF)) ? 2 : 0;
  }
  if (in(c, 0xE0, 0xEF)) {
    if (avail < 3) return 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
    return (in(p[1], lo, hi) && in(p[2], 0x80, 0xBF)) ? 3 : 0;
  }
  if (in(c, 0xF0, 0xF4)) {
    if (avail < 4) return 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    return (in(p[1], lo, hi) && in(p[2], 0x80, 0xBF) && in(p[3], 0x80, 0xBF))
               ? 4
               : 0;
  }
  return 0;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// A short, printable, quoted rendering of `s` for error messages.
std::string QuoteForMessage(std::string_view s) {
  if (s.size() <= kMaxQuotedBytes) return JsonQuote(s);
  size_t cut = kMaxQuotedBytes;
  // Do not split a UTF-8 sequence.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(JsonQuote(s.substr(0, cut)), "...");
}

std::string DescribeByte(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  if (u >= 0x21 && u < 0x7F) return absl::StrCat("'", std::string(1, c), "'");
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", u);
  return buf;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

class Parser {
 public:
  Parser(std::string_view text, const JsonParseOptions& options)
      : s_(text), options_(options) {}

  absl::StatusOr<JsonValue> ParseDocument() {
    SkipWhitespace();
    JsonValue value;
    MM_RETURN_IF_ERROR(ParseValue(/*depth=*/0, &value));
    SkipWhitespace();
    if (pos_ != s_.size()) {
      return Fail(absl::StrCat("unexpected ", DescribeByte(s_[pos_]),
                               " after the JSON value"));
    }
    return value;
  }

 private:
  absl::Status Fail(std::string_view what) const { return FailAt(what, pos_); }
  absl::Status FailAt(std::string_view what, size_t offset) const {
    return Errorf(ErrorCode::kCorruptFile, "json: ", Sv(what), " at offset ",
                  offset);
  }

  bool AtEnd() const { return pos_ >= s_.size(); }

  void SkipWhitespace() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  absl::Status CountValue() {
    if (++values_ > options_.max_values) {
      return Fail(absl::StrCat("more than ", options_.max_values, " values"));
    }
    return absl::OkStatus();
  }

  absl::Status ParseValue(int depth, JsonValue* out) {
    if (AtEnd()) return Fail("unexpected end of input, expected a value");
    MM_RETURN_IF_ERROR(CountValue());
    const char c = s_[pos_];
    switch (c) {
      case '{':
        return ParseObject(depth + 1, out);
      case '[':
        return ParseArray(depth + 1, out);
      case '"': {
        std::string str;
        MM_RETURN_IF_ERROR(ParseString(&str));
        *out = JsonValue::String(std::move(str));
        return absl::OkStatus();
      }
      case 't':
        MM_RETURN_IF_ERROR(ParseLiteral("true"));
        *out = JsonValue::Bool(true);
        return absl::OkStatus();
      case 'f':
        MM_RETURN_IF_ERROR(ParseLiteral("false"));
        *out = JsonValue::Bool(false);
        return absl::OkStatus();
      case 'n':
        MM_RETURN_IF_ERROR(ParseLiteral("null"));
        *out = JsonValue::Null();
        return absl::OkStatus();
      default:
        if (c == '-' || IsDigit(c)) return ParseNumber(out);
        return Fail(absl::StrCat("unexpected ", DescribeByte(c),
                                 ", expected a value"));
    }
  }

  absl::Status ParseLiteral(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) {
      return Fail(absl::StrCat("invalid literal, expected '", Sv(word), "'"));
    }
    pos_ += word.size();
    return absl::OkStatus();
  }

  // number = [ '-' ] ( '0' | [1-9][0-9]* ) [ '.' [0-9]+ ] [ [eE] [+-]? [0-9]+ ]
  absl::Status ParseNumber(JsonValue* out) {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    if (AtEnd() || !IsDigit(s_[pos_])) {
      return Fail("invalid number: expected a digit");
    }
    if (s_[pos_] == '0') {
      ++pos_;
      if (!AtEnd() && IsDigit(s_[pos_])) {
        return Fail("invalid number: leading zero");
      }
    } else {
      while (!AtEnd() && IsDigit(s_[pos_])) ++pos_;
    }
    if (!AtEnd() && s_[pos_] == '.') {
      ++pos_;
      if (AtEnd() || !IsDigit(s_[pos_])) {
        return Fail("invalid number: expected a digit after '.'");
      }
      while (!AtEnd() && IsDigit(s_[pos_])) ++pos_;
    }
    if (!AtEnd() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (!AtEnd() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (AtEnd() || !IsDigit(s_[pos_])) {
        return Fail("invalid number: expected a digit in the exponent");
      }
      while (!AtEnd() && IsDigit(s_[pos_])) ++pos_;
    }
    *out = JsonValue::NumberText(std::string(s_.substr(start, pos_ - start)));
    return absl::OkStatus();
  }

  // Reads 4 hex digits at pos_ (just after "\u").
  absl::Status ParseHex4(uint32_t* out) {
    if (s_.size() - pos_ < 4) {
      return Fail("unexpected end of input in \\u escape");
    }
    uint32_t v = 0;
    for (size_t i = 0; i < 4; ++i) {
      const int h = HexValue(s_[pos_ + i]);
      if (h < 0) {
        return FailAt(absl::StrCat("invalid hex digit ",
                                   DescribeByte(s_[pos_ + i]),
                                   " in \\u escape"),
                      pos_ + i);
      }
      v = (v << 4) | static_cast<uint32_t>(h);
    }
    pos_ += 4;
    *out = v;
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    const size_t start = pos_;
    ++pos_;  // opening quote
    while (true) {
      // Copy the run of bytes that need no special handling in one go.
      const size_t run_start = pos_;
      while (pos_ < s_.size()) {
        const unsigned char u = static_cast<unsigned char>(s_[pos_]);
        if (u == '"' || u == '\\' || u < 0x20 || u >= 0x80) break;
        ++pos_;
      }
      out->append(s_.data() + run_start, pos_ - run_start);
      if (AtEnd()) {
        return FailAt("unterminated string", start);
      }
      const unsigned char u = static_cast<unsigned char>(s_[pos_]);
      if (u == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (u < 0x20) {
        return Fail(absl::StrCat("unescaped control character ",
                                 DescribeByte(s_[pos_]), " in string"));
      }
      if (u >= 0x80) {
        const size_t n = Utf8SequenceLength(
            reinterpret_cast<const unsigned char*>(s_.data()) + pos_,
            s_.size() - pos_);
        if (n == 0) return Fail("invalid UTF-8 in string");
        out->append(s_.data() + pos_, n);
        pos_ += n;
        continue;
      }
      // Backslash escape.
      const size_t escape_start = pos_;
      ++pos_;
      if (AtEnd()) return FailAt("unterminated string", start);
      const char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          MM_RETURN_IF_ERROR(ParseHex4(&cp));
          if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return FailAt("lone low surrogate in \\u escape", escape_start);
          }
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") {
              return FailAt("high surrogate not followed by a \\u escape",
                            escape_start);
            }
            pos_ += 2;
            uint32_t low = 0;
            MM_RETURN_IF_ERROR(ParseHex4(&low));
            if (low < 0xDC00 || low > 0xDFFF) {
              return FailAt("high surrogate not followed by a low surrogate",
                            escape_start);
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return FailAt(absl::StrCat("invalid escape '\\", std::string(1, e),
                                     "'"),
                        escape_start);
      }
    }
  }

  absl::Status CheckDepth(int depth) const {
    if (depth > options_.max_depth) {
      return Fail(absl::StrCat("nesting deeper than ", options_.max_depth));
    }
    return absl::OkStatus();
  }

  absl::Status ParseArray(int depth, JsonValue* out) {
    MM_RETURN_IF_ERROR(CheckDepth(depth));
    ++pos_;  // '['
    JsonValue::Array items;
    SkipWhitespace();
    if (!AtEnd() && s_[pos_] == ']') {
      ++pos_;
      *out = JsonValue::MakeArray(std::move(items));
      return absl::OkStatus();
    }
    while (true) {
      SkipWhitespace();
      items.emplace_back();
      MM_RETURN_IF_ERROR(ParseValue(depth, &items.back()));
      SkipWhitespace();
      if (AtEnd()) return Fail("unexpected end of input in array");
      const char c = s_[pos_++];
      if (c == ']') break;
      if (c != ',') {
        --pos_;
        return Fail(absl::StrCat("unexpected ", DescribeByte(c),
                                 " in array, expected ',' or ']'"));
      }
    }
    *out = JsonValue::MakeArray(std::move(items));
    return absl::OkStatus();
  }

  absl::Status ParseObject(int depth, JsonValue* out) {
    MM_RETURN_IF_ERROR(CheckDepth(depth));
    const size_t start = pos_;
    ++pos_;  // '{'
    JsonValue::Object members;
    SkipWhitespace();
    if (!AtEnd() && s_[pos_] == '}') {
      ++pos_;
      *out = JsonValue::MakeObject(std::move(members));
      return absl::OkStatus();
    }
    while (true) {
      SkipWhitespace();
      if (AtEnd()) return Fail("unexpected end of input in object");
      if (s_[pos_] != '"') {
        return Fail(absl::StrCat("unexpected ", DescribeByte(s_[pos_]),
                                 " in object, expected a string key"));
      }
      members.emplace_back();
      MM_RETURN_IF_ERROR(ParseString(&members.back().key));
      SkipWhitespace();
      if (AtEnd() || s_[pos_] != ':') {
        return Fail("expected ':' after object key");
      }
      ++pos_;
      SkipWhitespace();
      MM_RETURN_IF_ERROR(ParseValue(depth, &members.back().value));
      SkipWhitespace();
      if (AtEnd()) return Fail("unexpected end of input in object");
      const char c = s_[pos_++];
      if (c == '}') break;
      if (c != ',') {
        --pos_;
        return Fail(absl::StrCat("unexpected ", DescribeByte(c),
                                 " in object, expected ',' or '}'"));
      }
    }
    // Duplicate keys: sort views of the keys (O(n log n), so a header with
    // a million tensors is still cheap) and compare neighbours. The views
    // point into `members`, which no longer changes.
    if (members.size() > 1) {
      std::vector<std::string_view> keys;
      keys.reserve(members.size());
      for (const JsonMember& m : members) keys.push_back(m.key);
      std::sort(keys.begin(), keys.end());
      for (size_t i = 1; i < keys.size(); ++i) {
        if (keys[i] == keys[i - 1]) {
          return FailAt(absl::StrCat("duplicate key ", QuoteForMessage(keys[i]),
                                     " in object"),
                        start);
        }
      }
    }
    *out = JsonValue::MakeObject(std::move(members));
    return absl::OkStatus();
  }

  std::string_view s_;
  const JsonParseOptions& options_;
  size_t pos_ = 0;
  size_t values_ = 0;
};

const std::string& EmptyString() {
  static const std::string* const kEmpty = new std::string();
  return *kEmpty;
}

}  // namespace

JsonValue JsonValue::Bool(bool b) {
  JsonValue v;
  v.value_ = b;
  return v;
}

JsonValue JsonValue::NumberText(std::string text) {
  JsonValue v;
  v.value_ = Number{std::move(text)};
  return v;
}

JsonValue JsonValue::String(std::string s) {
  JsonValue v;
  v.value_.emplace<std::string>(std::move(s));
  return v;
}

JsonValue JsonValue::MakeArray(Array items) {
  JsonValue v;
  v.value_.emplace<Array>(std::move(items));
  return v;
}

JsonValue JsonValue::MakeObject(Object members) {
  JsonValue v;
  v.value_.emplace<Object>(std::move(members));
  return v;
}

bool JsonValue::bool_value() const {
  const bool* b = std::get_if<bool>(&value_);
  return b != nullptr && *b;
}

const std::string& JsonValue::number_text() const {
  const Number* n = std::get_if<Number>(&value_);
  return n != nullptr ? n->text : EmptyString();
}

const std::string& JsonValue::string_value() const {
  const std::string* s = std::get_if<std::string>(&value_);
  return s != nullptr ? *s : EmptyString();
}

const JsonValue::Array& JsonValue::array() const {
  static const Array* const kEmpty = new Array();
  const Array* a = std::get_if<Array>(&value_);
  return a != nullptr ? *a : *kEmpty;
}

const JsonValue::Object& JsonValue::object() const {
  static const Object* const kEmpty = new Object();
  const Object* o = std::get_if<Object>(&value_);
  return o != nullptr ? *o : *kEmpty;
}

const JsonValue* JsonValue::Find(std::string_view key) const {
  for (const JsonMember& m : object()) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

bool JsonValue::is_integer() const {
  if (!is_number()) return false;
  return number_text().find_first_of(".eE") == std::string::npos;
}

namespace {

// Parses the digits of an integer literal (already known to match the JSON
// grammar, without fraction/exponent) into a magnitude; false on overflow.
bool ParseMagnitude(std::string_view digits, uint64_t* out) {
  uint64_t v = 0;
  for (char c : digits) {
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

absl::Status NotAnInteger(const JsonValue& v) {
  if (!v.is_number()) {
    return Errorf(ErrorCode::kCorruptFile, "json: expected an integer, got ",
                  Sv(JsonTypeName(v.type())));
  }
  return Errorf(ErrorCode::kCorruptFile, "json: number ",
                QuoteForMessage(v.number_text()), " is not an integer");
}

}  // namespace

absl::StatusOr<int64_t> JsonValue::AsInt64() const {
  if (!is_integer()) return NotAnInteger(*this);
  std::string_view text = number_text();
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) text.remove_prefix(1);
  uint64_t magnitude = 0;
  const uint64_t limit =
      negative ? uint64_t{1} << 63 : static_cast<uint64_t>(INT64_MAX);
  if (!ParseMagnitude(text, &magnitude) || magnitude > limit) {
    return Errorf(ErrorCode::kCorruptFile, "json: integer ",
                  QuoteForMessage(number_text()), " does not fit in int64");
  }
  if (!negative) return static_cast<int64_t>(magnitude);
  // -2^63 has no positive counterpart; compute without overflow.
  return magnitude == 0 ? 0 : -static_cast<int64_t>(magnitude - 1) - 1;
}

absl::StatusOr<uint64_t> JsonValue::AsUint64() const {
  if (!is_integer()) return NotAnInteger(*this);
  std::string_view text = number_text();
  const bool negative = !text.empty() && text[0] == '-';
  if (negative) text.remove_prefix(1);
  uint64_t magnitude = 0;
  if (!ParseMagnitude(text, &magnitude)) {
    return Errorf(ErrorCode::kCorruptFile, "json: integer ",
                  QuoteForMessage(number_text()), " does not fit in uint64");
  }
  if (negative && magnitude != 0) {
    return Errorf(ErrorCode::kCorruptFile, "json: integer ",
                  QuoteForMessage(number_text()),
                  " is negative, expected an unsigned integer");
  }
  return magnitude;
}

std::string_view JsonTypeName(JsonValue::Type type) {
  switch (type) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return "boolean";
    case JsonValue::Type::kNumber: return "number";
    case JsonValue::Type::kString: return "string";
    case JsonValue::Type::kArray: return "array";
    case JsonValue::Type::kObject: return "object";
  }
  return "unknown";
}

absl::StatusOr<JsonValue> ParseJson(std::string_view text,
                                    const JsonParseOptions& options) {
  Parser parser(text, options);
  return parser.ParseDocument();
}

bool IsValidUtf8(std::string_view s) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    const size_t n = Utf8SequenceLength(p + i, s.size() - i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run_start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u != '"' && u != '\\') continue;
    out->append(s.data() + run_start, i - run_start);
    run_start = i + 1;
    switch (u) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        out->append("\\u00");
        out->push_back(kHex[u >> 4]);
        out->push_back(kHex[u & 0xF]);
        break;
    }
  }
  out->append(s.data() + run_start, s.size() - run_start);
  out->push_back('"');
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

}  // namespace memmamba
