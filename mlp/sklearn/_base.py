"""`BaseMLP`: scikit-learn's multilayer-perceptron estimator contract on mlp's core.

The parameters, defaults, fitted attributes, stopping rule and messages follow
scikit-learn's ``sklearn.neural_network`` (the reference users hold us to);
the math runs on mlp's backends through `._solver`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import Tags, check_random_state
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .. import buckets
from ..backends import Backend, resolve_backend
from ..batch_norm import initial_bias
from ..dropout import check_rate
from ..guard import ATTRIBUTE as GUARD
from ..guard import guard_of
from . import _solver
from ._adapters import network_spec, poisson_constant
from ._data import caller_namespace, dense, to_caller, to_host
from ._lbfgs import LbfgsSolver
from ._stochastic import StochasticSolver

_STOCHASTIC_SOLVERS = ("sgd", "adam")


def _refuse_negative(weights: np.ndarray, name: str) -> None:
    """Refuse negative row weights, as `mlp.MLP.fit` does: scikit-learn's MLP accepts them,
    but a loss with negative weights has no minimum (its training diverges or reports a
    meaningless loss_), so no result would match it."""
    negative = weights < 0
    if np.any(negative):
        row = int(np.argmax(negative))
        raise ValueError(f"{name} must be >= 0, got {weights[row]:g} for sample {row} "
                         f"({int(np.sum(negative))} negative in all): a negative weight "
                         "rewards a larger loss on its sample, so the training objective "
                         "has no minimum (scikit-learn's MLP accepts them; mlp refuses them)")


def _for_estimators(message: str) -> str:
    """A core message about the model's dtype, in an estimator's terms."""
    return message.replace("or build the model with dtype='float64'",
                           "or fit float64 X (or set dtype='float64')")


def _in_dtype(name: str, value: float, dtype_name: str, fraction: bool) -> None:
    """`mlp.params.check_in_dtype`, its advice in an estimator's terms."""
    from ..params import check_in_dtype

    try:
        check_in_dtype(name, value, dtype_name, fraction=fraction)
    except ValueError as exc:
        raise ValueError(_for_estimators(str(exc))) from None


class _BackendName(str):
    """A `Backend` given as the ``backend`` parameter, pickled by name."""


