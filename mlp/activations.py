"""Activation functions and their hand-derived backward rules.

Each activation is a pair of pure functions over the array-API namespace ``xp``:

- ``forward(xp, z) -> a``, elementwise, any shape;
- ``backward(xp, delta, z, a) -> delta * f'(z)``, the chain rule through the
  activation, given the pre-activation ``z`` and the output ``a = f(z)``
  (whichever makes the derivative cheapest).

``softmax`` and ``exp`` are only output activations: their derivatives are
fused into a loss (``softmax`` with ``cross_entropy``, ``exp`` - the log
link - with ``poisson``).

.. rubric:: Adding an activation

`register_activation` makes it available to `mlp.MLP` (hidden layers, and as
an output for losses such as ``mse`` that take any); the gradient tests
iterate the registry, so it is checked against finite differences on every
backend::

    import mlp
    mlp.activations.register_activation(
        "softsign", lambda xp, z: z / (1 + xp.abs(z)),
        lambda xp, delta, z, a: delta / (1 + xp.abs(z)) ** 2)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ._typing import Array
from .engine.kernels import PureOnly

if TYPE_CHECKING:
    from .backends import InplaceOps

LEAKY_RELU_SLOPE = 0.01


#: ``(xp, z) -> a``, elementwise.
Forward = Callable[[Any, Any], Any]
#: ``(xp, delta, z, a) -> delta * f'(z)``.
Backward = Callable[[Any, Any, Any, Any], Any]


class Activation(NamedTuple):
    """An activation: its forward and backward functions, initializer and in-place form.

    Parameters
    ----------
    name : str
        The name ``MLP(activation=...)`` takes.
    forward : callable
        ``forward(xp, z) -> a``, elementwise.
    backward : callable or None
        ``backward(xp, delta, z, a) -> delta * f'(z)``; None: output-only, fused
        into a loss.
    init : str, default "glorot"
        The initializer it trains best with (``he`` or ``glorot``).
    inplace : object, default None
        Its in-place form for the in-place executor (an object with
        ``forward(ops, z)`` and ``backward(ops, delta, a, mask)``, see
        `ReluInplace`); a `mlp.engine.kernels.PureOnly` for a built-in without
        one; None, an activation of your own: its pure functions run.
    """

    name: str
    forward: Forward
    backward: Backward | None
    init: str = "glorot"
    inplace: Any = None


def _relu(xp, z):
    return xp.maximum(z, 0.0)


def _relu_backward(xp, delta, z, a):
    # A 0/1 mask multiply: the values of ``where(z > 0, delta, 0)`` (up to the sign of
    # zero), several times faster than ``where`` on NumPy (and than ``sign(a)``, which
    # array-api-compat wraps with a NaN fix-up).
    return delta * xp.astype(z > 0, delta.dtype)


class ReluInplace:
    """ReLU in place, on the in-place operations ``ops`` of the backend's library.

    The same IEEE operations (`mlp.backends.InplaceOps`) as the pure ``relu``'s.
    """

    @staticmethod
    def forward(ops: InplaceOps, z: Array) -> Array:
        """Apply ``max(z, 0)`` to ``z`` in place (the pure path's ``xp.maximum(z, 0.0)``).

        Parameters
        ----------
        ops : InplaceOps
            The library's in-place operations.
        z : array of shape (n_samples, n_units)
            The pre-activations, overwritten.

        Returns
        -------
        array of shape (n_samples, n_units)
            ``z``, now the activations.
        """
        return ops.relu(z)

    @staticmethod
    def backward(ops: InplaceOps, delta: Array, a: Array, mask: Array) -> Array:
        """Multiply ``delta`` by ``z > 0`` in place, from ``a = max(z, 0)``.

        ``a`` is what `forward` left in ``z``: ``a > 0`` exactly where ``z > 0``
        (NaN neither).

        Parameters
        ----------
        ops : InplaceOps
            The library's in-place operations.
        delta : array of shape (n_samples, n_units)
            The gradient with respect to ``a``, overwritten.
        a : array of shape (n_samples, n_units)
            The activations.
        mask : array of bool, shape (n_samples, n_units)
            Scratch space.

        Returns
        -------
        array of shape (n_samples, n_units)
            ``delta``, now the gradient with respect to ``z``.
        """
        return ops.multiply(delta, ops.positive(a, out=mask), out=delta)


#: Why the other built-in activations have no in-place form.
_PURE_ELEMENTWISE = PureOnly("a few elementwise operations whose fresh arrays cost little "
                             "beside the matrix products; the pure function runs")


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


def _exp(xp, z):
    return xp.exp(z)


def _softmax(xp, z):
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    e = xp.exp(shifted)
    return e / xp.sum(e, axis=-1, keepdims=True)


ACTIVATIONS: dict[str, Activation] = {}


def register_activation(name: str, forward: Forward, backward: Backward | None = None, *,
                        init: str = "glorot", overwrite: bool = False,
                        inplace: Any = None) -> Activation:
    """Make an activation available by ``name``.

    Parameters
    ----------
    name : str
        The name ``MLP(activation=...)`` takes.
    forward : callable
        ``forward(xp, z) -> a``, elementwise, written with ``xp`` only.
    backward : callable or None, default None
        ``backward(xp, delta, z, a) -> delta * f'(z)``. None makes it
        output-only (a loss must fuse its gradient, as cross-entropy does with
        softmax).
    init : {"he", "glorot", "normal"}, default "glorot"
        The default initializer of networks using it in hidden layers.
    overwrite : bool, default False
        Replace an activation of the same name.
    inplace : object, default None
        Its in-place form (see `Activation`); None: the pure functions run on the
        in-place executor too.

    Returns
    -------
    Activation
        The registered activation.

    Raises
    ------
    TypeError
        ``name`` is not a non-empty str, or ``forward`` or ``backward`` is not
        callable.
    ValueError
        An activation of that name is registered (without ``overwrite``).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if name in ACTIVATIONS and not overwrite:
        raise ValueError(f"an activation named {name!r} is already registered "
                         "(pass overwrite=True to replace it)")
    if not callable(forward) or not (backward is None or callable(backward)):
        raise TypeError("forward must be a callable (xp, z) and backward a callable "
                        "(xp, delta, z, a) or None")
    from .initializers import check_initializer

    ACTIVATIONS[name] = Activation(name, forward, backward, check_initializer(init), inplace)
    return ACTIVATIONS[name]


register_activation("relu", _relu, _relu_backward, init="he", inplace=ReluInplace())
register_activation("leaky_relu", _leaky_relu, _leaky_relu_backward, init="he",
                    inplace=_PURE_ELEMENTWISE)
register_activation("tanh", _tanh, _tanh_backward, inplace=_PURE_ELEMENTWISE)
register_activation("sigmoid", _sigmoid, _sigmoid_backward, inplace=_PURE_ELEMENTWISE)
register_activation("identity", _identity, _identity_backward,
                    inplace=PureOnly("nothing to compute: the pure function returns z itself"))
# Output-only: their backward is fused into a loss (exp: the Poisson loss's log link;
# softmax: cross-entropy).
register_activation("exp", _exp, inplace=PureOnly("output-only: its gradient is the Poisson "
                                                  "loss's, which runs its pure form"))
register_activation("softmax", _softmax, inplace=PureOnly(
    "output-only: cross-entropy's in-place form fuses it, and training skips it"))


#: The activations mlp defines, as registered at import (``register_activation(...,
#: overwrite=True)`` may replace a registry entry; these stay what they are).
BUILT_IN: dict[str, Activation] = dict(ACTIVATIONS)


def hidden_activations() -> tuple[str, ...]:
    """List the activations allowed in hidden layers (those with a backward rule).

    Returns
    -------
    tuple of str
        Their names.
    """
    return tuple(name for name, act in ACTIVATIONS.items() if act.backward is not None)


#: Activations allowed in hidden layers when mlp was imported (see `hidden_activations`).
HIDDEN_ACTIVATIONS = hidden_activations()


def get_activation(name: str, *, hidden: bool = True) -> Activation:
    """Give the activation called ``name``.

    Parameters
    ----------
    name : str
        A registered activation's name.
    hidden : bool, default True
        For a hidden layer (only those with a backward rule); False: any, for
        the output layer.

    Returns
    -------
    Activation
        The activation.

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones).
    """
    known = hidden_activations() if hidden else tuple(ACTIVATIONS)
    if not isinstance(name, str) or name not in known:
        what = "activation" if hidden else "output_activation"
        raise ValueError(f"{what} must be one of {', '.join(map(repr, known))}, got {name!r}")
    return ACTIVATIONS[name]
