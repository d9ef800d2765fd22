"""Activation functions and their hand-derived backward rules.

Each activation is a pair of pure functions over the array-API namespace ``xp``:

- ``forward(xp, z) -> a``, elementwise, any shape;
- ``backward(xp, delta, z, a) -> delta * f'(z)``, the chain rule through the
  activation, given the pre-activation ``z`` and the output ``a = f(z)``
  (whichever makes the derivative cheapest).

``softmax`` is only an output activation: its Jacobian is never formed, since
`mlp.losses.cross_entropy` fuses it with the loss.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

LEAKY_RELU_SLOPE = 0.01


class Activation(NamedTuple):
    name: str
    forward: Callable[[Any, Any], Any]
    backward: Callable[[Any, Any, Any, Any], Any] | None


def _relu(xp, z):
    return xp.maximum(z, 0.0)


def _relu_backward(xp, delta, z, a):
    # A 0/1 mask multiply: the values of ``where(z > 0, delta, 0)`` (up to the sign of
    # zero), several times faster than ``where`` on NumPy (and than ``sign(a)``, which
    # array-api-compat wraps with a NaN fix-up).
    return delta * xp.astype(z > 0, delta.dtype)


def _leaky_relu(xp, z):
    return xp.where(z > 0, z, LEAKY_RELU_SLOPE * z)


def _leaky_relu_backward(xp, delta, z, a):
    return xp.where(z > 0, delta, LEAKY_RELU_SLOPE * delta)


def _tanh(xp, z):
    return xp.tanh(z)


def _tanh_backward(xp, delta, z, a):
    return delta * (1.0 - a * a)


def _sigmoid(xp, z):
    # 1/(1+exp(-z)) overflows exp for z << 0; this form is stable on both sides.
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sigmoid_backward(xp, delta, z, a):
    return delta * (a * (1.0 - a))


def _identity(xp, z):
    return z


def _identity_backward(xp, delta, z, a):
    return delta


def _softmax(xp, z):
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", _relu, _relu_backward),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, _leaky_relu_backward),
    "tanh": Activation("tanh", _tanh, _tanh_backward),
    "sigmoid": Activation("sigmoid", _sigmoid, _sigmoid_backward),
    "identity": Activation("identity", _identity, _identity_backward),
    # Output-only: backward is fused into the cross-entropy loss.
    "softmax": Activation("softmax", _softmax, None),
}

#: Activations allowed in hidden layers.
HIDDEN_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity")


def get_activation(name: str, *, hidden: bool = True) -> Activation:
    """The activation called ``name``; a ValueError lists the known ones."""
    known = HIDDEN_ACTIVATIONS if hidden else tuple(ACTIVATIONS)
    if not isinstance(name, str) or name not in known:
        what = "activation" if hidden else "output_activation"
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(known)}")
    return ACTIVATIONS[name]
