"""Losses, each fused with its natural output activation, and everything specific to them.

A `Loss` owns what differs between losses, so that no other module compares
loss names: its value and ``delta`` (the gradient of the mean loss with
respect to the output layer's pre-activation ``z``, shape ``(n, n_outputs)``,
with the 1/n of the mean folded in), the output activations it works with,
how user targets are checked and prepared and how its outputs become classes.
Its scores are metrics (`mlp.metrics`), which it names (``metrics=("r2",
"mse")``); each metric carries its own direction and training-totals form.

- ``mse``: mean over *all* elements of ``0.5 * (a - y)**2`` (the seed notebook's
  loss). Its gradient divides by ``n * n_outputs``; the notebook divides by
  ``n`` only, which is right only for one output. Scores ``r2`` and ``mse``.
- ``cross_entropy``: softmax output fused with the negative log-likelihood,
  mean over samples, computed with a stable log-sum-exp. Targets are integer
  labels ``(n,)`` or one-hot rows; at least two output units. Score ``accuracy``.
- ``binary_cross_entropy``: sigmoid output fused with the Bernoulli negative
  log-likelihood, mean over all elements, computed as ``softplus(z) - y*z``
  without overflow. Targets in {0, 1}, shape ``(n, n_outputs)``. Score ``accuracy``.
- ``poisson``: the log link (output ``exp``, so predictions are positive) fused
  with half the Poisson deviance, mean over all elements of ``exp(z) - y*z``:
  scikit-learn's ``HalfPoissonLoss``, which leaves out the term
  ``y*log(y) - y`` that does not depend on the network (scikit-learn's
  ``MLPRegressor`` reports it in ``loss_``, and sums over outputs where this
  loss takes their mean). Targets are counts or rates ``>= 0``. Scores ``r2``
  (of the predictions ``exp(z)``, as ``MLPRegressor.score``) and ``mse``.

.. rubric:: Sample weights

Every built-in loss takes per-row weights ``w: (n,)``, scikit-learn's
weighted mean: the loss is ``sum_i w_i * l_i / sum_i w_i``, where ``l_i`` is
row ``i``'s loss (for the elementwise losses the mean over its outputs), so
weights of 1 give the unweighted loss, an integer weight counts a row that
many times, and a row of weight 0 adds exactly nothing to the loss or the
gradients, whatever finite values its ``x`` and ``y`` hold (its input row is
zeroed by `mlp.core` and its terms are masked, so even an overflowing row
cannot put a NaN in). Weights summing to 0 give a loss and gradients of 0
(no NaN). Without weights the computation is the unweighted one, unchanged.

.. rubric:: Adding a loss

Build a `Loss` from two functions of its *terms*, and `register_loss` it;
`mlp.MLP(loss=name)` then accepts it, the gradient tests check it on every
backend and it takes sample weights::

    from mlp import losses

    def terms(xp, z, a, y):                      # (n, n_outputs): the loss is their mean
        return xp.abs(a - y)

    def terms_and_delta(xp, z, a, y, output, scale):
        # scale: a float or an (n, 1) column; delta = d sum(scale * terms) / dz
        return terms(xp, z, a, y), output.backward(xp, xp.sign(a - y) * scale, z, a)

    losses.register_loss(losses.Loss(
        "mae", terms=terms, terms_and_delta=terms_and_delta, default_output="identity"))

``terms`` returns one term per element ``(n, n_outputs)`` (``elementwise=True``,
the default) or one per row ``(n,)`` (``elementwise=False``, as cross-entropy).
The `Loss` builds the rest from them, written once: the unweighted mean
(``scale = 1/size``) and the weighted one (``scale_i = w_i / (sum(w) *
terms_per_row)``, masked where ``w_i = 0``). It reports ``r2`` and ``mse``
unless it names other metrics (``metrics=("accuracy",)``, or `mlp.metrics.Metric`
objects of its own, which `register_loss` registers with their direction).

Its targets are real numbers unless it says otherwise (``targets=``: a
`Targets`, which checks and prepares the user's ``y``, draws valid targets for
the tests, and turns outputs into classes for a classifier).

A loss written only for the unweighted mean - ``value(xp, z, a, y)`` and
``value_and_delta(xp, z, a, y, output)`` instead of the terms - still trains
and is checked the same way, but refuses sample weights with a message
saying to give it terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from array_api_compat import array_namespace

from ._typing import Array, Namespace
from .activations import Activation, hidden_activations
from .engine.kernels import Buffers, PureOnly
from .metrics import (
    METRICS,
    Metric,
    TrainingTotals,
    binary_accuracy,
    get_metric,
    register_metric,
    weight_total,
    weighted_sum,
)
from .validation import _dtype_like, cast_checked, check_finite, to_backend_array

if TYPE_CHECKING:
    from .backends import Backend, InplaceOps


def _count(y) -> int:
    n = 1
    for s in y.shape:
        n *= s
    return n


# ------------------------------------------------------------- targets
def _checked_targets(backend, y, n_samples, dtype, name, x_name, *, floats_only=False):
    """``y`` on the backend, 1-D or 2-D, with ``n_samples`` rows and no NaN/inf."""
    arr = to_backend_array(backend, y, name, dtype, floats_only=floats_only, on_host=True)
    if arr.ndim == 0 or arr.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {tuple(arr.shape)}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{x_name} and {name} have different numbers of samples: "
                         f"{n_samples} and {arr.shape[0]}")
    check_finite(backend, arr, name)
    return arr


def real_targets(loss: Loss, backend: Backend, y: Any, n_samples: int, n_outputs: int,
                 dtype: Any, name: str = "y", x_name: str = "x") -> tuple[Array, None]:
    """Check targets of real numbers, ``(n, n_outputs)`` (``(n,)`` with one output).

    The building block of ``mse`` and ``binary_cross_entropy`` (and of losses of
    your own with real targets).

    Parameters
    ----------
    loss : Loss
        The loss the targets are for.
    backend : Backend
        The model's backend.
    y : array-like of shape (n_samples, n_outputs) or (n_samples,)
        The user's targets.
    n_samples : int
        The number of rows ``y`` must have.
    n_outputs : int
        The number of outputs.
    dtype : dtype
        The float dtype of the targets.
    name : str, default "y"
        The targets' name in messages.
    x_name : str, default "x"
        The inputs' name in messages.

    Returns
    -------
    targets : array of shape (n_samples, n_outputs)
        The checked targets, in ``dtype``.
    labels : None
        Real targets have no labels.

    Raises
    ------
    ValueError, TypeError
        Targets of the wrong shape, not numbers, or not finite; the message names
        ``name``.
    """
    arr = _checked_targets(backend, y, n_samples, dtype, name, x_name)
    if arr.ndim == 1:
        if n_outputs != 1:
            raise ValueError(f"{name} has shape {tuple(arr.shape)} but the model has {n_outputs} "
                             f"outputs; {name} must be (n_samples, {n_outputs})")
        arr = array_namespace(arr).reshape(arr, (n_samples, 1))
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} columns but the model's output layer has "
                         f"{n_outputs} units")
    return cast_checked(backend, arr, dtype, name), None


def _binary_targets(loss, backend, y, n_samples, n_outputs, dtype, name="y", x_name="x"):
    arr, _ = real_targets(loss, backend, y, n_samples, n_outputs, dtype, name, x_name)
    xp = array_namespace(arr)
    if not bool(xp.all((arr == 0.0) | (arr == 1.0))):
        raise ValueError(f"{loss.name} needs targets in {{0, 1}}; {name} has other values")
    return arr, None


def _class_targets(loss, backend, y, n_samples, n_classes, dtype, name="y", x_name="x"):
    """One-hot ``(n, n_classes)`` targets and integer labels ``(n,)``, from either."""
    arr = _checked_targets(backend, y, n_samples, dtype, name, x_name, floats_only=True)
    xp = array_namespace(arr)
    if arr.ndim == 2:
        if arr.shape[1] != n_classes:
            if arr.shape[1] == 1:
                raise ValueError(f"{name} has shape {tuple(arr.shape)}; {loss.name} takes "
                                 f"integer labels of shape (n,) - use {name}.ravel() - or "
                                 f"one-hot rows of width {n_classes}")
            raise ValueError(f"{name} is one-hot with {arr.shape[1]} columns but the model has "
                             f"{n_classes} output classes")
        onehot = cast_checked(backend, arr, dtype, name)
        ok = bool(xp.all((onehot >= 0.0) & (onehot <= 1.0))) and bool(
            xp.all(xp.abs(xp.sum(onehot, axis=1) - 1.0) < 1e-3))
        if not ok:
            raise ValueError(f"2-D {name} for {loss.name} must be one-hot (or probability) "
                             "rows: values in [0, 1] summing to 1")
        return onehot, xp.argmax(onehot, axis=1)
    if not xp.isdtype(arr.dtype, "integral"):
        raise ValueError(f"{loss.name} needs integer class labels 0..{n_classes - 1}; {name} "
                         f"has dtype {backend.dtype_name(arr.dtype)} (convert with "
                         f"{name}.astype(int) if the values are whole numbers)")
    lo, hi = int(xp.min(arr)), int(xp.max(arr))
    if lo < 0 or hi >= n_classes:
        raise ValueError(f"class labels must be in 0..{n_classes - 1} (the model has {n_classes} "
                         f"outputs); {name} has labels from {lo} to {hi}")
    from array_api_compat import device

    classes = xp.arange(n_classes, dtype=arr.dtype, device=device(arr))
    return xp.astype(arr[:, None] == classes[None, :], _dtype_like(backend, arr, dtype)), arr


def _count_targets(loss, backend, y, n_samples, n_outputs, dtype, name="y", x_name="x"):
    """Real targets ``>= 0`` (counts or rates), for the Poisson loss."""
    arr, _ = real_targets(loss, backend, y, n_samples, n_outputs, dtype, name, x_name)
    smallest = float(array_namespace(arr).min(arr))
    if smallest < 0:
        raise ValueError(f"{loss.name} needs targets >= 0 (counts or rates); {name} has "
                         f"negative values (smallest {smallest:g})")
    return arr, None


def _argmax_classes(xp, probs):
    return xp.argmax(probs, axis=1)


def _threshold_classes(xp, probs):
    default_int = xp.__array_namespace_info__().default_dtypes()["integral"]
    return xp.astype(probs > 0.5, default_int)


# ------------------------------------------------------------- the math
# Each loss is its terms and their gradient (see "Adding a loss" above): ``scale`` is a
# float (1/size: the mean) or an (n, 1) column (the rows' normalised weights).
def _mse_terms(xp, z, a, y):
    diff = a - y
    return 0.5 * (diff * diff)


def _mse_terms_and_delta(xp, z, a, y, output: Activation, scale):
    diff = a - y
    assert output.backward is not None  # (mse's outputs are the hidden activations)
    return 0.5 * (diff * diff), output.backward(xp, diff * scale, z, a)


class MseInplace:
    """The ``mse`` loss in place, on the in-place operations ``ops`` of the backend's library.

    `Loss.value_and_delta` of the pure ``mse`` (``scale = 1/size``) and its
    training totals (`r2_totals`: ``(y - a)**2`` is ``diff * diff`` bit for bit),
    into the executor's buffers ``buf`` (`mlp.backends.InplaceOps`).
    """

    counts_classes: bool = False

    @staticmethod
    def value_and_delta(ops: InplaceOps, buf: Buffers, z: Array, a: Array, y: Array,
                        output_backward: Callable[[Array], Array]
                        ) -> tuple[Array, Array, Array | None]:
        """Compute the loss, its gradient and the training totals, in place.

        Parameters
        ----------
        ops : InplaceOps
            The library's in-place operations.
        buf : dict
            The executor's scratch arrays.
        z : array of shape (n_samples, n_outputs)
            The output pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        y : array of shape (n_samples, n_outputs)
            The prepared targets.
        output_backward : callable
            ``output_backward(d)``: the output activation's chain rule (in place
            where it has an in-place form).

        Returns
        -------
        loss : 0-d array
            The mean loss.
        delta : array of shape (n_samples, n_outputs)
            Its gradient with respect to ``z``.
        totals : array
            The training totals (`r2_totals`).
        """
        size = y.shape[0] * y.shape[1]
        diff, sq = buf["e"], buf["yz"]
        ops.subtract(a, y, out=diff)
        ops.multiply(diff, diff, out=sq)
        totals = ops.sum(sq, axis=0)
        ops.multiply(sq, 0.5, out=sq)  # the terms, 0.5 * (diff * diff)
        loss = ops.total(sq) / size
        ops.multiply(diff, 1.0 / size, out=diff)
        return loss, output_backward(diff), totals


def _log_softmax_terms(xp, z):
    shift = xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(z - shift)
    total = xp.sum(e, axis=-1, keepdims=True)
    log_z = xp.log(total) + shift  # log-sum-exp, (n, 1)
    return log_z, e / total


def _ce_terms(xp, z, a, y):
    log_z, _ = _log_softmax_terms(xp, z)
    return log_z[:, 0] - xp.sum(y * z, axis=-1)


def _ce_terms_and_delta(xp, z, a, y, output: Activation, scale):
    log_z, probs = _log_softmax_terms(xp, z)
    return log_z[:, 0] - xp.sum(y * z, axis=-1), (probs - y) * scale


class CrossEntropyInplace:
    """Cross-entropy fused with the softmax, in place.

    `Loss.value_and_delta` of the pure ``cross_entropy`` (``scale = 1/n``), into
    the executor's buffers ``buf`` (`mlp.backends.InplaceOps`). Its training totals
    are counts of correct classes, which the executor may count once per epoch
    from each step's predicted classes (``counts_classes``).
    """

    counts_classes: bool = True

    @staticmethod
    def value_and_delta(ops: InplaceOps, buf: Buffers, z: Array, a: Array, y: Array,
                        output_backward: Callable[[Array], Array]
                        ) -> tuple[Array, Array, Array | None]:
        """Compute the loss and its gradient, in place.

        Parameters
        ----------
        ops : InplaceOps
            The library's in-place operations.
        buf : dict
            The executor's scratch arrays.
        z : array of shape (n_samples, n_outputs)
            The output pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        y : array of shape (n_samples, n_outputs)
            The prepared targets.
        output_backward : callable
            ``output_backward(d)``: the output activation's chain rule (in place
            where it has an in-place form).

        Returns
        -------
        loss : 0-d array
            The mean loss.
        delta : array of shape (n_samples, n_outputs)
            Its gradient with respect to ``z``.
        totals : None
            The totals are the pure ones (or counted).
        """
        n = y.shape[0]
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
        return loss, e, None


def _bce_terms(xp, z, a, y):
    # softplus(z) - y*z = max(z, 0) - y*z + log1p(exp(-|z|))
    return xp.maximum(z, 0.0) - y * z + xp.log1p(xp.exp(-xp.abs(z)))


def _bce_terms_and_delta(xp, z, a, y, output: Activation, scale):
    return _bce_terms(xp, z, a, y), (a - y) * scale


def _poisson_terms(xp, z, a, y):
    # a = exp(z): scikit-learn's HalfPoissonLoss, exp(raw) - y * raw
    return a - y * z


def _poisson_terms_and_delta(xp, z, a, y, output: Activation, scale):
    return a - y * z, (a - y) * scale


def _normal_targets(rng, n, n_outputs):
    return rng.normal(size=(n, n_outputs))


def _label_targets(rng, n, n_outputs):
    return rng.integers(0, n_outputs, size=n)


def _binary_sample(rng, n, n_outputs):
    return rng.integers(0, 2, size=(n, n_outputs)) * 1.0  # float64 0/1


def _count_sample(rng, n, n_outputs):
    return rng.poisson(2.0, size=(n, n_outputs)) * 1.0  # float64 counts


# ------------------------------------------------------------- Targets
class Targets(NamedTuple):
    """How a loss takes its targets.

    Parameters
    ----------
    prepare : callable
        ``(loss, backend, y, n_samples, n_outputs, dtype, name, x_name) -> (targets, labels)``:
        checks the user's ``y`` (naming it ``name``, and ``x_name`` for a row-count
        mismatch) and returns targets ``(n, n_outputs)`` in ``dtype`` and integer
        labels ``(n,)`` (None unless the loss has labels), on the backend or the host.
    sample : callable ``(rng, n, n_outputs) -> NumPy targets`` or None, default None
        Random valid targets as a user gives them (the gradient tests and examples
        train on them).
    classes : callable ``(xp, outputs) -> classes`` or None, default None
        How the network's outputs become classes; None for a loss that is not a
        classifier.
    """

    prepare: Callable[..., tuple[Any, Any]]
    sample: Callable[[np.random.Generator, int, int], np.ndarray] | None = None
    classes: Callable[[Namespace, Array], Array] | None = None


#: Real numbers ``(n, n_outputs)`` (``(n,)`` with one output).
REAL_TARGETS = Targets(real_targets, _normal_targets)
#: Integer class labels ``(n,)`` or one-hot rows; classes by the largest output.
CLASS_TARGETS = Targets(_class_targets, _label_targets, _argmax_classes)
#: 0/1 per output ``(n, n_outputs)``; classes by the 0.5 threshold.
BINARY_TARGETS = Targets(_binary_targets, _binary_sample, _threshold_classes)
#: Counts or rates ``>= 0``.
COUNT_TARGETS = Targets(_count_targets, _count_sample)


# ---------------------------------------------------------------- Loss
def _resolved_metrics(loss: str, metrics: tuple[str | Metric, ...]) -> tuple[Metric, ...]:
    """``metrics`` as `Metric` objects: registered names looked up, objects kept."""
    if isinstance(metrics, str | Metric) or not isinstance(metrics, tuple | list):
        raise TypeError(f"Loss {loss!r}: metrics must be a tuple of metric names or Metric "
                        f"objects, got {metrics!r}")
    resolved = []
    for m in metrics:
        if isinstance(m, Metric):
            resolved.append(m)
            continue
        try:
            resolved.append(get_metric(m))
        except ValueError as e:
            raise ValueError(f"Loss {loss!r}: {e}") from None
    names = [m.name for m in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"Loss {loss!r} names a metric twice: {', '.join(names)}")
    return tuple(resolved)


class Loss:
    """A loss: its math, the output activations and targets it takes, the metrics it reports.

    Its math is its value and its gradient; its targets a `Targets`; its metrics
    from `mlp.metrics`.

    Parameters
    ----------
    name : str
        The name ``MLP(loss=...)`` takes once registered (`register_loss`).
    terms : callable ``(xp, z, a, y) -> (n, n_outputs) or (n,)``
        The loss's terms for output pre-activations ``z`` and activations ``a``
        ``(n, n_outputs)`` against prepared targets ``y``: one per element
        (``elementwise``) or one per row. The loss is their mean; weighted,
        ``sum_i w_i * mean_j terms_ij / sum_i w_i``.
    terms_and_delta : callable ``(xp, z, a, y, output_activation, scale) -> (terms, delta)``
        The terms and ``delta: (n, n_outputs)``, the gradient of
        ``sum(scale * terms)`` with respect to ``z``; ``scale`` is a float or
        an ``(n, 1)`` column.
    elementwise : bool
        Whether ``terms`` has one term per output (True) or one per row.
    value, value_and_delta : callable, optional
        The unweighted-only form, instead of ``terms`` and ``terms_and_delta``:
        ``value(xp, z, a, y) -> 0-d`` mean loss and ``value_and_delta(xp, z, a,
        y, output_activation) -> (loss, dLoss/dz)``. Such a loss refuses weights.
    default_output : str
        The output activation used when the user names none.
    allowed_outputs : tuple of str or None
        Output activations the loss works with; None: every hidden activation.
    targets : Targets, default REAL_TARGETS
        How the loss takes its targets: checks and prepares the user's ``y``, draws
        valid ones, and (for a classifier) turns outputs into classes. Built in:
        `REAL_TARGETS`, `CLASS_TARGETS` (integer labels or one-hot rows),
        `BINARY_TARGETS` (0/1) and `COUNT_TARGETS` (``>= 0``).
    metrics : tuple of str or Metric, default ("r2", "mse")
        The scores `MLP.evaluate`, the validation logs and (for those with a
        training-totals form) the training logs report, each a registered metric's
        name or a `mlp.metrics.Metric`; each carries its own direction, which
        `metric_mode` (and so every callback watching it) reads. `register_loss`
        registers the loss's `Metric` objects that are not yet registered.
    min_outputs : int
        The fewest output units the loss can learn with.
    few_outputs_hint : str
        Appended to the error for too few outputs (what to do instead).
    needs_output : bool
        Whether the loss reads ``a`` (cross-entropy works from ``z`` alone, so
        training skips the output softmax).

    Attributes
    ----------
    inplace : object or None
        Its form for the in-place executor (`mlp.engine.inplace`), declared beside
        its pure one: `MseInplace`, `CrossEntropyInplace`, or a
        `mlp.engine.kernels.PureOnly` saying why a built-in has none. None (a loss
        of your own): its pure functions run there.

    Raises
    ------
    TypeError
        Not exactly one pair of functions (``terms`` and ``terms_and_delta``, or
        ``value`` and ``value_and_delta``), a function that is not callable, or
        ``targets`` that is not a `Targets`.
    """

    inplace: Any = None

    def __init__(self, name: str, *, terms: Callable[..., Any] | None = None,
                 terms_and_delta: Callable[..., tuple[Any, Any]] | None = None,
                 elementwise: bool = True, value: Callable[..., Any] | None = None,
                 value_and_delta: Callable[..., tuple[Any, Any]] | None = None,
                 default_output: str,
                 allowed_outputs: tuple[str, ...] | None = None,
                 targets: Targets = REAL_TARGETS,
                 metrics: tuple[str | Metric, ...] = ("r2", "mse"),
                 min_outputs: int = 1, few_outputs_hint: str = "",
                 needs_output: bool = True) -> None:
        by_terms = terms is not None and terms_and_delta is not None
        by_value = value is not None and value_and_delta is not None
        if by_terms == by_value or not all(callable(f) for f in (
                terms, terms_and_delta, value, value_and_delta) if f is not None):
            raise TypeError(f"Loss {name!r} needs the functions terms and terms_and_delta "
                            "(or, for an unweighted-only loss, value and value_and_delta), "
                            "one pair, not both")
        if not isinstance(targets, Targets):
            raise TypeError(f"Loss {name!r}: targets must be a mlp.losses.Targets, got "
                            f"{type(targets).__name__}")
        self.name = name
        self._terms, self._terms_and_delta = terms, terms_and_delta
        self.elementwise = elementwise
        self._value, self._value_and_delta = value, value_and_delta
        self.default_output = default_output
        self._allowed_outputs = allowed_outputs
        self.targets = targets
        self.metrics = _resolved_metrics(name, metrics)
        self._training = TrainingTotals(self.metrics)
        self.min_outputs = min_outputs
        self.few_outputs_hint = few_outputs_hint
        self.needs_output = needs_output

    # ------------------------------------------------------- value, delta
    @property
    def takes_weights(self) -> bool:
        """Whether the loss takes sample weights (it is built from its terms)."""
        return self._terms is not None

    def check_takes_weights(self, name: str = "sample_weight") -> None:
        """Refuse weights for a loss built from ``value`` and ``value_and_delta`` only.

        Parameters
        ----------
        name : str, default "sample_weight"
            The weights' name in the message.

        Raises
        ------
        ValueError
            The loss does not take weights.
        """
        if not self.takes_weights:
            raise ValueError(f"loss {self.name!r} cannot take {name}: it was built from value "
                             "and value_and_delta, which give only the unweighted mean; build "
                             "it from terms and terms_and_delta (see mlp.losses) to weight rows")

    def _terms_per_row(self, z: Array) -> int:
        return z.shape[1] if self.elementwise else 1

    def value(self, xp: Namespace, z: Array, a: Array, y: Array,
              weights: Array | None = None) -> Array:
        """Compute the mean loss, weighted over rows by ``weights`` if given (no gradient).

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        z : array of shape (n_samples, n_outputs)
            The output layer's pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        y : array of shape (n_samples, n_outputs)
            The prepared targets (`prepare_targets`).
        weights : array of shape (n_samples,) or None, default None
            The rows' weights (None: unweighted).

        Returns
        -------
        0-d array
            The mean loss.

        Raises
        ------
        ValueError
            ``weights`` given to a loss that does not take them (`takes_weights`).
        """
        if weights is None:
            if self._value is not None:
                return self._value(xp, z, a, y)
            assert self._terms is not None  # (one pair or the other: the constructor checks)
            terms = self._terms(xp, z, a, y)
            return xp.sum(terms) / _count(terms)
        self.check_takes_weights()
        assert self._terms is not None
        norm = weight_total(xp, weights) * self._terms_per_row(z)
        return weighted_sum(xp, self._terms(xp, z, a, y), weights) / norm

    def value_and_delta(self, xp: Namespace, z: Array, a: Array, y: Array, output: Activation,
                        weights: Array | None = None) -> tuple[Array, Array]:
        """Compute the mean loss and its gradient ``delta = dLoss/dz``, weighted if ``weights``.

        Rows of weight 0 get a delta of exactly 0; weights summing to 0 give 0 for
        both.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        z : array of shape (n_samples, n_outputs)
            The output layer's pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        y : array of shape (n_samples, n_outputs)
            The prepared targets (`prepare_targets`).
        output : Activation
            The output activation (``delta`` is with respect to its input ``z``).
        weights : array of shape (n_samples,) or None, default None
            The rows' weights (None: unweighted).

        Returns
        -------
        loss : 0-d array
            The mean loss.
        delta : array of shape (n_samples, n_outputs)
            Its gradient with respect to ``z``.

        Raises
        ------
        ValueError
            ``weights`` given to a loss that does not take them (`takes_weights`).
        """
        if weights is None:
            if self._value_and_delta is not None:
                return self._value_and_delta(xp, z, a, y, output)
            assert self._terms_and_delta is not None  # (one pair or the other)
            size = z.shape[0] * self._terms_per_row(z)
            terms, delta = self._terms_and_delta(xp, z, a, y, output, 1.0 / size)
            return xp.sum(terms) / size, delta
        self.check_takes_weights()
        assert self._terms_and_delta is not None
        norm = weight_total(xp, weights) * self._terms_per_row(z)
        column = weights[:, None]
        terms, delta = self._terms_and_delta(xp, z, a, y, output, column * (1.0 / norm))
        return (weighted_sum(xp, terms, weights) / norm,
                xp.where(column > 0, delta, 0.0))

    @property
    def allowed_outputs(self) -> tuple[str, ...]:
        """Output activations the loss works with."""
        if self._allowed_outputs is None:
            return hidden_activations()
        return self._allowed_outputs

    @property
    def classification(self) -> bool:
        """Whether the loss's outputs are class probabilities."""
        return self.targets.classes is not None

    def check_outputs(self, output_activation: str, n_outputs: int) -> None:
        """Refuse an output activation or an output width the loss cannot learn with.

        Parameters
        ----------
        output_activation : str
            The output activation's name.
        n_outputs : int
            The number of output units.

        Raises
        ------
        ValueError
            The activation is not in `allowed_outputs`, or there are fewer than
            ``min_outputs`` outputs.
        """
        if output_activation not in self.allowed_outputs:
            raise ValueError(f"loss {self.name!r} cannot be used with output_activation "
                             f"{output_activation!r}; allowed: {', '.join(self.allowed_outputs)}")
        if n_outputs < self.min_outputs:
            raise ValueError(f"loss {self.name!r} needs at least {self.min_outputs} output units, "
                             f"but layer_sizes ends in {n_outputs}.{self.few_outputs_hint}")

    def prepare_targets(self, backend: Backend, y: Any, n_samples: int, n_outputs: int,
                        dtype: Any, name: str = "y",
                        x_name: str = "x") -> tuple[Array, Array | None]:
        """Check the user's targets and put them on ``backend``.

        The loss's `Targets` may return host (NumPy) arrays: data from the host is
        checked there (no device work) and moved here, once.

        Parameters
        ----------
        backend : Backend
            Where the arrays go.
        y : array-like
            The user's targets.
        n_samples : int
            The number of rows ``y`` must have (those of ``x``).
        n_outputs : int
            The number of outputs.
        dtype : dtype
            The backend's float dtype of the targets.
        name : str, default "y"
            The targets' name in messages.
        x_name : str, default "x"
            The inputs' name in messages.

        Returns
        -------
        targets : array of shape (n_samples, n_outputs)
            In ``dtype``.
        labels : array of shape (n_samples,) or None
            Integer classes, for a loss with labels; None otherwise.

        Raises
        ------
        ValueError, TypeError
            Targets the loss cannot take; the message names ``name``.
        """
        targets, labels = self.targets.prepare(self, backend, y, n_samples, n_outputs, dtype,
                                               name, x_name)
        return (backend.asarray(targets, dtype),
                None if labels is None else backend.asarray(labels))

    @property
    def score_names(self) -> tuple[str, ...]:
        """The names of the loss's metrics, as `MLP.evaluate` and the logs give them."""
        return tuple(m.name for m in self.metrics)

    def score(self, xp: Namespace, z: Array, a: Array, targets: Array, labels: Array | None,
              weights: Array | None = None) -> tuple[Array, ...]:
        """Compute the loss's metrics (`score_names`), weighted if ``weights``.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        z : array of shape (n_samples, n_outputs)
            The output layer's pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        targets : array of shape (n_samples, n_outputs)
            The prepared targets.
        labels : array of shape (n_samples,) or None
            Integer classes, for a loss with labels.
        weights : array of shape (n_samples,) or None, default None
            The rows' weights (None: unweighted).

        Returns
        -------
        tuple of 0-d arrays
            One value per metric, in the order of `score_names`.
        """
        return tuple(m(xp, z, a, targets, labels, weights) for m in self.metrics)

    def train_totals(self, xp: Namespace, z: Array, a: Array, y: Array,
                     w: Array | None = None) -> Array:
        """Compute a batch's training totals, summable over the epoch's batches.

        See `mlp.metrics.Totals`.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        z : array of shape (n_samples, n_outputs)
            The output layer's pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        y : array of shape (n_samples, n_outputs)
            The prepared targets (`prepare_targets`).
        w : array of shape (n_samples,) or None, default None
            The rows' weights (None: unweighted).

        Returns
        -------
        array of shape (t,)
            The totals (``(0,)`` for a loss without training scores).
        """
        return self._training.step(xp, z, a, y, w)

    def data_totals(self, xp: Namespace, y: Array, w: Array | None = None) -> Array:
        """Compute the training totals of the data alone.

        See `mlp.metrics.Totals`.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        y : array of shape (n_samples, k)
            The prepared targets.
        w : array of shape (n_samples,) or None, default None
            The rows' weights (None: unweighted).

        Returns
        -------
        array of shape (d,)
            The totals (``(0,)`` for none).
        """
        return self._training.data(xp, y, w)

    def scores_from_totals(self, totals: Array) -> dict[str, Array]:
        """Compute the training scores from the epochs' totals.

        Parameters
        ----------
        totals : array of shape (n_epochs, t + d)
            Host arrays: `train_totals` summed over each epoch, then `data_totals`.

        Returns
        -------
        dict of str to array of shape (n_epochs,)
            Each training score (float64), by name.
        """
        return self._training.scores(totals)

    @property
    def training_score_names(self) -> tuple[str, ...]:
        """The names `scores_from_totals` gives: the metrics with a training-totals form.

        What `fit` logs besides ``loss``.
        """
        return self._training.names

    def predict_classes(self, xp: Namespace, outputs: Array) -> Array:
        """Turn the network's outputs into classes (classifiers only).

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        outputs : array of shape (n_samples, n_outputs)
            The network's outputs (probabilities).

        Returns
        -------
        array of shape (n_samples,) or (n_samples, n_outputs)
            Class indices, or 0/1 per output (binary cross-entropy).

        Raises
        ------
        ValueError
            The loss is not a classifier.
        """
        if self.targets.classes is None:
            raise ValueError(f"loss {self.name!r} is not a classifier: its outputs are not "
                             "classes")
        return self.targets.classes(xp, outputs)

    def sample_targets(self, rng: np.random.Generator, n: int, n_outputs: int) -> np.ndarray:
        """Draw ``n`` random valid targets, as the user would give them.

        What the gradient tests and examples train on.

        Parameters
        ----------
        rng : numpy.random.Generator
            The stream to draw from.
        n : int
            The number of rows.
        n_outputs : int
            The number of outputs.

        Returns
        -------
        numpy.ndarray
            ``n`` rows of targets.

        Raises
        ------
        ValueError
            The loss's `Targets` has no sample function.
        """
        if self.targets.sample is None:
            raise ValueError(f"loss {self.name!r} cannot draw targets: its Targets has no "
                             "sample function")
        return self.targets.sample(rng, n, n_outputs)

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"


