"""The packed network as an MLflow pyfunc, so `mlflow models serve` runs the XNOR-popcount engine.

The model's only artifact is the packed file itself: what is served is byte for byte what the
evaluate stage measured, run by the same engine, never a float copy of the network. Its input is
what the engine takes, float32 NCHW images normalized as the datamodule normalizes them (for
MNIST: pixel/255, then (x − 0.1307) / 0.3081); its output names both the class and the logits,
so a client can check a prediction against `xnornet evaluate` without a second request.

The model is logged "from code": this file is copied into the model and run when it loads (its
``set_model`` line names the model), so loading unpickles nothing. It stays free of the training
stack (Lightning, Hydra), so a server starts in the time the engine takes to load.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mlflow.models import ModelSignature, set_model
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import Schema, TensorSpec

from xnornet.packed.engine import PackedEngine, load_engine

PACKED_ARTIFACT = "packed"  # the key of the packed file in the model's artifacts


class PackedNetwork(PythonModel):
    """Runs a packed file on the engine; the file arrives as the model's ``packed`` artifact."""

    def load_context(self, context: PythonModelContext) -> None:
        self.engine: PackedEngine = load_engine(context.artifacts[PACKED_ARTIFACT])

    def predict(self, model_input: np.ndarray, params: dict[str, Any] | None = None) -> dict:
        """(N, C, H, W) float32 images → {"label": (N,) int64, "logits": (N, classes) float32}.
        An ndarray hint is one MLflow 3 infers no schema from: the tensor signature logged with
        the model is what the scoring server checks a request against."""
        x = np.ascontiguousarray(model_input, dtype=np.float32)  # JSON numbers arrive as float64
        logits = self.engine(x)
        return {"label": logits.argmax(1).astype(np.int64), "logits": logits}


def signature(input_shape: tuple[int, ...], classes: int) -> ModelSignature:
    """Tensor specs the scoring server checks a request against before it reaches the engine."""
    inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))])
    outputs = Schema([TensorSpec(np.dtype(np.int64), (-1,), "label"),
                      TensorSpec(np.dtype(np.float32), (-1, classes), "logits")])  # fmt: skip
    return ModelSignature(inputs, outputs)


set_model(PackedNetwork())  # what MLflow takes from this file when it loads the model
