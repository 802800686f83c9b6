#!/usr/bin/python3
"""Self-test of the MemMamba float64 reference (memmamba_ref.py).

    /usr/bin/python3 tests/reference/selftest.py [-v]

Builds small random models in Python, writes them with the safetensors writer below,
reads them back through the reference's reader, and checks invariants any correct
implementation must satisfy, plus agreement with a second, independently written
whole-sequence formulation (DESIGN 2.4).  Prints `N passed, N failed` last; exits 1
if anything failed.
"""

import copy
import shutil
import json
import math
import os
import struct
import sys
import tempfile
import time
import zlib

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memmamba_ref as ref  # noqa: E402

torch.set_num_threads(1)
VERBOSE = "-v" in sys.argv[1:]
TMP = tempfile.mkdtemp(prefix="memmamba_selftest_")

# ----------------------------------------------------------------------------------
# safetensors writer
# ----------------------------------------------------------------------------------


def tensor_bytes(t, dtype):
    t = t.detach().cpu()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":  # torch rounds to nearest even
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, meta, dtype="F32"):
    """dtype: one name for all tensors, or a function name -> dtype."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        dt = dtype(name) if callable(dtype) else dtype
        b = tensor_bytes(tensors[name], dt)
        header[name] = {"dtype": dt, "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(b)]}
        chunks.append(b)
        off += len(b)
    header["__metadata__"] = dict(meta)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(chunks))


# ----------------------------------------------------------------------------------
# random models
# ----------------------------------------------------------------------------------

SMALL = dict(vocab_size=13, d_model=8, n_layer=4, d_state=4, d_conv=3, expand=2, dt_rank=2,
             note_window=4, summary_dim=8, pool_capacity=3, pool_policy="FIFO",
             note_threshold=0.5, attn_heads=2, gate_threshold=0.0, cross_layer_period=2,
             cross_layer_span=1, fusion="WEIGHTED", norm_eps=1e-5, tie_embeddings=True)


def make_config(**over):
    kw = dict(SMALL)
    kw.update(over)
    return ref.Config(**kw)


def random_tensors(cfg, seed, all_memory=True):
    """Random weights for every tensor of the config.  Scales are larger than the DESIGN
    init so the memory visibly changes the logits and the scores straddle note_threshold.
    all_memory: also emit note/tok/lay tensors (both fusion kinds) that the config does
    not need, as a P = 0 file may carry them."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, std=0.3):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    full = copy.copy(cfg)
    if all_memory:
        full.pool_capacity = max(cfg.pool_capacity, 1)
    shapes = ref.expected_shapes(full)
    if all_memory:
        for name in list(shapes):
            if name.endswith("alpha") or name.endswith("fuse.weight"):
                stem = name.rsplit(".", 2)[0] if name.endswith("fuse.weight") else name.rsplit(".", 1)[0]
                shapes[stem + ".alpha"] = [cfg.d_model]
                shapes[stem + ".fuse.weight"] = [cfg.d_model]
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith("norm.weight") or name == "norm_f.weight":
            t = 1.0 + randn(*shape, std=0.1)
        elif name.endswith("A_log"):
            t = torch.log(torch.arange(1, cfg.d_state + 1, dtype=torch.float64)).repeat(shape[0], 1) \
                + randn(*shape, std=0.05)
        elif name.endswith("mixer.D"):
            t = 1.0 + randn(*shape, std=0.1)
        elif name.endswith("dt_proj.bias"):
            u = torch.rand(*shape, generator=g, dtype=torch.float64)
            dt = torch.exp(u * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            t = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        elif name.endswith("note.score.weight"):
            t = randn(*shape, std=0.6)
        elif name.endswith("note.score.bias"):
            t = randn(*shape, std=0.2)
        elif name.endswith("gate.bias"):
            t = 0.5 + randn(*shape, std=0.2)
        elif name.endswith("alpha"):
            t = 0.5 + randn(*shape, std=0.2)
        elif name.endswith("fuse.weight"):
            t = randn(*shape, std=1.0)
        else:
            t = randn(*shape, std=0.4)
        out[name] = t
    return out


def save_and_load(cfg, tensors, name, dtype="F32"):
    path = os.path.join(TMP, name + ".safetensors")
    write_safetensors(path, tensors, cfg.to_metadata(), dtype)
    return ref.Model.load(path)


def build(name, seed=1, **over):
    cfg = make_config(**over)
    return save_and_load(cfg, random_tensors(cfg, seed), name), cfg


def tokens_for(cfg, T, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (T,), generator=g).tolist()


# ----------------------------------------------------------------------------------
# an independent whole-sequence formulation (DESIGN 2.4), for cross-checking
# ----------------------------------------------------------------------------------

def seq_forward(model, tokens):
    """Layer by layer over the whole sequence: a for all t, window maxima and notes for all
    windows, pool membership after each window (FIFO: the last P kept windows; PRIORITY:
    the P best scores, ties to the older window), each token reads the membership of the
    window before its own, then the mixer over the sequence."""
    cfg, P, w = model.cfg, model.cfg.pool_capacity, model.cfg.note_window
    D, E, N, K, R, S, H = (cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.dt_rank,
                           cfg.summary_dim, cfg.attn_heads)
    prm = model.params
    T = len(tokens)
    nW = T // w
    eps = cfg.norm_eps

    def norm(X, wgt):
        return X * torch.rsqrt((X * X).mean(-1, keepdim=True) + eps) * wgt

    def read(A, Shat, vis, pre):
        if Shat.shape[0] == 0:
            return torch.zeros(T, D, dtype=torch.float64)
        dh = S // H
        Q = (A @ prm[pre + "q.weight"].T).reshape(T, H, dh)
        Kx = (Shat @ prm[pre + "k.weight"].T).reshape(-1, H, dh)
        Vx = (Shat @ prm[pre + "v.weight"].T).reshape(-1, H, dh)
        lg = torch.einsum("thd,jhd->thj", Q, Kx) / math.sqrt(dh)
        lg = lg.masked_fill(~vis[:, None, :], float("-inf"))
        pr = torch.softmax(lg, dim=-1).nan_to_num(0.0)
        O = torch.einsum("thj,jhd->thd", pr, Vx).reshape(T, S)
        gam = torch.sigmoid(A @ prm[pre + "gate.weight"] + prm[pre + "gate.bias"])
        on = (vis.sum(1) > 0) & (gam > cfg.gate_threshold)
        return torch.where(on[:, None], gam[:, None] * (O @ prm[pre + "o.weight"].T), 0.0)

    def alpha(pre, A):
        if cfg.fusion == "WEIGHTED":
            return prm[pre + "alpha"]
        if cfg.fusion == "GATED":
            return torch.sigmoid(prm[pre + "fuse.weight"] * A)
        return 1.0

    X = prm["embedding.weight"][torch.tensor(tokens)]
    shat_of, vis_of, members = {}, {}, {}
    for l in range(cfg.n_layer):
        p = f"layers.{l}."
        U = X
        if P > 0:
            A = norm(U, prm[p + "note.norm.weight"])
            M = A[:nW * w].reshape(nW, w, D).amax(dim=1)
            sc = torch.sigmoid((M - M.mean(1, keepdim=True)) @ prm[p + "note.score.weight"]
                               + prm[p + "note.score.bias"])
            Shat = sc[:, None] * (M @ prm[p + "note.summary.weight"].T)
            kept = [j for j in range(nW) if float(sc[j]) > cfg.note_threshold]
            member = torch.zeros(nW + 1, nW, dtype=torch.bool)  # row i: after i windows
            for i in range(1, nW + 1):
                cand = [j for j in kept if j < i]
                if cfg.pool_policy == "FIFO":
                    sel = cand[len(cand) - P:] if len(cand) > P else cand
                else:
                    sel = sorted(cand, key=lambda j: (-float(sc[j]), j))[:P]
                member[i, sel] = True
            vis = member[[t // w for t in range(T)]]  # [T, nW]
            shat_of[l], vis_of[l], members[l] = Shat, vis, member
            Xb = U + alpha(p + "tok.", A) * read(A, Shat, vis, p + "tok.")
            per, span = cfg.cross_layer_period, cfg.cross_layer_span
            if per > 0 and (l + 1) % per == 0:
                src = list(range(max(0, l - span), l))
                Su = torch.cat([shat_of[j] for j in src]) if src else torch.zeros(0, S, dtype=torch.float64)
                Vu = torch.cat([vis_of[j] for j in src], 1) if src else torch.zeros(T, 0, dtype=torch.bool)
                Xb = Xb + alpha(p + "lay.", A) * read(A, Su, Vu, p + "lay.")
        else:
            Xb = U
        # mixer over the sequence
        Hn = norm(Xb, prm[p + "norm.weight"])
        XZ = Hn @ prm[p + "mixer.in_proj.weight"].T
        xi, z = XZ[:, :E], XZ[:, E:]
        xp = torch.cat([torch.zeros(K - 1, E, dtype=torch.float64), xi])
        conv = sum(prm[p + "mixer.conv1d.weight"][:, k] * xp[k:k + T] for k in range(K))
        xc = conv + prm[p + "mixer.conv1d.bias"]
        xc = xc * torch.sigmoid(xc)
        xd = xc @ prm[p + "mixer.x_proj.weight"].T
        dl, Bm, Cm = xd[:, :R], xd[:, R:R + N], xd[:, R + N:]
        dt = torch.nn.functional.softplus(dl @ prm[p + "mixer.dt_proj.weight"].T + prm[p + "mixer.dt_proj.bias"])
        Am = -torch.exp(prm[p + "mixer.A_log"])
        s = torch.zeros(E, N, dtype=torch.float64)
        ys = []
        for t in range(T):
            s = torch.exp(dt[t][:, None] * Am) * s + dt[t][:, None] * Bm[t][None, :] * xc[t][:, None]
            ys.append(s @ Cm[t])
        Y = (torch.stack(ys) + prm[p + "mixer.D"] * xc) * (z * torch.sigmoid(z))
        X = Xb + Y @ prm[p + "mixer.out_proj.weight"].T
    logits = norm(X, prm["norm_f.weight"]) @ prm["lm_head.weight"].T
    return logits, members


# ----------------------------------------------------------------------------------
# running the streaming reference with pool invariants checked after every token
# ----------------------------------------------------------------------------------

def pool_problems(cfg, state):
    probs = []
    P = cfg.pool_capacity
    for l, ls in enumerate(state.layers):
        wins = [e.window for e in ls.pool]
        if len(ls.pool) > P:
            probs.append(f"t={state.t} layer {l}: {len(ls.pool)} entries > P={P}")
        if wins != sorted(wins) or len(set(wins)) != len(wins):
            probs.append(f"t={state.t} layer {l}: entries out of window order {wins}")
        kept = [(win, sc) for (win, sc, k) in ls.stats.log if k]
        if any(sc <= cfg.note_threshold for _, sc in kept) or \
                any(e.score <= cfg.note_threshold for e in ls.pool):
            probs.append(f"t={state.t} layer {l}: a note at or under note_threshold was kept")
        closed = (state.t // cfg.note_window) if P > 0 else 0  # P = 0: no notes at all
        if ls.stats.closed != closed:
            probs.append(f"t={state.t} layer {l}: {ls.stats.closed} windows closed, expected {closed}")
        if any(win >= closed for win in wins):
            probs.append(f"t={state.t} layer {l}: pool holds a window not yet closed")
        if cfg.pool_policy == "FIFO":
            want = [win for win, _ in kept][-P:] if P else []
            if wins != want:
                probs.append(f"t={state.t} layer {l}: FIFO pool {wins}, expected last kept {want}")
        else:
            top = sorted(kept, key=lambda e: (-e[1], e[0]))[:P]
            if sorted(e.score for e in ls.pool) != sorted(sc for _, sc in top):
                probs.append(f"t={state.t} layer {l}: PRIORITY pool scores are not the top {P}")
            scores = [sc for _, sc in kept]
            if len(set(scores)) == len(scores) and wins != sorted(win for win, _ in top):
                probs.append(f"t={state.t} layer {l}: PRIORITY pool {wins}, expected "
                             f"{sorted(win for win, _ in top)}")
    return probs


def run_checked(model, tokens, state=None):
    if state is None:
        state = ref.State(model.cfg)
    rows, probs = [], []
    for tok in tokens:
        rows.append(ref.step(model, state, tok))
        probs += pool_problems(model.cfg, state)
    return torch.stack(rows), state, probs


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


# ----------------------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------------------

RESULTS = []


def test(fn):
    t0 = time.time()
    try:
        fn()
        RESULTS.append((fn.__name__, None))
        if VERBOSE:
            print(f"PASS {fn.__name__} ({time.time() - t0:.2f}s)")
    except AssertionError as e:
        RESULTS.append((fn.__name__, str(e)))
        print(f"FAIL {fn.__name__}: {e}")
    except Exception as e:  # a crash is a failure too
        RESULTS.append((fn.__name__, repr(e)))
        print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}")
    return fn


MEMORY_CONFIGS = {
    # name: (overrides, T)
    "fifo_w4_weighted_cross": (dict(pool_policy="FIFO", note_window=4, pool_capacity=3,
                                    fusion="WEIGHTED", cross_layer_period=2, cross_layer_span=1), 48),
    "prio_w4_gated_cross": (dict(pool_policy="PRIORITY", note_window=4, pool_capacity=3,
                                 fusion="GATED", cross_layer_period=2, cross_layer_span=4), 48),
    "fifo_w1_residual_nocross": (dict(pool_policy="FIFO", note_window=1, pool_capacity=4,
                                      fusion="RESIDUAL", cross_layer_period=0), 32),
    "prio_w1_weighted_cross_gatethr": (dict(pool_policy="PRIORITY", note_window=1, pool_capacity=4,
                                            fusion="WEIGHTED", cross_layer_period=3,
                                            cross_layer_span=2, gate_threshold=0.6), 32),
    "prio_w4_residual_p1_k1_untied": (dict(pool_policy="PRIORITY", note_window=4, pool_capacity=2,
                                           fusion="RESIDUAL", cross_layer_period=1, cross_layer_span=2,
                                           d_conv=1, tie_embeddings=False, n_layer=3), 40),
    "fifo_w3_gated_heads4": (dict(pool_policy="FIFO", note_window=3, pool_capacity=2, fusion="GATED",
                                  attn_heads=4, cross_layer_period=4, cross_layer_span=3,
                                  d_conv=4), 41),
}


def make_memory_test(name, over, T):
    def fn():
        model, cfg = build(name, seed=zlib.crc32(name.encode()) % 1000, **over)
        toks = tokens_for(cfg, T)
        out, state, probs = run_checked(model, toks)
        assert not probs, "; ".join(probs[:4])
        assert torch.isfinite(out).all(), "non-finite logits"
        seq, _ = seq_forward(model, toks)
        e = rel_err(out, seq)
        assert e < 1e-10, f"streaming vs whole-sequence rel err {e:.3g}"
        # invariants must not be vacuous: notes kept, dropped under τ1, pools filled, evicted
        st = [ls.stats for ls in state.layers]
        assert sum(s.kept for s in st) > 0, "no note kept"
        assert sum(s.closed - s.kept for s in st) > 0, "no note dropped under note_threshold"
        assert sum(s.evicted + s.rejected for s in st) > 0, "no pool ever full"
        if cfg.pool_policy == "PRIORITY":
            assert sum(s.rejected for s in st) > 0 and sum(s.evicted for s in st) > 0, \
                "PRIORITY never both replaced and rejected"
        # memory must matter after the first window, and not before
        plain = save_and_load(make_config(**dict(over, pool_capacity=0)),
                              random_tensors(cfg, seed=zlib.crc32(name.encode()) % 1000), name + "_plain")
        base = ref.run(plain, toks)
        w = cfg.note_window
        assert torch.equal(out[:w], base[:w]), "memory changed logits before the first window closed"
        assert rel_err(out, base) > 1e-4, "memory has no effect on the logits"
        if VERBOSE:
            print(f"   {name}: vs seq {e:.2g}; fill {state.pool_fill()}; " +
                  " | ".join(str(s) for s in st))
    fn.__name__ = "memory_" + name
    return fn


for _name, (_over, _T) in MEMORY_CONFIGS.items():
    test(make_memory_test(_name, _over, _T))


def Config_roundtrip(cfg):
    back = ref.Config.from_metadata(cfg.to_metadata())
    assert vars(back) == vars(cfg), f"{vars(back)} != {vars(cfg)}"
    return True


@test
def reader_dtypes():
    cfg = make_config(pool_capacity=2)
    tensors = random_tensors(cfg, 3)
    for dt in ("F32", "F16", "BF16"):
        m = save_and_load(cfg, tensors, "dtype_" + dt, dt)
        tdt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dt]
        for name, t in tensors.items():
            if name in m.params:
                want = t.to(tdt).to(torch.float64)
                assert torch.equal(m.params[name], want), f"{dt} {name} decoded wrongly"
                assert m.params[name].dtype == torch.float64
    # mixed dtypes in one file, and exact bf16 bit patterns
    m = save_and_load(cfg, tensors, "dtype_mixed", lambda n: "BF16" if "mixer" in n else "F32")
    assert torch.equal(m.params["layers.0.mixer.D"], tensors["layers.0.mixer.D"].to(torch.bfloat16).double())
    assert torch.equal(m.params["layers.0.norm.weight"], tensors["layers.0.norm.weight"].float().double())
    raw = struct.pack("<3H", 0x3F80, 0xC020, 0x4049)  # 1.0, -2.5, 3.140625
    assert ref._decode("BF16", raw, [3], "x").tolist() == [1.0, -2.5, 3.140625]
    assert Config_roundtrip(cfg)


@test
def reader_rejects_bad_files():
    cfg = make_config()
    tensors = random_tensors(cfg, 4)
    bad = dict(tensors)
    del bad["layers.1.tok.q.weight"]
    for what, tens, meta in [
            ("missing tensor", bad, cfg.to_metadata()),
            ("wrong shape", dict(tensors, **{"layers.0.mixer.D": torch.zeros(5, dtype=torch.float64)}),
             cfg.to_metadata()),
            ("missing key", tensors, {k: v for k, v in cfg.to_metadata().items() if k != "d_state"}),
            ("wrong format", tensors, dict(cfg.to_metadata(), format="mamba"))]:
        path = os.path.join(TMP, "bad.safetensors")
        write_safetensors(path, tens, meta)
        try:
            ref.Model.load(path)
        except ref.FormatError:
            continue
        raise AssertionError(f"{what} accepted")


@test
def p0_ignores_memory_weights():
    over = dict(pool_capacity=0, cross_layer_period=2)
    cfg = make_config(**over)
    t1 = random_tensors(cfg, 5)
    t2 = random_tensors(cfg, 6)
    for n in t1:  # same mixer/global weights, different note/tok/lay weights
        if ".note." not in n and ".tok." not in n and ".lay." not in n:
            t2[n] = t1[n]
    assert any(".tok." in n for n in t1) and not torch.equal(t1["layers.1.tok.q.weight"], t2["layers.1.tok.q.weight"])
    m1 = save_and_load(cfg, t1, "p0_a")
    m2 = save_and_load(cfg, t2, "p0_b")
    bare = {n: t for n, t in t1.items() if ".note." not in n and ".tok." not in n and ".lay." not in n}
    m3 = save_and_load(cfg, bare, "p0_bare")
    toks = tokens_for(cfg, 40)
    o1, s1, probs = run_checked(m1, toks)
    o2 = ref.run(m2, toks)
    o3 = ref.run(m3, toks)
    assert torch.equal(o1, o2) and torch.equal(o1, o3), "P=0 logits depend on memory weights"
    assert s1.pool_fill() == [0] * cfg.n_layer and not probs
    seq, _ = seq_forward(m1, toks)
    assert rel_err(o1, seq) < 1e-10, "P=0 streaming vs whole-sequence differ"


@test
def fresh_states_identical():
    model, cfg = build("twice", **MEMORY_CONFIGS["prio_w4_gated_cross"][0])
    toks = tokens_for(cfg, 30)
    a, b = ref.run(model, toks), ref.run(model, toks)
    assert torch.equal(a, b), "same tokens through fresh states differ"


@test
def snapshot_resume_identical():
    model, cfg = build("snap", **MEMORY_CONFIGS["fifo_w4_weighted_cross"][0])
    toks = tokens_for(cfg, 40)
    full = ref.run(model, toks)
    for cut in (1, 7, 8, 17):
        st = ref.State(cfg)
        head = ref.run(model, toks[:cut], st)
        st2 = copy.deepcopy(st)  # "snapshot" then "restore" into a new state
        tail = ref.run(model, toks[cut:], st2)
        assert torch.equal(torch.cat([head, tail]), full), f"resume at {cut} differs"


@test
def gate_threshold_one_is_plain_mamba():
    over = dict(MEMORY_CONFIGS["fifo_w1_residual_nocross"][0], gate_threshold=1.0, cross_layer_period=2)
    cfg = make_config(**over)
    tens = random_tensors(cfg, 8)
    m = save_and_load(cfg, tens, "gate1")
    plain = save_and_load(make_config(**dict(over, pool_capacity=0)), tens, "gate1_plain")
    toks = tokens_for(cfg, 24)
    st = ref.State(cfg)
    out = ref.run(m, toks, st)
    assert sum(st.pool_fill()) > 0, "pools stayed empty"
    assert torch.equal(out, ref.run(plain, toks)), "reads not skipped at gate <= 1.0"


@test
def large_pool_policies_agree():
    over = dict(MEMORY_CONFIGS["prio_w4_gated_cross"][0], pool_capacity=20)
    cfg = make_config(**over)
    tens = random_tensors(cfg, 9)
    mp = save_and_load(cfg, tens, "big_prio")
    mf = save_and_load(make_config(**dict(over, pool_policy="FIFO")), tens, "big_fifo")
    toks = tokens_for(cfg, 48)
    assert torch.equal(ref.run(mp, toks), ref.run(mf, toks)), "FIFO != PRIORITY without eviction"


@test
def tied_equals_untied_copy():
    cfg = make_config(**MEMORY_CONFIGS["prio_w1_weighted_cross_gatethr"][0])
    tens = random_tensors(cfg, 10)
    mt = save_and_load(cfg, tens, "tied")
    cu = make_config(**dict(MEMORY_CONFIGS["prio_w1_weighted_cross_gatethr"][0], tie_embeddings=False))
    mu = save_and_load(cu, dict(tens, **{"lm_head.weight": tens["embedding.weight"].clone()}), "untied")
    toks = tokens_for(cfg, 16)
    assert torch.equal(ref.run(mt, toks), ref.run(mu, toks)), "tied != untied with lm_head = embedding"


@test
def priority_ties_newer_loses():
    # note.score.weight = 0: every note of a layer has the same score, so once the pool is
    # full every newer note ties and is dropped: the pool keeps the first P windows.
    over = dict(pool_policy="PRIORITY", note_window=2, pool_capacity=3, note_threshold=0.3)
    cfg = make_config(**over)
    tens = random_tensors(cfg, 11)
    for l in range(cfg.n_layer):
        tens[f"layers.{l}.note.score.weight"] = torch.zeros(cfg.d_model, dtype=torch.float64)
        tens[f"layers.{l}.note.score.bias"] = torch.tensor([1.0], dtype=torch.float64)
    m = save_and_load(cfg, tens, "ties")
    toks = tokens_for(cfg, 20)
    out, st, probs = run_checked(m, toks)
    assert not probs, "; ".join(probs[:3])
    for l, ls in enumerate(st.layers):
        assert [e.window for e in ls.pool] == [0, 1, 2], f"layer {l}: pool {[e.window for e in ls.pool]}"
        assert ls.stats.rejected == 7
    seq, _ = seq_forward(m, toks)
    assert rel_err(out, seq) < 1e-10


@test
def insert_rules_direct():
    def note(win, score):
        n = ref.Note(torch.zeros(2, dtype=torch.float64), torch.tensor(score, dtype=torch.float64), win)
        return n

    def wins(pool):
        return [(n.window, n.score) for n in pool]

    pri = make_config(pool_policy="PRIORITY", pool_capacity=3)
    fifo = make_config(pool_policy="FIFO", pool_capacity=3)
    pool = []
    for n in [note(0, 0.6), note(1, 0.6), note(2, 0.9)]:
        pool = ref.insert_note(pool, n, pri)
    # lowest score tie between windows 0 and 1: the oldest (0) is replaced by a better note
    assert wins(ref.insert_note(pool, note(3, 0.7), pri)) == [(1, 0.6), (2, 0.9), (3, 0.7)]
    # equal to the lowest: the new note is dropped
    assert wins(ref.insert_note(pool, note(3, 0.6), pri)) == wins(pool)
    # lowest in the middle: order by window is kept
    p2 = [note(0, 0.8), note(1, 0.55), note(2, 0.9)]
    assert wins(ref.insert_note(p2, note(5, 0.7), pri)) == [(0, 0.8), (2, 0.9), (5, 0.7)]
    # FIFO drops the oldest window whatever its score
    assert wins(ref.insert_note(p2, note(5, 0.1), fifo)) == [(1, 0.55), (2, 0.9), (5, 0.1)]
    assert ref.insert_note([], note(0, 0.9), make_config(pool_capacity=0)) == []


@test
def autograd_smoke():
    model, cfg = build("grad", **MEMORY_CONFIGS["prio_w4_gated_cross"][0])
    leaves = [n for n in model.params if n != "lm_head.weight"]
    for n in leaves:
        model.params[n] = model.params[n].clone().requires_grad_(True)
    if cfg.tie_embeddings:
        model.params["lm_head.weight"] = model.params["embedding.weight"]
    toks = tokens_for(cfg, 32)
    out = ref.run(model, toks)
    loss = torch.nn.functional.cross_entropy(out[:-1], torch.tensor(toks[1:]))
    loss.backward()
    for n in ["layers.0.note.score.weight", "layers.2.note.summary.weight", "layers.0.tok.q.weight",
              "layers.3.lay.k.weight", "layers.3.lay.fuse.weight", "layers.2.tok.fuse.weight",
              "layers.0.mixer.A_log", "embedding.weight"]:
        g = model.params[n].grad
        assert g is not None and torch.isfinite(g).all() and float(g.abs().max()) > 0, f"no gradient for {n}"


@test
def check_logits_tool():
    import contextlib
    import io
    import check_logits
    cfg = make_config(**MEMORY_CONFIGS["prio_w4_gated_cross"][0])
    d = os.path.join(TMP, "case")
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "model.safetensors"), random_tensors(cfg, 12), cfg.to_metadata())
    toks = tokens_for(cfg, 30)
    np.array(toks, dtype="<i4").tofile(os.path.join(d, "tokens.i32"))
    good = ref.run(ref.Model.load(os.path.join(d, "model.safetensors")), toks).numpy().astype("<f4")

    def call(logits, *extra):
        if logits is not None:
            logits.tofile(os.path.join(d, "logits.f32"))
        buf, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
            try:
                rc = check_logits.main([d, *extra])
            except SystemExit as e:
                rc = e.code
        return rc, buf.getvalue() + err.getvalue()

    rc, out = call(good)
    assert rc == 0 and out.startswith("check_logits: T=30 V=13 max_rel_err=") and \
        "(tolerance 1e-4) OK" in out, out
    assert "pool fill per layer" in out, out
    bad = good.copy()
    bad[17, 3] += 1e-2 * np.abs(good).max()
    rc, out = call(bad)
    assert rc == 1 and "FAIL" in out and "t=17" in out, out
    rc, out = call(bad, "--tol", "0.1")
    assert rc == 0, out
    nan = good.copy()
    nan[5, 0] = np.nan
    assert call(nan)[0] == 1
    assert call(good[:-1])[0] == 2           # size mismatch
    os.remove(os.path.join(d, "logits.f32"))
    assert call(None)[0] == 2                # missing file


if __name__ == "__main__":
    shutil.rmtree(TMP, ignore_errors=True)
    failed = [r for r in RESULTS if r[1] is not None]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)
