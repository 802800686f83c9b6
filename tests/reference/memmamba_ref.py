#!/usr/bin/python3
"""Independent float64 reference of the MemMamba model (DESIGN.md sections 2.1-2.4).

Written from DESIGN alone; it shares no code with the C++ library.  It implements
the *streaming* view of DESIGN 2.3 literally: one token at a time, one layer at a
time, with an explicit per-layer state (conv window, SSM state, pending window-max
accumulator, note pool).

Run it with Debian's interpreter, which has PyTorch:  /usr/bin/python3

Decisions the project made where DESIGN is silent (see README.md in this folder):
  * cross_layer_period p = 0: no cross-layer reads.  Otherwise layer l (0-based)
    reads iff (l+1) % p == 0, over layers max(0, l-g) .. l-1.
  * Pool visibility: every read at position t (own layer and cross-layer) sees the
    pools holding exactly the windows with index < t // w.  A note closed at t is
    inserted only after *all* layers have processed t.
  * Attention heads split the S dims contiguously; scale 1/sqrt(S/H).
  * GATED fusion: alpha = sigmoid(fuse.weight * a) per channel, a = RMSNorm(u; note.norm).
  * pool_capacity 0: no notes, no reads (plain Mamba); memory tensors are ignored.

Autograd: nothing here modifies a tensor in place, and every keep/evict/skip
decision is taken on Python floats, so gradients flow through the summaries, window
maxima, attentions, gates and alphas while the decisions stay constants (DESIGN 2.4).
`batch_loss` is the training loss of DESIGN 6 (check_grads.py, grad_selftest.py).
"""

import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64

# ----------------------------------------------------------------------------------
# safetensors reader (standard library + numpy + torch only)
# ----------------------------------------------------------------------------------

_ELEM_SIZE = {"F32": 4, "BF16": 2, "F16": 2, "F64": 8}


class FormatError(Exception):
    """A weights file that does not follow the safetensors / memmamba contract."""


def _decode(dtype, raw, shape, name):
    count = 1
    for d in shape:
        count *= d
    if dtype not in _ELEM_SIZE:
        raise FormatError(f"tensor {name}: unsupported dtype {dtype!r}")
    if len(raw) != count * _ELEM_SIZE[dtype]:
        raise FormatError(f"tensor {name}: {len(raw)} bytes for shape {shape} of {dtype}")
    if dtype == "F32":
        arr = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    elif dtype == "F16":
        arr = np.frombuffer(raw, dtype="<f2").astype(np.float64)
    elif dtype == "F64":
        arr = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    else:  # BF16: the high 16 bits of an IEEE float32
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << np.uint32(16)
        arr = bits.view(np.float32).astype(np.float64)
    return torch.from_numpy(arr.reshape(shape).copy())


