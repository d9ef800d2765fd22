"""Losses, each fused with its natural output activation, and everything specific to them.

A `Loss` owns what differs between losses, so that no other module compares
loss names: its value and ``delta`` (the gradient of the mean loss with
respect to the output layer's pre-activation ``z``, shape ``(n, n_outputs)``,
with the 1/n of the mean folded in), the output activations it works with,
how user targets are checked and prepared, its score (accuracy or R²) and how
its outputs become classes.

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

Sample weights
--------------
Every built-in loss takes per-row weights ``w: (n,)``, scikit-learn's
weighted mean: the loss is ``sum_i w_i * l_i / sum_i w_i``, where ``l_i`` is
row ``i``'s loss (for the elementwise losses the mean over its outputs), so
weights of 1 give the unweighted loss, an integer weight counts a row that
many times, and a row of weight 0 adds exactly nothing to the loss or the
gradients, whatever finite values its ``x`` and ``y`` hold (its input row is
zeroed by `mlp.core` and its terms are masked, so even an overflowing row
cannot put a NaN in). Weights summing to 0 give a loss and gradients of 0
(no NaN). Without weights the computation is the unweighted one, unchanged.

Adding a loss
-------------
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
        "mae", terms=terms, terms_and_delta=terms_and_delta, default_output="identity",
        sample_targets=lambda rng, n, k: rng.normal(size=(n, k))))

``terms`` returns one term per element ``(n, n_outputs)`` (``elementwise=True``,
the default) or one per row ``(n,)`` (``elementwise=False``, as cross-entropy).
The `Loss` builds the rest from them, written once: the unweighted mean
(``scale = 1/size``) and the weighted one (``scale_i = w_i / (sum(w) *
terms_per_row)``, masked where ``w_i = 0``).

A loss written only for the unweighted mean - ``value(xp, z, a, y)`` and
``value_and_delta(xp, z, a, y, output)`` instead of the terms - still trains
and is checked the same way, but refuses sample weights with a message
saying to give it terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from array_api_compat import array_namespace, device

from .activations import Activation, hidden_activations
from .engine.kernels import PureOnly
from .validation import _dtype_like, cast_checked, check_finite, to_backend_array


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


def real_targets(loss, backend, y, n_samples, n_outputs, dtype, name="y", x_name="x"):
    """Targets ``(n, n_outputs)`` of real numbers (``(n,)`` is allowed with one output).

    Returns ``(targets, None)``; the building block of ``mse`` and
    ``binary_cross_entropy`` (and of user losses with real targets).
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


# -------------------------------------------------------------- weights
def _column(weights, like):
    """``weights: (n,)`` shaped to broadcast against ``like``: ``(n,)`` or ``(n, 1)``."""
    return weights if like.ndim == 1 else weights[:, None]


def _weighted_sum(xp, values, weights, axis=None):
    """``sum(w_i * values_i)``, rows of weight 0 giving exactly 0 (even if inf)."""
    w = _column(weights, values)
    return xp.sum(xp.where(w > 0, w * values, 0.0), axis=axis)


def _weight_total(xp, weights):
    """``sum(w)``, or 1 when it is 0 (then every weighted sum is 0: no 0/0)."""
    total = xp.sum(weights)
    return xp.where(total > 0, total, 1.0)


