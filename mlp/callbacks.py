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

A callback that watches a metric learns its direction from `metric_mode`, which
reads it from the metric (`mlp.metrics`: ``accuracy`` and ``r2`` higher is better,
``loss`` and ``mse`` lower, a registered metric its own ``greater_is_better``).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io as io_module
import json
import math
import numbers
import os
import re
import secrets
import socket
import string
import time
import warnings

from .metrics import metric_mode as metric_mode  # (re-exported: the direction is the metric's)
from .params import Boolean, InstanceOf, Options, Real, check, validate
from .params import Integer as _Integer

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: exclusive creation instead
    fcntl = None

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

    def on_epochs_taken_back(self, epoch: int, logs=None):
        """The fit diverged and took back the epochs from ``epoch`` on, which this
        callback saw end: the model is back at the start of ``epoch`` (its weights,
        epoch count, history and optimizer state). A callback that recorded those
        epochs forgets them here (`CSVLogger` removes their rows, `BackupAndRestore`
        backs up the model as it is now). Called before ``on_train_end``."""

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
        begun = []
        try:
            for cb in self.callbacks:
                cb.on_train_begin(logs)
                begun.append(cb)
                self._checked(cb, "on_train_begin", logs)
        except BaseException:  # a backup or a log that took its lock lets it go: no fit runs
            for cb in begun:
                if isinstance(cb, (BackupAndRestore, CSVLogger)):
                    cb._let_go()
            raise

    def on_epoch_begin(self, epoch, logs=None):
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)
            self._checked(cb, "on_epoch_begin", logs)

    def on_epoch_end(self, epoch, logs):
        """Every callback's ``on_epoch_end``, even after one raised an error (the epoch
        is the model's: logs, backups and histories all take it); then the first error
        is raised. Ctrl-C stops at once, and so does a model state or logs a callback
        damaged (refused before the next callback sees them). What the callbacks add to
        the logs reaches the histories (and a backup's, which is made after them)."""
        stop, error, logged = False, None, False
        for cb in self.callbacks:
            if not logged and isinstance(cb, BackupAndRestore):  # (its backup holds them)
                logged = self._log_late(epoch, logs)
            try:
                result = cb.on_epoch_end(epoch, logs)
            except Exception as exc:  # noqa: BLE001 - raised once every callback saw the epoch
                error, result = (error if error is not None else exc), None
            stop = _stop_requested(cb, result) or stop
            self._checked(cb, "on_epoch_end", logs)
        if not logged:
            self._log_late(epoch, logs)
        if error is not None:
            raise error
        if stop:
            self.model.stop_training = True
        return stop

    def _log_late(self, epoch, logs) -> bool:
        """Put what the callbacks added to (or changed in) the epoch's ``logs`` into the
        histories (the fit's and ``model.history_``), which took the logs before them."""
        histories = [cb for cb in self.callbacks if isinstance(cb, History)]
        kept = getattr(self.model, "history_", None)
        if isinstance(kept, History):
            histories.append(kept)
        for history in {id(h): h for h in histories}.values():
            history.log_late(epoch, logs)
        seen = getattr(self.check, "seen", None)
        if seen is not None:  # (the histories' changes are fit's own)
            seen()
        return True

    def on_epochs_taken_back(self, epoch, logs=None):
        """Every callback's ``on_epochs_taken_back``; then the first error is raised."""
        error = None
        for cb in self.callbacks:
            try:
                cb.on_epochs_taken_back(epoch, logs)
            except Exception as exc:  # noqa: BLE001 - raised once every callback forgot
                error = error if error is not None else exc
        if error is not None:
            raise error

    def on_train_end(self, logs=None):
        """Every callback's ``on_train_end``, even after one raised (a backup lets its
        folder go, a log is complete); then the first error is raised."""
        error = None
        for cb in self.callbacks:
            try:
                cb.on_train_end(logs)
                self._checked(cb, "on_train_end", logs)
            except BaseException as exc:  # noqa: BLE001 - raised once every callback ended
                error = error if error is not None else exc
        if error is not None:
            raise error


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

    def log_late(self, epoch: int, logs: dict) -> None:
        """Make the last row, when it is epoch ``epoch``'s, hold the numbers in ``logs``
        (added or changed by callbacks after this history took the epoch)."""
        if not self.epoch or self.epoch[-1] != epoch:
            return
        for key, value in logs.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if key not in self.history:
                self._add_metrics([key])
            self.history[key][-1] = float(value)

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
            Also save the figure there (the format from the extension, e.g. ``.png``;
            none: matplotlib's default, PNG), atomically and with the permissions
            of a plain write, as `MLP.save` writes. The path and the format are
            checked before anything is drawn.
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
        image_format = None if path is None else _figure_format(path, Figure)
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
            _io().write_atomically(path, lambda fh: figure.savefig(fh, format=image_format),
                                   what="save the figure")
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


def _figure_format(path, Figure) -> str:
    """The image format for ``path`` (from its extension), once ``path`` is a file name
    in a writable folder and matplotlib writes that format."""
    import matplotlib

    path = _io().check_writable(path, "save the figure")
    extension = os.path.splitext(path)[1][1:].lower()
    image_format = extension or matplotlib.rcParams["savefig.format"]
    formats = Figure().canvas.get_supported_filetypes()
    if image_format not in formats:
        raise ValueError(f"History.plot cannot save the figure to {path!r}: matplotlib does "
                         f"not write {image_format!r} files (it writes "
                         f"{', '.join(sorted(formats))})")
    return image_format


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

    #: The rules (`mlp.params`) of each entry of the dict `get_state` gives.
    state_rules: dict = {}

    #: The arguments the saved state depends on: `get_state` holds them under
    #: ``"settings"``, and a backup made with others is refused (`settings_difference`).
    setting_names: tuple = ()

    def settings(self) -> dict:
        """The arguments (`setting_names`) this callback was built with."""
        return {name: getattr(self, name) for name in self.setting_names}

    def settings_difference(self, state) -> str | None:
        """How the settings a saved ``state`` was made with differ from this callback's
        (``"monitor 'val_accuracy' there, 'val_loss' here"``), or None where they are the
        same (or the state does not say: then `set_state` refuses it as damaged)."""
        saved = state.get("settings") if isinstance(state, dict) else None
        ours = self.settings()
        if not isinstance(saved, dict) or saved == ours:
            return None
        return "; ".join(f"{k} {saved.get(k)!r} there, {v!r} here" for k, v in ours.items()
                         if saved.get(k) != v) or f"settings {saved!r} there, {ours!r} here"

    def _saved(self, state) -> dict:
        """``state`` as a backup gave it back, checked entry by entry against
        `state_rules` before `set_state` uses any of it: a ValueError naming this
        callback for a missing, extra or ill-typed entry (a bool for a count, NaN...)."""
        name = type(self).__name__
        if not isinstance(state, dict) or state.keys() != self.state_rules.keys():
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{name}'s saved state holds {got}, not {sorted(self.state_rules)}")
        try:
            state = validate(self.state_rules, state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}'s saved state is damaged: {exc}") from None
        difference = self.settings_difference(state)
        if difference:
            raise ValueError(f"{name}'s saved state was made with other settings "
                             f"({difference})")
        return state

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
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "settings": self.settings()}

    state_rules = {"best": [None, Real()], "best_epoch": [None, _Integer(0)],
                   "wait": [_Integer(0)], "settings": [InstanceOf(dict, "a JSON object")]}
    setting_names = ("monitor", "mode", "patience", "min_delta")

    def set_state(self, state):
        state = self._saved(state)
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
    if "\0" in path:
        raise ValueError(f"{name} {path!r} holds a NUL character ('\\0'), which no file "
                         f"name may hold")
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

    def __init__(self, path, monitor="val_loss", save_best_only=False, every_n_epochs=1,
                 include_optimizer=True, mode="auto"):
        self.path = _path_argument(f"{type(self).__name__} path", path)
        values = validate(CHECKPOINT_CONSTRAINTS, dict(
            monitor=monitor, save_best_only=save_best_only, every_n_epochs=every_n_epochs,
            include_optimizer=include_optimizer, mode=mode))
        self.monitor, self.mode = values["monitor"], values["mode"]
        self.save_best_only = values["save_best_only"]
        self.every_n_epochs = values["every_n_epochs"]
        self.include_optimizer = values["include_optimizer"]
        self._check_mode()
        self.fields = set(path_pattern_fields(self.path, "ModelCheckpoint path"))
        self.best, self.saved = None, []

    def on_train_begin(self, logs=None):
        from . import io

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
        for sample in _sample_names(self.path, names):
            io.check_writable(sample, "save the checkpoint", shown=self.path)
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


