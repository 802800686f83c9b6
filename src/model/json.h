// A minimal, strict JSON (RFC 8259) parser and string writer.
//
// It exists for the safetensors header (DESIGN 5) and anything else the
// library reads from files, so it favours strictness and bounded work over
// convenience:
//   - input must be one JSON value surrounded only by JSON whitespace
//     (space, tab, LF, CR); anything after it is an error;
//   - strings must be valid UTF-8, may not contain raw control characters
//     (< 0x20), and support every escape including \uXXXX; surrogate pairs
//     are combined, a lone surrogate is an error; the result is UTF-8;
//   - numbers follow the JSON grammar exactly (no leading zeros, no '+', no
//     NaN/Infinity) and are kept as their source text: AsInt64()/AsUint64()
//     convert integers with overflow checks, anything else stays text;
//   - objects keep their members in document order and may not repeat a key;
//   - nesting deeper than JsonParseOptions::max_depth and documents with
//     more than JsonParseOptions::max_values values are refused, so hostile
//     input cannot exhaust the stack or blow up memory.
// Every error is ErrorCode::kCorruptFile (JSON only ever comes from files
// here) with a message that names the problem and its byte offset.
//
// Threads: everything here is safe to call from any thread; a JsonValue is
// a plain value (copyable, movable) with no shared state.
#ifndef MEMMAMBA_MODEL_JSON_H_
#define MEMMAMBA_MODEL_JSON_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace memmamba {

struct JsonMember;

class JsonValue {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  using Array = std::vector<JsonValue>;
  using Object = std::vector<JsonMember>;  // document order, unique keys

  JsonValue() = default;  // null
  static JsonValue Null() { return JsonValue(); }
  static JsonValue Bool(bool b);
  // `text` must already be a valid JSON number literal; the parser is the
  // only caller that needs this, tests may use it too.
  static JsonValue NumberText(std::string text);
  static JsonValue String(std::string s);
  static JsonValue MakeArray(Array items);
  static JsonValue MakeObject(Object members);

  Type type() const { return static_cast<Type>(value_.index()); }
  bool is_null() const { return type() == Type::kNull; }
  bool is_bool() const { return type() == Type::kBool; }
  bool is_number() const { return type() == Type::kNumber; }
  bool is_string() const { return type() == Type::kString; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors. On a type mismatch they return false / an empty string /
  // an empty array or object rather than crash, so hostile input that
  // slipped past a type check cannot turn into undefined behaviour.
  bool bool_value() const;
  const std::string& number_text() const;  // the literal, e.g. "-1.5e3"
  const std::string& string_value() const;  // decoded UTF-8
  const Array& array() const;
  const Object& object() const;

  // For an object: the member value with this key, or nullptr (also
  // nullptr when this is not an object). Linear in the member count.
  const JsonValue* Find(std::string_view key) const;

  // True when this is a number written without fraction or exponent.
  bool is_integer() const;
  // The integer value of a number. kCorruptFile when this is not a number,
  // has a fraction/exponent ("1.0" and "1e2" are refused: the text is kept
  // exactly as written), or does not fit the type. "-0" reads as 0.
  absl::StatusOr<int64_t> AsInt64() const;
  absl::StatusOr<uint64_t> AsUint64() const;

 private:
  struct Number {
    std::string text;
  };
  // The alternative order must match Type.
  std::variant<std::monostate, bool, Number, std::string, Array, Object>
      value_;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

// Human-readable name of a type ("object", "array", ...), for messages.
std::string_view JsonTypeName(JsonValue::Type type);

struct JsonParseOptions {
  // Arrays/objects nested deeper than this are refused (the parser is
  // recursive; this bounds its stack use).
  int max_depth = 64;
  // Total number of values (every scalar, array and object counts one)
  // above which the document is refused. Bounds memory at roughly
  // 40-80 bytes per value (vector growth included) plus the string bytes.
  size_t max_values = size_t{1} << 22;
};

// Parses `text` as exactly one JSON value. Errors: kCorruptFile, with a
// message like "json: unterminated string starting at offset 12".
[[nodiscard]] absl::StatusOr<JsonValue> ParseJson(
    std::string_view text, const JsonParseOptions& options = {});

// True when `s` is well-formed UTF-8 (no overlong forms, no surrogate code
// points, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view s);

// Appends `s` to `*out` as a quoted JSON string: '"' and '\\' are escaped,
// control characters become \b \f \n \r \t or \u00XX, and everything else
// (including non-ASCII UTF-8) is copied unchanged. The caller is expected
// to pass valid UTF-8 (see IsValidUtf8); invalid bytes are copied as-is and
// will then be refused by ParseJson.
void AppendJsonString(std::string_view s, std::string* out);

// Convenience: the quoted JSON string for `s`.
std::string JsonQuote(std::string_view s);

}  // namespace memmamba

#endif  // MEMMAMBA_MODEL_JSON_H_
