"""Metrics: the scores a loss reports, each with its direction (higher or lower is better).

A `Metric` is a name, how it is computed on a batch of outputs and targets
(weighted over rows, as scikit-learn's ``sample_weight``), whether a larger value
is better, and, where it has one, its *training-totals* form: the sums `fit`
takes at every step to log the metric from each epoch's own batches. A loss
names its metrics (``Loss(..., metrics=("r2", "mse"))``); `MLP.evaluate`, the
validation logs and the training logs report them under their names, and
`metric_mode` - what `EarlyStopping`, `ModelCheckpoint` and `ReduceLROnPlateau`
ask when ``mode="auto"`` - reads the direction from the metric itself.

- ``r2``: the mean over outputs of the coefficient of determination (an output
  whose targets are constant scores 1 if predicted exactly, else 0); higher is better.
- ``mse``: the mean of ``(a - y)**2`` over all elements; lower is better.
- ``accuracy``: the fraction of rows whose largest output is the true class
  (``accuracy``, for class labels); higher is better. ``binary_accuracy`` is the
  form for yes/no outputs (each output right at the 0.5 threshold), logged as
  ``accuracy`` too.

.. rubric:: Adding a metric

A function of the outputs and the prepared targets, weighted when given row
weights, registered with its direction; a loss then names it::

    from mlp import metrics

    def max_error(xp, z, a, targets, labels, weights=None):
        return xp.max(xp.abs(a - targets))

    metrics.register_metric(metrics.Metric("max_error", max_error, greater_is_better=False))

``metric_mode("val_max_error")`` is then ``"min"``, so a callback watching it
needs no ``mode``. Give it a `Totals` form and ``from_totals`` to log it during
training as well (see `Metric`); without one it is logged for validation data
and by `MLP.evaluate` only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from array_api_compat import array_namespace, device

from ._typing import Array, Namespace

#: ``(xp, z, a, targets, labels, weights=None) -> 0-d array``: a metric on a batch.
Compute = Callable[..., Array]
#: ``(xp, z, a, y, w=None) -> (t,)``: a batch's sums, added up over an epoch.
StepTotals = Callable[..., Array]
#: ``(xp, y, w=None) -> (d,)``: the sums of the data alone, once per run.
DataTotals = Callable[..., Array]
#: ``(totals: (n_epochs, t + d)) -> (n_epochs,)``: the metric from its form's totals.
FromTotals = Callable[[Array], Array]


# -------------------------------------------------------------- weights
def _column(weights: Array, like: Array) -> Array:
    """``weights: (n,)`` shaped to broadcast against ``like``: ``(n,)`` or ``(n, 1)``."""
    return weights if like.ndim == 1 else weights[:, None]


def weighted_sum(xp: Namespace, values: Array, weights: Array, axis: int | None = None) -> Array:
    """Compute ``sum_i w_i * values_i`` over rows.

    Rows of weight 0 give exactly 0 (even where ``values`` is inf).

    Parameters
    ----------
    xp : namespace
        The arrays' array-API namespace.
    values : array of shape (n_samples,) or (n_samples, k)
        The values.
    weights : array of shape (n_samples,)
        The rows' weights.
    axis : int or None, default None
        The axis summed over (None: all).

    Returns
    -------
    array
        The weighted sum (0-d, or ``(k,)`` with ``axis=0``).
    """
    w = _column(weights, values)
    return xp.sum(xp.where(w > 0, w * values, 0.0), axis=axis)


def weight_total(xp: Namespace, weights: Array) -> Array:
    """Compute ``sum(weights)``, or 1 when it is 0 (then every weighted sum is 0: no 0/0).

    Parameters
    ----------
    xp : namespace
        The arrays' array-API namespace.
    weights : array of shape (n_samples,)
        The rows' weights.

    Returns
    -------
    0-d array
        The total.
    """
    total = xp.sum(weights)
    return xp.where(total > 0, total, 1.0)


def weighted_mean(xp: Namespace, values: Array, weights: Array | None) -> Array:
    """Compute the mean of ``values``, weighted over rows by ``weights``.

    Each row's elements share its weight; the plain mean when ``weights`` is None.

    Parameters
    ----------
    xp : namespace
        The arrays' array-API namespace.
    values : array of shape (n_samples,) or (n_samples, k)
        The values.
    weights : array of shape (n_samples,) or None
        The rows' weights.

    Returns
    -------
    0-d array
        The mean.
    """
    if weights is None:
        return xp.mean(values)
    per_row = 1 if values.ndim == 1 else values.shape[1]
    return weighted_sum(xp, values, weights) / (weight_total(xp, weights) * per_row)


# ------------------------------------------------------------- Metric
class Totals:
    """A training-totals form: sums over rows that add up over an epoch's batches.

    `fit` logs a metric from each epoch's own batches, with no pass over the data
    beyond the training steps: ``step(xp, z, a, y, w=None) -> (t,)`` sums over a
    batch's rows what depends on the network (taken at every step; rows count with
    their weights ``w: (n,)``, 1 each when None, so rows of weight 0 add nothing),
    and ``data(xp, y, w=None) -> (d,)`` sums what depends on the data alone (the same
    in every epoch, as every epoch sees every row once: taken once per run over all
    the rows; None for nothing). Each epoch's totals are its steps' sums then the
    data's, ``(t + d,)``. Metrics computed from the same sums share one form (``r2``
    and ``mse``), so the sums are taken once.

    Parameters
    ----------
    step : callable
        ``step(xp, z, a, y, w=None) -> (t,)``: a batch's sums.
    data : callable or None, default None
        ``data(xp, y, w=None) -> (d,)``: the data's sums; None for nothing.

    Raises
    ------
    TypeError
        ``step`` is not callable, or ``data`` is neither callable nor None.
    """

    def __init__(self, step: StepTotals, data: DataTotals | None = None) -> None:
        if not callable(step) or not (data is None or callable(data)):
            raise TypeError("Totals needs a callable step (xp, z, a, y, w=None) and a "
                            "callable data (xp, y, w=None) or None")
        self.step = step
        self.data = data

    def data_totals(self, xp: Namespace, y: Array, w: Array | None = None) -> Array:
        """Compute the data's sums.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        y : array of shape (n_samples, n_outputs)
            The prepared targets.
        w : array of shape (n_samples,) or None, default None
            The rows' weights (None: 1 each).

        Returns
        -------
        array of shape (d,)
            The sums (``(0,)`` for a form without ``data``).
        """
        if self.data is None:
            return xp.zeros((0,), dtype=y.dtype, device=device(y))
        return self.data(xp, y, w)

    def __repr__(self) -> str:
        return f"Totals({getattr(self.step, '__name__', self.step)!r})"


class Metric:
    """A score of a model's outputs against its targets, and its direction.

    Parameters
    ----------
    name : str
        What `MLP.evaluate` and the logs call it (``val_`` + name for validation data).
    compute : callable ``(xp, z, a, targets, labels, weights=None) -> 0-d array``
        The metric on output pre-activations ``z`` and activations ``a``
        ``(n, n_outputs)`` against the loss's prepared ``targets`` ``(n, n_outputs)``
        and ``labels`` ``(n,)`` (None unless the loss has class labels); weighted
        over rows by ``weights: (n,)`` when given (only then is it passed).
    greater_is_better : bool
        Whether a larger value is better (``"max"`` for `metric_mode`) or a smaller one.
    totals : Totals or None, default None
        The training-totals form the metric is computed from during training; None:
        the metric is not logged from the training batches.
    from_totals : callable ``(totals) -> (n_epochs,)`` or None, default None
        The metric of each epoch from its form's totals ``(n_epochs, t + d)`` (float64
        host arrays); given exactly when ``totals`` is.
    """

    def __init__(self, name: str, compute: Compute, *, greater_is_better: bool,
                 totals: Totals | None = None, from_totals: FromTotals | None = None) -> None:
        if not isinstance(name, str) or not name or name.startswith("val_") or name == "loss":
            raise ValueError(f"a metric's name must be a non-empty str, not 'loss' and not "
                             f"starting with 'val_' (the logs' prefix), got {name!r}")
        if not callable(compute):
            raise TypeError(f"metric {name!r}: compute must be a callable "
                            "(xp, z, a, targets, labels, weights=None)")
        if not isinstance(greater_is_better, bool):
            raise TypeError(f"metric {name!r}: greater_is_better must be True or False, "
                            f"got {greater_is_better!r}")
        if (totals is None) != (from_totals is None) or not (
                totals is None or isinstance(totals, Totals)) or not (
                from_totals is None or callable(from_totals)):
            raise TypeError(f"metric {name!r} needs both totals (a Totals) and from_totals "
                            "(a callable), or neither")
        self.name = name
        self.compute = compute
        self.greater_is_better = greater_is_better
        self.totals = totals
        self.from_totals = from_totals

    @property
    def mode(self) -> Literal["min", "max"]:
        """``"max"`` if a larger value is better, else ``"min"`` (`metric_mode`'s answer)."""
        return "max" if self.greater_is_better else "min"

    def __call__(self, xp: Namespace, z: Array, a: Array, targets: Array, labels: Array | None,
                 weights: Array | None = None) -> Array:
        """The metric of one batch (0-d array), weighted over rows if ``weights``."""
        if weights is None:
            return self.compute(xp, z, a, targets, labels)
        return self.compute(xp, z, a, targets, labels, weights)

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, mode={self.mode!r})"


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric, *, overwrite: bool = False) -> Metric:
    """Make ``metric`` known by its name.

    A loss may then name it, and `metric_mode` knows its direction.

    Parameters
    ----------
    metric : Metric
        The metric.
    overwrite : bool, default False
        Replace a metric registered under the same name.

    Returns
    -------
    Metric
        ``metric`` itself.

    Raises
    ------
    ValueError
        A metric of that name is registered (without ``overwrite``).
    """
    if not isinstance(metric, Metric):
        raise TypeError(f"register_metric needs a Metric, got {type(metric).__name__}")
    if metric.name in METRICS and not overwrite:
        raise ValueError(f"a metric named {metric.name!r} is already registered "
                         "(pass overwrite=True to replace it)")
    METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    """Give the registered metric called ``name``.

    Parameters
    ----------
    name : str
        A registered metric's name.

    Returns
    -------
    Metric
        The metric.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).
    """
    if not isinstance(name, str) or name not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, METRICS))}, got {name!r}")
    return METRICS[name]


