"""`MLP`: the user-facing model, a thin stateful shell around the pure core."""

from __future__ import annotations

import numpy as np

from backends import Backend, resolve_backend

from . import core
from . import io as _io
from .activations import ACTIVATIONS, hidden_activations
from .core import NetworkSpec
from .initializers import INITIALIZERS, default_initializer, initial_weights
from .losses import LOSSES
from .params import Constraint, InstanceOf, Integer, Options, _Mismatch, validate
from .tree import tree_map
from .validation import check_dtype, check_layer_sizes, prepare_x

#: Compiled functions shared between models (see `MLP._compiled`), least recently used first.
_SHARED_CACHE: dict = {}
_SHARED_CACHE_SIZE = 128


class _Registered(Options):
    """One of the names in a registry (read at check time, so that names registered
    later are accepted)."""

    def __init__(self, registry):
        self._registry = registry

    @property
    def options(self):
        return tuple(self._registry() if callable(self._registry) else self._registry)

    @property
    def description(self):
        return "one of " + ", ".join(repr(o) for o in self.options)


class _LayerSizes(Constraint):
    description = "a sequence of positive integers"

    def accept(self, value):
        return check_layer_sizes(value)


class _FloatDType(Constraint):
    """``"float32"``/``"float64"``, a NumPy dtype or scalar type; stored as the name."""

    description = "'float32' or 'float64' (or np.float32, np.float64)"

    def accept(self, value):
        try:
            return check_dtype(value)
        except ValueError:
            raise _Mismatch(type_ok=True) from None
        except TypeError:
            raise _Mismatch(type_ok=False) from None


#: Model attributes that `get_config` reads under another name than the argument's.
_CONFIG_ATTRS = {"loss": "loss_name", "dtype": "dtype_name"}
#: Attributes rebuilt from the config and the backend's name when unpickling.
_REBUILT = ("backend", "xp", "dtype", "_spec", "_cache", "params", "optimizer_state_")


