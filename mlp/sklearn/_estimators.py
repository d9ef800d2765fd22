"""`MLPClassifier` and `MLPRegressor`: drop-in scikit-learn estimators on any mlp backend."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import Tags
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import column_or_1d, validate_data

from .._typing import Array
from ..backends import Backend
from ._base import SHARED_CONSTRAINTS, BaseMLP
from ._data import to_caller, to_host

#: ``random_state``: a seed, a NumPy ``RandomState`` or None (scikit-learn's rule).
RandomState = int | np.random.RandomState | None

_SHARED_DOC = """
    Every parameter scikit-learn's ``sklearn.neural_network.{name}`` has, with
    the same default and meaning (see its documentation), plus ``backend`` and
    ``dtype``.

    Parameters
    ----------{loss}
    hidden_layer_sizes : int or sequence of int, default=(100,)
        The width of each hidden layer.
    activation : {{"identity", "logistic", "tanh", "relu"}}, default="relu"
        The hidden layers' activation.
    solver : {{"lbfgs", "sgd", "adam"}}, default="adam"
        The weight optimizer.
    alpha : float, default=0.0001
        The strength of the L2 penalty on the weights.
    batch_size : int or "auto", default="auto"
        Samples per step of the stochastic solvers; ``"auto"`` is
        ``min(200, n_samples)``.
    learning_rate : {{"constant", "invscaling", "adaptive"}}, default="constant"
        The learning-rate schedule of ``solver="sgd"``.
    learning_rate_init : float, default=0.001
        The initial learning rate (``sgd`` and ``adam``).
    power_t : float, default=0.5
        The exponent of ``"invscaling"``.
    max_iter : int, default=200
        The most epochs (stochastic solvers) or iterations (``lbfgs``).
    shuffle : bool, default=True
        Shuffle the samples every epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffles and the validation split.
    tol : float, default=1e-4
        The tolerance of the optimization.
    verbose : bool or int, default=False
        Print progress messages.
    warm_start : bool, default=False
        Start a ``fit`` from the previous solution.
    momentum : float, default=0.9
        Momentum of ``solver="sgd"``, in [0, 1].
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum (``solver="sgd"`` with momentum > 0).
    early_stopping : bool, default=False
        Stop when the validation score stops improving.
    validation_fraction : float, default=0.1
        The fraction of the training data held out for early stopping.
    beta_1 : float, default=0.9
        Adam's decay of the first moment, in [0, 1).
    beta_2 : float, default=0.999
        Adam's decay of the second moment, in [0, 1).
    epsilon : float, default=1e-8
        Adam's numerical-stability term.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` before stopping.
    max_fun : int, default=15000
        The most loss evaluations of ``solver="lbfgs"``.
    backend : str, Backend or None, default=None
        Where the work runs: ``numpy``, ``jax``, ``torch``, ``cupy``,
        ``array_api_strict`` or a `mlp.backends.Backend`; None reads ``$MLP_BACKEND``
        (default numpy). Results come back as NumPy arrays (or in the input's
        namespace under ``sklearn.set_config(array_api_dispatch=True)``).
    dtype : {{"float32", "float64"}} or None, default=None
        Compute dtype. None follows the input as scikit-learn does: float32
        input stays float32, anything else is float64.
    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers' outputs while training (solvers
        ``adam`` and ``sgd``): one rate in [0, 1) for every hidden layer, or a
        list of one per hidden layer; prediction drops nothing. The masks follow
        from ``random_state`` and the samples seen (`mlp.dropout`). 0 (default)
        trains exactly as scikit-learn's estimator.
    batch_norm : bool, default=False
        Batch normalization of each hidden layer's pre-activation (solvers
        ``adam`` and ``sgd``, `mlp.batch_norm`): with the batch's statistics while
        training, their running averages (momentum 0.99, epsilon 1e-3, Keras's
        defaults) in prediction. A hidden layer's ``intercepts_`` entry then has
        shape ``(4, units)``: the shift, the scale, the running mean and the
        running variance. False (default) trains exactly as scikit-learn's
        estimator.