def metric_mode(name: str) -> Literal["min", "max"]:
    """Give the direction of the logged metric ``name``: which way is better.

    ``loss`` is minimized, and every registered metric (`register_metric`) has its
    own direction; a ``val_`` name is that of its metric.

    Parameters
    ----------
    name : str
        A name in the epoch logs (``"loss"``, ``"val_accuracy"``, ...).

    Returns
    -------
    {"min", "max"}
        ``"max"`` if a larger value is better, ``"min"`` if a smaller one is.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).

    Examples
    --------
    >>> import mlp
    >>> mlp.metric_mode("val_accuracy"), mlp.metric_mode("loss")
    ('max', 'min')
    """
    base = name[4:] if isinstance(name, str) and name.startswith("val_") else name
    if base == "loss":
        return "min"
    if not isinstance(base, str) or base not in METRICS:
        known = ", ".join(f"{m}, val_{m}" for m in ("loss", *METRICS))
        raise ValueError(f"unknown metric {name!r}; known metrics: {known} (or pass "
                         f"mode='min' or mode='max' to watch a metric of your own)")
    return METRICS[base].mode


# ------------------------------------------------------ r2 and mse
# Each computation takes optional row weights ``(n,)``: scikit-learn's weighted
# definitions (``r2_score``, ``mean_squared_error``, ``accuracy_score`` with
# ``sample_weight``).
def _squared_errors(xp: Namespace, a: Array, targets: Array,
                    weights: Array | None) -> tuple[Array, Array]:
    """``((targets - a)**2, per-output sums of it)``, weighted over rows if ``weights``."""
    sq = (targets - a) ** 2
    if weights is None:
        return sq, xp.sum(sq, axis=0)
    return sq, weighted_sum(xp, sq, weights, axis=0)


