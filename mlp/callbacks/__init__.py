"""What `fit` calls between epochs: one protocol, `Callback`, and the callbacks built on it.

Everything that happens between epochs goes through this protocol: the
`History` that `fit` returns, the `ProgressBar` (``verbose=1``), the
`EpochLogger` (``verbose=2``), `EarlyStopping`, `ModelCheckpoint`,
`BackupAndRestore`, `CSVLogger`, `ReduceLROnPlateau` and any callback of yours.
`fit` drives them through a `CallbackList`, in this order (those that declare
``runs_last`` after the others; see `Callback` for what a callback may declare)::

    set_model(model); set_params(params); set_run(run)
    on_train_begin(logs)               # one raises: on_train_abandoned() on those begun
    for each epoch (numbered on over every fit of the model):
        on_epoch_begin(epoch, logs)
        ...one epoch of training...
        on_epoch_end(epoch, logs)      # logs: {"loss": ..., "val_loss": ...}
        on_epoch_logged(epoch, logs)   # (before those that run last see the epoch end)
    on_train_end(logs)                 # logs: {"completed": bool}

In a fit without validation data whose callbacks all declare ``epochs_at_once``
(`History` does), the epochs run in runs of several per call instead, and
``on_epochs_end(epochs, logs)`` after each run replaces the three per-epoch
hooks (``logs`` maps each name to one value per epoch of the range ``epochs``).

``logs`` in ``on_epoch_end`` maps names to floats: ``loss`` (the epoch's mean
training loss) and, with validation data, ``val_loss`` with ``val_accuracy``
(classification) or ``val_r2`` and ``val_mse`` (regression). ``params`` (also
``self.params``) holds the fit's settings, ``epochs`` (this fit's count) and
``initial_epoch`` (the first one's number) included, and ``metrics``: the
names the logs will hold.

One signal stops training: ``model.stop_training = True``. A truthy return
from ``on_epoch_end`` (``True``, ``np.True_``, ...) sets it. Weights a callback
sets (``self.model.set_weights(...)``) are the ones the next epoch trains from.
A plain function ``fn(epoch, logs)`` works as an ``on_epoch_end``.

Writing a callback::

    import mlp

    class StopBelow(mlp.Callback):
        \"\"\"Stop once the training loss is below ``threshold``.\"\"\"

        def __init__(self, threshold):
            self.threshold = threshold

        def on_epoch_end(self, epoch, logs):
            if logs["loss"] < self.threshold:
                self.model.stop_training = True   # or: return True

    model.fit(x, y, epochs=100, callbacks=[StopBelow(0.05)])

A callback that watches a metric builds on `MonitorCallback`, which learns the
metric's direction from `metric_mode`, which reads it from the metric
(`mlp.metrics`: ``accuracy`` and ``r2`` higher is better, ``loss`` and ``mse``
lower, a registered metric its own ``greater_is_better``).

One module per callback: `callback` (the protocol), `callback_list`,
`function_callback`, `history`, `progress_bar`, `epoch_logger`,
`monitor_callback` (the base of `early_stopping`, `model_checkpoint` and
`reduce_lr_on_plateau`), `backup_and_restore` and `csv_logger`; the private
`_files`, `_patterns` (file-name patterns) and
`_locks` (lock files) hold what several of them share.
"""

from ..metrics import metric_mode  # (re-exported: the direction is the metric's)
from ._patterns import path_pattern_fields as path_pattern_fields
from .backup_and_restore import BackupAndRestore
from .callback import Callback, Run
from .callback_list import CallbackList
from .callback_list import as_callbacks as as_callbacks
from .callback_list import callback_name as callback_name
from .callback_list import resumed_seed as resumed_seed
from .csv_logger import CSVLogger
from .early_stopping import EARLY_STOPPING_CONSTRAINTS as EARLY_STOPPING_CONSTRAINTS
from .early_stopping import EarlyStopping
from .epoch_logger import EpochLogger
from .function_callback import FunctionCallback
from .history import History
from .model_checkpoint import CHECKPOINT_CONSTRAINTS as CHECKPOINT_CONSTRAINTS
from .model_checkpoint import ModelCheckpoint
from .monitor_callback import MonitorCallback
from .progress_bar import ProgressBar
from .reduce_lr_on_plateau import PLATEAU_CONSTRAINTS as PLATEAU_CONSTRAINTS
from .reduce_lr_on_plateau import ReduceLROnPlateau

__all__ = [
    "Callback",
    "Run",
    "CallbackList",
    "FunctionCallback",
    "History",
    "ProgressBar",
    "EpochLogger",
    "MonitorCallback",
    "EarlyStopping",
    "ModelCheckpoint",
    "BackupAndRestore",
    "CSVLogger",
    "ReduceLROnPlateau",
    "metric_mode",
]
