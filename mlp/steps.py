"""The pure training step, and steps composed into epochs and runs.

A *step* is ``(params, opt_state, x_batch, y_batch, w_batch) -> (params, opt_state, loss,
totals)`` (``w_batch``: the batch's row weights, or None; ``totals``: the batch's training
totals, `mlp.losses.Loss.train_totals`, from the step's own forward pass, which an epoch
sums over its batches for the training scores `fit` logs).
An *epoch* scans the step over the batches, whose row indices are drawn on the
host (one permutation per epoch from the model's seed) and gathered on the
device, so the data crosses to the device once per `fit` and every backend
sees the same batches. A *run* scans epochs. On JAX a run is one compiled
call (`Backend.jit` + `Backend.scan` = ``lax.scan``); elsewhere the same code
runs as Python loops.

``alpha`` and ``clip_norm`` act at different places: ``alpha`` is the L2 term
``0.5 * alpha * sum ||W||^2`` of the loss (part of the objective, so the loss
the run reports includes it), while ``clip_norm`` is a gradient transformation,
`mlp.optimizers.clip_by_global_norm`, chained before the optimizer.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import device

from .core import loss_gradients_and_totals
from .optimizers import (
    EmptyState,
    apply_updates,
    chain,
    check_schedule,
    checked_update,
    clip_by_global_norm,
    learning_rate_schedules,
)
from .schedules import SCHEDULES
from .tree import is_namedtuple, tree_leaves


def make_step(spec, optimizer, alpha=0.0, clip_norm=None, packer=None):
    """The pure training step for one batch.

    ``opt_state`` is ``optimizer``'s own state; with ``clip_norm`` the step runs
    ``chain(clip_by_global_norm(clip_norm), optimizer)`` (clipping keeps no state).
    With a `Packer`, ``params`` (and the optimizer's state) are the packed flat
    arrays: the network sees them unpacked, the optimizer updates them packed
    (the global norm of the packed gradients is theirs, so clipping works there too).
    """
    if clip_norm is None:
        transform, wrap, unwrap = optimizer, (lambda s: s), (lambda s: s)
    else:
        transform = chain(clip_by_global_norm(clip_norm), optimizer)
        wrap, unwrap = (lambda s: (EmptyState(), s)), (lambda s: s[1])

    def step(params, opt_state, xb, yb, wb=None):
        layers = params if packer is None else packer.unpack(params)
        loss, grads, totals = loss_gradients_and_totals(spec, layers, xb, yb, alpha, wb)
        if packer is not None:
            grads = packer.pack(grads)
        updates, state = checked_update(transform, grads, wrap(opt_state), params)
        return apply_updates(params, updates), unwrap(state), loss, totals

    return step


class InterruptedRun(Exception):
    """Ctrl-C inside a Python-loop run, after ``len(losses)`` completed epochs whose
    weights, optimizer state and training totals it carries (`fit` keeps them, then
    re-raises)."""

    def __init__(self, params, opt_state, losses, totals=()):
        super().__init__("interrupted")
        self.params, self.opt_state, self.losses = params, opt_state, losses
        self.totals = totals


def packs(optimizer, opt_state) -> bool:
    """Whether a run on a backend that does not compile (where each array operation has
    a fixed cost) updates the parameters packed (`Packer`): for an elementwise
    optimizer (``optimizer.elementwise``) whose state holds arrays of the parameters'
    shapes (momentum, moments: several operations per array, done once for all
    layers). Without such state (plain SGD: one or two operations per array) packing
    the gradients would cost more than it saves."""
    return (bool(getattr(optimizer, "elementwise", False))
            and any(getattr(leaf, "ndim", 0) > 0 for leaf in tree_leaves(opt_state)))


#: Every weight matrix in a packed array starts a multiple of this many elements from its
#: start: on a 64-byte boundary (in float32 and float64), where PyTorch's allocator puts
#: a fresh tensor. Matrix-product libraries may pick their kernels by the operands'
#: alignment (MKL does on AMD processors), so a weight block at any other offset could
#: be multiplied with another rounding than the same weights in an array of their own.
BLOCK_ALIGNMENT = 16


def aligned_offsets(sizes, alignment: int = BLOCK_ALIGNMENT) -> tuple[list[tuple[int, int]],
                                                                       int]:
    """``([(start, stop), ...], total)``: blocks of ``sizes`` elements one after another,
    each starting at a multiple of ``alignment`` (zeros fill the gaps)."""
    bounds, offset = [], 0
    for size in sizes:
        bounds.append((offset, offset + size))
        offset += -(-size // alignment) * alignment
    total = bounds[-1][1] if bounds else 0
    return bounds, total


class Packer:
    """All weight matrices as one flat array, all biases as another.

    Where every array operation costs a fixed overhead (NumPy, PyTorch eager), an
    elementwise optimizer (``optimizer.elementwise``) then runs its handful of
    operations twice per step instead of twice per layer. Each element sees
    exactly the same operations in the same order, so results are identical to
    the per-layer update, bit for bit. Unpacking gives views (reshaped slices).

    Each weight matrix starts on a 64-byte boundary of the flat array
    (`aligned_offsets`; the gaps hold zeros, which every elementwise optimizer
    keeps at zero), so a matrix product sees the weights where it would see a
    fresh array of their own. ``aligned=False`` packs them without gaps (scikit-learn's
    flat parameter vector).
    """

    def __init__(self, xp, shapes, aligned: bool = True):
        self.xp = xp
        self.shapes = [tuple(s) for s in shapes]  # (fan_in, fan_out) per layer
        self.w_bounds, self.n_weights = aligned_offsets([i * o for i, o in self.shapes],
                                                        BLOCK_ALIGNMENT if aligned else 1)
        self.b_bounds, ob = [], 0
        for _, fan_out in self.shapes:
            self.b_bounds.append((ob, ob + fan_out))
            ob += fan_out
        self._gaps = {}

    def _gap(self, size, like):
        """Zeros of ``like``'s dtype and device, ``(size,)``."""
        key = (size, like.dtype, device(like))
        gap = self._gaps.get(key)
        if gap is None:
            gap = self._gaps[key] = self.xp.zeros((size,), dtype=like.dtype, device=device(like))
        return gap

    def pack(self, pairs):
        xp, pieces = self.xp, []
        for (W, _), (_, w1), nxt in zip(pairs, self.w_bounds, self.w_bounds[1:] + [None]):
            pieces.append(xp.reshape(W, (-1,)))
            if nxt is not None and nxt[0] > w1:
                pieces.append(self._gap(nxt[0] - w1, W))
        return [(xp.concat(pieces), xp.concat([b for _, b in pairs]))]

    def unpack(self, packed):
        flat_w, flat_b = packed[0]
        return [(self.xp.reshape(flat_w[w0:w1], shape), flat_b[b0:b1])
                for shape, (w0, w1), (b0, b1) in zip(self.shapes, self.w_bounds, self.b_bounds)]

    def _is_param_list(self, node):
        return (isinstance(node, list) and len(node) == len(self.shapes)
                and all(isinstance(p, tuple) and len(p) == 2 for p in node))

    def pack_tree(self, node):
        """Pack every per-layer ``[(W, b), ...]`` list inside an optimizer state."""
        if self._is_param_list(node):
            return self.pack(node)
        if is_namedtuple(node):
            return type(node)(*(self.pack_tree(n) for n in node))
        if isinstance(node, tuple):
            return tuple(self.pack_tree(n) for n in node)
        return node

    def unpack_tree(self, node, like):
        """Undo `pack_tree`; ``like`` is the unpacked state it came from."""
        if self._is_param_list(like):
            return self.unpack(node)
        if is_namedtuple(like):
            return type(like)(*(self.unpack_tree(n, m) for n, m in zip(node, like)))
        if isinstance(like, tuple):
            return tuple(self.unpack_tree(n, m) for n, m in zip(node, like))
        return node


def make_run(backend, spec, optimizer, alpha=0.0, clip_norm=None):
    """``run(params, opt_state, x, y, w, batches, last, n_epochs) -> (params, opt_state, losses,
    totals)``.

    ``w: (n,)`` are the rows' weights in the model's dtype (None: unweighted);
    batches cut them with the same indices as ``x`` and ``y``.
    ``batches: (n_epochs, n_batches, batch_size)`` and ``last: (n_epochs, r)``
    hold row indices (``None`` for full-batch training, or when the batch size
    divides the data); ``losses: (n_epochs,)`` are the epochs' mean losses: the
    batches' losses weighted by their sizes, or with ``w`` by their weights'
    sums (so an epoch's loss is the weighted mean over its rows, as the
    unweighted one is the plain mean; 0 if the weights sum to 0);
    ``totals: (n_epochs, t + d)`` are the sums over each epoch's batches of their
    training totals (`mlp.losses.Loss.train_totals`, with the weights of each step),
    then the data's own (`mlp.losses.Loss.data_totals`, the same for every epoch).
    Compiled with ``backend.jit`` (``n_epochs`` is static). A learning-rate
    schedule of the user's own is tried once first (`check_schedule`), so that
    a mistake in it gets a clear message rather than an error from inside the run.
    """
    xp = spec.xp
    _check_users_schedules(backend, optimizer)
    step = make_step(spec, optimizer, alpha, clip_norm)

    def run(params, opt_state, x, y, w, batches, last, n_epochs):
        data, extra = (x, y, w), spec.loss.data_totals(xp, y, w)  # once, not per step
        try:
            if not backend.compiles and packs(optimizer, opt_state):
                packer = Packer(xp, [W.shape for W, _ in params])
                params, opt_state, losses, totals = _packed_run(packer, params, opt_state,
                                                                data, batches, last, n_epochs)
            else:
                if not backend.compiles:  # as after every step: weights in new arrays
                    params = [(xp.asarray(W, copy=True), b) for W, b in params]
                params, opt_state, losses, totals = _run_epochs(
                    backend, step, params, opt_state, data, batches, last, n_epochs)
        except InterruptedRun as part:
            part.totals = [join_data_totals(xp, t, extra) for t in part.totals]
            raise
        return params, opt_state, losses, join_data_totals(xp, totals, extra)

    def _packed_run(packer, params, opt_state, data, batches, last, n_epochs):
        packed_step = make_step(spec, optimizer, alpha, clip_norm, packer)
        try:
            p, s, losses, totals = _run_epochs(backend, packed_step, packer.pack(params),
                                       packer.pack_tree(opt_state), data, batches, last,
                                       n_epochs)
        except InterruptedRun as part:
            raise InterruptedRun(packer.unpack(part.params),
                                 packer.unpack_tree(part.opt_state, opt_state),
                                 part.losses, part.totals) from part.__cause__
        return packer.unpack(p), packer.unpack_tree(s, opt_state), losses, totals

    pure = backend.jit(run, static_argnums=(7,))
    # A backend may run the same arithmetic faster (NumPy, PyTorch on the CPU: in place),
    # bit-identical.
    return backend.fast_run(pure, spec, optimizer, alpha, clip_norm) or pure


def join_data_totals(xp, totals, extra):
    """``totals: (n_epochs, t)`` or one epoch's ``(t,)`` followed by the data's training
    totals ``extra: (d,)`` (`mlp.losses.Loss.data_totals`, the same for every epoch)."""
    if totals.ndim == 1:
        return xp.concat([totals, extra])
    return xp.concat([totals, xp.broadcast_to(extra[None, :], (totals.shape[0], extra.shape[0]))],
                     axis=1)


def _run_epochs(backend, step, params, opt_state, data, batches, last, n_epochs):
    """``n_epochs`` epochs of ``step`` (a scan on a compiling backend, else a Python loop)
    over ``data = (x, y, w)``."""
    x, y, w = data
    epoch = _epoch_function(backend, step, x, y, w)
    if backend.compiles:
        rows = None if batches is None else (batches, last)
        (params, opt_state), (losses, totals) = backend.scan(epoch, (params, opt_state), rows,
                                                             length=n_epochs)
        return params, opt_state, losses, totals
    # A Python loop over the epochs: Ctrl-C keeps the epochs completed so far. It may come
    # between any two operations, so ``done`` (the weights and state after how many
    # epochs) changes in one assignment, after the epoch's loss and totals are recorded.
    done, losses, totals = ((params, opt_state), 0), [], []
    try:
        for e in range(n_epochs):
            rows = None if batches is None else (
                batches[e, ...], None if last is None else last[e, ...])
            carry, (loss, total) = epoch(done[0], rows)
            losses.append(loss)
            totals.append(total)
            done = (carry, e + 1)
    except KeyboardInterrupt as exc:
        (params, opt_state), n_done = done
        raise InterruptedRun(params, opt_state, losses[:n_done], totals[:n_done]) from exc
    (params, opt_state), _ = done
    return params, opt_state, backend.xp.stack(losses), backend.xp.stack(totals)


def _epoch_function(backend, step, x, y, w):
    """``epoch(carry, rows) -> (carry, (mean loss, totals))``: one epoch of ``step`` over the
    batches ``rows = (full, rest)`` (None: one full batch). A batch's loss counts with its
    size, or with ``w`` its weights' sum; the batches' training totals are summed."""
    xp = backend.xp
    take = backend.take_rows

    def batch(carry, rows):
        wb = None if w is None else take(w, rows)
        params, opt_state, loss, totals = step(*carry, take(x, rows), take(y, rows), wb)
        return (params, opt_state), (loss if w is None else loss * xp.sum(wb), totals)

    def epoch(carry, rows):
        if rows is None:  # full batch: the data as it is
            params, opt_state, loss, totals = step(*carry, x, y, w)
            return (params, opt_state), (loss, totals)
        full, rest = rows
        carry, (losses, totals) = backend.scan(batch, carry, full)
        totals = xp.sum(totals, axis=0)
        if w is None:  # a batch's loss times its size
            total = xp.sum(losses) * full.shape[-1]
        else:  # the batches returned loss * sum(w_b) already
            total = xp.sum(losses)
        if rest is not None:
            carry, (loss, rest_totals) = batch(carry, rest)
            total = total + (loss * rest.shape[-1] if w is None else loss)
            totals = totals + rest_totals
        if w is None:
            return carry, (total / x.shape[0], totals)
        weight = xp.sum(w)
        return carry, (total / xp.where(weight > 0, weight, 1.0), totals)

    return epoch


def _check_users_schedules(backend, optimizer):
    """Try each learning-rate schedule not from `mlp.schedules` once (`check_schedule`)."""
    for schedule in learning_rate_schedules(optimizer):
        if type(schedule) not in SCHEDULES.values():
            check_schedule(backend, schedule)


def batch_indices(rng, n, batch_size, n_epochs, shuffle):
    """Host row indices for ``n_epochs`` epochs: ``(batches, last)`` (see `make_run`)."""
    if shuffle:
        order = np.stack([rng.permutation(n) for _ in range(n_epochs)])
    else:
        order = np.broadcast_to(np.arange(n), (n_epochs, n))
    n_full = (n // batch_size) * batch_size
    batches = order[:, :n_full].reshape(n_epochs, n // batch_size, batch_size)
    last = order[:, n_full:] if n_full < n else None
    return batches, last