"""

_LOSS_DOC = """
    loss : {"squared_error", "poisson"}, default="squared_error"
        The loss: half the squared error, or half the Poisson deviance (with an
        ``exp`` output, for counts or rates ``>= 0``)."""


def _check_class_weight(label: object, weight: object) -> None:
    """A class's weight: a finite number >= 0 (negative ones are refused, as `mlp.MLP.fit`
    and the estimators' ``sample_weight`` refuse them)."""
    if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real):
        raise TypeError(f"class_weight[{label!r}] must be a number >= 0, got "
                        f"{type(weight).__name__} {weight!r}")
    try:
        value = float(weight)
    except OverflowError:  # an integer beyond float64: as large as infinity
        value = -math.inf if weight < 0 else math.inf
    if not (math.isfinite(value) and value >= 0):
        why = (": a negative weight rewards a larger loss on its class, so the training "
               "objective has no minimum" if value < 0 else "")
        raise ValueError(f"class_weight[{label!r}] must be a finite number >= 0, got "
                         f"{weight!r}{why}")


def _init_params(est: BaseMLP, params: dict[str, Any]) -> None:
    for name, value in params.items():
        if name not in ("self", "__class__"):
            setattr(est, name, value)


class MLPClassifier(ClassifierMixin, BaseMLP):
    __doc__ = f"""Multi-layer perceptron classifier (log-loss), trained on any mlp backend.
{_SHARED_DOC.format(name="MLPClassifier", loss="")}
    class_weight : dict, "balanced" or None, default=None
        Per-class weights, multiplied into ``sample_weight`` (for multilabel
        ``y``, per column, as `sklearn.utils.class_weight.compute_sample_weight`).

    Attributes
    ----------
    classes_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_,
    n_layers_, n_outputs_, out_activation_, loss_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, t_ :
        As scikit-learn's (``coefs_[i]: (n_units_i, n_units_i+1)`` NumPy arrays).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mlp.sklearn import MLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MLPClassifier(max_iter=300, random_state=0, backend="numpy").fit(X, y)
    >>> clf.score(X, y) > 0.9
    True
    >>> clf.predict_proba(X[:2]).shape, clf.predict(X[:2]).shape
    ((2, 3), (2,))
    """

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "class_weight": [None, dict, StrOptions({"balanced"})],
    }

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: RandomState = None, tol: float = 1e-4,
                 verbose: bool | int = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: float = 10, max_fun: int = 15000,
                 backend: str | Backend | None = None, dtype: str | None = None,
                 dropout: float | Sequence[float] = 0.0, batch_norm: bool = False,
                 class_weight: dict[Any, float] | str | None = None) -> None:
        _init_params(self, locals())

    # ------------------------------------------------------------ targets
    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=self._input_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        return X, self._label_binarizer.transform(y).astype(X.dtype), y

    def _row_weights(self, sample_weight, y, dtype):
        if self.class_weight is None:
            return sample_weight
        if isinstance(self.class_weight, dict):
            for label, weight in self.class_weight.items():
                _check_class_weight(label, weight)
        weights = compute_sample_weight(self.class_weight, y).astype(dtype)
        return weights if sample_weight is None else weights * sample_weight

    def _output_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _labels(self, outputs):
        return self._label_binarizer.inverse_transform(
            outputs.ravel() if self.n_outputs_ == 1 else outputs)

    def _validation_targets(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _score_outputs(self, outputs, y, sample_weight):
        return accuracy_score(y, self._labels(outputs), sample_weight=sample_weight)

    # ----------------------------------------------------------- methods
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Array, y: Array, sample_weight: Array | None = None) -> Self:
        """Fit the model to ``(X, y)``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            The labels (a 0/1 indicator matrix for multilabel).
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Each sample's weight (None: all 1).

        Returns
        -------
        MLPClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est.partial_fit_available())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Array, y: Array, sample_weight: Array | None = None,
                    classes: Array | None = None) -> Self:
        """Train one epoch over ``(X, y)``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_classes)
            The labels (a 0/1 indicator matrix for multilabel).
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Each sample's weight (None: all 1).
        classes : array-like of shape (n_classes,) or None, default=None
            Every label; required on the first call.

        Returns
        -------
        MLPClassifier
            The estimator.
        """
        y = to_host(y)
        if _check_partial_fit_first_call(self, to_host(classes)):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(self.classes_)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X: Array) -> Array:
        """Predict the labels of ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            The labels (``(n_samples, n_classes)`` 0/1 for multilabel).
        """
        outputs, where = self._outputs(X, "predict")
        labels = self._labels(outputs)
        return labels if labels.dtype.kind not in "biuf" else to_caller(labels, where)

    def predict_proba(self, X: Array) -> Array:
        """Compute the class probabilities of ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The probabilities, columns in ``classes_`` order.
        """
        outputs, where = self._outputs(X, "predict_proba")
        if self.n_outputs_ == 1:
            outputs = np.hstack([1 - outputs, outputs])
        return to_caller(outputs, where)

    def predict_log_proba(self, X: Array) -> Array:
        """Compute the log of the class probabilities, ``log(predict_proba(X))``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The log-probabilities, columns in ``classes_`` order.
        """
        outputs, where = self._outputs(X, "predict_log_proba")
        if self.n_outputs_ == 1:
            outputs = np.hstack([1 - outputs, outputs])
        with np.errstate(divide="ignore"):
            return to_caller(np.log(outputs), where)

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    __doc__ = f"""Multi-layer perceptron regressor, trained on any mlp backend.

    The loss is half the squared error or half the Poisson deviance.
{_SHARED_DOC.format(name="MLPRegressor", loss=_LOSS_DOC)}
    Attributes
    ----------
    coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_, loss_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, t_ :
        As scikit-learn's.

    Notes
    -----
    With several outputs the training loss is summed over the outputs (its
    gradient is the one scikit-learn uses); scikit-learn's ``loss_`` averages
    them, so our ``loss_`` is ``n_outputs_`` times theirs.

    Examples
    --------
    >>> import numpy as np
    >>> from mlp.sklearn import MLPRegressor
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> reg = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=500,
    ...                    random_state=0, backend="numpy").fit(X, y)
    >>> reg.predict(X[:4]).shape, reg.score(X, y) > 0.9
    ((4,), True)
    """

    _parameter_constraints: dict = {
        **SHARED_CONSTRAINTS,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss: str = "squared_error",
                 hidden_layer_sizes: int | Sequence[int] = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | str = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True, random_state: RandomState = None, tol: float = 1e-4,
                 verbose: bool | int = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: float = 10, max_fun: int = 15000,
                 backend: str | Backend | None = None, dtype: str | None = None,
                 dropout: float | Sequence[float] = 0.0, batch_norm: bool = False) -> None:
        _init_params(self, locals())

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=self._input_dtype(), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        Y = np.asarray(y, dtype=X.dtype)
        return X, Y.reshape(-1, 1) if Y.ndim == 1 else Y, y

    def _output_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validation_targets(self, Y):
        return Y

    def _score_outputs(self, outputs, Y, sample_weight):
        return r2_score(Y, outputs, sample_weight=sample_weight)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Array, y: Array, sample_weight: Array | None = None) -> Self:
        """Fit the model to ``(X, y)``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Each sample's weight (None: all 1).

        Returns
        -------
        MLPRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(lambda est: est.partial_fit_available())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Array, y: Array, sample_weight: Array | None = None) -> Self:
        """Train one epoch over ``(X, y)``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Each sample's weight (None: all 1).

        Returns
        -------
        MLPRegressor
            The estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def score(self, X: Array, y: Array, sample_weight: Array | None = None) -> float:
        """Compute the R^2 of ``predict(X)`` against ``y``, as `RegressorMixin.score`.

        It is computed on the host, so that inputs of any namespace work
        (scikit-learn's ``r2_score`` writes into its arrays, which JAX's are not).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Each sample's weight (None: all 1).

        Returns
        -------
        float
            The coefficient of determination.
        """
        outputs, _ = self._outputs(X, "score")
        pred = outputs.ravel() if outputs.shape[1] == 1 else outputs
        return float(r2_score(to_host(y), pred, sample_weight=to_host(sample_weight)))

    def predict(self, X: Array) -> Array:
        """Predict the targets of ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features)
            The inputs.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predictions (``(n_samples,)`` with one output).
        """
        outputs, where = self._outputs(X, "predict")
        return to_caller(outputs.ravel() if outputs.shape[1] == 1 else outputs, where)
