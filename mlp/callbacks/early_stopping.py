"""`EarlyStopping`: stop when a metric stops improving, with the best weights."""

from __future__ import annotations

from typing import Any

from .._typing import Array
from ..params import Boolean, InstanceOf, Options, Real, validate
from ..params import Integer as _Integer
from .callback import Logs
from .monitor_callback import MonitorCallback

EARLY_STOPPING_CONSTRAINTS = {
    "monitor": [None, InstanceOf(str, "a metric name such as 'val_loss'")],
    "patience": [_Integer(1)],
    "min_delta": [Real(0)],
    "restore_best_weights": [Boolean()],
    "mode": [Options("auto", "min", "max")],
}


class EarlyStopping(MonitorCallback):
    """Stop training once ``monitor`` stops improving, and restore the best epoch's weights.

    Training stops when ``monitor`` has not improved by more than ``min_delta``
    for ``patience`` epochs.

    Parameters
    ----------
    monitor : str or None
        The metric to watch: a name in the epoch logs (``"val_loss"``,
        ``"val_accuracy"``, ``"loss"``...). None (default) watches ``val_loss``
        with validation data and ``loss`` without. A name the logs do not hold
        is an error, raised before the first epoch where `fit` can tell.
    patience : int
        Epochs without improvement before stopping (>= 1).
    min_delta : float
        The smallest change in the better direction that counts as an improvement (>= 0).
    restore_best_weights : bool
        Put the best epoch's weights back when training ends normally.
    mode : {"auto", "min", "max"}
        Whether lower (``"min"``) or higher (``"max"``) is better; ``"auto"``
        asks `metric_mode` (accuracy and r2 up, losses and mse down).

    Attributes
    ----------
    best : float
        The best value seen; ``best_epoch``: its epoch; ``stopped_epoch``: the
        epoch after which it stopped (None if it did not).

    Examples
    --------
    >>> import numpy as np, mlp
    >>> x = np.random.default_rng(0).normal(size=(40, 3)); y = np.arange(40) % 2
    >>> model = mlp.MLP([3, 8, 2], loss="cross_entropy", backend="numpy", seed=0)
    >>> stop = mlp.EarlyStopping(monitor="loss", patience=2, min_delta=10.0)
    >>> history = model.fit(x, y, epochs=50, callbacks=[stop])
    >>> stop.stopped_epoch, len(history.epoch)   # no epoch improved by 10: stopped after 1 + 2
    (2, 3)
    """

    def __init__(self, monitor: str | None = None, patience: int = 10, min_delta: float = 0.0,
                 restore_best_weights: bool = True, mode: str = "auto") -> None:
        values = validate(EARLY_STOPPING_CONSTRAINTS, dict(
            monitor=monitor, patience=patience, min_delta=min_delta,
            restore_best_weights=restore_best_weights, mode=mode))
        self.monitor = values["monitor"]
        self.patience = values["patience"]
        self.min_delta = values["min_delta"]
        self.restore_best_weights = values["restore_best_weights"]
        self.mode = values["mode"]
        self._check_mode()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start counting afresh, and check that the fit logs ``monitor``.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.

        Raises
        ------
        ValueError
            The fit does not log ``monitor``.
        """
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_params: list[tuple[Array, Array]] | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        names = self.params.get("metrics")
        if names is not None:
            self._check_logged(list(names))

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool:
        """Note an improvement, or stop after ``patience`` epochs without one.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).

        Returns
        -------
        bool or None
            A truthy value stops training (``model.stop_training``).

        Raises
        ------
        ValueError
            The logs do not hold ``monitor``.
        """
        key = self._check_logged(list(logs))
        value = logs[key]
        if self._improves(value, self.best, key):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_params = self.model.params  # immutable arrays: a reference suffices
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def get_state(self) -> dict[str, Any]:
        """Give the best value, its epoch and the epochs waited, for a backup.

        Returns
        -------
        dict or None
            JSON-ready; None: nothing to back up.
        """
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "settings": self.settings()}

    state_rules = {"best": [None, Real()], "best_epoch": [None, _Integer(0)],
                   "wait": [_Integer(0)], "settings": [InstanceOf(dict, "a JSON object")]}
    setting_names = ("monitor", "mode", "patience", "min_delta")

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back the counts of a resumed run.

        Parameters
        ----------
        state : dict
            What `get_state` gave.

        Raises
        ------
        ValueError
            ``state`` is damaged or was made with other settings.
        """
        saved = self._saved(state)
        self.best, self.best_epoch, self.wait = saved["best"], saved["best_epoch"], saved["wait"]
        # the restored weights are the best ones if the best epoch is the last one trained
        restored = self.model.epochs_trained_ - 1
        self.best_params = self.model.params if self.best_epoch == restored else None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        # A fit that raised (divergence, Ctrl-C) keeps the weights it promised instead.
        """Put the best epoch's weights back (``restore_best_weights``) when the fit completed.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """
        completed = (logs or {}).get("completed", True)
        if completed and self.restore_best_weights and self.best_params is not None:
            self.model.params = self.best_params

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, mode={self.mode!r})")
