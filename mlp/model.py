"""`MLP`: the user-facing model, a thin stateful shell around the pure core."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import numpy as np
import numpy.typing as npt

from . import batch_norm as bn
from . import buckets, core
from . import guard as _guard
from . import io as _io
from ._typing import Array, Namespace, Optimizer, Params
from .activations import ACTIVATIONS, hidden_activations
from .backends import Backend, resolve_backend
from .callbacks import History
from .core import NetworkSpec
from .data import BlockData, check_on_disk, is_array_on_disk, predict_by_blocks
from .dropout import check_rate
from .fit_settings import FitSettings, fit_signature
from .initializers import INITIALIZERS, default_initializer, initial_weights
from .losses import LOSSES
from .params import (
    Boolean,
    Constraint,
    InstanceOf,
    Integer,
    Options,
    Real,
    _Mismatch,
    check,
    validate,
)
from .state import HistoryRecord, ModelState
from .tree import tree_map
from .validation import check_dtype, check_layer_sizes, prepare_x

if TYPE_CHECKING:
    from .training import TrainState
    from .weights import ClassWeight

T = TypeVar("T")
#: Weights as `set_weights` takes them: ``[(W, b), ...]``, NumPy or backend arrays.
Weights = Sequence[tuple[Array, Array]]

#: Compiled functions shared between models (see `MLP.compiled`), least recently used first.
_SHARED_CACHE: dict[tuple[Any, ...], Callable[..., Any]] = {}
_SHARED_CACHE_SIZE = 128


class _Registered(Options):
    """One of the names in a registry (read at check time, so that names registered
    later are accepted)."""

    def __init__(self, registry: Iterable[str] | Callable[[], Iterable[str]]) -> None:
        self._registry = registry

    @property
    def options(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(self._registry() if callable(self._registry) else self._registry)

    @property
    def description(self) -> str:  # type: ignore[override]
        return "one of " + ", ".join(repr(o) for o in self.options)


class _LayerSizes(Constraint):
    description = "a sequence of positive integers"

    def accept(self, value: Any) -> tuple[int, ...]:
        return check_layer_sizes(value)


class _FloatDType(Constraint):
    """``"float32"``/``"float64"``, a NumPy dtype or scalar type; stored as the name."""

    description = "'float32' or 'float64' (or np.float32, np.float64)"

    def accept(self, value: Any) -> str:
        try:
            return check_dtype(value)
        except ValueError:
            raise _Mismatch(type_ok=True) from None
        except TypeError:
            raise _Mismatch(type_ok=False) from None


class _DropoutRates(Constraint):
    """A drop rate in [0, 1), or a list (tuple) of them: stored as a float or a tuple."""

    description = "a rate in [0, 1) or a list of such rates, one per hidden layer"
    _rate = Real(0.0, 1.0, "left")

    def accept(self, value: Any) -> float | tuple[float, ...]:
        if isinstance(value, (list, tuple)):
            if not value:
                raise _Mismatch(type_ok=True)
            return tuple(self._rate.accept(v) for v in value)
        rate: float = self._rate.accept(value)
        return rate


def _normalization(values: dict[str, Any]) -> tuple[float, ...]:
    """The spec's ``batch_norm`` (``(momentum, epsilon)``, or ``()`` without) from the
    checked constructor arguments; refused on a model without hidden layers."""
    if not values["batch_norm"]:
        return ()
    if len(values["layer_sizes"]) < 3:
        raise ValueError(f"batch_norm=True normalizes the hidden layers, but layer_sizes "
                         f"{list(values['layer_sizes'])} has none")
    return (values["momentum"], values["epsilon"])


def hidden_rates(dropout: float | tuple[float, ...], layer_sizes: Sequence[int]
                 ) -> tuple[float, ...]:
    """One drop rate per hidden layer from the constructor's ``dropout``.

    Parameters
    ----------
    dropout : float or tuple of float
        One rate for every hidden layer, or one each.
    layer_sizes : sequence of int
        The model's layer sizes.

    Returns
    -------
    tuple of float
        ``len(layer_sizes) - 2`` rates.

    Raises
    ------
    ValueError
        A list whose length is not the number of hidden layers, or a rate above 0
        for a model without hidden layers.
    """
    n_hidden = len(layer_sizes) - 2
    if n_hidden == 0 and dropout != 0.0:
        raise ValueError(f"dropout={dropout!r} drops units of the hidden layers, but "
                         f"layer_sizes {list(layer_sizes)} has none; to drop input features "
                         f"use input_dropout=...")
    if not isinstance(dropout, tuple):
        return (dropout,) * n_hidden
    if len(dropout) != n_hidden:
        raise ValueError(f"dropout lists {len(dropout)} rates, but layer_sizes "
                         f"{list(layer_sizes)} has {n_hidden} hidden layers; give one rate "
                         f"per hidden layer, or one number for all of them")
    return dropout


#: Model attributes that `get_config` reads under another name than the argument's.
_CONFIG_ATTRS = {"loss": "loss_name", "dtype": "dtype_name"}
#: The attributes fixed when a model is built (read-only properties, see `_fixed`), each
#: with the config key that sets it (None: none does).
_FIXED = {"layer_sizes": "layer_sizes", "activation": "activation",
          "output_activation": "output_activation", "loss_name": "loss", "init": "init",
          "dtype_name": "dtype", "dtype": "dtype", "seed": "seed", "dropout": "dropout",
          "input_dropout": "input_dropout", "batch_norm": "batch_norm",
          "momentum": "momentum", "epsilon": "epsilon", "backend": None, "xp": None}
#: Config keys that a file or config from before they existed may lack, with the value
#: that builds the same model.
_CONFIG_DEFAULTS: dict[str, Any] = {"dropout": 0.0, "input_dropout": 0.0, "batch_norm": False,
                                     "momentum": 0.99, "epsilon": 1e-3}
#: Attributes rebuilt from the config and the backend's name when unpickling (the guard is
#: the object's own: a copy gets a fresh one; the training state is rebuilt from the
#: model's own weights, optimizer state, epoch count and shuffle stream).
_REBUILT = ("_spec", "_cache", "params", "optimizer_state_", "train_state_", _guard.ATTRIBUTE,
            *("_" + name for name in _FIXED))


class _Fixed(property, Generic[T]):
    """A read-only property of the model (`_fixed`), typed by the value it gives."""

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type | None = None, /) -> _Fixed[T]: ...

        @overload
        def __get__(self, instance: object, owner: type | None = None, /) -> T: ...

        def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...


def _fixed(name: str) -> _Fixed[Any]:
    """A read-only property for the attribute ``name`` fixed when the model is built: the
    weights, the compiled functions and the files `MLP.save` writes all follow it, so
    assigning it is refused with what to do instead."""
    key = _FIXED[name]
    if key is not None:
        advice = (f"build a new model instead, e.g. mlp.MLP.from_config({{**model.get_config(), "
                  f"{key!r}: ...}}), which starts from fresh weights")
    elif name == "backend":
        advice = ("to run the model on another backend, save it and load it there: "
                  "model.save(path); mlp.load(path, backend=...)")
    else:
        advice = "it is the backend's array namespace"

    def get(self: MLP) -> Any:
        return self.__dict__["_" + name]

    def refuse(self: MLP, value: object = None) -> None:
        raise AttributeError(f"MLP.{name} is read-only: it is fixed when the model is built "
                             f"(the weights, the compiled functions and saved files follow "
                             f"it); {advice}")

    fixed: _Fixed[Any] = _Fixed(get, refuse, refuse)
    fixed.__doc__ = f"The model's {name} (read-only)."  # (a subclass's doc= is not kept)
    return fixed


def _physical_memory() -> int | None:
    """The machine's memory in bytes, where the system says (None elsewhere)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def _bytes_text(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1000
    return ""  # pragma: no cover


def _drawn_seed() -> int:
    """A seed for ``seed=None``: fresh entropy from the system, reduced to 32 bits."""
    entropy = np.random.SeedSequence().entropy
    assert isinstance(entropy, int)  # (SeedSequence draws an int when given none)
    return entropy % 2**32


def too_large_error(layer_sizes: Sequence[int], need: int, why: str) -> MemoryError:
    """The error for initial weights of ``layer_sizes`` that need ``need`` bytes, which
    ``why`` (e.g. ``"cannot be allocated here"``) refuses.

    Parameters
    ----------
    layer_sizes : sequence of int
    need : int
        Bytes (`check_weights_size`).
    why : str
        Why they are refused, in the message.

    Returns
    -------
    MemoryError
    """
    n_params = sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
    return MemoryError(f"layer_sizes {list(layer_sizes)} makes a model of {n_params:,} "
                       f"parameters, whose initial weights need about {_bytes_text(need)} "
                       f"(drawn in float64): {why}; use smaller layers")