# -------------------------------------------------------------- scores
# Each score takes optional row weights ``(n,)``: scikit-learn's weighted definitions
# (``r2_score``, ``mean_squared_error``, ``accuracy_score`` with ``sample_weight``).
def r2_and_mse(xp, z, a, targets, labels, weights=None):
    """``(r2, mse)``: the mean over outputs of the coefficient of determination (an
    output whose targets are constant scores 1 if predicted exactly, else 0) and
    the mean of ``(a - y)**2``; weighted over rows with ``weights: (n,)``."""
    sq = (targets - a) ** 2
    if weights is None:
        res = xp.sum(sq, axis=0)
        tot = xp.sum((targets - xp.mean(targets, axis=0)) ** 2, axis=0)
        mse = xp.mean(sq)
    else:
        total = _weight_total(xp, weights)
        res = _weighted_sum(xp, sq, weights, axis=0)
        mean = _weighted_sum(xp, targets, weights, axis=0) / total
        tot = _weighted_sum(xp, (targets - mean) ** 2, weights, axis=0)
        mse = xp.sum(res) / (total * sq.shape[1])
    safe = xp.where(tot > 0, tot, 1.0)
    per_output = xp.where(tot > 0, 1.0 - res / safe, xp.astype(res == 0, a.dtype))
    return xp.mean(per_output), mse


def _mean(xp, values, weights):
    """The mean of ``values`` ``(n,)`` or ``(n, k)``, weighted over rows if ``weights``."""
    if weights is None:
        return xp.mean(values)
    per_row = 1 if values.ndim == 1 else values.shape[1]
    return _weighted_sum(xp, values, weights) / (_weight_total(xp, weights) * per_row)


def _argmax_accuracy(xp, z, a, targets, labels, weights=None):
    return (_mean(xp, xp.astype(xp.argmax(z, axis=1) == labels, a.dtype), weights),)


def _threshold_accuracy(xp, z, a, targets, labels, weights=None):
    return (_mean(xp, xp.astype((a > 0.5) == (targets > 0.5), a.dtype), weights),)


# ------------------------------------------------------- training totals
# A score's *training totals*: a 1-D array of sums over a batch's rows, which add up over
# an epoch's batches (so no pass over the data beyond the training steps), and become the
# score on the host (`Loss.scores_from_totals`). Rows count with their weights (1 when
# unweighted), so rows of weight 0 (padding) add nothing. The sums that depend on the
# network are taken at every step (``totals``); those of the data alone (the rows'
# weights, the targets' sums) are the same for every epoch, as every epoch sees every
# row once, so they are taken once per run call over all the rows (``data_totals``) and
# follow the network's sums in each epoch's totals.
def _as_total(xp, like, n):
    """``n`` as a 1-element array of ``like``'s dtype, on its device."""
    return xp.full((1,), n, dtype=like.dtype, device=device(like))


def _rows_total(xp, y, w, per_row=1):
    """``[per_row * sum of w]`` (``per_row * n`` unweighted), shape ``(1,)``."""
    if w is None:
        return _as_total(xp, y, y.shape[0] * per_row)
    return xp.reshape(xp.sum(w) * per_row, (1,))


def _correct_total(xp, correct, w):
    """``[sum of w * correct]`` for ``correct: (n,)`` or ``(n, k)`` (0/1), shape ``(1,)``."""
    if w is None:  # (it runs at every step: no reshape)
        return xp.sum(xp.reshape(correct, (-1,)) if correct.ndim > 1 else correct,
                      keepdims=True)
    return xp.reshape(_weighted_sum(xp, correct, w), (1,))


def _argmax_totals(xp, z, a, y, w=None):
    return _correct_total(xp, xp.astype(xp.argmax(z, axis=1) == xp.argmax(y, axis=1),
                                        z.dtype), w)


def _argmax_data_totals(xp, y, w=None):
    return _rows_total(xp, y, w)


def _threshold_totals(xp, z, a, y, w=None):
    return _correct_total(xp, xp.astype((a > 0.5) == (y > 0.5), a.dtype), w)


def _threshold_data_totals(xp, y, w=None):  # every output is a yes/no answer
    return _rows_total(xp, y, w, per_row=y.shape[1])


def accuracy_from_totals(totals):
    """``accuracy: (n_epochs,)`` from the epochs' totals ``(n_epochs, 2)``, each
    ``[sum of w * correct, sum of w]`` (host arrays)."""
    xp = array_namespace(totals)
    correct, total = totals[:, 0], totals[:, 1]
    return {"accuracy": xp.where(total > 0, correct / xp.where(total > 0, total, 1.0), 0.0)}


