"""The fast path of the eager backends (NumPy, PyTorch on the CPU): the pure run's
arithmetic, in place.

Where every array operation runs eagerly, small batches spend their time on
per-operation overhead and on allocating a fresh array for every intermediate
result, not on arithmetic. This module runs the very same floating-point
operations as the pure path (`mlp.core.loss_and_gradients`, the
transformations of `mlp.optimizers` and `apply_updates`), in the same order and
on arrays of the same shapes, but

- into buffers allocated once per run call and batch size (``out=``);
- with every weight, gradient, update and optimizer-state array a view into
  one flat vector laid out as `mlp.steps.Packer` packs them (all weight
  matrices, each on a 64-byte boundary, then all biases), so each elementwise
  transformation updates all layers with a handful of operations, the updates
  transformed in place; every operand of a matrix product (weights, their
  gradients, batches, activations) sits on a 64-byte boundary as a fresh
  PyTorch tensor does in the pure path, since a library may pick its kernel
  (and so its rounding) by alignment, as MKL does on AMD processors;
- with batches gathered into buffers;
- with ReLU, the mean squared error and the fused softmax cross-entropy in place,
  and their training totals without extra passes: r2's sums from the loss's own
  squares, and for unweighted mini-batch cross-entropy each step's predicted
  classes, counted against the labels at the end of the epoch (whole numbers,
  summed as the pure epoch sums them).

It is written once for both libraries: the in-place operations come from an
`InplaceOps` object of the backend (``backends._numpy.NumpyInplace``,
``backends._torch.TorchInplace``), each one the very function the library's
array-API namespace calls in the pure path, with ``out=``.

Every element therefore sees exactly the same IEEE operations as in the pure
path, and the results are identical bit for bit (``tests/test_fast_path.py``
proves it on NumPy and PyTorch for every optimizer, activation, loss and dtype).
The pure code in `mlp/` stays the definition: the scalars (bias corrections,
learning rates, schedules, step counts) come from the same expressions on the
same values, and gradient clipping calls `ClipByGlobalNorm.update` itself (its
norm is summed over the arrays the pure path sums: per layer, or the two packed
ones). Sample weights take the pure path's weighted forms
(`mlp.core.zero_weight_rows`, the loss's weighted ``value_and_delta``, the
epoch's weighted mean). Anything this module does not recognise - a
transformation of the user's own or a subclass of a built-in one, arrays that
are not float arrays of the backend's library of one dtype, weights that are
transposed views (a matrix product may round differently on them), an
optimizer state of another dtype or structure - runs the pure path unchanged;
activations and losses other than mlp's own ReLU, mse and cross-entropy
(``activations.BUILT_IN``, ``losses.BUILT_IN``: also when one is registered
anew under their names) are computed by their pure functions.

Ctrl-C, which may surface between any two statements, hands back the weights,
optimizer state, losses and totals of the same completed epochs (`_epochs`);
the weights handed back are arrays of their own, not views into the store
that holds the optimizer state beside them.

The in-place transformations are in `_BLOCKS` (one small class per building
block of `mlp.optimizers`); named optimizers and chains are taken apart into
them by `_mirror`, so a change of the optimizer API touches only that part.
"""

from __future__ import annotations

from typing import Protocol

from array_api_compat import array_namespace

from mlp import activations, losses
from mlp.core import l2_penalty, zero_weight_rows
from mlp.optimizers import (
    SGD,
    Adam,
    AdamW,
    AddDecayedWeights,
    Chain,
    ClipByGlobalNorm,
    EmptyState,
    RMSprop,
    ScaleByAdam,
    ScaleByAdamState,
    ScaleByLearningRate,
    ScaleByLearningRateState,
    ScaleByRms,
    ScaleByRmsState,
    Trace,
    TraceState,
    _rate,
    clip_by_global_norm,
)
from mlp.steps import InterruptedRun, aligned_offsets, join_data_totals, packs
from mlp.tree import tree_leaves