#: A format spec a path pattern may give a field: ``[[fill]align][sign][z][#][0][width]
#: [grouping][.precision][type]`` with a fill that is a letter, digit, ``_``, ``-`` or a
#: space, a width of at most 3 digits and no ``c`` type (a character code could be a
#: separator). Nothing in it can make a separator or nest another field.
_SAFE_SPEC = re.compile(r"(?:[A-Za-z0-9_ \-]?[<>=^])?[+\- ]?z?#?0?[0-9]{0,3}[,_]?"
                        r"(?:\.[0-9]{1,2})?[bdeEfFgGnoxX%]?")
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def path_pattern_fields(pattern: str, what: str) -> list[str]:
    """The field names of the path pattern ``pattern`` (``"ckpt-{epoch:03d}.npz"``), in
    order; refused (ValueError naming ``what`` and the pattern) unless every field is a
    plain name (no ``{}``, no ``{0}``, no ``{epoch.attr}`` or ``{epoch[0]}``), without a
    conversion (``!r``), with a simple format spec (`_SAFE_SPEC`: none nested), in the
    file name only (the folder is literal)."""
    def refuse(why):
        return ValueError(f"{what} {pattern!r} {why} (a pattern names fields by plain name in "
                          f"its file name, e.g. 'ckpt/model-{{epoch:03d}}.npz'; write "
                          f"braces as {{{{ and }}}})")

    try:
        parts = list(string.Formatter().parse(pattern))
    except ValueError as exc:
        raise refuse(f"is not a valid name pattern: {exc}") from None
    fields = []
    for literal, field, spec, conversion in parts:
        if fields and any(sep in literal for sep in _SEPARATORS):
            raise refuse(f"names the field {fields[0]!r} in a folder; only the file name may "
                         f"name fields")
        if field is None:
            continue
        if not field.isidentifier():
            raise refuse(f"has the field {{{field}}}, which is not a plain name such as "
                         f"epoch or val_loss")
        if conversion is not None:
            raise refuse(f"converts the field {field!r} with !{conversion}; conversions are "
                         f"not taken")
        if not _SAFE_SPEC.fullmatch(spec or ""):
            raise refuse(f"gives the field {field!r} the format spec {spec!r}, which is not a "
                         f"simple one such as '03d', '>5' or '.3f'")
        fields.append(field)
    return fields


