"""The pieces the estimators train with: one epoch of mini-batch steps, the
full-batch loss and gradient for L-BFGS, and the forward pass.

The epoch is the engine's run (`mlp.engine.pipeline.make_run`) with
scikit-learn's objective (`mlp.engine.pipeline.SKLEARN_OBJECTIVE`), so it runs
on the in-place executor where the backend offers one (NumPy, PyTorch on the
CPU) and compiled on JAX. Each piece is built once per backend and network in
the engine's cache (`mlp.engine.pipeline.cached`) and shared by every estimator
(JAX compiles per new shape).

scikit-learn's step, for a batch with row weights ``w`` (sum ``S``), is

    g = grad(weighted mean loss) + (alpha / S) * W        (weights only, not biases)
    SGD: v = momentum * v - lr * g;  W += v   (Nesterov: W += momentum * v - lr * g)
    Adam: as `mlp.optimizers.Adam` with ``learning_rate_init``

so scikit-learn's SGD is ``chain(scale_by_learning_rate(lr), trace(momentum,
nesterov))``: the learning rate applies *before* the momentum, and the velocity
keeps the learning rates it was built with when ``invscaling`` or ``adaptive``
change it between epochs (through the learning-rate scale in the optimizer's
state, `mlp.optimizers.with_learning_rate_scale`: no recompilation).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from .. import core
from .._typing import Array, Optimizer, Params
from ..engine.layout import Layout
from ..engine.pipeline import SKLEARN_OBJECTIVE, InterruptedRun, cached, make_run
from ..optimizers import Adam, Chain, chain, scale_by_learning_rate, trace

if TYPE_CHECKING:
    from ..backends import Backend
    from ..core import NetworkSpec

_Built = TypeVar("_Built")
#: ``epoch(params, state, x, y, w, batches, last) -> (params, state, mean loss)``.
Epoch = Callable[..., tuple[Any, Any, float]]


def compiled(backend: Backend, key: Hashable, factory: Callable[[], _Built]) -> _Built:
    """``factory()`` built once per ``(backend, key)`` (`mlp.engine.pipeline.cached`)."""
    return cached(backend, ("sklearn", key), factory)


def make_optimizer(solver: str, learning_rate_init: float, momentum: float,
                   nesterovs_momentum: bool, beta_1: float, beta_2: float, epsilon: float
                   ) -> Chain | Adam:
    """The mlp optimizer for scikit-learn's ``solver`` (see above)."""
    if solver == "sgd":
        momentum_: list[Optimizer] = ([trace(float(momentum), bool(nesterovs_momentum))]
                                      if momentum else [])
        return chain(scale_by_learning_rate(float(learning_rate_init)), *momentum_)
    return Adam(float(learning_rate_init), float(beta_1), float(beta_2), float(epsilon))


def make_epoch(backend: Backend, spec: NetworkSpec, optimizer: Optimizer, alpha: float,
               counted: bool = False) -> Epoch:
    """``epoch(params, state, x, y, w, batches, last) -> (params, state, mean loss)``.

    One epoch of the engine's run with scikit-learn's objective (its per-batch L2
    coefficient ``alpha / S``, the L2 term in the loss, each batch's loss weighed by
    its number of rows as scikit-learn's ``loss_curve_`` does, no training totals).
    ``batches: (1, n_batches, batch_size)`` and ``last: (1, r)`` (or None) are one
    epoch's row indices drawn on the host (``counted``: rows padded to `mlp.buckets`'
    sizes, and ``last: (1, slots)`` the rows in each batch slot,
    `mlp.buckets.batch_plan`). The mean loss comes back as a host float (read without
    an array operation on the device). Ctrl-C leaves ``params`` and ``state`` as they
    were and raises KeyboardInterrupt, as scikit-learn's epoch does. ``streams: (1, 1)``: the
    epoch's dropout key (`mlp.dropout.epoch_streams`), or None.
    """
    run = make_run(backend, spec, optimizer, alpha, None, SKLEARN_OBJECTIVE, counted=counted)

    def epoch(params: Params, state: Any, x: Array, y: Array, w: Array | None, batches: Array,
              last: Array | None, streams: Array | None = None) -> tuple[Any, Any, float]:
        noise = {} if streams is None else {"streams": streams}  # (dropout's, `make_run`)
        try:
            params, state, losses, _ = run(params, state, x, y, w, batches, last, 1, **noise)
        except InterruptedRun as part:  # no completed epoch: the caller keeps its own
            raise KeyboardInterrupt from part
        return params, state, float(backend.to_numpy(losses)[0])

    return epoch


def make_loss_and_gradients(backend: Backend, spec: NetworkSpec, alpha: float
                            ) -> Callable[..., tuple[Array, Array, Array]]:
    """``f(flat_w, flat_b, x, y, w) -> (loss, flat_dw, flat_db)``: the full-batch objective
    for L-BFGS on packed weights (scikit-learn's order: all weights, then all biases)."""
    xp = spec.xp

    def f(flat_w: Array, flat_b: Array, shapes: tuple[tuple[int, int], ...], x: Array, y: Array,
          w: Array | None) -> tuple[Array, Array, Array]:
        layout = Layout(xp, shapes, aligned=False)
        l2 = SKLEARN_OBJECTIVE.l2(xp, alpha, x, w)
        loss, grads = core.loss_and_gradients(spec, layout.unpack([(flat_w, flat_b)]), x, y,
                                              l2, w)
        (dw, db), = layout.pack(grads)
        return loss, dw, db

    return backend.jit(f, static_argnums=(2,))


def make_forward(backend: Backend, spec: NetworkSpec) -> Callable[[Params, Array], Array]:
    """``forward(params, x) -> (n, n_outputs)``, the network's output."""
    return backend.jit(lambda params, x: core.forward(spec, params, x))