class InplaceOps(Protocol):
    """The in-place operations of one array library, as its pure path computes them.

    ``add``, ``subtract``, ``multiply``, ``divide`` ``(a, b, *, out)``, ``sqrt``,
    ``exp``, ``log`` ``(a, *, out)`` and ``matmul(a, b, *, out)`` write into ``out``
    (and return it); ``a`` and ``b`` are arrays or Python floats.
    """

    float_dtypes: tuple  #: the library's float32 and float64
    bool: object  #: its boolean dtype

    def is_floats(self, arrays, dtype) -> bool:
        """Whether every one of ``arrays`` is this library's array (on the backend's
        device) of ``dtype``."""

    def is_indices(self, rows) -> bool:
        """Whether ``rows`` is an integer array of this library (row indices)."""

    def is_contiguous(self, a) -> bool:
        """Whether ``a`` is laid out in row-major order (not a transposed view)."""

    def empty(self, shape, dtype):
        """A new uninitialised array."""

    def zeros(self, shape, dtype):
        """A new array of zeros."""

    def copy(self, dst, src):
        """``dst[...] = src``."""

    def take_rows(self, x, rows, *, out):
        """``xp.take(x, rows, axis=0)`` into ``out``."""

    def sum(self, x, *, axis, keepdims=False, out=None):
        """``xp.sum(x, axis=axis, keepdims=keepdims)`` (into ``out`` if given)."""

    def total(self, x):
        """``xp.sum(x)``: the sum of all elements."""

    def max(self, x, *, axis, keepdims=False, out):
        """``xp.max(x, axis=axis, keepdims=keepdims)`` into ``out``."""

    def relu(self, z):
        """``xp.maximum(z, 0.0)`` into ``z``; returns ``z``."""

    def positive(self, z, *, out):
        """``z > 0`` into the boolean ``out``."""

    def argmax_rows(self, z, *, out):
        """``xp.argmax(z, axis=1)`` into ``out``."""

    def stack(self, scalars):
        """The 0-d arrays (or scalars) ``scalars`` as one ``(n,)`` array."""


# ------------------------------------------------------------- flat layout


class _Layout:
    """Offsets of every ``(W, b)`` in one flat vector: all ``W`` (layer by layer, each on a
    64-byte boundary, zeros between them), then all ``b``, as `mlp.steps.Packer` packs
    them."""

    def __init__(self, shapes):
        self.shapes = [tuple(s) for s in shapes]
        self.w_slices, self.n_weights = aligned_offsets([i * o for i, o in self.shapes])
        self.b_slices, kb = [], self.n_weights
        for _, fan_out in self.shapes:
            self.b_slices.append((kb, kb + fan_out))
            kb += fan_out
        self.size = kb

    def views(self, flat):
        """``[(W, b), ...]`` views into ``flat``."""
        return [(flat[w0:w1].reshape(shape), flat[b0:b1])
                for shape, (w0, w1), (b0, b1) in zip(self.shapes, self.w_slices, self.b_slices)]

    def packed(self, flat):
        """``[(all W, all b)]``: the packed arrays `mlp.steps.Packer.pack` makes."""
        return [(flat[:self.n_weights], flat[self.n_weights:])]

    def matches(self, ops, pairs, dtype) -> bool:
        """Whether ``pairs`` is a list of ``(W, b)`` arrays of ``ops``'s library, of this
        layout and ``dtype``."""
        return (isinstance(pairs, list) and len(pairs) == len(self.shapes) and all(
            isinstance(pair, tuple) and len(pair) == 2 and ops.is_floats(pair, dtype)
            and pair[0].shape == shape and pair[1].shape == shape[1:]
            for pair, shape in zip(pairs, self.shapes)))

    def fill(self, ops, flat, pairs):
        """Copy ``pairs`` into ``flat``; returns ``flat``."""
        for (W, b), (W0, b0) in zip(self.views(flat), pairs):
            ops.copy(W, W0)
            ops.copy(b, b0)
        return flat


# ------------------------------------------------------ in-place transformations
#
# Each class mirrors one building block of `mlp.optimizers`, operation for
# operation, on the flat updates ``u`` (transformed in place), the flat
# parameters ``p`` (read only) and the shared scratch vector ``ctx.tmp``.
# ``load(state, ctx)`` takes the pure state (flat vectors from ``ctx.vector()``,
# scalars kept in ``scalars``), ``state(ctx)`` gives it back in the pure format
# (views), ``scalars`` is a tuple replaced, never changed, at every update (so
# that Ctrl-C can restore it). `_Unfit` from ``load``: the pure path runs instead.


