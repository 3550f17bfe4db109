"""One inference layer of a packed model, parsed and checked once, then read as typed fields.

The file stores each layer as a JSON object (``{"op": "conv", "in": 64, ...}``, see
xnornet.packed.inference_form, which writes them). Read as dicts, every consumer (engine, fusion
plan, exporters, int8 calibration) would index strings and trust the types; a typo or a wrong type
in a file would surface deep inside a kernel call. ``LayerSpec.parse`` checks an object's fields
against what the engine needs once, at load (and when a model is built in memory), and
``to_json`` writes back exactly the object the format stores, so a re-saved file keeps its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

WEIGHT_OPS = ("conv", "linear")
SIGN_OPS = ("threshold", "affine")  # a BatchNorm form whose sign a binary layer can pack
CHANNEL_OPS = ("threshold", "scale", "affine")
POOL_OPS = ("maxpool", "avgpool")
PLAIN_OPS = ("relu", "global_avgpool", "flatten", "add")
OPS = WEIGHT_OPS + CHANNEL_OPS + POOL_OPS + PLAIN_OPS

LEAST = {  # op → integer field → its least value: the geometry the engine reads
    "conv": {"in": 1, "out": 1, "stride": 1, "padding": 0},
    "linear": {"in": 1, "out": 1},
    **{op: {"kernel": 1, "stride": 1, "padding": 0} for op in POOL_OPS},
    **{op: {"channels": 1} for op in CHANNEL_OPS},
}
FLAGS = ("binary", "binary_input", "bias", "scale_activations")  # the booleans of conv and linear


@dataclass(frozen=True)
class LayerSpec:
    """A layer as the engine reads it; fields an op does not have keep their defaults."""

    op: str
    inputs: tuple[int, ...]  # the spec indices it reads, -1 for the network input
    in_channels: int = 0  # conv / linear ("in" in the file)
    out: int = 0  # conv / linear
    kernel: tuple[int, int] = (1, 1)  # conv: (kh, kw)
    window: int = 0  # max/avg pool: the k of its k×k window ("kernel" in the file)
    stride: int = 1  # conv, pools
    padding: int = 0  # conv, pools
    channels: int = 0  # threshold, scale, affine
    binary: bool = False  # binary weights (bits + α)
    binary_input: bool = False  # sign of the input (XNOR)
    bias: bool = False
    scale_activations: bool = False  # XNOR-Net's K (conv) / β (linear)
    int8: bool = False  # a full-precision layer stored as int8 (xnornet.packed.int8_ops)

    @property
    def has_weights(self) -> bool:
        return self.op in WEIGHT_OPS

    @property
    def weight_shape(self) -> tuple[int, ...]:
        if self.op == "conv":
            return (self.out, self.in_channels, *self.kernel)
        return (self.out, self.in_channels)

    @classmethod
    def parse(cls, i: int, raw: dict) -> LayerSpec:
        """Layer ``i`` of a file; a ValueError names the layer and the field that is wrong (a digest
        proves only that nobody changed the file since it was written, not that the writer was right)."""
        if not isinstance(raw, dict):
            raise ValueError("the architecture must be a non-empty list of layer specs")
        op = raw.get("op")
        for field, least in LEAST.get(op, {}).items():
            value = raw.get(field)
            if type(value) is not int or value < least:
                raise ValueError(f"layer {i} ({op}): {field} must be an integer >= {least}, got {value!r}")
        kernel = raw.get("kernel")
        if op == "conv" and not (isinstance(kernel, list) and len(kernel) == 2
                                 and all(type(k) is int and k >= 1 for k in kernel)):  # fmt: skip
            raise ValueError(f"layer {i} (conv): kernel must be two integers >= 1, got {kernel!r}")
        for flag in FLAGS if op in WEIGHT_OPS else ():
            if type(raw.get(flag)) is not bool:
                raise ValueError(f"layer {i} ({op}): {flag} must be true or false, got {raw.get(flag)!r}")
        int8 = raw.get("int8", False)
        if "int8" in raw and (type(int8) is not bool or op not in WEIGHT_OPS or raw["binary"]):
            raise ValueError(f"layer {i} ({op}): int8 must be true or false on a full-precision conv/linear, "
                             f"got {int8!r}")  # fmt: skip
        if op not in OPS:
            raise ValueError(f"unknown layer op {op!r} at layer {i}")
        inputs, arity = raw.get("inputs"), 2 if op == "add" else 1
        if (not isinstance(inputs, list) or len(inputs) != arity
                or not all(type(j) is int and -1 <= j < i for j in inputs)):  # fmt: skip
            raise ValueError(f"layer {i} ({op}) must read {arity} earlier layer(s), not {inputs!r}")
        fields: dict = {"op": op, "inputs": tuple(inputs)}
        if op in WEIGHT_OPS:
            fields.update({flag: raw[flag] for flag in FLAGS})
            fields.update(in_channels=raw["in"], out=raw["out"], int8=int8)
        if op == "conv":
            fields.update(kernel=tuple(kernel), stride=raw["stride"], padding=raw["padding"])
        elif op in POOL_OPS:
            fields.update(window=raw["kernel"], stride=raw["stride"], padding=raw["padding"])
        elif op in CHANNEL_OPS:
            fields.update(channels=raw["channels"])
        return cls(**fields)

    def to_json(self) -> dict:
        """The object the file stores for this layer (``int8`` only where it is true, as written
        before int8 layers existed)."""
        out: dict = {"op": self.op, "inputs": list(self.inputs)}
        if self.op in WEIGHT_OPS:
            out.update({flag: getattr(self, flag) for flag in FLAGS})
            out.update({"in": self.in_channels, "out": self.out})
            if self.int8:
                out["int8"] = True
        if self.op == "conv":
            out.update(kernel=list(self.kernel), stride=self.stride, padding=self.padding)
        elif self.op in POOL_OPS:
            out.update(kernel=self.window, stride=self.stride, padding=self.padding)
        elif self.op in CHANNEL_OPS:
            out["channels"] = self.channels
        return out


def parse_architecture(arch: list) -> list[LayerSpec]:
    """Every layer of a file's architecture (already-parsed specs pass through)."""
    if not isinstance(arch, list) or not arch:
        raise ValueError("the architecture must be a non-empty list of layer specs")
    return [spec if isinstance(spec, LayerSpec) else LayerSpec.parse(i, spec) for i, spec in enumerate(arch)]
