"""`MLP`: the user-facing model, a thin stateful shell around the pure core."""

from __future__ import annotations

import numpy as np

from backends import Backend, resolve_backend

from . import core
from .activations import get_activation
from .core import NetworkSpec
from .initializers import check_initializer, default_initializer, initial_weights
from .losses import get_loss
from .validation import check_layer_sizes, prepare_targets, prepare_x

#: Compiled functions shared between models (see `MLP._compiled`), least recently used first.
_SHARED_CACHE: dict = {}
_SHARED_CACHE_SIZE = 128


class MLP:
    """A multilayer perceptron: dense layers, hand-derived backprop, any array-API backend.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, hidden_1, ..., n_outputs]``, at least two entries.
    activation : str
        Hidden-layer activation: ``relu`` (default), ``leaky_relu`` (slope 0.01),
        ``tanh``, ``sigmoid`` or ``identity``.
    output_activation : str or None
        Output activation; by default the loss's own (``identity`` for ``mse``,
        ``softmax`` for ``cross_entropy``, ``sigmoid`` for ``binary_cross_entropy``).
    loss : str
        ``mse`` (mean of ``0.5 * (pred - y)**2`` over all elements),
        ``cross_entropy`` (integer labels ``(n,)`` or one-hot ``(n, n_classes)``)
        or ``binary_cross_entropy`` (targets in {0, 1}, ``(n, n_outputs)``).
    init : str or None
        ``he``, ``glorot`` or ``normal``; default ``he`` for relu-like
        activations and ``glorot`` otherwise. Biases start at zero.
    backend : str, Backend or None
        ``numpy``, ``jax``, ``cupy``, ``torch`` or ``array_api_strict``;
        None reads ``$MLP_BACKEND`` (default numpy).
    dtype : {"float32", "float64"}
        Floating-point type of weights and computation. float64 on JAX turns
        on ``jax_enable_x64``.
    seed : int or None
        Seeds the initial weights and the shuffles of `fit`; the same seed
        gives the same weights and the same batches on every backend.
        None draws a seed (kept in ``self.seed``).

    Attributes
    ----------
    params : list of (W, b)
        Backend arrays, ``W: (fan_in, fan_out)``, ``b: (fan_out,)``.
    history_ : History
        The metrics of the last `fit`.

    Examples
    --------
    >>> import numpy as np, mlp
    >>> model = mlp.MLP([4, 16, 3], loss="cross_entropy", seed=0)
    >>> x = np.random.default_rng(0).normal(size=(30, 4)); y = np.arange(30) % 3
    >>> history = model.fit(x, y, epochs=5, learning_rate=0.1)
    """

    def __init__(self, layer_sizes, *, activation="relu", output_activation=None, loss="mse",
                 init=None, backend=None, dtype="float32", seed=None):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        loss_ = get_loss(loss)
        hidden = get_activation(activation)
        out_name = loss_.default_output if output_activation is None else output_activation
        output = get_activation(out_name, hidden=False)
        if out_name not in loss_.allowed_outputs:
            raise ValueError(f"loss {loss!r} cannot be used with output_activation {out_name!r}; "
                             f"allowed: {', '.join(loss_.allowed_outputs)}")
        self.init = check_initializer(default_initializer(activation) if init is None else init)
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.backend: Backend = resolve_backend(backend)
        self.xp = self.backend.xp
        self.dtype_name = dtype
        self.dtype = self.backend.dtype(dtype)
        self.activation, self.output_activation, self.loss_name = activation, out_name, loss
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else int(seed)
        self._spec = NetworkSpec(self.xp, hidden, output, loss_)
        self._cache = {}
        init_rng = np.random.default_rng([self.seed, 0])
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        self.params = self._to_device(initial_weights(self.layer_sizes, self.init, init_rng))
        self.history_ = None
        self.optimizer_ = None
        self.optimizer_state_ = None
        self.stop_training = False

    # ------------------------------------------------------------------ basics
    @property
    def n_features(self) -> int:
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.layer_sizes[-1]

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.layer_sizes[:-1], self.layer_sizes[1:]))

    @property
    def is_classifier(self) -> bool:
        return self._spec.loss.classification

    def __repr__(self) -> str:
        return (f"MLP(layer_sizes={list(self.layer_sizes)}, activation={self.activation!r}, "
                f"output_activation={self.output_activation!r}, loss={self.loss_name!r}, "
                f"backend={self.backend.name!r}, dtype={self.dtype_name!r}, seed={self.seed})")

    def _to_device(self, host_params):
        to = self.backend.asarray
        return [(to(W, self.dtype), to(b, self.dtype)) for W, b in host_params]

    def _compiled(self, key, factory):
        """A compiled function, compiled once per key and shared by every model with the
        same backend and network math (JAX compiles per model otherwise: seconds each).

        ``factory`` must depend only on ``self.backend``, ``self._spec`` and ``key``.
        Keys that cannot be hashed (e.g. a mutable optimizer object) use the model's
        own cache, by identity.
        """
        try:
            shared_key = (self.backend, self._spec, key)
            hash(shared_key)
        except TypeError:
            key = tuple(id(k) for k in key)
            if key not in self._cache:
                self._cache[key] = factory()
            return self._cache[key]
        fn = _SHARED_CACHE.pop(shared_key, None)
        if fn is None:
            fn = factory()
        _SHARED_CACHE[shared_key] = fn  # most recently used last
        while len(_SHARED_CACHE) > _SHARED_CACHE_SIZE:
            _SHARED_CACHE.pop(next(iter(_SHARED_CACHE)))
        return fn

    def _split_rng(self):
        return np.random.default_rng([self.seed, 2])

    # ------------------------------------------------------------------- data
    def _x(self, x, name="x"):
        return prepare_x(self.backend, x, self.n_features, self.dtype, name)

    def _prepare(self, x, y, names=("x", "y")):
        """Checked ``(x, targets, labels)`` on the backend (see `prepare_targets`)."""
        x_dev = self._x(x, names[0])
        targets, labels = prepare_targets(self.backend, self._spec.loss, y, x_dev.shape[0],
                                          self.n_outputs, self.dtype, names[1], names[0])
        return x_dev, targets, labels

    # -------------------------------------------------------------- inference
    def predict(self, x):
        """The network's output ``(n, n_outputs)`` as a backend array.

        For classifiers these are probabilities (softmax or sigmoid outputs).
        """
        fn = self._compiled(("predict",), lambda spec=self._spec: self.backend.jit(
            lambda p, x: core.forward(spec, p, x)))
        return fn(self.params, self._x(x))

    def predict_proba(self, x):
        """Class probabilities ``(n, n_outputs)`` (classifiers only)."""
        self._require_classifier("predict_proba")
        return self.predict(x)

    def predict_classes(self, x):
        """Predicted classes: ``(n,)`` argmax for cross-entropy, ``(n, n_outputs)`` 0/1
        (probability > 0.5) for binary cross-entropy."""
        self._require_classifier("predict_classes")
        probs = self.predict(x)
        if self.loss_name == "cross_entropy":
            return self.xp.argmax(probs, axis=1)
        default_int = self.xp.__array_namespace_info__().default_dtypes()["integral"]
        return self.xp.astype(probs > 0.5, default_int)

    def _require_classifier(self, what):
        if not self.is_classifier:
            raise ValueError(f"{what} needs a classification loss (cross_entropy or "
                             f"binary_cross_entropy); this model uses {self.loss_name!r}")

    def loss(self, x, y) -> float:
        """The mean loss on ``(x, y)`` as a Python float (no penalty term)."""
        x_dev, targets, _ = self._prepare(x, y)
        fn = self._compiled(("loss",), lambda spec=self._spec: self.backend.jit(
            lambda p, x, y: core.loss_value(spec, p, x, y)))
        return float(fn(self.params, x_dev, targets))

    def gradients(self, x, y):
        """Gradients of the mean loss, ``[(dW, db), ...]`` as backend arrays."""
        x_dev, targets, _ = self._prepare(x, y)
        fn = self._compiled(("gradients",), lambda spec=self._spec: self.backend.jit(
            lambda p, x, y: core.loss_and_gradients(spec, p, x, y)[1]))
        return fn(self.params, x_dev, targets)

    def _metrics_fn(self):
        xp, spec = self.xp, self._spec

        def metrics(params, x, targets, labels):
            z, a = core.forward_logits(spec, params, x)
            loss = spec.loss.value(xp, z, a, targets)
            if spec.loss.name == "cross_entropy":
                score = xp.mean(xp.astype(xp.argmax(z, axis=1) == labels, a.dtype))
            elif spec.loss.name == "binary_cross_entropy":
                score = xp.mean(xp.astype((a > 0.5) == (targets > 0.5), a.dtype))
            else:
                res = xp.sum((targets - a) ** 2, axis=0)
                tot = xp.sum((targets - xp.mean(targets, axis=0)) ** 2, axis=0)
                safe = xp.where(tot > 0, tot, 1.0)
                per_output = xp.where(tot > 0, 1.0 - res / safe, xp.astype(res == 0, a.dtype))
                score = xp.stack([xp.mean(per_output), xp.mean((targets - a) ** 2)])
            return loss, score

        return self._compiled(("metrics",), lambda: self.backend.jit(metrics))

    def _metric_logs(self, x, targets, labels, prefix=""):
        loss, score = self._metrics_fn()(self.params, x, targets, labels)
        logs = {prefix + "loss": float(loss)}
        if self.is_classifier:
            logs[prefix + "accuracy"] = float(score)
        else:
            r2, mse = (float(v) for v in self.backend.to_numpy(score))
            logs[prefix + "r2"] = r2
            logs[prefix + "mse"] = mse
        return logs

    def _validation_logs(self, x, targets, labels):
        return self._metric_logs(x, targets, labels, prefix="val_")

    def evaluate(self, x, y) -> dict:
        """Metrics on ``(x, y)``: ``loss`` and ``accuracy`` for classifiers (for binary
        cross-entropy, the fraction of correct 0/1 outputs), ``loss``, ``r2``
        (mean over outputs of the coefficient of determination) and ``mse``
        (mean of ``(pred - y)**2``) for regression."""
        return self._metric_logs(*self._prepare(x, y))

    # --------------------------------------------------------------- training
    def fit(self, x, y, *, epochs, learning_rate=None, batch_size=None, shuffle=True,
            optimizer="sgd", alpha=0.0, clip_norm=None, validation_data=None,
            validation_split=None, early_stopping=False, patience=10, min_delta=0.0,
            callbacks=None, verbose=0):
        """Train the model from its current weights.

        Parameters
        ----------
        x : array, (n, n_features)
        y : array
            ``(n, n_outputs)`` (or ``(n,)`` with one output) for ``mse`` and
            ``binary_cross_entropy``; integer labels ``(n,)`` or one-hot rows for
            ``cross_entropy``.
        epochs : int
            Passes over the data (>= 1).
        learning_rate : float or schedule, optional
            For an optimizer given by name; defaults to the optimizer's own
            (0.01 for sgd, 1e-3 for adam, adamw and rmsprop).
        batch_size : int or None
            Samples per step; None (default) trains on the full batch. The last
            partial batch of an epoch is used, not dropped.
        shuffle : bool
            Draw a fresh order of the samples for every epoch (from the model's
            seed, on the host: every backend sees the same batches).
        optimizer : str or optimizer
            ``sgd``, ``adam``, ``adamw``, ``rmsprop`` or an object from
            `mlp.optimizers` (e.g. ``mlp.optimizers.SGD(0.1, momentum=0.9)``).
            The optimizer's state starts fresh at every call.
        alpha : float
            L2 penalty ``0.5 * alpha * sum ||W||^2`` on the weights (not the
            biases), added to the training loss.
        clip_norm : float or None
            Rescale the gradients when their global norm exceeds this.
        validation_data : (x_val, y_val), optional
        validation_split : float in (0, 1), optional
            Hold out this fraction of ``(x, y)`` (a random subset drawn from the
            seed) for validation.
        early_stopping : bool
            Stop when ``val_loss`` (the training loss without validation data)
            has not improved by more than ``min_delta`` for ``patience``
            epochs, and restore the best epoch's weights.
        callbacks : list of Callback or functions ``fn(epoch, logs)``
        verbose : {0, 1, 2}
            0 silent, 1 a progress bar over the epochs, 2 one line per epoch.

        Returns
        -------
        History
            ``history.history["loss"]``: the mean training loss of each epoch
            (as seen by its steps); ``val_loss`` and ``val_accuracy`` /
            ``val_r2`` / ``val_mse`` with validation data.

        Raises
        ------
        TrainingDivergedError
            The loss became NaN or infinite; the last finite weights are restored.

        Notes
        -----
        A rejected call changes nothing. An interrupted call (Ctrl-C) leaves
        the weights of the last completed epoch.
        """
        from .training import fit

        return fit(self, x, y, epochs=epochs, learning_rate=learning_rate,
                   batch_size=batch_size, shuffle=shuffle, optimizer=optimizer, alpha=alpha,
                   clip_norm=clip_norm, validation_data=validation_data,
                   validation_split=validation_split, early_stopping=early_stopping,
                   patience=patience, min_delta=min_delta, callbacks=callbacks,
                   verbose=verbose)

    # ---------------------------------------------------------------- weights
    def get_weights(self):
        """``[(W, b), ...]`` as NumPy copies."""
        to = self.backend.to_numpy
        return [(to(W), to(b)) for W, b in self.params]

    def set_weights(self, weights):
        """Replace all weights by ``[(W, b), ...]`` (NumPy or backend arrays).

        Shapes must match the architecture and values must be finite; the
        arrays are cast to the model's dtype. Nothing changes if any check fails.
        """
        from .validation import host_float_array

        if not isinstance(weights, (list, tuple)) or len(weights) != len(self.layer_sizes) - 1:
            raise ValueError(f"set_weights needs a list of {len(self.layer_sizes) - 1} (W, b) "
                             f"pairs, got {type(weights).__name__}"
                             + (f" of length {len(weights)}" if hasattr(weights, '__len__')
                                else ""))
        host = []
        for i, pair in enumerate(weights):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"weights[{i}] must be a pair (W, b)")
            fan_in, fan_out = self.layer_sizes[i], self.layer_sizes[i + 1]
            W, b = (host_float_array(f"weights[{i}][{j}] ({'Wb'[j]})", self._host(pair[j]),
                                     self.dtype_name, self.backend) for j in (0, 1))
            if W.shape != (fan_in, fan_out) or b.shape != (fan_out,):
                raise ValueError(f"layer {i} expects W of shape {(fan_in, fan_out)} and b of shape "
                                 f"{(fan_out,)}, got {W.shape} and {b.shape}")
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise ValueError(f"weights of layer {i} contain NaN or infinite values")
            host.append((W, b))
        self.params = self._to_device(host)

    def _host(self, array):
        return self.backend.to_numpy(array) if self.backend.is_native(array) else array

    # ------------------------------------------------------------ persistence
    def save(self, path, *, include_optimizer=False):
        """Write architecture, dtype and weights to one ``.npz`` file, atomically.

        With ``include_optimizer``, the optimizer and its state from the last
        `fit` are stored too. Any backend can `mlp.load` the file.
        """
        from .io import save

        save(self, path, include_optimizer=include_optimizer)

    def summary(self) -> str:
        """A table of the layers, their shapes and parameter counts; also printed."""
        rows = [("layer", "weights", "biases", "activation", "params")]
        last = len(self.layer_sizes) - 2
        for i, (fan_in, fan_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            act = self.output_activation if i == last else self.activation
            rows.append((f"dense_{i}", f"({fan_in}, {fan_out})", f"({fan_out},)", act,
                         f"{fan_in * fan_out + fan_out:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(5)]
        line = "-" * (sum(widths) + 8)
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        text = [f"MLP on backend {self.backend.name!r} (device {self.backend.device}), "
                f"dtype {self.dtype_name}, loss {self.loss_name!r}", line, fmt.format(*rows[0]),
                line] + [fmt.format(*r) for r in rows[1:]] + [
                line, f"total parameters: {self.n_params:,}"]
        out = "\n".join(text)
        print(out)
        return out

    # ------------------------------------------------------------------ export
    def export_onnx(self, path, *, outputs=None):
        """Write the model as an ONNX file (input ``x: (N, n_features)``, outputs
        ``predict`` and, for classifiers, ``label``), atomically; run it with ONNX
        Runtime. ``outputs``: ``"predict"``, ``"label"`` or a list; None (default)
        gives every output the model has. Needs ``pip install 'mlp[onnx]'``; see
        `mlp.export`.
        """
        from .export import export_onnx

        export_onnx(self, path, outputs=outputs)