def _sample_names(pattern, metrics):
    """The paths ``pattern`` makes for a few epochs and metric values (first epoch, a large
    one, negative, tiny, NaN and infinite values), each checked to lie in the pattern's
    folder; a format spec that does not suit a value (``{val_loss:d}``) is refused."""
    prefix = ""  # the literal text before the first field (braces unescaped)
    for literal, field, _, _ in string.Formatter().parse(pattern):
        prefix += literal
        if field is not None:
            break
    cut = max(prefix.rfind(sep) for sep in _SEPARATORS)
    folder = prefix[:cut] if cut > 0 else prefix[:1] if cut == 0 else ""
    names = []
    for epoch, value in ((1, 0.5), (12345, -1.25e-7), (2, math.nan), (3, -math.inf)):
        try:
            name = pattern.format(epoch=epoch, **dict.fromkeys(metrics, value))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"ModelCheckpoint path {pattern!r} cannot name epoch {epoch} "
                             f"with a value of {value}: {exc}") from None
        base = name[len(folder):]
        if folder and base[:1] in _SEPARATORS and not folder.endswith(_SEPARATORS):
            base = base[1:]
        if not name.startswith(folder) or base in ("", ".", "..") or any(
                sep in base for sep in _SEPARATORS):
            raise ValueError(f"ModelCheckpoint path {pattern!r} makes the name {name!r}, "
                             f"which is not a file in {folder or '.'!r}")
        names.append(name)
    return names


