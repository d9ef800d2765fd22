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

Adding a loss
-------------
Build a `Loss` and `register_loss` it; `mlp.MLP(loss=name)` then accepts it
and the gradient tests check it on every backend::

    from mlp import losses
    losses.register_loss(losses.Loss(
        "mae_like", value=..., value_and_delta=..., default_output="identity",
        prepare_targets=losses.real_targets, sample_targets=...))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .activations import Activation, hidden_activations
from .validation import cast_checked, check_finite, to_backend_array


def _count(y) -> int:
    n = 1
    for s in y.shape:
        n *= s
    return n


# ------------------------------------------------------------- targets
def _checked_targets(backend, y, n_samples, dtype, name, x_name, *, floats_only=False):
    """``y`` on the backend, 1-D or 2-D, with ``n_samples`` rows and no NaN/inf."""
    arr = to_backend_array(backend, y, name, dtype, floats_only=floats_only)
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
        arr = backend.xp.reshape(arr, (n_samples, 1))
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} columns but the model's output layer has "
                         f"{n_outputs} units")
    return cast_checked(backend, arr, dtype, name), None


def _binary_targets(loss, backend, y, n_samples, n_outputs, dtype, name="y", x_name="x"):
    arr, _ = real_targets(loss, backend, y, n_samples, n_outputs, dtype, name, x_name)
    xp = backend.xp
    if not bool(xp.all((arr == 0.0) | (arr == 1.0))):
        raise ValueError(f"{loss.name} needs targets in {{0, 1}}; {name} has other values")
    return arr, None


def _class_targets(loss, backend, y, n_samples, n_classes, dtype, name="y", x_name="x"):
    """One-hot ``(n, n_classes)`` targets and integer labels ``(n,)``, from either."""
    xp = backend.xp
    arr = _checked_targets(backend, y, n_samples, dtype, name, x_name, floats_only=True)
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
    return xp.astype(arr[:, None] == classes[None, :], dtype), arr


# -------------------------------------------------------------- scores
def r2_and_mse(xp, z, a, targets, labels):
    """``(r2, mse)``: the mean over outputs of the coefficient of determination (an
    output whose targets are constant scores 1 if predicted exactly, else 0) and
    the mean of ``(a - y)**2``."""
    res = xp.sum((targets - a) ** 2, axis=0)
    tot = xp.sum((targets - xp.mean(targets, axis=0)) ** 2, axis=0)
    safe = xp.where(tot > 0, tot, 1.0)
    per_output = xp.where(tot > 0, 1.0 - res / safe, xp.astype(res == 0, a.dtype))
    return xp.mean(per_output), xp.mean((targets - a) ** 2)


def _argmax_accuracy(xp, z, a, targets, labels):
    return (xp.mean(xp.astype(xp.argmax(z, axis=1) == labels, a.dtype)),)


def _threshold_accuracy(xp, z, a, targets, labels):
    return (xp.mean(xp.astype((a > 0.5) == (targets > 0.5), a.dtype)),)


def _argmax_classes(xp, probs):
    return xp.argmax(probs, axis=1)


def _threshold_classes(xp, probs):
    default_int = xp.__array_namespace_info__().default_dtypes()["integral"]
    return xp.astype(probs > 0.5, default_int)


# ------------------------------------------------------------- the math
def _mse_value(xp, z, a, y):
    diff = a - y
    return 0.5 * xp.sum(diff * diff) / _count(y)


def _mse_value_and_delta(xp, z, a, y, output: Activation):
    diff = a - y
    loss = 0.5 * xp.sum(diff * diff) / _count(y)
    delta = output.backward(xp, diff * (1.0 / _count(y)), z, a)
    return loss, delta


def _log_softmax_terms(xp, z):
    shift = xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(z - shift)
    total = xp.sum(e, axis=-1, keepdims=True)
    log_z = xp.log(total) + shift  # log-sum-exp, (n, 1)
    return log_z, e / total


def _ce_value(xp, z, a, y):
    log_z, _ = _log_softmax_terms(xp, z)
    return xp.sum(log_z[:, 0] - xp.sum(y * z, axis=-1)) / y.shape[0]


def _ce_value_and_delta(xp, z, a, y, output: Activation):
    log_z, probs = _log_softmax_terms(xp, z)
    n = y.shape[0]
    loss = xp.sum(log_z[:, 0] - xp.sum(y * z, axis=-1)) / n
    return loss, (probs - y) * (1.0 / n)


def _bce_value(xp, z, a, y):
    # softplus(z) - y*z = max(z, 0) - y*z + log1p(exp(-|z|))
    per = xp.maximum(z, 0.0) - y * z + xp.log1p(xp.exp(-xp.abs(z)))
    return xp.sum(per) / _count(y)


def _bce_value_and_delta(xp, z, a, y, output: Activation):
    return _bce_value(xp, z, a, y), (a - y) * (1.0 / _count(y))


def _normal_targets(rng, n, n_outputs):
    return rng.normal(size=(n, n_outputs))


