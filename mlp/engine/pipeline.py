"""The run: steps composed into epochs, epochs into a run, one definition for all.

`make_run` builds ``run(params, opt_state, x, y, w, batches, last, n_epochs, streams,
ids)``
for a network, an optimizer and an `Objective` (mlp's own, or scikit-learn's),
and runs it with one of two executors:

- pure (`mlp.engine.pure`): on a backend that compiles, the whole run is one
  compiled call (`Backend.jit` + `Backend.scan` = ``lax.scan``); elsewhere the
  same code runs as Python loops;
- in place (`mlp.engine.inplace`): where the backend offers in-place operations
  (``backend.inplace_ops()``) and every piece declares an in-place kernel, the
  same floating-point operations into preallocated buffers, bit-identical.

Both executors run their epochs under one Ctrl-C protocol (`run_epochs`): a
KeyboardInterrupt hands back the weights, optimizer state, losses and training
totals of the same completed epochs, as an `InterruptedRun`.

``alpha`` and ``clip_norm`` act at different places: ``alpha`` is the L2 term
``0.5 * alpha * sum ||W||^2`` of the loss (part of the objective, so the loss
the run reports includes it), while ``clip_norm`` is a gradient transformation,
`mlp.optimizers.clip_by_global_norm`, chained before the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

import numpy as np

from .._typing import Array, Namespace, Optimizer, Params
from ..core import NetworkSpec
from ..optimizers import check_schedule, learning_rate_schedules
from ..schedules import SCHEDULES
from ..tree import tree_leaves
from . import inplace
from .kernels import mirror
from .layout import Layout
from .pure import Carry, PureEpochs, Rows, epoch_function, make_step

if TYPE_CHECKING:
    from ..backends import Backend

#: ``run(params, opt_state, x, y, w, batches, last, n_epochs, streams=None, ids=None) ->
#: (params, opt_state, losses, totals)`` (`make_run`).
Run: TypeAlias = Callable[..., tuple[Any, Any, Array, Array | None]]
_Built = TypeVar("_Built")


@dataclass(frozen=True)
class Objective:
    """What a step minimises and what an epoch reports.

    Parameters
    ----------
    per_batch_l2 : bool, default False
        The L2 coefficient of a batch is ``alpha / S``, ``S`` the sum of its row
        weights (its rows without weights), as scikit-learn's; False: ``alpha``.
    weighted_mean : bool, default True
        With row weights, a batch's loss counts in the epoch's mean with its
        weights' sum (the epoch's loss is the weighted mean over its rows);
        False: with its number of rows always, as scikit-learn's ``loss_curve_``.
    totals : bool, default True
        Compute the training totals (`mlp.losses.Loss.train_totals`) that `fit`
        logs as training scores; scikit-learn keeps none.
    pack_limit : int or None, default None
        On a backend that does not compile, the pure executor packs the layers
        (`Layout.pack`) only where their weights average at most this many
        entries (None: always, where the optimizer gains from it, `packs`).
    """

    per_batch_l2: bool = False
    weighted_mean: bool = True
    totals: bool = True
    pack_limit: int | None = None

    def l2(self, xp: Namespace, alpha: float, x: Array, w: Array | None) -> float | Array:
        """The L2 coefficient of the batch ``x`` with row weights ``w`` (or None)."""
        if not self.per_batch_l2 or not alpha:
            return alpha
        return alpha / (x.shape[0] if w is None else xp.sum(w))

    def weighted(self, w: Array | None) -> bool:
        """Whether the epoch weighs its batches by their weights' sums."""
        return w is not None and self.weighted_mean


#: `fit`'s objective: the loss plus ``0.5 * alpha * sum ||W||^2``, epochs report the
#: (weighted) mean loss and the training totals.
MLP_OBJECTIVE = Objective()
#: scikit-learn's MLP: the L2 coefficient ``alpha / sum(w_batch)``, the epoch's loss
#: weighted by the batches' numbers of rows, no training totals; small layers packed.
SKLEARN_OBJECTIVE = Objective(per_batch_l2=True, weighted_mean=False, totals=False,
                              pack_limit=2**16)


