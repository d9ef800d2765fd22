"""The compiled pieces the estimators train with: one epoch of mini-batch steps,
the full-batch loss and gradient for L-BFGS, and the forward pass.

Each is built from the core (`mlp.steps.make_step`,
`mlp.core.loss_and_gradients`, `mlp.core.forward`) and an optimizer of
`mlp.optimizers`, compiled once per backend and network with `Backend.jit`,
and shared by every estimator (JAX compiles per new shape).

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

from .. import core, steps
from ..optimizers import Adam, chain, scale_by_learning_rate, trace
from ..steps import Packer, packs

#: Pack layers whose weights average at most this many entries (see `make_epoch`).
PACK_LIMIT = 2**16

_CACHE: dict = {}
_CACHE_SIZE = 64


def compiled(backend, key, factory):
    """``factory()`` compiled once per ``(backend, key)`` (least recently used dropped)."""
    full_key = (backend.name, key)
    fn = _CACHE.pop(full_key, None)
    if fn is None:
        fn = factory()
    _CACHE[full_key] = fn
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    return fn


def make_optimizer(solver, learning_rate_init, momentum, nesterovs_momentum, beta_1, beta_2,
                   epsilon):
    """The mlp optimizer for scikit-learn's ``solver`` (see above)."""
    if solver == "sgd":
        momentum_ = [trace(float(momentum), bool(nesterovs_momentum))] if momentum else []
        return chain(scale_by_learning_rate(float(learning_rate_init)), *momentum_)
    return Adam(float(learning_rate_init), float(beta_1), float(beta_2), float(epsilon))


def l2_coefficient(xp, alpha, x, w):
    """scikit-learn's per-batch L2 coefficient ``alpha / S``, ``S = sum(w)`` (rows if None)."""
    if not alpha:
        return 0.0
    return alpha / (x.shape[0] if w is None else xp.sum(w))


def make_step(spec, optimizer, alpha, packer=None):
    """``step(params, state, x, y, w) -> (params, state, loss)`` for one batch.

    `mlp.steps.make_step` with the L2 coefficient of the batch (`l2_coefficient`);
    ``w`` is None (unweighted) or the batch's row weights. ``loss`` includes
    the L2 term, as scikit-learn's batch loss does.
    """
    xp = spec.xp

    def step(params, state, xb, yb, wb):
        l2 = l2_coefficient(xp, alpha, xb, wb)
        params, state, loss, _ = steps.make_step(spec, optimizer, l2, None, packer)(
            params, state, xb, yb, wb)  # the training scores: scikit-learn keeps none
        return params, state, loss

    return step


def make_epoch(backend, spec, optimizer, alpha):
    """``epoch(params, state, x, y, w, batches, last) -> (params, state, mean loss)``.

    ``batches: (n_batches, batch_size)`` and ``last: (r,)`` (or None) are row
    indices drawn on the host; the mean loss weighs each batch's loss by its
    number of rows, as scikit-learn's ``loss_curve_`` does. On backends that do
    not compile, an elementwise optimizer with per-parameter state (`mlp.steps.packs`)
    updates small layers as one flat array (`mlp.steps.Packer`; identical results):
    there each array operation costs a fixed overhead, while on large layers packing
    the gradients is one copy too many.
    """
    xp = spec.xp

    def epoch(params, state, x, y, w, batches, last):
        shapes = [W.shape for W, _ in params]
        small = sum(a * b for a, b in shapes) <= PACK_LIMIT * len(shapes)
        packed = not backend.compiles and small and packs(optimizer, state)
        packer = Packer(xp, shapes) if packed else None
        step = make_step(spec, optimizer, alpha, packer)

        def batch(carry, rows):
            p, s = carry
            wb = None if w is None else backend.take_rows(w, rows)
            p, s, loss = step(p, s, backend.take_rows(x, rows), backend.take_rows(y, rows),
                              wb)
            return (p, s), loss

        carry = (params, state) if packer is None else (packer.pack(params),
                                                        packer.pack_tree(state))
        carry, losses = backend.scan(batch, carry, batches)
        total = xp.sum(losses) * batches.shape[1]
        if last is not None:
            carry, loss = batch(carry, last)
            total = total + loss * last.shape[0]
        p, s = carry
        if packer is not None:
            p, s = packer.unpack(p), packer.unpack_tree(s, state)
        return p, s, total / x.shape[0]

    return backend.jit(epoch)


def make_loss_and_gradients(backend, spec, alpha):
    """``f(flat_w, flat_b, x, y, w) -> (loss, flat_dw, flat_db)``: the full-batch objective
    for L-BFGS on packed weights (scikit-learn's order: all weights, then all biases)."""
    xp = spec.xp

    def f(flat_w, flat_b, shapes, x, y, w):
        packer = Packer(xp, shapes, aligned=False)
        loss, grads = core.loss_and_gradients(spec, packer.unpack([(flat_w, flat_b)]), x, y,
                                              l2_coefficient(xp, alpha, x, w), w)
        (dw, db), = packer.pack(grads)
        return loss, dw, db

    return backend.jit(f, static_argnums=(2,))


def make_forward(backend, spec):
    """``forward(params, x) -> (n, n_outputs)``, the network's output."""
    return backend.jit(lambda params, x: core.forward(spec, params, x))
