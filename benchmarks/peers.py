"""The implementations the suite times: ours (`mlp.MLP` on each backend) and the peers.

Every implementation has the same small interface:

- ``setup(workload)``: untimed (build the model, move nothing yet);
- ``train()``: timed; starts from the workload's host data and host initial
  weights, trains, and returns once the trained weights are ready (device
  work included: JAX results are blocked on, GPU queues synchronized);
- ``weights()``: the trained ``[(W, b), ...]`` as NumPy arrays (untimed),
  scored by one shared NumPy evaluator so every row's loss and accuracy mean
  the same thing.

The peers are written the way their libraries are normally used:

- ``notebook-f64``: the seed notebook's own float64 class (W1 only);
- ``numpy-f32``: hand-written float32 NumPy, in-place updates;
- ``numpy-lean``: hand-written float32 NumPy as lean as it gets: one flat
  parameter vector with views, every buffer preallocated and written with
  ``out=``, 1/B and the learning rate folded into the output delta, one fused
  Adam update over the whole vector, no loss unless asked;
- ``jax-scan``: hand-written JAX (``jax.value_and_grad``, hand-written SGD/Adam
  on the pytree), one ``lax.scan`` per epoch; for full-batch work all epochs
  in one ``lax.scan``;
- ``jax-optax``: a jitted step with optax, a Python loop over the batches;
- ``sklearn``: ``MLPRegressor`` / ``MLPClassifier`` with the same
  hyperparameters (``alpha=0``, no early stopping), warm-started from the
  same initial weights;
- ``torch-nn``: ``nn.Sequential`` + ``torch.optim`` with the usual
  ``zero_grad / backward / step`` loop.
"""

from __future__ import annotations

import warnings

import numpy as np

# --------------------------------------------------------------------- scoring


def evaluate(workload, weights, x, y, output_activation=None):
    """``{"loss", "accuracy"}`` of host ``weights`` on ``(x, y)`` in float64 NumPy."""
    relu_out = (output_activation or workload.output_activation) == "relu"
    a = np.asarray(x, dtype=np.float64)
    last = len(weights) - 1
    for i, (W, b) in enumerate(weights):
        z = a @ np.asarray(W, np.float64) + np.asarray(b, np.float64).reshape(-1)
        a = np.maximum(z, 0.0) if (i < last or relu_out) else z
    if workload.loss == "mse":
        y = np.asarray(y, np.float64).reshape(a.shape)
        return {"loss": float(0.5 * np.mean((a - y) ** 2)), "accuracy": None}
    shift = a.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(a - shift).sum(axis=1)) + shift[:, 0]
    loss = float(np.mean(log_z - a[np.arange(len(y)), y]))
    return {"loss": loss, "accuracy": float(np.mean(a.argmax(axis=1) == y))}


def _one_hot(labels, n_classes, dtype=np.float32):
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = 1
    return out


class Implementation:
    """Base class; ``kind`` is ``"ours"`` or ``"peer"``."""

    name = "?"
    kind = "peer"
    #: Needs a warm-up run on the full workload (compiles for these shapes).
    compiles = False
    device = "cpu"
    #: The output activation it really uses, when not the workload's.
    output_activation = None

    def supports(self, workload) -> bool:
        return True

    def setup(self, workload):
        self.wl = workload

    def train(self):
        raise NotImplementedError

    def weights(self):
        raise NotImplementedError


# ----------------------------------------------------------------------- ours


def _pure_backend(name):
    """NumPy or PyTorch without its in-place fast path (the pure executor of
    `mlp.engine.pipeline`)."""
    if name == "numpy-pure":
        from mlp.backends._numpy import NumpyBackend

        return NumpyBackend(fast=False)
    from mlp.backends import _torch

    return _torch.create(fast=False)


#: Our backends without their fast path (``numpy-pure``: as before issue 14).
PURE_BACKENDS = ("numpy-pure", "torch-pure")


