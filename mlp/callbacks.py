"""What `fit` calls between epochs: one protocol, `Callback`, and the callbacks built on it.

Everything that happens between epochs goes through this protocol: the
`History` that `fit` returns, the `ProgressBar` (``verbose=1``), the
`EpochLogger` (``verbose=2``), `EarlyStopping`, `ModelCheckpoint`,
`BackupAndRestore`, `CSVLogger`, `ReduceLROnPlateau` and any callback of yours.
`fit` drives them through a `CallbackList`, in this order::

    set_model(model); set_params(params)
    on_train_begin(logs)
    for each epoch (numbered on over every fit of the model):
        on_epoch_begin(epoch, logs)
        ...one epoch of training...
        on_epoch_end(epoch, logs)      # logs: {"loss": ..., "val_loss": ...}
    on_train_end(logs)                 # logs: {"completed": bool}

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

A callback that watches a metric learns its direction from `metric_mode`
(``accuracy`` and ``r2``: higher is better; ``loss`` and ``mse``: lower).
"""

from __future__ import annotations

import csv
import math
import os
import string
import tempfile
import time

from .params import Boolean, InstanceOf, Options, Real, check, validate
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

    def get_state(self):
        """What this callback has counted so far, JSON-ready (a dict), for a
        `BackupAndRestore` to back up; None (default): nothing."""
        return None

    def set_state(self, state: dict) -> None:
        """Take back what `get_state` gave (after ``on_train_begin``, when a
        `BackupAndRestore` resumes)."""


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


def callback_name(callback) -> str:
    """How messages name ``callback``: its class, or the function a `FunctionCallback`
    wraps."""
    if isinstance(callback, FunctionCallback):
        return f"function {getattr(callback.fn, '__name__', repr(callback.fn))}"
    return type(callback).__name__


def _stop_requested(callback, result) -> bool:
    """Whether ``on_epoch_end``'s ``result`` asks to stop (a truthy value); a value with
    no truth (an array of several elements) is refused, naming the callback."""
    try:
        return bool(result)
    except Exception as exc:  # noqa: BLE001 - e.g. NumPy's "truth value ... is ambiguous"
        shape = getattr(result, "shape", None)
        what = (f"an array of shape {tuple(shape)}" if shape is not None
                else f"a {type(result).__name__}")
        raise TypeError(f"callback {callback_name(callback)}: on_epoch_end returned {what}, "
                        f"which is neither true nor false ({exc}); return True to stop "
                        "training, None or False to go on") from None


class CallbackList(Callback):
    """Drives a list of callbacks; `fit` calls only this.

    ``on_epoch_end`` calls every callback (all see every epoch, even when an
    earlier one asked to stop) and sets ``model.stop_training`` if any returned
    a truthy value.

    ``check`` (set by `fit`), when not None, is called as ``check(callback, hook,
    logs)`` after each callback's hook: it refuses, naming the callback, a model
    state the callback left damaged.
    """

    check = None

    def __init__(self, callbacks=(), model=None, params=None):
        self.callbacks = list(callbacks)
        self.set_params(dict(params or {}))
        if model is not None:
            self.set_model(model)
        for cb in self.callbacks:  # a backup holds what the other callbacks counted
            if isinstance(cb, BackupAndRestore):
                cb.others = [other for other in self.callbacks if other is not cb]

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

    def _checked(self, callback, hook, logs):
        if self.check is not None:
            self.check(callback, hook, logs)

    def on_train_begin(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_begin(logs)
            self._checked(cb, "on_train_begin", logs)

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)
            self._checked(cb, "on_epoch_begin", logs)

    def on_epoch_end(self, epoch, logs):
        stop = False
        for cb in self.callbacks:
            stop = _stop_requested(cb, cb.on_epoch_end(epoch, logs)) or stop
            self._checked(cb, "on_epoch_end", logs)
        if stop:
            self.model.stop_training = True
        return stop

    def on_train_end(self, logs=None):
        for cb in self.callbacks:
            cb.on_train_end(logs)
            self._checked(cb, "on_train_end", logs)