def read_safetensors(path):
    """Returns (tensors: {name: float64 tensor}, metadata: {str: str})."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise FormatError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise FormatError(f"{path}: header length {n} exceeds the file size {len(blob)}")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: header is not JSON: {e}")
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header is not a JSON object")
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, info in header.items():
        try:
            begin, end = info["data_offsets"]
            shape = [int(d) for d in info["shape"]]
            dtype = info["dtype"]
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{path}: bad header entry for {name}")
        if not (0 <= begin <= end <= len(data)):
            raise FormatError(f"{path}: tensor {name} offsets {begin}..{end} outside the data")
        tensors[name] = _decode(dtype, data[begin:end], shape, name)
    return tensors, meta


# ----------------------------------------------------------------------------------
# Configuration (DESIGN 2.1), read from __metadata__ (all values are strings)
# ----------------------------------------------------------------------------------

_INT_KEYS = ["vocab_size", "d_model", "n_layer", "d_state", "d_conv", "expand", "dt_rank",
             "note_window", "summary_dim", "pool_capacity", "attn_heads",
             "cross_layer_period", "cross_layer_span"]
_FLOAT_KEYS = ["note_threshold", "gate_threshold", "norm_eps"]


class Config:
    def __init__(self, **kw):
        self.vocab_size = 256
        self.d_model = 256
        self.n_layer = 8
        self.d_state = 16
        self.d_conv = 4
        self.expand = 2
        self.dt_rank = None  # resolved below: ceil(D/16)
        self.note_window = 32
        self.summary_dim = 64
        self.pool_capacity = 50
        self.pool_policy = "PRIORITY"
        self.note_threshold = 0.5
        self.attn_heads = 4
        self.gate_threshold = 0.0
        self.cross_layer_period = 4
        self.cross_layer_span = 4
        self.fusion = "WEIGHTED"
        self.norm_eps = 1e-5
        self.tie_embeddings = True
        for k, v in kw.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown config key {k}")
            setattr(self, k, v)
        if self.dt_rank is None:
            self.dt_rank = (self.d_model + 15) // 16
        self.validate()

    @property
    def d_inner(self):
        return self.expand * self.d_model

    def validate(self):
        for k in ["vocab_size", "d_model", "n_layer", "d_state", "d_conv", "expand", "dt_rank",
                  "note_window", "summary_dim", "attn_heads"]:
            if getattr(self, k) < 1:
                raise FormatError(f"config {k} = {getattr(self, k)} must be >= 1")
        for k in ["pool_capacity", "cross_layer_period", "cross_layer_span"]:
            if getattr(self, k) < 0:
                raise FormatError(f"config {k} = {getattr(self, k)} must be >= 0")
        if self.summary_dim % self.attn_heads:
            raise FormatError("summary_dim must be divisible by attn_heads")
        if self.pool_policy not in ("PRIORITY", "FIFO"):
            raise FormatError(f"bad pool_policy {self.pool_policy!r}")
        if self.fusion not in ("WEIGHTED", "RESIDUAL", "GATED"):
            raise FormatError(f"bad fusion {self.fusion!r}")

    def reads_cross_layer(self, l):
        """Decision: p == 0 means no cross-layer reads at all."""
        p = self.cross_layer_period
        return p > 0 and (l + 1) % p == 0

    def cross_layer_sources(self, l):
        """Layers max(0, l-g) .. l-1, in layer order (DESIGN 2.3 step 2)."""
        return list(range(max(0, l - self.cross_layer_span), l))

    def to_metadata(self):
        meta = {"format": "memmamba"}
        for k in _INT_KEYS:
            meta[k] = str(int(getattr(self, k)))
        for k in _FLOAT_KEYS:
            meta[k] = repr(float(getattr(self, k)))
        meta["pool_policy"] = self.pool_policy
        meta["fusion"] = self.fusion
        meta["tie_embeddings"] = "true" if self.tie_embeddings else "false"
        return meta

    @staticmethod
    def from_metadata(meta):
        if meta.get("format") != "memmamba":
            raise FormatError(f"__metadata__ format is {meta.get('format')!r}, expected 'memmamba'")
        kw = {}
        try:
            for k in _INT_KEYS:
                kw[k] = int(meta[k])
            for k in _FLOAT_KEYS:
                kw[k] = float(meta[k])
            kw["pool_policy"] = meta["pool_policy"]
            kw["fusion"] = meta["fusion"]
            tie = meta["tie_embeddings"]
        except KeyError as e:
            raise FormatError(f"__metadata__ lacks key {e}")
        except ValueError as e:
            raise FormatError(f"__metadata__ has a bad number: {e}")
        if tie not in ("true", "false"):
            raise FormatError(f"tie_embeddings is {tie!r}, expected 'true' or 'false'")
        kw["tie_embeddings"] = tie == "true"
        return Config(**kw)

    def __repr__(self):
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items())) + ")"


# ----------------------------------------------------------------------------------
# Parameters (DESIGN 2.2)
# ----------------------------------------------------------------------------------

def expected_shapes(cfg):
    """{name: shape} of every tensor the model uses (DESIGN 2.2)."""
    V, D, E, N, K, R, S = (cfg.vocab_size, cfg.d_model, cfg.d_inner, cfg.d_state,
                           cfg.d_conv, cfg.dt_rank, cfg.summary_dim)
    shapes = {"embedding.weight": [V, D], "norm_f.weight": [D]}
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = [V, D]
    memory = cfg.pool_capacity > 0

    def read_block(prefix):
        shapes.update({
            prefix + "q.weight": [S, D], prefix + "k.weight": [S, S],
            prefix + "v.weight": [S, S], prefix + "o.weight": [D, S],
            prefix + "gate.weight": [D], prefix + "gate.bias": [1]})
        if cfg.fusion == "WEIGHTED":
            shapes[prefix + "alpha"] = [D]
        elif cfg.fusion == "GATED":
            shapes[prefix + "fuse.weight"] = [D]

    for l in range(cfg.n_layer):
        p = f"layers.{l}."
        shapes.update({
            p + "norm.weight": [D],
            p + "mixer.in_proj.weight": [2 * E, D],
            p + "mixer.conv1d.weight": [E, K],
            p + "mixer.conv1d.bias": [E],
            p + "mixer.x_proj.weight": [R + 2 * N, E],
            p + "mixer.dt_proj.weight": [E, R],
            p + "mixer.dt_proj.bias": [E],
            p + "mixer.A_log": [E, N],
            p + "mixer.D": [E],
            p + "mixer.out_proj.weight": [D, E]})
        if memory:
            shapes.update({
                p + "note.norm.weight": [D], p + "note.summary.weight": [S, D],
                p + "note.score.weight": [D], p + "note.score.bias": [1]})
            read_block(p + "tok.")
            if cfg.reads_cross_layer(l):
                read_block(p + "lay.")
    return shapes


class Model:
    """Immutable weights + config.  `w(name)` returns a float64 tensor."""

    def __init__(self, cfg, tensors, strict_extra=False):
        self.cfg = cfg
        self.params = {}
        self.warnings = []
        for name, shape in expected_shapes(cfg).items():
            if name not in tensors:
                raise FormatError(f"missing tensor {name} (shape {shape})")
            t = tensors[name]
            if list(t.shape) != shape:
                raise FormatError(f"tensor {name} has shape {list(t.shape)}, expected {shape}")
            self.params[name] = t.to(DTYPE)
        extra = sorted(set(tensors) - set(self.params))
        # memory tensors of a P = 0 model, and an lm_head of a tied model, are ignored
        for name in extra:
            self.warnings.append(f"ignored tensor {name}")
        if strict_extra and extra:
            raise FormatError("unexpected tensors: " + ", ".join(extra))
        if cfg.tie_embeddings:
            self.params["lm_head.weight"] = self.params["embedding.weight"]

    @staticmethod
    def load(path):
        tensors, meta = read_safetensors(path)
        return Model(Config.from_metadata(meta), tensors)

    def w(self, name):
        return self.params[name]

    def layer(self, l):
        return LayerWeights(self, l)


class LayerWeights:
    def __init__(self, model, l):
        self.model, self.prefix = model, f"layers.{l}."

    def __getitem__(self, name):
        return self.model.params[self.prefix + name]


# ----------------------------------------------------------------------------------
# Streaming state
# ----------------------------------------------------------------------------------

class Note:
    """One pool entry: summary ŝ [S] (a tensor, carries the graph), score (Python float:
    decisions are constants), window index.  score_t keeps the score tensor."""

    __slots__ = ("summary", "score", "window", "score_t")

    def __init__(self, summary, score_t, window):
        self.summary = summary
        self.score_t = score_t
        self.score = float(score_t)
        self.window = window

    def __repr__(self):
        return f"Note(window={self.window}, score={self.score:.6g})"


class LayerStats:
    """Bookkeeping for test authors (not part of the model state)."""

    def __init__(self):
        self.closed = 0      # windows closed
        self.kept = 0        # notes with score > note_threshold (offered to the pool)
        self.inserted = 0    # notes that entered the pool
        self.evicted = 0     # entries removed to make room (FIFO oldest / PRIORITY lowest)
        self.rejected = 0    # PRIORITY: new note not strictly better than the lowest
        self.log = []        # (window, score, kept) of every closed window, in order
        # closest approach of a decision value to its threshold: a library computing in
        # fp32 may decide differently where these are tiny (~1e-6)
        self.min_score_margin = math.inf  # min |score - note_threshold| over closed windows
        self.min_gate_margin = math.inf   # min |γ - gate_threshold| over reads with m > 0
        self.min_evict_gap = math.inf     # PRIORITY: min |new score - lowest pool score| when full
        # min |a - running window max| != 0 over the window-max updates: where it is tiny,
        # a perturbation can move a window max (and its gradient) to another position.
        # Exact ties are left out: they come from equal inputs (the same token twice in a
        # window, layer 0), stay ties under any perturbation and go to the first position.
        self.min_max_gap = math.inf

    def __repr__(self):
        return (f"closed={self.closed} kept={self.kept} inserted={self.inserted} "
                f"evicted={self.evicted} rejected={self.rejected}")


class LayerState:
    def __init__(self, cfg):
        E, N, K = cfg.d_inner, cfg.d_state, cfg.d_conv
        self.conv = torch.zeros(E, K - 1, dtype=DTYPE)  # last K-1 ξ inputs, oldest first
        self.ssm = torch.zeros(E, N, dtype=DTYPE)       # s[e, n]
        self.win_max = None                              # pending window max of a, or None
        self.pool = []                                   # [Note], ascending window
        self.stats = LayerStats()


class State:
    """The whole per-stream state: position + per-layer state."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.t = 0
        self.layers = [LayerState(cfg) for _ in range(cfg.n_layer)]

    def pool_fill(self):
        return [len(ls.pool) for ls in self.layers]


