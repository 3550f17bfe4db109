"""A trained network as a graph of layers, captured with torch.fx, so that one packing path serves
chains (LeNet-5, NIN, AlexNet) and graphs with residual additions (ResNet-18) alike.

Quantized layers, BatchNorm, pools and activations stay whole (leaf modules); what the network's
``forward`` does between them (``+``, ``torch.flatten``) becomes ``add`` and ``flatten`` nodes.
Anything else is refused here, at pack time, with the node's name.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from xnornet.errors import XnornetError
from xnornet.nn.layers import QuantMixin
from xnornet.nn.shift_batchnorm import ShiftBatchNorm

IDENTITY_MODULES = (nn.Identity, nn.Dropout)


@dataclass
class GraphNode:
    index: int
    name: str
    kind: str  # input | module | add | flatten | identity
    module: nn.Module | None = None
    inputs: list[int] = field(default_factory=list)
    users: list[int] = field(default_factory=list)


class _LayerTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, QuantMixin | ShiftBatchNorm) or super().is_leaf_module(m, qualname)


def _flatten_from_1(node: fx.Node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def capture(net: nn.Module) -> tuple[list[GraphNode], int]:
    """(nodes in execution order, index of the node whose value the network returns)."""
    try:
        graph = _LayerTracer().trace(net)
    except Exception as e:  # fx raises on data-dependent control flow and the like
        raise XnornetError(f"cannot pack {type(net).__name__}: its forward cannot be traced ({e})") from e
    modules = dict(net.named_modules())
    nodes: list[GraphNode] = []
    index: dict[fx.Node, int] = {}
    output = None
    for n in graph.nodes:
        args = [a for a in n.args if isinstance(a, fx.Node)]
        if n.op == "output":
            output = index[n.args[0]]
            continue
        if n.op == "placeholder":
            if nodes:
                raise XnornetError(f"cannot pack {type(net).__name__}: more than one input")
            node = GraphNode(len(nodes), n.name, "input")
        elif n.op == "call_module":
            m = modules[n.target]
            kind = "identity" if isinstance(m, IDENTITY_MODULES) else "module"
            node = GraphNode(len(nodes), n.target, kind, m, [index[args[0]]])
        elif (
            n.op == "call_function"
            and n.target in (operator.add, operator.iadd, torch.add)
            and len(args) == 2
        ):
            node = GraphNode(len(nodes), n.name, "add", None, [index[a] for a in args])
        elif n.op == "call_function" and n.target is torch.flatten and _flatten_from_1(n):
            node = GraphNode(len(nodes), n.name, "flatten", None, [index[args[0]]])
        else:
            what = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", n.target)
            raise XnornetError(
                f"cannot pack {type(net).__name__}: unsupported operation {what!r} at {n.name}"
            )
        index[n] = node.index
        nodes.append(node)
    for node in nodes:
        for i in node.inputs:
            nodes[i].users.append(node.index)
    if output is None:
        raise XnornetError(f"cannot pack {type(net).__name__}: its forward returns nothing")
    return nodes, output