def r2_totals(xp, z, a, y, w=None):
    """Per output ``k``: ``sum w (a - y)**2``, shape ``(k,)``."""
    diff = y - a  # (diff * diff: what ``diff ** 2`` computes, without a scalar operand)
    if w is None:  # the same sums without the weights (it runs at every step)
        return xp.sum(diff * diff, axis=0)
    return _weighted_sum(xp, diff * diff, w, axis=0)


def r2_data_totals(xp, y, w=None):
    """Per output ``k``: ``sum w y``, ``sum w y**2``, then ``sum w``: shape ``(2 k + 1,)``."""
    if w is None:
        return xp.concat([xp.sum(y, axis=0), xp.sum(y * y, axis=0), _rows_total(xp, y, w)])
    return xp.concat([_weighted_sum(xp, y, w, axis=0), _weighted_sum(xp, y * y, w, axis=0),
                      _rows_total(xp, y, w)])


def r2_from_totals(totals):
    """``r2`` and ``mse: (n_epochs,)`` (as `r2_and_mse`) from the epochs' totals
    ``(n_epochs, 3 k + 1)``: `r2_totals` then `r2_data_totals` (host arrays)."""
    xp = array_namespace(totals)
    k = (totals.shape[1] - 1) // 3
    res, sum_y, sum_yy = totals[:, :k], totals[:, k:2 * k], totals[:, 2 * k:3 * k]
    total = totals[:, -1:]
    some = total > 0
    total = xp.where(some, total, 1.0)
    tot = xp.clip(sum_yy - sum_y * sum_y / total, 0.0, None)
    per_output = xp.where(tot > 0, 1.0 - res / xp.where(tot > 0, tot, 1.0),
                          xp.astype(res == 0, res.dtype))
    r2 = xp.where(some[:, 0], xp.mean(per_output, axis=1), 0.0)
    mse = xp.where(some[:, 0], xp.sum(res, axis=1) / (total[:, 0] * k), 0.0)
    return {"r2": r2, "mse": mse}


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
    return 0.5 * (diff * diff), output.backward(xp, diff * scale, z, a)


class MseInplace:
    """mse in place, on the in-place operations ``ops`` of the backend's library
    (`backends.InplaceOps`): `Loss.value_and_delta` of `_mse_terms_and_delta` (``scale =
    1/size``) and its training totals (`r2_totals`: ``(y - a)**2`` is ``diff * diff`` bit
    for bit), into the executor's buffers ``buf``."""

    counts_classes = False

    @staticmethod
    def value_and_delta(ops, buf, z, a, y, output_backward):
        """``(loss, delta, totals)``; ``output_backward(d)``: the output activation's
        chain rule (in place where it has an in-place form)."""
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
    """Cross-entropy fused with the softmax, in place (`backends.InplaceOps`):
    `Loss.value_and_delta` of `_ce_terms_and_delta` (``scale = 1/n``), into the executor's
    buffers ``buf``. Its training totals are counts of correct classes
    (`_argmax_totals`), which the executor may count once per epoch from each step's
    predicted classes (``counts_classes``)."""

    counts_classes = True

    @staticmethod
    def value_and_delta(ops, buf, z, a, y, output_backward):
        """``(loss, delta, None)``: the totals are the pure ones (or counted)."""
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