class _Unfit(Exception):
    """The optimizer state is not one the fast path mirrors (wrong structure or dtype)."""


def _unpack_state(state, cls, ctx, arrays=()):
    """``state``'s fields, checked: a ``cls``, with the fields named in ``arrays`` as
    parameter lists copied into new flat vectors."""
    if type(state) is not cls:
        raise _Unfit
    fields = []
    for name, value in zip(cls._fields, state):
        if name in arrays:
            if not ctx.layout.matches(ctx.ops, value, ctx.dtype):
                raise _Unfit
            value = ctx.layout.fill(ctx.ops, ctx.vector(), value)
        fields.append(value)
    return fields


class _Block:
    scalars = ()
    n_vectors = 0  # flat state vectors

    def __init__(self, transformation):
        self.t = transformation

    def blocks(self):
        return [self]


def _namespace(count, _known={}):  # noqa: B006 - a cache
    """``array_namespace(count)``, as the pure update calls it, once per type of count."""
    kind = type(count)
    if kind not in _known:
        _known[kind] = array_namespace(count)
    return _known[kind]


class _ScaleByAdam(_Block):
    n_vectors = 2

    def load(self, state, ctx):
        count, self.mu, self.nu = _unpack_state(state, ScaleByAdamState, ctx, ("mu", "nu"))
        self.scalars = (count,)

    def update(self, ctx, u, p):
        ops = ctx.ops
        b1, b2, eps, mu, nu, t = self.t.beta1, self.t.beta2, self.t.eps, self.mu, self.nu, ctx.tmp
        (count,) = self.scalars
        ops.multiply(mu, b1, out=mu)  # mu = b1 * mu + (1 - b1) * g
        ops.multiply(u, 1 - b1, out=t)
        ops.add(mu, t, out=mu)
        ops.multiply(u, u, out=t)  # nu = b2 * nu + (1 - b2) * (g * g)
        ops.multiply(t, 1 - b2, out=t)
        ops.multiply(nu, b2, out=nu)
        ops.add(nu, t, out=nu)
        xp = _namespace(count)
        count = count + 1
        step = xp.astype(count, u.dtype)
        c = xp.sqrt(1.0 - b2**step) / (1.0 - b1**step)
        ops.sqrt(nu, out=t)  # c * (mu / (sqrt(nu) + eps))
        ops.add(t, eps, out=t)
        ops.divide(mu, t, out=t)
        ops.multiply(t, c, out=u)
        self.scalars = (count,)

    def state(self, ctx):
        return ScaleByAdamState(self.scalars[0], ctx.layout.views(self.mu),
                                ctx.layout.views(self.nu))


class _ScaleByRms(_Block):
    n_vectors = 1

    def load(self, state, ctx):
        (self.nu,) = _unpack_state(state, ScaleByRmsState, ctx, ("nu",))

    def update(self, ctx, u, p):
        ops = ctx.ops
        d, nu, t = self.t.decay, self.nu, ctx.tmp
        ops.multiply(nu, d, out=nu)  # nu = d * nu + (1 - d) * (g * g)
        ops.multiply(u, u, out=t)
        ops.multiply(t, 1 - d, out=t)
        ops.add(nu, t, out=nu)
        ops.sqrt(nu, out=t)  # g / (sqrt(nu) + eps)
        ops.add(t, self.t.eps, out=t)
        ops.divide(u, t, out=u)

    def state(self, ctx):
        return ScaleByRmsState(ctx.layout.views(self.nu))


class _Trace(_Block):
    n_vectors = 1

    def load(self, state, ctx):
        (self.v,) = _unpack_state(state, TraceState, ctx, ("trace",))

    def update(self, ctx, u, p):
        ops = ctx.ops
        d, v = self.t.decay, self.v
        ops.multiply(v, d, out=v)  # v = g + d * v
        ops.add(u, v, out=v)
        if self.t.nesterov:  # g + d * v
            ops.multiply(v, d, out=ctx.tmp)
            ops.add(u, ctx.tmp, out=u)
        else:  # v
            ops.copy(u, v)

    def state(self, ctx):
        return TraceState(ctx.layout.views(self.v))