# ----------------------------------------------------------------------------------
# The model, one function per step of DESIGN 2.3
# ----------------------------------------------------------------------------------

def rms_norm(x, weight, eps):
    """RMSNorm(x; w) = x / sqrt(mean(x^2) + eps) * w."""
    return x / torch.sqrt(torch.mean(x * x) + eps) * weight


def silu(x):
    return x * torch.sigmoid(x)


def pool_attention(a, entries, W, prefix, cfg, stats=None):
    """DESIGN 2.3 step 1 (prefix 'tok.') and step 2 (prefix 'lay.').

    a: [D]; entries: [Note] (the visible pool entries, in the order given).
    Returns c [D] (zeros when there is no entry or the gate is <= gate_threshold).
    """
    D, S, H = cfg.d_model, cfg.summary_dim, cfg.attn_heads
    m = len(entries)
    # γ = σ(gate·a + gate.bias)
    gamma = torch.sigmoid(torch.dot(W[prefix + "gate.weight"], a) + W[prefix + "gate.bias"][0])
    if stats is not None and m > 0:
        stats.min_gate_margin = min(stats.min_gate_margin, abs(float(gamma) - cfg.gate_threshold))
    if m == 0 or not float(gamma) > cfg.gate_threshold:
        return torch.zeros(D, dtype=DTYPE)
    dh = S // H
    summaries = torch.stack([e.summary for e in entries])          # [m, S]
    q = W[prefix + "q.weight"] @ a                                 # [S]
    k = summaries @ W[prefix + "k.weight"].T                       # [m, S]  k_j = Wk·ŝ_j
    v = summaries @ W[prefix + "v.weight"].T                       # [m, S]  v_j = Wv·ŝ_j
    heads = []
    for h in range(H):                                             # contiguous head slices
        sl = slice(h * dh, (h + 1) * dh)
        logits = (k[:, sl] @ q[sl]) / math.sqrt(dh)                # [m]
        p = torch.softmax(logits, dim=0)                           # over the m entries
        heads.append(p @ v[:, sl])                                 # o_h [dh]
    o = torch.cat(heads)                                           # [S]
    return gamma * (W[prefix + "o.weight"] @ o)                    # γ · Wo·o


