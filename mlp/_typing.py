"""Names for the types the annotations of `mlp` use.

The array API has no static array type, so an array of any backend is `Array`
(``Any``) and an array namespace is `Namespace`; the names say what a value is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias

#: An array of any backend (NumPy, CuPy, JAX, PyTorch, array-api-strict).
Array: TypeAlias = Any
#: An array API namespace (``xp``: `array_api_compat.array_namespace` of an array).
Namespace: TypeAlias = Any
#: A network's parameters: one ``(W, b)`` pair per layer, ``W: (fan_in, fan_out)``.
Params: TypeAlias = Sequence[tuple[Array, Array]]
#: Gradients or updates of the same structure as `Params`.
Grads: TypeAlias = list[tuple[Array, Array]]


class Optimizer(Protocol):
    """A gradient transformation (`mlp.optimizers`): ``init(params) -> state`` and
    ``update(grads, state, params) -> (updates, state)``; states are pytrees."""

    def init(self, params: Params) -> Any: ...

    def update(self, grads: Grads, state: Any, params: Params | None = None
               ) -> tuple[Grads, Any]: ...