class _FileLock:
    """One fit's hold on something (a backup folder, a log): the lock file ``path``,
    locked (``flock``, which the system releases when the holder dies, so a killed run's
    lock is taken over at once), naming the holder (``pid host``, then the holder's
    ``record``). Where ``flock`` is missing, the file is created exclusively (``O_EXCL``)
    and a lock of a process of this machine that no longer runs is taken over."""

    RELEASED = "released"  # the first line of a lock file kept for its record

    def __init__(self, path):
        self.path = path
        self.fd, self.mark = None, ""

    def acquire(self, record: str = ""):
        for _ in range(20):  # another run may remove the file between open and lock
            fd = self._try_flock() if fcntl is not None else self._try_exclusive()
            if fd is not None:
                os.write(fd, f"{os.getpid()} {socket.gethostname()}\n{record}\n".encode())
                self.fd, self.mark = fd, record
                return self
        raise self._in_use()

    def _try_flock(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise self._in_use() from None
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed the file as we opened it: try again
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        return fd

    def _try_exclusive(self):
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            lines, (pid, host) = self._lines(), self._holder()
            if lines[:1] != [self.RELEASED] and (host != socket.gethostname() or pid is None
                                                 or _io().process_alive(pid)):
                raise self._in_use() from None
        try:  # the lock of a process that died, or let go: take it over
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        return None

    def _lines(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                return fh.read(400).splitlines()
        except OSError:
            return []

    def _holder(self):
        lines = self._lines()
        pid, _, host = (lines[0] if lines else "").strip().partition(" ")
        try:
            return int(pid), host
        except ValueError:
            return None, ""

    def record(self) -> str:
        """What the last holder recorded (read before `acquire`, which replaces it)."""
        lines = self._lines()
        return lines[1].strip() if len(lines) > 1 else ""

    def _who(self) -> str:
        pid, host = self._holder()
        return f"process {pid} on {host or 'an unknown machine'}" if pid else "another process"

    def _in_use(self):
        return RuntimeError(f"{self.path!r} is locked by {self._who()}")

    def release(self, keep: bool = False) -> None:
        """Let go; remove the lock file first (no one locks a removed file), unless
        ``keep``: its record stays for the holder's next run to read."""
        if self.fd is None:
            return
        if keep:  # free to take (also where the file itself is the lock), with its record
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{self.RELEASED}\n{self.mark}\n".encode(), 0)
        else:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


class _FolderLock(_FileLock):
    """A fit's hold on a backup folder: the file `NAME` in it."""

    NAME = ".mlp-backup.lock"

    def __init__(self, folder):
        super().__init__(os.path.join(folder, self.NAME))
        self.folder = folder

    def _in_use(self):
        return RuntimeError(f"BackupAndRestore: the folder {self.folder!r} is in use by another "
                            f"fit ({self._who()}; lock file {self.path!r}): two runs cannot "
                            f"share a backup folder. Give each run its own directory, or wait "
                            f"for the other run to end")


class _LogLock(_FileLock):
    """A fit's hold on a log file (whatever links lead to it): ``.NAME.lock`` beside it."""

    def __init__(self, shown, target):
        folder, name = os.path.split(target)
        lock = f".{name}.lock"
        if len(os.fsencode(lock)) > 200:  # the log's name is near the file system's limit
            lock = f".mlp-log-{hashlib.blake2b(os.fsencode(name), digest_size=8).hexdigest()}.lock"
        super().__init__(os.path.join(folder, lock))
        self.shown = shown

    def _in_use(self):
        return RuntimeError(f"CSVLogger: the log {self.shown!r} is in use by another fit "
                            f"({self._who()}; lock file {self.path!r}): two fits, or two "
                            f"loggers of one fit, cannot write one log. Give each its own "
                            f"path, or wait for the other fit to end")


def _io():
    from . import io

    return io


def _data_difference(theirs, ours) -> str:
    """How the data fingerprinted ``theirs`` differs from ``ours`` (`data_fingerprint`)."""
    shapes = theirs.get("shapes") if isinstance(theirs, dict) else None
    if not isinstance(shapes, dict):
        return "other data"
    names = [name for name in dict.fromkeys([*shapes, *ours["shapes"]])
             if shapes.get(name) != ours["shapes"].get(name)]
    if not names:
        return "other data (the same shapes, other values)"

    def shape(value):
        return "none" if value is None else f"shape {tuple(value)}"

    return "other data (" + ", ".join(
        f"{name}: {shape(shapes.get(name))} there, {shape(ours['shapes'].get(name))} here"
        for name in names if name not in ("val_labels", "y", "y_val") or len(names) == 1) + ")"


def resumed_seed(model, callbacks) -> int:
    """The seed a fit of ``model`` draws its validation split with: the model's, or the
    seed of the run a `BackupAndRestore` among ``callbacks`` resumes, where the model's
    seed was drawn (``seed=None``) and it has not been trained (a script run again)."""
    for cb in callbacks:
        if isinstance(cb, BackupAndRestore):
            seed = cb.resumable_seed(model)
            if seed is not None:
                return seed
    return model.seed


#: The settings of a fit that a backup must share to be resumed (besides the model's
#: config, the optimizer and the data).
_RUN_SETTINGS = ("batch_size", "alpha", "clip_norm", "shuffle")


class BackupAndRestore(Callback):
    """Back the training up after every epoch; a run started again resumes from it.

    A script killed in the middle of a `fit` (Ctrl-C, SIGKILL, a lost machine)
    and run again from the start resumes from the last backup: the weights,
    the optimizer's state, the shuffle stream, the epoch count and the history
    are put back before the first epoch, and the fit runs only the epochs that
    were missing - ending at the weights of a run never interrupted. A fit that
    completes removes its backup (and the folders it made: the folder and any
    missing above it, where nothing else is in them); one that raises keeps it.

    Parameters
    ----------
    directory : str or path-like
        Where the backup lives (created if missing), one ``.npz`` file per fit,
        named after the epoch the fit started from (so a script with several
        fits resumes the right one). Writes are atomic.

    Notes
    -----
    A backup is resumed only by the run that made it: the same model config
    (a model built with ``seed=None`` and not yet trained takes the seed the
    backup was made with: the script run again is the same run), the same
    optimizer, ``batch_size``, ``alpha``, ``clip_norm`` and ``shuffle``, and
    the same data (shapes and a hash of the values, validation data included).
    Anything else is refused before the first epoch, with a message saying
    what differs; so is a backup holding more epochs than the fit asks for
    (ask for as many, or delete the backup). Restoring is all or nothing: the
    whole backup (its file, the run, every callback's state) is checked first,
    and a refused backup leaves the model as it was.

    One fit at a time may use a folder: a lock file in it (``.mlp-backup.lock``,
    naming the process) makes another fit, in this process or another, fail at
    once; the lock of a process that died is taken over.

    The backup also holds what the fit's other callbacks counted (their
    `Callback.get_state`: the patience of `ReduceLROnPlateau` and
    `EarlyStopping`, the rows of a `CSVLogger`, ...); `ModelCheckpoint` reads
    back the epochs already trained. `EarlyStopping` keeps its best weights
    only when the best epoch is the last one backed up.
    """

    MARKER = ".mlp-backup-folder"

    def __init__(self, directory):
        self.directory = _path_argument("BackupAndRestore directory", directory)
        self.restored_epoch = None
        self.others = []  # the fit's other callbacks (set by the CallbackList)
        self.fit_data = None  # the fit's data (set by fit), for the run's fingerprint
        self._lock, self._run = None, None

    @property
    def path(self) -> str:
        """The backup file of the current fit."""
        return self._path_for(self.params.get("initial_epoch", 0))

    def _path_for(self, initial_epoch) -> str:
        return os.path.join(self.directory, f"backup-from-epoch-{initial_epoch}.npz")

    def resumable_seed(self, model) -> int | None:
        """The seed of the run this folder's backup would resume, for a model whose seed
        was drawn (``seed=None``) and that has not been trained; None otherwise."""
        if not getattr(model, "_seed_drawn", False) or model.epochs_trained_ or \
                model.history_ is not None:
            return None
        path = self._path_for(0)
        try:
            run = _io().callback_states(path).get("run") if os.path.isfile(path) else None
        except (OSError, ValueError):  # on_train_begin says what is wrong with it
            return None
        seed = run.get("seed") if isinstance(run, dict) else None
        return seed if type(seed) is int and seed >= 0 else None

    # ------------------------------------------------------------ begin
    def on_train_begin(self, logs=None):
        _saved_optimizer_check(self, self.params.get("optimizer"))
        self.restored_epoch = None
        self._lock = self._hold_folder()
        try:
            self._run = {**{k: self.params.get(k) for k in _RUN_SETTINGS},
                         "data": _io().data_fingerprint(self.model, self.fit_data)}
            self._run = json.loads(json.dumps(self._run))  # as the file gives it back
            if os.path.exists(self.path):
                self._restore(self.path)
        except BaseException:
            self._let_go()
            raise

    def _hold_folder(self) -> _FolderLock:
        """Create the folder if missing (marking it as ours) and lock it."""
        for _ in range(5):  # a run ending now may remove the folder it made
            self._make_folder()
            try:
                return _FolderLock(self.directory).acquire()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise OSError(exc.errno, f"BackupAndRestore cannot lock its folder "
                                         f"{self.directory!r}: {exc.strerror or exc}") from None
        raise OSError(errno.ENOENT, f"BackupAndRestore: its folder {self.directory!r} "
                                    f"keeps being removed")

    def _make_folder(self) -> None:
        """Create the folder and the folders above it that are missing; the mark in it
        counts the levels made here (the folder, its parent, ...), removed when done."""
        folder = self.directory
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, f"BackupAndRestore directory {folder!r} "
                                                    f"is a file, not a folder")
        missing = []
        above = os.path.abspath(folder)
        while not os.path.isdir(above) and os.path.dirname(above) != above:
            missing.append(above)
            above = os.path.dirname(above)
        made = 0  # the folders made here, from the folder up, without a gap
        for path in reversed(missing):
            try:
                os.mkdir(path)
                made += 1
            except FileExistsError:  # made by another run meanwhile
                made = 0
            except OSError as exc:
                raise OSError(exc.errno, f"BackupAndRestore cannot create its folder "
                                         f"{folder!r}: {exc.strerror or exc}") from None
        if made:  # made here: removed when done, with those made above it
            with open(os.path.join(folder, self.MARKER), "w") as fh:
                fh.write(f"{made}\n")

    # ------------------------------------------------------------ restore
    def _restore(self, path):
        """Check the whole backup, then put it in: the model and the callbacks, all or
        nothing."""
        io = _io()
        model = self.model
        saved = io.load_model(path, type(model), model.backend)
        states = io.callback_states(path)
        run = states.get("run")
        if run is not None and not isinstance(run, dict):
            raise io.ModelFileError(f"{path!r} holds a damaged backup: its run record is not "
                                    f"a JSON object")
        adopt = self._check_model(path, saved)
        self._check_run(path, run)
        self._check_epochs(path, saved)
        restores = self._check_states(path, states)
        before = self._snapshot()
        try:
            self._put(saved, adopt)
            for cb, state in restores:
                cb.set_state(state)
        except Exception as exc:
            self._put_back(before)
            raise ValueError(f"the backup {path!r} could not be restored ({exc}); the model "
                             f"is as it was. Delete the backup, or use another directory, to "
                             f"train from the start") from exc

    def _check_model(self, path, saved) -> bool:
        """Refuse another model or optimizer; True where the model takes the backup's
        seed (drawn, untrained, otherwise the same config)."""
        model = self.model
        ours, theirs = model.get_config(), saved.get_config()
        adopt = ours["seed"] != theirs["seed"] and self.resumable_seed(model) == theirs["seed"]
        if adopt:
            ours["seed"] = theirs["seed"]
        if ours != theirs:
            differences = "; ".join(f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here"
                                    for k in ours if ours.get(k) != theirs.get(k))
            if ours["seed"] != theirs["seed"] and getattr(model, "_seed_drawn", False):
                differences += (f" (this model's seed was drawn; build it with "
                                f"seed={theirs['seed']} to resume the backup)")
            raise ValueError(f"the backup {path!r} was made with another model than this "
                             f"fit's: {differences}; delete it, or use another directory, to "
                             f"train from the start")
        optimizer = self.params.get("optimizer")
        if saved.optimizer_ != optimizer:
            raise ValueError(f"the backup {path!r} was made with another optimizer "
                             f"({saved.optimizer_!r}) than this fit's ({optimizer!r}); delete "
                             f"it, or use another directory, to train from the start")
        return adopt

    def _check_run(self, path, run) -> None:
        """Refuse a backup made with other settings or other data."""
        if run is None:  # a backup that does not record its run: nothing to compare
            return
        ours = self._run
        differences = [f"{k} {run.get(k)!r} there, {ours.get(k)!r} here"
                       for k in _RUN_SETTINGS if run.get(k) != ours.get(k)]
        data, theirs = ours.get("data"), run.get("data")
        if data is not None and data != theirs:
            differences.append(_data_difference(theirs, data))
        if differences:
            raise ValueError(f"the backup {path!r} was made by another run than this fit: "
                             f"{'; '.join(differences)}; delete it, or use another "
                             f"directory, to train from the start")

    def _check_epochs(self, path, saved) -> None:
        start, epochs = self.params.get("initial_epoch", 0), self.params.get("epochs")
        done = saved.epochs_trained_
        if done < start:
            raise _io().ModelFileError(
                f"{path!r} holds a damaged backup: {done} epochs trained, fewer than the "
                f"{start} its name says the fit started from")
        if epochs is not None and done > start + epochs:
            raise ValueError(f"the backup {path!r} holds {done - start} epochs of this fit, "
                             f"more than the epochs={epochs} it asks for: ask for "
                             f"epochs={done - start} or more to resume it, or delete it to "
                             f"train from the start")

    def _check_states(self, path, states) -> list:
        """``[(callback, state)]`` to restore: every stored state must belong to one of
        this fit's callbacks and have the keys that callback keeps."""
        ours = dict(self._keyed())
        restores = []
        for key, state in states.items():
            if key == "run":
                continue
            cb = ours.get(key)
            if cb is None:
                raise ValueError(f"the backup {path!r} was made by another run than this fit: "
                                 f"it holds the state of a callback {key}, which this fit "
                                 f"does not have (it has {', '.join(ours) or 'none'}); "
                                 f"delete it, or use another directory, to train from the "
                                 f"start")
            keys = _state_keys(cb)
            if keys is not None and (not isinstance(state, dict) or set(state) != keys):
                stored = sorted(state) if isinstance(state, dict) else type(state).__name__
                raise _io().ModelFileError(
                    f"{path!r} holds a damaged backup: the state of callback {key} holds "
                    f"{stored}, where {type(cb).__name__} keeps {sorted(keys)}")
            _check_settings(path, key, cb, state)
            restores.append((cb, state))
        return restores

    def _snapshot(self):
        model = self.model
        return (model.params, model.optimizer_state_, model.epochs_trained_, model.history_,
                model.seed, getattr(model, "_seed_drawn", False),
                model._shuffle_rng.bit_generator.state, self.restored_epoch)

    def _put(self, saved, adopt) -> None:
        model = self.model
        state = model.train_state_
        model.params = state.params = saved.params
        model.optimizer_state_ = state.opt_state = saved.optimizer_state_
        model.epochs_trained_ = state.epoch = saved.epochs_trained_
        state.rng.bit_generator.state = saved._shuffle_rng.bit_generator.state
        model.history_ = saved.history_
        if adopt:  # the script run again: the run's seed
            model._adopt_seed(saved.seed, drawn=False)
        self.restored_epoch = saved.epochs_trained_

    def _put_back(self, before) -> None:
        model, state = self.model, self.model.train_state_
        (params, opt_state, epochs, history, seed, drawn, rng, restored) = before
        model.params = state.params = params
        model.optimizer_state_ = state.opt_state = opt_state
        model.epochs_trained_ = state.epoch = epochs
        model._shuffle_rng.bit_generator.state = rng
        model.history_, self.restored_epoch = history, restored
        model._adopt_seed(seed, drawn)

    def _keyed(self):
        """``(key, callback)`` for the other callbacks: position and class name."""
        return [(f"{i}:{type(cb).__name__}", cb) for i, cb in enumerate(self.others)]

    # ------------------------------------------------------------ epochs and end
    def on_epoch_end(self, epoch, logs):
        states = {key: cb.get_state() for key, cb in self._keyed()}
        states = {k: v for k, v in states.items() if v is not None}
        states["run"] = {"seed": self.model.seed, **self._run}
        _io().save(self.model, self.path, include_optimizer=True, callback_states=states)

    def on_epochs_taken_back(self, epoch, logs=None):
        """The backup holds epochs a divergence took back: back up the model as it is now
        (a run started again resumes from there, not from weights that diverged)."""
        if self._lock is not None and os.path.exists(self.path):
            self.on_epoch_end(epoch - 1, logs or {})

    def on_train_end(self, logs=None):
        if (logs or {}).get("completed", True) and os.path.exists(self.path):
            os.remove(self.path)
        self._let_go()

    def _let_go(self) -> None:
        """Remove the lock, and the folder if this callback made it and it holds nothing
        else (no backup), with the folders above it made with it, where empty."""
        if self._lock is None:
            return
        marker = os.path.join(self.directory, self.MARKER)
        try:
            ours = set(os.listdir(self.directory)) == {self.MARKER, _FolderLock.NAME}
        except OSError:
            ours = False
        levels = _levels_made(marker) if ours else 0
        if ours:
            _remove_quietly(marker)
        self._lock.release()
        self._lock = None
        folder = os.path.abspath(self.directory)
        for _ in range(levels):
            try:
                os.rmdir(folder)
            except OSError:  # another run has started in it meanwhile, or a file is there
                return
            folder = os.path.dirname(folder)

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.directory!r})"


