"""array-api-strict: a minimal, strict implementation of the standard.

Nothing here helps performance; it exists to prove that `mlp` uses only what
the array API standard defines.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from ._base import Array, Backend, BackendUnavailableError, DType, fit_integers, library_of

#: Integer dtypes kept as they are; uint64 labels become int64 (values checked).
HELD_INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")


def to_host(data: Any, target: Backend, name: str) -> np.ndarray | None:
    """An array-api-strict array as host NumPy (through DLPack); None for anything else."""
    if library_of(data) != "array_api_strict":
        return None
    return np.from_dlpack(data)


class StrictBackend(Backend):
    name = "array_api_strict"

    def __init__(self, xp: types.ModuleType) -> None:
        super().__init__(xp, xp.Device("CPU_DEVICE"))
        self._array_type = type(xp.asarray(0.0))

    def is_native(self, data: Any) -> bool:
        return isinstance(data, self._array_type)

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> Array:
        # uint64 cannot meet int64 (argmax's type) in the standard's promotion rules
        host = fit_integers(np.asarray(host), HELD_INTEGERS)
        if dtype is not None:
            host = np.asarray(host, dtype=self.dtype_name(dtype))
        return self.xp.asarray(np.array(host, copy=True, order="C"))

    def to_numpy(self, array: Array) -> np.ndarray:
        return np.array(np.from_dlpack(array), copy=True)


def create() -> Backend:
    try:
        import array_api_strict
    except ImportError as exc:
        raise BackendUnavailableError(
            "the 'array_api_strict' backend needs array-api-strict: "
            "pip install 'mlp-array-api[strict]' (or pip install array-api-strict)"
        ) from exc
    return StrictBackend(array_api_strict)
