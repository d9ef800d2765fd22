"""The in-place executor: the pure run's arithmetic, in place.

Where every array operation runs eagerly (NumPy, PyTorch on the CPU), small
batches spend their time on per-operation overhead and on allocating a fresh
array for every intermediate result, not on arithmetic. This executor runs the
very same floating-point operations as the pure one (`mlp.core.loss_and_gradients`,
the transformations of `mlp.optimizers` and `apply_updates`), in the same order and
on arrays of the same shapes, but

- into buffers allocated once per run call and batch size (``out=``);
- with every weight, gradient, update and optimizer-state array a view into
  one flat vector laid out as `mlp.engine.layout.Layout` lays them out (all
  weight matrices, each on a 64-byte boundary, then all biases), so each
  elementwise transformation updates all layers with a handful of operations,
  the updates transformed in place; every operand of a matrix product (weights,
  their gradients, batches, activations) sits on a 64-byte boundary as a fresh
  PyTorch tensor does in the pure path, since a library may pick its kernel
  (and so its rounding) by alignment, as MKL does on AMD processors;
- with batches gathered into buffers;
- with the in-place kernels that activations, losses and transformations
  declare beside their pure definitions (`mlp.engine.kernels`): ReLU, the mean
  squared error (with r2's training totals from the loss's own squares) and the
  fused softmax cross-entropy (for unweighted mini-batches, each step's
  predicted classes are counted against the labels at the end of the epoch,
  whole numbers summed as the pure epoch sums them), Adam's, RMSprop's and
  momentum's updates, weight decay, clipping, the learning rate.

The in-place operations come from the backend (``backend.inplace_ops()``,
`mlp.backends.InplaceOps`): each one the very function the library's array-API
namespace calls in the pure path, with ``out=``. Every element therefore sees
exactly the same IEEE operations as in the pure path, and the results are
identical bit for bit (``tests/test_fast_path.py`` proves it on NumPy and
PyTorch for every optimizer, activation, loss and dtype). The scalars (bias
corrections, learning rates, schedules, step counts) come from the same
expressions on the same values. Sample weights take the pure path's weighted
forms (`mlp.core.zero_weight_rows`, the loss's weighted ``value_and_delta``).

Anything without a declared kernel runs its pure function (an activation or
loss), or the whole run goes to the pure executor (a transformation of the
user's own or a subclass of a built-in one; arrays that are not float arrays
of the backend's library of one dtype; weights that are transposed views, on
which a matrix product may round differently; an optimizer state of another
dtype or structure).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .._typing import Array, Optimizer, Params
from ..core import NetworkSpec, l2_penalty, zero_weight_rows
from ..optimizers import clip_by_global_norm
from .kernels import (
    ActivationKernel,
    Block,
    Buffers,
    Composite,
    Context,
    LossKernel,
    Unfit,
    kernel_of,
    mirror,
)
from .layout import Layout, Pairs
from .pure import Carry, Rows, mean_loss

if TYPE_CHECKING:
    from ..backends import InplaceOps
    from .pipeline import Objective

__all__ = ["Network", "Training", "executor"]


class Network:
    """Forward and backward passes of `mlp.core.loss_and_gradients`, into buffers.

    The hidden activation, the loss and (with an in-place loss) the output
    activation run their declared in-place kernels; any other calls its pure
    function itself (same results, with its own allocations).
    """

    def __init__(self, ops: InplaceOps, spec: NetworkSpec, l2: tuple[float, Objective],
                 layout: Layout, dtype: Any) -> None:
        """``l2 = (alpha, objective)``: the L2 coefficient and how a batch's is made."""
        self.ops, self.spec, (self.alpha, self.objective) = ops, spec, l2
        self.layout, self.dtype = layout, dtype
        self.hidden: ActivationKernel | None = kernel_of(spec.hidden)
        self.loss: LossKernel | None = kernel_of(spec.loss)
        # the output in place only under an in-place loss (the pure loss reads z and a)
        self.output: ActivationKernel | None = (kernel_of(spec.output) if self.loss is not None
                                                else None)
        self.counts_classes = bool(getattr(self.loss, "counts_classes", False))
        self.buffers: dict[int, Buffers] = {}

    def _buffers(self, m: int) -> Buffers:
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

    def gather(self, x: Array, y: Array, w: Array | None, rows: Array
               ) -> tuple[Array, Array, Array | None]:
        """The batch ``(x, y, w)`` at ``rows`` (``w`` None without sample weights)."""
        buf, take = self._buffers(rows.shape[0]), self.ops.take_rows
        return (take(x, rows, out=buf["x"]), take(y, rows, out=buf["y"]),
                None if w is None else take(w, rows, out=buf["rows_w"]))

    def _output_backward(self, buf: Buffers, z: Array, a: Array) -> Callable[[Array], Array]:
        """``delta -> delta * f'(z)`` of the output activation (in place where it can)."""
        output = self.output
        if output is not None:
            return lambda d: output.backward(self.ops, d, z, buf["mask"][-1])
        # (the loss calls it only where the output activation has a backward rule)
        xp, backward = self.spec.xp, cast("Callable[..., Array]", self.spec.output.backward)
        return lambda d: backward(xp, d, z, a)

    def _loss_delta_totals(self, buf: Buffers, z: Array, a: Array, y: Array, w: Array | None,
                           predicted: Array | None) -> tuple[Array, Array, Array | None]:
        """The loss, its delta and the training totals (with ``predicted``: the predicted
        classes written there instead, for `Training.epoch_counting`; None without
        totals)."""
        spec, xp, totals = self.spec, self.spec.xp, None
        if self.loss is not None and w is None:
            loss, delta, totals = self.loss.value_and_delta(
                self.ops, buf, z, a, y, self._output_backward(buf, z, a))
        else:
            loss, delta = spec.loss.value_and_delta(xp, z, a, y, spec.output, w)
        if predicted is not None:
            return loss, delta, self.ops.argmax_rows(z, out=predicted)
        if not self.objective.totals:
            return loss, delta, None
        return loss, delta, (spec.loss.train_totals(xp, z, a, y, w) if totals is None
                             else totals)

    def _forward(self, params: Pairs, x: Array, buf: Buffers) -> tuple[list[Array], Array]:
        spec, xp, ops = self.spec, self.spec.xp, self.ops
        last = len(params) - 1
        inputs: list[Array] = []
        a = x
        for i, (W, b) in enumerate(params):
            inputs.append(a)
            z = buf["z"][i]
            ops.matmul(a, W, out=z)
            ops.add(z, b, out=z)
            if i < last:
                a = self.hidden.forward(ops, z) if self.hidden else spec.hidden.forward(xp, z)
            elif self.output is not None:  # in place: the loss's kernel reads z only through it
                a = self.output.forward(ops, z)
            else:  # as in the pure path: None where the loss works from z alone
                a = spec.output.forward(xp, z) if spec.loss.needs_output else None
        return inputs, a

    def loss_and_gradients(self, params: Pairs, grads: Pairs, x: Array, y: Array,
                           w: Array | None = None, predicted: Array | None = None
                           ) -> tuple[Array, Array | None]:
        """The loss and the batch's training totals (`mlp.losses.Loss.train_totals`);
        the gradients into ``grads`` (views into the flat gradient).
        ``w``: the rows' weights or None; weighted, the input rows of weight 0 are zeroed
        and the loss is the pure one (`mlp.losses.Loss.value_and_delta` with weights)."""
        spec, xp, ops = self.spec, self.spec.xp, self.ops
        alpha = self.objective.l2(xp, self.alpha, x, w)
        buf = self._buffers(x.shape[0])
        inputs, a = self._forward(params, zero_weight_rows(xp, x, w), buf)
        zs = buf["z"]
        loss, delta, totals = self._loss_delta_totals(buf, zs[-1], a, y, w, predicted)
        for i in range(len(params) - 1, -1, -1):
            W, (dW, db) = params[i][0], grads[i]
            ops.matmul(inputs[i].T, delta, out=dW)
            if self.alpha:
                ops.multiply(W, alpha, out=buf["w"][i])
                ops.add(dW, buf["w"][i], out=dW)
            ops.sum(delta, axis=0, out=db)
            if i > 0:
                d = ops.matmul(delta, W.T, out=buf["d"][i - 1])
                if self.hidden:
                    delta = self.hidden.backward(ops, d, zs[i - 1], buf["mask"][i - 1])
                else:  # (a hidden activation has a backward rule)
                    backward = cast("Callable[..., Array]", spec.hidden.backward)
                    delta = backward(xp, d, zs[i - 1], inputs[i])
        if self.alpha:
            loss = loss + l2_penalty(xp, params, alpha)
        return loss, totals


