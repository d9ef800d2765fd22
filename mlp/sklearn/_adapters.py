"""Small adapters from scikit-learn's MLP objective to mlp's core.

scikit-learn's MLP minimises, per batch ``B`` with row weights ``w`` (ones by
default) and ``S = sum(w[B])``,

    sum_{i in B} w_i * l_i / S  +  0.5 * alpha * sum ||W||^2 / S

where ``l_i`` is row ``i``'s loss *summed over the outputs* (half squared
error, half Poisson deviance, or the log-loss). mlp's core losses are means
over every element (``mse``, ``binary_cross_entropy``) or over rows
(``cross_entropy``), unweighted. The adapters here bridge the two without a
second copy of the core's math:

- `sklearn_loss` wraps a core loss: targets travel as ``(y, w)``; the weights
  are folded into the output delta (row ``i`` times ``w_i``) and into the
  loss's own sums, then both are rescaled to the weighted mean above;
- `POISSON` is the half Poisson deviance with a log link (``exp`` output),
  which the core does not have yet;
- the L2 term and the learning rate are applied by the solver (`_solver`).

When the core's losses take per-row weights and a Poisson loss, these
adapters shrink to a lookup.
"""

from __future__ import annotations

from functools import cache

from ..activations import Activation, get_activation
from ..core import NetworkSpec
from ..losses import Loss, get_loss


class _RowWeightedSums:
    """``xp`` whose full reductions ``sum(x)`` weight row ``i`` of ``x`` by ``w[i]``.

    A core loss computes its value as ``sum(per-element terms) / count``; seen
    through this namespace the same code gives ``sum_i w_i * terms_i / count``.
    Reductions along an axis (log-sum-exp, ...) are untouched.
    """

    def __init__(self, xp, weights):
        self._xp, self._weights = xp, weights

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def sum(self, x, /, *, axis=None, **kwargs):
        if axis is not None:
            return self._xp.sum(x, axis=axis, **kwargs)
        w = self._xp.reshape(self._weights, (-1,) + (1,) * (x.ndim - 1))
        return self._xp.sum(x * w, **kwargs)


def _poisson_value(xp, z, a, y):
    # half Poisson deviance with log link: exp(z) - y*z + y*log(y) - y (y*log(y) = 0 at y = 0)
    ylogy = y * xp.log(xp.where(y > 0, y, 1.0))
    return xp.sum(a - y * z + ylogy - y) / (y.shape[0] * y.shape[1])


def _poisson_value_and_delta(xp, z, a, y, output):
    return _poisson_value(xp, z, a, y), (a - y) * (1.0 / (y.shape[0] * y.shape[1]))


#: The exp output of a log link; its backward is ``delta * exp(z)``.
EXP = Activation("exp", lambda xp, z: xp.exp(z), lambda xp, delta, z, a: delta * a)

#: Half Poisson deviance, mean over all elements, fused with the exp output.
POISSON = Loss("poisson", value=_poisson_value, value_and_delta=_poisson_value_and_delta,
               default_output="exp", allowed_outputs=("exp",))


@cache
def sklearn_loss(name: str) -> Loss:
    """The core loss ``name`` (or ``"poisson"``) as scikit-learn's weighted objective.

    Targets are a pair ``(y, w)``: ``y: (n, n_outputs)`` as the core loss
    expects it, ``w: (n,)`` row weights or None. Value and delta are those of
    ``sum_i w_i * l_i / sum(w)`` with ``l_i`` summed over the outputs.
    Cached, so equal names give the same object (compiled code is shared).
    """
    base = POISSON if name == "poisson" else get_loss(name)
    per_row_mean = name == "cross_entropy"  # the core already sums over the classes

    def value_and_delta(xp, z, a, y, output):
        targets, w = y
        n = targets.shape[0]
        outputs = 1 if per_row_mean else targets.shape[1]
        if w is None:
            loss, delta = base.value_and_delta(xp, z, a, targets, output)
            return (loss, delta) if outputs == 1 else (loss * outputs, delta * outputs)
        loss, delta = base.value_and_delta(_RowWeightedSums(xp, w), z, a, targets, output)
        scale = (n * outputs) / xp.sum(w)
        return loss * scale, delta * (xp.reshape(w, (-1, 1)) * scale)

    def value(xp, z, a, y):
        targets, w = y
        outputs = 1 if per_row_mean else targets.shape[1]
        if w is None:
            return base.value(xp, z, a, targets) * outputs
        loss = base.value(_RowWeightedSums(xp, w), z, a, targets)
        return loss * (targets.shape[0] * outputs) / xp.sum(w)

    return Loss(f"sklearn_{name}", value=value, value_and_delta=value_and_delta,
                default_output=base.default_output, allowed_outputs=base.allowed_outputs,
                needs_output=base.needs_output)


#: scikit-learn's activation names -> mlp's.
ACTIVATION_NAMES = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh",
                    "relu": "relu", "softmax": "softmax", "exp": "exp"}

#: scikit-learn's output activation -> the core loss it is fused with.
OUTPUT_LOSSES = {"softmax": "cross_entropy", "logistic": "binary_cross_entropy",
                 "identity": "mse", "exp": "poisson"}


def _activation(name: str, hidden: bool) -> Activation:
    return EXP if name == "exp" else get_activation(ACTIVATION_NAMES[name], hidden=hidden)


@cache
def network_spec(xp, activation: str, out_activation: str) -> NetworkSpec:
    """The core's `NetworkSpec` for scikit-learn's names (cached: one object per network)."""
    return NetworkSpec(xp, _activation(activation, True), _activation(out_activation, False),
                       sklearn_loss(OUTPUT_LOSSES[out_activation]))