#: The rule of each parameter both estimators share (scikit-learn's form); each
#: estimator's ``_parameter_constraints`` adds its own to these.
SHARED_CONSTRAINTS: dict = {
    "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
    "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
    "alpha": [Interval(Real, 0, None, closed="left")],
    "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
    "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
    "power_t": [Interval(Real, 0, None, closed="left")],
    "max_iter": [Interval(Integral, 1, None, closed="left")],
    "shuffle": ["boolean"],
    "random_state": ["random_state"],
    "tol": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "warm_start": ["boolean"],
    "momentum": [Interval(Real, 0, 1, closed="both")],
    "nesterovs_momentum": ["boolean"],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "beta_1": [Interval(Real, 0, 1, closed="left")],
    "beta_2": [Interval(Real, 0, 1, closed="left")],
    "epsilon": [Interval(Real, 0, None, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                         Options(Real, {np.inf})],
    "max_fun": [Interval(Integral, 1, None, closed="left")],
    "backend": [None, str, Backend],
    "dtype": [None, StrOptions({"float32", "float64"})],
    "dropout": [Interval(Real, 0, 1, closed="left"), "array-like"],
    "batch_norm": ["boolean"],
}
#: ``(momentum, epsilon)`` of the estimators' batch normalization (Keras's defaults: the
#: estimators' ``momentum`` and ``epsilon`` are scikit-learn's, of SGD and Adam).
BATCH_NORM = (0.99, 1e-3)


class BaseMLP(StochasticSolver, LbfgsSolver, BaseEstimator):
    """Parameters and training shared by `MLPClassifier` and `MLPRegressor`."""

    _parameter_constraints: dict = SHARED_CONSTRAINTS

    # ------------------------------------------------------------ parameters
    def set_params(self, **params: Any) -> Self:
        """Set the estimator's parameters, as scikit-learn's ``set_params``.

        Refused while a ``fit`` or ``partial_fit`` of this estimator runs in another
        thread: the running fit would mix the old settings with the new.

        Parameters
        ----------
        **params : dict
            The parameters, by name.

        Returns
        -------
        BaseMLP
            The estimator.

        Raises
        ------
        ModelBusyError
            A fit of this estimator runs in another thread.
        """
        guard_of(self).check_free("set_params", "estimator")
        return super().set_params(**params)

    def __setattr__(self, name: str, value: Any) -> None:
        """A parameter assigned (``estimator.alpha = ...``) while a fit of this estimator
        runs in another thread is refused, as `set_params` is."""
        if name in self._parameter_constraints:
            guard = self.__dict__.get(GUARD)
            if guard is not None:
                guard.check_free(f"setting {name}", "estimator")
        super().__setattr__(name, value)

    # ------------------------------------------------------------ backend
    def _backend(self):
        be = resolve_backend(self.backend)
        if getattr(be, "process_local", False):
            raise ValueError(f"{type(self).__name__} takes the same full arrays in every "
                             "process (its classes and validation split come from all the "
                             "rows); a backend with process_local=True is for mlp.MLP.fit, "
                             "each process its own rows: use get_backend('jax', "
                             "devices='all') here")
        return be

    def _input_dtype(self):
        """What `validate_data` turns ``X`` into (the compute dtype)."""
        if self.dtype is None:
            return (np.float64, np.float32)  # float32 stays float32, anything else float64
        return np.dtype(self.dtype).type

    def _spec(self, be):
        spec = network_spec(be.xp, self.activation, self.out_activation_)
        rates = self._dropout_rates(len(self.coefs_) - 1)
        spec = spec._replace(batch_norm=BATCH_NORM if self.batch_norm else ())
        return spec._replace(dropout=(0.0, *rates)) if any(rates) else spec

    def _dropout_rates(self, n_hidden):
        """One drop rate per hidden layer from ``dropout`` (a number or a list of one per
        hidden layer, each in [0, 1))."""
        rates = self.dropout
        if not hasattr(rates, "__iter__"):
            check_rate(float(rates), "dropout")
            return (float(rates),) * n_hidden
        try:
            rates = [float(r) for r in rates]
        except (TypeError, ValueError):  # not numbers: a list of lists, of strings...
            rates = []
        if len(rates) != n_hidden or not all(0 <= r < 1 for r in rates):
            raise ValueError(f"dropout must be a rate in [0, 1) or a list of one such rate "
                             f"per hidden layer ({n_hidden} here), got {self.dropout!r}")
        for rate in rates:
            check_rate(rate, "dropout")
        return tuple(rates)

    def _loss_constant(self, Y, sample_weight, rows=slice(None)):
        """What scikit-learn's ``loss_`` adds to the core's loss on ``Y[rows]``: Poisson's
        data-only term (`._adapters.poisson_constant`, weighted mean over the rows); 0
        for the other losses."""
        if self.out_activation_ != "exp":
            return 0.0
        c = poisson_constant(Y[rows])
        if sample_weight is None:
            return float(np.mean(c))
        w = np.asarray(sample_weight)[rows]
        return float(np.dot(w, c) / np.sum(w))

    def _device_params(self, be, dtype):
        return [(be.asarray(W, dtype), be.asarray(b, dtype))
                for W, b in zip(self.coefs_, self.intercepts_)]

    def _store_params(self, be, params):
        self.coefs_ = [be.to_numpy(W) for W, _ in params]
        self.intercepts_ = [be.to_numpy(b) for _, b in params]

    # --------------------------------------------------------------- fit
    def _fit(self, X, y, sample_weight=None, incremental=False):
        """`fit` and `partial_fit`, one at a time on one estimator (`mlp.ModelBusyError`
        for a second call from another thread while one runs)."""
        call = "partial_fit" if incremental else "fit"
        with guard_of(self).training(call, "estimator"):
            return self._fit_unguarded(X, y, sample_weight, incremental)

    def _fit_unguarded(self, X, y, sample_weight, incremental):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if not first_pass:
            self._check_continued_batch_norm(incremental)
        where = caller_namespace(X)
        X, Y, targets = self._validate_input(to_host(X), to_host(y), incremental,
                                             reset=first_pass)
        self._check_numbers(X.dtype.name)
        sample_weight = self._checked_weights(to_host(sample_weight), X, targets)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        if any(self._dropout_rates(len(hidden))) and self.solver not in _STOCHASTIC_SOLVERS:
            raise ValueError(f"dropout={self.dropout!r} needs a stochastic solver ('adam' or "
                             f"'sgd'): solver={self.solver!r} minimises one fixed objective")
        if self.batch_norm and self.solver not in _STOCHASTIC_SOLVERS:
            raise ValueError(f"batch_norm=True needs a stochastic solver ('adam' or 'sgd'): "
                             f"solver={self.solver!r} minimises one fixed objective, without "
                             f"the running averages a step moves")
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize_checked(Y, layer_units, X.dtype, rng)
        # An empty array in fit's namespace and device: `check_same_namespace` compares to it.
        self._fit_input = to_caller(np.zeros(0, dtype=X.dtype), where)
        be = self._backend()
        X = dense(X)
        with be.precision(X.dtype):  # float64 on JAX: 64-bit types inside this block only
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(be, X, Y, sample_weight, incremental, rng)
            else:
                self._fit_lbfgs(be, X, Y, sample_weight)
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _check_continued_batch_norm(self, incremental):
        """Refuse to continue a fitted network with another ``batch_norm`` than it has (its
        hidden layers' intercepts hold the normalization's rows, or not)."""
        normalized = any(np.ndim(b) == 2 for b in self.intercepts_)
        if normalized != bool(self.batch_norm):
            call = "partial_fit" if incremental else "fit with warm_start=True"
            raise ValueError(f"{call} continues the fitted network, whose hidden layers are "
                             f"{'' if normalized else 'not '}batch-normalized, but "
                             f"batch_norm={self.batch_norm!r}; set batch_norm back, or fit "
                             f"a new network (warm_start=False)")

    def _row_weights(self, sample_weight, targets, dtype):
        return sample_weight

    def _initialize_checked(self, Y, layer_units, dtype, rng):
        """`_initialize`, refused before anything is allocated (as `mlp.MLP` refuses it)
        where the layers' weights would not fit in this machine's memory, and with the same
        message where the allocation fails."""
        from ..model import check_weights_size, too_large_error

        hidden = f"hidden_layer_sizes={self.hidden_layer_sizes!r}"
        try:
            need = check_weights_size(layer_units, np.dtype(dtype).name)
        except MemoryError as exc:
            raise MemoryError(f"{hidden}: {exc}") from None
        try:
            self._initialize(Y, layer_units, dtype, rng)
        except MemoryError:
            raise MemoryError(f"{hidden}: "
                              f"{too_large_error(layer_units, need, 'cannot be allocated here')}"
                              ) from None

    def _check_numbers(self, dtype_name) -> None:
        """Refuse, as `mlp.MLP.fit` does (`mlp.params.check_in_dtype`), a setting the
        compute dtype cannot hold where scikit-learn would silently train nothing or
        fail: a ``learning_rate_init`` that becomes 0 or subnormal there (as 0, which is
        refused) or overflows, an ``alpha`` or ``epsilon`` beyond the dtype's range,
        ``beta_1``/``beta_2`` that round to 1 (Adam's bias correction then divides by
        0). Tiny ``alpha``, ``epsilon``, ``momentum`` or betas act as 0, as in
        scikit-learn, and are accepted."""
        largest = float(np.finfo(dtype_name).max)
        checks = [("alpha", self.alpha, False)]
        if self.solver in _STOCHASTIC_SOLVERS:
            checks.append(("learning_rate_init", self.learning_rate_init, False))
        if self.solver == "adam":
            checks += [("epsilon", self.epsilon, False), ("beta_1", self.beta_1, True),
                       ("beta_2", self.beta_2, True)]
        for name, value, fraction in checks:
            value = float(value)
            if name == "learning_rate_init" or value > largest or (fraction and value >= 0.5):
                _in_dtype(name, value, dtype_name, fraction)

    def _checked_weights(self, sample_weight, X, targets):
        """The rows' weights (``sample_weight`` times the class weights) in the compute
        dtype, or None: finite, >= 0, not all 0, none that the dtype holds only as 0 or a
        subnormal number (refused as `mlp.MLP.fit` refuses them: devices that flush
        subnormals to 0 would silently give other results)."""
        from ..weights import refuse_subnormal

        if sample_weight is not None:
            _check_sample_weight(sample_weight, X, dtype=X.dtype)  # beyond the dtype: refused
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            _refuse_negative(sample_weight, "sample_weight")
        weights = self._row_weights(sample_weight, targets, np.float64)
        if weights is None:
            return None
        if not np.any(weights):
            raise ValueError("the samples' weights (sample_weight times class_weight) are 0 "
                             "for every sample, so none counts; give at least one sample a "
                             "weight > 0")
        what = "sample_weight" if getattr(self, "class_weight", None) is None else (
            "class_weight" if sample_weight is None else "sample_weight times class_weight")
        try:
            refuse_subnormal(weights, X.dtype.name, what)
        except ValueError as exc:
            raise ValueError(_for_estimators(str(exc))) from None
        return weights.astype(X.dtype)

    def _initialize(self, Y, layer_units, dtype, rng):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output_activation()
        # scikit-learn's Glorot-uniform draw, in its order: the same random_state
        # gives the same initial weights as sklearn.neural_network.
        factor = 2.0 if self.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(rng.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            self.intercepts_.append(rng.uniform(-bound, bound, fan_out).astype(dtype))
        if self.batch_norm:  # each hidden layer's (beta, gamma, running mean, running variance)
            self.intercepts_[:-1] = [initial_bias(b.shape[0]).astype(dtype)
                                     for b in self.intercepts_[:-1]]
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    # ------------------------------------------------------------ predict
    def _forward_fn(self, be):
        spec = self._spec(be)
        return _solver.compiled(be, ("forward", spec), lambda: _solver.make_forward(be, spec))

    def _pads(self, be) -> bool:
        """Whether rows are padded to `mlp.buckets`' sizes: on a backend that compiles, with
        a loss that takes row weights (so a program serves every size up to its own)."""
        return bool(be.compiles) and self._spec(be).loss.takes_weights

    def _forward_input(self, be, X: np.ndarray, dtype: Any) -> Any:
        """Host ``X`` on the backend for the forward pass: its rows padded with rows of zeros
        to `mlp.buckets.bucket` where the backend compiles (their outputs are dropped)."""
        if be.compiles:
            X = buckets.pad_host(np.asarray(X), buckets.bucket(X.shape[0]))
        return be.asarray(X, dtype)

    def _outputs(self, X, method):
        """``(outputs (n, n_outputs) as NumPy, where results go)`` for a new ``X``."""
        check_is_fitted(self)
        check_same_namespace(X, self, attribute="_fit_input", method=method)
        where = caller_namespace(X)
        X = validate_data(self, to_host(X), accept_sparse=["csr", "csc"], reset=False,
                          dtype=(np.float64, np.float32))
        be = self._backend()
        with be.precision(self.coefs_[0].dtype):
            dtype = be.dtype(self.coefs_[0].dtype.name)
            out = self._forward_fn(be)(self._device_params(be, dtype),
                                       self._forward_input(be, dense(X), dtype))
            return be.to_numpy(out)[:X.shape[0]], where

    def to_onnx(self, path: str | os.PathLike[str], *,
                outputs: str | Sequence[str] | None = None) -> None:
        """Write the fitted network as an ONNX file.

        It goes through the same exporter and forward pass as `mlp.MLP.export_onnx`:
        input ``x: (N, n_features_in_)``, output ``predict`` (the network's output:
        class probabilities, for a binary classifier the probability of
        ``classes_[1]``; a regressor's predictions ``(N, n_outputs_)``) and, for
        classifiers, ``label``: indices into ``classes_``. Needs
        ``pip install 'mlp-array-api[onnx]'``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        outputs : str, sequence of str or None, default=None
            ``"predict"``, ``"label"`` or a list of them; None gives every output.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            The estimator is not fitted.
        ImportError
            ndonnx is not installed.
        """
        check_is_fitted(self)
        self._as_model().export_onnx(path, outputs=outputs)

    def _as_model(self):
        """The fitted network as an `mlp.MLP` on NumPy (weights copied)."""
        from ..model import MLP
        from ._adapters import ACTIVATION_NAMES, OUTPUT_LOSSES

        sizes = [self.coefs_[0].shape[0]] + [W.shape[1] for W in self.coefs_]
        model = MLP(sizes, activation=ACTIVATION_NAMES[self.activation],
                    output_activation=ACTIVATION_NAMES[self.out_activation_],
                    loss=OUTPUT_LOSSES[self.out_activation_],
                    dtype=np.asarray(self.coefs_[0]).dtype.name, backend="numpy", seed=0,
                    batch_norm=bool(self.batch_norm), momentum=BATCH_NORM[0],
                    epsilon=BATCH_NORM[1])
        model.set_weights(list(zip(self.coefs_, self.intercepts_)))
        return model

    def partial_fit_available(self) -> bool:
        """Tell whether ``partial_fit`` is available: only for the stochastic solvers.

        Returns
        -------
        bool
            True.

        Raises
        ------
        AttributeError
            The solver is ``lbfgs`` (so ``hasattr(est, "partial_fit")`` is False).
        """
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def __sklearn_clone__(self) -> Self:
        if not isinstance(self.backend, Backend):
            return super().__sklearn_clone__()
        # A Backend wraps modules, which deepcopy cannot copy: the clone shares it.
        params = {k: v if k == "backend" else clone(v, safe=False)
                  for k, v in self.get_params(deep=False).items()}
        return type(self)(**params)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if GUARD in state:  # the estimator's own: a copy gets a fresh one
            state = {k: v for k, v in state.items() if k != GUARD}
        if isinstance(state.get("backend"), Backend):  # a Backend holds modules: pickle its name
            state = {**state, "backend": _BackendName(state["backend"].name)}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("backend"), _BackendName):
            state = {**state, "backend": resolve_backend(str(state["backend"]))}
        super().__setstate__(state)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        return tags