class History(Callback):
    """Per-epoch metrics: of one `fit` (what `fit` returns) or of every fit
    (``model.history_``).

    Attributes
    ----------
    history : dict[str, list[float]]
        ``"loss"`` (mean training loss of each epoch, as seen during the epoch's
        steps) and, with validation data, ``"val_loss"`` and the validation
        metrics. Every list has one value per entry of ``epoch``: a metric an
        epoch did not log (e.g. validation in a fit without it) is NaN there.
    epoch : list[int]
        The epochs, numbered over every fit of the model (from 0).
    params : dict
        The fit's settings (epochs, initial_epoch, batch_size, optimizer, ...).
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
        """Add epoch ``epoch`` with its ``logs``, keeping every list as long as ``epoch``."""
        history = self.history
        if logs.keys() != history.keys():  # a metric this history has not seen yet
            self._add_metrics(logs)
        self.epoch.append(int(epoch))
        for key, values in history.items():
            values.append(float(logs.get(key, math.nan)))

    def append_epochs(self, epochs: list[int], columns: dict[str, list[float]]) -> None:
        """Add the epochs ``epochs`` at once, ``columns`` holding each metric's values (one
        per epoch): what `append` does for each epoch, for a run's many epochs."""
        history = self.history
        self._add_metrics(columns)
        self.epoch.extend(epochs)
        for key, values in history.items():
            column = columns.get(key)
            values.extend([math.nan] * len(epochs) if column is None else column)

    def _add_metrics(self, names) -> None:
        """Start a list (NaN for the epochs so far) for each of ``names`` not kept yet, in
        their order."""
        for key in names:
            if key not in self.history:
                self.history[key] = [math.nan] * len(self.epoch)

    def extend(self, other: History, since: int = 0) -> None:
        """Append the epochs of ``other`` numbered ``since`` or later that this one lacks."""
        have = set(self.epoch)
        for i, epoch in enumerate(other.epoch):
            if epoch >= since and epoch not in have:
                self.append(epoch, {k: v[i] for k, v in other.history.items()
                                    if not math.isnan(v[i])})

    def on_epoch_end(self, epoch, logs):
        self.append(epoch, logs)

    def on_train_end(self, logs=None):
        if (logs or {}).get("completed", True) and getattr(self.model, "stop_training", False):
            self.stopped_epoch = self.epoch[-1] if self.epoch else None

    def to_dataframe(self):
        """The history as a pandas DataFrame: one row per epoch (index ``epoch``), one
        column per metric. Needs pandas (``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("History.to_dataframe needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.history, index=pd.Index(self.epoch, name="epoch"))

    def plot(self, path=None, ax=None):
        """Learning curves: one panel per metric (``loss``, then ``accuracy`` or
        ``r2``/``mse``), training and validation (``val_``) lines in each, against
        the epoch (counted from 1, as epochs trained).

        Parameters
        ----------
        path : str or path-like, optional
            Also save the figure there (the format from the extension, e.g. ``.png``).
        ax : matplotlib Axes or sequence of Axes, optional
            Draw into these: one Axes takes every line; a sequence needs one
            Axes per panel. By default a new figure (not registered with pyplot,
            so nothing stays open).

        Returns
        -------
        matplotlib.figure.Figure
            Each line is labelled with its metric's name (``loss``, ``val_loss``, ...).

        Needs matplotlib (``pip install matplotlib``, or the ``plot`` extra).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from exc
        if path is not None and (isinstance(path, bytes)
                                 or not isinstance(path, (str, os.PathLike))):
            raise TypeError(f"History.plot's path must be a file name (str or os.PathLike) "
                            f"or None, got {type(path).__name__} {path!r}"[:300])
        panels = self._panels()
        if not panels:
            raise ValueError("History.plot: the history is empty (no epoch trained yet)")
        axes = self._axes(ax, len(panels), Figure)
        epochs = [e + 1 for e in self.epoch]
        for axis, (title, keys) in zip(axes, panels, strict=True):
            for key in keys:
                axis.plot(epochs, self.history[key], label=key,
                          linestyle="--" if key.startswith("val_") else "-")
            axis.set_xlabel("epoch")
            axis.set_title(title)
            axis.legend()
        figure = axes[0].figure
        if path is not None:
            figure.savefig(path)
        return figure

    def _panels(self):
        """``[(title, [keys])]``: training and validation forms of each metric together."""
        out = {}
        for key in self.history:
            base = key[4:] if key.startswith("val_") else key
            out.setdefault(base, []).append(key)
        return [(base, sorted(keys, key=lambda k: k.startswith("val_")))
                for base, keys in out.items()]

    @staticmethod
    def _axes(ax, n, Figure):
        if ax is None:
            figure = Figure(figsize=(4.5 * n, 3.5), layout="constrained")
            axes = figure.subplots(1, n, squeeze=False)[0]
            return list(axes)
        if hasattr(ax, "plot"):
            return [ax] * n
        axes = [a for row in ax for a in (row if not hasattr(row, "plot") else [row])]
        if len(axes) != n or not all(hasattr(a, "plot") for a in axes):
            raise ValueError(f"ax must be one matplotlib Axes or a sequence of {n} (one per "
                             f"panel), got {len(axes)} items")
        return axes

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class ProgressBar(Callback):
    """A tqdm bar over the epochs with the latest metrics (``fit(verbose=1)``)."""

    bar = None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params.get("epochs"), unit="epoch", desc="fit", leave=True)
        self.seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.seen == 0:  # a backup may have moved the first epoch on
            self.bar.update(epoch - self.params.get("initial_epoch", epoch))
        self.seen += 1

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
        last = self.params.get("initial_epoch", 0) + self.params.get("epochs", 0)
        print(f"epoch {epoch + 1}/{last or '?'} - {items} - {seconds:.3f}s", flush=True)