def _r2(xp: Namespace, z: Array, a: Array, targets: Array, labels: Array | None,
        weights: Array | None = None) -> Array:
    """The mean over outputs of the coefficient of determination."""
    _, res = _squared_errors(xp, a, targets, weights)
    if weights is None:
        tot = xp.sum((targets - xp.mean(targets, axis=0)) ** 2, axis=0)
    else:
        mean = weighted_sum(xp, targets, weights, axis=0) / weight_total(xp, weights)
        tot = weighted_sum(xp, (targets - mean) ** 2, weights, axis=0)
    safe = xp.where(tot > 0, tot, 1.0)
    per_output = xp.where(tot > 0, 1.0 - res / safe, xp.astype(res == 0, a.dtype))
    return xp.mean(per_output)


def _mse(xp: Namespace, z: Array, a: Array, targets: Array, labels: Array | None,
         weights: Array | None = None) -> Array:
    """The mean of ``(a - y)**2`` over all elements (rows weighted by ``weights``)."""
    sq, res = _squared_errors(xp, a, targets, weights)
    if weights is None:
        return xp.mean(sq)
    return xp.sum(res) / (weight_total(xp, weights) * sq.shape[1])


# ------------------------------------------------------- accuracy
def _argmax_accuracy(xp: Namespace, z: Array, a: Array, targets: Array, labels: Array | None,
                     weights: Array | None = None) -> Array:
    return weighted_mean(xp, xp.astype(xp.argmax(z, axis=1) == labels, a.dtype), weights)


