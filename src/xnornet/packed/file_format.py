"""The packed model file: binary weights as uint64 bit words, everything else float32.

A ``.packed`` file is a safetensors file (a validated JSON header, raw little-endian tensors,
no pickle, so loading never runs code from the file). Its metadata holds the format version,
the architecture (one spec per inference layer, see xnornet.packed.inference_form), the info
(variant, network, input shape) and a SHA-256 over architecture, info and every tensor, checked
on load, so a truncated, corrupted or edited file is refused.

Each layer spec is a JSON object, read as a checked LayerSpec (xnornet.packed.layer_spec).
Tensor names: ``<layer index>.<field>``; binary layers store ``weight_bits`` and ``alpha``
(mean |W| per output filter), the rest their float32 parameters and BatchNorm statistics. A
full-precision layer packed in int8 (spec ``int8: true``, optional, so files without it read as
before) stores int8 weights and their quint8/qint8 grids instead of ``weight``
(xnornet.packed.int8_ops).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from xnornet.errors import XnornetError
from xnornet.files import atomic_path
from xnornet.kernels import unpack_signs
from xnornet.kernels.ops import n_words
from xnornet.packed.canonical import canonicalize_header
from xnornet.packed.layer_spec import CHANNEL_OPS, LayerSpec, parse_architecture

FORMAT = "xnornet-packed"
VERSION = 2  # 2: a graph (each layer names its inputs); the digest covers the info metadata too


def unpack_weight_signs(bits: np.ndarray, spec: LayerSpec, name: str) -> np.ndarray:
    """The ±1 weights of a binary layer from its dense bit stream; padding bits must be 0."""
    shape = spec.weight_shape
    count = int(np.prod(shape))
    signs = unpack_signs(bits, 64 * len(bits))
    if np.any(signs[count:] != 1):
        raise XnornetError(f"{name}: nonzero padding bits after the {count} weight bits")
    return signs[:count].reshape(shape)


def digest(architecture: str, info: str, tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over the architecture and info JSON and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(f"{len(architecture)}|{architecture}|{len(info)}|{info}".encode())
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype.str}|{t.shape}".encode())
        h.update(np.ascontiguousarray(t).tobytes())
    return h.hexdigest()


@dataclass
class PackedModel:
    """A packed model in memory. ``architecture`` may be given as the file's JSON objects (as
    inference_form builds them): they are parsed into LayerSpecs here, so every model a consumer
    sees has checked, typed layers."""

    architecture: list[LayerSpec]
    tensors: dict[str, np.ndarray]
    info: dict  # variant, net, input_shape, …

    def __post_init__(self) -> None:
        self.architecture = parse_architecture(self.architecture)


def check_finite(tensors: dict[str, np.ndarray], where: str) -> None:
    """Every float tensor finite: a NaN or inf weight, scale or threshold makes every prediction
    that reads it meaningless, so it is refused by name rather than run."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype.kind == "f" and not np.isfinite(t).all():
            bad = int(t.size - np.isfinite(t).sum())
            raise XnornetError(f"{where}: {name} has {bad} NaN or infinite values; expected finite numbers")


def save_packed(model: PackedModel, path: Path) -> None:
    check_finite(model.tensors, f"{path} (packing)")
    check_int8_scales(model.architecture, model.tensors, f"{path} (packing)")
    arch = json.dumps([spec.to_json() for spec in model.architecture], sort_keys=True)
    info = json.dumps(model.info, sort_keys=True)
    metadata = {"format": FORMAT, "version": str(VERSION), "architecture": arch, "info": info,
                "sha256": digest(arch, info, model.tensors)}  # fmt: skip
    with atomic_path(path) as tmp:
        save_file(model.tensors, str(tmp), metadata=metadata)
        canonicalize_header(tmp)  # safetensors orders the metadata at random: same model, same bytes


SCALES = ("weight_scale", "input_scale", "output_scale")  # an int8 layer's grids: each step > 0