class Ours(Implementation):
    """`mlp.MLP` on one backend; ``numpy-pure`` and ``torch-pure`` are NumPy and PyTorch
    without their fast path (the pure executor of `mlp.engine.pipeline`, see `PURE_BACKENDS`)."""

    kind = "ours"

    def __init__(self, backend: str):
        self.backend = backend
        self.name = f"mlp[{backend}]"
        self.compiles = backend == "jax"

    def supports(self, workload):
        # array-api-strict exists to prove conformance; on W3 it would only add minutes.
        return not (self.backend == "array_api_strict" and workload.name.startswith("W3"))

    def setup(self, workload):
        import mlp
        from mlp import backends

        super().setup(workload)
        if self.backend in PURE_BACKENDS:
            backend = _pure_backend(self.backend)
        else:
            backend = backends.get_backend(self.backend)
        self.model = mlp.MLP(workload.layer_sizes, activation="relu",
                             output_activation=workload.output_activation, loss=workload.loss,
                             init=workload.init, backend=backend, dtype="float32",
                             seed=workload.seed)
        self.device = str(self.model.backend.device)
        self.be = backend
        self.w0 = workload.initial_weights(np.float32)

    def train(self):
        wl = self.wl
        self.model.set_weights(self.w0)
        self.model.fit(wl.x_train, wl.y_train, epochs=wl.epochs, learning_rate=wl.learning_rate,
                       batch_size=wl.batch_size, optimizer=wl.optimizer, shuffle=True)
        if self.backend == "jax":
            import jax

            jax.block_until_ready(self.model.params)
        self.be.synchronize()

    def weights(self):
        return self.model.get_weights()


# ---------------------------------------------------------------- notebook


class NotebookF64(Implementation):
    """The seed notebook's float64 class, as written there (W1 only)."""

    name = "notebook-f64"

    class Network:
        def __init__(self, W1, b1, W2, b2):
            self.W1, self.b1 = W1.astype(np.float64), b1.reshape(1, -1).astype(np.float64)
            self.W2, self.b2 = W2.astype(np.float64), b2.reshape(1, -1).astype(np.float64)

        @staticmethod
        def relu(x):
            return np.maximum(0, x)

        @staticmethod
        def relu_derivative(x):
            return (x > 0).astype(float)

        def forward(self, X):
            self.z1 = np.dot(X, self.W1) + self.b1
            self.a1 = self.relu(self.z1)
            self.z2 = np.dot(self.a1, self.W2) + self.b2
            self.a2 = self.relu(self.z2)
            return self.a2

        def backward(self, X, y, learning_rate):
            m = X.shape[0]
            dz2 = (self.a2 - y) * self.relu_derivative(self.z2)
            dW2 = np.dot(self.a1.T, dz2) / m
            db2 = np.sum(dz2, axis=0, keepdims=True) / m
            dz1 = np.dot(dz2, self.W2.T) * self.relu_derivative(self.z1)
            dW1 = np.dot(X.T, dz1) / m
            db1 = np.sum(dz1, axis=0, keepdims=True) / m
            self.W2 -= learning_rate * dW2
            self.b2 -= learning_rate * db2
            self.W1 -= learning_rate * dW1
            self.b1 -= learning_rate * db1

        def train(self, X, y, epochs, learning_rate):
            self.losses = []
            for _epoch in range(epochs):
                output = self.forward(X)
                loss = np.mean(0.5 * (output - y) ** 2)
                self.losses.append(loss)
                self.backward(X, y, learning_rate)

    def supports(self, workload):
        return workload.name == "W1"

    def setup(self, workload):
        super().setup(workload)
        self.w0 = workload.initial_weights(np.float64)
        self.x = workload.x_train.astype(np.float64)
        self.y = workload.y_train.astype(np.float64)

    def train(self):
        (W1, b1), (W2, b2) = self.w0
        self.net = self.Network(W1, b1, W2, b2)
        self.net.train(self.x, self.y, self.wl.epochs, self.wl.learning_rate)

    def weights(self):
        n = self.net
        return [(n.W1, n.b1[0]), (n.W2, n.b2[0])]


