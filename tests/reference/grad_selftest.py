#!/usr/bin/python3
"""Finite-difference check of the reference's training gradients (float64).

    /usr/bin/python3 tests/reference/grad_selftest.py [-v]

For small random models (FIFO and PRIORITY, note_window 1 and 4, every fusion,
cross-layer reads, a tied and an untied head, a gate threshold, pool_capacity 0) it
takes the training loss of memmamba_ref.batch_loss (DESIGN 6: B = 2 sequences from
empty state, a loss mask on some targets, mean next-token cross-entropy) and compares
its autograd gradient with central differences:

  * for EVERY parameter tensor, the derivative along a random direction over a few
    random elements (Gaussian weights): (L(θ + εd) − L(θ − εd)) / 2ε against Σ d_i g_i;
  * once per model, the derivative along a dense random direction over all parameters.

A check passes when |fd − ag| ≤ RTOL · Σ|d_i g_i| + ATOL (the scale has no cancellation
in it, so a tiny directional derivative does not make the test flaky).  Central
differences in float64 with ε = 1e-6 have a truncation error ~ε²·L''' ≈ 1e-12 and a
rounding error ~1e-16·L/ε ≈ 1e-10, far below the tolerance.

Keep/evict/skip decisions are constants of the loss (DESIGN 2.4), so a perturbation
must not flip one, nor move a window max to another position.  Each model is drawn
again (next seed) until every such decision is at least MARGIN from flipping; the
perturbed runs must then take exactly the same decisions (checked).  Every tensor
must get a non-zero gradient, except those that provably get none (the cross-layer
read of a layer with no source layers).

Finally it runs check_grads.py on dumps made from the reference itself (it must pass,
and report a wrong element, a missing tensor, a wrong loss and bad input).

Prints one line per check and `N passed, N failed` last; exits 1 on any failure.
"""

import contextlib
import io
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memmamba_ref as ref  # noqa: E402

torch.set_num_threads(1)
VERBOSE = "-v" in sys.argv[1:]

EPS = 1e-6        # central-difference step
RTOL = 1e-5       # relative to Σ|d_i g_i|
ATOL = 1e-9       # absolute: the rounding floor of the differences, ~1e-16·L/ε
MARGIN = 1e-4     # minimum distance of every decision from flipping
ELEMENTS = 4      # random elements per tensor direction
B = 2

BASE = dict(vocab_size=11, d_model=8, n_layer=2, d_state=4, d_conv=3, expand=2, dt_rank=2,
            summary_dim=8, attn_heads=2, note_threshold=0.5, gate_threshold=0.0,
            cross_layer_period=2, cross_layer_span=1, norm_eps=1e-5)

# name: (config overrides, T)
CONFIGS = {
    "priority_w4_weighted_cross_tied": (dict(pool_policy="PRIORITY", note_window=4, pool_capacity=2,
                                             fusion="WEIGHTED", n_layer=3, cross_layer_period=3,
                                             cross_layer_span=2, tie_embeddings=True), 16),
    "fifo_w1_gated_cross_untied": (dict(pool_policy="FIFO", note_window=1, pool_capacity=3,
                                        fusion="GATED", tie_embeddings=False), 12),
    "priority_w1_residual_cross_every_layer": (dict(pool_policy="PRIORITY", note_window=1,
                                                    pool_capacity=3, fusion="RESIDUAL",
                                                    cross_layer_period=1, cross_layer_span=2,
                                                    tie_embeddings=True), 12),
    "fifo_w4_gated_gate_threshold": (dict(pool_policy="FIFO", note_window=4, pool_capacity=2,
                                          fusion="GATED", gate_threshold=0.5,
                                          tie_embeddings=True), 20),
    "priority_w4_weighted_untied": (dict(pool_policy="PRIORITY", note_window=4, pool_capacity=2,
                                         fusion="WEIGHTED", cross_layer_period=0,
                                         tie_embeddings=False), 16),
    "plain_mamba_capacity0": (dict(pool_capacity=0, note_window=4, tie_embeddings=True), 16),
}


