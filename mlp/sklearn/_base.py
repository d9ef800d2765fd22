"""`BaseMLP`: scikit-learn's multilayer-perceptron estimator contract on mlp's core.

The parameters, defaults, fitted attributes, stopping rule and messages follow
scikit-learn's ``sklearn.neural_network`` (the reference users hold us to);
the math runs on mlp's backends through `._solver`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.optimize
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, shuffle
from sklearn.utils._array_api import check_same_namespace
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from backends import Backend, resolve_backend

from ..optimizers import with_learning_rate_scale
from ..tree import tree_map
from . import _solver
from ._adapters import network_spec
from ._data import caller_namespace, dense, to_caller, to_host

_STOCHASTIC_SOLVERS = ("sgd", "adam")


def _batches(order: np.ndarray, batch_size: int):
    """``(batches (n // bs, bs), last (r,) or None)`` from one epoch's sample order."""
    n_full = (len(order) // batch_size) * batch_size
    return (order[:n_full].reshape(-1, batch_size),
            order[n_full:] if n_full < len(order) else None)


@dataclass
class SolverState:
    """What a stochastic solver carries from one `fit`/`partial_fit` call to the next.

    ``learning_rate`` is the current one (``invscaling`` and ``adaptive`` change
    it); ``state`` the optimizer's state (moments, velocity, step count) as
    NumPy arrays, so the estimator pickles; None until the first step.
    """

    learning_rate: float
    state: object = None


class _BackendName(str):
    """A `Backend` given as the ``backend`` parameter, pickled by name."""


class BaseMLP(BaseEstimator):
    """Parameters and training shared by `MLPClassifier` and `MLPRegressor`."""

    _parameter_constraints: dict = {
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
    }

    # ------------------------------------------------------------ backend
    def _backend(self):
        return resolve_backend(self.backend)

    def _input_dtype(self):
        """What `validate_data` turns ``X`` into (the compute dtype)."""
        if self.dtype is None:
            return (np.float64, np.float32)  # float32 stays float32, anything else float64
        return np.dtype(self.dtype).type

    def _spec(self, be):
        return network_spec(be.xp, self.activation, self.out_activation_)

    def _device_params(self, be, dtype):
        return [(be.asarray(W, dtype), be.asarray(b, dtype))
                for W, b in zip(self.coefs_, self.intercepts_)]

    def _store_params(self, be, params):
        self.coefs_ = [be.to_numpy(W) for W, _ in params]
        self.intercepts_ = [be.to_numpy(b) for _, b in params]

    # --------------------------------------------------------------- fit
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden = self.hidden_layer_sizes
        hidden = list(hidden) if hasattr(hidden, "__iter__") else [hidden]
        if np.any(np.array(hidden) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        where = caller_namespace(X)
        X, Y, targets = self._validate_input(to_host(X), to_host(y), incremental,
                                             reset=first_pass)
        sample_weight = to_host(sample_weight)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        sample_weight = self._row_weights(sample_weight, targets, X.dtype)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1], *hidden, self.n_outputs_]
        rng = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, X.dtype, rng)
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

    def _row_weights(self, sample_weight, targets, dtype):
        return sample_weight

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

    # --------------------------------------------------------- stochastic
    def _split(self, X, Y, sample_weight, rng):
        """``(train, val)``, each ``(X, Y, w)``; ``val`` None without early stopping."""
        if not self.early_stopping:
            return (X, Y, sample_weight), None
        stratify = Y.astype(bool) if is_classifier(self) and self.n_outputs_ == 1 else None
        arrays = (X, Y) if sample_weight is None else (X, Y, sample_weight)
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        train, val = parts[0::2], parts[1::2]
        if sample_weight is None:
            train, val = (*train, None), (*val, None)
        return train, val

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=3)
        return int(np.clip(self.batch_size, 1, n))

    def _make_optimizer(self):
        return _solver.make_optimizer(self.solver, self.learning_rate_init, self.momentum,
                                      self.nesterovs_momentum, self.beta_1, self.beta_2,
                                      self.epsilon)

    def _fit_stochastic(self, be, X, Y, sample_weight, incremental, rng):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = SolverState(float(self.learning_rate_init))
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        (X, Y, w), val = self._split(X, Y, sample_weight, rng)
        dtype = be.dtype(X.dtype.name)
        to = be.asarray
        data = (to(X, dtype), to(Y, dtype), None if w is None else to(w, dtype))
        opt, spec = self._make_optimizer(), self._spec(be)
        epoch = _solver.compiled(be, ("epoch", spec, opt, float(self.alpha)),
                                 lambda: _solver.make_epoch(be, spec, opt, float(self.alpha)))
        params = self._device_params(be, dtype)
        state = (opt.init(params) if self._optimizer.state is None
                 else tree_map(lambda a: to(a, dtype if a.dtype.kind == "f" else None),
                               self._optimizer.state))
        if val is not None:
            val = (to(val[0], dtype), self._validation_targets(val[1]), val[2])
            self._best_params = params
        n, order = X.shape[0], np.arange(X.shape[0])
        batch_size = self._batch_size(n)
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    order = shuffle(order, random_state=rng)
                batches, last = _batches(order, batch_size)
                state = self._with_learning_rate(state)
                params, state, loss = epoch(params, state, *data, to(batches),
                                            None if last is None else to(last))
                if self._end_epoch(be, float(loss), n, params, val) or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=3)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=3)
        self._optimizer.state = tree_map(be.to_numpy, state)
        self._store_params(be, self.__dict__.pop("_best_params") if val is not None else params)

    def _with_learning_rate(self, state):
        """``state`` with the current learning rate (SGD's ``invscaling``/``adaptive``)."""
        if self.solver != "sgd":
            return state
        return with_learning_rate_scale(state, self._optimizer.learning_rate
                                        / float(self.learning_rate_init))

    def _end_epoch(self, be, loss, n, params, val):
        """scikit-learn's bookkeeping after an epoch; True to stop."""
        self.n_iter_ += 1
        self.loss_ = loss
        self.t_ += n
        self.loss_curve_.append(loss)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
        self._update_no_improvement_count(be, params, val)
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self._optimizer.learning_rate = (float(self.learning_rate_init)
                                             / (self.t_ + 1) ** self.power_t)
        if self._no_improvement_count <= self.n_iter_no_change:
            return False
        what = ("Validation score" if val is not None else "Training loss")
        msg = (f"{what} did not improve more than tol={self.tol:f} for "
               f"{self.n_iter_no_change} consecutive epochs.")
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._optimizer.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._optimizer.learning_rate /= 5.0
        if self.verbose:
            print(msg + f" Setting learning rate to {self._optimizer.learning_rate:f}")
        self._no_improvement_count = 0
        return False

    def _update_no_improvement_count(self, be, params, val):
        if val is None:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]
            return
        X_val, y_val, w_val = val
        outputs = be.to_numpy(self._forward_fn(be)(params, X_val))
        score = (float(self._score_outputs(outputs, y_val, w_val))
                 if np.isfinite(outputs).all() else np.nan)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = params

    # -------------------------------------------------------------- lbfgs
    def _fit_lbfgs(self, be, X, Y, sample_weight):
        dtype = be.dtype(X.dtype.name)
        data = [None if a is None else be.asarray(a, dtype) for a in (X, Y, sample_weight)]
        shapes = [W.shape for W in self.coefs_]
        theta = np.concatenate([W.ravel() for W in self.coefs_]
                               + list(self.intercepts_)).astype(np.float64)
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        result = scipy.optimize.minimize(
            self._loss_grad_lbfgs, theta, args=tuple(data), method="L-BFGS-B", jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol,
                     **_get_additional_lbfgs_options_dict("iprint", iprint)})
        self.n_iter_ = _check_optimize_result("lbfgs", result, self.max_iter)
        self.loss_ = float(result.fun)
        flat = result.x.astype(X.dtype)
        self.coefs_, self.intercepts_, start = [], [], 0
        for fan_in, fan_out in shapes:
            self.coefs_.append(flat[start:start + fan_in * fan_out].reshape(fan_in, fan_out))
            start += fan_in * fan_out
        for _, fan_out in shapes:
            self.intercepts_.append(flat[start:start + fan_out])
            start += fan_out

    def _loss_grad_lbfgs(self, packed, X, Y, sample_weight=None, *unused):
        """The full-batch objective and its gradient, for L-BFGS (as scikit-learn's).

        ``packed`` (float64): every ``W`` raveled, then every ``b``; ``X``,
        ``Y: (n, n_outputs)`` and ``sample_weight`` as NumPy or backend arrays.
        Returns ``(loss, flat gradient as float64)``; the work runs on the backend.
        """
        be = self._backend()
        with be.precision(self.coefs_[0].dtype):
            return self._backend_loss_grad(be, packed, X, Y, sample_weight)

    def _backend_loss_grad(self, be, packed, X, Y, sample_weight):
        dtype = be.dtype(self.coefs_[0].dtype.name)
        spec, alpha = self._spec(be), float(self.alpha)
        fn = _solver.compiled(be, ("lbfgs", spec, alpha),
                              lambda: _solver.make_loss_and_gradients(be, spec, alpha))
        shapes = tuple(W.shape for W in self.coefs_)
        n_w = sum(W.size for W in self.coefs_)
        to = be.asarray
        w = None if sample_weight is None else to(sample_weight, dtype)
        loss, dw, db = fn(to(packed[:n_w], dtype), to(packed[n_w:], dtype), shapes,
                          to(X, dtype), to(Y, dtype), w)
        grad = np.concatenate([be.to_numpy(dw), be.to_numpy(db)])
        return float(loss), grad.astype(np.float64)

    # ------------------------------------------------------------ predict
    def _forward_fn(self, be):
        spec = self._spec(be)
        return _solver.compiled(be, ("forward", spec), lambda: _solver.make_forward(be, spec))

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
                                       be.asarray(dense(X), dtype))
            return be.to_numpy(out), where

    def partial_fit_available(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def __sklearn_clone__(self):
        if not isinstance(self.backend, Backend):
            return super().__sklearn_clone__()
        # A Backend wraps modules, which deepcopy cannot copy: the clone shares it.
        params = {k: v if k == "backend" else clone(v, safe=False)
                  for k, v in self.get_params(deep=False).items()}
        return type(self)(**params)

    def __getstate__(self):
        state = super().__getstate__()
        if isinstance(state.get("backend"), Backend):  # a Backend holds modules: pickle its name
            state = {**state, "backend": _BackendName(state["backend"].name)}
        return state

    def __setstate__(self, state):
        if isinstance(state.get("backend"), _BackendName):
            state = {**state, "backend": resolve_backend(str(state["backend"]))}
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.array_api_support = True
        return tags
