"""`History`: the per-epoch metrics of a fit (what `fit` returns) or of every fit."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._files import mlp_io
from .callback import Callback, Logs

if TYPE_CHECKING:  # (optional: the plot and pandas extras)
    import matplotlib.figure
    import pandas


class History(Callback):
    """Per-epoch metrics of one `fit` (what it returns) or of every fit (``model.history_``).

    It takes a run of epochs at once (``epochs_at_once``: `on_epochs_end`), so
    a fit with no other callback runs many epochs per compiled call, and drops
    the epochs a divergence takes back (`on_epochs_taken_back`).

    Parameters
    ----------
    params : dict or None, default None
        The fit's settings (None: none yet).

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

    Examples
    --------
    >>> import numpy as np, mlp
    >>> x = np.random.default_rng(0).normal(size=(20, 3)); y = np.arange(20) % 2
    >>> model = mlp.MLP([3, 8, 2], loss="cross_entropy", backend="numpy", seed=0)
    >>> history = model.fit(x, y, epochs=3, validation_split=0.25)
    >>> history.epoch, sorted(history.history)
    ([0, 1, 2], ['accuracy', 'loss', 'val_accuracy', 'val_loss'])
    """

    epochs_at_once = True

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params = dict(params or {})
        self.stopped_epoch: int | None = None

    def set_params(self, params: dict[str, Any]) -> None:
        """Take the fit's settings as ``self.params``.

        Parameters
        ----------
        params : dict
            The fit's settings (``epochs``, ``batch_size``, ``optimizer``, ...,
            and ``metrics``, the names the epoch logs hold).
        """
        self.params = params

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Add epoch ``epoch`` with its ``logs``.

        Every list is kept as long as ``epoch``: a metric the logs lack is NaN there.

        Parameters
        ----------
        epoch : int
            The epoch's number.
        logs : dict of str to float
            The epoch's logs.
        """
        history = self.history
        if logs.keys() != history.keys():  # a metric this history has not seen yet
            self._add_metrics(logs)
        self.epoch.append(int(epoch))
        for key, values in history.items():
            values.append(float(logs.get(key, math.nan)))

    def append_epochs(self, epochs: Sequence[int], columns: dict[str, list[float]]) -> None:
        """Add the epochs ``epochs`` at once.

        What `append` does for each epoch, for a run's many epochs.

        Parameters
        ----------
        epochs : sequence of int
            The epochs' numbers, in order.
        columns : dict of str to list of float
            Each metric's values, one per epoch.
        """
        history = self.history
        self._add_metrics(columns)
        self.epoch.extend(epochs)
        for key, values in history.items():
            column = columns.get(key)
            values.extend([math.nan] * len(epochs) if column is None else column)

    def drop_epochs_from(self, epoch: int) -> None:
        """Remove the epochs numbered ``epoch`` or later.

        Parameters
        ----------
        epoch : int
            The first epoch to remove.
        """
        keep = [i for i, e in enumerate(self.epoch) if e < epoch]
        if len(keep) == len(self.epoch):
            return
        self.epoch[:] = [self.epoch[i] for i in keep]
        for values in self.history.values():
            values[:] = [values[i] for i in keep]

    def _add_metrics(self, names: Iterable[str]) -> None:
        """Start a list (NaN for the epochs so far) for each of ``names`` not kept yet, in
        their order."""
        for key in names:
            if key not in self.history:
                self.history[key] = [math.nan] * len(self.epoch)

    def extend(self, other: History, since: int = 0) -> None:
        """Append the epochs of ``other`` numbered ``since`` or later that this one lacks.

        Parameters
        ----------
        other : History
            The history to take epochs from.
        since : int, default 0
            The first epoch to take.
        """
        have = set(self.epoch)
        for i, epoch in enumerate(other.epoch):
            if epoch >= since and epoch not in have:
                self.append(epoch, {k: v[i] for k, v in other.history.items()
                                    if not math.isnan(v[i])})

    def log_late(self, epoch: int, logs: dict[str, Any]) -> None:
        """Update the last row with what callbacks added to the logs later.

        When the last row is epoch ``epoch``'s, it takes the numbers in ``logs``
        (added or changed by callbacks after this history took the epoch).

        Parameters
        ----------
        epoch : int
            The epoch's number.
        logs : dict of str to float
            The epoch's final logs.
        """
        if not self.epoch or self.epoch[-1] != epoch:
            return
        for key, value in logs.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if key not in self.history:
                self._add_metrics([key])
            self.history[key][-1] = float(value)

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Add the epoch (`append`).

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        self.append(epoch, logs)

    def on_epochs_end(self, epochs: range, logs: dict[str, list[float]]) -> None:
        """Add the run's epochs at once (`append_epochs`).

        Parameters
        ----------
        epochs : range
            The run's epochs, in order.
        logs : dict of str to list of float
            Each logged metric's values, one per epoch of ``epochs`` (read them;
            change nothing).
        """
        self.append_epochs(epochs, logs)

    def on_epochs_taken_back(self, epoch: int, logs: Logs | None = None) -> None:
        """Drop the epochs a divergence took back (`drop_epochs_from`).

        Parameters
        ----------
        epoch : int
            The first epoch taken back (the model is back at its start).
        logs : dict or None, default None
            Not used.
        """
        self.drop_epochs_from(epoch)

    def on_epoch_logged(self, epoch: int, logs: Logs) -> None:
        """Take what the callbacks after this one added to the epoch's logs (`log_late`).

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        self.log_late(epoch, logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Record the epoch after which training stopped, if it stopped early.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """
        if (logs or {}).get("completed", True) and getattr(self._model, "stop_training", False):
            self.stopped_epoch = self.epoch[-1] if self.epoch else None

    def to_dataframe(self) -> pandas.DataFrame:
        """Give the history as a pandas DataFrame.

        Needs pandas (``pip install pandas``).

        Returns
        -------
        pandas.DataFrame
            One row per epoch (index ``epoch``), one column per metric.

        Raises
        ------
        ImportError
            pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("History.to_dataframe needs pandas: pip install pandas") from exc
        return pd.DataFrame(self.history, index=pd.Index(self.epoch, name="epoch"))

    def plot(self, path: str | os.PathLike[str] | None = None, ax: Any = None
             ) -> matplotlib.figure.Figure:
        """Plot the learning curves.

        One panel per metric (``loss``, then ``accuracy`` or ``r2``/``mse``), training
        and validation (``val_``) lines in each, against the epoch (counted from 1, as
        epochs trained). Needs matplotlib (``pip install matplotlib``, or the ``plot``
        extra).

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
            The figure. Each line is labelled with its metric's name (``loss``, ``val_loss``, ...).
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
            mlp_io().write_atomically(path, lambda fh: figure.savefig(fh, format=image_format),
                                   what="save the figure")
        return figure

    def _panels(self) -> list[tuple[str, list[str]]]:
        """``[(title, [keys])]``: training and validation forms of each metric together."""
        out: dict[str, list[str]] = {}
        for key in self.history:
            base = key[4:] if key.startswith("val_") else key
            out.setdefault(base, []).append(key)
        return [(base, sorted(keys, key=lambda k: k.startswith("val_")))
                for base, keys in out.items()]

    @staticmethod
    def _axes(ax: Any, n: int, Figure: Any) -> list[Any]:
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


def _figure_format(path: str | os.PathLike[str], Figure: Any) -> str:
    """The image format for ``path`` (from its extension), once ``path`` is a file name
    in a writable folder and matplotlib writes that format."""
    import matplotlib

    path = mlp_io().check_writable(path, "save the figure")
    extension = os.path.splitext(path)[1][1:].lower()
    image_format: str = extension or matplotlib.rcParams["savefig.format"]
    formats = Figure().canvas.get_supported_filetypes()
    if image_format not in formats:
        raise ValueError(f"History.plot cannot save the figure to {path!r}: matplotlib does "
                         f"not write {image_format!r} files (it writes "
                         f"{', '.join(sorted(formats))})")
    return image_format