class MLP:
    """A multilayer perceptron: dense layers, hand-derived backprop, any array-API backend.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[n_features, hidden_1, ..., n_outputs]``, at least two entries, in
        order (a list, tuple or range; a set is refused).
    activation : str
        Hidden-layer activation: ``relu`` (default), ``leaky_relu`` (slope 0.01),
        ``tanh``, ``sigmoid``, ``identity``, or one added with
        `mlp.activations.register_activation`.
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
    dtype : {"float32", "float64"}, np.dtype or np.float32/np.float64
        Floating-point type of weights and computation, kept as its name in
        ``dtype_name``. float64 on JAX turns on ``jax_enable_x64``.
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

    #: Each constructor argument's rule, stated once (see `mlp.params`).
    _parameter_constraints = {
        "layer_sizes": [_LayerSizes()],
        "activation": [_Registered(hidden_activations)],
        "output_activation": [_Registered(ACTIVATIONS), None],
        "loss": [_Registered(LOSSES)],
        "init": [_Registered(INITIALIZERS), None],
        "backend": [InstanceOf((str, Backend), "a backend name or a Backend"), None],
        "dtype": [_FloatDType()],
        "seed": [Integer(0), None],
    }

    def __init__(self, layer_sizes, *, activation="relu", output_activation=None, loss="mse",
                 init=None, backend=None, dtype="float32", seed=None):
        self._configure(layer_sizes=layer_sizes, activation=activation,
                        output_activation=output_activation, loss=loss, init=init,
                        backend=backend, dtype=dtype, seed=seed)
        init_rng = np.random.default_rng([self.seed, 0])
        self.params = self._to_device(initial_weights(self.layer_sizes, self.init, init_rng))

    def _configure(self, **arguments):
        """Check the constructor's arguments and set everything but the weights."""
        values = validate(self._parameter_constraints, arguments)
        loss = LOSSES[values["loss"]]
        activation = values["activation"]
        out_name = values["output_activation"] or loss.default_output
        loss.check_outputs(out_name, values["layer_sizes"][-1])
        self.backend: Backend = resolve_backend(values["backend"])
        self.xp = self.backend.xp
        self.layer_sizes = values["layer_sizes"]
        self.activation, self.output_activation, self.loss_name = activation, out_name, loss.name
        self.init = values["init"] or default_initializer(activation)
        self.dtype_name = values["dtype"]
        self.dtype = self.backend.dtype(self.dtype_name)
        seed = values["seed"]
        self.seed = int(np.random.SeedSequence().entropy % 2**32) if seed is None else seed
        self._spec = NetworkSpec(self.xp, ACTIVATIONS[activation], ACTIVATIONS[out_name], loss)
        self._cache = {}
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        self.params = None
        self.history_ = None
        self.optimizer_ = None
        self.optimizer_state_ = None
        self.train_state_ = None
        self.stop_training = False

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict:
        """The constructor arguments as a JSON-ready dict (all but ``backend``).

        Defaults are resolved: ``output_activation`` and ``init`` are the ones
        in use and ``seed`` the one drawn when None was given, so
        ``MLP.from_config(model.get_config())`` builds the same initial weights.
        Keys: ``layer_sizes`` (list of int), ``activation``, ``output_activation``,
        ``loss``, ``init``, ``dtype`` (str) and ``seed`` (int).
        """
        names = [n for n in self._parameter_constraints if n != "backend"]
        config = {n: getattr(self, _CONFIG_ATTRS.get(n, n)) for n in names}
        config["layer_sizes"] = list(config["layer_sizes"])
        return config

    @classmethod
    def from_config(cls, config, backend=None):
        """A new model from `get_config`'s dict, on ``backend`` (None: ``$MLP_BACKEND``).

        Its weights are the initial ones drawn from the config's seed.
        """
        return cls(**cls._arguments(config), backend=backend)

    @classmethod
    def _arguments(cls, config):
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict from MLP.get_config(), got "
                            f"{type(config).__name__}")
        keys = [n for n in cls._parameter_constraints if n != "backend"]
        missing = [k for k in keys if k not in config]
        unknown = sorted(str(k) for k in config if k not in keys)
        if missing or unknown:
            raise ValueError("config " + "; ".join(
                part for part in (missing and f"lacks {', '.join(missing)}",
                                  unknown and f"has unknown keys {', '.join(unknown)}") if part))
        return dict(config)

    @classmethod
    def _without_weights(cls, config, backend=None):
        """A model configured from ``config`` whose weights are still to be set."""
        model = cls.__new__(cls)
        model._configure(**cls._arguments(config), backend=backend)
        return model

    def __getstate__(self):
        """Picklable state: the config, the backend's name and every array as NumPy."""
        state = {k: v for k, v in self.__dict__.items() if k not in _REBUILT}
        host = self.backend.to_numpy
        state["_config"] = self.get_config()
        state["_backend_name"] = self.backend.name
        state["params"] = None if self.params is None else self.get_weights()
        state["optimizer_state_"] = tree_map(
            lambda leaf: host(leaf) if self.backend.is_native(leaf) else leaf,
            self.optimizer_state_)
        return state

    def __setstate__(self, state):
        state = dict(state)
        self._configure(**state.pop("_config"), backend=state.pop("_backend_name"))
        weights, opt_state = state.pop("params"), state.pop("optimizer_state_")
        self.__dict__.update(state)
        self.params = None if weights is None else self._to_device(weights)
        self.optimizer_state_ = tree_map(
            lambda leaf: self.backend.asarray(leaf) if isinstance(leaf, np.ndarray) else leaf,
            opt_state)

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
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"MLP({args}, backend={self.backend.name!r})"

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
        targets, labels = self._spec.loss.prepare_targets(
            self.backend, y, x_dev.shape[0], self.n_outputs, self.dtype, names[1], names[0])
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
        return self._spec.loss.predict_classes(self.xp, self.predict(x))

    def _require_classifier(self, what):
        if not self.is_classifier:
            known = " or ".join(name for name, loss in LOSSES.items() if loss.classification)
            raise ValueError(f"{what} needs a classification loss ({known}); this model uses "
                             f"{self.loss_name!r}")

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
            return xp.stack([loss, *spec.loss.score(xp, z, a, targets, labels)])

        return self._compiled(("metrics",), lambda: self.backend.jit(metrics))

    def _metric_logs(self, x, targets, labels, prefix=""):
        values = self.backend.to_numpy(self._metrics_fn()(self.params, x, targets, labels))
        names = ("loss", *self._spec.loss.score_names)
        return {prefix + name: float(v) for name, v in zip(names, values, strict=True)}

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
            epochs, and restore the best epoch's weights (an
            `mlp.EarlyStopping` callback; pass one in ``callbacks`` to watch
            another metric, e.g. ``EarlyStopping("val_accuracy")``).
        patience : int
            Epochs without improvement before early stopping stops (>= 1).
        min_delta : float
            The smallest improvement that counts (>= 0).
        callbacks : list of Callback or functions ``fn(epoch, logs)``
            Called between epochs (see `mlp.callbacks`). A callback stops
            training with ``model.stop_training = True`` or a truthy return
            from ``on_epoch_end``; weights it sets with ``set_weights`` are the
            ones the next epoch trains from.
        verbose : {0, 1, 2}
            0 silent, 1 a progress bar over the epochs, 2 one line per epoch.

        Returns
        -------
        History
            ``history.history["loss"]``: the mean training loss of each epoch
            (as seen by its steps); ``val_loss`` and ``val_accuracy`` /
            ``val_r2`` / ``val_mse`` with validation data. Also ``self.history_``.

        Raises
        ------
        TrainingDivergedError
            The loss became NaN or infinite; the last weights whose loss on the
            training data is finite are restored. The message names the
            learning rate, or the data's scale when even the starting weights
            overflow the dtype.

        Notes
        -----
        Integers and floats may be Python or NumPy scalars; flags accept only
        booleans. A rejected call changes nothing. An interrupted call (Ctrl-C)
        keeps every completed epoch (on JAX, where epochs run in compiled calls
        of about a second each, every completed call). ``self.train_state_``
        holds the training state (weights, optimizer state, epochs completed).
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
        `fit` are stored too. Any backend can `mlp.load` the file. A new file
        gets the permissions a plain write gives under the umask; an
        overwritten one keeps its own.
        """
        _io.save(self, path, include_optimizer=include_optimizer)

    def summary(self, print_fn=None) -> None:
        """Print a table of the layers, their shapes and parameter counts.

        ``print_fn`` (default `print`) receives the whole text, e.g. a logger's
        method or ``list.append`` to keep it.
        """
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
        (print if print_fn is None else print_fn)("\n".join(text))


def load(path, backend=None) -> MLP:
    """A model from a file written by `MLP.save`, on ``backend`` (None: ``$MLP_BACKEND``).

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError (a ValueError)
        Anything else that keeps the file from being loaded: a folder or other
        non-regular file, an empty, truncated, corrupted, crafted or foreign
        file; the message names the file and the problem. Nothing in the file
        is ever executed, and nothing is allocated before the stored arrays'
        headers have been checked against the declared architecture.
    BackendUnavailableError
        ``backend`` cannot run here.
    """
    return _io.load_model(path, MLP, backend)