LOSSES: dict[str, Loss] = {}


def _new_metrics(loss: Loss) -> list[Metric]:
    """The loss's metrics not yet registered; a ValueError for one whose name is registered
    with the other direction (the logs could not say which way is better)."""
    new = []
    for m in loss.metrics:
        known = METRICS.get(m.name)
        if known is None:
            new.append(m)
        elif known.greater_is_better != m.greater_is_better:
            raise ValueError(f"loss {loss.name!r} has a metric {m.name!r} with "
                             f"greater_is_better={m.greater_is_better}, but the registered "
                             f"metric {m.name!r} has greater_is_better="
                             f"{known.greater_is_better}; give the loss's metric another name")
    return new


def register_loss(loss: Loss, *, overwrite: bool = False) -> Loss:
    """Make ``loss`` available as ``MLP(loss=loss.name)``, and its metrics by their names.

    Its metrics not registered yet are registered (`mlp.metrics.register_metric`).
    A metric named as a registered one must have its direction
    (``greater_is_better``).

    Parameters
    ----------
    loss : Loss
        The loss.
    overwrite : bool, default False
        Replace a loss registered under the same name.

    Returns
    -------
    Loss
        ``loss`` itself.

    Raises
    ------
    TypeError
        ``loss`` is not a `Loss`.
    ValueError
        A loss of that name is registered (without ``overwrite``), or a metric
        of the loss is registered with the other direction.
    """
    if not isinstance(loss, Loss):
        raise TypeError(f"register_loss needs a Loss, got {type(loss).__name__}")
    if loss.name in LOSSES and not overwrite:
        raise ValueError(f"a loss named {loss.name!r} is already registered "
                         "(pass overwrite=True to replace it)")
    for metric in _new_metrics(loss):  # (every check first: a refused loss registers nothing)
        register_metric(metric)
    LOSSES[loss.name] = loss
    return loss