class _AddDecayedWeights(_Block):
    def load(self, state, ctx):
        _unpack_state(state, EmptyState, ctx)

    def update(self, ctx, u, p):
        ops = ctx.ops
        ops.multiply(p, self.t.weight_decay, out=ctx.tmp)  # g + wd * p
        ops.add(u, ctx.tmp, out=u)

    def state(self, ctx):
        return EmptyState()


class _ClipByGlobalNorm(_AddDecayedWeights):
    """The pure update itself, on the arrays the pure path clips (its global norm is summed
    per array: per layer, or over the two packed arrays), copied back."""

    def update(self, ctx, u, p):
        ops = ctx.ops
        grads = ctx.layout.packed(u) if ctx.packed else ctx.layout.views(u)
        clipped, _ = self.t.update(grads, EmptyState())
        for dst, src in zip(tree_leaves(grads), tree_leaves(clipped)):
            ops.copy(dst, src)


class _ScaleByLearningRate(_Block):
    def load(self, state, ctx):
        count, scale = _unpack_state(state, ScaleByLearningRateState, ctx)
        if not (ctx.ops.is_floats([scale], ctx.dtype) and scale.shape == ()):
            raise _Unfit  # another dtype would promote the pure path's weights
        self.scalars = (count, scale)

    def update(self, ctx, u, p):
        ops = ctx.ops
        count, scale = self.scalars
        factor = (-_rate(self.t.learning_rate, count, scale)) * scale
        ops.multiply(u, factor, out=u)  # -(lr * scale) * g
        self.scalars = (count + 1, scale)

    def state(self, ctx):
        return ScaleByLearningRateState(*self.scalars)


class _Chain:
    """A chain's (or a named optimizer's) blocks; its state is the tuple of theirs."""

    def __init__(self, parts):
        self.parts = parts

    def blocks(self):
        return [b for part in self.parts for b in part.blocks()]

    def load(self, state, ctx):
        if type(state) is not tuple or len(state) != len(self.parts):
            raise _Unfit
        for part, s in zip(self.parts, state):
            part.load(s, ctx)

    def state(self, ctx):
        return tuple(part.state(ctx) for part in self.parts)


_BLOCKS = {ScaleByAdam: _ScaleByAdam, ScaleByRms: _ScaleByRms, Trace: _Trace,
           AddDecayedWeights: _AddDecayedWeights, ClipByGlobalNorm: _ClipByGlobalNorm,
           ScaleByLearningRate: _ScaleByLearningRate}


def _mirror(optimizer):
    """The in-place mirror of ``optimizer`` (a `_Chain` or a `_Block`), or None.

    Recognised: the built-in building blocks, `chain`s of them (nested too) and
    the named optimizers (their ``transformation``), by their exact classes: a
    subclass may change ``update``, and a transformation of the user's own is
    not known here.
    """
    cls = type(optimizer)
    if cls in (SGD, Adam, AdamW, RMSprop):
        return _mirror(optimizer.transformation)
    if cls is Chain:
        parts = [_mirror(t) for t in optimizer.transformations]
        return None if any(p is None for p in parts) else _Chain(parts)
    block = _BLOCKS.get(cls)
    return None if block is None else block(optimizer)


# --------------------------------------------------------------- the network


