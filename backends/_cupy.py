"""CuPy on an NVIDIA GPU.

Accepted input: NumPy arrays of any dtype, strides and writability (copied to
the GPU), and CuPy arrays. Other backends refuse CuPy arrays with a message
that says how to move them to the host.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np

from ._base import Array, Backend, BackendUnavailableError, DType, library_of, where


def to_host(data: Any, target: Backend, name: str) -> np.ndarray | None:
    """CuPy arrays live on the GPU: refused, with how to move them; None for the rest."""
    if library_of(data) != "cupy":
        return None
    raise TypeError(
        f"{name} is a CuPy array (on the GPU), but {where(target)}. Move it to the host first "
        f"with `{name}.get()` or `cupy.asnumpy({name})`, or build the model with "
        "backend='cupy'."
    )


class CupyBackend(Backend):
    name = "cupy"

    def __init__(self, cupy: types.ModuleType, xp: types.ModuleType) -> None:
        self._cupy = cupy
        super().__init__(xp, cupy.cuda.Device())

    def is_native(self, data: Any) -> bool:
        return isinstance(data, self._cupy.ndarray)

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> Array:
        return self._cupy.asarray(np.asarray(host), dtype=dtype)

    def to_numpy(self, array: Array) -> np.ndarray:
        host: np.ndarray = self._cupy.asnumpy(array)
        return host

    def synchronize(self) -> None:
        self._cupy.cuda.Device().synchronize()


def create() -> Backend:
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(
            "the 'cupy' backend needs CuPy: pip install 'mlp-array-api[cupy]' "
            "(CUDA 12; 'mlp-array-api[cupy13]' for CUDA 13)"
        ) from exc
    try:
        usable = cupy.cuda.is_available()
    except Exception:  # noqa: BLE001 - any CUDA failure means "no GPU"
        usable = False
    if not usable:
        raise BackendUnavailableError(
            "the 'cupy' backend needs an NVIDIA GPU with a working CUDA driver; "
            "CuPy is installed but cupy.cuda.is_available() is False on this machine"
        )
    from array_api_compat import cupy as xp_cupy

    return CupyBackend(cupy, xp_cupy)
