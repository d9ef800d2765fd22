"""Initial weights, drawn on the host so one seed gives one model everywhere.

Weights come from a seeded NumPy ``Generator`` in float64 and are then cast
and moved to the backend, so the same seed gives bit-identical initial
weights on NumPy, JAX, PyTorch, CuPy and array-api-strict. Biases start at zero.

- ``he``: normal with std ``sqrt(2 / fan_in)`` (default for relu and leaky_relu);
- ``glorot``: uniform on ``+-sqrt(6 / (fan_in + fan_out))`` (default for tanh,
  sigmoid, identity);
- ``normal``: standard normal, the seed notebook's ``np.random.randn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

#: ``(rng, fan_in, fan_out) -> W: (fan_in, fan_out)`` float64, drawn from ``rng``.
Initializer = Callable[[np.random.Generator, int, int], np.ndarray]


def _he(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def _normal(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return rng.standard_normal((fan_in, fan_out))


INITIALIZERS: dict[str, Initializer] = {"he": _he, "glorot": _glorot, "normal": _normal}


def default_initializer(activation: str) -> str:
    """The hidden activation's own initializer: ``"he"`` for relu-like ones, ``"glorot"``
    otherwise (see `mlp.activations.register_activation`)."""
    from .activations import ACTIVATIONS

    return ACTIVATIONS[activation].init


def check_initializer(name: str) -> str:
    """``name`` if it is a known initializer; a ValueError lists the known ones."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"init must be one of {', '.join(map(repr, INITIALIZERS))}, "
                         f"got {name!r}")
    return name


def initial_weights(layer_sizes: Sequence[int], init: str,
                    rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Host float64 ``[(W, b), ...]`` with ``W: (fan_in, fan_out)``, ``b: (fan_out,)``."""
    draw = INITIALIZERS[check_initializer(init)]
    return [
        (draw(rng, fan_in, fan_out), np.zeros(fan_out))
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:], strict=True)
    ]
