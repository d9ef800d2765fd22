"""What `fit` returns and what it calls back: `History`, `Callback`, `EarlyStopping`.

A callback is a `Callback` subclass or a plain function ``fn(epoch, logs)``.
``logs`` maps names to floats: ``loss`` and, with validation data,
``val_loss`` and ``val_accuracy`` (classification) or ``val_r2`` (regression).
A callback stops training by returning True from ``on_epoch_end`` or by setting
``model.stop_training = True``.
"""

from __future__ import annotations

import math


class History:
    """Per-epoch metrics of one `fit` call.

    Attributes
    ----------
    history : dict[str, list[float]]
        ``"loss"`` (mean training loss of each epoch, as seen during the epoch's
        steps) and, with validation data, ``"val_loss"`` and the validation metric.
    epoch : list[int]
        The epochs run, counted from 0.
    params : dict
        The fit's settings (epochs, batch_size, optimizer, ...).
    stopped_epoch : int | None
        The epoch at which early stopping or a callback stopped training.
    """

    def __init__(self, params=None):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params = dict(params or {})
        self.stopped_epoch: int | None = None

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class Callback:
    """Base class: override the hooks you need. ``self.model`` is set before training."""

    model = None

    def set_model(self, model) -> None:
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_end(self, epoch: int, logs: dict[str, float]):
        """Return True to stop training after this epoch."""

    def on_train_end(self, logs=None):
        """``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C)."""


class FunctionCallback(Callback):
    """Wraps a plain ``fn(epoch, logs)``."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, epoch, logs):
        return self.fn(epoch, logs)


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs, then restore the weights of the best epoch.

    Parameters
    ----------
    monitor : str
        A key of the logs, ``"val_loss"`` by default (falls back to ``"loss"``
        when there is no validation data). Lower is better.
    patience : int
        Epochs without improvement before stopping (>= 1).
    min_delta : float
        The smallest decrease that counts as an improvement (>= 0).
    restore_best_weights : bool
        Put the best epoch's weights back when training ends.
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, restore_best_weights=True):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not isinstance(min_delta, (int, float)) or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best_weights = restore_best_weights

    def on_train_begin(self, logs=None):
        self.best = math.inf
        self.best_epoch = None
        self.best_params = None
        self.wait = 0
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs):
        key = self.monitor if self.monitor in logs else "loss"
        value = logs[key]
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_params = self.model.params  # immutable arrays: a reference suffices
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self, logs=None):
        # A fit that raised (divergence, Ctrl-C) keeps the weights it promised instead.
        completed = (logs or {}).get("completed", True)
        if completed and self.restore_best_weights and self.best_params is not None:
            self.model.params = self.best_params