class InterruptedRun(Exception):
    """Ctrl-C inside a Python-loop run, after ``len(losses)`` completed epochs whose
    weights, optimizer state and training totals it carries (`fit` keeps them, then
    re-raises)."""

    def __init__(self, params: Any, opt_state: Any, losses: Sequence[Array],
                 totals: Sequence[Array | None] = ()) -> None:
        super().__init__("interrupted")
        self.params, self.opt_state, self.losses = params, opt_state, losses
        self.totals = totals


def packs(optimizer: Optimizer, opt_state: Any) -> bool:
    """Whether a run on a backend that does not compile (where each array operation has
    a fixed cost) updates the parameters packed (`Layout.pack`): for an elementwise
    optimizer (``optimizer.elementwise``) whose state holds arrays of the parameters'
    shapes (momentum, moments: several operations per array, done once for all
    layers). Without such state (plain SGD: one or two operations per array) packing
    the gradients would cost more than it saves."""
    return (bool(getattr(optimizer, "elementwise", False))
            and any(getattr(leaf, "ndim", 0) > 0 for leaf in tree_leaves(opt_state)))


class Executor(Protocol):
    """What `run_epochs` runs: `mlp.engine.pure.PureEpochs` or
    `mlp.engine.inplace.Training`."""

    def save(self) -> None:
        """Keep the state, to `restore` it if the next epoch is interrupted."""

    def restore(self) -> None:
        """Put back the state `save` kept."""

    def epoch(self, rows: Rows) -> tuple[Array, Array | None]:
        """One epoch over ``rows``: its mean loss and training totals (or None)."""

    def result(self) -> Carry:
        """``(params, opt_state)`` after the epochs run so far."""

    def stack(self, losses: Sequence[Array]) -> Array:
        """The epochs' losses (0-d arrays) as one ``(n_epochs,)`` array."""


def run_epochs(executor: Executor, batches: Array | None, last: Array | None, n_epochs: int
               ) -> tuple[list[Array], list[Array | None]]:
    """``n_epochs`` epochs of ``executor``; ``(losses, totals)`` lists, one entry each.

    The one Ctrl-C protocol: a KeyboardInterrupt may come between any two
    operations, so ``mark`` is twice the epochs completed and recorded, plus one
    from when epoch ``e`` may change the executor's state (after `save`) until it
    is recorded; each change of it is a single assignment. On Ctrl-C the executor
    is put back to the start of an unfinished epoch and an `InterruptedRun`
    carries its result and the completed epochs' losses and totals.
    """
    losses: list[Array] = []
    totals: list[Array | None] = []
    mark = 0
    try:
        for e in range(n_epochs):
            executor.save()
            mark = 2 * e + 1
            rows = None if batches is None else (batches[e, ...],
                                                 None if last is None else last[e, ...])
            loss, total = executor.epoch(rows)
            losses.append(loss)
            totals.append(total)
            mark = 2 * e + 2
    except KeyboardInterrupt as exc:
        done = mark // 2
        if mark % 2:  # within epoch `done`: back to its start
            executor.restore()
        raise InterruptedRun(*executor.result(), losses[:done], totals[:done]) from exc
    return losses, totals


def join_data_totals(xp: Namespace, totals: Array | None, extra: Array | None
                     ) -> Array | None:
    """``totals: (n_epochs, t)`` or one epoch's ``(t,)`` followed by the data's training
    totals ``extra: (d,)`` (`mlp.losses.Loss.data_totals`, the same for every epoch);
    None without training totals (then both are None)."""
    if totals is None or extra is None:
        return None
    if totals.ndim == 1:
        return xp.concat([totals, extra])
    return xp.concat([totals, xp.broadcast_to(extra[None, :], (totals.shape[0], extra.shape[0]))],
                     axis=1)


