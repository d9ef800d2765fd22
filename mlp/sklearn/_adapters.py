"""Thin adapters from scikit-learn's MLP objective to mlp's core.

scikit-learn's MLP minimises, per batch ``B`` with row weights ``w`` (ones by
default) and ``S = sum(w[B])``,

    sum_{i in B} w_i * l_i / S  +  0.5 * alpha * sum ||W||^2 / S

where ``l_i`` is row ``i``'s loss *summed over the outputs* (half squared
error, half Poisson deviance, or the log-loss). The core's losses
(`mlp.losses`) take the same weights and give ``sum_i w_i * l_i / S`` with
``l_i`` the *mean* over the outputs for the elementwise losses (``mse``,
``binary_cross_entropy``, ``poisson``) and the row's loss for
``cross_entropy``. So the only adapter is `SumOverOutputs`: the core loss's
value and delta times ``n_outputs`` (elementwise losses only). The L2 term
(coefficient ``alpha / S``) is the core's (`._solver`), and Poisson's
constant ``y*log(y) - y``, which scikit-learn reports in ``loss_`` but which
does not depend on the network, is added on the host (`poisson_constant`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import xlogy

from .._typing import Array, Namespace
from ..activations import Activation, get_activation
from ..core import NetworkSpec
from ..engine.kernels import kernel_of
from ..losses import Loss, get_loss


class SumOverOutputs(Loss):
    """The core loss ``base`` with row losses summed over the outputs, not averaged.

    For an elementwise loss, value and ``delta`` are ``base``'s times
    ``n_outputs``; a row loss (cross-entropy) is itself. Everything else is
    ``base``'s (the core reads ``value``, ``value_and_delta`` and ``needs_output``):
    a `Loss` holding ``base``'s attributes.
    """

    def __init__(self, base: Loss) -> None:
        # base's settings, already checked by its constructor (not built again)
        self.__dict__.update(base.__dict__)
        self.base = base

    def __repr__(self) -> str:
        return f"SumOverOutputs({self.base!r})"

    @property
    def inplace(self) -> Any:
        """Its own in-place form (`SumOverOutputsInplace` over ``base``'s), or None where
        ``base`` has none: never ``base``'s own, whose values are not these."""
        kernel = kernel_of(self.base)
        return None if kernel is None else SumOverOutputsInplace(kernel, self.base.elementwise)

    def _outputs(self, z: Array) -> int:
        return int(z.shape[1]) if self.base.elementwise else 1

    def value(self, xp: Namespace, z: Array, a: Array, y: Array,
              weights: Array | None = None) -> Array:
        return self.base.value(xp, z, a, y, weights) * self._outputs(z)

    def value_and_delta(self, xp: Namespace, z: Array, a: Array, y: Array, output: Activation,
                        weights: Array | None = None) -> tuple[Array, Array]:
        loss, delta = self.base.value_and_delta(xp, z, a, y, output, weights)
        k = self._outputs(z)
        return (loss, delta) if k == 1 else (loss * k, delta * k)


class SumOverOutputsInplace:
    """`SumOverOutputs` in place: ``base``'s in-place form (`mlp.losses`), its loss and
    delta then times ``n_outputs`` (the same operations as `SumOverOutputs.value_and_delta`,
    the delta scaled in place)."""

    counts_classes = False

    def __init__(self, base: Any, elementwise: bool) -> None:
        self.base, self.elementwise = base, elementwise

    def value_and_delta(self, ops: Any, buf: Any, z: Array, a: Array, y: Array,
                        output_backward: Any) -> tuple[Any, Array, Any]:
        """``(loss, delta, totals)`` (the totals are ``base``'s, as the pure path's)."""
        loss, delta, totals = self.base.value_and_delta(ops, buf, z, a, y, output_backward)
        k = z.shape[1] if self.elementwise else 1
        if k == 1:
            return loss, delta, totals
        return loss * k, ops.multiply(delta, k, out=delta), totals


@cache
def sklearn_loss(name: str) -> SumOverOutputs:
    """The core loss ``name`` as scikit-learn's objective (cached: one object per name)."""
    return SumOverOutputs(get_loss(name))


def poisson_constant(Y: ArrayLike) -> np.ndarray:
    """Row terms ``c_i = sum_j (y_ij log y_ij - y_ij)`` (0 log 0 = 0): ``(n,)``, on the host.

    scikit-learn's Poisson ``loss_`` is the core's Poisson loss plus the
    weighted mean of ``c_i`` over the batch's rows; it does not depend on the
    network, so it is a reporting term only.
    """
    Y = np.asarray(Y, dtype=np.float64)
    rows: np.ndarray = np.sum(xlogy(Y, Y) - Y, axis=1)
    return rows


#: scikit-learn's activation names -> mlp's.
ACTIVATION_NAMES = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                    "relu": "relu", "softmax": "softmax", "exp": "exp"}

#: scikit-learn's output activation -> the core loss it is fused with.
OUTPUT_LOSSES = {"softmax": "cross_entropy", "logistic": "binary_cross_entropy",
                 "identity": "mse", "exp": "poisson"}


@cache
def network_spec(xp: Namespace, activation: str, out_activation: str) -> NetworkSpec:
    """The core's `NetworkSpec` for scikit-learn's names (cached: one object per network)."""
    return NetworkSpec(xp, get_activation(ACTIVATION_NAMES[activation], hidden=True),
                       get_activation(ACTIVATION_NAMES[out_activation], hidden=False),
                       sklearn_loss(OUTPUT_LOSSES[out_activation]))
