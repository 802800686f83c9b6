"""Checks that a model written by `memmamba import-mamba` holds the Mamba
checkpoint's weights, value for value: every tensor of the checkpoint
(backbone.X) must appear as X in the model (conv1d [E,1,K] as [E,K]), and the
model's extra tensors must be the memory parts only.

    check_import.py CHECKPOINT MODEL
"""
import json
import struct
import sys


def read(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        assert t["dtype"] == "F32", f"{path}: {name} is {t['dtype']}"
        a, b = t["data_offsets"]
        blob = data[8 + n + a:8 + n + b]
        out[name] = (t["shape"], struct.unpack(f"<{len(blob) // 4}f", blob))
    return out, meta


def main():
    ckpt, _ = read(sys.argv[1])
    model, meta = read(sys.argv[2])
    checked, mapped = 0, set()
    for name, (shape, values) in ckpt.items():
        ours = name[len("backbone."):] if name.startswith("backbone.") else name
        ours = ours.replace("embeddings.weight", "embedding.weight")
        mapped.add(ours)
        assert ours in model, f"{ours} missing from the imported model"
        mshape, mvalues = model[ours]
        assert [d for d in shape if d != 1] == [d for d in mshape if d != 1], f"{ours}: shape {mshape} vs {shape}"
        assert mvalues == values, f"{ours}: values differ"
        checked += 1
    memory = ("note.", "tok.", "lay.")
    for name in model:
        if name not in mapped:
            assert any(m in name for m in memory), f"unexpected tensor {name}"
    print(f"{checked} Mamba tensors equal; metadata keys: {sorted(meta)}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"check_import: {e}", file=sys.stderr)
        sys.exit(1)