def _check_settings(path, key, callback, state) -> None:
    """Refuse the saved ``state`` of a callback built with other settings (a monitored
    metric, a mode, a patience... its best value and counts mean something else here)."""
    compare = getattr(callback, "settings_difference", None)
    difference = compare(state) if callable(compare) else None
    if difference:
        raise ValueError(f"the backup {path!r} was made by another run than this fit: its "
                         f"callback {key} was built with other settings ({difference}); "
                         f"build it as that run did to resume, or delete the backup (or use "
                         f"another directory) to train from the start")


def _state_keys(callback):
    """The keys of ``callback``'s state (a dict from `Callback.get_state`), or None where
    it keeps no dict."""
    try:
        state = callback.get_state()
    except Exception:  # noqa: BLE001 - a callback of the user's own, not ready yet
        return None
    return set(state) if isinstance(state, dict) else None


def _levels_made(marker) -> int:
    """How many folders a backup folder's mark says were made with it (1: itself)."""
    try:
        with open(marker) as fh:
            levels = int(fh.read(20).strip() or 1)
    except (OSError, ValueError):
        return 1
    return max(1, levels)


def _remove_quietly(path) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _check_separator(separator) -> str:
    check("separator", separator, [InstanceOf(str, "a string")])
    if len(separator) != 1 or separator.isalnum() or separator in '.+-"\r\n':
        raise ValueError(f"separator must be one character that no number holds (such as "
                         f"',', ';' or a tab), got {separator!r}")
    return separator


