"""NumPy on the CPU.

Accepted input: anything NumPy turns into an array of numbers, including CPU
arrays of other libraries (their backend modules convert them, see `to_host`).
"""

from __future__ import annotations

import builtins
import contextlib
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from array_api_compat import numpy as xp_numpy

from ._base import Array, Backend, DType, InplaceOps
from ._threads import threads_for


def _fast_namespace() -> types.ModuleType:
    """array-api-compat's NumPy namespace with thinner ``sum``, ``astype`` and ``argmax``.

    Training on small arrays (the seed notebook's 100x3 network, 1000 epochs) is
    dominated by per-call overhead; ``numpy.sum``'s Python dispatch layer and the
    compat ``astype`` wrapper cost several times the work itself. For real
    floating-point input without ``dtype``, ``sum`` calls ``numpy.add.reduce``
    (what ``numpy.sum`` ends up calling: bit-identical results), and ``argmax``
    the array's own method; everything else falls through to the standard
    functions.
    """
    ns = types.ModuleType("backends._numpy.xp", xp_numpy.__doc__)
    module_attrs = {"__name__", "__doc__", "__file__", "__spec__", "__loader__", "__package__",
                    "__path__", "__builtins__", "__cached__"}
    ns.__dict__.update({k: v for k, v in vars(xp_numpy).items() if k not in module_attrs})
    # (called with the keyword arguments the standard's functions take, as they are)
    add_reduce: Callable[..., Any] = np.add.reduce
    std_sum, std_astype, std_argmax = xp_numpy.sum, xp_numpy.astype, xp_numpy.argmax

    def sum(x: Any, /, *, axis: int | tuple[int, ...] | None = None,  # noqa: A001 - the API's
            dtype: DType | None = None, keepdims: bool = False) -> Any:
        if dtype is None and isinstance(x, np.ndarray) and x.dtype.kind == "f":
            return add_reduce(x, axis=axis, keepdims=keepdims)
        return std_sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    def astype(x: Any, dtype: DType, /, *, copy: bool = True, device: Any = None) -> Any:
        if device is None and isinstance(x, np.ndarray):
            return x.astype(dtype, copy=copy)
        return std_astype(x, dtype, copy=copy, device=device)

    def argmax(x: Any, /, *, axis: int | None = None, keepdims: bool = False) -> Any:
        if isinstance(x, np.ndarray):
            own_argmax: Callable[..., Any] = x.argmax
            return own_argmax(axis=axis, keepdims=keepdims)
        return std_argmax(x, axis=axis, keepdims=keepdims)

    vars(ns).update(sum=sum, astype=astype, argmax=argmax)
    return ns


class NumpyInplace:
    """`backends.InplaceOps` for NumPy: the ufuncs that the pure path's
    namespace (`_fast_namespace`) calls, with ``out=``."""

    float_dtypes = (np.dtype(np.float32), np.dtype(np.float64))
    bool = np.dtype(bool)
    add, subtract, multiply, divide = np.add, np.subtract, np.multiply, np.divide
    sqrt, exp, log, matmul = np.sqrt, np.exp, np.log, np.matmul
    empty: Callable[..., Array] = staticmethod(np.empty)
    zeros: Callable[..., Array] = staticmethod(np.zeros)
    copy: Callable[..., None] = staticmethod(np.copyto)

    @staticmethod
    def is_floats(arrays: Sequence[Any], dtype: np.dtype[Any]) -> builtins.bool:
        return all(isinstance(a, (np.ndarray, np.generic)) and a.dtype == dtype for a in arrays)

    @staticmethod
    def is_indices(rows: Any) -> builtins.bool:
        return isinstance(rows, np.ndarray) and rows.dtype.kind == "i"

    @staticmethod
    def is_contiguous(a: Array) -> builtins.bool:
        return bool(a.flags.c_contiguous)

    @staticmethod
    def take_rows(x: Array, rows: Array, *, out: Array) -> Array:
        return x.take(rows, axis=0, out=out)

    @staticmethod
    def sum(x: Array, *, axis: int | tuple[int, ...] | None, keepdims: builtins.bool = False,
            out: Array = None) -> Array:
        return np.add.reduce(x, axis=axis, keepdims=keepdims, out=out)

    @staticmethod
    def total(x: Array) -> Array:
        return np.add.reduce(x, axis=None)

    @staticmethod
    def max(x: Array, *, axis: int | tuple[int, ...] | None, keepdims: builtins.bool = False,
            out: Array) -> Array:
        return np.maximum.reduce(x, axis=axis, keepdims=keepdims, out=out)  # what np.max calls

    @staticmethod
    def relu(z: Array) -> Array:
        return np.maximum(z, 0.0, out=z)

    @staticmethod
    def positive(z: Array, *, out: Array) -> Array:
        return np.greater(z, 0, out=out)

    @staticmethod
    def argmax_rows(z: Array, *, out: Array) -> Array:
        return z.argmax(axis=1, out=out)

    @staticmethod
    def stack(scalars: Sequence[Any]) -> Array:
        return np.array(scalars)  # np.stack's per-array work is most of a tiny epoch's

    @staticmethod
    def threads_for(largest_product: int) -> contextlib.AbstractContextManager[None]:
        return threads_for(largest_product)


class NumpyBackend(Backend):
    """NumPy on the CPU.

    Parameters
    ----------
    fast : bool, default True
        Offer NumPy's in-place operations (`inplace_ops`), so that `mlp` trains
        through its in-place executor, whose weights and losses are identical,
        bit for bit, to the pure path's; False runs the pure path as written.
    """

    name = "numpy"

    def __init__(self, fast: bool = True) -> None:
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False, got {fast!r}")
        super().__init__(_fast_namespace(), "cpu")
        self.fast = fast

    def inplace_ops(self) -> InplaceOps | None:
        """`NumpyInplace`, or None with ``fast=False``."""
        return NumpyInplace() if self.fast else None

    def is_native(self, data: Any) -> bool:
        return isinstance(data, np.ndarray)

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> np.ndarray:
        return np.asarray(host, dtype=dtype)

    def to_numpy(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)


def create() -> Backend:
    return NumpyBackend()