class _Watching(Callback):
    """Shared by the callbacks that watch a metric: which one, its direction, and
    whether a value improves on the best so far."""

    monitor = None
    mode = "auto"
    min_delta = 0.0
    what = "this callback"

    def _check_mode(self):
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
            raise ValueError(f"{type(self).__name__} monitors {key!r}, which this fit does not "
                             f"log; it logs: {', '.join(names)}{hint}")
        return key

    def _direction(self, key):
        return metric_mode(key) if self.mode == "auto" else self.mode

    def _improves(self, value, best, key) -> bool:
        """Whether ``value`` beats ``best`` (None: nothing yet) by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        if self._direction(key) == "max":
            return value > best + self.min_delta
        return value < best - self.min_delta


EARLY_STOPPING_CONSTRAINTS = {
    "monitor": [None, InstanceOf(str, "a metric name such as 'val_loss'")],
    "patience": [_Integer(1)],
    "min_delta": [Real(0)],
    "restore_best_weights": [Boolean()],
    "mode": [Options("auto", "min", "max")],
}


class EarlyStopping(_Watching):
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
        self._check_mode()

    def on_train_begin(self, logs=None):
        self.best = None
        self.best_epoch = None
        self.best_params = None
        self.wait = 0
        self.stopped_epoch = None
        names = self.params.get("metrics")
        if names is not None:
            self._check_logged(list(names))

    def on_epoch_end(self, epoch, logs):
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

    def get_state(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def set_state(self, state):
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        # the restored weights are the best ones if the best epoch is the last one trained
        restored = self.model.epochs_trained_ - 1
        self.best_params = self.model.params if self.best_epoch == restored else None

    def on_train_end(self, logs=None):
        # A fit that raised (divergence, Ctrl-C) keeps the weights it promised instead.
        completed = (logs or {}).get("completed", True)
        if completed and self.restore_best_weights and self.best_params is not None:
            self.model.params = self.best_params

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, mode={self.mode!r})")


def _path_argument(name, value):
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or path-like), got "
                        f"{type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or path == "":
        raise ValueError(f"{name} must be a non-empty file path, got {value!r}")
    return path


def _saved_optimizer_check(callback, optimizer):
    """Refuse, before the first epoch, an optimizer that cannot be saved."""
    from .optimizers import optimizer_config

    try:
        optimizer_config(optimizer)
    except ValueError as exc:
        raise ValueError(f"{type(callback).__name__} saves the optimizer, but {exc}") from None


CHECKPOINT_CONSTRAINTS = {
    "monitor": [InstanceOf(str, "a metric name such as 'val_loss'")],
    "save_best_only": [Boolean()],
    "every_n_epochs": [_Integer(1)],
    "include_optimizer": [Boolean()],
    "mode": [Options("auto", "min", "max")],
}


class ModelCheckpoint(_Watching):
    """Save the model during training, atomically (a crash never leaves half a file).

    Parameters
    ----------
    path : str or path-like
        The file (``.npz``, see `MLP.save`). It may name the epoch and the
        logged values: ``"ckpt-{epoch:03d}.npz"``, ``"best-{val_loss:.3f}.npz"``;
        ``{epoch}`` counts from 1 (the epochs trained).
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

    def __init__(self, path, monitor="val_loss", save_best_only=False, every_n_epochs=1,
                 include_optimizer=True, mode="auto"):
        self.path = _path_argument("path", path)
        values = validate(CHECKPOINT_CONSTRAINTS, dict(
            monitor=monitor, save_best_only=save_best_only, every_n_epochs=every_n_epochs,
            include_optimizer=include_optimizer, mode=mode))
        self.monitor, self.mode = values["monitor"], values["mode"]
        self.save_best_only = values["save_best_only"]
        self.every_n_epochs = values["every_n_epochs"]
        self.include_optimizer = values["include_optimizer"]
        self._check_mode()
        try:
            self.fields = {f for _, f, _, _ in string.Formatter().parse(self.path) if f}
        except ValueError as exc:
            raise ValueError(f"path {self.path!r} is not a valid name pattern: {exc} (write "
                             "braces as {{ and }}, or name a field: {epoch})") from None
        self.best, self.saved = None, []

    def on_train_begin(self, logs=None):
        names = list(self.params.get("metrics") or [])
        unknown = sorted(self.fields - {"epoch", *names})
        if unknown:
            raise ValueError(f"ModelCheckpoint path {self.path!r} names {', '.join(unknown)}, "
                             f"which this fit does not log; it can name epoch and "
                             f"{', '.join(names)}")
        if self.save_best_only:
            self._check_logged(names)
        if self.include_optimizer:
            _saved_optimizer_check(self, self.params.get("optimizer"))
        self._started = False

    def _best_before(self, epoch):
        """The best ``monitor`` value of the model's epochs before ``epoch``."""
        history = self.model.history_
        best = None
        if history is not None and self.monitor in history.history:
            for e, value in zip(history.epoch, history.history[self.monitor], strict=True):
                if e < epoch and self._improves(value, best, self.monitor):
                    best = value
        return best

    def on_epoch_end(self, epoch, logs):
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


