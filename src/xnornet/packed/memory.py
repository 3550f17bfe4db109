"""Where a packed model's bytes go, layer by layer: the 1-bit weights against float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from xnornet.files import atomic_path, write_csv
from xnornet.packed.file_format import PackedModel


def memory_table(model: PackedModel) -> list[dict]:
    """Per inference layer: 1-bit and 32-bit parameter counts and bytes, packed vs all float32."""
    rows = []
    for i, spec in enumerate(model.architecture):
        fields = {k.split(".", 1)[1]: v for k, v in model.tensors.items() if k.split(".", 1)[0] == str(i)}
        if not fields:
            continue
        bits = fields.pop("weight_bits", None)
        n_binary = int(np.prod(spec.weight_shape)) if bits is not None else 0
        n_float = int(sum(v.size for v in fields.values()))  # float32, or int8 with its grids
        packed = (bits.nbytes if bits is not None else 0) + int(sum(v.nbytes for v in fields.values()))
        kind = " (binary)" if bits is not None else " (int8)" if spec.int8 else ""
        rows.append({
            "layer": i, "op": spec.op + kind,
            "params_1bit": n_binary, "params_32bit": n_float, "packed_bytes": packed,
            "float32_bytes": 4 * (n_binary + n_float),
        })  # fmt: skip
    total = {
        k: sum(r[k] for r in rows) for k in ("params_1bit", "params_32bit", "packed_bytes", "float32_bytes")
    }
    rows.append({"layer": "total", "op": "", **total})
    return rows


def markdown_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def float_state_bytes(net: torch.nn.Module) -> int:
    """Bytes of the trained network's floating-point state (weights and BatchNorm statistics) as
    float32: what the packed file is compared with."""
    return sum(4 * t.numel() for t in net.state_dict().values() if t.is_floating_point())


def memory_metrics(rows: list[dict], model: PackedModel, net: torch.nn.Module, path: Path) -> dict:
    """The file's size against the trained network's float32 state, and the binary weights' own
    ratio (32 when every binarized weight is one bit)."""
    binary_bits = sum(v.nbytes for k, v in model.tensors.items() if k.endswith("weight_bits"))
    float_bytes = float_state_bytes(net)
    size = path.stat().st_size
    return {
        "packed_bytes": size,
        "float_bytes": float_bytes,
        "compression": round(float_bytes / size, 2),
        "binary_weight_compression": round(4 * rows[-1]["params_1bit"] / binary_bits, 2),
    }


def write_memory_reports(rows: list[dict], stem: Path) -> list[Path]:
    """The per-layer table as CSV (for tools) and markdown (for people)."""
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    write_csv(rows, paths[0])
    with atomic_path(paths[1]) as tmp:
        tmp.write_text(markdown_table(rows))
    return paths
