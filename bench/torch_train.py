#!/usr/bin/python3
"""Training throughput of a straightforward PyTorch MemMamba (the baseline of
bench/run_train.sh).

    /usr/bin/python3 bench/torch_train.py [--B 4] [--T 512] [--threads 2]
                                          [--warmup 1] [--steps 3] [--json]
                                          [--shape default|130m] [--device cpu|cuda]

The same model as the library's default configuration (DESIGN 2.1: V=256 D=256 L=8
N=16 K=4 expand 2, w=32 S=64 P=50 H=4 PRIORITY, cross-layer period 4 span 4,
WEIGHTED fusion, tied head; 4.1 M parameters) and the same work per step as
mm_train_step: the whole-sequence forward of DESIGN 2.4 from empty state, next-token
cross-entropy over every target, backward by autograd, global-norm clipping at 1.0 and
torch.optim.AdamW (lr 1e-3, betas 0.9/0.95, eps 1e-8, weight decay 0.1 except on norms,
biases, A_log, D and alpha: DESIGN 6).  float32 on the CPU.

It is written the way a PyTorch user would write it, not tuned: position-parallel
where that is natural (norms, projections, the convolution, window maxima, notes, the
pool reads as masked attention over the sequence's windows), the selective scan as a
Python loop over time after computing exp(Δ·A) and Δ·B·x for all positions (the
pattern of the Mamba authors' own PyTorch reference scan, selective_scan_ref), pool
membership after each window by Python bookkeeping on the scores.  It is not meant to
match the library bit for bit, but it has the same parameters (4,119,826) and does the
same arithmetic per step.

Throughput = B·T / (mean wall time of a step), over --steps steps after --warmup.
--shape 130m gives the Mamba-130m shape (V=50280 D=768 L=24, the rest as above);
--device cuda runs it on a GPU (float32, PyTorch >= 2 for torch.set_default_device).
"""

import argparse
import json
import math
import platform
import sys
import time

import torch
import torch.nn.functional as F


class Config:
    vocab_size = 256
    d_model = 256
    n_layer = 8
    d_state = 16
    d_conv = 4
    expand = 2
    dt_rank = 16  # ceil(D / 16)
    note_window = 32
    summary_dim = 64
    pool_capacity = 50
    pool_policy = "PRIORITY"
    note_threshold = 0.5
    attn_heads = 4
    gate_threshold = 0.0
    cross_layer_period = 4
    cross_layer_span = 4
    norm_eps = 1e-5

    @property
    def d_inner(self):
        return self.expand * self.d_model

    def reads_cross_layer(self, l):
        p = self.cross_layer_period
        return self.pool_capacity > 0 and p > 0 and (l + 1) % p == 0

    def sources(self, l):
        return list(range(max(0, l - self.cross_layer_span), l))


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class Read(torch.nn.Module):
    """One pool read (`tok.` or `lay.`, DESIGN 2.3 steps 1-2), WEIGHTED fusion."""

    def __init__(self, cfg):
        super().__init__()
        D, S = cfg.d_model, cfg.summary_dim
        self.q = torch.nn.Parameter(torch.randn(S, D) * 0.02)
        self.k = torch.nn.Parameter(torch.randn(S, S) * 0.02)
        self.v = torch.nn.Parameter(torch.randn(S, S) * 0.02)
        self.o = torch.nn.Parameter(torch.randn(D, S) * 0.02)
        self.gate_weight = torch.nn.Parameter(torch.randn(D) * 0.02)
        self.gate_bias = torch.nn.Parameter(torch.randn(1) * 0.02)
        self.alpha = torch.nn.Parameter(torch.full((D,), 0.1))

    def forward(self, a, shat, visible, cfg):
        """a [B,T,D]; shat [B,W,S] notes of W windows; visible [B,T,W] bool.
        Returns alpha ⊙ c [B,T,D]."""
        B, T, _ = a.shape
        W = shat.shape[1]
        H, S = cfg.attn_heads, cfg.summary_dim
        dh = S // H
        q = (a @ self.q.t()).view(B, T, H, dh).transpose(1, 2)          # [B,H,T,dh]
        k = (shat @ self.k.t()).view(B, W, H, dh).transpose(1, 2)       # [B,H,W,dh]
        v = (shat @ self.v.t()).view(B, W, H, dh).transpose(1, 2)
        logits = (q @ k.transpose(-1, -2)) / math.sqrt(dh)              # [B,H,T,W]
        logits = logits.masked_fill(~visible[:, None], -1e30)
        p = torch.softmax(logits, dim=-1)
        o = (p @ v).transpose(1, 2).reshape(B, T, S)
        gamma = torch.sigmoid(a @ self.gate_weight + self.gate_bias)      # [B,T]
        on = visible.any(-1) & (gamma > cfg.gate_threshold)
        c = torch.where(on[..., None], gamma[..., None] * (o @ self.o.t()), torch.zeros(()))
        return self.alpha * c