def check_weights_size(layer_sizes: Sequence[int], dtype_name: str) -> int:
    """The bytes the initial weights of ``layer_sizes`` in ``dtype_name`` need (drawn in
    float64 on the host, then cast); refused before anything is allocated when that
    exceeds the machine's memory.

    Parameters
    ----------
    layer_sizes : sequence of int
    dtype_name : {"float32", "float64"}

    Returns
    -------
    int
        The bytes needed.

    Raises
    ------
    MemoryError
        More than the machine's memory (`too_large_error`).
    """
    n_params = sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
    need = n_params * (8 + np.dtype(dtype_name).itemsize)
    total = _physical_memory()
    if total is not None and need > total:
        raise too_large_error(layer_sizes, need, f"more than this machine's memory "
                                            f"({_bytes_text(total)})")
    return need


P = ParamSpec("P")
R = TypeVar("R")


def _in_precision(method: Callable[Concatenate[MLP, P], R]) -> Callable[Concatenate[MLP, P], R]:
    """Run ``method`` inside ``backend.precision(model.dtype)``: on JAX a float64 model
    computes in float64 without turning on 64-bit types for the whole process."""

    @functools.wraps(method)
    def call(self: MLP, *args: P.args, **kwargs: P.kwargs) -> R:
        with self.backend.precision(self.dtype):
            return method(self, *args, **kwargs)

    return call


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
        ``softmax`` for ``cross_entropy``, ``sigmoid`` for ``binary_cross_entropy``,
        ``exp`` for ``poisson``).
    loss : str
        ``mse`` (mean of ``0.5 * (pred - y)**2`` over all elements),
        ``cross_entropy`` (integer labels ``(n,)`` or one-hot ``(n, n_classes)``),
        ``binary_cross_entropy`` (targets in {0, 1}, ``(n, n_outputs)``),
        ``poisson`` (half the Poisson deviance through a log link, ``exp(z) -
        y*z``; counts or rates ``>= 0``, positive predictions) or one added with
        `mlp.losses.register_loss`.
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
        Seeds the initial weights, the shuffles and the dropout masks of `fit`;
        the same seed gives the same weights, batches and masks on every backend.
        None draws a seed (kept in ``self.seed``); a `BackupAndRestore` that
        resumes a run gives the untrained model the seed of that run.
    dropout : float or sequence of float, default 0.0
        Inverted dropout on the hidden layers' outputs while training: each unit
        is dropped with this probability and the kept ones scaled by ``1 / (1 -
        rate)``; one rate for every hidden layer, or a list of one per hidden
        layer, each in ``[0, 1)``. Inference (`predict`, `evaluate`, validation
        scores) drops nothing. The masks follow from ``seed`` and the epoch
        (`mlp.dropout`).
    input_dropout : float, default 0.0
        The same on the input features, in ``[0, 1)``.
    batch_norm : bool, default False
        Normalize each hidden layer's ``a @ W`` over the batch, then scale and shift
        it by learned ``gamma`` and ``beta`` (`mlp.batch_norm`): while training with
        the batch's mean and variance (rows of weight 0 take no part), at inference
        (`predict`, `evaluate`, validation scores) with their running averages. Such
        a layer's ``b`` has shape ``(4, units)``: its rows are ``beta`` (in the bias's
        place), ``gamma``, the running mean and the running variance, so the weights
        carry them everywhere (saved files, pickles, `snapshot_state`).
    momentum : float, default 0.99
        How much of the running averages stays at each step, in ``[0, 1]``:
        ``running = momentum * running + (1 - momentum) * batch`` (Keras's name).
    epsilon : float, default 1e-3
        Added to the variance before its square root, > 0 (Keras's name).

    Attributes
    ----------
    layer_sizes, activation, output_activation, loss_name, init, dtype_name, seed
        What the model is built with (and ``dtype``, the backend's dtype,
        ``backend`` and ``xp``, its namespace): read-only, since the weights,
        the compiled functions and saved files follow them; build a new model
        (`from_config`) to change one.
    dropout, input_dropout, batch_norm, momentum, epsilon
        The regularization the model trains with (read-only, as above).
    params : list of (W, b)
        Backend arrays, ``W: (fan_in, fan_out)``, ``b: (fan_out,)`` (``(4, fan_out)``
        on a batch-normalized hidden layer).
    history_ : History
        The metrics of every epoch trained, over all `fit` calls (and those
        before a `save` with ``include_optimizer=True``); None before training.
    epochs_trained_ : int
        Epochs trained so far; the next `fit` numbers its epochs on from here.
    optimizer_ : optimizer or None
        The optimizer of the last `fit` (or from the loaded file), which a
        `fit` without ``optimizer`` continues.
    optimizer_state_ : pytree or None
        Its state: moments, step count (which drives a schedule) and
        learning-rate scale.

    Examples
    --------
    >>> import numpy as np, mlp
    >>> model = mlp.MLP([4, 16, 3], loss="cross_entropy", backend="numpy", seed=0)
    >>> x = np.random.default_rng(0).normal(size=(30, 4)); y = np.arange(30) % 3
    >>> history = model.fit(x, y, epochs=5)
    >>> len(history.history["loss"]), model.epochs_trained_
    (5, 5)
    >>> model.predict(x).shape, model.predict_classes(x).shape
    ((30, 3), (30,))
    >>> sorted(model.evaluate(x, y))
    ['accuracy', 'loss']
    """

    layer_sizes: _Fixed[tuple[int, ...]] = _fixed("layer_sizes")
    activation: _Fixed[str] = _fixed("activation")
    output_activation: _Fixed[str] = _fixed("output_activation")
    loss_name: _Fixed[str] = _fixed("loss_name")
    init: _Fixed[str] = _fixed("init")
    dtype_name: _Fixed[str] = _fixed("dtype_name")
    dtype: _Fixed[Any] = _fixed("dtype")  # the backend's dtype object
    seed: _Fixed[int] = _fixed("seed")
    dropout: _Fixed[float | tuple[float, ...]] = _fixed("dropout")
    input_dropout: _Fixed[float] = _fixed("input_dropout")
    batch_norm: _Fixed[bool] = _fixed("batch_norm")
    momentum: _Fixed[float] = _fixed("momentum")
    epsilon: _Fixed[float] = _fixed("epsilon")
    backend: _Fixed[Backend] = _fixed("backend")
    xp: _Fixed[Namespace] = _fixed("xp")

    params: list[tuple[Array, Array]]
    history_: History | None
    epochs_trained_: int
    optimizer_: Optimizer | None
    optimizer_state_: Any
    train_state_: TrainState | None
    stop_training: bool

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
        "dropout": [_DropoutRates()],
        "input_dropout": [Real(0.0, 1.0, "left")],
        "batch_norm": [Boolean()],
        "momentum": [Real(0.0, 1.0, "both")],
        "epsilon": [Real(0.0, None, "neither")],
    }

    def __init__(self, layer_sizes: Sequence[int], *, activation: str = "relu",
                 output_activation: str | None = None, loss: str = "mse", init: str | None = None,
                 backend: str | Backend | None = None, dtype: npt.DTypeLike = "float32",
                 seed: int | None = None, dropout: float | Sequence[float] = 0.0,
                 input_dropout: float = 0.0, batch_norm: bool = False, momentum: float = 0.99,
                 epsilon: float = 1e-3) -> None:
        self._configure(layer_sizes=layer_sizes, activation=activation,
                        output_activation=output_activation, loss=loss, init=init,
                        backend=backend, dtype=dtype, seed=seed, dropout=dropout,
                        input_dropout=input_dropout, batch_norm=batch_norm, momentum=momentum,
                        epsilon=epsilon)
        init_rng = np.random.default_rng([self.seed, 0])
        need = check_weights_size(self.layer_sizes, self.dtype_name)
        try:
            weights = initial_weights(self.layer_sizes, self.init, init_rng)
            if self.batch_norm:
                weights = [(W, bn.initial_bias(b.shape[0]) if i < len(weights) - 1 else b)
                           for i, (W, b) in enumerate(weights)]
            self.params = self._to_device(weights)
        except MemoryError:
            raise too_large_error(self.layer_sizes, need, "cannot be allocated here") from None

    def _configure(self, **arguments: Any) -> None:
        """Check the constructor's arguments and set everything but the weights."""
        values = validate(self._parameter_constraints, arguments)
        loss = LOSSES[values["loss"]]
        activation = values["activation"]
        out_name = values["output_activation"] or loss.default_output
        loss.check_outputs(out_name, values["layer_sizes"][-1])
        rates = (values["input_dropout"], *hidden_rates(values["dropout"],
                                                         values["layer_sizes"]))
        for i, rate in enumerate(rates):
            check_rate(rate, "dropout" if i else "input_dropout")
        normalization = _normalization(values)
        backend: Backend = resolve_backend(values["backend"])
        seed = values["seed"]
        fixed = dict(backend=backend, xp=backend.xp, layer_sizes=values["layer_sizes"],
                     activation=activation, output_activation=out_name, loss_name=loss.name,
                     init=values["init"] or default_initializer(activation),
                     dtype_name=values["dtype"], dtype=backend.dtype(values["dtype"]),
                     seed=_drawn_seed() if seed is None else seed, dropout=values["dropout"],
                     input_dropout=values["input_dropout"], batch_norm=values["batch_norm"],
                     momentum=values["momentum"], epsilon=values["epsilon"])
        self.__dict__.update({"_" + name: value for name, value in fixed.items()})
        self._seed_drawn = seed is None  # a BackupAndRestore may resume another run's seed
        self._spec = NetworkSpec(self.xp, ACTIVATIONS[activation], ACTIVATIONS[out_name], loss,
                                 rates if any(rates) else (), normalization)
        self._cache: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._shuffle_rng = np.random.default_rng([self.seed, 1])
        self.history_ = None
        self.epochs_trained_ = 0
        self.optimizer_ = None
        self.optimizer_state_ = None
        self.train_state_ = None
        self.stop_training = False

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """Describe the model by its constructor arguments, as a JSON-ready dict.

        Defaults are resolved: ``output_activation`` and ``init`` are the ones
        in use and ``seed`` the one drawn when None was given, so
        ``MLP.from_config(model.get_config())`` builds the same initial weights.
        Keys: ``layer_sizes`` (list of int), ``activation``, ``output_activation``,
        ``loss``, ``init``, ``dtype`` (str), ``seed`` (int), ``dropout`` (float, or a
        list of one per hidden layer), ``input_dropout`` (float), ``batch_norm`` (bool),
        ``momentum`` and ``epsilon`` (float).

        Returns
        -------
        dict
            Every constructor argument but ``backend``, with its value in use.
        """
        names = [n for n in self._parameter_constraints if n != "backend"]
        config = {n: getattr(self, _CONFIG_ATTRS.get(n, n)) for n in names}
        config["layer_sizes"] = list(config["layer_sizes"])
        if isinstance(config["dropout"], tuple):
            config["dropout"] = list(config["dropout"])
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], backend: str | Backend | None = None, *,
                    weights: Weights | Callable[[], Weights] | None = None) -> MLP:
        """Build a new model from `get_config`'s dict, on ``backend``.

        Parameters
        ----------
        config : dict
            `get_config`'s dict (checked with `check_config`).
        backend : str, Backend or None, default None
            Where the model runs (None: ``$MLP_BACKEND``).
        weights : list of (W, b), a function returning one, or None, default None
            The model's weights (checked as `set_weights` checks them); a function is
            called once the config and the backend have been checked (so that a file's
            arrays are read only for a model that can be built). None (default): the
            initial weights drawn from the config's seed.

        Returns
        -------
        MLP
            The new model.

        Raises
        ------
        TypeError, ValueError
            A config `check_config` refuses, or weights `set_weights` refuses.
        BackendUnavailableError
            ``backend`` cannot run here.
        """
        if weights is None:
            return cls(**cls.check_config(config), backend=backend)
        model = cls.__new__(cls)
        cls._configure(model, **cls.check_config(config), backend=backend)
        model.set_weights(weights() if callable(weights) else weights)
        return model

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Check that ``config`` has exactly `get_config`'s keys.

        Parameters
        ----------
        config : dict
            A dict from `get_config`.

        Returns
        -------
        dict
            A copy of ``config``.

        Raises
        ------
        TypeError
            ``config`` is not a dict.
        ValueError
            Keys are missing or unknown (the message lists them).
        """
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict from MLP.get_config(), got "
                            f"{type(config).__name__}")
        keys = [n for n in cls._parameter_constraints if n != "backend"]
        config = {**{k: v for k, v in _CONFIG_DEFAULTS.items() if k in keys}, **config}
        missing = [k for k in keys if k not in config]
        unknown = sorted(str(k) for k in config if k not in keys)
        if missing or unknown:
            raise ValueError("config " + "; ".join(
                part for part in (missing and f"lacks {', '.join(missing)}",
                                  unknown and f"has unknown keys {', '.join(unknown)}") if part))
        return dict(config)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable state: the config, the backend's name and every array as NumPy (no
        object of the backend's library: any process with NumPy reads it, and it is put
        back on the backend when unpickled). Refused while another thread trains the model
        (the state would mix two epochs)."""
        _guard.guard_of(self).check_free("pickling (or copying)")
        state = {k: v for k, v in self.__dict__.items() if k not in _REBUILT}
        host = self.backend.to_numpy
        state["_config"] = self.get_config()
        state["_backend_name"] = self.backend.name
        state["params"] = None if self.params is None else self.get_weights()
        state["optimizer_state_"] = tree_map(
            lambda leaf: host(leaf) if self.backend.is_native(leaf) else leaf,
            self.optimizer_state_)
        state["_has_train_state"] = self.train_state_ is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the model from `__getstate__`'s state on its backend, which must be
        able to run here (`BackendUnavailableError` otherwise)."""
        state = {k: v for k, v in state.items() if k not in _FIXED}  # older pickles' copies
        self._configure(**state.pop("_config"), backend=state.pop("_backend_name"))
        weights, opt_state = state.pop("params"), state.pop("optimizer_state_")
        has_train_state = state.pop("_has_train_state", False)
        self.__dict__.update(state)
        if weights is not None:
            self.params = self._to_device(weights)
        with self.backend.precision(self.dtype):
            self.optimizer_state_ = tree_map(
                lambda leaf: self.backend.asarray(leaf) if isinstance(leaf, np.ndarray) else leaf,
                opt_state)
        if has_train_state:
            from .training import TrainState

            self.train_state_ = TrainState(self.params, self.optimizer_state_,
                                           self.epochs_trained_, self.shuffle_rng)

    # ------------------------------------------------------------------ basics
    @property
    def n_features(self) -> int:
        """The number of input features, ``layer_sizes[0]``."""
        return self.layer_sizes[0]

    @property
    def n_outputs(self) -> int:
        """The number of outputs, ``layer_sizes[-1]``."""
        return self.layer_sizes[-1]

    @property
    def n_params(self) -> int:
        """The number of weights and biases of all layers.

        A batch-normalized layer's four rows of ``b`` count (`weight_shapes`).
        """
        return sum(math.prod(w) + math.prod(b) for w, b in self.weight_shapes())

    def weight_shapes(self) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
        """The shapes of each layer's ``(W, b)``.

        Returns
        -------
        list of (tuple, tuple)
            ``W: (fan_in, fan_out)``, ``b: (fan_out,)`` (``(4, fan_out)`` on a
            batch-normalized hidden layer, `mlp.batch_norm.ROWS`).
        """
        return bn.weight_shapes(self.layer_sizes, self.batch_norm)

    @property
    def spec(self) -> NetworkSpec:
        """The network's math without its weights, for the pure functions of `mlp.core`.

        A `mlp.core.NetworkSpec`: the array namespace, the activations and the loss.

        ``mlp.core.forward(model.spec, model.params, x)`` is ``model.predict(x)`` as a
        pure function of arrays: it works inside ``jax.jit``, ``jax.grad`` and
        ``jax.vmap``, and with PyTorch's autograd, where the model's methods (which
        check and convert their inputs on the host) do not. (On JAX, `predict` runs on
        the rows padded to `mlp.buckets`' ladder, whose matrix products XLA may sum in
        another order than on ``x``'s own rows: equal but for the last bit or two.)
        """
        return self._spec

    @property
    def is_classifier(self) -> bool:
        """Whether the loss is a classification loss (e.g. ``cross_entropy``)."""
        return self._spec.loss.classification

    def __repr__(self) -> str:
        config = self.get_config()  # (options off by default shown only when on)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items()
                         if k not in _CONFIG_DEFAULTS or v != _CONFIG_DEFAULTS[k])
        return f"MLP({args}, backend={self.backend.name!r})"

    @_in_precision
    def _to_device(self, host_params: Weights) -> list[tuple[Array, Array]]:
        """``[(W, b), ...]`` from the host as arrays of the backend's own, in memory it
        allocated (where a fresh array lives, as after a training step: a matrix product
        may round by where its operands sit, so the weights never stay in NumPy's)."""
        to, copy = self.backend.asarray, self.xp.asarray
        return [(copy(to(W, self.dtype), copy=True), copy(to(b, self.dtype), copy=True))
                for W, b in host_params]

    def compiled(self, key: tuple[Any, ...], factory: Callable[[], Callable[..., Any]]
                 ) -> Callable[..., Any]:
        """Get a compiled function, compiled once per key and shared by models alike.

        Every model with the same backend and network math shares it (JAX compiles
        per model otherwise: seconds each).

        Parameters
        ----------
        key : tuple
            What the function is, besides the backend and `spec` (e.g. ``("predict",)``).
            Keys that cannot be hashed (e.g. a mutable optimizer object) use the model's
            own cache, by identity.
        factory : callable
            ``factory()`` builds the function; it must depend only on ``self.backend``,
            ``self.spec`` and ``key``.

        Returns
        -------
        callable
            The function (built by ``factory`` on first use).
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

    @property
    def shuffle_rng(self) -> np.random.Generator:
        """The stream `fit` draws the batches' orders from.

        Seeded by ``seed``, it lives on from one `fit` to the next, and `save` with
        ``include_optimizer`` stores it.
        """
        return self._shuffle_rng

    @property
    def seed_drawn(self) -> bool:
        """Whether ``seed`` was drawn (``seed=None``) rather than given.

        A `BackupAndRestore` may then resume the run of another seed.
        """
        return self.__dict__.get("_seed_drawn", False)

    def validation_split_rng(self, seed: int | None = None) -> np.random.Generator:
        """A new stream for `fit`'s ``validation_split``, of ``seed`` (default the model's).

        Parameters
        ----------
        seed : int or None
            The seed of the run (None: ``self.seed``).

        Returns
        -------
        numpy.random.Generator
            A fresh generator, seeded by ``[seed, 2]``.
        """
        return np.random.default_rng([self.seed if seed is None else seed, 2])

    # ------------------------------------------------------------------ state
    def snapshot_state(self) -> ModelState:
        """Take everything training changes, as one value for `restore_state`.

        The weights, the optimizer and its state, the epoch count, the history (with
        its contents), the shuffle stream's state, the seed, ``stop_training`` and the
        training state.

        Returns
        -------
        ModelState
            The model's own arrays and values (not copies).
        """
        history, train = self.history_, self.train_state_
        record = HistoryRecord.of(history) if isinstance(history, History) else None
        values = None if train is None else (train.params, train.opt_state, train.epoch)
        return ModelState(self.params, self.optimizer_, self.optimizer_state_,
                          self.epochs_trained_, history, record,
                          self._shuffle_rng.bit_generator.state, self.seed, self.seed_drawn,
                          self.stop_training, train, values)

    def restore_state(self, state: ModelState) -> None:
        """Put ``state`` (`snapshot_state`'s, or one built from it) in, all or nothing.

        Everything is checked first - weights of the model's shapes, dtype and backend,
        an epoch count, a history `mlp.load` would accept with that count, an
        optimizer, a shuffle stream's state, a seed - then the weights, the optimizer
        and its state, the epoch count, the history (refilled with its recorded
        contents), the shuffle stream, the seed, ``stop_training`` and the training
        state are all replaced together.

        Parameters
        ----------
        state : ModelState
            A state from `snapshot_state` (or one built from it).

        Raises
        ------
        ValueError
            Something in ``state`` the model cannot take (the message says what),
            or, from a callback of a running fit, a state taken outside that fit;
            nothing has changed.
        ModelBusyError
            Another thread is training the model.

        Notes
        -----
        The state holds the model's own arrays, not copies: write into neither.
        """
        _guard.guard_of(self).check_free("restore_state")
        problem = self._state_problem(state) or self._running_fit_problem(state)
        if problem:
            raise ValueError(f"restore_state: {problem}; the model is as it was")
        if state.history_record is not None and state.history is not None:
            state.history_record.put_back(state.history)
        if state.train_state is not None and state.train_state_values is not None:
            train = state.train_state
            train.params, train.opt_state, train.epoch = state.train_state_values
        self.params, self.optimizer_, self.optimizer_state_ = (
            state.params, state.optimizer, state.optimizer_state)
        self.train_state_, self.epochs_trained_, self.history_ = (
            state.train_state, state.epochs_trained, state.history)
        self._shuffle_rng.bit_generator.state = state.shuffle_state
        self._seed, self._seed_drawn = state.seed, state.seed_drawn
        self.stop_training = state.stop_training

    def _running_fit_problem(self, state: ModelState) -> str | None:
        """Why a callback of the running fit may not put ``state`` in: it was taken
        outside that fit (None where no fit runs, or the state is of this fit's)."""
        if _guard.guard_of(self).owner is None or state.train_state is self.train_state_:
            return None
        return ("it was called from a callback of the running fit with a state taken "
                "outside that fit; a fit's callbacks may restore only states taken during "
                "it (snapshot_state in one of its hooks). Restore it after fit returns, or "
                "set the weights with set_weights")

    def _state_problem(self, state: object) -> str | None:
        """What keeps the model from taking ``state`` (None if nothing)."""
        from .training import history_problem, params_problem

        if not isinstance(state, ModelState):
            return f"a ModelState (from snapshot_state) is needed, got {type(state).__name__}"
        problem = params_problem(self, state.params)
        if problem:
            return f"the weights are {problem}"
        epochs = state.epochs_trained
        if isinstance(epochs, (bool, np.bool_)) or not isinstance(epochs, (int, np.integer)) \
                or epochs < 0:
            return f"the epoch count {epochs!r} is not a count of epochs"
        if state.history is not None:
            shown = state.history if state.history_record is None else \
                state.history_record.recorded()
            problem = history_problem(shown, epochs)
            if problem:
                return f"the history has {problem}"
        optimizer = state.optimizer
        if optimizer is not None and not (hasattr(optimizer, "init")
                                          and hasattr(optimizer, "update")):
            return f"the optimizer {type(optimizer).__name__} is not an optimizer"
        return self._stream_problem(state)

    def _stream_problem(self, state: ModelState) -> str | None:
        """What is wrong with the state's shuffle stream and seed (None if nothing)."""
        try:
            type(self._shuffle_rng.bit_generator)().state = state.shuffle_state
        except (TypeError, ValueError, KeyError) as exc:
            return f"the shuffle stream's state is not one ({exc})"
        seed = state.seed
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) \
                or seed < 0:
            return f"the seed {seed!r} is not an integer >= 0"
        return None

    # ------------------------------------------------------------------- data
    @_in_precision
    def _x(self, x: Any, name: str = "x", on_host: bool = False) -> Array:
        """Checked ``x`` on the backend; with ``on_host``, as a NumPy array unless it is
        the backend's own array of a size of the ladder (see `_host_unless_bucketed`)."""
        if on_host:
            x = self._host_unless_bucketed(x, x)
        return prepare_x(self.backend, x, self.n_features, self.dtype, name, on_host=on_host)

    def _host_unless_bucketed(self, data: Any, x: Any) -> Any:
        """``data``, the backend's own array on a backend that pads rows to the ladder
        (`bucketed`), as NumPy unless ``x`` has a size of the ladder: then it is checked
        and padded on the host, as data from the host is (on the device every new shape
        would compile programs of its own)."""
        backend = self.backend
        if not (self.bucketed() and backend.is_native(data)):
            return data
        n = x.shape[0] if getattr(x, "ndim", 0) else 0
        return data if n and buckets.bucket(n) == n else backend.to_numpy(data)

    @_in_precision
    def _prepare(self, x: Any, y: Any, names: Sequence[str] = ("x", "y"),
                 on_host: bool = False) -> tuple[Array, Array, Array | None]:
        """Checked ``(x, targets, labels)`` on the backend (see `prepare_targets`); with
        ``on_host``, ``x`` as `_x` gives it."""
        y = self._host_unless_bucketed(y, x) if on_host else y
        x_dev = self._x(x, names[0], on_host)
        targets, labels = self._spec.loss.prepare_targets(
            self.backend, y, x_dev.shape[0], self.n_outputs, self.dtype, names[1], names[0])
        return x_dev, targets, labels

    def bucketed(self, weighted: bool = False) -> bool:
        """Tell whether the model pads the rows of what it evaluates to `mlp.buckets`' ladder.

        On a backend that compiles it does, so that it compiles one program per size of
        the ladder whatever the data's sizes.

        Parameters
        ----------
        weighted : bool
            For data with targets, padded with rows of weight 0: only with a loss that
            takes row weights (`mlp.losses.Loss.takes_weights`).

        Returns
        -------
        bool
            True on a backend that compiles (for weighted data: with a loss that
            takes row weights).
        """
        return self.backend.compiles and (not weighted or self._spec.loss.takes_weights)

    # -------------------------------------------------------------- inference
    @_in_precision
    def predict(self, x: Any) -> Array:
        """Compute the network's output.

        For classifiers these are probabilities (softmax or sigmoid outputs).

        On a backend that compiles (JAX), ``x``'s rows are padded with rows of
        zeros up to a size of a small ladder (`mlp.buckets`), whose outputs are
        dropped: any number of rows from 1 to 1024 compiles one of 7 programs.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs (NumPy, the backend's own arrays, nested lists).

        Returns
        -------
        array of shape (n_samples, n_outputs)
            The outputs, a backend array in the model's dtype.

        Raises
        ------
        ValueError
            ``x`` is not of shape ``(n_samples, n_features)`` or not finite, or the
            forward pass overflows the model's dtype (``x = 3e38`` in float32),
            rather than giving NaN.

        Examples
        --------
        >>> import numpy as np, mlp
        >>> model = mlp.MLP([4, 8, 3], loss="cross_entropy", backend="numpy", seed=0)
        >>> probs = model.predict(np.zeros((5, 4)))
        >>> probs.shape, probs.dtype
        ((5, 3), dtype('float32'))
        >>> bool(np.allclose(probs.sum(axis=1), 1))
        True
        """
        return self._forward("predict", x)

    def _forward(self, what: str, x: Any) -> Array:
        """The outputs of `predict` (``what="predict"``) or `predict_classes`
        (``"classes"``) for ``x``, computed on its rows padded to the ladder where the
        model pads them; a ValueError for rows whose output overflowed."""
        spec = self._spec
        if is_array_on_disk(x):
            return predict_by_blocks(self, x, what)

        def outputs(p, x, n_rows):
            out, n_bad = core.forward_checked(spec, p, x, n_rows)
            return (out if what == "predict" else spec.loss.predict_classes(spec.xp, out),
                    n_bad)

        fn = self.compiled((what,), lambda: self.backend.jit(outputs))
        padded = self.bucketed()
        x_in = self._x(x, on_host=padded)
        n = x_in.shape[0]
        x_dev = buckets.pad(self.backend, x_in, buckets.bucket(n)) if padded else x_in
        out, n_bad = fn(self.params, x_dev, np.int32(n) if padded else None)
        n_bad = int(n_bad)
        if n_bad:
            raise self._overflow(f"the network's output for {n_bad} of {n} row(s) of x", x_dev)
        return buckets.first_rows(self.backend, out, n)

    def predict_proba(self, x: Array) -> Array:
        """Compute the class probabilities (classifiers only).

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs (NumPy, the backend's own arrays, nested lists).

        Returns
        -------
        array of shape (n_samples, n_outputs)
            Softmax (``cross_entropy``) or sigmoid (``binary_cross_entropy``)
            outputs, a backend array.

        Raises
        ------
        ValueError
            The model's loss is not a classification loss, or ``x`` is refused
            (as by `predict`).
        """
        self._require_classifier("predict_proba")
        return self.predict(x)

    @_in_precision
    def predict_classes(self, x: Array) -> Array:
        """Predict the classes (classifiers only).

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs (NumPy, the backend's own arrays, nested lists).

        Returns
        -------
        array of shape (n_samples,) or (n_samples, n_outputs)
            ``(n_samples,)`` class indices (argmax) for ``cross_entropy``;
            ``(n_samples, n_outputs)`` 0/1 (probability > 0.5) for
            ``binary_cross_entropy``. A backend array of integers.

        Raises
        ------
        ValueError
            The model's loss is not a classification loss, or ``x`` is refused
            (as by `predict`).
        """
        self._require_classifier("predict_classes")
        return self._forward("classes", x)

    def _require_classifier(self, what: str) -> None:
        if not self.is_classifier:
            known = " or ".join(name for name, loss in LOSSES.items() if loss.classification)
            raise ValueError(f"{what} needs a classification loss ({known}); this model uses "
                             f"{self.loss_name!r}")

    @_in_precision
    def prepare_data(self, x: Array, y: Array, sample_weight: Array | None = None,
                     class_weight: ClassWeight = None, *,
                     names: tuple[str, str, str] = ("x", "y", "sample_weight"),
                     padded: bool = False, on_host: bool = False
                     ) -> tuple[Array, Array, Array | None, Array | None]:
        """Data checked and moved to the backend, as training and evaluation take it.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs.
        y : array-like
            Targets, as `fit` takes them.
        sample_weight : array-like of shape (n_samples,) or None
            Each row's weight.
        class_weight : dict, "balanced" or None
            Multiplied into the rows' weights (classification losses).
        names : (str, str, str)
            How messages name ``x``, ``y`` and ``sample_weight`` (e.g. ``x_val``).
        padded : bool
            For evaluation (never for training): the rows padded as `pad_prepared`
            pads them (``x`` padded on the host, before it moves to the device);
            as it is where the model pads nothing.
        on_host : bool
            For training data that the caller pads: ``x`` checked in the model's
            dtype but left on the host (NumPy) unless it is the backend's own array
            of a size of the ladder, as `pad_prepared` pads it.

        Returns
        -------
        tuple
            ``(x, targets, labels, weights)``: backend arrays, ``x: (n, n_features)``,
            ``targets: (n, n_outputs)``, ``labels: (n,)`` integer classes (None but for
            a loss with labels), ``weights: (n,)`` (None without weights).

        Raises
        ------
        ValueError, TypeError
            Data the model cannot take; the message names the argument.
        """
        from .weights import row_weights

        padded = padded and self.bucketed(weighted=True)
        x_dev, targets, labels = self._prepare(x, y, names[:2], on_host=padded or on_host)
        w = row_weights(self, sample_weight, class_weight, targets, labels, name=names[2],
                        x_name=names[0])
        if padded:
            return self.pad_prepared(x_dev, targets, labels, w)
        return x_dev, targets, labels, w

    @_in_precision
    def pad_prepared(self, x: Array, targets: Array, labels: Array | None,
                     weights: Array | None = None
                     ) -> tuple[Array, Array, Array | None, Array | None]:
        """Pad the rows of data from `prepare_data` for evaluation, where the model pads rows.

        Where the model pads (`bucketed`, with weights), the rows are padded to the
        size of `mlp.buckets`' ladder with rows of zeros of weight 0, which change no
        metric, loss or gradient (the data's rows weigh 1 where ``weights`` is None).
        Elsewhere the data is returned as it is.

        Parameters
        ----------
        x : array of shape (n_samples, n_features)
            The inputs (a backend or NumPy array).
        targets : array of shape (n_samples, n_outputs)
            As `prepare_data` returns them.
        labels : array of shape (n_samples,) or None
            As `prepare_data` returns them.
        weights : array of shape (n_samples,) or None, default None
            As `prepare_data` returns them.

        Returns
        -------
        tuple
            ``(x, targets, labels, weights)`` on the backend, with as many rows as
            the ladder's size for ``n`` (``weights`` never None then).
        """
        backend, n = self.backend, x.shape[0]
        if not self.bucketed(weighted=True):
            return backend.asarray(x), targets, labels, weights
        size = buckets.bucket(n)
        return (buckets.pad(backend, x, size), buckets.pad(backend, targets, size),
                None if labels is None else buckets.pad(backend, labels, size),
                buckets.padded_weights(backend, weights, n, size, self.dtype))

    @_in_precision
    def loss(self, x: Array, y: Array, sample_weight: Array | None = None) -> float:
        """Compute the mean loss on ``(x, y)`` (without the penalty term).

        With ``sample_weight`` it is the weighted mean ``sum_i w_i * l_i / sum_i w_i``
        (see `mlp.losses`).

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs (NumPy, the backend's own arrays, nested lists).
        y : array-like
            The targets, as `fit` takes them: ``(n_samples, n_outputs)`` (or
            ``(n_samples,)`` with one output), or integer labels ``(n_samples,)`` for
            ``cross_entropy``.
        sample_weight : array-like of shape (n_samples,) or None, default None
            Each row's weight (finite, >= 0); None weighs every row 1.

        Returns
        -------
        float
            The mean loss, a Python float.

        Raises
        ------
        ValueError, TypeError
            Data the model cannot take; the message names the argument.
        ValueError
            The loss overflows the model's dtype (the message names the inputs'
            scale).
        """
        x_dev, targets, _, w = self.prepare_data(x, y, sample_weight, padded=True)
        spec = self._spec
        fn = self.compiled(("loss",), lambda: self.backend.jit(
            lambda p, x, y, w: core.loss_value(spec, p, x, y, w)))
        value = float(fn(self.params, x_dev, targets, w))
        if not math.isfinite(value):
            raise self._overflow(f"the loss (it is {value})", x_dev, targets)
        return value

    @_in_precision
    def gradients(self, x: Array, y: Array, sample_weight: Array | None = None
                  ) -> list[tuple[Array, Array]]:
        """Compute the gradients of the mean loss (weighted with ``sample_weight``).

        With ``batch_norm``, of the loss a training step differentiates: the hidden
        layers normalized with the statistics of ``x``'s rows (those of weight 0
        apart), not the running averages; the running rows of ``b`` get 0.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs (NumPy, the backend's own arrays, nested lists).
        y : array-like
            The targets, as `fit` takes them: ``(n_samples, n_outputs)`` (or
            ``(n_samples,)`` with one output), or integer labels ``(n_samples,)`` for
            ``cross_entropy``.
        sample_weight : array-like of shape (n_samples,) or None, default None
            Each row's weight (finite, >= 0); None weighs every row 1.

        Returns
        -------
        list of (dW, db)
            Backend arrays, ``dW`` of shape ``(fan_in, fan_out)`` and ``db`` of shape
            ``(fan_out,)`` per layer.

        Raises
        ------
        ValueError, TypeError
            Data the model cannot take; the message names the argument.
        ValueError
            The loss or the gradients overflow the model's dtype.
        """
        x_dev, targets, _, w = self.prepare_data(x, y, sample_weight, padded=True)

        def gradients(p, x, y, w, spec=self._spec):
            loss, grads = core.loss_and_gradients(spec, p, x, y, weights=w)
            return grads, core.all_finite_flag(
                spec.xp, [loss, *(g for pair in grads for g in pair)])

        fn = self.compiled(("gradients",), lambda: self.backend.jit(gradients))
        grads, finite = fn(self.params, x_dev, targets, w)
        if not bool(finite):
            raise self._overflow("the loss or its gradients", x_dev, targets)
        return grads

    def _overflow(self, what: str, x: Array, targets: Array | None = None) -> ValueError:
        """The error for a computation on finite inputs whose result overflowed the dtype:
        it names the inputs' and the weights' largest magnitudes, and what to do."""
        xp = self.xp

        def largest(array: Array) -> float:
            return float(xp.max(xp.abs(array)))

        sizes = f"largest |x| {largest(x):.3g}"
        if targets is not None:
            sizes += f", largest |y| {largest(targets):.3g}"
        weights = max(largest(W) for W, _ in self.params)
        return ValueError(
            f"{what} overflows {self.dtype_name}: the inputs are too large for {self.dtype_name} "
            f"({sizes}; the weights' largest |W| {weights:.3g}). Rescale the inputs (e.g. "
            f"standardize x as for training)" + ("" if self.dtype_name == "float64" else
                                                 ", or build the model with dtype='float64'"))

    def _metrics_fn(self) -> Callable[..., Array]:
        xp, spec = self.xp, self._spec

        def metrics(params: Params, x: Array, targets: Array, labels: Array | None,
                    weights: Array | None) -> Array:
            z, a = core.forward_logits(spec, params, core.zero_weight_rows(xp, x, weights))
            loss = spec.loss.value(xp, z, a, targets, weights)
            return xp.stack([loss, *spec.loss.score(xp, z, a, targets, labels, weights)])

        return self.compiled(("metrics",), lambda: self.backend.jit(metrics))

    def _metric_logs(self, x: Array, targets: Array, labels: Array | None,
                     weights: Array | None = None, prefix: str = "",
                     params: Params | None = None) -> dict[str, float]:
        if self.bucketed(weighted=True) and (weights is None
                                             or buckets.bucket(x.shape[0]) != x.shape[0]):
            x, targets, labels, weights = self.pad_prepared(x, targets, labels, weights)
        params = self.params if params is None else params
        values = self.backend.to_numpy(self._metrics_fn()(params, x, targets, labels,
                                                          weights))
        names = ("loss", *self._spec.loss.score_names)
        return {prefix + name: float(v) for name, v in zip(names, values, strict=True)}

    def evaluate_prepared(self, x: Array, targets: Array, labels: Array | None,
                          weights: Array | None = None, of: str = "") -> dict[str, float]:
        """Compute `evaluate`'s metrics of data from `prepare_data`.

        A loss or score that overflowed the dtype is refused.

        Parameters
        ----------
        x : array of shape (n_samples, n_features)
            As `prepare_data` returns it. Where the model pads rows (`bucketed`),
            data not yet padded (`pad_prepared`) is padded for the call: data
            evaluated more than once is best padded once, beforehand.
        targets : array of shape (n_samples, n_outputs)
            As `prepare_data` returns them.
        labels : array of shape (n_samples,) or None
            As `prepare_data` returns them.
        weights : array of shape (n_samples,) or None, default None
            As `prepare_data` returns them.
        of : str
            The data's name in the message, e.g. ``" of the validation data"``.

        Returns
        -------
        dict
            Metric name -> float.
        """
        logs = self._metric_logs(x, targets, labels, weights)
        bad = [name for name, value in logs.items() if not math.isfinite(value)]
        if bad:
            raise self._overflow(f"the {', '.join(bad)}{of} (it is {logs[bad[0]]})", x,
                                 targets)
        return logs

    def validation_logs(self, x: Array, targets: Array, labels: Array | None,
                        weights: Array | None = None, params: Params | None = None
                        ) -> dict[str, float]:
        """Compute the ``val_``-prefixed metrics of data from `prepare_data`.

        The metrics are those of ``params`` (default: the model's weights), NaN or inf
        where they overflow (they are an epoch's logs), on data padded as
        `evaluate_prepared` pads it.

        Parameters
        ----------
        x : array of shape (n_samples, n_features)
            As `prepare_data` returns it.
        targets : array of shape (n_samples, n_outputs)
            As `prepare_data` returns them.
        labels : array of shape (n_samples,) or None
            As `prepare_data` returns them.
        weights : array of shape (n_samples,) or None, default None
            As `prepare_data` returns them.
        params : list of (W, b) or None, default None
            The weights to evaluate (None: the model's).

        Returns
        -------
        dict
            ``{"val_loss": ..., "val_accuracy": ...}`` (the names of `evaluate`).
        """
        return self._metric_logs(x, targets, labels, weights, prefix="val_", params=params)

    @_in_precision
    def evaluate(self, x: Array, y: Array, sample_weight: Array | None = None
                 ) -> dict[str, float]:
        """Compute the metrics on ``(x, y)``.

        For classifiers ``loss`` and ``accuracy`` (for binary cross-entropy, the
        fraction of correct 0/1 outputs); for regression (``mse`` and ``poisson``)
        ``loss``, ``r2`` (mean over outputs of the coefficient of determination) and
        ``mse`` (mean of ``(pred - y)**2``). With ``sample_weight`` every metric is
        weighted over the rows, as scikit-learn's ``accuracy_score``, ``r2_score`` and
        ``mean_squared_error`` with ``sample_weight``.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features)
            The inputs (NumPy, the backend's own arrays, nested lists).
        y : array-like
            The targets, as `fit` takes them: ``(n_samples, n_outputs)`` (or
            ``(n_samples,)`` with one output), or integer labels ``(n_samples,)`` for
            ``cross_entropy``.
        sample_weight : array-like of shape (n_samples,) or None, default None
            Each row's weight (finite, >= 0); None weighs every row 1.

        Returns
        -------
        dict
            Metric name -> float.

        Raises
        ------
        ValueError, TypeError
            Data the model cannot take; the message names the argument.
        ValueError
            A metric overflows the model's dtype.

        Examples
        --------
        >>> import numpy as np, mlp
        >>> x = np.random.default_rng(0).normal(size=(40, 3))
        >>> y = x @ np.array([[1.0], [-2.0], [0.5]])
        >>> model = mlp.MLP([3, 16, 1], backend="numpy", seed=0)
        >>> sorted(model.evaluate(x, y))
        ['loss', 'mse', 'r2']
        """
        if is_array_on_disk(x) or is_array_on_disk(y):
            return self._evaluate_by_blocks(x, y, sample_weight)
        return self.evaluate_prepared(*self.prepare_data(x, y, sample_weight, padded=True))

    def _evaluate_by_blocks(self, x: Any, y: Any, sample_weight: Any) -> dict[str, float]:
        """`evaluate` of data on disk, block by block (`mlp.data.BlockData`)."""
        from .weights import row_weights

        n = check_on_disk(x, "x") if is_array_on_disk(x) else len(x)
        if is_array_on_disk(y):
            check_on_disk(y, "y", n)
        if sample_weight is not None and is_array_on_disk(sample_weight):
            sample_weight = np.asarray(sample_weight[:])
        w = row_weights(self, sample_weight, None, np.empty((n, 0)), None)
        logs = BlockData(self, x, y, None if w is None else self.backend.to_numpy(w)).metrics()
        bad = [name for name, value in logs.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"the {', '.join(bad)} (it is {logs[bad[0]]}) overflows "
                             f"{self.dtype_name}: rescale the inputs (e.g. standardize x as "
                             f"for training)")
        return logs

    # --------------------------------------------------------------- training
    @_in_precision
    def fit(self, x: Array, y: Array | None = None, **settings: Any) -> History:
        """Train the model for ``epochs`` more epochs, from where it stands.

        A `fit` continues the previous one (or the file the model was loaded
        from): the weights, the optimizer and its state (moments, the schedule's
        step count, the learning-rate scale), the shuffle stream and the epoch
        count, so ``fit(epochs=3)`` twice ends at exactly the weights of one
        ``fit(epochs=6)``.

        Parameters
        ----------
        x : array-like of shape (n_samples, n_features), array on disk, or source of batches
            An array in memory; an array on disk (``numpy.memmap``,
            ``h5py.Dataset``, ``zarr.Array``), read batch by batch; or, with
            ``y`` None, a source of ``(x, y)`` or ``(x, y, sample_weight)``
            batches iterated once per epoch (a PyTorch ``DataLoader``, a list of
            batches, any re-iterable, or a function returning a fresh iterator).
            See the guide on data.
        y : array-like or None, default None
            ``(n, n_outputs)`` (or ``(n,)`` with one output) for ``mse`` and
            ``binary_cross_entropy``; integer labels ``(n,)`` or one-hot rows for
            ``cross_entropy``. None when ``x`` is a source of batches.
        epochs : int
            Passes over the data in this call (>= 1).
        learning_rate : float or schedule, optional
            The optimizer's learning rate: for an optimizer given by name, or,
            without ``optimizer``, a replacement for the model's optimizer's
            (a different optimizer, so its state starts afresh). Defaults to
            the optimizer's own (0.01 for sgd, 1e-3 for adam, adamw and rmsprop).
        batch_size : int or None
            Samples per step (default 32); None trains on the full batch. The
            last partial batch of an epoch is used, not dropped.
        shuffle : bool
            Draw a fresh order of the samples for every epoch (from the model's
            seed, on the host: every backend sees the same batches; the stream
            continues from one fit to the next).
        optimizer : str, optimizer or None
            ``sgd``, ``adam``, ``adamw``, ``rmsprop`` or an object from
            `mlp.optimizers` (e.g. ``mlp.optimizers.SGD(0.1, momentum=0.9)``).
            None (default) continues the model's optimizer (``optimizer_``, from
            its last fit or its file), or, for a model never trained,
            ``Adam(1e-3)``. An optimizer equal to the model's continues its
            state; a different one starts a fresh state.
        reset_optimizer : bool
            Start the optimizer's state afresh even when it is the model's.
        alpha : float
            L2 penalty ``0.5 * alpha * sum ||W||^2`` on the weights (not the
            biases), added to the training loss.
        clip_norm : float or None
            Rescale the gradients when their global norm exceeds this.
        validation_data : (x_val, y_val), optional
            Data evaluated after every epoch (``val_`` metrics in the logs); a
            third item gives its row weights.
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
            Called between epochs (see `mlp.callbacks`: `ModelCheckpoint`,
            `BackupAndRestore`, `CSVLogger`, `ReduceLROnPlateau`, ...). A
            callback stops training with ``model.stop_training = True`` or a
            truthy return from ``on_epoch_end``; weights it sets with
            ``set_weights`` are the ones the next epoch trains from.
        verbose : {0, 1, 2}
            0 silent, 1 a progress bar over the epochs, 2 one line per epoch.
        sample_weight : array (n,) or None
            Each sample's weight (finite, >= 0, not all 0): the loss becomes the
            weighted mean ``sum_i w_i * l_i / sum_i w_i`` (scikit-learn's
            definition; ``alpha``'s term is not divided by the weights). An
            integer weight counts a sample that many times, 0 leaves it out.
            ``validation_split`` splits the weights with the samples.
        class_weight : dict, "balanced" or None
            Classification losses: ``{class: weight}`` (classes not named keep
            1) or ``"balanced"`` (``n_samples / (n_classes * bincount(y))``),
            multiplied into the sample weights. For ``binary_cross_entropy``
            (one output) the classes are 0 and 1.

        Returns
        -------
        History
            This call's epochs, numbered on from ``epochs_trained_``:
            ``history.history["loss"]`` is the mean training loss of each epoch
            (as seen by its steps); ``val_loss`` and ``val_accuracy`` /
            ``val_r2`` / ``val_mse`` with validation data. ``self.history_``
            holds every call's epochs.

        Raises
        ------
        ModelBusyError
            The model is already training: a `fit` runs in another thread, or
            this call comes from a callback of the running fit. Nothing changes.
        TrainingDivergedError
            The loss became NaN or infinite; the last weights whose loss on the
            training data is finite are restored, with the epoch count, the
            history, the optimizer's state and the shuffle stream of that epoch.
            The message names the cause: the learning rate (a schedule by name),
            ``alpha``, or the data's scale when even the starting weights
            overflow the dtype.
        ValueError
            Besides bad arguments: a number the model's dtype cannot hold (a
            ``learning_rate``, ``alpha``, ``clip_norm``, optimizer setting or
            row weight that would become 0, subnormal or inf in float32), or a
            schedule giving a negative, NaN or infinite rate at a step of this
            fit.

        Notes
        -----
        Integers and floats may be Python or NumPy scalars; flags accept only
        booleans. A rejected call changes nothing, and neither does a call that
        fails (any error, Ctrl-C included) before completing an epoch: the
        weights, the optimizer and its state, the history, the epoch count and
        the shuffle stream are as before it. A call that fails or is interrupted
        later keeps every completed epoch (on JAX, where epochs run in compiled
        calls of about a second each, every completed call), all of them
        agreeing, and the next `fit` continues from there. An epoch is complete
        once the model has taken it (its callbacks are then told of it: one
        raising in ``on_epoch_end`` keeps it). ``self.train_state_`` holds the training state
        (weights, optimizer state, epochs completed, shuffle stream).

        Examples
        --------
        >>> import numpy as np, mlp
        >>> x = np.random.default_rng(0).normal(size=(32, 3)); y = x.sum(axis=1)
        >>> model = mlp.MLP([3, 16, 1], backend="numpy", seed=0)
        >>> history = model.fit(x, y, epochs=3, batch_size=8)
        >>> history.epoch, len(history.history["loss"])
        ([0, 1, 2], 3)
        >>> model.fit(x, y, epochs=2).epoch   # a second fit continues the first
        [3, 4]
        """
        from .training import fit

        with _guard.guard_of(self).training("fit"):
            return fit(self, x, y, FitSettings.from_call(settings))

    # the keyword arguments are `FitSettings`' fields (written there once)
    fit.__dict__["__signature__"] = fit_signature("self", "x", "y").replace(parameters=[
        p.replace(default=None) if p.name == "y" else p
        for p in fit_signature("self", "x", "y").parameters.values()])

    # ---------------------------------------------------------------- weights
    def get_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Copy the weights to the host.

        Returns
        -------
        list of (W, b)
            NumPy copies, ``W`` of shape ``(fan_in, fan_out)`` and ``b`` of shape
            ``(fan_out,)`` per layer (``(4, fan_out)`` on a batch-normalized hidden
            layer: `weight_shapes`).
        """
        to = self.backend.to_numpy
        return [(to(W), to(b)) for W, b in self.params]

    @_in_precision
    def set_weights(self, weights: Weights) -> None:
        """Replace all weights.

        Shapes must match the architecture and values must be finite; the
        arrays are cast to the model's dtype. Nothing changes if any check fails.
        During a `fit`, its callbacks may set the weights the next epoch trains
        from; another thread may not (`mlp.ModelBusyError`).

        Parameters
        ----------
        weights : list of (W, b)
            NumPy or backend arrays, ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of shape ``(fan_out,)`` per layer (``(4, fan_out)`` on a batch-normalized
            hidden layer: `weight_shapes`).

        Raises
        ------
        ValueError
            Not one ``(W, b)`` pair per layer, a shape that does not match, a
            value that is not finite, or a negative running variance.
        ModelBusyError
            Another thread is training the model.
        """
        from .validation import host_float_array

        _guard.guard_of(self).check_free("set_weights")

        if not isinstance(weights, (list, tuple)) or len(weights) != len(self.layer_sizes) - 1:
            raise ValueError(f"set_weights needs a list of {len(self.layer_sizes) - 1} (W, b) "
                             f"pairs, got {type(weights).__name__}"
                             + (f" of length {len(weights)}" if hasattr(weights, '__len__')
                                else ""))
        host, shapes = [], self.weight_shapes()
        for i, pair in enumerate(weights):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ValueError(f"weights[{i}] must be a pair (W, b)")
            want_w, want_b = shapes[i]
            W, b = (host_float_array(f"weights[{i}][{j}] ({'Wb'[j]})", self._host(pair[j]),
                                     self.dtype_name, self.backend) for j in (0, 1))
            if W.shape != want_w or b.shape != want_b:
                raise ValueError(f"layer {i} expects W of shape {want_w} and b of shape "
                                 f"{want_b}, got {W.shape} and {b.shape}")
            if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
                raise ValueError(f"weights of layer {i} contain NaN or infinite values")
            if b.ndim == 2 and np.any(b[3] < 0):
                raise ValueError(f"layer {i}'s running variance (b[3]) has negative values")
            host.append((W, b))
        self.params = self._to_device(host)

    def _host(self, array: Array) -> Array:
        return self.backend.to_numpy(array) if self.backend.is_native(array) else array

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str], *, include_optimizer: bool = False) -> None:
        """Write architecture, dtype and weights to one ``.npz`` file, atomically.

        With ``include_optimizer``, everything a `fit` needs to continue exactly
        is stored too: the optimizer and its state (moments, step count,
        learning-rate scale), the shuffle stream's state, the epoch count and
        the history; ``mlp.load(path).fit(...)`` then ends at the weights of a
        run never interrupted. Any backend can `mlp.load` the file. A new file
        gets the permissions a plain write gives under the umask; an
        overwritten one keeps its own. ``include_optimizer`` is True or False
        (nothing else). While a `fit` runs, a save with the training state
        belongs in one of its callbacks (e.g. `mlp.ModelCheckpoint`): from
        another thread it is refused (`mlp.ModelBusyError`), as the state would
        mix two epochs.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (conventionally ``.npz``).
        include_optimizer : bool, default False
            Also store the training state, so that a `fit` of the loaded model
            continues exactly.

        Raises
        ------
        ValueError
            The file would be one `mlp.load` refuses: weights that are not finite,
            or, with ``include_optimizer``, an epoch count beyond 2**53, history
            epochs out of order or beyond the count, an optimizer state no fit
            leaves (NaN moments, a negative step count). Nothing is written.ModelBusyError
            ``include_optimizer`` while another thread trains the model.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np, mlp
        >>> x = np.random.default_rng(0).normal(size=(20, 3)); y = np.arange(20) % 2
        >>> model = mlp.MLP([3, 8, 2], loss="cross_entropy", backend="numpy", seed=0)
        >>> _ = model.fit(x, y, epochs=2)
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "model.npz")
        >>> model.save(path, include_optimizer=True)
        >>> restored = mlp.load(path, backend="numpy")
        >>> restored.epochs_trained_, bool(np.array_equal(restored.predict(x), model.predict(x)))
        (2, True)
        >>> folder.cleanup()
        """
        from .training import check_model_state

        include_optimizer = check("include_optimizer", include_optimizer, [Boolean()])
        if include_optimizer:
            _guard.guard_of(self).check_free("save(include_optimizer=True)")
        check_model_state(self, "save", training_state=include_optimizer)
        _io.save(self, path, include_optimizer=include_optimizer)

    def summary(self, print_fn: Callable[[str], object] | None = None) -> None:
        """Print a table of the layers, their shapes and parameter counts.

        With dropout, the table also gives the rate dropped from each layer's input
        while training; with batch normalization, which layers normalize.

        Parameters
        ----------
        print_fn : callable or None, default None
            Receives the whole text (None: `print`), e.g. a logger's method or
            ``list.append`` to keep it.

        Raises
        ------
        TypeError
            ``print_fn`` is neither callable nor None.
        """
        if print_fn is not None and not callable(print_fn):
            raise TypeError(f"print_fn must be a function that takes the text (e.g. print or "
                            f"a list's append) or None, got {type(print_fn).__name__} "
                            f"{print_fn!r}"[:300])
        rows: list[tuple[str, ...]] = [("layer", "weights", "biases", "activation", "params")]
        last = len(self.layer_sizes) - 2
        for i, (w, b) in enumerate(self.weight_shapes()):
            act = self.output_activation if i == last else self.activation
            rows.append((f"dense_{i}", str(w), str(b), act,
                         f"{math.prod(w) + math.prod(b):,}"))
        if self.batch_norm:
            rows = [(*row, norm) for row, norm in zip(rows, (
                "batch norm", *(["yes"] * last), "no"))]
        if self._spec.drops:  # the rate dropped from each layer's input while training
            rows = [(*row, rate) for row, rate in zip(rows, (
                "input dropout", *(f"{r:g}" for r in self._spec.dropout)))]
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        line = "-" * (sum(widths) + 2 * (len(widths) - 1))
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        text = [f"MLP on backend {self.backend.name!r} (device {self.backend.device}), "
                f"dtype {self.dtype_name}, loss {self.loss_name!r}", line, fmt.format(*rows[0]),
                line] + [fmt.format(*r) for r in rows[1:]] + [
                line, f"total parameters: {self.n_params:,}"]
        (print if print_fn is None else print_fn)("\n".join(text))

    # ------------------------------------------------------------------ export
    def export_onnx(self, path: str | os.PathLike[str], *,
                    outputs: str | Sequence[str] | None = None) -> None:
        """Write the model as an ONNX file, atomically; run it with ONNX Runtime.

        The graph has the input ``x: (N, n_features)`` and the outputs ``predict``
        and, for classifiers, ``label``; see `mlp.export`.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        outputs : str, sequence of str or None, default None
            ``"predict"``, ``"label"`` or a list of them; None gives every output the
            model has.

        Raises
        ------
        ImportError
            ndonnx is not installed (``pip install 'mlp-array-api[onnx]'``).
        TypeError, ValueError
            ``outputs`` is not one of the names or a list of them, or asks for
            ``label`` from a model that is not a classifier.
        """
        from .export import export_onnx

        export_onnx(self, path, outputs=outputs)


def load(path: str | bytes | os.PathLike[str], backend: str | Backend | None = None) -> MLP:
    """Load a model from a file written by `MLP.save`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    backend : str, Backend or None, default None
        Where the model runs (None: ``$MLP_BACKEND``).

    Returns
    -------
    MLP
        The model, with its training state when it was saved with
        ``include_optimizer=True``.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ModelFileError (a ValueError)
        Anything else that keeps the file from being loaded: a folder or other
        non-regular file, an empty, truncated, corrupted, crafted or foreign
        file, one declaring contents over 100 times its size, or one whose
        training state a fit could not go on from (a history beyond the epoch
        count, NaN optimizer moments, ...); the message names the file and the
        problem. Nothing in the file is ever executed, and nothing is allocated
        before the stored arrays' headers have been checked against the
        declared architecture and the file's size.
    BackendUnavailableError
        ``backend`` cannot run here.
    TypeError
        ``path`` is not a file name (str or os.PathLike).

    Examples
    --------
    >>> import os, tempfile
    >>> import mlp
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.npz")
    >>> mlp.MLP([3, 8, 1], backend="numpy", seed=0).save(path)
    >>> model = mlp.load(path, backend="numpy")
    >>> model.layer_sizes, model.n_params
    ((3, 8, 1), 41)
    >>> folder.cleanup()
    """
    if isinstance(path, bool) or not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"load needs the path of a model file (str or os.PathLike), got "
                        f"{type(path).__name__} {path!r}"[:300])
    return _io.load_model(path, MLP, backend)
