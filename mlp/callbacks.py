"""What `fit` calls between epochs: one protocol, `Callback`, and the callbacks built on it.

Everything that happens between epochs goes through this protocol: the
`History` that `fit` returns, the `ProgressBar` (``verbose=1``), the
`EpochLogger` (``verbose=2``), `EarlyStopping` and any callback of yours.
`fit` drives them through a `CallbackList`, in this order::

    set_model(model); set_params(params)
    on_train_begin(logs)
    for each epoch:
        on_epoch_begin(epoch, logs)
        ...one epoch of training...
        on_epoch_end(epoch, logs)      # logs: {"loss": ..., "val_loss": ...}
    on_train_end(logs)                 # logs: {"completed": bool}

``logs`` in ``on_epoch_end`` maps names to floats: ``loss`` (the epoch's mean
training loss) and, with validation data, ``val_loss`` with ``val_accuracy``
(classification) or ``val_r2`` and ``val_mse`` (regression). ``params`` (also
``self.params``) holds the fit's settings, ``epochs`` included, and
``metrics``: the names the logs will hold.

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

A callback that watches a metric learns its direction from `metric_mode`
(``accuracy`` and ``r2``: higher is better; ``loss`` and ``mse``: lower).
"""

from __future__ import annotations

import math
import time

from .params import Boolean, InstanceOf, Options, Real, validate
from .params import Integer as _Integer

#: Whether a larger value of a metric is better ("max") or worse ("min"); the
#: validation metrics are these names with a ``val_`` prefix.
METRIC_MODES = {"loss": "min", "mse": "min", "accuracy": "max", "r2": "max"}


def metric_mode(name: str) -> str:
    """``"max"`` if a larger ``name`` is better (``accuracy``, ``r2``, and their
    ``val_`` forms), ``"min"`` if a smaller one is (``loss``, ``mse``).

    Raises ValueError for any other name, listing the known ones.
    """
    base = name[4:] if isinstance(name, str) and name.startswith("val_") else name
    if base not in METRIC_MODES:
        known = ", ".join(f"{m}, val_{m}" for m in METRIC_MODES)
        raise ValueError(f"unknown metric {name!r}; known metrics: {known} (or pass "
                         f"mode='min' or mode='max' to watch a metric of your own)")
    return METRIC_MODES[base]


class Callback:
    """Base class of everything `fit` calls between epochs: override the hooks you need.

    Attributes
    ----------
    model : MLP
        The model being trained (set by `set_model` before training). Its
        ``params`` are the weights after the latest epoch; ``model.train_state_``
        holds the training state (optimizer state, epochs completed).
    params : dict
        The fit's settings: ``epochs``, ``batch_size``, ``optimizer``, ...,
        and ``metrics``, the names the epoch logs hold.
    """

    model = None
    params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None):
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs=None):
        """Before epoch ``epoch`` (counted from 0)."""

    def on_epoch_end(self, epoch: int, logs: dict):
        """After epoch ``epoch``; a truthy return stops training (``model.stop_training``)."""

    def on_train_end(self, logs=None):
        """After the last epoch; ``logs["completed"]`` is False when `fit` raised
        (divergence, Ctrl-C)."""


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs)`` called as ``on_epoch_end``."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, epoch, logs):
        return self.fn(epoch, logs)

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.fn, '__name__', self.fn)!r})"


_WHAT = "a list of Callback objects or functions fn(epoch, logs)"


