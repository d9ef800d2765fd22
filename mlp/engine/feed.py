"""The fed run: epochs over batches that come from the host, one step per call.

Where the data is not on the device as a whole (arrays on disk, streams of
batches: `mlp.data`), an epoch is the batches a *feed* hands over (`mlp.data.Feed`,
read ahead in a background thread). Each batch runs through the very run that
`mlp.engine.pipeline.make_run` builds, as a one-epoch run over that batch alone
(``run(params, opt_state, xb, yb, wb, None, None, 1)``: one step; on JAX the
compiled step, on NumPy and PyTorch the in-place executor), so the step's
arithmetic is the in-memory run's, bit for bit. `FedEpochs` sums the batches'
losses and totals as `mlp.engine.pure.epoch_function` sums them (the full
batches stacked, then the last one) and runs under the pipeline's one Ctrl-C
protocol (`mlp.engine.pipeline.run_epochs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._typing import Array, Namespace
from .pipeline import InterruptedRun, Run, run_epochs
from .pure import Carry, Rows

if TYPE_CHECKING:
    from ..data import Feed

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
    """An executor (`mlp.engine.pipeline.Executor`) whose epochs run ``batch_run`` on
    each batch of ``feed``.

    Parameters
    ----------
    xp : namespace
    batch_run : Run
        The run of `mlp.engine.pipeline.make_run` (unpadded rows).
    carry : tuple
        ``(params, opt_state)`` to start from.
    feed : Feed
    """

    def __init__(self, xp: Namespace, batch_run: Run, carry: Carry, feed: Feed) -> None:
        self.xp, self.batch_run, self.carry, self.saved, self.feed = (
            xp, batch_run, carry, carry, feed)
        self.stack = xp.stack

    def save(self) -> None:
        self.saved = self.carry

    def restore(self) -> None:
        self.carry = self.saved

    def result(self) -> Carry:
        """``(params, opt_state)`` after the epochs run so far."""
        return self.carry

    def _step(self, batch: tuple[Array, Array, Array | None]) -> tuple[Array, Array | None]:
        """One step on ``batch``; its loss and training totals (with the batch's data's)."""
        try:
            params, opt_state, losses, totals = self.batch_run(*self.carry, *batch, None,
                                                               None, 1)
        except InterruptedRun as part:  # (no epoch of the one-step run completed)
            raise KeyboardInterrupt from part.__cause__
        self.carry = (params, opt_state)
        return losses[0], None if totals is None else totals[0, ...]

    def epoch(self, rows: Rows) -> tuple[Array, Array | None]:
        """One epoch over the feed's batches (``rows``: the epoch's host row indices, or
        None for the source's own batches); ``(mean loss, totals)``, summed as the
        in-memory epoch sums them."""
        xp = self.xp
        full: list[tuple[Array, Array | None]] = []
        rest: list[tuple[Array, Array | None, int]] = []
        weights: list[Array] = []
        try:
            batches_read = self._batches(rows, full, rest, weights)
        except Exception as exc:  # noqa: BLE001 - raised again by fit, the epochs kept
            raise SourceFailed(exc) from exc
        size, n = batches_read
        weighted = bool(weights)
        total = xp.sum(xp.stack([loss for loss, _ in full]))
        total = total if weighted else total * size
        sums = _summed(xp, [t for _, t in full])
        for loss, totals, m in rest:
            total = total + (loss if weighted else loss * m)
            sums = None if sums is None or totals is None else sums + totals
        if not weighted:
            return total / n, sums
        all_weights = getattr(self.feed, "w", None)
        weight = xp.sum(all_weights) if all_weights is not None else xp.sum(xp.stack(weights))
        return total / xp.where(weight > 0, weight, 1.0), sums


    def _batches(self, rows: Rows, full: list[tuple[Array, Array | None]],
                 rest: list[tuple[Array, Array | None, int]], weights: list[Array]
                 ) -> tuple[int, int]:
        """Step through the epoch's batches, each one's loss and totals into ``full`` (the
        batches of the first one's size) or ``rest`` (from the first of another size on),
        its weights' sum into ``weights``; ``(size of the first batch, rows)``."""
        xp, size, n = self.xp, 0, 0
        with self.feed.batches(rows) as batches:
            for xb, yb, wb in batches:
                m = int(xb.shape[0])
                loss, totals = self._step((xb, yb, wb))
                if wb is not None:
                    weight = xp.sum(wb)
                    weights.append(weight)
                    loss = loss * weight
                if not full:
                    size = m
                if m == size and not rest:
                    full.append((loss, totals))
                else:
                    rest.append((loss, totals, m))
                n += m
        return size, n


def _summed(xp: Namespace, totals: Sequence[Array | None]) -> Array | None:
    if not totals or totals[0] is None:
        return None
    return xp.sum(xp.stack(list(totals)), axis=0)


def fed_run(xp: Namespace, batch_run: Run) -> Run:
    """A run with `mlp.engine.pipeline.make_run`'s contract whose ``x`` is a feed
    (`mlp.data.Feed`; ``y`` and ``w`` unused): ``run(params, opt_state, feed, None,
    None, batches, last, n_epochs)`` with host row indices ``batches`` and ``last``
    (None for a stream's own batches). ``totals: (n_epochs, t + d)`` hold each
    epoch's training totals followed by its data's, summed over its batches.

    Parameters
    ----------
    xp : namespace
    batch_run : Run
        The run each batch goes through (one step per call).

    Returns
    -------
    Run
    """

    def run(params: Any, opt_state: Any, feed: Feed, y: Any, w: Any, batches: Any,
            last: Any, n_epochs: int) -> tuple[Any, Any, Array, Array | None]:
        executor = FedEpochs(xp, batch_run, (params, opt_state), feed)
        losses, totals = run_epochs(executor, batches, last, n_epochs)
        params, opt_state = executor.result()
        stacked = None if not totals or totals[0] is None else xp.stack(totals)
        return params, opt_state, xp.stack(losses), stacked

    return run
