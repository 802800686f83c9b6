#!/usr/bin/python3
"""Compares the library's training loss and gradients with the float64 reference.

    /usr/bin/python3 tests/reference/check_grads.py DIR [--tol 1e-4] [--loss-tol 1e-5] [-q]

DIR (written by dump_grads) holds
  model.safetensors   the model (config in __metadata__)
  tokens.i32          raw little-endian int32 token ids, B·T of them, row-major
  mask.u8             B·T bytes, non-zero = that token is a target (optional: all are)
  shape.txt           "B T"
  grads.safetensors   the library's gradient of the mean loss, one tensor per parameter
  loss.txt            "loss targets"
  keep.txt            per layer, the fraction of closed windows kept (optional)

The reference (memmamba_ref.batch_loss: every sequence from empty state, token t >= 1
predicted from the positions before it, mean cross-entropy over the targets) is run
with autograd.  Checks:
  * the number of targets is the same, and |loss_lib − loss_ref| / loss_ref <= --loss-tol;
  * per parameter tensor, err = ||g_lib − g_ref|| / max(||g_ref||, tiny) <= --tol, where
    tiny = 1e-8 · ||all of g_ref|| (a tensor the loss does not depend on must then get
    a gradient that is zero up to rounding);
  * a tensor the reference does not use (the memory tensors of a pool_capacity 0 model)
    gets a zero gradient (<= tiny); every tensor the reference uses has a gradient;
  * the per-layer keep fractions, when given, match the reference's decisions.
It prints a table, one row per tensor, and warns about decisions within 1e-5 of
flipping (a float32 library may take them differently: pick another seed then).
With --f32 each row also shows the error of the reference itself run in float32: where
the library's error is of that order, it is rounding, not a wrong gradient.

Why these tolerances: the library works in float32 (unit roundoff u = 6e-8).  Its logits
match the reference to ~1e-6 relative, so the loss (a mean of log-softmax values of
order one) does to ~1e-6; 1e-5 leaves a margin.  A gradient tensor is a sum over B·T
positions of products through L layers, T steps of the scan and the pool reads;
rounding grows with that depth and with cancellation between the terms of a sum (a
bias or A_log gradient is a small difference of large contributions), which puts
honest float32 errors at 1e-6 .. 1e-5 of ||g||.  1e-4 keeps a margin of ten over that,
while a missing path, a wrong index or a wrong sign moves a tensor's gradient by far
more than 1e-4 of its norm.

Exit status: 0 all within tolerance, 1 something is not, 2 bad input.
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

MARGIN_WARN = 1e-5


def fail_input(msg):
    print(f"check_grads: bad input: {msg}", file=sys.stderr)
    sys.exit(2)


def read_text(path, what):
    try:
        with open(path) as f:
            return f.read().split()
    except OSError as e:
        fail_input(f"{what}: {e}")


def reference_gradients_f32(model_path, batch, mask):
    """The reference's gradients computed in float32 (as float64 tensors): their error
    against float64 shows how much rounding the same sums suffer in float32."""
    saved = ref.DTYPE
    ref.DTYPE = torch.float32
    try:
        model = ref.Model.load(model_path)
        leaves = ref.make_trainable(model)
        loss, _, _ = ref.batch_loss(model, batch, mask)
        loss.backward()
        return {n: (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)).double()
                for n, leaf in leaves.items()}
    finally:
        ref.DTYPE = saved


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--tol", type=float, default=1e-4, help="per-tensor normalised error")
    ap.add_argument("--loss-tol", type=float, default=1e-5, help="relative error of the loss")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only failing rows")
    ap.add_argument("--f32", action="store_true",
                    help="also run the reference in float32 and print its error per tensor: "
                         "the rounding an honest float32 computation of the same sums shows")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    path = lambda name: os.path.join(args.dir, name)  # noqa: E731
    for name in ("model.safetensors", "tokens.i32", "shape.txt", "grads.safetensors", "loss.txt"):
        if not os.path.isfile(path(name)):
            fail_input(f"missing {path(name)}")
    try:
        model = ref.Model.load(path("model.safetensors"))
        lib_grads, _ = ref.read_safetensors(path("grads.safetensors"))
    except (ref.FormatError, OSError) as e:
        fail_input(str(e))
    cfg = model.cfg

    try:
        B, T = (int(x) for x in read_text(path("shape.txt"), "shape.txt"))
    except ValueError:
        fail_input("shape.txt does not hold two integers 'B T'")
    tokens = np.fromfile(path("tokens.i32"), dtype="<i4").astype(np.int64)
    if B < 1 or T < 2 or tokens.size != B * T:
        fail_input(f"tokens.i32 holds {tokens.size} ids, shape.txt says B={B} T={T}")
    if tokens.min() < 0 or tokens.max() >= cfg.vocab_size:
        fail_input(f"a token id outside 0..{cfg.vocab_size - 1}")
    batch = tokens.reshape(B, T).tolist()
    mask = None
    if os.path.isfile(path("mask.u8")):
        m = np.fromfile(path("mask.u8"), dtype=np.uint8)
        if m.size != B * T:
            fail_input(f"mask.u8 holds {m.size} bytes, expected {B * T}")
        mask = (m.reshape(B, T) != 0).tolist()
    try:
        fields = read_text(path("loss.txt"), "loss.txt")
        lib_loss, lib_targets = float(fields[0]), int(fields[1])
    except (ValueError, IndexError):
        fail_input("loss.txt does not hold 'loss targets'")
    lib_keep = None
    if os.path.isfile(path("keep.txt")):
        try:
            lib_keep = [float(x) for x in read_text(path("keep.txt"), "keep.txt")]
        except ValueError:
            fail_input("keep.txt does not hold numbers")

    # The reference, with autograd.
    leaves = ref.make_trainable(model)
    loss, count, states = ref.batch_loss(model, batch, mask)
    loss.backward()
    ref_grads = {n: (leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)).detach()
                 for n, leaf in leaves.items()}
    total = math.sqrt(sum(float((g * g).sum()) for g in ref_grads.values()))
    f32_grads = reference_gradients_f32(path("model.safetensors"), batch, mask) if args.f32 else {}
    tiny = 1e-8 * total if total > 0 else 1e-30

    ok = True
    loss_rel = abs(lib_loss - float(loss)) / abs(float(loss))
    loss_ok = loss_rel <= args.loss_tol and count == lib_targets
    ok &= loss_ok
    print(f"check_grads: B={B} T={T} targets lib {lib_targets} ref {count}; loss lib "
          f"{lib_loss:.9g} ref {float(loss):.9g} rel_err {loss_rel:.3g} (tolerance "
          f"{args.loss_tol:g}) {'OK' if loss_ok else 'FAIL'}")

    rows, bad = [], 0
    worst = (0.0, "")
    names = list(lib_grads) + [n for n in ref_grads if n not in lib_grads]
    for name in names:
        g = lib_grads.get(name)
        r = ref_grads.get(name)
        if g is None:
            rows.append((name, "-", f"{float(r.norm()):.4g}", "-", "-", "MISSING"))
            bad += 1
            continue
        if not torch.isfinite(g).all():
            rows.append((name, "-", "-", "-", "-", "NON-FINITE"))
            bad += 1
            continue
        if r is None:  # a tensor the model does not use
            gn = float(g.norm())
            status = "unused, 0" if gn <= tiny else "UNUSED, NOT 0"
            bad += gn > tiny
            rows.append((name, f"{gn:.4g}", "-", "-", "-", status))
            continue
        if list(g.shape) != list(r.shape):
            rows.append((name, "-", "-", "-", "-", f"SHAPE {list(g.shape)} != {list(r.shape)}"))
            bad += 1
            continue
        diff = g - r
        rn, gn = float(r.norm()), float(g.norm())
        err = float(diff.norm()) / max(rn, tiny)
        at = int(diff.abs().argmax())
        where = tuple(int(i) for i in np.unravel_index(at, tuple(r.shape)))
        elem = f"{where}: {float(g.reshape(-1)[at]):.6g} vs {float(r.reshape(-1)[at]):.6g}"
        status = "ok" if err <= args.tol else "FAIL"
        if rn <= tiny and gn <= tiny:
            status = "ok (no gradient)"
        elif err > args.tol:
            bad += 1
        if err > worst[0] and status != "ok (no gradient)":
            worst = (err, name)
        if name in f32_grads:
            elem = f"ref f32 err {float((f32_grads[name] - r).norm()) / max(rn, tiny):.2e}; " + elem
        rows.append((name, f"{gn:.4g}", f"{rn:.4g}", f"{err:.2e}", elem, status))
    ok &= bad == 0

    w = max(len(r[0]) for r in rows)
    print(f"{'tensor':{w}s}  {'||lib||':>10s}  {'||ref||':>10s}  {'norm err':>9s}  status    "
          f"worst element (lib vs ref)")
    for name, gn, rn, err, elem, status in rows:
        if args.quiet and status.islower():
            continue
        print(f"{name:{w}s}  {gn:>10s}  {rn:>10s}  {err:>9s}  {status:8s}  {elem}")
    print(f"check_grads: {len(rows)} tensors, {bad} over tolerance {args.tol:g}; worst "
          f"{worst[0]:.3g} ({worst[1] or '-'}) {'OK' if ok else 'FAIL'}")

    if cfg.pool_capacity > 0:
        ref_keep = []
        for l in range(cfg.n_layer):
            closed = sum(s.layers[l].stats.closed for s in states)
            kept = sum(s.layers[l].stats.kept for s in states)
            ref_keep.append(kept / closed if closed else 0.0)
        print("keep fraction per layer, ref: " + " ".join(f"{x:.3f}" for x in ref_keep) +
              ("" if lib_keep is None else "; lib: " + " ".join(f"{x:.3f}" for x in lib_keep)))
        if lib_keep is not None:
            if len(lib_keep) != len(ref_keep) or \
                    any(abs(a - b) > 1e-6 for a, b in zip(lib_keep, ref_keep)):
                print("check_grads: keep fractions differ: the library kept other notes FAIL")
                ok = False
        st = [ls.stats for s in states for ls in s.layers]
        print(f"notes: {sum(s.closed for s in st)} closed, {sum(s.kept for s in st)} kept, "
              f"{sum(s.inserted for s in st)} inserted, {sum(s.evicted for s in st)} evicted, "
              f"{sum(s.rejected for s in st)} rejected")
        margins = ref.decision_margins(states)
        labels = ("|score - note_threshold|", "|gate - gate_threshold|",
                  "PRIORITY |new - lowest score|", "window max gap")
        close = [f"{k} = {v:.3g}" for k, v in zip(labels, margins) if v < MARGIN_WARN]
        if close:
            print(f"warning: near-tie decisions (< {MARGIN_WARN:g}); a float32 library may "
                  "decide differently there, pick another seed: " + "; ".join(close))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
