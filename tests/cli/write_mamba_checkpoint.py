"""Writes a tiny Mamba v1 checkpoint in the reference naming, as safetensors.

    write_mamba_checkpoint.py OUT [--vocab V] [--d-model D] [--layers L]
        [--d-state N] [--d-conv K] [--expand X] [--dt-rank R] [--untied]
        [--embeddings] [--drop NAME]

Tensor names and shapes follow the reference implementation
(backbone.embedding.weight, backbone.layers.{i}.mixer.conv1d.weight as
[E, 1, K], ...); --embeddings uses the "backbone.embeddings.weight" spelling,
--untied adds a separate lm_head.weight, --drop leaves one tensor out (to test
the error). Only the standard library: struct, json, random.
"""
import argparse
import json
import math
import random
import struct


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--d-model", type=int, default=16)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--d-state", type=int, default=4)
    p.add_argument("--d-conv", type=int, default=4)
    p.add_argument("--expand", type=int, default=2)
    p.add_argument("--dt-rank", type=int, default=0)
    p.add_argument("--untied", action="store_true")
    p.add_argument("--embeddings", action="store_true")
    p.add_argument("--drop", default="")
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args()
    rng = random.Random(a.seed)
    D, E, N, K, V = a.d_model, a.expand * a.d_model, a.d_state, a.d_conv, a.vocab
    R = a.dt_rank or math.ceil(D / 16)

    def normal(*shape, std=0.02):
        n = math.prod(shape)
        return shape, [rng.gauss(0.0, std) for _ in range(n)]

    def const(shape, values):
        return shape, values

    tensors = {}
    emb = normal(V, D)
    tensors["backbone.embeddings.weight" if a.embeddings else "backbone.embedding.weight"] = emb
    for i in range(a.layers):
        pre = f"backbone.layers.{i}."
        tensors[pre + "norm.weight"] = const((D,), [1.0] * D)
        tensors[pre + "mixer.in_proj.weight"] = normal(2 * E, D)
        tensors[pre + "mixer.conv1d.weight"] = normal(E, 1, K, std=0.3)
        tensors[pre + "mixer.conv1d.bias"] = normal(E)
        tensors[pre + "mixer.x_proj.weight"] = normal(R + 2 * N, E)
        tensors[pre + "mixer.dt_proj.weight"] = normal(E, R, std=0.3)
        dt = [math.exp(rng.uniform(math.log(1e-3), math.log(0.1))) for _ in range(E)]
        tensors[pre + "mixer.dt_proj.bias"] = const((E,), [x + math.log(-math.expm1(-x)) for x in dt])
        tensors[pre + "mixer.A_log"] = const((E, N), [math.log(n + 1) for _ in range(E) for n in range(N)])
        tensors[pre + "mixer.D"] = const((E,), [1.0] * E)
        tensors[pre + "mixer.out_proj.weight"] = normal(D, E)
    tensors["backbone.norm_f.weight"] = const((D,), [1.0] * D)
    if a.untied:
        tensors["lm_head.weight"] = normal(V, D)
    if a.drop:
        del tensors[a.drop]

    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, (shape, values) in tensors.items():
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


if __name__ == "__main__":
    main()
