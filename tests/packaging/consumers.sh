#!/bin/sh
# Builds and runs tests/packaging/consumer/consumer.c against an installed
# memmamba, as its users would.
#   consumers.sh cmake  PREFIX WORK SRC CMAKE GENERATOR CC CXX
#   consumers.sh pkg    PREFIX WORK SRC PKG_CONFIG CC
set -eu
mode=$1 prefix=$2 work=$3 src=$4
rm -rf "$work"
mkdir -p "$work"

# Runs the built consumers and checks that they agree.
run_both() {
  a=$("$1") || { echo "FAILED: $1"; exit 1; }
  b=$("$2") || { echo "FAILED: $2"; exit 1; }
  echo "shared: $a"
  echo "static: $b"
  case $a in *argmax*) ;; *) echo "FAILED: no argmax in the output"; exit 1 ;; esac
  [ "$a" = "$b" ] || { echo "FAILED: the shared and static builds disagree"; exit 1; }
}

case $mode in
cmake)
  cmake=$5 generator=$6 cc=$7 cxx=$8
  # find_package(memmamba CONFIG REQUIRED COMPONENTS shared static) in a C+CXX project.
  "$cmake" -S "$src" -B "$work/both" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx"
  "$cmake" --build "$work/both"
  run_both "$work/both/consumer_shared" "$work/both/consumer_static"
  # A C-only project gets the shared library...
  "$cmake" -S "$src/c_only" -B "$work/c_only" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc"
  "$cmake" --build "$work/c_only"
  "$work/c_only/consumer_c"
  # ...and a clear refusal when it asks for the static one.
  if "$cmake" -S "$src/c_only" -B "$work/c_only_static" -G "$generator" \
      -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DMM_WANT_STATIC=ON \
      >"$work/c_only_static.log" 2>&1; then
    echo "FAILED: COMPONENTS static was accepted in a C-only project"; exit 1
  fi
  grep -q "needs the CXX language" "$work/c_only_static.log" ||
    { cat "$work/c_only_static.log"; echo "FAILED: no clear message"; exit 1; }
  echo "C-only project asking for static: refused with a clear message"
  ;;
pkg)
  pkgconfig=$5 cc=$6
  PKG_CONFIG_PATH=$(find "$prefix" -name memmamba.pc -exec dirname {} \; | head -n 1)
  export PKG_CONFIG_PATH
  echo "pkg-config --cflags --libs memmamba: $("$pkgconfig" --cflags --libs memmamba)"
  libdir=$("$pkgconfig" --variable=libdir memmamba)
  # Shared: cc $(pkg-config --cflags --libs memmamba), with a run path to
  # the prefix (outside the loader's paths).
  # shellcheck disable=SC2046
  "$cc" -o "$work/consumer_shared" "$src/consumer.c" $("$pkgconfig" --cflags --libs memmamba) \
    -Wl,-rpath,"$libdir"
  # Static: the archive, then what it needs (Libs.private, Requires.private).
  # shellcheck disable=SC2046
  "$cc" -o "$work/consumer_static" "$src/consumer.c" $("$pkgconfig" --cflags memmamba) \
    -Wl,-Bstatic -lmemmamba -Wl,-Bdynamic $("$pkgconfig" --static --libs memmamba)
  if command -v ldd >/dev/null && ldd "$work/consumer_static" | grep -q libmemmamba; then
    echo "FAILED: the static build loads libmemmamba.so"; exit 1
  fi
  run_both "$work/consumer_shared" "$work/consumer_static"
  ;;
*)
  echo "unknown mode $mode"; exit 2 ;;
esac
