"""`ReduceLROnPlateau`: reduce the learning rate when a metric stops improving."""

from __future__ import annotations

from typing import Any

from ..params import InstanceOf, Options, Real, check, validate
from ..params import Integer as _Integer
from .callback import Logs
from .monitor_callback import MonitorCallback

PLATEAU_CONSTRAINTS = {
    "monitor": [InstanceOf(str, "a metric name such as 'val_loss'")],
    "factor": [Real(0, 1, closed="neither")],
    "patience": [_Integer(1)],
    "min_lr": [Real(0)],
    "min_delta": [Real(0)],
    "cooldown": [_Integer(0)],
    "mode": [Options("auto", "min", "max")],
    "verbose": [Options(0, 1)],
}


class ReduceLROnPlateau(MonitorCallback):
    """Reduce the learning rate when ``monitor`` stops improving.

    The rate is multiplied by ``factor`` when ``monitor`` has not improved by more
    than ``min_delta`` for ``patience`` epochs.

    The learning rate is changed through the learning-rate scale in the
    optimizer's state (`mlp.optimizers.with_learning_rate_scale`), not in the
    optimizer: on JAX nothing is recompiled, and the reduced rate is saved with
    the state. A schedule goes on, scaled.

    Parameters
    ----------
    monitor : str, default "val_loss"
        The metric to watch, a name in the epoch logs.
    factor : float in (0, 1), default 0.1
        The factor on the learning rate at each reduction.
    patience : int
        Epochs without improvement before a reduction (>= 1).
    min_lr : float
        The learning rate is never reduced below this.
    min_delta : float
        The smallest change in the better direction that counts (>= 0).
    cooldown : int
        Epochs to wait after a reduction before counting again.
    mode : {"auto", "min", "max"}
        Whether lower or higher ``monitor`` is better; ``"auto"`` asks
        `metric_mode`.
    verbose : {0, 1}
        1 prints a line at each reduction.

    Attributes
    ----------
    reductions : list of (epoch, learning_rate)
        The reductions made in this fit, with the new learning rate.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 min_lr: float = 0.0, min_delta: float = 0.0, cooldown: int = 0,
                 mode: str = "auto", verbose: int = 0) -> None:
        values = validate(PLATEAU_CONSTRAINTS, dict(
            monitor=monitor, factor=factor, patience=patience, min_lr=min_lr,
            min_delta=min_delta, cooldown=cooldown, mode=mode, verbose=verbose))
        self.monitor: str = values["monitor"]
        self.factor: float = values["factor"]
        self.patience: int = values["patience"]
        self.min_lr: float = values["min_lr"]
        self.min_delta = values["min_delta"]
        self.cooldown: int = values["cooldown"]
        self.mode = values["mode"]
        self.verbose: int = values["verbose"]
        self._check_mode()
        self.reductions: list[tuple[int, float]] = []

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Start counting afresh, and check the monitored metric and the optimizer.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.

        Raises
        ------
        ValueError
            The fit does not log ``monitor``, ``min_lr`` does not fit the model's
            dtype, or the optimizer has no learning rate.
        """
        from ..optimizers import learning_rate_scale
        from ..params import check_in_dtype

        self._check_logged(list(self.params.get("metrics") or [self.monitor]))
        check_in_dtype("ReduceLROnPlateau's min_lr", self.min_lr, self.model.dtype_name)
        try:
            learning_rate_scale(self.model.optimizer_state_)
        except ValueError as exc:
            raise ValueError(f"ReduceLROnPlateau needs an optimizer with a learning rate: "
                             f"{exc}") from None
        self.best: float | None = None
        self.wait, self.cooling, self.reductions = 0, 0, []

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Note an improvement, or reduce the learning rate after ``patience`` epochs without one.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        from ..optimizers import current_learning_rate, learning_rate_scale
        from ..optimizers import with_learning_rate_scale as with_scale

        value = logs[self._check_logged(list(logs))]
        if self.cooling > 0:
            self.cooling -= 1
            self.wait = 0
        if self._improves(value, self.best, self.monitor):
            self.best, self.wait = value, 0
            return
        if self.cooling > 0:
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        model = self.model
        state = model.optimizer_state_
        scale = learning_rate_scale(state)
        rate = current_learning_rate(model.optimizer_, state)
        if rate <= self.min_lr or scale == 0:
            return
        new_scale = max(scale * self.factor, scale * self.min_lr / rate)
        smallest = float(model.xp.finfo(model.dtype).smallest_normal)
        if new_scale < smallest or rate * new_scale / scale < smallest:
            return  # the dtype holds no smaller rate (it would become 0 or subnormal)
        model.optimizer_state_ = with_scale(state, new_scale)
        new_rate = current_learning_rate(model.optimizer_, model.optimizer_state_)
        self.reductions.append((epoch, new_rate))
        self.wait, self.cooling = 0, self.cooldown
        if self.verbose:
            print(f"epoch {epoch + 1}: ReduceLROnPlateau reduced the learning rate to "
                  f"{new_rate:.4g}", flush=True)

    def get_state(self) -> dict[str, Any]:
        """Give the best value, the counts and the reductions made, for a backup.

        Returns
        -------
        dict or None
            JSON-ready; None: nothing to back up.
        """
        return {"best": self.best, "wait": self.wait, "cooling": self.cooling,
                "reductions": [list(r) for r in self.reductions], "settings": self.settings()}

    state_rules = {"best": [None, Real()], "wait": [_Integer(0)], "cooling": [_Integer(0)],
                   "reductions": [InstanceOf(list, "a list of [epoch, learning rate] pairs")],
                   "settings": [InstanceOf(dict, "a JSON object")]}
    setting_names = ("monitor", "mode", "factor", "patience", "min_lr", "min_delta", "cooldown")

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back the counts and reductions of a resumed run.

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
        reductions = [_reduction(r) for r in saved["reductions"]]
        self.best, self.wait, self.cooling = saved["best"], saved["wait"], saved["cooling"]
        self.reductions = reductions

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, "
                f"patience={self.patience}, min_lr={self.min_lr})")


def _reduction(pair: object) -> tuple[int, float]:
    """A saved ``[epoch, learning rate]`` of `ReduceLROnPlateau`, checked."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise ValueError(f"ReduceLROnPlateau's saved state is damaged: a reduction {pair!r} "
                         "is not an [epoch, learning rate] pair")
    try:
        return (check("epoch", pair[0], [_Integer(0)]),
                check("learning rate", pair[1], [Real(0)]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ReduceLROnPlateau's saved state is damaged: {exc}") from None