# ------------------------------------------------------------- NumPy float32


class NumpyF32(Implementation):
    """Hand-written float32 NumPy: fancy-indexed batches, in-place updates."""

    name = "numpy-f32"

    def setup(self, workload):
        super().setup(workload)
        self.w0 = workload.initial_weights(np.float32)

    def train(self):
        wl = self.wl
        x = np.asarray(wl.x_train, np.float32)
        if wl.classification:
            y = _one_hot(wl.y_train, wl.layer_sizes[-1])
        else:
            y = np.asarray(wl.y_train, np.float32).reshape(len(x), -1)
        Ws = [W.copy() for W, _ in self.w0]
        bs = [b.copy() for _, b in self.w0]
        params = Ws + bs
        adam = wl.optimizer == "adam"
        if adam:
            ms = [np.zeros_like(p) for p in params]
            vs = [np.zeros_like(p) for p in params]
            b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
        lr = np.float32(wl.learning_rate)
        relu_out = wl.output_activation == "relu"
        n_layers = len(Ws)
        n = len(x)
        bsz = wl.batch_size or n
        labels = wl.y_train if wl.classification else None
        ranges = {m: np.arange(m) for m in {bsz, n % bsz or bsz}}
        self.losses = []
        for order in (wl.orders() if wl.batch_size else [None] * wl.epochs):
            epoch_loss = 0.0
            for start in range(0, n, bsz):
                if order is None:
                    xb, yb, lb = x, y, labels
                else:
                    idx = order[start:start + bsz]
                    xb, yb = x[idx], y[idx]
                    lb = None if labels is None else labels[idx]
                m = xb.shape[0]
                rows = ranges[m]
                acts, masks = [xb], []
                a = xb
                for i in range(n_layers):
                    z = a @ Ws[i]
                    z += bs[i]
                    if i < n_layers - 1 or relu_out:
                        masks.append(z > 0)
                        a = np.maximum(z, 0, out=z)
                    else:
                        a = z
                    acts.append(a)
                if wl.classification:
                    a -= a.max(axis=1, keepdims=True)
                    np.exp(a, out=a)
                    total = a.sum(axis=1, keepdims=True)
                    a /= total
                    loss = -np.log(a[rows, lb]).sum()  # the batch's summed NLL
                    delta = a - yb
                else:
                    delta = a - yb
                    loss = 0.5 * np.dot(delta.ravel(), delta.ravel())
                    delta *= masks[-1]
                epoch_loss += float(loss)
                delta *= np.float32(1.0 / (m * y.shape[1] if not wl.classification else m))
                grads_W, grads_b = [None] * n_layers, [None] * n_layers
                for i in range(n_layers - 1, -1, -1):
                    grads_W[i] = acts[i].T @ delta
                    grads_b[i] = delta.sum(axis=0)
                    if i > 0:
                        delta = delta @ Ws[i].T
                        delta *= masks[i - 1]
                grads = grads_W + grads_b
                if adam:
                    t += 1
                    step = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
                    for p, g, mo, v in zip(params, grads, ms, vs):
                        mo *= b1
                        mo += (1 - b1) * g
                        v *= b2
                        v += (1 - b2) * (g * g)
                        p -= np.float32(step) * mo / (np.sqrt(v) + eps)
                else:
                    for p, g in zip(params, grads):
                        g *= lr
                        p -= g
            self.losses.append(epoch_loss / (n * (1 if wl.classification else y.shape[1])))
        self.out = list(zip(Ws, bs))

    def weights(self):
        return self.out