def _threshold_accuracy(xp: Namespace, z: Array, a: Array, targets: Array, labels: Array | None,
                        weights: Array | None = None) -> Array:
    return weighted_mean(xp, xp.astype((a > 0.5) == (targets > 0.5), a.dtype), weights)


# ------------------------------------------------------- training totals
def _as_total(xp: Namespace, like: Array, n: int) -> Array:
    """``n`` as a 1-element array of ``like``'s dtype, on its device."""
    return xp.full((1,), n, dtype=like.dtype, device=device(like))


def _rows_total(xp: Namespace, y: Array, w: Array | None, per_row: int = 1) -> Array:
    """``[per_row * sum of w]`` (``per_row * n`` unweighted), shape ``(1,)``."""
    if w is None:
        return _as_total(xp, y, y.shape[0] * per_row)
    return xp.reshape(xp.sum(w) * per_row, (1,))


def _correct_total(xp: Namespace, correct: Array, w: Array | None) -> Array:
    """``[sum of w * correct]`` for ``correct: (n,)`` or ``(n, k)`` (0/1), shape ``(1,)``."""
    if w is None:  # (it runs at every step: no reshape)
        return xp.sum(xp.reshape(correct, (-1,)) if correct.ndim > 1 else correct,
                      keepdims=True)
    return xp.reshape(weighted_sum(xp, correct, w), (1,))


def _argmax_totals(xp: Namespace, z: Array, a: Array, y: Array, w: Array | None = None) -> Array:
    return _correct_total(xp, xp.astype(xp.argmax(z, axis=1) == xp.argmax(y, axis=1),
                                        z.dtype), w)


def _argmax_data_totals(xp: Namespace, y: Array, w: Array | None = None) -> Array:
    return _rows_total(xp, y, w)


def _threshold_totals(xp: Namespace, z: Array, a: Array, y: Array, w: Array | None = None) -> Array:
    return _correct_total(xp, xp.astype((a > 0.5) == (y > 0.5), a.dtype), w)


def _threshold_data_totals(xp: Namespace, y: Array, w: Array | None = None) -> Array:
    return _rows_total(xp, y, w, per_row=y.shape[1])  # every output is a yes/no answer


def accuracy_from_totals(totals: Array) -> Array:
    """Compute each epoch's ``accuracy`` from its totals.

    Parameters
    ----------
    totals : array of shape (n_epochs, 2)
        Each epoch's ``[sum of w * correct, sum of w]`` (host arrays).

    Returns
    -------
    array of shape (n_epochs,)
        The accuracies.
    """
    xp = array_namespace(totals)
    correct, total = totals[:, 0], totals[:, 1]
    return xp.where(total > 0, correct / xp.where(total > 0, total, 1.0), 0.0)


def r2_totals(xp: Namespace, z: Array, a: Array, y: Array, w: Array | None = None) -> Array:
    """Compute, per output, the weighted sum of squared errors ``sum w (a - y)**2``.

    Parameters
    ----------
    xp : namespace
        The arrays' array-API namespace.
    z : array of shape (n_samples, n_outputs)
        The output pre-activations.
    a : array of shape (n_samples, n_outputs)
        The output activations.
    y : array of shape (n_samples, n_outputs)
        The prepared targets.
    w : array of shape (n_samples,) or None, default None
        The rows' weights (None: 1 each).

    Returns
    -------
    array of shape (n_outputs,)
        The sums.
    """
    diff = y - a  # (diff * diff: what ``diff ** 2`` computes, without a scalar operand)
    if w is None:  # the same sums without the weights (it runs at every step)
        return xp.sum(diff * diff, axis=0)
    return weighted_sum(xp, diff * diff, w, axis=0)


