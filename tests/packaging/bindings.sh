#!/bin/sh
# Runs the Rust and Go bindings' tests, samples and README examples for CTest.
#   bindings.sh ACTION [ARGS...]
# The environment (set by tests/packaging/CMakeLists.txt) names the tools
# (CARGO, GO), the sources (MM_SOURCE_DIR), a scratch directory (MM_WORK),
# the library (MEMMAMBA_LIB_DIR, LD_LIBRARY_PATH, CGO_CFLAGS, CGO_LDFLAGS)
# and the C reference outputs (MEMMAMBA_TEST_DIR). Exit status 77 = skipped.
set -eu
action=$1
shift
src=$MM_SOURCE_DIR
mkdir -p "$MM_WORK"

# Prints the first code block of language $2 in the README section titled $1.
readme_block() {
  awk -v title="$1" -v lang="$2" '
    $0 == "## " title { in_section = 1; next }
    in_section && /^## / { exit }
    in_section && !in_block && $0 == "```" lang { in_block = 1; next }
    in_block && /^```/ { exit }
    in_block { print }' "$src/README.md"
}

# Runs "$@", echoing its output; exits 77 when a line matches $SKIP_PATTERN
# and it passed otherwise.
run_or_skip() {
  log=$MM_WORK/$action.log
  status=0
  "$@" >"$log" 2>&1 || status=$?
  cat "$log"
  if [ "$status" -ne 0 ]; then exit "$status"; fi
  if grep -q -- "$SKIP_PATTERN" "$log"; then
    echo "== could not run (the library lacks training/evaluation):"
    grep -- "$SKIP_PATTERN" "$log"
    exit 77
  fi
}

case $action in
rust-test)
  cd "$src/bindings/rust"
  "$CARGO" test --offline --workspace --lib --test api --test agreement
  "$CARGO" test --offline --workspace --doc
  ;;
rust-train)
  cd "$src/bindings/rust"
  SKIP_PATTERN="^SKIPPED" run_or_skip "$CARGO" test --offline -p memmamba --test train
  ;;
rust-samples-build)
  "$CARGO" build --offline --manifest-path "$src/samples/rust/Cargo.toml"
  ;;
rust-sample)
  bin=$1
  shift
  exec "$CARGO_TARGET_DIR/debug/$bin" "$@"
  ;;
rust-readme)
  dir=$MM_WORK/readme-rust
  rm -rf "$dir"
  mkdir -p "$dir/src"
  readme_block Rust rust >"$dir/src/main.rs"
  [ -s "$dir/src/main.rs" ] || { echo "no rust block in README.md's '## Rust'"; exit 1; }
  cat >"$dir/Cargo.toml" <<TOML
[package]
name = "readme-example"
version = "0.1.0"
edition = "2021"

[dependencies]
memmamba = { path = "$src/bindings/rust/memmamba" }

[workspace]
TOML
  "$CARGO" run --offline --quiet --manifest-path "$dir/Cargo.toml"
  ;;
go-test)
  cd "$src/bindings/go"
  "$GO" vet .
  "$GO" test -count=1 -run '^TestAPI' .
  ;;
go-train)
  cd "$src/bindings/go"
  SKIP_PATTERN="^--- SKIP" run_or_skip "$GO" test -count=1 -v -run '^TestTrain' .
  ;;
go-samples-build)
  cd "$src/samples/go"
  "$GO" vet ./...
  "$GO" build -o "$MM_WORK/go-samples/" ./...
  ;;
go-sample)
  bin=$1
  shift
  exec "$MM_WORK/go-samples/$bin" "$@"
  ;;
go-readme)
  dir=$MM_WORK/readme-go
  rm -rf "$dir"
  mkdir -p "$dir"
  readme_block Go go >"$dir/main.go"
  [ -s "$dir/main.go" ] || { echo "no go block in README.md's '## Go'"; exit 1; }
  cat >"$dir/go.mod" <<GOMOD
module readme.example/demo

go 1.19

require memmamba.dev/memmamba v0.0.0

replace memmamba.dev/memmamba => $src/bindings/go
GOMOD
  cd "$dir"
  "$GO" run .
  ;;
*)
  echo "unknown action $action"
  exit 2
  ;;
esac