def make_run(backend: Backend, spec: NetworkSpec, optimizer: Optimizer, alpha: float = 0.0,
             clip_norm: float | None = None, objective: Objective = MLP_OBJECTIVE,
             counted: bool = False) -> Run:
    """``run(params, opt_state, x, y, w, batches, last, n_epochs, streams=None, ids=None)
    -> (params, opt_state, losses, totals)``.

    Parameters
    ----------
    backend : Backend
    spec : NetworkSpec
    optimizer : transformation
    alpha : float, default 0.0
        The L2 coefficient (per batch as ``objective`` says).
    clip_norm : float or None
        ``clip_by_global_norm(clip_norm)`` chained before ``optimizer``.
    objective : Objective, default MLP_OBJECTIVE
    counted : bool, default False
        The rows are padded to `mlp.buckets`' sizes (on a backend that compiles):
        ``last: (n_epochs, slots)`` then holds the number of the data's rows in each
        batch slot of ``batches: (n_epochs, slots, batch_size)``
        (`mlp.buckets.batch_plan`), and each epoch runs the slots that hold any.

    Returns
    -------
    run : callable
        ``w: (n,)`` are the rows' weights in the model's dtype (None: unweighted);
        batches cut them with the same indices as ``x`` and ``y``.
        ``batches: (n_epochs, n_batches, batch_size)`` and ``last: (n_epochs, r)``
        hold row indices (``None`` for full-batch training, or when the batch
        size divides the data); ``losses: (n_epochs,)`` are the epochs' mean
        losses (see `Objective.weighted_mean`; 0 if the weights sum to 0);
        ``totals: (n_epochs, t + d)`` are the sums over each epoch's batches of
        their training totals (`mlp.losses.Loss.train_totals`, with the weights
        of each step), then the data's own (`mlp.losses.Loss.data_totals`, the
        same for every epoch); None where the objective keeps none.
        ``streams: (n_epochs, 1)`` int32 are the epochs' dropout keys
        (`mlp.dropout.epoch_streams`; None: no unit dropped); ``ids: (n,)`` int32
        are the rows' numbers in the training data that their masks follow, where
        those are not their indices in ``x`` (None: they are). The pure
        run is compiled with ``backend.jit`` (``n_epochs`` is static); where
        the backend offers in-place operations, the in-place executor runs
        instead (`fast_run`). A learning-rate schedule of the user's own is
        tried once first (`check_schedule`), so that a mistake in it gets a
        clear message rather than an error from inside the run.
    """
    _check_users_schedules(backend, optimizer)
    pure = backend.jit(_pure_run(backend, spec, optimizer, alpha, clip_norm, objective,
                                 counted), static_argnums=(7,))
    if counted or spec.drops or spec.normalizes:
        # padded rows: the in-place executor takes the rows as they are. Dropout: the
        # in-place kernels have no masked forms, and the pure run trains with it instead:
        # on the digits workload (64-128-64-10, Adam, batch 64, NumPy, one thread) a
        # plain step took 300 us in place and 299 us pure, one with dropout 863 us, of
        # which drawing the masks took 211 us (benchmarks/regularization.py, a shared
        # 2-core machine): in-place masked kernels would save about what in place saves
        # a plain step on this workload, nothing measurable. Batch normalization: the same
        # (no normalized kernels); on that workload a plain step took 189 us in place and
        # 188 us pure, one with batch_norm=True 580 us pure (its ~35 small operations a
        # layer, forward and backward, and the updates unpacked: `packs_layers`), so
        # in-place kernels could save what in place saves a plain step there: nothing
        # measurable
        return pure
    return fast_run(backend, pure, spec, optimizer, alpha, clip_norm, objective) or pure