def r2_data_totals(xp: Namespace, y: Array, w: Array | None = None) -> Array:
    """Compute, per output, ``sum w y`` and ``sum w y**2``, then ``sum w``.

    Parameters
    ----------
    xp : namespace
        The arrays' array-API namespace.
    y : array of shape (n_samples, n_outputs)
        The prepared targets.
    w : array of shape (n_samples,) or None, default None
        The rows' weights (None: 1 each).

    Returns
    -------
    array of shape (2 * n_outputs + 1,)
        The sums.
    """
    if w is None:
        return xp.concat([xp.sum(y, axis=0), xp.sum(y * y, axis=0), _rows_total(xp, y, w)])
    return xp.concat([weighted_sum(xp, y, w, axis=0), weighted_sum(xp, y * y, w, axis=0),
                      _rows_total(xp, y, w)])


def _squared_error_parts(totals: Array) -> tuple[Namespace, Array, Array, Array, Array, int]:
    """``(xp, res, sum_y, sum_yy, total, k)`` of `r2_totals` then `r2_data_totals`
    ``(n_epochs, 3 k + 1)``; ``total: (n_epochs, 1)``."""
    xp = array_namespace(totals)
    k = (totals.shape[1] - 1) // 3
    return (xp, totals[:, :k], totals[:, k:2 * k], totals[:, 2 * k:3 * k],
            totals[:, -1:], k)


def r2_from_totals(totals: Array) -> Array:
    """Compute each epoch's ``r2`` (as the ``r2`` metric) from its totals.

    Parameters
    ----------
    totals : array of shape (n_epochs, 3 * k + 1)
        `r2_totals` then `r2_data_totals` (host arrays).

    Returns
    -------
    array of shape (n_epochs,)
        The scores.
    """
    xp, res, sum_y, sum_yy, total, _ = _squared_error_parts(totals)
    some = total > 0
    total = xp.where(some, total, 1.0)
    tot = xp.clip(sum_yy - sum_y * sum_y / total, 0.0, None)
    per_output = xp.where(tot > 0, 1.0 - res / xp.where(tot > 0, tot, 1.0),
                          xp.astype(res == 0, res.dtype))
    return xp.where(some[:, 0], xp.mean(per_output, axis=1), 0.0)


def mse_from_totals(totals: Array) -> Array:
    """Compute each epoch's ``mse`` (as the ``mse`` metric) from its totals.

    Parameters
    ----------
    totals : array of shape (n_epochs, 3 * k + 1)
        The totals of `r2_from_totals`.

    Returns
    -------
    array of shape (n_epochs,)
        The mean squared errors.
    """
    xp, res, _, _, total, k = _squared_error_parts(totals)
    some = total > 0
    total = xp.where(some, total, 1.0)
    return xp.where(some[:, 0], xp.sum(res, axis=1) / (total[:, 0] * k), 0.0)


# ------------------------------------------------------------- built-in
#: The sums ``r2`` and ``mse`` are both logged from during training.
SQUARED_ERROR_TOTALS = Totals(r2_totals, r2_data_totals)

mse = register_metric(Metric("mse", _mse, greater_is_better=False,
                             totals=SQUARED_ERROR_TOTALS, from_totals=mse_from_totals))
accuracy = register_metric(Metric("accuracy", _argmax_accuracy, greater_is_better=True,
                                  totals=Totals(_argmax_totals, _argmax_data_totals),
                                  from_totals=accuracy_from_totals))
r2 = register_metric(Metric("r2", _r2, greater_is_better=True, totals=SQUARED_ERROR_TOTALS,
                            from_totals=r2_from_totals))
#: Accuracy of yes/no outputs (each right when on the right side of 0.5), logged as
#: ``accuracy``: the registered ``accuracy``'s form for `binary_cross_entropy`.
binary_accuracy = Metric("accuracy", _threshold_accuracy, greater_is_better=True,
                         totals=Totals(_threshold_totals, _threshold_data_totals),
                         from_totals=accuracy_from_totals)

#: The metrics mlp defines, as registered at import.
BUILT_IN: dict[str, Metric] = dict(METRICS)


