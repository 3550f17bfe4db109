"""A packed file's layer objects read once as typed, checked specs (packed.layer_spec)."""

from __future__ import annotations

import pytest

from xnornet.packed.layer_spec import LayerSpec, parse_architecture

CONV = {"op": "conv", "in": 3, "out": 8, "kernel": [3, 5], "stride": 2, "padding": 1, "binary": True,
        "binary_input": True, "bias": False, "scale_activations": False, "inputs": [-1]}  # fmt: skip
LINEAR = {"op": "linear", "in": 8, "out": 4, "binary": False, "binary_input": False, "bias": True,
          "scale_activations": False, "int8": True, "inputs": [0]}  # fmt: skip
EVERY_OP = [
    CONV,
    {"op": "threshold", "channels": 8, "inputs": [-1]},
    {"op": "scale", "channels": 8, "inputs": [0]},
    {"op": "affine", "channels": 8, "inputs": [0]},
    {"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1, "inputs": [0]},
    {"op": "avgpool", "kernel": 2, "stride": 2, "padding": 0, "inputs": [0]},
    {"op": "relu", "inputs": [0]},
    {"op": "global_avgpool", "inputs": [0]},
    {"op": "flatten", "inputs": [0]},
    {"op": "add", "inputs": [0, -1]},
    LINEAR,
]


@pytest.mark.parametrize("raw", EVERY_OP, ids=lambda raw: raw["op"])
def test_every_op_reads_back_as_the_object_the_file_stores(raw):
    """to_json(parse(x)) == x: a model re-saved from what was loaded keeps its architecture bytes."""
    assert LayerSpec.parse(1, raw).to_json() == raw


def test_fields_are_typed_where_the_file_names_them_otherwise():
    conv, pool, linear = (LayerSpec.parse(1, raw) for raw in (CONV, EVERY_OP[4], LINEAR))
    assert (conv.in_channels, conv.out, conv.kernel, conv.weight_shape) == (3, 8, (3, 5), (8, 3, 3, 5))
    assert (pool.window, pool.stride, pool.padding, pool.has_weights) == (3, 2, 1, False)
    assert linear.int8 and linear.bias and linear.weight_shape == (4, 8) and linear.inputs == (0,)
    assert not conv.int8  # absent in the file: false


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"in": 0}, "layer 1 \\(conv\\): in must be an integer >= 1, got 0"),
        ({"stride": True}, "stride must be an integer >= 1, got True"),
        ({"kernel": [3]}, "kernel must be two integers >= 1"),
        ({"binary": 1}, "binary must be true or false, got 1"),
        ({"int8": True}, "int8 must be true or false on a full-precision conv/linear"),
        ({"op": "softmax"}, "unknown layer op 'softmax' at layer 1"),
        ({"inputs": [1]}, "must read 1 earlier layer"),
        ({"inputs": [-1, 0]}, "must read 1 earlier layer"),
    ],
)
def test_a_wrong_field_is_named(edit, message):
    with pytest.raises(ValueError, match=message):
        LayerSpec.parse(1, {**CONV, **edit})


def test_an_architecture_must_be_a_list_of_objects():
    for bad in ([], {}, [["op", "relu"]]):
        with pytest.raises(ValueError, match="non-empty list of layer specs"):
            parse_architecture(bad)
    specs = parse_architecture([CONV, {"op": "relu", "inputs": [0]}])
    assert parse_architecture(specs) == specs  # parsed specs pass through
