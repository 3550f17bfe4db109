"""The pack stage's packed file logged as an MLflow model and registered, so the pipeline's latest
network is one name away: ``models:/xnornet-lenet5-xnor@pipeline`` loads or serves it.

The model is logged into the pack stage's own run (MLflow 3 makes it a "logged model" whose source
run is that run), registered as ``xnornet-<net>-<variant>``, and the alias ``pipeline`` moved to
the new version: older versions stay in the registry, the alias always names what `dvc repro`
packed last. Logging goes through the run's outage record like every other call of the run: a
store that stops answering costs no output, and the stage's warning line names the model.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import Model
from omegaconf import DictConfig

from xnornet import serving
from xnornet.builders import build_datamodule
from xnornet.packed.engine import load_engine
from xnornet.serving import PACKED_ARTIFACT, signature
from xnornet.tracking import StageRun

ALIAS = "pipeline"  # the version the pipeline packed last
EXAMPLE_IMAGES = 2


def registered_name(net_target: str, variant: str) -> str:
    """``xnornet.nn.models.LeNet5`` and ``xnor`` → ``xnornet-lenet5-xnor``.

    Examples:
        >>> registered_name("xnornet.nn.models.LeNet5", "xnor")
        'xnornet-lenet5-xnor'
    """
    return f"xnornet-{net_target.rsplit('.', 1)[-1].lower()}-{variant}"


def example_images(cfg: DictConfig) -> np.ndarray:
    """The first test images, normalized as in training: what a client sends to the server."""
    datamodule = build_datamodule(cfg)
    datamodule.setup("test")
    return np.ascontiguousarray(datamodule.test_set.x[:EXAMPLE_IMAGES].numpy(), dtype=np.float32)


def requirements() -> list[str]:
    """Pinned by hand: MLflow would otherwise load the model in a subprocess to guess them. The
    engine's compiled kernel comes with xnornet itself, which no package index serves, so the model
    runs where xnornet is installed (``--env-manager local``)."""
    return [f"{name}=={version(name)}" for name in ("xnornet", "mlflow", "numpy", "torch")]


def log_packed_model(run: StageRun, cfg: DictConfig, packed: Path) -> str:
    """Log ``packed`` as a pyfunc model of ``run``, register it and point the alias at the new
    version; returns the name it is registered under (or would have been, with the store down)."""
    name = registered_name(cfg.net._target_, cfg.model.name)
    example = example_images(cfg)
    classes = load_engine(packed)(example).shape[1]

    def log_and_register() -> None:
        # the logged model created here, in the run's experiment: left to Model.log it would go to
        # the active experiment, and mlflow.set_experiment exports it to every later subprocess
        stage = run.client.get_run(run.run_id)
        model = run.client.create_logged_model(
            stage.info.experiment_id, name=name, source_run_id=run.run_id, params=stage.data.params
        )
        info = Model.log(
            None,  # artifact_path: deprecated for name
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run.run_id,
            model_id=model.model_id,
            python_model=serving.__file__,  # logged from code: nothing pickled
            artifacts={PACKED_ARTIFACT: str(packed)},
            signature=signature(example.shape[1:], classes),
            input_example=example,
            pip_requirements=requirements(),
            registered_model_name=name,
        )
        run.client.set_registered_model_alias(name, ALIAS, info.registered_model_version)

    run.outage.call("other", [f"the model {name}@{ALIAS}"], log_and_register)
    return name
