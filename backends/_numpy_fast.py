"""The NumPy fast path of `mlp.steps.make_run`: the pure run's arithmetic, in place.

At small batch sizes NumPy's time goes to per-operation overhead and to
allocating a fresh array for every intermediate result, not to arithmetic.
This module runs the very same floating-point operations as the pure path
(`mlp.core.loss_and_gradients`, the optimizers in `mlp.optimizers`), in the
same order and on arrays of the same shapes, but

- into buffers allocated once per run call and batch size (``out=``);
- with every weight, gradient and optimizer-state array a view into one flat
  vector, so an elementwise optimizer updates all layers with a handful of
  operations;
- with batches gathered by ``np.take(..., out=)``.

Every element therefore sees exactly the same IEEE operations as in the pure
path, and the results are identical bit for bit (``tests/test_numpy_fast_path.py``
proves it for every optimizer, activation, loss and dtype). The pure code in
`mlp/` stays the definition: anything this module does not recognise (an
optimizer of the user's own, arrays that are not NumPy arrays, a learning rate
that would promote the dtype) runs the pure path unchanged.

The fused optimizer updates are all in `_UPDATES` (one small class each), so
a change of the optimizer API touches only `_describe` and that table.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# ------------------------------------------------------------- flat layout


class _Layout:
    """Offsets of every ``(W, b)`` in one flat vector (layer by layer, ``W`` then ``b``)."""

    def __init__(self, shapes):
        self.shapes = [tuple(s) for s in shapes]
        self.slices, k = [], 0
        for fan_in, fan_out in self.shapes:
            self.slices.append((k, k + fan_in * fan_out, k + fan_in * fan_out + fan_out))
            k += fan_in * fan_out + fan_out
        self.size = k

    def views(self, flat):
        """``[(W, b), ...]`` views into ``flat``."""
        return [(flat[w0:w1].reshape(shape), flat[w1:b1])
                for shape, (w0, w1, b1) in zip(self.shapes, self.slices)]

    def fill(self, flat, pairs):
        """Copy ``pairs`` into ``flat``; returns ``flat``."""
        for (W, b), (W0, b0) in zip(self.views(flat), pairs):
            W[...] = W0
            b[...] = b0
        return flat


# ------------------------------------------------------ fused optimizer updates
#
# Each class mirrors one optimizer of `mlp.optimizers`, operation for operation,
# on flat vectors. ``n_state`` flat state vectors and ``n_tmp`` scratch vectors;
# ``init_flat(state, layout, vectors)`` copies the pure state into ``vectors``,
# ``update(g, p, tmp)`` runs one step in place, ``state(layout, vectors)`` returns
# the state in the pure format (views). Scalars are computed with the same Python
# expressions as the pure code, so they have the same types and values.


def _lr(learning_rate, count):
    return learning_rate(count) if callable(learning_rate) else learning_rate


class _SGD:
    def __init__(self, cfg):
        self.lr, self.momentum, self.nesterov = (cfg["learning_rate"], cfg["momentum"],
                                                 cfg["nesterov"])
        self.n_state = self.n_tmp = 1 if self.momentum else 0

    def init_flat(self, state, layout, vectors):
        self.count, velocity = state
        self.v = layout.fill(vectors[0], velocity) if self.momentum else None

    def update(self, g, p, tmp):
        lr = _lr(self.lr, self.count)
        if self.v is None:  # lr * dW (the gradient is scratch: scaled in place)
            step = np.multiply(g, lr, out=g)
        else:
            m, v, step = self.momentum, self.v, tmp[0]
            np.multiply(v, m, out=v)  # v = dW + m * v
            np.add(g, v, out=v)
            if self.nesterov:  # lr * (dW + m * v)
                np.multiply(v, m, out=step)
                np.add(g, step, out=step)
                np.multiply(step, lr, out=step)
            else:  # lr * v
                np.multiply(v, lr, out=step)
        np.subtract(p, step, out=p)
        self.count = self.count + 1.0

    def state(self, layout, vectors):
        return (self.count, layout.views(vectors[0]) if self.momentum else None)


class _Adam:
    decoupled = False

    def __init__(self, cfg):
        self.lr, self.b1, self.b2, self.eps = (cfg["learning_rate"], cfg["beta1"], cfg["beta2"],
                                               cfg["eps"])
        self.wd = cfg.get("weight_decay", 0.0)
        self.n_state, self.n_tmp = 2, (2 if self.decoupled else 1)

    def init_flat(self, state, layout, vectors):
        self.count, mu, nu = state
        self.mu, self.nu = layout.fill(vectors[0], mu), layout.fill(vectors[1], nu)

    def update(self, g, p, tmp):
        b1, b2, mu, nu, t = self.b1, self.b2, self.mu, self.nu, tmp[0]
        np.multiply(mu, b1, out=mu)  # mu = b1 * mu + (1 - b1) * g
        np.multiply(g, 1 - b1, out=t)
        np.add(mu, t, out=mu)
        np.multiply(g, g, out=t)  # nu = b2 * nu + (1 - b2) * (g * g)
        np.multiply(t, 1 - b2, out=t)
        np.multiply(nu, b2, out=nu)
        np.add(nu, t, out=nu)
        count = self.count + 1.0
        lr = _lr(self.lr, self.count)
        step_size = lr * np.sqrt(1.0 - b2**count) / (1.0 - b1**count)
        if self.decoupled:  # lr * wd * W, from the weights before the step
            np.multiply(p, lr * self.wd, out=tmp[1])
        np.sqrt(nu, out=t)  # p - step_size * mu / (sqrt(nu) + eps)
        np.add(t, self.eps, out=t)
        np.divide(mu, t, out=t)
        np.multiply(t, step_size, out=t)
        np.subtract(p, t, out=p)
        if self.decoupled:
            np.subtract(p, tmp[1], out=p)
        self.count = count

    def state(self, layout, vectors):
        return (self.count, layout.views(vectors[0]), layout.views(vectors[1]))


class _AdamW(_Adam):
    decoupled = True


class _RMSprop:
    def __init__(self, cfg):
        self.lr, self.decay, self.eps = cfg["learning_rate"], cfg["decay"], cfg["eps"]
        self.n_state, self.n_tmp = 1, 2

    def init_flat(self, state, layout, vectors):
        self.count, sq = state
        self.sq = layout.fill(vectors[0], sq)

    def update(self, g, p, tmp):
        d, sq, (t, u) = self.decay, self.sq, tmp
        np.multiply(sq, d, out=sq)  # sq = d * sq + (1 - d) * (g * g)
        np.multiply(g, g, out=t)
        np.multiply(t, 1 - d, out=t)
        np.add(sq, t, out=sq)
        lr = _lr(self.lr, self.count)
        np.multiply(g, lr, out=u)  # p - lr * g / (sqrt(sq) + eps)
        np.sqrt(sq, out=t)
        np.add(t, self.eps, out=t)
        np.divide(u, t, out=u)
        np.subtract(p, u, out=p)
        self.count = self.count + 1.0

    def state(self, layout, vectors):
        return (self.count, layout.views(vectors[0]))


_UPDATES = {"sgd": _SGD, "adam": _Adam, "adamw": _AdamW, "rmsprop": _RMSprop}


def _describe(optimizer):
    """``(name, config)`` of an optimizer this module mirrors exactly, else None.

    Only the library's own optimizer classes (not subclasses, which may change
    ``update``) are recognised, by their configuration.
    """
    from mlp import optimizers

    known = {optimizers.SGD: "sgd", optimizers.Adam: "adam", optimizers.AdamW: "adamw",
             optimizers.RMSprop: "rmsprop"}
    name = known.get(type(optimizer))
    if name is None:
        return None
    return name, {f.name: getattr(optimizer, f.name) for f in dataclasses.fields(optimizer)}


# --------------------------------------------------------------- the network


class _Network:
    """Forward and backward passes of `mlp.core.loss_and_gradients`, into buffers.

    ReLU hidden layers and the cross-entropy loss are mirrored in place; any
    other activation or loss calls the pure function itself (same results,
    with its own allocations).
    """

    def __init__(self, spec, alpha, clip_norm, layout, dtype):
        from mlp import activations, losses

        self.spec, self.alpha, self.clip_norm = spec, alpha, clip_norm
        self.layout, self.dtype = layout, dtype
        self.relu = spec.hidden is activations.ACTIVATIONS["relu"]
        self.ce = spec.loss is losses.LOSSES["cross_entropy"]
        self.buffers = {}

    def _buffers(self, m):
        buf = self.buffers.get(m)
        if buf is None:
            dt, shapes = self.dtype, self.layout.shapes
            n_in, n_out = shapes[0][0], shapes[-1][1]
            buf = {"x": np.empty((m, n_in), dt), "y": np.empty((m, n_out), dt),
                   "z": [np.empty((m, o), dt) for _, o in shapes],
                   "d": [np.empty((m, o), dt) for _, o in shapes[:-1]],
                   "mask": [np.empty((m, o), bool) for _, o in shapes[:-1]],
                   "e": np.empty((m, n_out), dt), "yz": np.empty((m, n_out), dt),
                   "col": [np.empty((m, 1), dt) for _ in range(3)],
                   "row": [np.empty(m, dt) for _ in range(2)],
                   "w": [np.empty((i, o), dt) for i, o in shapes] if self.alpha else None}
            self.buffers[m] = buf
        return buf

    def gather(self, x, y, rows):
        buf = self._buffers(rows.shape[0])
        return x.take(rows, axis=0, out=buf["x"]), y.take(rows, axis=0, out=buf["y"])

    def _cross_entropy(self, buf, z, y):
        """`mlp.losses._ce_value_and_delta`, into buffers."""
        n = y.shape[0]
        shift, total, log_z = buf["col"]
        e, yz, (s, diff) = buf["e"], buf["yz"], buf["row"]
        np.maximum.reduce(z, axis=-1, keepdims=True, out=shift)  # what np.max calls
        np.subtract(z, shift, out=e)
        np.exp(e, out=e)
        np.add.reduce(e, axis=-1, keepdims=True, out=total)
        np.log(total, out=log_z)
        np.add(log_z, shift, out=log_z)
        np.divide(e, total, out=e)  # probs
        np.multiply(y, z, out=yz)
        np.add.reduce(yz, axis=-1, out=s)
        np.subtract(log_z[:, 0], s, out=diff)
        loss = np.add.reduce(diff) / n
        np.subtract(e, y, out=e)
        np.multiply(e, 1.0 / n, out=e)
        return loss, e

    def _forward(self, params, x, buf):
        spec, xp = self.spec, self.spec.xp
        last = len(params) - 1
        inputs, a = [], x
        for i, (W, b) in enumerate(params):
            inputs.append(a)
            z = buf["z"][i]
            np.matmul(a, W, out=z)
            np.add(z, b, out=z)
            if i < last:  # ReLU in place: max(z, 0) > 0 exactly where z > 0 (NaN: neither)
                a = (np.maximum(z, 0.0, out=z) if self.relu else spec.hidden.forward(xp, z))
            else:  # as in the pure path: None where the loss works from z alone
                a = spec.output.forward(xp, z) if spec.loss.needs_output else None
        return inputs, a

    def loss_and_gradients(self, params, grads, x, y):
        """The loss; the gradients into ``grads`` (views into the flat gradient)."""
        spec, xp, alpha = self.spec, self.spec.xp, self.alpha
        buf = self._buffers(x.shape[0])
        inputs, a = self._forward(params, x, buf)
        zs = buf["z"]
        if self.ce:
            loss, delta = self._cross_entropy(buf, zs[-1], y)
        else:
            loss, delta = spec.loss.value_and_delta(xp, zs[-1], a, y, spec.output)
        for i in range(len(params) - 1, -1, -1):
            W, (dW, db) = params[i][0], grads[i]
            np.matmul(inputs[i].T, delta, out=dW)
            if alpha:
                np.multiply(W, alpha, out=buf["w"][i])
                np.add(dW, buf["w"][i], out=dW)
            np.add.reduce(delta, axis=0, out=db)
            if i > 0:
                d = np.matmul(delta, W.T, out=buf["d"][i - 1])
                if self.relu:
                    np.multiply(d, np.greater(zs[i - 1], 0, out=buf["mask"][i - 1]), out=d)
                    delta = d
                else:
                    delta = spec.hidden.backward(xp, d, zs[i - 1], inputs[i])
        if alpha:
            from mlp.core import l2_penalty

            loss = loss + l2_penalty(xp, params, alpha)
        return loss

    def clip(self, grads, flat_g):
        """`mlp.core.clip_by_global_norm`, in place on the flat gradient."""
        from mlp.core import global_norm

        xp, max_norm = self.spec.xp, self.clip_norm
        scale = max_norm / xp.maximum(global_norm(xp, grads), max_norm)
        np.multiply(flat_g, scale, out=flat_g)


# ------------------------------------------------------------------ the run


def _numpy_floats(arrays, dtype):
    return all(isinstance(a, np.ndarray) and a.dtype == dtype for a in arrays)


class _Training:
    """One call of the run: weights and optimizer state in one flat store, updated in place.

    The store is new for every call (the arrays handed back never change
    afterwards) and is copied at the start of each epoch, so that Ctrl-C can
    hand back the weights and state of the epochs completed so far.
    """

    def __init__(self, net, update, params, opt_state):
        layout, dtype, size = net.layout, net.dtype, net.layout.size
        self.net, self.update, self.layout = net, update, layout
        self.store = np.empty((1 + update.n_state) * size, dtype)
        self.flat = layout.fill(self.store[:size], params)
        self.vectors = [self.store[(k + 1) * size:(k + 2) * size] for k in range(update.n_state)]
        update.init_flat(opt_state, layout, self.vectors)
        self.params = layout.views(self.flat)
        self.flat_g = np.empty(size, dtype)
        self.grads = layout.views(self.flat_g)
        self.tmp = [np.empty(size, dtype) for _ in range(update.n_tmp)]
        self.saved, self.saved_count = np.empty_like(self.store), None

    def save(self):
        np.copyto(self.saved, self.store)
        self.saved_count = self.update.count

    def restore(self):
        np.copyto(self.store, self.saved)
        self.update.count = self.saved_count

    def step(self, x, y):
        net = self.net
        loss = net.loss_and_gradients(self.params, self.grads, x, y)
        if net.clip_norm is not None:
            net.clip(self.grads, self.flat_g)
        self.update.update(self.flat_g, self.flat, self.tmp)
        return loss

    def epoch(self, x, y, full, rest):
        if full is None:
            return self.step(x, y)
        losses = np.empty(full.shape[0], self.net.dtype)
        for k in range(full.shape[0]):
            losses[k] = self.step(*self.net.gather(x, y, full[k, ...]))
        total = np.add.reduce(losses) * full.shape[-1]
        if rest is not None:
            total = total + self.step(*self.net.gather(x, y, rest)) * rest.shape[-1]
        return total / x.shape[0]

    def result(self):
        return self.layout.views(self.flat), self.update.state(self.layout, self.vectors)


def fast_run(pure_run, spec, optimizer, alpha=0.0, clip_norm=None):
    """A run with `mlp.steps.make_run`'s contract and bit-identical results, or None.

    None when ``optimizer`` is not one this module mirrors; the run returned
    calls ``pure_run`` itself for inputs it does not handle (arrays that are
    not NumPy float arrays of one dtype, a learning rate that would promote it).
    """
    described = _describe(optimizer)
    if described is None:
        return None
    name, config = described

    def run(params, opt_state, x, y, batches, last, n_epochs):
        dtype = x.dtype if isinstance(x, np.ndarray) else None
        arrays = [x, y] + [a for pair in params for a in pair]
        if (dtype not in (np.float32, np.float64) or not _numpy_floats(arrays, dtype)
                or np.result_type(_lr(config["learning_rate"], opt_state[0]), dtype) != dtype):
            return pure_run(params, opt_state, x, y, batches, last, n_epochs)
        layout = _Layout([W.shape for W, _ in params])
        training = _Training(_Network(spec, alpha, clip_norm, layout, dtype),
                             _UPDATES[name](config), params, opt_state)
        return _epochs(training, x, y, batches, last, n_epochs)

    return run


def _epochs(training, x, y, batches, last, n_epochs):
    """The epochs; Ctrl-C keeps the epochs completed so far (`mlp.steps.InterruptedRun`)."""
    losses = []
    try:
        for e in range(n_epochs):
            training.save()
            if batches is None:
                losses.append(training.epoch(x, y, None, None))
            else:
                losses.append(training.epoch(x, y, batches[e, ...],
                                             None if last is None else last[e, ...]))
    except KeyboardInterrupt as exc:
        from mlp.steps import InterruptedRun

        training.restore()
        raise InterruptedRun(*training.result(), losses) from exc
    return (*training.result(), np.stack(losses))
