#!/bin/sh
# The C examples of README.md ("Using it from C", "Training from C") compile
# as C99 against the public header and run against the built library.
# Usage: readme_c_examples.sh README INCLUDE_DIR LIB_DIR CC WORK_DIR
set -eu
readme=$1 include=$2 libdir=$3 cc=$4 work=$5
mkdir -p "$work"
cd "$work"
n=0
for section in "## Using it from C" "## Training from C"; do
  n=$((n + 1))
  # The first ```c block after the section heading.
  awk -v h="$section" '
    $0 == h { insec = 1; next }
    insec && /^```c$/ { inblock = 1; next }
    inblock && /^```$/ { exit }
    inblock { print }
  ' "$readme" > "example$n.c"
  if [ ! -s "example$n.c" ]; then
    echo "no C example under '$section'" >&2
    exit 1
  fi
  "$cc" -std=c99 -Wall -Werror -o "example$n" "example$n.c" -I"$include" -L"$libdir" -lmemmamba \
    -Wl,-rpath,"$libdir"
  echo "== $section"
  "./example$n"
done