class Training:
    """One call of the run: weights and optimizer state in one flat store, updated in place.

    The store is new for every call (the arrays handed back never change
    afterwards) and is copied at the start of each epoch (`save`), so that
    Ctrl-C can hand back the weights and state of the epochs completed so far
    (`restore`, `mlp.engine.pipeline.run_epochs`).
    """

    def __init__(self, net: Network, transform: Block | Composite,
                 start: tuple[Params, Any, bool], data: tuple[Array, Array, Array | None],
                 clip_norm: float | None) -> None:
        """``transform``: the optimizer's mirror (`mirror`), clipping not included;
        ``start = (params, opt_state, packed)``; ``data = (x, y, w)``. Raises `Unfit`
        when ``opt_state`` is not its state for ``params``."""
        layout, dtype, size, ops = net.layout, net.dtype, net.layout.size, net.ops
        (params, opt_state, packed), (self.x, self.y, self.w) = start, data
        self.net, self.transform, self.layout, self.ops = net, transform, layout, ops
        self.blocks = transform.blocks()
        n_vectors = sum(b.n_vectors for b in self.blocks)
        self.store = ops.zeros((size * (1 + n_vectors),), dtype)  # zeros in the gaps
        vectors = [self.store[k * size:(k + 1) * size] for k in range(1, 1 + n_vectors)]
        self.ctx = Context(ops, layout, dtype, packed, vectors)
        transform.load(opt_state, self.ctx)
        self.flat = layout.fill(ops, self.store[:size], params)
        self.params = layout.views(self.flat)
        self.flat_g = ops.zeros((size,), dtype)
        self.grads = layout.views(self.flat_g)
        self.saved = ops.empty(self.store.shape, dtype)
        self.saved_scalars: list[tuple[Any, ...]] = []
        self.labels: Array | None = None  # (`epoch_counting`)
        self.predicted: Array | None = None
        self.stack = ops.stack
        if clip_norm is not None:  # chain(clip_by_global_norm(clip_norm), optimizer)
            clip = mirror(clip_by_global_norm(clip_norm))
            assert clip is not None  # (clipping declares its in-place form)
            self.blocks[:0] = clip.blocks()

    def largest_product(self, x: Array, batches: Array | None) -> int:
        """The multiply-adds of the largest matrix product of a step, ``batch * fan_in *
        fan_out`` (``batches`` None: full batch), for the backend's thread setting
        (``ops.threads_for``)."""
        rows = x.shape[0] if batches is None else batches.shape[-1]
        return int(rows) * max(i * o for i, o in self.layout.shapes)

    def save(self) -> None:
        self.ops.copy(self.saved, self.store)
        self.saved_scalars = [b.scalars for b in self.blocks]

    def restore(self) -> None:
        self.ops.copy(self.store, self.saved)
        for b, scalars in zip(self.blocks, self.saved_scalars):
            b.scalars = scalars

    def step(self, x: Array, y: Array, w: Array | None, predicted: Array | None = None
             ) -> tuple[Array, Array | None]:
        """One step; returns the batch's loss and training totals (with ``predicted``,
        the predicted classes written there instead)."""
        loss, totals = self.net.loss_and_gradients(self.params, self.grads, x, y, w, predicted)
        u, p, ctx = self.flat_g, self.flat, self.ctx  # the gradients become the updates
        for block in self.blocks:
            block.update(ctx, u, p)
        self.ops.add(p, u, out=p)  # apply_updates: params + updates
        return loss, totals

    def batch(self, rows: Array, weighted: bool) -> tuple[Array, Array | None]:
        """A batch's step: its loss (with ``weighted``, times its weights' sum), and its
        training totals."""
        xb, yb, wb = self.net.gather(self.x, self.y, self.w, rows)
        loss, totals = self.step(xb, yb, wb)
        return (loss * self.net.spec.xp.sum(wb) if weighted else loss), totals

    def epoch(self, rows: Rows) -> tuple[Array, Array | None]:
        """`mlp.engine.pure.epoch_function`'s epoch, ``(mean loss, totals)``: the same
        sums in the same order."""
        x, w, xp = self.x, self.w, self.net.spec.xp
        if rows is None:
            return self.step(x, self.y, w)
        full, rest = rows
        if w is None and self.net.counts_classes and self.net.objective.totals:
            return self.epoch_counting(full, rest)
        weighted = self.net.objective.weighted(w)
        losses, batch_totals = zip(*[self.batch(full[k, ...], weighted)
                                     for k in range(full.shape[0])])
        total = xp.sum(xp.stack(losses))
        total = total if weighted else total * full.shape[-1]
        totals = None if batch_totals[0] is None else xp.sum(xp.stack(batch_totals), axis=0)
        if rest is not None:
            loss, rest_totals = self.batch(rest, weighted)
            total = total + (loss if weighted else loss * rest.shape[-1])
            totals = None if totals is None else totals + rest_totals
        return mean_loss(xp, total, x, w, weighted), totals

    def epoch_counting(self, full: Array, rest: Array | None) -> tuple[Array, Array]:
        """`epoch` where the loss's kernel counts classes (cross-entropy, unweighted):
        each step writes its predicted classes, and the batches' numbers of correct rows
        (exact whole numbers) are counted at the end of the epoch, against the labels
        taken once per call; then summed as the pure epoch sums them."""
        xp, (n_batches, size), y = self.net.spec.xp, full.shape, self.y
        if self.labels is None or self.predicted is None:
            self.labels = xp.argmax(y, axis=1)
            self.predicted = self.ops.empty((y.shape[0],), self.labels.dtype)
        pred, gather = self.predicted, self.net.gather
        losses = [self.step(*gather(self.x, y, None, full[k, ...]),
                            pred[k * size:(k + 1) * size])[0] for k in range(n_batches)]
        total = xp.sum(xp.stack(losses)) * size
        correct = pred[:n_batches * size] == xp.take(self.labels, xp.reshape(full, (-1,)))
        counts = xp.astype(xp.sum(xp.reshape(correct, (n_batches, size)), axis=1), y.dtype)
        totals = xp.sum(counts[:, None], axis=0)
        if rest is not None:
            loss = self.step(*gather(self.x, y, None, rest), pred[n_batches * size:])[0]
            total = total + loss * rest.shape[-1]
            right = pred[n_batches * size:] == xp.take(self.labels, rest)
            totals = totals + xp.astype(xp.sum(right, keepdims=True), y.dtype)
        return total / self.x.shape[0], totals

    def result(self) -> Carry:
        """The weights (views into a copy of their own: not the whole store, which holds
        the optimizer's state too) and the optimizer state in the pure format."""
        flat = self.ops.empty(self.flat.shape, self.net.dtype)
        self.ops.copy(flat, self.flat)
        return self.layout.views(flat), self.transform.state(self.ctx)