class _LogFile:
    """An existing log as read: its ``header``, ``rows`` (``[(epoch, row)]``) with the
    byte offset each starts at (``starts``), ``data`` (its bytes, less a last row cut
    short, ``cut`` the offset that row started at, else None) and ``open_end`` (its
    last row is whole but has no line end)."""

    def __init__(self, header=None, rows=(), starts=(), data=b"", cut=None, open_end=False):
        self.header, self.rows, self.starts = header, list(rows), list(starts)
        self.data, self.cut, self.open_end = data, cut, open_end


class CSVLogger(Callback):
    """One row per epoch with every logged value, in a CSV file.

    Columns: ``epoch`` (counted from 0 over every fit) and the names of the
    epoch's logs (``loss``, ``val_loss``, ...). Each row is written as its
    epoch ends (values in full precision), so a crash loses nothing logged.

    The file is checked when `fit` starts, before the first epoch: its folder
    must exist and be writable, its name one the file system takes, and it
    must not be a folder, a named pipe or a device; with ``append=True`` an
    existing file must be a log of this kind (an ``epoch`` column and the
    metrics this fit logs, with or without the validation ones), else it is
    refused rather than rewritten. One fit at a time writes a log: a lock file
    beside it (``.NAME.lock``, naming the process) makes another fit, or another
    logger of the same fit, on the same file fail at once; it is removed when
    the fit ends. The file is written the way `MLP.save` writes
    (`mlp.io.write_atomically`: a new file gets the permissions the umask
    gives, an existing one keeps its own, a symbolic link stays a link and its
    target is written); rows are appended.

    Parameters
    ----------
    path : str or path-like
    append : bool
        Keep the rows already in the file and add this fit's after them; a
        validation column this fit adds is added to the header (empty in the
        rows before). A last row cut short (by a kill in the middle of a write)
        is dropped, with a warning. When a `BackupAndRestore` resumes a run, the
        row that the killed run wrote after its last backup (an epoch trained
        again) is replaced - only when the file is still as that run left it
        (its path, size and a hash of its contents are in the backup) and no
        other fit has written it since; nothing else is ever removed. False
        starts the file afresh (a resumed run keeps its own rows).
    separator : str
        One character between values (default ``","``), none that a number holds.
    """

    def __init__(self, path, append=True, separator=","):
        self.path = _path_argument(f"{type(self).__name__} path", path)
        self.append = check("append", append, [Boolean()])
        self.separator = _check_separator(separator)
        self.columns = None
        self._file, self._lock, self._target = _LogFile(), None, None
        self._token, self._previous, self._size, self._hash = None, "", None, None
        self._resumed = None  # the size of the file a resumed run finds as it left it
        self._own_tail = False  # whether what follows it is the killed run's
        self._own_rows = []  # (epoch, byte offset) of each row this fit appended

    # ------------------------------------------------------------ begin
    def on_train_begin(self, logs=None):
        _io().check_writable(self.path, "write the CSV log")
        self._target = os.path.realpath(self.path)
        lock = _LogLock(self.path, self._target)
        self._previous = lock.record()  # the last writer's mark: a resumed run reads it
        self._token = secrets.token_hex(8)
        self._lock = lock.acquire(self._token)
        try:
            self.columns, self._resumed, self._size, self._hash = None, None, None, None
            self._own_rows = []
            self._own_tail = False
            self._file = self._read(strict=True) if self.append else _LogFile()
            metrics = self.params.get("metrics")
            if self._file.header is not None and metrics:
                self._check_columns(self._file.header, ["epoch", *metrics])
        except BaseException:
            self._let_go()
            raise

    def _let_go(self, completed=False) -> None:
        """Let the log go; the lock file stays (with this run's mark) after a fit that
        wrote rows and did not complete, for the run resuming it; one that wrote nothing
        leaves the mark it found."""
        if self._lock is None:
            return
        if self._size is None and self._previous:
            self._lock.mark, completed = self._previous, False
        self._lock.release(keep=not completed and (self._size is not None or
                                                   bool(self._previous)))
        self._lock = None

    def on_train_end(self, logs=None):
        self._let_go(completed=(logs or {}).get("completed", True))

    # ------------------------------------------------------------ reading
    def _read(self, strict):
        """The existing file (`_LogFile`; empty if none). ``strict``: a file that is not a
        CSV log is an error (else it is treated as none)."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.readline(1 << 16)  # a log's header: refused before reading on
                if data.startswith(f"epoch{self.separator}".encode()):
                    data += fh.read()
            text = data.decode("utf-8")
        except FileNotFoundError:
            return _LogFile()
        except (OSError, UnicodeDecodeError) as exc:
            if strict:
                raise self._not_a_log(f"it cannot be read as text ({exc})") from None
            return _LogFile()
        try:
            return self._parse(text, data) if text else _LogFile()
        except ValueError as exc:
            if strict:
                raise self._not_a_log(str(exc)) from None
            return _LogFile()

    def _parse(self, text, data):
        lines = list(io_module.StringIO(text, newline=""))
        header = self._row(lines[0])
        if not header or header[0] != "epoch" or len(set(header)) != len(header) or \
                not all(header[1:]):
            raise ValueError(f"its first line {self.separator.join(header)!r} is not a log's "
                             f"header (epoch{self.separator}loss{self.separator}...)")
        if not lines[0].endswith(("\n", "\r")):  # only a header, cut short
            return _LogFile()
        log = _LogFile(header)
        offset = len(lines[0].encode("utf-8"))
        for number, line in enumerate(lines[1:], start=2):
            row = self._row(line)
            if len(row) != len(header) or not _is_log_row(row):
                if number < len(lines) or line.endswith(("\n", "\r")):
                    raise ValueError(f"its line {number} is not a row of epoch and values")
                log.cut = offset  # the last row, cut short by a kill
                break
            log.rows.append((int(row[0]), row))
            log.starts.append(offset)
            offset += len(line.encode("utf-8"))
        log.open_end = log.cut is None and not lines[-1].endswith(("\n", "\r"))
        log.data = data[:offset]
        return log

    def _row(self, line):
        return next(csv.reader([line.rstrip("\r\n")], delimiter=self.separator), [])

    def _not_a_log(self, why):
        return ValueError(f"CSVLogger: {self.path!r} is not a log this fit can append to: "
                          f"{why}. Give another path, or append=False to start it afresh")

    def _check_columns(self, header, columns):
        """The file's metrics must be this fit's (validation ones may be missing on
        either side)."""
        def split(names):
            names = set(names[1:])
            return ({n for n in names if not n.startswith("val_")},
                    {n for n in names if n.startswith("val_")})

        (file_train, file_val), (fit_train, fit_val) = split(header), split(columns)
        if file_train != fit_train or (file_val and fit_val and file_val != fit_val):
            raise self._not_a_log(f"its columns are {', '.join(header)}, and this fit logs "
                                  f"{', '.join(columns)}")

    # ------------------------------------------------------------ resuming
    def get_state(self):
        """Where this run's log stands: its file, its size and a hash of its contents
        after the last row written, and the mark this run leaves in the lock file."""
        return {"path": self._target, "size": self._size, "token": self._token,
                "digest": None if self._hash is None else self._hash.hexdigest()}

    def set_state(self, state):
        """A resumed run: the file is its own only if it is the one the killed run wrote,
        as it left it (the same size and hash up to its last backup); then a row it wrote
        after that backup (an epoch trained again) is dropped when the first epoch ends,
        if no other fit has written the file since. Anything else is left alone."""
        size, digest = state["size"], state["digest"]
        if size is None:
            return
        if type(size) is not int or size < 0 or not isinstance(digest, str):
            raise ValueError(f"CSVLogger's state {state!r} is not a log's size and hash")
        if state["path"] != self._target:
            return  # another file than the killed run's: appended to as it is
        log = self._file if self.append else self._read(strict=False)
        data = log.data
        if log.header is None or len(data) < size or \
                hashlib.sha256(data[:size]).hexdigest() != digest:
            warnings.warn(f"CSVLogger: {self.path!r} has changed since the run this fit "
                          f"resumes last wrote it; its rows are kept, and this fit's are "
                          f"appended", RuntimeWarning, stacklevel=2)
            return
        self._file, self._resumed = log, size
        # what follows is the killed run's only if no other fit has held the log since
        self._own_tail = self._previous == state["token"]

    def _drops_own_row(self, epoch) -> bool:
        """Whether the rows after the resumed run's size are one row of ``epoch`` (the
        killed run's, of the epoch trained again)."""
        log, size = self._file, self._resumed
        if not self._own_tail:
            return False
        after = [e for e, start in zip((e for e, _ in log.rows), log.starts, strict=True)
                 if start >= size]
        return after == [epoch] and log.starts[-1] == size

    # ------------------------------------------------------------ writing
    def _start(self, epoch, logs):
        """Decide the columns and the rows kept; change the file otherwise than by
        appending only where it must: a header gaining columns (rewritten atomically),
        the killed run's row of an epoch trained again or a last row cut short (cut off),
        a last row without its line end (ended)."""
        log = self._file
        if not self.append and self._resumed is None:
            log = _LogFile()
        kept = log.rows
        if self._resumed is not None and self._drops_own_row(epoch):
            kept = log.rows[:-1]
            log.cut, log.open_end = log.starts[-1], False
        columns = ["epoch", *logs]
        if log.header is not None:
            columns = log.header + [c for c in columns if c not in log.header]
        self.columns = columns
        if log.header is None or columns != log.header or not self.append and \
                self._resumed is None:
            self._rewrite(columns, kept)
        else:
            self._patch(log)
        self._mark_file()

    def _mark_file(self) -> None:
        """Take the file as it is now for where this run's log stands (its size and hash,
        which the backup keeps); called after any change but `on_epoch_end`'s rows."""
        with open(self.path, "rb") as fh:
            data = fh.read()
        self._size, self._hash = len(data), hashlib.sha256(data)

    def _rewrite(self, columns, kept):
        out = io_module.StringIO()
        writer = csv.writer(out, delimiter=self.separator, lineterminator="\r\n")
        writer.writerow(columns)
        for _, row in kept:
            writer.writerow(row + [""] * (len(columns) - len(row)))
        text = out.getvalue().encode("utf-8")
        _io().write_atomically(self.path, lambda fh: fh.write(text), what="write the CSV log")

    def _patch(self, log):
        """Cut off a last row cut short (or the killed run's own), or end a last row."""
        if log.cut is not None:
            if not self._own_tail or log.cut != self._resumed:
                warnings.warn(f"CSVLogger: the last row of {self.path!r} was cut short (a "
                              f"write killed in the middle) and is dropped",
                              RuntimeWarning, stacklevel=3)
            with open(self.path, "r+b") as fh:
                fh.truncate(log.cut)
        elif log.open_end:
            with open(self.path, "ab") as fh:
                fh.write(b"\r\n")

    def on_epoch_end(self, epoch, logs):
        if self.columns is None:
            self._start(epoch, logs)
            self._written = 0
        row = {"epoch": epoch, **{k: repr(float(v)) for k, v in logs.items()}}
        out = io_module.StringIO()
        csv.DictWriter(out, self.columns, restval="", extrasaction="ignore",
                       delimiter=self.separator, lineterminator="\r\n").writerow(row)
        line = out.getvalue().encode("utf-8")
        self._own_rows.append((epoch, self._size))
        with open(self.path, "ab") as fh:
            fh.write(line)
        self._size += len(line)
        self._hash.update(line)

    def on_epochs_taken_back(self, epoch, logs=None):
        """Cut off the rows this fit appended for epochs ``epoch`` and later (a divergence
        took them back; they are the file's last): the log holds the epochs the model has."""
        starts = [start for e, start in self._own_rows if e >= epoch]
        if not starts:
            return
        with open(self.path, "r+b") as fh:
            fh.truncate(starts[0])
        self._own_rows = [(e, start) for e, start in self._own_rows if e < epoch]
        self._mark_file()

    def __repr__(self) -> str:
        return f"CSVLogger({self.path!r}, append={self.append})"