def _pure_run(backend: Backend, spec: NetworkSpec, optimizer: Optimizer, alpha: float,
              clip_norm: float | None, objective: Objective, counted: bool = False) -> Run:
    """The run of the pure executor (to be compiled by ``backend.jit``)."""
    xp = spec.xp
    step = make_step(spec, optimizer, alpha, clip_norm, None, objective)

    def run(params: Params, opt_state: Any, x: Array, y: Array, w: Array | None,
            batches: Array | None, last: Array | None, n_epochs: int,
            streams: Array | None = None, ids: Array | None = None
            ) -> tuple[Any, Any, Array, Array | None]:
        extra = _data_totals(spec, objective, y, w)  # once, not per step
        streams = streams if spec.drops else None
        if not backend.compiles:
            executor = _pure_epochs(backend, spec, (optimizer, alpha, clip_norm, counted),
                                    objective, (params, opt_state), (x, y, w), streams, ids)
            return _finish(xp, executor, (batches, last, n_epochs), extra)
        epoch = epoch_function(backend, step, x, y, w, objective.weighted(w), counted, ids)

        def scanned(carry: Carry, xs: Any) -> Any:
            full, rest, stream = xs
            return epoch(carry, None if full is None else (full, rest), stream)

        (params, opt_state), (losses, totals) = backend.scan(
            scanned, (params, opt_state), (batches, last, streams), length=n_epochs)
        return params, opt_state, losses, join_data_totals(xp, totals, extra)

    return run


def _pure_epochs(backend: Backend, spec: NetworkSpec,
                 training: tuple[Optimizer, float, float | None, bool], objective: Objective,
                 start: Carry, data: tuple[Array, Array, Array | None],
                 streams: Array | None = None, ids: Array | None = None) -> PureEpochs:
    """`PureEpochs` from ``start = (params, opt_state)``, packed where it pays
    (`packs_layers`); ``training = (optimizer, alpha, clip_norm, counted)``; ``streams``:
    the epochs' dropout streams (or None); ``ids``: the rows' numbers (`make_run`)."""
    xp, (params, opt_state), (optimizer, alpha, clip_norm, counted) = spec.xp, start, training
    weighted = objective.weighted(data[2])
    if packs_layers(optimizer, opt_state, params, objective):
        layout = Layout(xp, [W.shape for W, _ in params])
        step = make_step(spec, optimizer, alpha, clip_norm, layout, objective)
        return PureEpochs(xp, epoch_function(backend, step, *data, weighted, counted, ids),
                          (layout.pack(params), layout.pack_tree(opt_state)),
                          lambda c: (layout.unpack(c[0]), layout.unpack_tree(c[1], opt_state)),
                          streams)
    step = make_step(spec, optimizer, alpha, clip_norm, None, objective)
    # as after every step: the weights in new arrays
    params = [(xp.asarray(W, copy=True), b) for W, b in params]
    return PureEpochs(xp, epoch_function(backend, step, *data, weighted, counted, ids),
                      (params, opt_state),
                      lambda c: c, streams)


def packs_layers(optimizer: Optimizer, opt_state: Any, params: Params, objective: Objective
                 ) -> bool:
    """Whether a run on a backend that does not compile updates the parameters packed:
    where the optimizer gains from it (`packs`) and, with ``objective.pack_limit``, the
    layers' weights average at most that many entries (on large layers packing the
    gradients is one copy too many)."""
    if not packs(optimizer, opt_state) or any(b.ndim != 1 for _, b in params):
        return False  # (a batch-normalized layer's b has rows of its own: `mlp.batch_norm`)
    if objective.pack_limit is None:
        return True
    shapes = [W.shape for W, _ in params]
    entries: int = sum(a * b for a, b in shapes)
    return entries <= objective.pack_limit * len(shapes)


def _data_totals(spec: NetworkSpec, objective: Objective, y: Array, w: Array | None
                 ) -> Array | None:
    """The data's training totals (`mlp.losses.Loss.data_totals`), or None without totals."""
    return spec.loss.data_totals(spec.xp, y, w) if objective.totals else None