# ------------------------------------------------ a loss's training totals
class TrainingTotals:
    """The training totals of a loss's metrics, laid out as `fit` takes them.

    The distinct `Totals` forms of ``metrics`` (in the order the metrics name them;
    metrics sharing a form share its sums) give each step's sums ``step(...)`` and
    the data's ``data(...)``, and `scores` turns the epochs' totals back into each
    metric. With one form the layout is that form's own; with several, the steps'
    sums are the forms' one after the other, then the data's, followed by each
    form's two widths (so `scores` can find each form's columns).

    Parameters
    ----------
    metrics : tuple of Metric
        The loss's metrics; those with a training-totals form are logged.
    """

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        #: ``(name, form, from_totals)`` of each metric logged from the training batches.
        self.logged = [(m.name, m.totals, m.from_totals) for m in metrics
                       if m.totals is not None and m.from_totals is not None]
        forms: list[Totals] = []
        for _, form, _ in self.logged:
            if not any(form is f for f in forms):
                forms.append(form)
        self.forms = tuple(forms)

    @property
    def names(self) -> tuple[str, ...]:
        """The metrics logged from the training batches."""
        return tuple(name for name, _, _ in self.logged)

    def step(self, xp: Namespace, z: Array, a: Array, y: Array, w: Array | None = None) -> Array:
        """Compute a batch's sums, summable over the epoch's batches.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        z : array of shape (n_samples, n_outputs)
            The output pre-activations.
        a : array of shape (n_samples, n_outputs)
            The output activations.
        y : array of shape (n_samples, n_outputs)
            The prepared targets.
        w : array of shape (n_samples,) or None, default None
            The rows' weights (None: 1 each).

        Returns
        -------
        array of shape (t,)
            The sums (``(0,)``: none).
        """
        if not self.forms:
            return xp.zeros((0,), dtype=z.dtype, device=device(z))
        if len(self.forms) == 1:
            return self.forms[0].step(xp, z, a, y, w)
        return xp.concat([f.step(xp, z, a, y, w) for f in self.forms])

    def data(self, xp: Namespace, y: Array, w: Array | None = None) -> Array:
        """Compute the sums of the data alone.

        Parameters
        ----------
        xp : namespace
            The arrays' array-API namespace.
        y : array of shape (n_samples, k)
            The prepared targets.
        w : array of shape (n_samples,) or None, default None
            The rows' weights (None: 1 each).

        Returns
        -------
        array of shape (d,)
            The sums.
        """
        if not self.forms:
            return xp.zeros((0,), dtype=y.dtype, device=device(y))
        if len(self.forms) == 1:
            return self.forms[0].data_totals(xp, y, w)
        parts = [f.data_totals(xp, y, w) for f in self.forms]
        one = (y[:1, ...], None if w is None else w[:1])  # a step's width does not depend on n
        widths = []
        for form, part in zip(self.forms, parts, strict=True):
            widths += [form.step(xp, one[0], one[0], one[0], one[1]).shape[0], part.shape[0]]
        return xp.concat([*parts, xp.asarray(widths, dtype=y.dtype, device=device(y))])

    def _columns(self, totals: Array) -> list[Array]:
        """Each form's totals ``(n_epochs, t_f + d_f)`` from the epochs' totals."""
        xp = array_namespace(totals)
        if len(self.forms) == 1:
            return [totals]
        layout = [int(v) for v in totals[0, totals.shape[1] - 2 * len(self.forms):]]
        steps, datas = layout[0::2], layout[1::2]
        columns, at, data_at = [], 0, sum(steps)
        for t, d in zip(steps, datas, strict=True):
            columns.append(xp.concat([totals[:, at:at + t], totals[:, data_at:data_at + d]],
                                     axis=1))
            at, data_at = at + t, data_at + d
        return columns

    def scores(self, totals: Array) -> dict[str, Array]:
        """Compute each logged metric's training score from the epochs' totals.

        Parameters
        ----------
        totals : array of shape (n_epochs, t + d)
            Host arrays: each epoch's step sums, then the data's.

        Returns
        -------
        dict of str to array of shape (n_epochs,)
            Each metric's scores (float64), by name.
        """
        if not self.forms:
            return {}
        xp = array_namespace(totals)
        totals = xp.astype(totals, xp.float64)
        if totals.shape[0] == 0:
            return {name: xp.zeros((0,), dtype=xp.float64) for name in self.names}
        by_form = dict(zip(map(id, self.forms), self._columns(totals), strict=True))
        return {name: finish(by_form[id(form)]) for name, form, finish in self.logged}
