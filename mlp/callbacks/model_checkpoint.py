"""`ModelCheckpoint`: save the model during training."""

from __future__ import annotations

import os
from typing import Any

from ..params import Boolean, InstanceOf, Options, validate
from ..params import Integer as _Integer
from ._files import path_argument, saved_optimizer_check
from ._patterns import path_pattern_fields, sample_names
from .callback import Logs
from .monitor_callback import MonitorCallback

CHECKPOINT_CONSTRAINTS = {
    "monitor": [InstanceOf(str, "a metric name such as 'val_loss'")],
    "save_best_only": [Boolean()],
    "every_n_epochs": [_Integer(1)],
    "include_optimizer": [Boolean()],
    "mode": [Options("auto", "min", "max")],
}


class ModelCheckpoint(MonitorCallback):
    """Save the model during training, atomically (a crash never leaves half a file).

    Parameters
    ----------
    path : str or path-like
        The file (``.npz``, see `MLP.save`). Its file name may name the epoch and
        the logged values: ``"ckpt-{epoch:03d}.npz"``, ``"best-{val_loss:.3f}.npz"``;
        ``{epoch}`` counts from 1 (the epochs trained). Only plain field names
        with simple format specs (width, fill, alignment, sign, precision, type
        such as ``03d`` or ``.3f``) are taken, and only in the file name: the
        folder is named literally, and every name the pattern makes lies in it.
        The pattern, the names it makes and the folder (existing, writable) are
        checked when `fit` starts, before the first epoch.
    monitor : str
        The metric that decides the best epoch with ``save_best_only``.
    save_best_only : bool
        Save only when ``monitor`` improves on the best value so far (over
        every fit of the model, from its ``history_``).
    every_n_epochs : int
        Consider saving after every n-th epoch (counted over every fit).
    include_optimizer : bool
        Store everything `fit` needs to continue exactly (see `MLP.save`).
    mode : {"auto", "min", "max"}
        Whether lower or higher ``monitor`` is better; ``"auto"`` asks `metric_mode`.

    Attributes
    ----------
    best : float or None
        The best ``monitor`` value seen; ``saved``: the paths written, in order.
    """

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_loss",
                 save_best_only: bool = False, every_n_epochs: int = 1,
                 include_optimizer: bool = True, mode: str = "auto") -> None:
        self.path = path_argument(f"{type(self).__name__} path", path)
        values = validate(CHECKPOINT_CONSTRAINTS, dict(
            monitor=monitor, save_best_only=save_best_only, every_n_epochs=every_n_epochs,
            include_optimizer=include_optimizer, mode=mode))
        self.monitor: str = values["monitor"]
        self.mode = values["mode"]
        self.save_best_only = values["save_best_only"]
        self.every_n_epochs = values["every_n_epochs"]
        self.include_optimizer = values["include_optimizer"]
        self._check_mode()
        self.fields = set(path_pattern_fields(self.path, "ModelCheckpoint path"))
        self.best: float | None = None
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Check the path pattern, the monitored metric and the folder before the first epoch.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.

        Raises
        ------
        ValueError
            The pattern names a value the fit does not log, or ``monitor`` is not
            logged.
        OSError
            No file can be written where the pattern points.
        """
        from .. import io

        names = list(self.params.get("metrics") or [])
        unknown = sorted(self.fields - {"epoch", *names})
        if unknown:
            raise ValueError(f"ModelCheckpoint path {self.path!r} names {', '.join(unknown)}, "
                             f"which this fit does not log; it can name epoch and "
                             f"{', '.join(names)}")
        if self.save_best_only:
            self._check_logged(names)
        if self.include_optimizer:
            saved_optimizer_check(self, self.params.get("optimizer"))
        for sample in sample_names(self.path, names):
            io.check_writable(sample, "save the checkpoint", shown=self.path)
        self._started = False

    def _best_before(self, epoch: int) -> float | None:
        """The best ``monitor`` value of the model's epochs before ``epoch``."""
        history = self.model.history_
        best: float | None = None
        if history is not None and self.monitor in history.history:
            for e, value in zip(history.epoch, history.history[self.monitor], strict=True):
                if e < epoch and self._improves(value, best, self.monitor):
                    best = value
        return best

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Save the model every ``every_n_epochs`` epochs (or when it improved).

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        if not self._started:  # after a restore, the epochs before this one are known
            self._started, self.best = True, self._best_before(epoch)
        if (epoch + 1) % self.every_n_epochs:
            return
        if self.save_best_only:
            if not self._improves(logs[self.monitor], self.best, self.monitor):
                return
            self.best = logs[self.monitor]
        path = self.path.format(epoch=epoch + 1, **logs)
        self.model.save(path, include_optimizer=self.include_optimizer)
        self.saved.append(path)

    def __repr__(self) -> str:
        return (f"ModelCheckpoint({self.path!r}, monitor={self.monitor!r}, "
                f"save_best_only={self.save_best_only}, every_n_epochs={self.every_n_epochs})")