def expected_tensors(arch: list[LayerSpec]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Name → (shape, dtype) that each layer spec requires: the file must hold exactly these."""
    want: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    f32, u64 = np.dtype(np.float32), np.dtype(np.uint64)
    for i, spec in enumerate(arch):
        if spec.has_weights:
            shape = spec.weight_shape
            if spec.binary:
                want[f"{i}.weight_bits"] = ((n_words(int(np.prod(shape))),), u64)
                want[f"{i}.alpha"] = ((shape[0],), f32)
            elif spec.int8:
                u8, one = np.dtype(np.uint8), (1,)
                want[f"{i}.weight_int8"] = (shape, np.dtype(np.int8))
                want[f"{i}.weight_scale"] = ((shape[0],), f32)
                for side in ("input", "output"):  # one quint8 grid each: scale and zero point
                    want[f"{i}.{side}_scale"], want[f"{i}.{side}_zero_point"] = (one, f32), (one, u8)
            else:
                want[f"{i}.weight"] = (shape, f32)
            if spec.bias:
                want[f"{i}.bias"] = ((shape[0],), f32)
        elif spec.op in CHANNEL_OPS:
            fields = {"threshold": ["threshold"], "scale": ["scale"], "affine": ["scale", "shift"]}[spec.op]
            for field in fields:
                want[f"{i}.{field}"] = ((spec.channels,), f32)
    return want


def load_packed(path: Path | str) -> PackedModel:
    """Read and verify a packed file; every problem is one XnornetError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise XnornetError(f"{path}: packed model not found (run `dvc repro pack`)")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, MemoryError) as e:
        raise XnornetError(f"{path}: not a readable packed model (truncated or corrupt: {e})") from e
    if meta.get("format") != FORMAT:
        raise XnornetError(f"{path}: not an {FORMAT} file (format={meta.get('format')!r})")
    if meta.get("version") != str(VERSION):
        raise XnornetError(f"{path}: format version {meta.get('version')!r}, this xnornet reads {VERSION}")
    arch_json = meta.get("architecture", "")
    info_json = meta.get("info", "{}")
    if digest(arch_json, info_json, tensors) != meta.get("sha256"):
        raise XnornetError(f"{path}: SHA-256 mismatch: the file is corrupted or was modified")
    try:
        arch, info = parse_architecture(json.loads(arch_json)), json.loads(info_json)
        want = expected_tensors(arch)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise XnornetError(f"{path}: invalid architecture metadata ({e})") from e
    if set(want) != set(tensors):
        raise XnornetError(
            f"{path}: tensors {sorted(set(tensors) ^ set(want))} do not match the architecture"
        )
    for name, (shape, dtype) in want.items():
        if tensors[name].shape != shape or tensors[name].dtype != dtype:
            raise XnornetError(
                f"{path}: {name} is {tensors[name].dtype}{list(tensors[name].shape)}, "
                f"the architecture needs {dtype}{list(shape)}"
            )
    for i, spec in enumerate(arch):
        if spec.has_weights and spec.binary:
            unpack_weight_signs(tensors[f"{i}.weight_bits"], spec, f"{path}: layer {i}")
    check_finite(tensors, str(path))
    check_int8_scales(arch, tensors, str(path))
    return PackedModel(arch, tensors, info)


def check_int8_scales(arch: list[LayerSpec], tensors: dict[str, np.ndarray], where: str) -> None:
    """Every int8 grid step positive: a zero or negative scale would divide by zero or flip every
    value when torch quantizes, and torch does not check it."""
    for i, spec in enumerate(arch):
        for field in SCALES if spec.int8 else ():
            t = tensors[f"{i}.{field}"]
            if not (t > 0).all():
                raise XnornetError(f"{where}: {i}.{field} has {int((t <= 0).sum())} values <= 0; "
                                   "expected positive int8 scales")  # fmt: skip