def as_callbacks(callbacks) -> list[Callback]:
    """``callbacks`` (None or a list of `Callback` objects and functions) as Callbacks.

    Raises TypeError for anything else, e.g. one callback not in a list.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        raise TypeError(f"callbacks must be {_WHAT}, got one {type(callbacks).__name__}; "
                        f"put it in a list: callbacks=[...]")
    validate({"callbacks": [InstanceOf((list, tuple), _WHAT)]}, {"callbacks": callbacks})
    out = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(FunctionCallback(cb))
        else:
            raise TypeError("callbacks must be Callback objects or functions fn(epoch, logs), "
                            f"got {type(cb).__name__} {cb!r}"[:200])
    return out


class CallbackList(Callback):
    """Drives a list of callbacks; `fit` calls only this.

    ``on_epoch_end`` calls every callback (all see every epoch, even when an
    earlier one asked to stop) and sets ``model.stop_training`` if any returned
    a truthy value.
    """

    def __init__(self, callbacks=(), model=None, params=None):
        self.callbacks = list(callbacks)
        self.set_params(dict(params or {}))
        if model is not None:
            self.set_model(model)

    def append(self, callback: Callback) -> None:
        callback.set_model(self.model)
        callback.set_params(self.params)
        self.callbacks.append(callback)

    def set_model(self, model) -> None:
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict) -> None:
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs):
        stop = False
        for cb in self.callbacks:
            stop = bool(cb.on_epoch_end(epoch, logs)) or stop
        if stop:
            self.model.stop_training = True
        return stop

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)


class History(Callback):
    """Per-epoch metrics of one `fit` call (what `fit` returns; also ``model.history_``).

    Attributes
    ----------
    history : dict[str, list[float]]
        ``"loss"`` (mean training loss of each epoch, as seen during the epoch's
        steps) and, with validation data, ``"val_loss"`` and the validation metrics.
    epoch : list[int]
        The epochs run, counted from 0.
    params : dict
        The fit's settings (epochs, batch_size, optimizer, ...).
    stopped_epoch : int | None
        The epoch after which a callback or early stopping stopped training.
    """

    def __init__(self, params=None):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params = dict(params or {})
        self.stopped_epoch: int | None = None

    def set_params(self, params: dict) -> None:
        self.params = params

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)

    def on_epoch_end(self, epoch, logs):
        self.append(epoch, logs)

    def on_train_end(self, logs=None):
        if (logs or {}).get("completed", True) and getattr(self.model, "stop_training", False):
            self.stopped_epoch = self.epoch[-1] if self.epoch else None

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class ProgressBar(Callback):
    """A tqdm bar over the epochs with the latest metrics (``fit(verbose=1)``)."""

    bar = None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params.get("epochs"), unit="epoch", desc="fit", leave=True)

    def on_epoch_end(self, epoch, logs):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()


class EpochLogger(Callback):
    """One line per epoch on stdout (``fit(verbose=2)``)::

        epoch 3/10 - loss: 0.4123 - val_loss: 0.5011 - val_accuracy: 0.8 - 0.012s
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        seconds = time.perf_counter() - self.start
        items = " - ".join(f"{k}: {v:.6g}" for k, v in logs.items())
        print(f"epoch {epoch + 1}/{self.params.get('epochs', '?')} - {items} - {seconds:.3f}s",
              flush=True)


EARLY_STOPPING_CONSTRAINTS = {
    "monitor": [None, InstanceOf(str, "a metric name such as 'val_loss'")],
    "patience": [_Integer(1)],
    "min_delta": [Real(0)],
    "restore_best_weights": [Boolean()],
    "mode": [Options("auto", "min", "max")],
}


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs, then restore the weights of the best epoch.

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
    """

    def __init__(self, monitor=None, patience=10, min_delta=0.0, restore_best_weights=True,
                 mode="auto"):
        values = validate(EARLY_STOPPING_CONSTRAINTS, dict(
            monitor=monitor, patience=patience, min_delta=min_delta,
            restore_best_weights=restore_best_weights, mode=mode))
        self.monitor = values["monitor"]
        self.patience = values["patience"]
        self.min_delta = values["min_delta"]
        self.restore_best_weights = values["restore_best_weights"]
        self.mode = values["mode"]
        if self.mode == "auto" and self.monitor is not None:
            metric_mode(self.monitor)  # an unknown name (a typo) fails here, at once

    def _key(self, names):
        if self.monitor is not None:
            return self.monitor
        return "val_loss" if "val_loss" in names else "loss"

    def _check_logged(self, names):
        key = self._key(names)
        if key not in names:
            no_validation = not any(name.startswith("val_") for name in names)
            hint = (" (validation metrics need validation_data or validation_split)"
                    if key.startswith("val_") and no_validation else "")
            raise ValueError(f"EarlyStopping monitors {key!r}, which this fit does not log; "
                             f"it logs: {', '.join(names)}{hint}")
        return key

    def on_train_begin(self, logs=None):
        self.best = None
        self.best_epoch = None
        self.best_params = None
        self.wait = 0
        self.stopped_epoch = None
        names = self.params.get("metrics")
        if names is not None:
            self._check_logged(list(names))

    def _improved(self, value, mode):
        if self.best is None:
            return True
        if mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_epoch_end(self, epoch, logs):
        key = self._check_logged(list(logs))
        value = logs[key]
        mode = metric_mode(key) if self.mode == "auto" else self.mode
        if math.isfinite(value) and self._improved(value, mode):
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

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, mode={self.mode!r})")