class BackupAndRestore(Callback):
    """Back the training up after every epoch; a run started again resumes from it.

    A script killed in the middle of a `fit` (Ctrl-C, SIGKILL, a lost machine)
    and run again from the start resumes from the last backup: the weights,
    the optimizer's state, the shuffle stream, the epoch count and the history
    are put back before the first epoch, and the fit runs only the epochs that
    were missing - ending at the weights of a run never interrupted. A fit that
    completes removes its backup; one that raises keeps it.

    Parameters
    ----------
    directory : str or path-like
        Where the backup lives (created if missing), one ``.npz`` file per fit,
        named after the epoch the fit started from (so a script with several
        fits resumes the right one). Writes are atomic.

    Notes
    -----
    The backup also holds what the fit's other callbacks counted (their
    `Callback.get_state`: the patience of `ReduceLROnPlateau` and
    `EarlyStopping`, ...); `ModelCheckpoint` and `CSVLogger` read back the
    epochs already trained. `EarlyStopping` keeps its best weights only when
    the best epoch is the last one backed up.
    """

    def __init__(self, directory):
        self.directory = _path_argument("directory", directory)
        self.restored_epoch = None
        self.others = []  # the fit's other callbacks (set by the CallbackList)

    @property
    def path(self) -> str:
        """The backup file of the current fit."""
        return os.path.join(self.directory,
                            f"backup-from-epoch-{self.params.get('initial_epoch', 0)}.npz")

    def on_train_begin(self, logs=None):
        _saved_optimizer_check(self, self.params.get("optimizer"))
        os.makedirs(self.directory, exist_ok=True)
        self.restored_epoch = None
        if os.path.exists(self.path):
            self._restore(self.path)

    def _restore(self, path):
        from . import io

        model = self.model
        saved = io.load_model(path, type(model), model.backend)
        for what, ours, theirs in (("model", model.get_config(), saved.get_config()),
                                   ("optimizer", self.params.get("optimizer"), saved.optimizer_)):
            if ours != theirs:
                raise ValueError(f"the backup {path!r} was made with another {what} "
                                 f"({theirs!r}) than this fit's ({ours!r}); delete it, or use "
                                 f"another directory, to train from the start")
        state = model.train_state_
        model.params = state.params = saved.params
        model.optimizer_state_ = state.opt_state = saved.optimizer_state_
        model.epochs_trained_ = state.epoch = saved.epochs_trained_
        state.rng.bit_generator.state = saved._shuffle_rng.bit_generator.state
        model.history_ = saved.history_
        self.restored_epoch = saved.epochs_trained_
        states = io.callback_states(path)
        for key, cb in self._keyed():
            if states.get(key) is not None:
                cb.set_state(states[key])

    def _keyed(self):
        """``(key, callback)`` for the other callbacks: position and class name."""
        return [(f"{i}:{type(cb).__name__}", cb) for i, cb in enumerate(self.others)]

    def on_epoch_end(self, epoch, logs):
        from . import io

        states = {key: cb.get_state() for key, cb in self._keyed()}
        io.save(self.model, self.path, include_optimizer=True,
                callback_states={k: v for k, v in states.items() if v is not None})

    def on_train_end(self, logs=None):
        if (logs or {}).get("completed", True) and os.path.exists(self.path):
            os.remove(self.path)

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.directory!r})"