def _is_log_row(row) -> bool:
    """Whether ``row`` is an epoch (an integer >= 0) and numbers (or empty cells)."""
    try:
        if int(row[0]) < 0:
            return False
        for value in row[1:]:
            if value:
                float(value)
    except ValueError:
        return False
    return True


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
        from .params import check_in_dtype

        self._check_logged(list(self.params.get("metrics") or [self.monitor]))
        check_in_dtype("ReduceLROnPlateau's min_lr", self.min_lr, self.model.dtype_name)
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

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooling": self.cooling,
                "reductions": [list(r) for r in self.reductions], "settings": self.settings()}

    state_rules = {"best": [None, Real()], "wait": [_Integer(0)], "cooling": [_Integer(0)],
                   "reductions": [InstanceOf(list, "a list of [epoch, learning rate] pairs")],
                   "settings": [InstanceOf(dict, "a JSON object")]}
    setting_names = ("monitor", "mode", "factor", "patience", "min_lr", "min_delta", "cooldown")

    def set_state(self, state):
        state = self._saved(state)
        reductions = [_reduction(r) for r in state["reductions"]]
        self.best, self.wait, self.cooling = state["best"], state["wait"], state["cooling"]
        self.reductions = reductions

    def __repr__(self) -> str:
        return (f"ReduceLROnPlateau(monitor={self.monitor!r}, factor={self.factor}, "
                f"patience={self.patience}, min_lr={self.min_lr})")


def _reduction(pair) -> tuple:
    """A saved ``[epoch, learning rate]`` of `ReduceLROnPlateau`, checked."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise ValueError(f"ReduceLROnPlateau's saved state is damaged: a reduction {pair!r} "
                         "is not an [epoch, learning rate] pair")
    try:
        return (check("epoch", pair[0], [_Integer(0)]),
                check("learning rate", pair[1], [Real(0)]))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ReduceLROnPlateau's saved state is damaged: {exc}") from None