def random_tensors(cfg, seed):
    """Weights away from the DESIGN init, so every tensor has a non-trivial gradient;
    note.score.bias ~ 1 keeps most notes (σ > τ1) while some are dropped."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    out = {}
    for name, shape in ref.expected_shapes(cfg).items():
        if name.endswith("norm.weight") or name == "norm_f.weight" or name.endswith("mixer.D"):
            t = 1.0 + randn(*shape, std=0.1)
        elif name.endswith("A_log"):
            t = torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float64)).repeat(shape[0], 1) \
                + randn(*shape, std=0.1)
        elif name.endswith("dt_proj.bias"):
            u = torch.rand(*shape, generator=g, dtype=torch.float64)
            dt = torch.exp(u * (math.log(0.5) - math.log(0.02)) + math.log(0.02))  # larger than the init: A_log gets a sizeable gradient
            t = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        elif name.endswith("note.score.weight"):
            t = randn(*shape, std=0.5)
        elif name.endswith("note.score.bias"):
            t = 1.0 + randn(*shape, std=0.2)
        elif name.endswith("gate.bias") or name.endswith("alpha"):
            t = 0.5 + randn(*shape, std=0.2)
        elif name.endswith("fuse.weight"):
            t = randn(*shape, std=1.0)
        else:
            t = randn(*shape, std=0.4)
        out[name] = t
    return out


def random_batch(cfg, T, seed):
    g = torch.Generator().manual_seed(seed + 1000)
    tokens = torch.randint(0, cfg.vocab_size, (B, T), generator=g).tolist()
    mask = (torch.rand(B, T, generator=g) < 0.7).tolist()  # ~30 % of the targets masked out
    mask[0][1] = True  # at least one target
    return tokens, mask


def without_grad_loss(model, tokens, mask):
    with torch.no_grad():
        return ref.batch_loss(model, tokens, mask)


def no_gradient_expected(cfg, name):
    """A cross-layer read with no source layers (layer 0 when p = 1) reads nothing."""
    if ".lay." not in name:
        return False
    layer = int(name.split(".")[1])
    return not cfg.cross_layer_sources(layer)


def pick_model(cfg, T, seed0):
    """The first seed whose decisions all stay MARGIN away from flipping and whose
    memory is exercised (notes kept and dropped, pools read)."""
    for seed in range(seed0, seed0 + 50):
        model = ref.Model(cfg, random_tensors(cfg, seed))
        tokens, mask = random_batch(cfg, T, seed)
        loss, count, states = without_grad_loss(model, tokens, mask)
        margins = ref.decision_margins(states)
        if cfg.pool_capacity > 0:
            st = [ls.stats for s in states for ls in s.layers]
            kept = sum(s.kept for s in st)
            dropped = sum(s.closed - s.kept for s in st)
            full = sum(s.evicted + s.rejected for s in st)
            if not (kept and dropped and full):
                continue
        if min(margins) > MARGIN:
            return seed, model, tokens, mask, states
    raise AssertionError(f"no seed in {seed0}..{seed0 + 49} keeps every decision {MARGIN} away")


def check_model(name, over, T):
    t0 = time.time()
    cfg = ref.Config(**dict(BASE, **over))
    seed, model, tokens, mask, states = pick_model(cfg, T, seed0=(sum(map(ord, name)) % 97) * 10)
    signature = ref.decision_signature(states)
    leaves = ref.make_trainable(model)
    loss, count, _ = ref.batch_loss(model, tokens, mask)
    loss.backward()
    grads = {n: leaves[n].grad.clone() if leaves[n].grad is not None else torch.zeros_like(leaves[n])
             for n in leaves}

    def loss_at(deltas):
        """Loss with θ_n += deltas[n] (dense tensors), decisions checked."""
        with torch.no_grad():
            saved = {n: leaves[n].clone() for n in deltas}
            for n, d in deltas.items():
                leaves[n].add_(d)
            value, _, st = ref.batch_loss(model, tokens, mask)
            for n in deltas:
                leaves[n].copy_(saved[n])
        if ref.decision_signature(st) != signature:
            raise AssertionError(f"{name}: a decision flipped under a perturbation {EPS:g}")
        return float(value)

    def directional(directions):
        fd = (loss_at({n: EPS * d for n, d in directions.items()}) -
              loss_at({n: -EPS * d for n, d in directions.items()})) / (2 * EPS)
        ag = sum(float((d * grads[n]).sum()) for n, d in directions.items())
        scale = sum(float((d * grads[n]).abs().sum()) for n, d in directions.items())
        return fd, ag, scale

    g = torch.Generator().manual_seed(seed + 2000)
    problems, worst, rows = [], 0.0, []
    for n, leaf in leaves.items():
        gnorm = float(grads[n].norm())
        if no_gradient_expected(cfg, n):
            if gnorm != 0.0:
                problems.append(f"{n}: gradient {gnorm:.3g} where none is expected")
            continue
        if not gnorm > 0.0 or not math.isfinite(gnorm):
            problems.append(f"{n}: gradient norm {gnorm}")
            continue
        numel = leaf.numel()
        idx = torch.randperm(numel, generator=g)[:ELEMENTS]
        d = torch.zeros(numel, dtype=torch.float64)
        d[idx] = torch.randn(len(idx), generator=g, dtype=torch.float64)
        d = d.view_as(leaf)
        fd, ag, scale = directional({n: d})
        ratio = abs(fd - ag) / (RTOL * scale + ATOL)
        worst = max(worst, ratio)
        rows.append((n, fd, ag, ratio))
        if not ratio <= 1.0:
            elems = []
            for i in idx.tolist():  # diagnose element by element
                e = torch.zeros(numel, dtype=torch.float64)
                e[i] = 1.0
                efd, eag, _ = directional({n: e.view_as(leaf)})
                elems.append(f"[{i}] fd {efd:.9g} autograd {eag:.9g}")
            problems.append(f"{n}: fd {fd:.9g} autograd {ag:.9g} (|diff|/tol {ratio:.3g}); " +
                            "; ".join(elems))
    dense = {n: torch.randn(leaf.shape, generator=g, dtype=torch.float64) for n, leaf in leaves.items()}
    fd, ag, scale = directional(dense)
    ratio = abs(fd - ag) / (RTOL * scale + ATOL)
    worst = max(worst, ratio)
    if not ratio <= 1.0:
        problems.append(f"dense direction over all parameters: fd {fd:.9g} autograd {ag:.9g}")
    if VERBOSE:
        for n, fd_, ag_, r in rows:
            print(f"    {n:40s} fd {fd_:+.10e} autograd {ag_:+.10e} |diff|/tol {r:.2g}")
    margins = ref.decision_margins(states)
    st = [ls.stats for s in states for ls in s.layers]
    print(f"{'PASS' if not problems else 'FAIL'} {name}: seed {seed}, loss {float(loss):.6f} over "
          f"{count} targets, {len(leaves)} tensors, worst |diff|/tol {worst:.2g}, "
          f"kept {sum(s.kept for s in st)}/{sum(s.closed for s in st)} notes, min decision margin "
          f"{min(margins):.2g} ({time.time() - t0:.1f}s)")
    for p in problems:
        print("   ", p)
    return not problems


def write_safetensors(path, tensors, meta):
    """A minimal writer: every tensor as little-endian F32, in the order given."""
    header, chunks, off = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    if meta:
        header["__metadata__"] = dict(meta)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


def check_grads_tool():
    """check_grads.py on dumps made from the reference itself (rounded to float32, as the
    library writes them): exit 0; a wrong element, a missing tensor, a non-zero gradient
    of an unused tensor or a wrong loss: exit 1 naming it; bad input: exit 2."""
    import check_grads
    tmp = tempfile.mkdtemp(prefix="memmamba_grad_selftest_")
    try:
        def dump(case, over, T):
            cfg = ref.Config(**dict(BASE, **over))
            d = os.path.join(tmp, case)
            os.makedirs(d)
            tensors = random_tensors(cfg, 5)
            if cfg.pool_capacity == 0:  # the library lists the memory tensors anyway
                full = ref.Config(**dict(BASE, **dict(over, pool_capacity=2)))
                extra = {n: torch.zeros(s, dtype=torch.float64)
                         for n, s in ref.expected_shapes(full).items() if n not in tensors}
            else:
                extra = {}
            write_safetensors(os.path.join(d, "model.safetensors"), tensors, cfg.to_metadata())
            model = ref.Model.load(os.path.join(d, "model.safetensors"))
            tokens, mask = random_batch(cfg, T, 5)
            np.array(tokens, dtype="<i4").tofile(os.path.join(d, "tokens.i32"))
            np.array(mask, dtype=np.uint8).tofile(os.path.join(d, "mask.u8"))
            with open(os.path.join(d, "shape.txt"), "w") as f:
                f.write(f"{B} {T}\n")
            leaves = ref.make_trainable(model)
            loss, count, states = ref.batch_loss(model, tokens, mask)
            loss.backward()
            grads = {n: leaf.grad for n, leaf in leaves.items()}
            grads.update(extra)
            write_safetensors(os.path.join(d, "grads.safetensors"), grads, {})
            with open(os.path.join(d, "loss.txt"), "w") as f:
                f.write(f"{float(loss):.17g} {count}\n")
            if cfg.pool_capacity:
                keep = [sum(s.layers[l].stats.kept for s in states) /
                        max(1, sum(s.layers[l].stats.closed for s in states))
                        for l in range(cfg.n_layer)]
                with open(os.path.join(d, "keep.txt"), "w") as f:
                    f.write(" ".join(f"{k:.9g}" for k in keep) + "\n")
            return d, grads, float(loss), count

        def call(d):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    rc = check_grads.main([d])
                except SystemExit as e:
                    rc = e.code
            return rc, buf.getvalue()

        problems = []
        d, grads, loss, count = dump("mem", CONFIGS["priority_w4_weighted_untied"][0], 16)
        rc, out = call(d)
        if rc != 0:
            problems.append(f"reference against itself: exit {rc}\n{out}")
        name = "layers.1.tok.k.weight"
        bad = dict(grads)
        bad[name] = grads[name].clone()
        bad[name].view(-1)[3] += 0.01 * float(grads[name].norm()) + 1e-3
        write_safetensors(os.path.join(d, "grads.safetensors"), bad, {})
        rc, out = call(d)
        if rc != 1 or not any(name in l and "FAIL" in l for l in out.splitlines()):
            problems.append(f"a wrong element of {name} not reported: exit {rc}\n{out}")
        write_safetensors(os.path.join(d, "grads.safetensors"),
                          {n: g for n, g in grads.items() if n != "norm_f.weight"}, {})
        rc, out = call(d)
        if rc != 1 or "MISSING" not in out:
            problems.append(f"a missing tensor not reported: exit {rc}")
        write_safetensors(os.path.join(d, "grads.safetensors"), grads, {})
        with open(os.path.join(d, "loss.txt"), "w") as f:
            f.write(f"{loss * (1 + 1e-4):.17g} {count}\n")
        rc, out = call(d)
        if rc != 1 or "loss" not in out:
            problems.append(f"a wrong loss not reported: exit {rc}")
        os.remove(os.path.join(d, "shape.txt"))
        if call(d)[0] != 2:
            problems.append("a missing shape.txt is not bad input")

        d, grads, loss, count = dump("plain", CONFIGS["plain_mamba_capacity0"][0], 12)
        rc, out = call(d)
        if rc != 0 or "unused, 0" not in out:
            problems.append(f"pool_capacity 0 against itself: exit {rc}\n{out}")
        grads["layers.0.tok.q.weight"][0, 0] = 1.0
        write_safetensors(os.path.join(d, "grads.safetensors"), grads, {})
        rc, out = call(d)
        if rc != 1 or "UNUSED, NOT 0" not in out:
            problems.append(f"a non-zero gradient of an unused tensor not reported: exit {rc}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'PASS' if not problems else 'FAIL'} check_grads_tool")
    for p in problems:
        print("   ", p)
    return not problems


def main():
    t0 = time.time()
    results = []
    for name, (over, T) in CONFIGS.items():
        try:
            results.append(check_model(name, over, T))
        except AssertionError as e:
            print(f"FAIL {name}: {e}")
            results.append(False)
    results.append(check_grads_tool())
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed ({time.time() - t0:.1f}s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