class CSVLogger(Callback):
    """One row per epoch with every logged value, in a CSV file.

    Columns: ``epoch`` (counted from 0 over every fit) and the names of the
    epoch's logs (``loss``, ``val_loss``, ...). Each row is written as its
    epoch ends (values in full precision), so a crash loses nothing logged.

    Parameters
    ----------
    path : str or path-like
    append : bool
        Continue an existing file (a later fit, or a run resumed from a
        `BackupAndRestore`): rows of epochs not before the first one this fit
        logs - written by a run killed after them, and trained again now - are
        replaced. False starts the file afresh.
    separator : str
        Between values (default ``","``).
    """

    def __init__(self, path, append=True, separator=","):
        self.path = _path_argument("path", path)
        self.append = check("append", append, [Boolean()])
        self.separator = check("separator", separator, [InstanceOf(str, "a string")])
        self.columns = None

    def on_train_begin(self, logs=None):
        self.columns = None

    def _start(self, epoch, logs):
        """The columns, and the file's rows before ``epoch`` kept (or none)."""
        columns, rows = ["epoch", *logs], []
        if self.append and os.path.exists(self.path) and os.path.getsize(self.path) > 0:
            with open(self.path, newline="") as fh:
                reader = csv.reader(fh, delimiter=self.separator)
                header = next(reader, None) or []
                rows = [r for r in reader if r and _epoch_before(r[0], epoch)]
            columns = header + [c for c in columns if c not in header] if header else columns
            rows = [dict(zip(header, r)) for r in rows]
        _write_atomically(self.path, columns, rows, self.separator)
        self.columns = columns

    def on_epoch_end(self, epoch, logs):
        if self.columns is None:
            self._start(epoch, logs)
        row = {"epoch": epoch, **{k: repr(float(v)) for k, v in logs.items()}}
        with open(self.path, "a", newline="") as fh:
            csv.DictWriter(fh, self.columns, restval="", extrasaction="ignore",
                           delimiter=self.separator).writerow(row)

    def __repr__(self) -> str:
        return f"CSVLogger({self.path!r}, append={self.append})"