class _Network:
    """Forward and backward passes of `mlp.core.loss_and_gradients`, into buffers.

    ReLU hidden layers and the cross-entropy loss are mirrored in place; any
    other activation or loss calls the pure function itself (same results,
    with its own allocations).
    """

    def __init__(self, ops, spec, alpha, clip_norm, layout, dtype):
        self.ops, self.spec, self.alpha, self.clip_norm = ops, spec, alpha, clip_norm
        self.layout, self.dtype = layout, dtype
        # mlp's own ReLU, mse and cross-entropy, not ones registered under their names
        relu, mse = activations.BUILT_IN["relu"], losses.BUILT_IN["mse"]
        self.relu = spec.hidden is relu
        # a ReLU output under mse (the seed notebook's): in place as well
        self.relu_out = spec.output is relu and spec.loss is mse
        self.ce = spec.loss is losses.BUILT_IN["cross_entropy"]
        self.mse = spec.loss is mse
        self.buffers = {}

    def _buffers(self, m):
        buf = self.buffers.get(m)
        if buf is None:
            dt, shapes, empty = self.dtype, self.layout.shapes, self.ops.empty
            n_in, n_out = shapes[0][0], shapes[-1][1]
            buf = {"x": empty((m, n_in), dt), "y": empty((m, n_out), dt),
                   "z": [empty((m, o), dt) for _, o in shapes],
                   "d": [empty((m, o), dt) for _, o in shapes[:-1]],
                   "mask": [empty((m, o), self.ops.bool) for _, o in shapes],
                   "e": empty((m, n_out), dt), "yz": empty((m, n_out), dt),
                   "col": [empty((m, 1), dt) for _ in range(3)],
                   "row": [empty((m,), dt) for _ in range(2)], "rows_w": empty((m,), dt),
                   "w": [empty((i, o), dt) for i, o in shapes] if self.alpha else None}
            self.buffers[m] = buf
        return buf

    def gather(self, x, y, w, rows):
        """The batch ``(x, y, w)`` at ``rows`` (``w`` None without sample weights)."""
        buf, take = self._buffers(rows.shape[0]), self.ops.take_rows
        return (take(x, rows, out=buf["x"]), take(y, rows, out=buf["y"]),
                None if w is None else take(w, rows, out=buf["rows_w"]))

    def _cross_entropy(self, buf, z, y):
        """`mlp.losses.Loss.value_and_delta` of cross-entropy (`_ce_terms_and_delta`,
        ``scale = 1/n``), into buffers."""
        n, ops = y.shape[0], self.ops
        shift, total, log_z = buf["col"]
        e, yz, (s, diff) = buf["e"], buf["yz"], buf["row"]
        ops.max(z, axis=-1, keepdims=True, out=shift)
        ops.subtract(z, shift, out=e)
        ops.exp(e, out=e)
        ops.sum(e, axis=-1, keepdims=True, out=total)
        ops.log(total, out=log_z)
        ops.add(log_z, shift, out=log_z)
        ops.divide(e, total, out=e)  # probs
        ops.multiply(y, z, out=yz)
        ops.sum(yz, axis=-1, out=s)
        ops.subtract(log_z[:, 0], s, out=diff)
        loss = ops.total(diff) / n
        ops.subtract(e, y, out=e)
        ops.multiply(e, 1.0 / n, out=e)
        return loss, e

    def _loss_delta_totals(self, buf, z, a, y, w, predicted):
        """The loss, its delta and the training totals (with ``predicted``: the predicted
        classes written there instead, for `_Training.epoch_accuracy`)."""
        spec, xp = self.spec, self.spec.xp
        if self.mse and w is None:  # r2's totals come with the loss
            return self._mean_squared(buf, z, a, y)
        if self.ce and w is None:
            loss, delta = self._cross_entropy(buf, z, y)
        else:
            loss, delta = spec.loss.value_and_delta(xp, z, a, y, spec.output, w)
        if predicted is not None:
            return loss, delta, self.ops.argmax_rows(z, out=predicted)
        return loss, delta, spec.loss.train_totals(xp, z, a, y, w)

    def _mean_squared(self, buf, z, a, y):
        """`mlp.losses.Loss.value_and_delta` of mse (`_mse_terms_and_delta`, ``scale =
        1/size``) and its training totals (`mlp.losses.r2_totals`: ``(y - a)**2`` is
        ``diff * diff`` bit for bit), into buffers."""
        size, ops = y.shape[0] * y.shape[1], self.ops
        diff, sq = buf["e"], buf["yz"]
        ops.subtract(a, y, out=diff)
        ops.multiply(diff, diff, out=sq)
        totals = ops.sum(sq, axis=0)
        ops.multiply(sq, 0.5, out=sq)  # the terms, 0.5 * (diff * diff)
        loss = ops.total(sq) / size
        ops.multiply(diff, 1.0 / size, out=diff)
        if self.relu_out:
            return loss, self._relu_backward(diff, z, buf["mask"][-1]), totals
        return loss, self.spec.output.backward(self.spec.xp, diff, z, a), totals

    def _forward(self, params, x, buf):
        spec, xp, ops = self.spec, self.spec.xp, self.ops
        last = len(params) - 1
        inputs, a = [], x
        for i, (W, b) in enumerate(params):
            inputs.append(a)
            z = buf["z"][i]
            ops.matmul(a, W, out=z)
            ops.add(z, b, out=z)
            if i < last:  # ReLU in place: max(z, 0) > 0 exactly where z > 0 (NaN: neither)
                a = ops.relu(z) if self.relu else spec.hidden.forward(xp, z)
            elif self.relu_out:  # in place: mse needs z only for the ReLU's backward
                a = ops.relu(z)
            else:  # as in the pure path: None where the loss works from z alone
                a = spec.output.forward(xp, z) if spec.loss.needs_output else None
        return inputs, a

    def _relu_backward(self, d, z, mask):
        """`mlp.activations._relu_backward` into ``d``: ``d * (z > 0)`` (``z`` after the ReLU
        in place: ``max(z, 0) > 0`` exactly where ``z > 0``, NaN neither)."""
        return self.ops.multiply(d, self.ops.positive(z, out=mask), out=d)

    def loss_and_gradients(self, params, grads, x, y, w=None, predicted=None):
        """The loss and the batch's training totals (`mlp.losses.Loss.train_totals`);
        the gradients into ``grads`` (views into the flat gradient).
        ``w``: the rows' weights or None; weighted, the input rows of weight 0 are zeroed
        and the loss is the pure one (`mlp.losses.Loss.value_and_delta` with weights)."""
        spec, xp, alpha, ops = self.spec, self.spec.xp, self.alpha, self.ops
        buf = self._buffers(x.shape[0])
        inputs, a = self._forward(params, zero_weight_rows(xp, x, w), buf)
        zs = buf["z"]
        loss, delta, totals = self._loss_delta_totals(buf, zs[-1], a, y, w, predicted)
        for i in range(len(params) - 1, -1, -1):
            W, (dW, db) = params[i][0], grads[i]
            ops.matmul(inputs[i].T, delta, out=dW)
            if alpha:
                ops.multiply(W, alpha, out=buf["w"][i])
                ops.add(dW, buf["w"][i], out=dW)
            ops.sum(delta, axis=0, out=db)
            if i > 0:
                d = ops.matmul(delta, W.T, out=buf["d"][i - 1])
                if self.relu:
                    delta = self._relu_backward(d, zs[i - 1], buf["mask"][i - 1])
                else:
                    delta = spec.hidden.backward(xp, d, zs[i - 1], inputs[i])
        if alpha:
            loss = loss + l2_penalty(xp, params, alpha)
        return loss, totals