# ---------------------------------------------------------------- Loss
class Loss:
    """A loss and everything specific to it.

    Parameters
    ----------
    name : str
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
    prepare_targets : callable
        ``(loss, backend, y, n_samples, n_outputs, dtype, name, x_name) -> (targets, labels)``:
        checks the user's ``y`` and returns targets ``(n, n_outputs)`` in ``dtype``
        and integer labels ``(n,)`` (None unless the loss has labels). Default
        `real_targets`.
    score : callable ``(xp, z, a, targets, labels, weights=None) -> tuple of 0-d arrays``
        One value per entry of ``score_names``, weighted over rows when
        ``weights: (n,)`` is given (only then is it passed). Default `r2_and_mse`.
    score_names : tuple of str
        The names `MLP.evaluate` and `fit`'s validation logs give the scores.
    totals, data_totals, scores_from_totals : callable, optional
        The training scores `fit` logs from each epoch's own batches:
        ``totals(xp, z, a, y, w=None) -> (t,)`` sums over a batch's rows (weighted by
        ``w: (n,)``, 1 each when None) that add up over the epoch's batches (taken at
        every step: only what depends on the network); ``data_totals(xp, y, w=None) ->
        (d,)`` sums over all the training rows that do not (the same in every epoch,
        taken once per run; default: none); and ``scores_from_totals(totals) ->
        {name: (n_epochs,)}`` from the epochs' totals ``(n_epochs, t + d)`` (host
        arrays: each epoch's totals then the data's), one per entry of
        ``score_names``. Default with the default ``score``: `r2_totals`,
        `r2_data_totals` and `r2_from_totals`; otherwise none (no training scores
        are logged).
    predict_classes : callable ``(xp, outputs) -> classes`` or None
        How outputs become classes; None for a loss that is not a classifier.
    min_outputs : int
        The fewest output units the loss can learn with.
    few_outputs_hint : str
        Appended to the error for too few outputs (what to do instead).
    needs_output : bool
        Whether the loss reads ``a`` (cross-entropy works from ``z`` alone, so
        training skips the output softmax).
    sample_targets : callable ``(rng, n, n_outputs) -> NumPy targets`` or None
        Random valid targets, for tests and examples (the gradient tests use it).
    """

    def __init__(self, name: str, *, terms: Callable[..., Any] | None = None,
                 terms_and_delta: Callable[..., tuple[Any, Any]] | None = None,
                 elementwise: bool = True, value: Callable[..., Any] | None = None,
                 value_and_delta: Callable[..., tuple[Any, Any]] | None = None,
                 default_output: str,
                 allowed_outputs: tuple[str, ...] | None = None,
                 prepare_targets: Callable[..., tuple[Any, Any]] = real_targets,
                 score: Callable[..., tuple] = r2_and_mse,
                 score_names: tuple[str, ...] = ("r2", "mse"),
                 totals: Callable[..., Any] | None = None,
                 data_totals: Callable[..., Any] | None = None,
                 scores_from_totals: Callable[..., dict] | None = None,
                 predict_classes: Callable[[Any, Any], Any] | None = None,
                 min_outputs: int = 1, few_outputs_hint: str = "", needs_output: bool = True,
                 sample_targets: Callable[..., Any] | None = None):
        by_terms = terms is not None and terms_and_delta is not None
        by_value = value is not None and value_and_delta is not None
        if by_terms == by_value or not all(callable(f) for f in (
                terms, terms_and_delta, value, value_and_delta) if f is not None):
            raise TypeError(f"Loss {name!r} needs the functions terms and terms_and_delta "
                            "(or, for an unweighted-only loss, value and value_and_delta), "
                            "one pair, not both")
        self.name = name
        self._terms, self._terms_and_delta = terms, terms_and_delta
        self.elementwise = elementwise
        self._value, self._value_and_delta = value, value_and_delta
        self.default_output = default_output
        self._allowed_outputs = allowed_outputs
        self._prepare_targets = prepare_targets
        self._score = score
        self.score_names = tuple(score_names)
        if totals is None and score is r2_and_mse:
            totals, data_totals, scores_from_totals = r2_totals, r2_data_totals, r2_from_totals
        self._totals, self._scores_from_totals = totals, scores_from_totals
        self._data_totals = data_totals
        self._predict_classes = predict_classes
        self.min_outputs = min_outputs
        self.few_outputs_hint = few_outputs_hint
        self.needs_output = needs_output
        self.sample_targets = sample_targets

    # ------------------------------------------------------- value, delta
    @property
    def takes_weights(self) -> bool:
        """Whether the loss takes sample weights (it is built from its terms)."""
        return self._terms is not None

    def check_takes_weights(self, name: str = "sample_weight") -> None:
        """Refuse weights for a loss built from ``value`` and ``value_and_delta`` only."""
        if not self.takes_weights:
            raise ValueError(f"loss {self.name!r} cannot take {name}: it was built from value "
                             "and value_and_delta, which give only the unweighted mean; build "
                             "it from terms and terms_and_delta (see mlp.losses) to weight rows")

    def _terms_per_row(self, z) -> int:
        return z.shape[1] if self.elementwise else 1

    def value(self, xp, z, a, y, weights=None):
        """The mean loss (0-d array); weighted over rows by ``weights: (n,)`` if given.

        ``z``, ``a``: ``(n, n_outputs)``; ``y``: prepared targets. No gradient.
        """
        if weights is not None:
            self.check_takes_weights()
            norm = _weight_total(xp, weights) * self._terms_per_row(z)
            return _weighted_sum(xp, self._terms(xp, z, a, y), weights) / norm
        if self._value is not None:
            return self._value(xp, z, a, y)
        terms = self._terms(xp, z, a, y)
        return xp.sum(terms) / _count(terms)

    def value_and_delta(self, xp, z, a, y, output: Activation, weights=None):
        """The mean loss and ``delta = dLoss/dz: (n, n_outputs)``, weighted if ``weights``.

        Rows of weight 0 get a delta of exactly 0; weights summing to 0 give 0
        for both.
        """
        if weights is None:
            if self._value_and_delta is not None:
                return self._value_and_delta(xp, z, a, y, output)
            size = z.shape[0] * self._terms_per_row(z)
            terms, delta = self._terms_and_delta(xp, z, a, y, output, 1.0 / size)
            return xp.sum(terms) / size, delta
        self.check_takes_weights()
        norm = _weight_total(xp, weights) * self._terms_per_row(z)
        column = weights[:, None]
        terms, delta = self._terms_and_delta(xp, z, a, y, output, column * (1.0 / norm))
        return (_weighted_sum(xp, terms, weights) / norm,
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
        return self._predict_classes is not None

    def check_outputs(self, output_activation: str, n_outputs: int) -> None:
        """Refuse an output activation or an output width the loss cannot learn with."""
        if output_activation not in self.allowed_outputs:
            raise ValueError(f"loss {self.name!r} cannot be used with output_activation "
                             f"{output_activation!r}; allowed: {', '.join(self.allowed_outputs)}")
        if n_outputs < self.min_outputs:
            raise ValueError(f"loss {self.name!r} needs at least {self.min_outputs} output units, "
                             f"but layer_sizes ends in {n_outputs}.{self.few_outputs_hint}")

    def prepare_targets(self, backend, y, n_samples, n_outputs, dtype, name="y", x_name="x"):
        """Checked targets ``(n, n_outputs)`` in ``dtype`` and labels ``(n,)`` or None, on
        ``backend``. The loss's own ``prepare_targets`` may return host (NumPy) arrays:
        data from the host is checked there (no device work) and moved here, once."""
        targets, labels = self._prepare_targets(self, backend, y, n_samples, n_outputs, dtype,
                                                name, x_name)
        return (backend.asarray(targets, dtype),
                None if labels is None else backend.asarray(labels))

    def score(self, xp, z, a, targets, labels, weights=None) -> tuple:
        """The scores named by ``score_names``, as 0-d arrays (weighted if ``weights``)."""
        if weights is None:
            return tuple(self._score(xp, z, a, targets, labels))
        return tuple(self._score(xp, z, a, targets, labels, weights))

    def train_totals(self, xp, z, a, y, w=None):
        """A batch's training totals ``(t,)`` (see ``totals``; ``(0,)`` for a loss
        without training scores), summable over the epoch's batches."""
        if self._totals is None:
            return xp.zeros((0,), dtype=z.dtype, device=device(z))
        return self._totals(xp, z, a, y, w)

    def data_totals(self, xp, y, w=None):
        """The training totals of the data alone ``(d,)`` over rows ``y: (n, k)`` with
        weights ``w: (n,)`` or None (see ``data_totals``; ``(0,)`` for none)."""
        if self._totals is None or self._data_totals is None:
            return xp.zeros((0,), dtype=y.dtype, device=device(y))
        return self._data_totals(xp, y, w)

    def scores_from_totals(self, totals) -> dict:
        """The training scores ``{name: (n_epochs,)}`` (float64) from the epochs' totals
        ``totals: (n_epochs, t + d)`` (host arrays; see ``scores_from_totals``)."""
        if self._totals is None:
            return {}
        xp = array_namespace(totals)
        return self._scores_from_totals(xp.astype(totals, xp.float64))

    @property
    def training_score_names(self) -> tuple[str, ...]:
        """The names `scores_from_totals` gives (what `fit` logs besides ``loss``)."""
        return () if self._totals is None else self.score_names

    def predict_classes(self, xp, outputs):
        """Classes from the network's outputs (classifiers only)."""
        return self._predict_classes(xp, outputs)

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"


LOSSES: dict[str, Loss] = {}


def register_loss(loss: Loss, *, overwrite: bool = False) -> Loss:
    """Make ``loss`` available as ``MLP(loss=loss.name)``; returns it."""
    if not isinstance(loss, Loss):
        raise TypeError(f"register_loss needs a Loss, got {type(loss).__name__}")
    if loss.name in LOSSES and not overwrite:
        raise ValueError(f"a loss named {loss.name!r} is already registered "
                         "(pass overwrite=True to replace it)")
    LOSSES[loss.name] = loss
    return loss


register_loss(Loss("mse", terms=_mse_terms, terms_and_delta=_mse_terms_and_delta,
                   default_output="identity", sample_targets=_normal_targets))
register_loss(Loss("cross_entropy", terms=_ce_terms, terms_and_delta=_ce_terms_and_delta,
                   elementwise=False, default_output="softmax", allowed_outputs=("softmax",),
                   prepare_targets=_class_targets, score=_argmax_accuracy,
                   score_names=("accuracy",), totals=_argmax_totals,
                   data_totals=_argmax_data_totals, scores_from_totals=accuracy_from_totals,
                   predict_classes=_argmax_classes, min_outputs=2,
                   few_outputs_hint=(" With one unit the softmax is always 1, the loss always 0 "
                                     "and nothing is learned. For one yes/no output use "
                                     "loss='binary_cross_entropy'; for k classes use k "
                                     "output units."),
                   needs_output=False, sample_targets=_label_targets))
register_loss(Loss("binary_cross_entropy", terms=_bce_terms,
                   terms_and_delta=_bce_terms_and_delta, default_output="sigmoid",
                   allowed_outputs=("sigmoid",), prepare_targets=_binary_targets,
                   score=_threshold_accuracy, score_names=("accuracy",),
                   totals=_threshold_totals, data_totals=_threshold_data_totals,
                   scores_from_totals=accuracy_from_totals,
                   predict_classes=_threshold_classes, sample_targets=_binary_sample))
register_loss(Loss("poisson", terms=_poisson_terms, terms_and_delta=_poisson_terms_and_delta,
                   default_output="exp", allowed_outputs=("exp",),
                   prepare_targets=_count_targets, sample_targets=_count_sample))


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
    """The registered loss called ``name``; a ValueError lists the known ones."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {name!r}")
    return LOSSES[name]
