"""Byte-reproducible safetensors files: the same tensors and metadata give the same bytes.

safetensors writes its ``__metadata__`` from a Rust HashMap, whose order is randomized in every
process, so two packs of one checkpoint differ in the header though not in content. Sorting the
metadata keys makes a `.packed` file a pure function of the model, which the determinism check
(two runs with one seed → byte-identical files) and content-addressed caches such as DVC's rely on.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path


def canonicalize_header(path: Path | str) -> None:
    """Rewrite the JSON header of the safetensors file ``path`` in place with its metadata keys
    sorted; tensor entries keep their order, so the data offsets stay valid."""
    path = Path(path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {}) | header
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n :])
