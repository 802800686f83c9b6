"""The passkey sample format (samples/c/passkey.c), checked from outside.

    passkey_format.py PASSKEY_PROGRAM

A sample of L bytes at depth d: F = L - 13 filler bytes, the 5-digit key K
at p = floor(d * F + 0.5) as 0x01 K 0x02, then 0x03 K at the end; the filler
holds no byte 0x01..0x03; decoys (--decoys) only turn filler into digits. Samples are reproducible from (seed, length,
depth, index) and differ between indices. Bad arguments exit non-zero with
a message. Prints "N passed, N failed".
"""
import math
import subprocess
import sys

prog = sys.argv[1]
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAILED:", what, file=sys.stderr)


def sample(length, depth, index=0, seed=1, filler="random", decoys=0):
    out = subprocess.run([prog, "sample", "--length", str(length), "--depth", str(depth),
                          "--index", str(index), "--seed", str(seed), "--filler", filler,
                          "--decoys", str(decoys)],
                         capture_output=True, check=True)
    return out.stdout


def check_sample(s, length, depth, filler, decoys=False):
    what = f"length {length} depth {depth} filler {filler}"
    check(len(s) == length, f"{what}: {len(s)} bytes")
    n_fill = length - 13
    p = min(n_fill, math.floor(depth * n_fill + 0.5))
    key = s[p + 1:p + 6]
    check(s[p] == 1 and s[p + 6] == 2, f"{what}: no key markers at {p}")
    check(len(key) == 5 and all(48 <= b <= 57 for b in key), f"{what}: key {key!r}")
    check(s[-6] == 3 and s[-5:] == key, f"{what}: query or answer wrong")
    filler_bytes = s[:p] + s[p + 7:-6]
    check(len(filler_bytes) == n_fill, f"{what}: filler length")
    check(not any(b in (1, 2, 3) for b in filler_bytes), f"{what}: control bytes in the filler")
    if filler == "random" and not decoys:
        check(all(97 <= b <= 122 for b in filler_bytes), f"{what}: random filler not a-z")
    return key


fillers = ["random"]
try:
    sample(100, 0.5, filler="austen")
    fillers.append("austen")
except subprocess.CalledProcessError:
    print("skipped: Jane Austen filler (r-cran-janeaustenr is not installed)")

for filler in fillers:
    for length in (14, 20, 64, 1000, 4096):
        for depth in (0, 0.25, 0.5, 0.75, 1, 0.333):
            check_sample(sample(length, depth, filler=filler), length, depth, filler)
    a = sample(300, 0.5, 0, filler=filler)
    check(a == sample(300, 0.5, 0, filler=filler), f"{filler}: not reproducible")
    keys = {sample(300, 0.5, i, filler=filler)[-5:] for i in range(8)}
    check(len(keys) > 4, f"{filler}: keys do not vary with the index")
    check(sample(300, 0.5, 0, seed=2, filler=filler) != a, f"{filler}: seed ignored")

# Decoys (training's hard negatives): digit strings written over filler
# bytes only; the key's frame, the query and the answer stay where they were.
for length in (23, 64, 1000):
    for depth in (0, 0.5, 1, 0.9):
        plain = sample(length, depth)
        with_decoys = sample(length, depth, decoys=12)
        check_sample(with_decoys, length, depth, "random", decoys=True)
        what = f"decoys, length {length} depth {depth}"
        changed = [i for i in range(length) if plain[i] != with_decoys[i]]
        check(len(changed) > 0, f"{what}: no decoy written")
        check(all(48 <= with_decoys[i] <= 57 and 97 <= plain[i] <= 122 for i in changed),
              f"{what}: a decoy overwrote something other than filler with a non-digit")
        check(with_decoys == sample(length, depth, decoys=12), f"{what}: not reproducible")

# A long sample: the filler wraps around the text if it must; the format holds.
big = sample(1 << 20, 0.75, filler=fillers[-1])
check_sample(big, 1 << 20, 0.75, fillers[-1])

# Bad input: a message and a non-zero exit, never a crash.
bad = [
    ["sample", "--length", "13"],
    ["sample", "--depth", "1.5"],
    ["sample", "--length", "abc"],
    ["sample", "--filler", "/nonexistent/file"],
    ["sample", "--decoys", "-1"],
    ["sample", "--length", "100", "--decoys", "101"],
    ["train", "--out", "x", "--steps", "1", "--decoys", "5000"],
    ["eval"],
    ["eval", "/nonexistent/model.safetensors", "--lengths", "1024", "--samples", "1"],
    ["eval", "x", "--lengths", "5"],
    ["eval", "x", "--depths", "2"],
    ["train"],
    ["train", "--out", "x", "--steps", "1", "--seq", "4096"],
    ["bogus"],
    [],
]
for args in bad:
    r = subprocess.run([prog] + args, capture_output=True)
    check(r.returncode not in (0,) and r.returncode > 0 and r.stderr.strip(),
          f"passkey {' '.join(args)}: exit {r.returncode}, stderr {r.stderr[:80]!r}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