def _finish(xp: Namespace, executor: Executor,
            rows: tuple[Array | None, Array | None, int], extra: Array | None
            ) -> tuple[Any, Any, Array, Array | None]:
    """Run ``executor``'s epochs (``rows = (batches, last, n_epochs)``) under `run_epochs`;
    the run's result, the data's totals joined to each epoch's."""
    try:
        losses, totals = run_epochs(executor, *rows)
    except InterruptedRun as part:
        part.totals = [join_data_totals(xp, t, extra) for t in part.totals]
        raise
    params, opt_state = executor.result()
    stacked = None if extra is None else xp.stack(totals)
    return params, opt_state, executor.stack(losses), join_data_totals(xp, stacked, extra)


def fast_run(backend: Backend, pure_run: Run, spec: NetworkSpec, optimizer: Optimizer,
             alpha: float = 0.0, clip_norm: float | None = None,
             objective: Objective = MLP_OBJECTIVE) -> Run | None:
    """A run with `make_run`'s contract and ``pure_run``'s results, bit for bit, on the
    in-place executor; None where ``backend`` offers no in-place operations
    (``backend.inplace_ops()``) or ``optimizer`` has no in-place form (`mirror`).

    The run calls ``pure_run`` itself for inputs the in-place executor does not
    take (see `mlp.engine.inplace.executor`).
    """
    ops = backend.inplace_ops()
    if ops is None or mirror(optimizer) is None:
        return None

    def run(params: Params, opt_state: Any, x: Array, y: Array, w: Array | None,
            batches: Array | None, last: Array | None, n_epochs: int,
            streams: Array | None = None, ids: Array | None = None
            ) -> tuple[Any, Any, Array, Array | None]:
        # (streams, ids: no unit drops here, `make_run` trains dropout pure). Where the
        # pure run packs the parameters (`packs_layers`), the global norm of clipping is
        # summed over the two packed arrays instead of per layer
        packed = packs_layers(optimizer, opt_state, params, objective)
        executor = inplace.executor(ops, spec, (optimizer, alpha, clip_norm, objective),
                                    (params, opt_state), (x, y, w, batches), packed)
        if executor is None:
            return pure_run(params, opt_state, x, y, w, batches, last, n_epochs)
        extra = _data_totals(spec, objective, y, w)
        with ops.threads_for(executor.largest_product(x, batches)):
            return _finish(spec.xp, executor, (batches, last, n_epochs), extra)

    return run


def _check_users_schedules(backend: Backend, optimizer: Optimizer) -> None:
    """Try each learning-rate schedule not from `mlp.schedules` once (`check_schedule`)."""
    for schedule in learning_rate_schedules(optimizer):
        kind: type = type(schedule)
        if kind not in SCHEDULES.values():
            check_schedule(backend, schedule)


def batch_indices(rng: np.random.Generator, n: int, batch_size: int, n_epochs: int,
                  shuffle: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Host row indices for ``n_epochs`` epochs: ``(batches, last)`` (see `make_run`)."""
    if shuffle:
        order = np.stack([rng.permutation(n) for _ in range(n_epochs)])
    else:
        order = np.broadcast_to(np.arange(n), (n_epochs, n))
    n_full = (n // batch_size) * batch_size
    batches = order[:, :n_full].reshape(n_epochs, n // batch_size, batch_size)
    last = order[:, n_full:] if n_full < n else None
    return batches, last


# ------------------------------------------------------------------ the cache
_BUILT: dict[tuple[Backend, Hashable], Any] = {}
#: Built runs kept (least recently used dropped first).
CACHE_SIZE = 64


def cached(backend: Backend, key: Hashable, factory: Callable[[], _Built]) -> _Built:
    """``factory()``, built (and on JAX compiled) once per ``(backend, key)`` and shared.

    ``factory`` must depend only on ``backend`` and ``key`` (which must be hashable).
    """
    full_key = (backend, key)
    built: _Built | None = _BUILT.pop(full_key, None)
    fn = factory() if built is None else built
    _BUILT[full_key] = fn
    while len(_BUILT) > CACHE_SIZE:
        _BUILT.pop(next(iter(_BUILT)))
    return fn
