"""Which stored layers the engine runs as one step: a pure function of the architecture.

Where a layer is the only reader of what follows it, that follows into the layer's own pass:
BatchNorm → sign into the binary layer it feeds (which packs the sign itself), and after a conv,
a residual ``add`` whose other branch is already computed (added in the GEMM's output transform;
a full-precision 1×1 shortcut that the graph lists after the main branch is run first for that)
and a ReLU. When that BatchNorm → sign sits between two XNOR layers of one kind, the first emits
the second's packed input. An int8 conv pools a max pool that follows it on its int8 output.

Kept apart from the step builder (packed.engine) so that the decisions are tested as a table,
architecture in → plan out, without building a kernel object.
"""

from __future__ import annotations

from dataclasses import dataclass

from xnornet.packed.layer_spec import SIGN_OPS, LayerSpec, parse_architecture


@dataclass(frozen=True)
class PlannedStep:
    """One step of the engine: the spec it computes and what is fused into it."""

    name: str  # "<layer>:<kind>_<op>[+relu][+sign][+maxpool][+add]", or "<layer>:<op>"
    layer: int  # the spec the step computes
    inputs: tuple[int, ...]  # the spec values it reads (-1: the network input)
    output: int  # the spec whose value it produces
    sign_of: int | None = None  # the threshold/affine spec whose sign the layer packs itself
    sign_packed: bool = False  # ... which arrives packed, emitted by the step before
    relu: bool = False
    maxpool: int | None = None  # the maxpool spec an int8 conv pools on its int8 output
    emits: int | None = None  # the threshold/affine spec whose sign its output is, packed


def consumers(arch: list[LayerSpec]) -> dict[int, list[int]]:
    """Spec index (-1: the input) → the specs that read it."""
    users: dict[int, list[int]] = {i: [] for i in range(-1, len(arch))}
    for j, spec in enumerate(arch):
        for i in spec.inputs:
            users[i].append(j)
    return users


def weight_kind(spec: LayerSpec) -> str:
    """How a conv/linear runs: xnor (binary input, on the kernel), int8, bwn (α·sign(W) in
    float32) or float."""
    if spec.binary_input:
        return "xnor"
    if spec.int8:
        return "int8"
    return "bwn" if spec.binary else "float"


def weight_step_name(arch: list[LayerSpec], layer: int, suffix: str = "") -> str:
    return f"{layer}:{weight_kind(arch[layer])}_{arch[layer].op}{suffix}"


def fusion_plan(arch: list[LayerSpec] | list[dict], fuse_layers: bool = True) -> list[PlannedStep]:
    """The graph as steps in execution order (see the module's docstring); ``fuse_layers=False``
    keeps every binary layer's float output (no emitted signs), the rest as it is. ``arch``: a
    model's specs, or the file's JSON objects (parsed and checked here)."""
    arch = parse_architecture(arch)
    users = consumers(arch)

    def only_user(i: int | None) -> int | None:
        return users[i][0] if i is not None and len(users[i]) == 1 else None

    def emitted_sign(layer: int, out: int) -> int | None:
        """The BN/threshold whose sign the XNOR layer ``layer`` (output ``out``) can emit: read by
        nothing else, and feeding an XNOR layer of the same op without K/β scaling (which needs
        the float values' mean |·|)."""
        a = only_user(out)
        j = only_user(a)
        if not fuse_layers or not arch[layer].binary_input or a is None or j is None:
            return None
        if arch[a].op not in SIGN_OPS or arch[j].op != arch[layer].op:
            return None
        if not arch[j].binary_input or arch[j].scale_activations or arch[j].inputs != (a,):
            return None
        return a

    def early_shortcut(s: int, add: int, computed: set[int]) -> bool:
        """Whether ``s``, the other input of ``add``, is a full-precision conv not yet computed
        whose own inputs are, read by the add only: then it can run before the add's other branch."""
        spec = arch[s]
        return (
            s not in computed
            and spec.op == "conv"
            and not spec.binary_input
            and users[s] == [add]
            and all(i in computed for i in spec.inputs)
        )

    plan: list[PlannedStep] = []
    fused: set[int] = set()
    computed: set[int] = {-1}
    emitted: set[int] = set()  # values that are packed sign bits, emitted by the layer before
    for i, spec in enumerate(arch):
        if i in fused:
            continue
        op, inputs, j = spec.op, list(spec.inputs), only_user(i)
        sign_of, packed, layer = None, False, i
        if op in SIGN_OPS and j is not None and arch[j].binary_input:
            sign_of, packed, layer = i, inputs[0] in emitted, j  # the consumer packs BN's sign
            fused.add(j)
        if not arch[layer].has_weights:
            plan.append(PlannedStep(f"{i}:{op}", i, tuple(inputs), i))
            computed.add(i)
            continue
        out, k = layer, only_user(layer)
        if arch[layer].op == "conv" and k is not None and arch[k].op == "add":
            other = [o for o in arch[k].inputs if o != layer]
            if len(other) == 1 and early_shortcut(other[0], k, computed):
                # a full-precision shortcut that comes later in the graph runs first, so that
                # this conv adds it in its own output transform (ResNet's downsampling blocks)
                s = other[0]
                plan.append(PlannedStep(weight_step_name(arch, s), s, arch[s].inputs, s))
                computed.add(s)
                fused.add(s)
            if len(other) == 1 and other[0] in computed:
                inputs, out, k = [*inputs, other[0]], k, only_user(k)
                fused.add(out)
        relu = k is not None and arch[k].op == "relu"
        if relu:
            out = k
            fused.add(k)
        maxpool, k = None, only_user(out)
        if arch[layer].int8 and arch[layer].op == "conv" and len(inputs) == 1:
            if k is not None and arch[k].op == "maxpool":
                maxpool, out = k, k
                fused.add(k)
        emits = emitted_sign(layer, out)
        if emits is not None:
            emitted.add(out)
        suffix = ("+relu" * relu) + ("+sign" * (emits is not None)) + ("+maxpool" * (maxpool is not None))
        name = weight_step_name(arch, layer, suffix + "+add" * (len(inputs) == 2))
        plan.append(PlannedStep(name, layer, tuple(inputs), out, sign_of, packed, relu, maxpool, emits))
        computed.add(out)
    return plan