# ------------------------------------------------------------------ the run


class _Context:
    """What the transformations share: the layout, the dtype, whether the pure path packs
    (`mlp.steps.Packer`), the scratch vector, and the flat state vectors' allocator."""

    def __init__(self, ops, layout, dtype, packed, vectors):
        self.ops, self.layout, self.dtype, self.packed = ops, layout, dtype, packed
        self.tmp = ops.zeros((layout.size,), dtype)  # (zeros: the gaps between weights)
        self._vectors = iter(vectors)

    def vector(self):
        return next(self._vectors)


class _Training:
    """One call of the run: weights and optimizer state in one flat store, updated in place.

    The store is new for every call (the arrays handed back never change
    afterwards) and is copied at the start of each epoch, so that Ctrl-C can
    hand back the weights and state of the epochs completed so far.
    """

    def __init__(self, net, transform, params, opt_state, packed):
        """``transform``: the optimizer's mirror (`_mirror`), clipping not included;
        raises `_Unfit` when ``opt_state`` is not its state for ``params``."""
        layout, dtype, size, ops = net.layout, net.dtype, net.layout.size, net.ops
        self.net, self.transform, self.layout, self.ops = net, transform, layout, ops
        self.blocks = transform.blocks()
        n_vectors = sum(b.n_vectors for b in self.blocks)
        self.store = ops.zeros((size * (1 + n_vectors),), dtype)  # zeros in the gaps
        vectors = [self.store[k * size:(k + 1) * size] for k in range(1, 1 + n_vectors)]
        self.ctx = _Context(ops, layout, dtype, packed, vectors)
        transform.load(opt_state, self.ctx)
        self.flat = layout.fill(ops, self.store[:size], params)
        self.params = layout.views(self.flat)
        self.flat_g = ops.zeros((size,), dtype)
        self.grads = layout.views(self.flat_g)
        self.saved, self.saved_scalars = ops.empty(self.store.shape, dtype), None
        self.labels = self.predicted = None  # (`epoch_accuracy`)
        if net.clip_norm is not None:  # chain(clip_by_global_norm(clip_norm), optimizer)
            self.blocks.insert(0, _ClipByGlobalNorm(clip_by_global_norm(net.clip_norm)))

    def save(self):
        self.ops.copy(self.saved, self.store)
        self.saved_scalars = [b.scalars for b in self.blocks]

    def restore(self):
        self.ops.copy(self.store, self.saved)
        for b, scalars in zip(self.blocks, self.saved_scalars):
            b.scalars = scalars

    def step(self, x, y, w, predicted=None):
        """One step; returns the batch's loss and training totals (with ``predicted``,
        the predicted classes written there instead)."""
        loss, totals = self.net.loss_and_gradients(self.params, self.grads, x, y, w, predicted)
        u, p, ctx = self.flat_g, self.flat, self.ctx  # the gradients become the updates
        for block in self.blocks:
            block.update(ctx, u, p)
        self.ops.add(p, u, out=p)  # apply_updates: params + updates
        return loss, totals

    def batch(self, x, y, w, rows):
        """A batch's step: its loss times its size (or with ``w`` its weights' sum), and
        its training totals."""
        xb, yb, wb = self.net.gather(x, y, w, rows)
        loss, totals = self.step(xb, yb, wb)
        return (loss * rows.shape[-1] if w is None else loss * self.net.spec.xp.sum(wb)), totals

    def epoch(self, x, y, w, full, rest):
        """`mlp.steps._epoch_function`'s epoch, ``(mean loss, totals)``: the same sums in
        the same order."""
        if full is None:
            return self.step(x, y, w)
        if w is None and self.net.ce:
            return self.epoch_accuracy(x, y, full, rest)
        xp = self.net.spec.xp
        if w is None:  # the batches' losses, summed, times the batch size
            losses, totals = zip(*[self.step(*self.net.gather(x, y, None, full[k, ...]))
                                   for k in range(full.shape[0])])
            total = xp.sum(xp.stack(losses)) * full.shape[-1]
        else:  # the batches' losses times their weights' sums, summed
            losses, totals = zip(*[self.batch(x, y, w, full[k, ...])
                                   for k in range(full.shape[0])])
            total = xp.sum(xp.stack(losses))
        totals = xp.sum(xp.stack(totals), axis=0)
        if rest is not None:
            loss, rest_totals = self.batch(x, y, w, rest)
            total, totals = total + loss, totals + rest_totals
        if w is None:
            return total / x.shape[0], totals
        weight = xp.sum(w)
        return total / xp.where(weight > 0, weight, 1.0), totals

    def epoch_accuracy(self, x, y, full, rest):
        """`epoch` for unweighted mini-batches and cross-entropy: each step writes its
        predicted classes, and the batches' numbers of correct rows (`_argmax_totals`:
        exact whole numbers) are counted at the end of the epoch, against the labels
        taken once per call; then summed as the pure epoch sums them."""
        xp, (n_batches, size) = self.net.spec.xp, full.shape
        if self.labels is None:
            self.labels = xp.argmax(y, axis=1)
            self.predicted = self.ops.empty((y.shape[0],), self.labels.dtype)
        pred = self.predicted
        losses = [self.step(*self.net.gather(x, y, None, full[k, ...]),
                            pred[k * size:(k + 1) * size])[0] for k in range(n_batches)]
        total = xp.sum(xp.stack(losses)) * size
        correct = pred[:n_batches * size] == xp.take(self.labels, xp.reshape(full, (-1,)))
        counts = xp.astype(xp.sum(xp.reshape(correct, (n_batches, size)), axis=1), x.dtype)
        totals = xp.sum(counts[:, None], axis=0)
        if rest is not None:
            loss = self.step(*self.net.gather(x, y, None, rest), pred[n_batches * size:])[0]
            total = total + loss * rest.shape[-1]
            right = pred[n_batches * size:] == xp.take(self.labels, rest)
            totals = totals + xp.astype(xp.sum(right, keepdims=True), x.dtype)
        return total / x.shape[0], totals

    def result(self):
        """The weights (views into a copy of their own: not the whole store, which holds
        the optimizer's state too) and the optimizer state in the pure format."""
        flat = self.ops.empty(self.flat.shape, self.net.dtype)
        self.ops.copy(flat, self.flat)
        return self.layout.views(flat), self.transform.state(self.ctx)


