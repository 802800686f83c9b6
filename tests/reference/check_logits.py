#!/usr/bin/python3
"""Compares the library's logits with the float64 reference.

    /usr/bin/python3 tests/reference/check_logits.py DIR [--tol 1e-4] [--dump-ref FILE]

DIR holds
  model.safetensors   the model (config in __metadata__)
  tokens.i32          raw little-endian int32 token ids, T of them
  logits.f32          raw little-endian float32 [T, V] row-major: the library's logits at
                      every position, the tokens fed from a fresh session

rel = max|lib - ref| / max|ref| over all positions and vocab entries.
Exit status: 0 rel <= tol, 1 rel > tol (or non-finite), 2 bad input.
"""

import argparse
import math
import os
import sys

sys.dont_write_bytecode = True

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memmamba_ref as ref  # noqa: E402


def fail_input(msg):
    print(f"check_logits: bad input: {msg}", file=sys.stderr)
    sys.exit(2)


def fmt_g(x):
    """1e-4 -> '1e-4', 0.5 -> '0.5', 3.14e-07 -> '3.14e-7'."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    m, e = f"{x:.2e}".split("e")
    m = m.rstrip("0").rstrip(".")
    return f"{m}e{int(e)}"


MARGIN_WARN = 1e-5


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--dump-ref", metavar="FILE",
                    help="also write the reference logits as raw float32 [T, V]")
    args = ap.parse_args(argv)

    paths = {k: os.path.join(args.dir, k) for k in ("model.safetensors", "tokens.i32", "logits.f32")}
    for k, p in paths.items():
        if not os.path.isfile(p):
            fail_input(f"missing {p}")
    try:
        model = ref.Model.load(paths["model.safetensors"])
    except (ref.FormatError, OSError) as e:
        fail_input(f"{paths['model.safetensors']}: {e}")
    cfg = model.cfg
    V = cfg.vocab_size

    with open(paths["tokens.i32"], "rb") as f:
        raw = f.read()
    if len(raw) % 4:
        fail_input(f"tokens.i32 is {len(raw)} bytes, not a multiple of 4")
    tokens = np.frombuffer(raw, dtype="<i4").astype(np.int64)
    T = len(tokens)
    if T == 0:
        fail_input("tokens.i32 is empty")
    bad = [int(x) for x in tokens if not 0 <= x < V]
    if bad:
        fail_input(f"token id {bad[0]} outside 0..{V - 1} ({len(bad)} bad ids)")

    with open(paths["logits.f32"], "rb") as f:
        raw = f.read()
    if len(raw) != T * V * 4:
        fail_input(f"logits.f32 is {len(raw)} bytes, expected T*V*4 = {T}*{V}*4 = {T * V * 4}")
    lib = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float64).reshape(T, V))

    state = ref.State(cfg)
    with torch.no_grad():
        out = ref.run(model, tokens.tolist(), state)
    if args.dump_ref:
        out.numpy().astype("<f4").tofile(args.dump_ref)

    err = (lib - out).abs()
    scale = float(out.abs().max())
    if not torch.isfinite(lib).all():
        rel = float("nan")
    else:
        rel = float(err.max()) / scale if scale > 0 else float(err.max())
    ok = rel <= args.tol  # False for NaN
    print(f"check_logits: T={T} V={V} max_rel_err={fmt_g(rel)} (tolerance {fmt_g(args.tol)}) "
          f"{'OK' if ok else 'FAIL'}")
    if not ok and torch.isfinite(lib).all():
        per_pos = err.max(dim=1).values / scale
        worst = int(torch.argmax(per_pos))
        first = int(torch.nonzero(per_pos > args.tol)[0])
        print(f"  first position over tolerance: t={first} (rel {float(per_pos[first]):.3g}); "
              f"worst: t={worst} (rel {float(per_pos[worst]):.3g})")
    elif not ok:
        bad_pos = int(torch.nonzero(~torch.isfinite(lib).all(dim=1))[0])
        print(f"  library logits not finite, first at t={bad_pos}")
    if cfg.pool_capacity > 0:
        w = cfg.note_window
        print(f"pool fill per layer (P={cfg.pool_capacity} {cfg.pool_policy} w={w}, "
              f"{T // w} windows closed): {state.pool_fill()}")
        for l, ls in enumerate(state.layers):
            print(f"  layer {l}: {ls.stats}; pool windows {[e.window for e in ls.pool]}")
        close = []
        for l, ls in enumerate(state.layers):
            for what, v in (("|score - note_threshold|", ls.stats.min_score_margin),
                            ("|gate - gate_threshold|", ls.stats.min_gate_margin),
                            ("PRIORITY |new - lowest score|", ls.stats.min_evict_gap)):
                if v < MARGIN_WARN:
                    close.append(f"layer {l} {what} = {v:.3g}")
        if close:
            print(f"warning: near-tie decisions (< {MARGIN_WARN:g}); an fp32 library may decide "
                  "differently there, pick other weights/tokens: " + "; ".join(close))
    else:
        print("pool fill per layer: memory disabled (pool_capacity 0)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
