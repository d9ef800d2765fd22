"""Losses, each fused with its natural output activation.

A loss gives, from one forward pass, the mean loss and ``delta``, the gradient
of that mean loss with respect to the output layer's pre-activation ``z``
(shape ``(n, n_outputs)``). The 1/n of the mean is folded into ``delta``, so
the backward pass never divides again.

- ``mse``: mean over *all* elements of ``0.5 * (a - y)**2`` (the seed notebook's
  loss). Its gradient divides by ``n * n_outputs``; the notebook divides by
  ``n`` only, which is right only for one output.
- ``cross_entropy``: softmax output fused with the negative log-likelihood,
  mean over samples, computed with a stable log-sum-exp. Targets are one-hot
  rows (the model turns integer labels into one-hot once per call).
- ``binary_cross_entropy``: sigmoid output fused with the Bernoulli negative
  log-likelihood, mean over all elements, computed as
  ``softplus(z) - y*z`` without overflow. Targets in {0, 1}, shape ``(n, n_outputs)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .activations import HIDDEN_ACTIVATIONS, Activation


class Loss(NamedTuple):
    name: str
    #: Output activation used when the user names none.
    default_output: str
    #: Output activations the loss can be used with.
    allowed_outputs: tuple[str, ...]
    #: ``value_and_delta(xp, z, a, y, output_activation) -> (mean loss, dL/dz)``
    value_and_delta: Callable[..., tuple[Any, Any]]
    #: ``value(xp, z, a, y) -> mean loss`` (no gradient).
    value: Callable[..., Any]
    #: Whether targets are class labels.
    classification: bool
    #: Whether ``value_and_delta`` reads the output activation ``a`` (cross-entropy
    #: works from ``z`` alone, so training skips the output softmax).
    needs_output: bool = True


def _count(y) -> int:
    n = 1
    for s in y.shape:
        n *= s
    return n


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


LOSSES: dict[str, Loss] = {
    "mse": Loss("mse", "identity", HIDDEN_ACTIVATIONS, _mse_value_and_delta, _mse_value, False),
    "cross_entropy": Loss(
        "cross_entropy", "softmax", ("softmax",), _ce_value_and_delta, _ce_value, True,
        needs_output=False,
    ),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy", "sigmoid", ("sigmoid",), _bce_value_and_delta, _bce_value, True
    ),
}


def get_loss(name: str) -> Loss:
    """The loss called ``name``; a ValueError lists the known ones."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}")
    return LOSSES[name]