def _handles(ops, params, x, y, w, batches):
    """Whether the fast path takes these inputs: float arrays of ``ops``'s library, of one
    dtype and matching shapes (sample weights ``w: (n,)`` or None), integer row indices
    (anything else goes to the pure run, which gives its own result or error)."""
    dtype = getattr(x, "dtype", None)
    weights = [] if w is None else [w]
    if not (any(dtype == d for d in ops.float_dtypes) and isinstance(params, list)
            and all(isinstance(p, tuple) and len(p) == 2 for p in params)
            and ops.is_floats([x, y, *weights] + [a for pair in params for a in pair], dtype)
            and all(v.shape == x.shape[:1] for v in weights)):
        return False
    widths = [x.shape[-1]] + [W.shape[-1] for W, _ in params]
    # (the weights' layout: a matrix product of a transposed view may round differently)
    return (x.ndim == 2 and y.shape == (x.shape[0], widths[-1])
            and all(W.shape == (n_in, n_out) and b.shape == (n_out,) and ops.is_contiguous(W)
                    for (W, b), n_in, n_out in zip(params, widths, widths[1:]))
            and (batches is None or ops.is_indices(batches)))


def fast_run(ops, pure_run, spec, optimizer, alpha=0.0, clip_norm=None):
    """A run with `mlp.steps.make_run`'s contract and bit-identical results, or None.

    ``ops``: the in-place operations of the backend's library (see `InplaceOps`).
    None when ``optimizer`` is not one this module mirrors (see `_mirror`); the
    run returned calls ``pure_run`` itself for inputs it does not handle
    (arrays that are not float arrays of that library of one dtype, an optimizer
    state of another structure or dtype).
    """
    if _mirror(optimizer) is None:
        return None
    def run(params, opt_state, x, y, w, batches, last, n_epochs):
        # where `mlp.steps.make_run` packs the parameters (`mlp.steps.packs`), the global
        # norm of clipping is summed over the two packed arrays instead of per layer
        packed = packs(optimizer, opt_state)
        if _handles(ops, params, x, y, w, batches):
            layout = _Layout([tuple(W.shape) for W, _ in params])
            try:
                training = _Training(_Network(ops, spec, alpha, clip_norm, layout, x.dtype),
                                     _mirror(optimizer), params, opt_state, packed)
            except _Unfit:
                pass
            else:
                return _epochs(training, x, y, w, batches, last, n_epochs)
        return pure_run(params, opt_state, x, y, w, batches, last, n_epochs)

    return run