def fuse(u, a, c_tok, c_lay, W, cfg):
    """DESIGN 2.3 step 3: x̄ = u + α_tok ⊙ c_tok + α_lay ⊙ c_lay (c_lay None = 0)."""
    def alpha(prefix):
        if cfg.fusion == "WEIGHTED":
            return W[prefix + "alpha"]
        if cfg.fusion == "GATED":
            return torch.sigmoid(W[prefix + "fuse.weight"] * a)
        return 1.0  # RESIDUAL
    x = u + alpha("tok.") * c_tok
    if c_lay is not None:
        x = x + alpha("lay.") * c_lay
    return x


def mamba_mixer(xbar, ls, W, cfg):
    """DESIGN 2.3 step 4.  Returns (layer output, new conv window, new SSM state)."""
    E, N, R = cfg.d_inner, cfg.d_state, cfg.dt_rank
    h = rms_norm(xbar, W["norm.weight"], cfg.norm_eps)
    xz = W["mixer.in_proj.weight"] @ h                             # [2E]
    xi, z = xz[:E], xz[E:]
    # causal depthwise conv over this layer's last K ξ inputs (zeros before the stream)
    window = torch.cat([ls.conv, xi.unsqueeze(1)], dim=1)          # [E, K], oldest first
    xic = silu(torch.sum(W["mixer.conv1d.weight"] * window, dim=1) + W["mixer.conv1d.bias"])
    new_conv = window[:, 1:]
    # [δ, B, C] = x_proj·ξc
    xdbl = W["mixer.x_proj.weight"] @ xic
    delta, B, C = xdbl[:R], xdbl[R:R + N], xdbl[R + N:R + 2 * N]
    dt = F.softplus(W["mixer.dt_proj.weight"] @ delta + W["mixer.dt_proj.bias"])  # Δ [E]
    A = -torch.exp(W["mixer.A_log"])                               # [E, N]
    # s[e,n] <- exp(Δ_e A[e,n]) s[e,n] + Δ_e B_n ξc_e
    s = torch.exp(dt.unsqueeze(1) * A) * ls.ssm + (dt * xic).unsqueeze(1) * B.unsqueeze(0)
    y = s @ C + W["mixer.D"] * xic                                 # y_e = Σ_n s C_n + D_e ξc_e
    y = y * silu(z)
    return xbar + W["mixer.out_proj.weight"] @ y, new_conv, s