register_loss(Loss("mse", terms=_mse_terms, terms_and_delta=_mse_terms_and_delta,
                   default_output="identity"))
register_loss(Loss("cross_entropy", terms=_ce_terms, terms_and_delta=_ce_terms_and_delta,
                   elementwise=False, default_output="softmax", allowed_outputs=("softmax",),
                   targets=CLASS_TARGETS, metrics=("accuracy",), min_outputs=2,
                   few_outputs_hint=(" With one unit the softmax is always 1, the loss always 0 "
                                     "and nothing is learned. For one yes/no output use "
                                     "loss='binary_cross_entropy'; for k classes use k "
                                     "output units."),
                   needs_output=False))
register_loss(Loss("binary_cross_entropy", terms=_bce_terms,
                   terms_and_delta=_bce_terms_and_delta, default_output="sigmoid",
                   allowed_outputs=("sigmoid",), targets=BINARY_TARGETS,
                   metrics=(binary_accuracy,)))
register_loss(Loss("poisson", terms=_poisson_terms, terms_and_delta=_poisson_terms_and_delta,
                   default_output="exp", allowed_outputs=("exp",),
                   targets=COUNT_TARGETS))


# The built-ins' in-place forms (the in-place executor's, `mlp.engine.inplace`); a loss of
# your own has none and runs its pure functions there.
LOSSES["mse"].inplace = MseInplace()
LOSSES["cross_entropy"].inplace = CrossEntropyInplace()
LOSSES["binary_cross_entropy"].inplace = PureOnly(
    "a few elementwise operations beside the matrix products; the pure form runs")
LOSSES["poisson"].inplace = PureOnly(
    "a few elementwise operations beside the matrix products; the pure form runs")

#: The losses mlp defines, as registered at import (``register_loss(...,
#: overwrite=True)`` may replace a registry entry; these stay what they are).
BUILT_IN: dict[str, Loss] = dict(LOSSES)


def get_loss(name: str) -> Loss:
    """Give the registered loss called ``name``.

    Parameters
    ----------
    name : str
        A registered loss's name.

    Returns
    -------
    Loss
        The loss.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).
    """
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {name!r}")
    return LOSSES[name]