class NumpyLean(Implementation):
    """Lean hand-written float32 NumPy: what a performance-minded user writes.

    One flat parameter vector with every ``W`` and ``b`` a view into it (and the
    same for the gradient and Adam's moments); every buffer preallocated per
    batch size and written with ``out=``; batches gathered with
    ``np.take(..., out=)``; 1/B (and for SGD the learning rate) folded into the
    output delta, so SGD's update is one subtraction over the whole vector; one
    fused Adam update over the whole vector; no loss computed during a step
    unless ``track_loss`` is set.
    """

    name = "numpy-lean"
    track_loss = False

    def setup(self, workload):
        super().setup(workload)
        self.w0 = workload.initial_weights(np.float32)
        sizes = workload.layer_sizes
        self.shapes = list(zip(sizes[:-1], sizes[1:]))
        self.size = sum(i * o + o for i, o in self.shapes)

    def _views(self, flat):
        """``[(W, b), ...]`` views into a flat vector."""
        out, k = [], 0
        for fan_in, fan_out in self.shapes:
            W = flat[k:k + fan_in * fan_out].reshape(fan_in, fan_out)
            k += fan_in * fan_out
            out.append((W, flat[k:k + fan_out]))
            k += fan_out
        return out

    def _buffers(self, m, n_features, n_out):
        return {"x": np.empty((m, n_features), np.float32),
                "y": np.empty((m, n_out), np.float32),
                "a": [np.empty((m, o), np.float32) for _, o in self.shapes],
                "d": [np.empty((m, o), np.float32) for _, o in self.shapes[:-1]],
                "mask": [np.empty((m, o), bool) for _, o in self.shapes[:-1]],
                "col": np.empty((m, 1), np.float32), "out_mask": np.empty((m, n_out), bool)}

    def _step(self, buf, xb, yb, m, scale):
        """Forward and backward into ``self.g`` (the gradient times ``scale``); the loss if
        ``track_loss`` (the batch's summed loss), else None."""
        wl, params, grads = self.wl, self.params, self.grads
        last = len(params) - 1
        a = xb
        for i, (W, b) in enumerate(params):
            z = buf["a"][i]
            np.matmul(a, W, out=z)
            z += b
            if i < last or self.relu_out:
                np.maximum(z, 0, out=z)
            a = z
        loss = None
        if wl.classification:  # softmax in place, then delta = (p - y) * scale
            col = buf["col"]
            np.max(a, axis=1, keepdims=True, out=col)
            a -= col
            np.exp(a, out=a)
            np.sum(a, axis=1, keepdims=True, out=col)
            a /= col
            if self.track_loss:
                loss = -float(np.log(np.sum(a * yb, axis=1)).sum())
            a -= yb
        else:
            if self.relu_out:
                np.greater(a, 0, out=buf["out_mask"])
            a -= yb
            if self.track_loss:
                loss = 0.5 * float(np.dot(a.ravel(), a.ravel()))
            if self.relu_out:
                a *= buf["out_mask"]
        a *= scale
        delta = a
        for i in range(last, -1, -1):
            inp = xb if i == 0 else buf["a"][i - 1]
            np.matmul(inp.T, delta, out=grads[i][0])
            np.sum(delta, axis=0, out=grads[i][1])
            if i > 0:
                d = buf["d"][i - 1]
                np.matmul(delta, params[i][0].T, out=d)
                np.greater(inp, 0, out=buf["mask"][i - 1])
                d *= buf["mask"][i - 1]
                delta = d
        return loss

    def _adam(self):
        """The fused Adam update over the whole flat vector."""
        b1, b2, eps = 0.9, 0.999, 1e-8
        self.t += 1
        t, g, mo, v, tmp = self.t, self.g, self.m, self.v, self.tmp
        step = np.float32(self.wl.learning_rate * np.sqrt(1 - b2**t) / (1 - b1**t))
        np.subtract(g, mo, out=tmp)  # m += (1 - b1) * (g - m)
        tmp *= np.float32(1 - b1)
        mo += tmp
        np.multiply(g, g, out=tmp)  # v += (1 - b2) * (g * g - v)
        tmp -= v
        tmp *= np.float32(1 - b2)
        v += tmp
        np.sqrt(v, out=tmp)
        tmp += np.float32(eps)
        np.divide(mo, tmp, out=tmp)
        tmp *= step
        self.flat -= tmp

    def train(self):
        wl = self.wl
        x = np.asarray(wl.x_train, np.float32)
        n, n_out = x.shape[0], wl.layer_sizes[-1]
        y = (_one_hot(wl.y_train, n_out) if wl.classification
             else np.asarray(wl.y_train, np.float32).reshape(n, -1))
        self.flat = np.empty(self.size, np.float32)
        self.params = self._views(self.flat)
        for (W, b), (W0, b0) in zip(self.params, self.w0):
            W[...], b[...] = W0, b0
        self.g = np.empty_like(self.flat)
        self.grads = self._views(self.g)
        adam = wl.optimizer == "adam"
        if adam:
            self.m, self.v = np.zeros_like(self.flat), np.zeros_like(self.flat)
            self.tmp, self.t = np.empty_like(self.flat), 0
        self.relu_out = wl.output_activation == "relu"
        per_sample = 1 if wl.classification else n_out
        lr = 1.0 if adam else wl.learning_rate
        bsz = wl.batch_size or n
        buffers = {m: self._buffers(m, x.shape[1], n_out) for m in {bsz, n % bsz or bsz}}
        self.losses = []
        for order in (wl.orders() if wl.batch_size else [None] * wl.epochs):
            total = 0.0
            for start in range(0, n, bsz):
                if order is None:
                    m, buf, xb, yb = n, buffers[n], x, y
                else:
                    idx = order[start:start + bsz]
                    m = idx.shape[0]
                    buf = buffers[m]
                    xb = np.take(x, idx, axis=0, out=buf["x"])
                    yb = np.take(y, idx, axis=0, out=buf["y"])
                loss = self._step(buf, xb, yb, m, np.float32(lr / (m * per_sample)))
                if adam:
                    self._adam()
                else:
                    self.flat -= self.g
                if loss is not None:
                    total += loss
            if self.track_loss:
                self.losses.append(total / (n * per_sample))
        self.out = [(W.copy(), b.copy()) for W, b in self.params]

    def weights(self):
        return self.out


