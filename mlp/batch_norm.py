"""Batch normalization of a layer's pre-activation: the math, forward and backward by hand.

`mlp.MLP` (``batch_norm=True``) normalizes each hidden layer's ``a @ W`` with these
functions. Such a layer keeps its normalization in its bias: ``b`` has shape ``(4,
units)``, its rows the shift ``beta`` (the dense bias's place: a bias before the
normalization would be cancelled by the mean), the scale ``gamma``, the running mean and
the running variance (`ROWS`). So the weights stay a list of ``(W, b)`` pairs, and
everything that carries them (a training run, its interruption and resumption, the
saved file, pickling, `mlp.MLP.snapshot_state`) carries the running averages too. The
training step gives the two running rows a gradient of 0 and, after the optimizer's
update, sets them to their moving averages (`with_running`), whatever the optimizer
did with them.

For a batch ``z: (n, units)`` with row weights ``w: (n,)`` (None: all 1; rows of weight
0, such as padding, take no part), ``p_i = w_i / sum(w)``:

    mean = sum_i p_i z_i,      var = sum_i p_i (z_i - mean)**2,
    zhat = (z - mean) / sqrt(var + epsilon),      out = gamma * zhat + beta

and, from ``dout = dLoss/dout``, with ``g = dout * gamma`` and ``s = sqrt(var + epsilon)``:

    dbeta = sum_i dout_i,      dgamma = sum_i dout_i * zhat_i,
    dz_i = (g_i - p_i * sum_j g_j - p_i * zhat_i * sum_j g_j zhat_j) / s

(the derivative through the mean and the variance included: ``sum_j p_j (z_j - mean)
= 0`` removes the mean's term from the variance's). A batch of one row has variance 0:
``zhat = 0``, ``out = beta``, and ``dz = 0``, ``dgamma = 0``, ``dbeta = dout`` (defined
maths, as Keras computes it, since ``epsilon > 0``). The running averages follow
``running = momentum * running + (1 - momentum) * batch`` (Keras's names and defaults:
``momentum=0.99``, ``epsilon=1e-3``); inference normalizes with them instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._typing import Array, Namespace

#: The rows of a normalized layer's ``b``: shift, scale, running mean, running variance.
ROWS = ("beta", "gamma", "mean", "var")


class Normalized(NamedTuple):
    """What `forward` keeps for `backward`, and the batch's statistics.

    Parameters
    ----------
    zhat : array, (n, units)
        The normalized pre-activation.
    scale : array, (units,)
        ``sqrt(var + epsilon)``.
    p : array, (n, 1), or None
        The rows' shares of the weight (None: ``1 / n`` each).
    mean, var : array, (units,)
        The batch's (weighted) mean and variance.
    total : 0-d array or None, default None
        The sum of the row weights (None: unweighted).
    """

    zhat: Array
    scale: Array
    p: Array | None
    mean: Array
    var: Array
    total: Array | None = None


def forward(xp: Namespace, z: Array, gamma: Array, beta: Array, weights: Array | None,
            epsilon: float) -> tuple[Array, Normalized]:
    """Normalize ``z`` with its batch's statistics, then scale and shift.

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    z : array, (n, units)
        The pre-activation.
    gamma, beta : array, (units,)
        The learned scale and shift.
    weights : array, (n,), or None
        Non-negative row weights; None: equal. Weights that sum to 0 (a batch of
        which no row counts) give a mean and a variance of 0 (`with_running` then
        leaves the running averages as they are).
    epsilon : float
        Added to the variance.

    Returns
    -------
    out : array, (n, units)
        ``gamma * zhat + beta``.
    normalized : Normalized
        What `backward` needs, and the batch's mean and variance.
    """
    total = None
    if weights is None:
        p = None
        mean = xp.mean(z, axis=0)
        var = xp.mean((z - mean) ** 2, axis=0)
    else:
        total = xp.sum(weights)
        p = (weights / xp.where(total > 0, total, 1.0))[:, None]
        mean = xp.sum(p * z, axis=0)
        var = xp.sum(p * (z - mean) ** 2, axis=0)
    scale = xp.sqrt(var + epsilon)
    zhat = (z - mean) / scale
    return gamma * zhat + beta, Normalized(zhat, scale, p, mean, var, total)


def backward(xp: Namespace, dout: Array, gamma: Array, normalized: Normalized
             ) -> tuple[Array, Array, Array]:
    """The gradients through `forward`, the batch statistics included.

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    dout : array, (n, units)
        ``dLoss/dout``.
    gamma : array, (units,)
        The learned scale.
    normalized : Normalized
        `forward`'s.

    Returns
    -------
    dz : array, (n, units)
        ``dLoss/dz``.
    dgamma, dbeta : array, (units,)
        ``dLoss/dgamma`` and ``dLoss/dbeta``.
    """
    zhat, scale, p = normalized.zhat, normalized.scale, normalized.p
    g = dout * gamma
    if p is None:
        p = 1.0 / zhat.shape[0]
    dz = (g - p * xp.sum(g, axis=0) - p * zhat * xp.sum(g * zhat, axis=0)) / scale
    return dz, xp.sum(dout * zhat, axis=0), xp.sum(dout, axis=0)


def inference(z: Array, gamma: Array, beta: Array, mean: Array, var: Array,
              epsilon: float, xp: Namespace | None = None) -> Array:
    """Normalize ``z`` with the running averages ``mean`` and ``var``.

    Parameters
    ----------
    z : array, (n, units)
        The pre-activation.
    gamma, beta : array, (units,)
        The learned scale and shift.
    mean, var : array, (units,)
        The running averages.
    epsilon : float
        Added to the variance.
    xp : namespace, optional
        The backend's array namespace (default: ``z``'s).

    Returns
    -------
    array, (n, units)
        ``gamma * (z - mean) / sqrt(var + epsilon) + beta``.
    """
    if xp is None:
        from array_api_compat import array_namespace

        xp = array_namespace(z)
    return gamma * (z - mean) / xp.sqrt(var + epsilon) + beta


def running(average: Array, batch: Array, momentum: float) -> Array:
    """A running average moved towards the batch's statistic.

    Parameters
    ----------
    average, batch : array, (units,)
        The running average and the batch's statistic.
    momentum : float
        How much of the running average stays, in ``[0, 1]``.

    Returns
    -------
    array, (units,)
        ``momentum * average + (1 - momentum) * batch``.
    """
    return momentum * average + (1.0 - momentum) * batch


def weight_shapes(layer_sizes: Sequence[int], normalized: bool
                  ) -> list[tuple[tuple[int, int], tuple[int, ...]]]:
    """The shapes of each layer's ``(W, b)``.

    Parameters
    ----------
    layer_sizes : sequence of int
        The model's layer sizes.
    normalized : bool
        Whether the hidden layers are batch-normalized.

    Returns
    -------
    list of (tuple, tuple)
        ``W: (fan_in, fan_out)`` and ``b: (fan_out,)``, or ``(4, fan_out)`` on a
        normalized hidden layer (`ROWS`).
    """
    last = len(layer_sizes) - 2
    return [((i, o), (len(ROWS), o) if normalized and k < last else (o,))
            for k, (i, o) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:]))]


def initial_bias(units: int) -> np.ndarray:
    """A normalized layer's starting ``b`` (host float64): shift 0, scale 1, running mean
    0, running variance 1 (Keras's).

    Parameters
    ----------
    units : int
        The layer's width.

    Returns
    -------
    numpy.ndarray, (4, units)
        The rows of `ROWS`.
    """
    return np.repeat(np.array([[0.0], [1.0], [0.0], [1.0]]), units, axis=1)


def layer_forward(xp: Namespace, h: Array, b: Array, weights: Array | None, epsilon: float
                  ) -> tuple[Array, Normalized]:
    """A normalized layer's pre-activation in training: `forward` with ``b``'s scale and
    shift.

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    h : array, (n, units)
        ``a @ W``.
    b : array, (4, units)
        The layer's rows (`ROWS`).
    weights : array, (n,), or None
        Row weights (None: equal).
    epsilon : float
        Added to the variance.

    Returns
    -------
    z : array, (n, units)
        The pre-activation.
    normalized : Normalized
        What `backward` needs.
    """
    return forward(xp, h, b[1, ...], b[0, ...], weights, epsilon)


def layer_inference(xp: Namespace, h: Array, b: Array, epsilon: float) -> Array:
    """A normalized layer's pre-activation at inference: `inference` with ``b``'s rows.

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    h : array, (n, units)
        ``a @ W``.
    b : array, (4, units)
        The layer's rows (`ROWS`).
    epsilon : float
        Added to the variance.

    Returns
    -------
    array, (n, units)
        The pre-activation.
    """
    return inference(h, b[1, ...], b[0, ...], b[2, ...], b[3, ...], epsilon, xp)


def bias_gradient(xp: Namespace, dgamma: Array, dbeta: Array) -> Array:
    """A normalized layer's ``db``: ``dbeta`` and ``dgamma``, 0 for the running rows.

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    dgamma, dbeta : array, (units,)
        `backward`'s.

    Returns
    -------
    array, (4, units)
        Shaped as ``b`` (`ROWS`).
    """
    zero = xp.zeros_like(dbeta)
    return xp.stack([dbeta, dgamma, zero, zero])


def with_running(xp: Namespace, updated: Array, before: Array, normalized: Normalized,
                 momentum: float) -> Array:
    """A normalized layer's ``b`` after a step: the optimizer's scale and shift, the
    running averages moved from ``before``'s towards the batch's statistics (kept as
    they were where the batch's weights sum to 0: no row of it counts).

    Parameters
    ----------
    xp : namespace
        The backend's array namespace.
    updated : array, (4, units)
        ``b`` after the optimizer's update.
    before : array, (4, units)
        ``b`` before the step.
    normalized : Normalized
        The step's `forward` (its batch mean and variance).
    momentum : float
        How much of the running averages stays.

    Returns
    -------
    array, (4, units)
        The new ``b`` (`ROWS`).
    """
    mean = running(before[2, ...], normalized.mean, momentum)
    var = running(before[3, ...], normalized.var, momentum)
    if normalized.total is not None:
        mean = xp.where(normalized.total > 0, mean, before[2, ...])
        var = xp.where(normalized.total > 0, var, before[3, ...])
    return xp.stack([updated[0, ...], updated[1, ...], mean, var])