def _label_targets(rng, n, n_outputs):
    return rng.integers(0, n_outputs, size=n)


def _binary_sample(rng, n, n_outputs):
    return rng.integers(0, 2, size=(n, n_outputs)) * 1.0  # float64 0/1


# ---------------------------------------------------------------- Loss
class Loss:
    """A loss and everything specific to it.

    Parameters
    ----------
    name : str
    value : callable ``(xp, z, a, y) -> 0-d array``
        The mean loss of output pre-activations ``z`` and activations ``a``
        ``(n, n_outputs)`` against prepared targets ``y`` (no gradient).
    value_and_delta : callable ``(xp, z, a, y, output_activation) -> (loss, delta)``
        The mean loss and ``dLoss/dz`` ``(n, n_outputs)``.
    default_output : str
        The output activation used when the user names none.
    allowed_outputs : tuple of str or None
        Output activations the loss works with; None: every hidden activation.
    prepare_targets : callable
        ``(loss, backend, y, n_samples, n_outputs, dtype, name, x_name) -> (targets, labels)``:
        checks the user's ``y`` and returns targets ``(n, n_outputs)`` in ``dtype``
        and integer labels ``(n,)`` (None unless the loss has labels). Default
        `real_targets`.
    score : callable ``(xp, z, a, targets, labels) -> tuple of 0-d arrays``
        One value per entry of ``score_names``. Default `r2_and_mse`.
    score_names : tuple of str
        The names `MLP.evaluate` and `fit`'s validation logs give the scores.
    predict_classes : callable ``(xp, outputs) -> classes`` or None
        How outputs become classes; None for a loss that is not a classifier.
    min_outputs : int
        The fewest output units the loss can learn with.
    few_outputs_hint : str
        Appended to the error for too few outputs (what to do instead).
    needs_output : bool
        Whether ``value_and_delta`` reads ``a`` (cross-entropy works from ``z``
        alone, so training skips the output softmax).
    sample_targets : callable ``(rng, n, n_outputs) -> NumPy targets`` or None
        Random valid targets, for tests and examples (the gradient tests use it).
    """

    def __init__(self, name: str, *, value: Callable[..., Any],
                 value_and_delta: Callable[..., tuple[Any, Any]], default_output: str,
                 allowed_outputs: tuple[str, ...] | None = None,
                 prepare_targets: Callable[..., tuple[Any, Any]] = real_targets,
                 score: Callable[..., tuple] = r2_and_mse,
                 score_names: tuple[str, ...] = ("r2", "mse"),
                 predict_classes: Callable[[Any, Any], Any] | None = None,
                 min_outputs: int = 1, few_outputs_hint: str = "", needs_output: bool = True,
                 sample_targets: Callable[..., Any] | None = None):
        self.name = name
        self.value = value
        self.value_and_delta = value_and_delta
        self.default_output = default_output
        self._allowed_outputs = allowed_outputs
        self._prepare_targets = prepare_targets
        self._score = score
        self.score_names = tuple(score_names)
        self._predict_classes = predict_classes
        self.min_outputs = min_outputs
        self.few_outputs_hint = few_outputs_hint
        self.needs_output = needs_output
        self.sample_targets = sample_targets

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
        """Checked targets ``(n, n_outputs)`` in ``dtype`` and labels ``(n,)`` or None."""
        return self._prepare_targets(self, backend, y, n_samples, n_outputs, dtype, name,
                                     x_name)

    def score(self, xp, z, a, targets, labels) -> tuple:
        """The scores named by ``score_names``, as 0-d arrays."""
        return tuple(self._score(xp, z, a, targets, labels))

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


register_loss(Loss("mse", value=_mse_value, value_and_delta=_mse_value_and_delta,
                   default_output="identity", sample_targets=_normal_targets))
register_loss(Loss("cross_entropy", value=_ce_value, value_and_delta=_ce_value_and_delta,
                   default_output="softmax", allowed_outputs=("softmax",),
                   prepare_targets=_class_targets, score=_argmax_accuracy,
                   score_names=("accuracy",), predict_classes=_argmax_classes, min_outputs=2,
                   few_outputs_hint=(" With one unit the softmax is always 1, the loss always 0 "
                                     "and nothing is learned. For one yes/no output use "
                                     "loss='binary_cross_entropy'; for k classes use k "
                                     "output units."),
                   needs_output=False, sample_targets=_label_targets))
register_loss(Loss("binary_cross_entropy", value=_bce_value,
                   value_and_delta=_bce_value_and_delta, default_output="sigmoid",
                   allowed_outputs=("sigmoid",), prepare_targets=_binary_targets,
                   score=_threshold_accuracy, score_names=("accuracy",),
                   predict_classes=_threshold_classes, sample_targets=_binary_sample))


def get_loss(name: str) -> Loss:
    """The registered loss called ``name``; a ValueError lists the known ones."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {name!r}")
    return LOSSES[name]
