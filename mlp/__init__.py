"""A multilayer perceptron written once against the Python array API.

The same hand-derived forward and backward passes run on NumPy, CuPy, JAX,
PyTorch and array-api-strict; pick one with ``backend=`` or ``$MLP_BACKEND``.

>>> import mlp
>>> model = mlp.MLP([64, 128, 10], loss="cross_entropy", seed=0)
>>> history = model.fit(x, y, epochs=30)  # Adam(1e-3), batches of 32  # doctest: +SKIP
"""

from . import activations, core, losses, metrics, optimizers, schedules
from ._version import __version__ as __version__
from .activations import register_activation
from .backends import available_backends, get_backend
from .callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    CSVLogger,
    EarlyStopping,
    EpochLogger,
    History,
    ModelCheckpoint,
    ProgressBar,
    ReduceLROnPlateau,
    metric_mode,
)
from .guard import ModelBusyError
from .io import ModelFileError
from .losses import Loss, register_loss
from .metrics import Metric, register_metric
from .model import MLP, load
from .network import Network
from .training import TrainingDivergedError, TrainState

__all__ = [
    "MLP",
    "Network",
    "History",
    "Callback",
    "EarlyStopping",
    "ModelCheckpoint",
    "BackupAndRestore",
    "CSVLogger",
    "ReduceLROnPlateau",
    "CallbackList",
    "ProgressBar",
    "EpochLogger",
    "metric_mode",
    "TrainState",
    "TrainingDivergedError",
    "ModelFileError",
    "ModelBusyError",
    "load",
    "Loss",
    "Metric",
    "register_activation",
    "register_loss",
    "register_metric",
    "activations",
    "core",
    "losses",
    "metrics",
    "optimizers",
    "schedules",
    "available_backends",
    "get_backend",
]
