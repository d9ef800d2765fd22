"""The pure executor: the step as pure functions, epochs as scans over batches.

A *step* is ``(params, opt_state, x_batch, y_batch, w_batch) -> (params, opt_state,
loss, totals)`` (``w_batch``: the batch's row weights, or None; ``totals``: the
batch's training totals, `mlp.losses.Loss.train_totals`, from the step's own
forward pass, or None where the objective keeps none). An *epoch* scans the step
over the batches (`Backend.scan`: ``lax.scan`` on JAX, a Python loop elsewhere).
On a backend that compiles, `mlp.engine.pipeline.make_run` scans epochs inside
one compiled call; elsewhere `PureEpochs` runs them one by one under the
pipeline's Ctrl-C protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .. import batch_norm, dropout
from .._typing import Array, Namespace, Optimizer
from ..core import (
    Masks,
    NetworkSpec,
    loss_and_gradients,
    loss_gradients_and_totals,
    training_pass,
)
from ..optimizers import EmptyState, apply_updates, chain, checked_update, clip_by_global_norm
from .layout import Layout

if TYPE_CHECKING:
    from ..backends import Backend
    from .pipeline import Objective

#: ``(params, opt_state)``: what a step changes and an epoch carries.
Carry: TypeAlias = tuple[Any, Any]
#: ``step(params, opt_state, x_batch, y_batch, w_batch, noise) -> (params, opt_state,
#: loss, totals)`` (`make_step`).
Step: TypeAlias = Callable[..., tuple[Any, Any, Array, Array | None]]
#: An epoch's row indices ``(full, rest)`` (`epoch_function`), or None: the data as it is.
Rows: TypeAlias = tuple[Array, Array | None] | None
#: ``epoch(carry, rows, stream) -> (carry, (mean loss, totals))`` (`epoch_function`).
Epoch: TypeAlias = Callable[..., tuple[Carry, tuple[Array, Array | None]]]
#: A batch's dropout inputs ``(stream, rows)``: the epoch's key ``(1,)`` and the
#: batch's row indices ``(n,)`` (`mlp.dropout.masks`), or None: no dropout.
Noise: TypeAlias = tuple[Array, Array] | None


def make_step(spec: NetworkSpec, optimizer: Optimizer, alpha: float = 0.0,
              clip_norm: float | None = None, layout: Layout | None = None,
              objective: Objective | None = None) -> Step:
    """The pure training step for one batch.

    Parameters
    ----------
    spec : NetworkSpec
    optimizer : transformation
        ``opt_state`` is its own state; with ``clip_norm`` the step runs
        ``chain(clip_by_global_norm(clip_norm), optimizer)`` (clipping keeps no state).
    alpha : float
        The L2 coefficient (``objective.l2`` turns it into the batch's).
    layout : Layout, optional
        ``params`` (and the optimizer's state) are the packed flat arrays: the
        network sees them unpacked, the optimizer updates them packed (the global
        norm of the packed gradients is theirs, so clipping works there too).
    objective : Objective, optional
        What the step minimises (`mlp.engine.pipeline.Objective`); None: mlp's own.

    Returns
    -------
    step : callable
        ``step(params, opt_state, xb, yb, wb=None, noise=None)``; its ``noise``
        (`Noise`) gives the batch's dropout masks where ``spec.dropout`` drops
        units.
    """
    transform: Optimizer = optimizer
    wrap: Callable[[Any], Any] = _same
    unwrap: Callable[[Any], Any] = _same
    if clip_norm is not None:
        transform = chain(clip_by_global_norm(clip_norm), optimizer)
        wrap, unwrap = (lambda s: (EmptyState(), s)), (lambda s: s[1])
    xp, with_totals = spec.xp, objective is None or objective.totals

    def step(params: Any, opt_state: Any, xb: Array, yb: Array, wb: Array | None = None,
             noise: Noise = None) -> tuple[Any, Any, Array, Array | None]:
        layers = params if layout is None else layout.unpack(params)
        l2 = alpha if objective is None else objective.l2(xp, alpha, xb, wb)
        masks = batch_masks(spec, layers, xb, noise)
        if spec.normalizes:  # (never packed: `packs_layers`)
            loss, grads, totals, norms = training_pass(spec, layers, xb, yb, l2, wb,
                                                       with_totals, masks)
            updates, state = checked_update(transform, grads, wrap(opt_state), params)
            return (normalized_update(spec, params, apply_updates(params, updates), norms),
                    unwrap(state), loss, totals)
        if with_totals:
            loss, grads, totals = loss_gradients_and_totals(spec, layers, xb, yb, l2, wb, masks)
        else:
            (loss, grads), totals = loss_and_gradients(spec, layers, xb, yb, l2, wb, masks), None
        if layout is not None:
            grads = layout.pack(grads)
        updates, state = checked_update(transform, grads, wrap(opt_state), params)
        return apply_updates(params, updates), unwrap(state), loss, totals

    return step


def _same(state: Any) -> Any:
    return state


def normalized_update(spec: NetworkSpec, before: Any, updated: Any, norms: list[Any]) -> Any:
    """The weights after a step of a batch-normalized network: ``updated`` (the optimizer's),
    each normalized layer's running averages moved from ``before``'s towards its batch's
    statistics (`mlp.batch_norm.with_running`; whatever the optimizer did to them)."""
    momentum = spec.batch_norm[0]
    return [(W, b if norm is None else batch_norm.with_running(spec.xp, b, old[1], norm,
                                                                momentum))
            for (W, b), old, norm in zip(updated, before, norms)]


def batch_masks(spec: NetworkSpec, layers: Any, xb: Array, noise: Noise) -> Masks:
    """The batch's dropout masks (`mlp.dropout.masks`).

    Parameters
    ----------
    spec : NetworkSpec
        Its ``dropout`` rates.
    layers : list of (W, b)
        The weights (their input widths).
    xb : array, (n, n_features)
        The batch (its dtype).
    noise : tuple or None
        ``(stream, rows)`` (`Noise`).

    Returns
    -------
    list of (array or None), or None
        One mask per layer's input; None without dropout.
    """
    if noise is None or not spec.drops:
        return None
    stream, rows = noise
    widths = [W.shape[0] for W, _ in layers]
    return dropout.masks(spec.xp, spec.dropout, widths, stream, rows, xb.dtype)


def epoch_function(backend: Backend, step: Step, x: Array, y: Array, w: Array | None,
                   weighted: bool, counted: bool = False, ids: Array | None = None) -> Epoch:
    """``epoch(carry, rows, stream=None) -> (carry, (mean loss, totals))``: one epoch of
    ``step``.

    ``rows = (full, rest)``: the row indices of the full batches ``(n_batches,
    batch_size)`` and of the last, partial one (or None); ``rows`` None: one
    full batch, the data as it is. With ``weighted``, a batch's loss counts with
    its weights' sum and the epoch's loss is the weighted mean; otherwise with
    its size (the mean over rows). The batches' training totals are summed.

    ``counted`` (rows padded to `mlp.buckets`' sizes): ``rest`` is instead the
    number of the data's rows in each batch slot of ``full`` (`mlp.buckets.batch_plan`),
    and the epoch runs the slots that hold any (`counted_epoch`).

    ``stream`` (`mlp.dropout.epoch_streams`' row for the epoch, or None without
    dropout) with each batch's row indices gives the step its dropout masks (`Noise`):
    a row's masks follow its number in the training data, its index in ``x``, or with
    ``ids: (len(x),)`` int32 ``ids[index]`` (rows that reach the run in pieces: a window
    of a feed, a process's block).
    """
    xp, take = backend.xp, backend.take_rows

    def noise(stream: Array | None, rows: Array) -> Noise:
        if stream is None:
            return None
        return stream, rows if ids is None else take(ids, rows)

    def epoch(carry: Carry, rows: Rows, stream: Array | None = None
              ) -> tuple[Carry, tuple[Array, Array | None]]:
        def batch(carry: Carry, rows: Array) -> tuple[Carry, tuple[Array, Array | None]]:
            wb = None if w is None else take(w, rows)
            params, opt_state, loss, totals = step(*carry, take(x, rows), take(y, rows), wb,
                                                   noise(stream, rows))
            return (params, opt_state), (loss * xp.sum(wb) if weighted else loss, totals)

        if rows is None:
            every = None if stream is None else (stream, _all_rows(xp, x) if ids is None
                                                 else ids)
            params, opt_state, loss, totals = step(*carry, x, y, w, every)
            return (params, opt_state), (loss, totals)
        full, rest = rows
        if counted:
            return counted_epoch(backend, batch, carry, full, rest, weighted, w)
        carry, (losses, totals) = backend.scan(batch, carry, full)
        total = xp.sum(losses) if weighted else xp.sum(losses) * full.shape[-1]
        totals = None if totals is None else xp.sum(totals, axis=0)
        if rest is not None:
            carry, (loss, rest_totals) = batch(carry, rest)
            total = total + (loss if weighted else loss * rest.shape[-1])
            totals = None if totals is None else totals + rest_totals
        return carry, (mean_loss(xp, total, x, w, weighted), totals)

    return epoch


def _all_rows(xp: Namespace, x: Array) -> Array:
    """The row indices ``0 .. n - 1`` of ``x`` (int32): a full batch's."""
    from array_api_compat import device

    return xp.arange(x.shape[0], dtype=xp.int32, device=device(x))


def counted_epoch(backend: Backend, batch: Callable[[Any, Array], Any], carry: Any,
                  full: Array, counts: Array, weighted: bool, w: Array | None
                  ) -> tuple[Any, tuple[Array, Any]]:
    """One epoch over the batch slots of ``full: (slots, batch_size)`` that hold any of
    the data's rows (``counts: (slots,)``, the first ones): a loop whose length is known
    only when the program runs, so every epoch length shares one program and the
    slots beyond it never run (no optimizer state moves for them).

    ``batch(carry, rows) -> (carry, (loss, totals))`` is `epoch_function`'s step on
    one batch (its loss times its weights' sum where ``weighted``); otherwise a batch's
    loss counts with its own rows and the epoch's loss is the mean over the data's
    rows. Returns ``(carry, (mean loss, summed totals))``.
    """
    xp = backend.xp

    def scaled(loss: Array, i: Any) -> Array:
        return loss if weighted else loss * xp.astype(counts[i], loss.dtype)

    def body(i: Any, state: Any) -> Any:
        carry, total, totals = state
        carry, (loss, batch_totals) = batch(carry, full[i, ...])
        totals = None if totals is None else totals + batch_totals
        return carry, total + scaled(loss, i), totals

    carry, (loss, totals) = batch(carry, full[0, ...])  # every epoch has a batch
    steps = xp.sum(xp.astype(counts > 0, counts.dtype))
    carry, total, totals = backend.fori_loop(1, steps, body, (carry, scaled(loss, 0), totals))
    if weighted:
        return carry, (mean_loss(xp, total, None, w, True), totals)
    return carry, (total / xp.astype(xp.sum(counts), total.dtype), totals)


def mean_loss(xp: Namespace, total: Array, x: Array, w: Array | None, weighted: bool
              ) -> Array:
    """The epoch's mean loss from its ``total``: over the rows, or with ``weighted``
    over the weights' sum (0 when that is 0)."""
    if not weighted:
        return total / x.shape[0]
    weight = xp.sum(w)
    return total / xp.where(weight > 0, weight, 1.0)


class PureEpochs:
    """The pure executor on a backend that does not compile: epochs one by one.

    The carry ``(params, opt_state)`` is never changed in place, so `save`
    keeps a reference to it and `restore` puts it back (each a single
    assignment, as the pipeline's Ctrl-C protocol needs).

    Parameters
    ----------
    xp : namespace
        Stacks the epochs' losses (`stack`).
    epoch : callable
        `epoch_function`'s epoch.
    carry : tuple
        ``(params, opt_state)`` to start from (packed when ``layout`` is given).
    unpack : callable
        ``unpack(carry) -> (params, opt_state)`` in the unpacked format.
    streams : array, (n_epochs, 1), or None
        The dropout keys of the epochs this executor runs, in order
        (`mlp.dropout.epoch_streams`); None without dropout.
    """

    def __init__(self, xp: Namespace, epoch: Epoch, carry: Carry,
                 unpack: Callable[[Carry], Carry], streams: Array | None = None) -> None:
        self._epoch, self._unpack, self._streams = epoch, unpack, streams
        self.carry, self.saved = carry, (carry, 0)
        self.done = 0  # epochs run (the next one's stream)
        self.stack = xp.stack

    def save(self) -> None:
        self.saved = (self.carry, self.done)

    def restore(self) -> None:
        self.carry, self.done = self.saved

    def epoch(self, rows: Rows) -> tuple[Array, Array | None]:
        """One epoch over ``rows`` (see `epoch_function`); ``(mean loss, totals)``."""
        streams = self._streams
        stream = None if streams is None else streams[self.done, ...]
        self.carry, out = self._epoch(self.carry, rows, stream)
        self.done += 1
        return out

    def result(self) -> Carry:
        """``(params, opt_state)`` after the epochs run so far."""
        return self._unpack(self.carry)