def _epoch_before(text, epoch) -> bool:
    try:
        return int(text) < epoch
    except ValueError:
        return False


def _write_atomically(path, columns, rows, separator):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mlp-", suffix=".csv.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, restval="", extrasaction="ignore",
                                    delimiter=separator)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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


class ReduceLROnPlateau(_Watching):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved
    by more than ``min_delta`` for ``patience`` epochs.

    The learning rate is changed through the learning-rate scale in the
    optimizer's state (`mlp.optimizers.with_learning_rate_scale`), not in the
    optimizer: on JAX nothing is recompiled, and the reduced rate is saved with
    the state. A schedule goes on, scaled.

    Parameters
    ----------
    monitor : str
    factor : float in (0, 1)
    patience : int
        Epochs without improvement before a reduction (>= 1).
    min_lr : float
        The learning rate is never reduced below this.
    min_delta : float
        The smallest change in the better direction that counts (>= 0).
    cooldown : int
        Epochs to wait after a reduction before counting again.
    mode : {"auto", "min", "max"}
    verbose : {0, 1}
        1 prints a line at each reduction.

    Attributes
    ----------
    reductions : list of (epoch, learning_rate)
        The reductions made in this fit, with the new learning rate.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_lr=0.0, min_delta=0.0,
                 cooldown=0, mode="auto", verbose=0):
        values = validate(PLATEAU_CONSTRAINTS, dict(
            monitor=monitor, factor=factor, patience=patience, min_lr=min_lr,
            min_delta=min_delta, cooldown=cooldown, mode=mode, verbose=verbose))
        for name, value in values.items():
            setattr(self, name, value)
        self._check_mode()
        self.reductions = []

    def on_train_begin(self, logs=None):
        from .optimizers import learning_rate_scale

        self._check_logged(list(self.params.get("metrics") or [self.monitor]))
        try:
            learning_rate_scale(self.model.optimizer_state_)
        except ValueError as exc:
            raise ValueError(f"ReduceLROnPlateau needs an optimizer with a learning rate: "
                             f"{exc}") from None
        self.best, self.wait, self.cooling, self.reductions = None, 0, 0, []

    def on_epoch_end(self, epoch, logs):
        from .optimizers import current_learning_rate, learning_rate_scale
        from .optimizers import with_learning_rate_scale as with_scale

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
        model.optimizer_state_ = with_scale(state, new_scale)
        new_rate = current_learning_rate(model.optimizer_, model.optimizer_state_)
        self.reductions.append((epoch, new_rate))
        self.wait, self.cooling = 0, self.cooldown
        if self.verbose:
            print(f"epoch {epoch + 1}: ReduceLROnPlateau reduced the learning rate to "
                  f"{new_rate:.4g}", flush=True)

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooling": self.cooling,
                "reductions": [list(r) for r in self.reductions]}

    def set_state(self, state):
        self.best, self.wait, self.cooling = state["best"], state["wait"], state["cooling"]
        self.reductions = [tuple(r) for r in state["reductions"]]

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, "
                f"patience={self.patience}, min_lr={self.min_lr})")