# ------------------------------------------------------------------- JAX


def _jax_loss_fn(workload):
    import jax
    import jax.numpy as jnp

    relu_out = workload.output_activation == "relu"

    def forward(params, x):
        a = x
        for i, (W, b) in enumerate(params):
            z = a @ W + b
            a = jax.nn.relu(z) if (i < len(params) - 1 or relu_out) else z
        return a

    if workload.classification:
        def loss_fn(params, x, y):
            logits = forward(params, x)
            return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, axis=1))
    else:
        def loss_fn(params, x, y):
            return 0.5 * jnp.mean((forward(params, x) - y) ** 2)
    return loss_fn


def _jax_targets(workload):
    if workload.classification:
        return _one_hot(workload.y_train, workload.layer_sizes[-1])
    return np.asarray(workload.y_train, np.float32).reshape(workload.n_samples, -1)


def _batch_plan(workload):
    """Per-epoch full batches ``(n_epochs, n_full, B)`` and remainders ``(n_epochs, r)``."""
    orders = np.stack(workload.orders())
    bsz = workload.batch_size
    n_full = (workload.n_samples // bsz) * bsz
    full = orders[:, :n_full].reshape(len(orders), -1, bsz).astype(np.int32)
    rest = orders[:, n_full:].astype(np.int32) if n_full < workload.n_samples else None
    return full, rest


class JaxScan(Implementation):
    """Hand-written JAX: value_and_grad, one lax.scan per epoch (all epochs for full batch)."""

    name = "jax-scan"
    compiles = True

    def setup(self, workload):
        import jax
        import jax.numpy as jnp

        super().setup(workload)
        self.device = str(jax.devices()[0])
        self.w0 = workload.initial_weights(np.float32)
        self.y_host = _jax_targets(workload)
        grad_fn = jax.value_and_grad(_jax_loss_fn(workload))
        lr = workload.learning_rate
        adam = workload.optimizer == "adam"
        b1, b2, eps = 0.9, 0.999, 1e-8
        tmap = jax.tree_util.tree_map

        def step(state, xb, yb):
            params, m, v, t = state
            loss, g = grad_fn(params, xb, yb)
            if adam:
                t = t + 1
                m = tmap(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
                v = tmap(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
                size = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
                params = tmap(lambda p, m_, v_: p - size * m_ / (jnp.sqrt(v_) + eps),
                              params, m, v)
            else:
                params = tmap(lambda p, g_: p - lr * g_, params, g)
            return (params, m, v, t), loss

        if workload.batch_size is None:
            def run(state, x, y):
                return jax.lax.scan(lambda s, _: step(s, x, y), state, None,
                                    length=workload.epochs)
            self.run = jax.jit(run)
        else:
            def epoch(state, x, y, rows):
                return jax.lax.scan(lambda s, r: step(s, x[r], y[r]), state, rows)

            self.epoch = jax.jit(epoch)
            self.step = jax.jit(lambda s, x, y, r: step(s, x[r], y[r]))
            self.full, self.rest = _batch_plan(workload)

    def train(self):
        import jax
        import jax.numpy as jnp

        wl = self.wl
        x, y = jax.device_put(wl.x_train), jax.device_put(self.y_host)
        params = [(jax.device_put(W), jax.device_put(b)) for W, b in self.w0]
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        state = (params, zeros, zeros, jnp.zeros((), jnp.float32))
        if wl.batch_size is None:
            state, _ = self.run(state, x, y)
        else:
            full, rest = jax.device_put(self.full), (None if self.rest is None
                                                     else jax.device_put(self.rest))
            for e in range(wl.epochs):
                state, _ = self.epoch(state, x, y, full[e])
                if rest is not None:
                    state, _ = self.step(state, x, y, rest[e])
        self.params = jax.block_until_ready(state[0])

    def weights(self):
        return [(np.asarray(W), np.asarray(b)) for W, b in self.params]


class JaxOptax(Implementation):
    """JAX + optax: one jitted step, a Python loop over the batches."""

    name = "jax-optax"
    compiles = True

    def setup(self, workload):
        import jax
        import optax

        super().setup(workload)
        self.device = str(jax.devices()[0])
        self.w0 = workload.initial_weights(np.float32)
        self.y_host = _jax_targets(workload)
        loss_fn = _jax_loss_fn(workload)
        self.tx = (optax.adam(workload.learning_rate) if workload.optimizer == "adam"
                   else optax.sgd(workload.learning_rate))
        tx = self.tx

        @jax.jit
        def step(params, opt_state, x, y, rows):
            xb, yb = (x, y) if rows is None else (x[rows], y[rows])
            loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self.step = step
        if workload.batch_size is not None:
            self.full, self.rest = _batch_plan(workload)

    def train(self):
        import jax

        wl = self.wl
        x, y = jax.device_put(wl.x_train), jax.device_put(self.y_host)
        params = [(jax.device_put(W), jax.device_put(b)) for W, b in self.w0]
        opt_state = self.tx.init(params)
        step = self.step
        if wl.batch_size is None:
            for _ in range(wl.epochs):
                params, opt_state, loss = step(params, opt_state, x, y, None)
        else:
            full = jax.device_put(self.full)
            rest = None if self.rest is None else jax.device_put(self.rest)
            for e in range(wl.epochs):
                rows_e = full[e]
                for k in range(rows_e.shape[0]):
                    params, opt_state, loss = step(params, opt_state, x, y, rows_e[k])
                if rest is not None:
                    params, opt_state, loss = step(params, opt_state, x, y, rest[e])
        self.params = jax.block_until_ready(params)

    def weights(self):
        return [(np.asarray(W), np.asarray(b)) for W, b in self.params]


# --------------------------------------------------------------- scikit-learn


class Sklearn(Implementation):
    """MLPRegressor / MLPClassifier, warm-started from the shared initial weights."""

    name = "sklearn"

    def setup(self, workload):
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        super().setup(workload)
        wl = workload
        cls = MLPClassifier if wl.classification else MLPRegressor
        self.est = cls(hidden_layer_sizes=wl.layer_sizes[1:-1], activation="relu",
                       solver=wl.optimizer, alpha=0.0,
                       batch_size=wl.batch_size or wl.n_samples,
                       learning_rate_init=wl.learning_rate, max_iter=wl.epochs, shuffle=True,
                       random_state=0, tol=0.0, n_iter_no_change=10**9, momentum=0.0,
                       nesterovs_momentum=False, warm_start=True, early_stopping=False)
        self.y = wl.y_train if wl.classification else wl.y_train.reshape(-1)
        # One iteration to build the estimator's state; train() then overwrites the weights.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.est.set_params(max_iter=1).fit(wl.x_train, self.y)
        self.est.set_params(max_iter=wl.epochs)
        # W1: MLPRegressor's output is the identity (its backward pass assumes so); the
        # notebook's ReLU output cannot be reproduced, so its final loss differs.
        if wl.output_activation == "relu":
            self.output_activation = "identity"
        self.w0 = workload.initial_weights(np.float32)

    def train(self):
        self.est.coefs_ = [W.copy() for W, _ in self.w0]
        self.est.intercepts_ = [b.copy() for _, b in self.w0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.est.fit(self.wl.x_train, self.y)

    def weights(self):
        return list(zip(self.est.coefs_, self.est.intercepts_))


# -------------------------------------------------------------------- PyTorch


class TorchNN(Implementation):
    """nn.Sequential + torch.optim, the usual zero_grad / backward / step loop."""

    name = "torch-nn"

    def setup(self, workload):
        import torch

        super().setup(workload)
        self.torch = torch
        self.dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.device = str(self.dev)
        self.w0 = workload.initial_weights(np.float32)
        layers = []
        sizes = workload.layer_sizes
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(torch.nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2 or workload.output_activation == "relu":
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers).to(self.dev)
        self.linears = [m for m in self.net if isinstance(m, torch.nn.Linear)]
        if workload.batch_size is not None:
            self.orders = workload.orders()

    def train(self):
        torch = self.torch
        F = torch.nn.functional
        wl = self.wl
        with torch.no_grad():
            for lin, (W, b) in zip(self.linears, self.w0):
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
        x = torch.from_numpy(wl.x_train).to(self.dev)
        if wl.classification:
            y = torch.from_numpy(wl.y_train).to(self.dev)
            loss_fn = F.cross_entropy
        else:
            y = torch.from_numpy(wl.y_train.reshape(wl.n_samples, -1)).to(self.dev)

            def loss_fn(out, target):
                return 0.5 * F.mse_loss(out, target)
        opt = (torch.optim.Adam(self.net.parameters(), lr=wl.learning_rate)
               if wl.optimizer == "adam" else
               torch.optim.SGD(self.net.parameters(), lr=wl.learning_rate))
        net = self.net
        if wl.batch_size is None:
            for _ in range(wl.epochs):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                loss.backward()
                opt.step()
        else:
            bsz = wl.batch_size
            for order in self.orders:
                perm = torch.from_numpy(order).to(self.dev)
                for start in range(0, wl.n_samples, bsz):
                    idx = perm[start:start + bsz]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def weights(self):
        return [(lin.weight.detach().cpu().numpy().T.copy(), lin.bias.detach().cpu().numpy()
                 .copy()) for lin in self.linears]


PEERS = {
    "notebook-f64": NotebookF64,
    "numpy-f32": NumpyF32,
    "numpy-lean": NumpyLean,
    "jax-scan": JaxScan,
    "jax-optax": JaxOptax,
    "sklearn": Sklearn,
    "torch-nn": TorchNN,
}

#: The Python package each peer needs.
PEER_REQUIRES = {"jax-scan": "jax", "jax-optax": "optax", "sklearn": "sklearn",
                 "torch-nn": "torch"}


def available_peers():
    import importlib.util

    return [name for name in PEERS
            if name not in PEER_REQUIRES or importlib.util.find_spec(PEER_REQUIRES[name])]