def _handles(ops: InplaceOps, params: object, x: Array, y: Array, w: Array | None,
             batches: Array | None) -> bool:
    """Whether the executor takes these inputs: float arrays of ``ops``'s library, of one
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


def executor(ops: InplaceOps, spec: NetworkSpec,
             training: tuple[Optimizer, float, float | None, Objective], start: Carry,
             data: tuple[Array, Array, Array | None, Array | None], packed: bool
             ) -> Training | None:
    """A `Training` for one call of the run, or None where the pure run must take it.

    Parameters
    ----------
    ops : InplaceOps
        The backend's in-place operations.
    spec : NetworkSpec
    training : tuple
        ``(optimizer, alpha, clip_norm, objective)``.
    start : tuple
        ``(params, opt_state)``.
    data : tuple
        ``(x, y, w, batches)``.
    packed : bool
        Whether the pure run packs the parameters (clipping's norm is then summed
        over the two packed arrays).
    """
    (optimizer, alpha, clip_norm, objective), (params, opt_state) = training, start
    x, y, w, batches = data
    if not _handles(ops, params, x, y, w, batches):
        return None
    layout = Layout(spec.xp, [tuple(W.shape) for W, _ in params])
    net, transform = Network(ops, spec, (alpha, objective), layout, x.dtype), mirror(optimizer)
    if transform is None:
        return None
    try:
        return Training(net, transform, (params, opt_state, packed), (x, y, w), clip_norm)
    except Unfit:
        return None