def take_note(a, ls, t, W, cfg):
    """DESIGN 2.3 step 5.  Updates the window accumulator; when t closes a window
    returns (new accumulator, Note or None); the note is not yet inserted."""
    w = cfg.note_window
    if ls.win_max is None:
        acc = a
    else:
        # elementwise max; on a tie the earlier value is kept (gradient to the first position)
        acc = torch.where(a > ls.win_max, a, ls.win_max)
        gap = (a - ls.win_max).abs()
        gap = gap[gap > 0]
        if gap.numel():
            ls.stats.min_max_gap = min(ls.stats.min_max_gap, float(gap.min()))
    if t % w != w - 1:
        return acc, None
    mw = acc
    score = torch.sigmoid(torch.dot(W["note.score.weight"], mw - torch.mean(mw))
                          + W["note.score.bias"][0])
    summary = score * (W["note.summary.weight"] @ mw)              # ŝ = score · (Wsum·m_w)
    note = Note(summary, score, t // w)
    kept = note.score > cfg.note_threshold
    ls.stats.closed += 1
    ls.stats.log.append((note.window, note.score, kept))
    ls.stats.min_score_margin = min(ls.stats.min_score_margin, abs(note.score - cfg.note_threshold))
    if not kept:
        return None, None
    ls.stats.kept += 1
    return None, note


def insert_note(pool, note, cfg, stats=None):
    """DESIGN 2.3 Insert.  Returns the new pool (a new list, ascending window order)."""
    P = cfg.pool_capacity
    if stats is None:
        stats = LayerStats()
    if P == 0:  # memory disabled (step() never gets here then)
        return pool
    if len(pool) < P:
        stats.inserted += 1
        return pool + [note]
    if cfg.pool_policy == "FIFO":
        stats.inserted += 1
        stats.evicted += 1
        return pool[1:] + [note]                                   # drop the oldest window
    # PRIORITY: the lowest score, ties: the oldest window (pool is in window order, so the
    # first minimum found scanning from the front is the oldest)
    low = 0
    for i, e in enumerate(pool):
        if e.score < pool[low].score:
            low = i
    stats.min_evict_gap = min(stats.min_evict_gap, abs(note.score - pool[low].score))
    if note.score > pool[low].score:
        stats.inserted += 1
        stats.evicted += 1
        return pool[:low] + pool[low + 1:] + [note]                # the new window is the newest
    stats.rejected += 1
    return pool


def layer_step(u, l, state, model):
    """One layer at one position (DESIGN 2.3 steps 1-5).  Returns (output, pending note)."""
    cfg, W, ls = model.cfg, model.layer(l), state.layers[l]
    t = state.t
    memory = cfg.pool_capacity > 0
    pending = None
    if memory:
        a = rms_norm(u, W["note.norm.weight"], cfg.norm_eps)
        # step 1: own pool (holds exactly the windows < t // w, see step())
        c_tok = pool_attention(a, ls.pool, W, "tok.", cfg, ls.stats)
        # step 2: cross-layer read over the union of pools, layer order then window order
        c_lay = None
        if cfg.reads_cross_layer(l):
            entries = [e for j in cfg.cross_layer_sources(l) for e in state.layers[j].pool]
            c_lay = pool_attention(a, entries, W, "lay.", cfg, ls.stats)
        # step 3
        xbar = fuse(u, a, c_tok, c_lay, W, cfg)
    else:
        xbar = u  # pool_capacity 0: plain Mamba
    # step 4
    out, ls.conv, ls.ssm = mamba_mixer(xbar, ls, W, cfg)
    # step 5 (insertion deferred until every layer has processed t)
    if memory:
        ls.win_max, pending = take_note(a, ls, t, W, cfg)
    return out, pending


def step(model, state, token):
    """Feeds one token; returns logits [V] (float64)."""
    cfg = model.cfg
    token = int(token)
    if not 0 <= token < cfg.vocab_size:
        raise ValueError(f"token id {token} outside 0..{cfg.vocab_size - 1}")
    x = model.w("embedding.weight")[token]
    pending = []
    for l in range(cfg.n_layer):
        x, note = layer_step(x, l, state, model)
        pending.append(note)
    # Notes of window t // w become visible only from the next window on, to every layer.
    for l, note in enumerate(pending):
        if note is not None:
            ls = state.layers[l]
            ls.pool = insert_note(ls.pool, note, cfg, ls.stats)
    state.t += 1
    h = rms_norm(x, model.w("norm_f.weight"), cfg.norm_eps)
    return model.w("lm_head.weight") @ h


def run(model, tokens, state=None):
    """Feeds tokens one at a time; returns logits [T, V] (float64).  A fresh state
    is used when none is given."""
    if state is None:
        state = State(model.cfg)
    out = [step(model, state, tok) for tok in tokens]
    if not out:
        return torch.zeros(0, model.cfg.vocab_size, dtype=DTYPE)
    return torch.stack(out)


# ----------------------------------------------------------------------------------
# Training loss and gradients (DESIGN 6), through the streaming view above
# ----------------------------------------------------------------------------------

def param_names(cfg):
    """The parameters a gradient is taken for: every tensor of the file (a tied
    lm_head is the embedding, so it has no name of its own)."""
    return list(expected_shapes(cfg))


def make_trainable(model):
    """Turns every parameter into a fresh leaf tensor that requires grad (the tied
    lm_head stays the embedding, so its gradient adds to the embedding's).
    Returns {name: leaf} in param_names order."""
    leaves = {}
    for name in param_names(model.cfg):
        leaves[name] = model.params[name].detach().clone().requires_grad_(True)
        model.params[name] = leaves[name]
    if model.cfg.tie_embeddings:
        model.params["lm_head.weight"] = model.params["embedding.weight"]
    return leaves


def target_positions(T, mask_row):
    """Positions t >= 1 whose token is a target (mask_row None: all of them)."""
    return [t for t in range(1, T) if mask_row is None or mask_row[t]]


def batch_loss(model, batch, mask=None):
    """The training loss of DESIGN 6: each of the B sequences of `batch` (lists of
    token ids) runs from an empty state; token t (t >= 1, and mask[b][t] non-zero
    when a mask is given) is predicted from the logits at position t - 1; the loss is
    the mean of -log softmax over all targets of the batch.
    Returns (loss: 0-d tensor, number of targets, [State] one per sequence)."""
    total = torch.zeros((), dtype=DTYPE)
    count = 0
    states = []
    for b, tokens in enumerate(batch):
        state = State(model.cfg)
        logits = run(model, tokens, state)
        states.append(state)
        targets = target_positions(len(tokens), None if mask is None else mask[b])
        if not targets:
            continue
        rows = logits[[t - 1 for t in targets]]
        ids = torch.tensor([int(tokens[t]) for t in targets])
        total = total + F.cross_entropy(rows, ids, reduction="sum")
        count += len(targets)
    if count == 0:
        raise ValueError("the batch has no target")
    return total / count, count, states


def decision_margins(states):
    """The closest approach of any discrete decision to flipping, over every layer of
    every state: (score vs note_threshold, gate vs gate_threshold, PRIORITY new vs
    lowest score, window-max comparisons).  A perturbation smaller than these cannot
    change a keep/evict/skip decision or move a window max."""
    def low(attr):
        return min((getattr(ls.stats, attr) for s in states for ls in s.layers), default=math.inf)
    return (low("min_score_margin"), low("min_gate_margin"), low("min_evict_gap"),
            low("min_max_gap"))


def decision_signature(states):
    """Every discrete outcome of a run (which notes were kept, pool contents, counts):
    equal signatures mean the same decisions were taken."""
    return tuple((tuple((w, k) for (w, _, k) in ls.stats.log),
                  tuple(e.window for e in ls.pool),
                  ls.stats.inserted, ls.stats.evicted, ls.stats.rejected)
                 for s in states for ls in s.layers)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="MemMamba float64 reference: print config, "
                                 "optionally run token ids")
    ap.add_argument("model")
    ap.add_argument("tokens", nargs="*", type=int)
    args = ap.parse_args(argv)
    model = Model.load(args.model)
    print(model.cfg)
    for w in model.warnings:
        print("warning:", w)
    if args.tokens:
        state = State(model.cfg)
        logits = run(model, args.tokens, state)
        for t, row in enumerate(logits):
            print(t, "argmax", int(torch.argmax(row)), "logits[:8]",
                  " ".join(f"{v:.6g}" for v in row[:8].tolist()))
        print("pool fill per layer:", state.pool_fill())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