def _epochs(training, x, y, w, batches, last, n_epochs):
    """The epochs; Ctrl-C keeps the epochs completed so far (`mlp.steps.InterruptedRun`).
    Each epoch's training totals are followed by the data's, as in `mlp.steps.make_run`."""
    xp = training.net.spec.xp
    extra = training.net.spec.loss.data_totals(xp, y, w)
    epoch_losses, epoch_totals = [], []
    # Ctrl-C may come between any two operations: ``mark`` is twice the epochs completed
    # and recorded, plus one from when epoch ``e`` may change the store (after its copy)
    # until it is recorded. Each change of it is a single assignment.
    mark = 0
    try:
        for e in range(n_epochs):
            training.save()
            mark = 2 * e + 1
            if batches is None:
                loss, totals = training.epoch(x, y, w, None, None)
            else:
                loss, totals = training.epoch(x, y, w, batches[e, ...],
                                              None if last is None else last[e, ...])
            epoch_losses.append(loss)
            epoch_totals.append(totals)
            mark = 2 * e + 2
    except KeyboardInterrupt as exc:
        done = mark // 2
        if mark % 2:  # within epoch `done`: back to its start
            training.restore()
        raise InterruptedRun(*training.result(), epoch_losses[:done],
                             [join_data_totals(xp, t, extra)
                              for t in epoch_totals[:done]]) from exc
    totals = xp.reshape(xp.concat(epoch_totals), (len(epoch_totals), -1))
    return (*training.result(), training.ops.stack(epoch_losses),
            join_data_totals(xp, totals, extra))
