"""The fed run: epochs over batches that come from the host, window by window.

Where the data is not on the device as a whole (arrays on disk, streams of
batches: `mlp.data`), an epoch is the batches a *feed* hands over (`mlp.data.Feed`),
in *windows*: consecutive batches of the epoch, their rows prepared on the device
in the epoch's order (`mlp.data.Window`, read ahead in a background thread). Each
window runs through the very run that `mlp.engine.pipeline.make_run` builds, as a
one-epoch run over the window's rows with the window's batches as row indices
(``run(params, opt_state, x_w, y_w, w_w, full[None], rest[None], 1)``: on JAX the
compiled scan of steps, on NumPy and PyTorch the in-place executor), so every
step's arithmetic is the in-memory run's, bit for bit, and the run's fixed cost
is paid once per window. With dropout, each window's run takes the epoch's key and
its rows' numbers in the training data (the window's ``ids``), so that every row's
masks are those of the same row in memory (`mlp.dropout`). `FedEpochs` sums the
windows' losses (weighted by their rows, or their weights' sums) and totals into the
epoch's, and runs under the pipeline's one Ctrl-C protocol
(`mlp.engine.pipeline.run_epochs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from array_api_compat import device

from .._typing import Array, Namespace
from .pipeline import InterruptedRun, Run, run_epochs
from .pure import Carry, Rows

if TYPE_CHECKING:
    from ..data import Feed, Window

__all__ = ["FedEpochs", "SourceFailed", "fed_run"]


class SourceFailed(KeyboardInterrupt):
    """An error while an epoch read or ran its batches (``error``: a file closed, a
    source's own exception), taken through the Ctrl-C protocol
    (`mlp.engine.pipeline.run_epochs`) so that the completed epochs are kept; `fit`
    then raises ``error`` itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class FedEpochs:
    """An executor (`mlp.engine.pipeline.Executor`) whose epochs run ``window_run`` on
    each window of ``feed``'s batches.

    Parameters
    ----------
    xp : namespace
    window_run : Run
        The run of `mlp.engine.pipeline.make_run` (unpadded rows).
    carry : tuple
        ``(params, opt_state)`` to start from.
    feed : Feed
    indices : callable
        ``indices(host) -> device array``: a window's batch indices for the run.
    streams : array, (n_epochs, 1), or None
        The dropout keys of the epochs run, in order (`mlp.dropout.epoch_streams`);
        None without dropout.
    """

    def __init__(self, xp: Namespace, window_run: Run, carry: Carry, feed: Feed,
                 indices: Callable[[np.ndarray], Array], streams: Array | None = None
                 ) -> None:
        self.xp, self.window_run, self.carry, self.feed = xp, window_run, carry, feed
        self.indices, self.streams = indices, streams
        self.done = 0  # epochs run (the next one's dropout key)
        self.saved = (carry, 0)
        self.stack = xp.stack

    def save(self) -> None:
        self.saved = (self.carry, self.done)

    def restore(self) -> None:
        self.carry, self.done = self.saved

    def _noise(self, window: Window) -> dict[str, Array | None]:
        """The window run's dropout arguments: the epoch's key and the window's rows'
        numbers in the training data (`mlp.engine.pipeline.make_run`); none without."""
        if self.streams is None:
            return {}
        ids = window[5]
        return {"streams": self.streams[self.done:self.done + 1, ...],
                "ids": None if ids is None else self.indices(ids)}

    def result(self) -> Carry:
        """``(params, opt_state)`` after the epochs run so far."""
        return self.carry

    def _run(self, window: Window) -> tuple[Array, Array | None, Array]:
        """The window's steps; its summed loss (times its rows, or its weights' sum), its
        training totals (with its data's) and that count."""
        x, y, w, full, rest, _ = window
        batches = None if full is None else self.indices(full[None, ...])
        last = None if rest is None else self.indices(rest[None, ...])
        try:
            params, opt_state, losses, totals = self.window_run(*self.carry, x, y, w, batches,
                                                                last, 1, **self._noise(window))
        except InterruptedRun as part:  # (the window's one-epoch run did not complete)
            raise KeyboardInterrupt from part.__cause__
        self.carry = (params, opt_state)
        xp = self.xp
        count = xp.sum(w) if w is not None else xp.asarray(
            float(x.shape[0]), dtype=losses.dtype, device=device(losses))
        return losses[0] * count, None if totals is None else totals[0, ...], count

    def epoch(self, rows: Rows) -> tuple[Array, Array | None]:
        """One epoch over the feed's windows (``rows``: the epoch's host row indices, or
        None for the source's own batches); ``(mean loss, totals)``."""
        xp = self.xp
        try:
            with self.feed.windows(rows) as windows:
                parts = [self._run(window) for window in windows]
        except Exception as exc:  # noqa: BLE001 - raised again by fit, the epochs kept
            raise SourceFailed(exc) from exc
        total = xp.sum(xp.stack([loss for loss, _, _ in parts]))
        count = xp.sum(xp.stack([c for _, _, c in parts]))
        sums = None if parts[0][1] is None else xp.sum(xp.stack([t for _, t, _ in parts]),
                                                       axis=0)
        self.done += 1
        return total / xp.where(count > 0, count, xp.ones_like(count)), sums


def fed_run(xp: Namespace, window_run: Run, indices: Callable[[np.ndarray], Array]) -> Run:
    """A run with `mlp.engine.pipeline.make_run`'s contract whose ``x`` is a feed
    (`mlp.data.Feed`; ``y`` and ``w`` unused): ``run(params, opt_state, feed, None,
    None, batches, last, n_epochs, streams=None)`` with host row indices ``batches`` and
    ``last`` (None for a stream's own batches) and the epochs' dropout keys ``streams``
    (the windows give their rows' numbers). ``totals: (n_epochs, t + d)`` hold each
    epoch's training totals followed by its data's, summed over its windows.

    Parameters
    ----------
    xp : namespace
    window_run : Run
        The run each window goes through.
    indices : callable
        ``indices(host) -> device array``: batch row indices for ``window_run``.

    Returns
    -------
    Run
    """

    def run(params: Any, opt_state: Any, feed: Feed, y: Any, w: Any, batches: Any,
            last: Any, n_epochs: int, streams: Array | None = None
            ) -> tuple[Any, Any, Array, Array | None]:
        executor = FedEpochs(xp, window_run, (params, opt_state), feed, indices, streams)
        losses, totals = run_epochs(executor, batches, last, n_epochs)
        params, opt_state = executor.result()
        stacked = None if not totals or totals[0] is None else xp.stack(totals)
        return params, opt_state, xp.stack(losses), stacked

    return run