class Layer(torch.nn.Module):
    def __init__(self, cfg, l):
        super().__init__()
        D, E, N, K, R, S = (cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.dt_rank,
                            cfg.summary_dim)
        self.norm = torch.nn.Parameter(torch.ones(D))
        self.in_proj = torch.nn.Parameter(torch.randn(2 * E, D) * 0.02)
        self.conv_weight = torch.nn.Parameter((torch.rand(E, 1, K) * 2 - 1) / math.sqrt(K))
        self.conv_bias = torch.nn.Parameter((torch.rand(E) * 2 - 1) / math.sqrt(K))
        self.x_proj = torch.nn.Parameter(torch.randn(R + 2 * N, E) * 0.02)
        self.dt_proj = torch.nn.Parameter((torch.rand(E, R) * 2 - 1) * R ** -0.5)
        dt = torch.exp(torch.rand(E) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = torch.nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = torch.nn.Parameter(torch.log(torch.arange(1, N + 1).float()).repeat(E, 1))
        self.D = torch.nn.Parameter(torch.ones(E))
        self.out_proj = torch.nn.Parameter(torch.randn(D, E) * 0.02)
        self.memory = cfg.pool_capacity > 0
        if self.memory:
            self.note_norm = torch.nn.Parameter(torch.ones(D))
            self.note_summary = torch.nn.Parameter(torch.randn(S, D) * 0.02)
            self.note_score = torch.nn.Parameter(torch.randn(D) * 0.02)
            self.note_score_bias = torch.nn.Parameter(torch.full((1,), 2.0))
            self.tok = Read(cfg)
            self.lay = Read(cfg) if cfg.reads_cross_layer(l) else None

    def notes(self, a, cfg):
        """Window maxima, scores and summaries of every completed window, and pool
        membership after each window.  Returns (shat [B,W,S], member [B,W+1,W] bool:
        row i = the pool after i windows)."""
        B, T, D = a.shape
        w, P = cfg.note_window, cfg.pool_capacity
        W = T // w
        m = a[:, :W * w].reshape(B, W, w, D).max(dim=2).values            # [B,W,D]
        score = torch.sigmoid((m - m.mean(-1, keepdim=True)) @ self.note_score
                              + self.note_score_bias)                      # [B,W]
        shat = score[..., None] * (m @ self.note_summary.t())               # [B,W,S]
        member = torch.zeros(B, W + 1, W, dtype=torch.bool)
        scores = score.detach().tolist()
        for b in range(B):
            pool = []  # [(window, score)], ascending window
            for i in range(W):
                s = scores[b][i]
                if s > cfg.note_threshold:
                    if len(pool) < P:
                        pool.append((i, s))
                    elif cfg.pool_policy == "FIFO":
                        pool = pool[1:] + [(i, s)]
                    else:
                        low = min(range(len(pool)), key=lambda j: (pool[j][1], pool[j][0]))
                        if s > pool[low][1]:
                            pool = pool[:low] + pool[low + 1:] + [(i, s)]
                for j, _ in pool:
                    member[b, i + 1, j] = True
        return shat, member

    def mixer(self, x, cfg):
        B, T, _ = x.shape
        E, N, K, R = cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.dt_rank
        h = rms_norm(x, self.norm, cfg.norm_eps)
        xz = h @ self.in_proj.t()
        xi, z = xz[..., :E], xz[..., E:]
        xc = F.conv1d(xi.transpose(1, 2), self.conv_weight, self.conv_bias,
                      padding=K - 1, groups=E)[..., :T].transpose(1, 2)
        xc = F.silu(xc)                                                     # [B,T,E]
        xdbl = xc @ self.x_proj.t()
        delta, Bm, Cm = xdbl[..., :R], xdbl[..., R:R + N], xdbl[..., R + N:]
        dt = F.softplus(delta @ self.dt_proj.t() + self.dt_bias)            # [B,T,E]
        A = -torch.exp(self.A_log)                                          # [E,N]
        dA = torch.exp(dt[..., None] * A)                                   # [B,T,E,N]
        dBx = (dt * xc)[..., None] * Bm[:, :, None, :]                      # [B,T,E,N]
        s = torch.zeros(B, E, N)
        ys = []
        # the scan; unbind, not dA[:, t]: the backward of T slices would write T
        # full-size zero tensors (quadratic in T), of one unbind a single stack
        for dA_t, dBx_t, C_t in zip(dA.unbind(1), dBx.unbind(1), Cm.unbind(1)):
            s = dA_t * s + dBx_t
            ys.append((s @ C_t[..., None])[..., 0])                         # [B,E]
        y = torch.stack(ys, dim=1) + self.D * xc
        y = y * F.silu(z)
        return x + y @ self.out_proj.t()


class MemMamba(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding = torch.nn.Parameter(torch.randn(cfg.vocab_size, cfg.d_model) * 0.02)
        self.layers = torch.nn.ModuleList(Layer(cfg, l) for l in range(cfg.n_layer))
        self.norm_f = torch.nn.Parameter(torch.ones(cfg.d_model))

    def forward(self, tokens):
        cfg = self.cfg
        B, T = tokens.shape
        w = cfg.note_window
        x = self.embedding[tokens]
        window_of = torch.arange(T) // w                                    # the pool t reads
        notes = {}
        for l, layer in enumerate(self.layers):
            if layer.memory:
                a = rms_norm(x, layer.note_norm, cfg.norm_eps)
                shat, member = layer.notes(a, cfg)
                notes[l] = (shat, member)
                visible = member[:, window_of]                              # [B,T,W]
                xbar = x + layer.tok(a, shat, visible, cfg)
                if layer.lay is not None and cfg.sources(l):
                    src = cfg.sources(l)
                    shat_u = torch.cat([notes[j][0] for j in src], dim=1)
                    vis_u = torch.cat([notes[j][1][:, window_of] for j in src], dim=2)
                    xbar = xbar + layer.lay(a, shat_u, vis_u, cfg)
            else:
                xbar = x
            x = layer.mixer(xbar, cfg)
        return rms_norm(x, self.norm_f, cfg.norm_eps) @ self.embedding.t()


def no_decay(name, p):
    """DESIGN 6: no weight decay on norms, biases, A_log, D, alpha."""
    last = name.rsplit(".", 1)[-1]
    return p.dim() < 2 and (last in ("norm", "note_norm", "norm_f", "A_log", "D", "alpha")
                            or last.endswith("bias"))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--shape", choices=("default", "130m"), default="default")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cuda = args.device.startswith("cuda")
    if cuda:
        torch.set_default_device(args.device)
    cfg = Config()
    if args.shape == "130m":
        cfg.vocab_size, cfg.d_model, cfg.n_layer, cfg.dt_rank = 50280, 768, 24, 48
    model = MemMamba(cfg)
    decay = [p for n, p in model.named_parameters() if not no_decay(n, p)]
    rest = [p for n, p in model.named_parameters() if no_decay(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(args.seed)
    tokens = torch.randint(0, cfg.vocab_size, (args.B, args.T), generator=g,
                           device="cpu").to(args.device)

    times, losses = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, cfg.vocab_size),
                               tokens[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(float(loss))
        if i >= args.warmup:
            times.append(dt)
    mean = sum(times) / len(times)
    result = {"impl": "pytorch", "B": args.B, "T": args.T, "threads": args.threads,
              "shape": args.shape, "device": args.device,
              "params": n_params, "steps": len(times), "s_per_step": mean,
              "best_s_per_step": min(times), "tokens_per_s": args.B * args.T / mean,
              "loss_first": losses[0], "loss_last": losses[-1],
              "torch": torch.__version__, "python": platform.python_version()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"pytorch {torch.__version__}: B={args.B} T={args.T} threads={args.threads} "
              f"params {n_params / 1e6:.2f} M; {mean:.2f} s/step (best {min(times):.2f}) over "
              f"{len(times)} steps = {result['tokens_per_s']:.0f} tokens/s; loss "
              f"{losses[0]:.4f} -> {losses[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
