"""PyTorch: on the GPU when CUDA is available, else on the CPU.

Accepted input: NumPy arrays of any dtype torch computes with (``uint16``,
``uint32`` and ``uint64`` integers are cast to ``int32``/``int64``, which hold
every value), any strides, read-only arrays, and torch tensors. A tensor that
requires grad is detached: training data never carries an autograd graph into
the model.
"""

from __future__ import annotations

import builtins
import contextlib
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._base import (
    Array,
    Backend,
    BackendUnavailableError,
    DType,
    InplaceOps,
    fit_integers,
    host_layout,
    library_of,
    where,
)

#: The integer dtypes torch computes with (its uint16/32/64 lack most operations).
HELD_INTEGERS = ("int8", "int16", "int32", "int64", "uint8")


def _is_tensor(data: Any) -> bool:
    return library_of(data) == "torch" and hasattr(data, "device")


#: The torch floating-point types NumPy has too.
_NUMPY_FLOATS = ("torch.float16", "torch.float32", "torch.float64")


def to_host(data: Any, target: Backend, name: str) -> np.ndarray | None:
    """A CPU tensor as host NumPy (detached; bfloat16 and float8 as float32, exactly); a tensor on
    a GPU is refused unless ``target`` is torch on that kind of device; None for the rest."""
    if not _is_tensor(data):
        return None
    kind = getattr(data.device, "type", "cpu")
    if kind != "cpu" and not (isinstance(target, TorchBackend) and target.device.type == kind):
        raise TypeError(
            f"{name} is a torch tensor on {data.device}, but {where(target)}. Move it with "
            f"`{name}.cpu()`, or build the model with backend='torch'."
        )
    tensor = data.detach().cpu()
    if tensor.dtype.is_floating_point and str(tensor.dtype) not in _NUMPY_FLOATS:
        tensor = tensor.float()  # NumPy has no bfloat16, float8...; float32 holds them exactly
    host: np.ndarray = tensor.resolve_conj().resolve_neg().numpy()
    return host


class TorchInplace:
    """`backends.InplaceOps` for PyTorch on ``device``: the torch functions that
    the pure path's namespace (array-api-compat's) calls, with ``out=``."""

    def __init__(self, torch: types.ModuleType, device: Any) -> None:
        self._torch, self.device = torch, device
        self.float_dtypes, self.bool = (torch.float32, torch.float64), torch.bool
        self.add, self.subtract, self.multiply, self.divide = (torch.add, torch.sub,
                                                               torch.mul, torch.div)
        self.sqrt, self.exp, self.log, self.matmul = torch.sqrt, torch.exp, torch.log, torch.matmul
        self._zeros: dict[DType, Array] = {}

    def is_floats(self, arrays: Sequence[Array], dtype: DType) -> bool:
        tensor = self._torch.Tensor
        return all(isinstance(a, tensor) and a.dtype == dtype and a.device == self.device
                   and not a.requires_grad for a in arrays)

    def is_indices(self, rows: Array) -> bool:
        return bool(isinstance(rows, self._torch.Tensor) and rows.device == self.device
                and rows.dtype in (self._torch.int64, self._torch.int32))

    def is_contiguous(self, a: Array) -> bool:
        return bool(a.is_contiguous())

    def empty(self, shape: tuple[int, ...], dtype: DType) -> Array:
        return self._torch.empty(shape, dtype=dtype, device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: DType) -> Array:
        return self._torch.zeros(shape, dtype=dtype, device=self.device)

    def copy(self, dst: Array, src: Array) -> None:
        dst.copy_(src)

    def take_rows(self, x: Array, rows: Array, *, out: Array) -> Array:
        return self._torch.index_select(x, 0, rows, out=out)

    def sum(self, x: Array, *, axis: int | tuple[int, ...] | None,
            keepdims: builtins.bool = False, out: Array | None = None) -> Array:
        if out is None:
            return self._torch.sum(x, axis, keepdim=keepdims)
        return self._torch.sum(x, axis, keepdim=keepdims, out=out)

    def total(self, x: Array) -> Array:
        return self._torch.sum(x)

    def max(self, x: Array, *, axis: int | tuple[int, ...] | None,
            keepdims: builtins.bool = False, out: Array) -> Array:
        return self._torch.amax(x, axis, keepdim=keepdims, out=out)

    def relu(self, z: Array) -> Array:
        """``torch.maximum(z, 0.0 as a 0-d tensor of z's dtype)``, as array-api-compat's
        ``maximum`` calls it."""
        zero = self._zeros.get(z.dtype)
        if zero is None:
            zero = self._zeros[z.dtype] = self._torch.zeros((), dtype=z.dtype,
                                                            device=self.device)
        return self._torch.maximum(z, zero, out=z)

    def positive(self, z: Array, *, out: Array) -> Array:
        return self._torch.gt(z, 0, out=out)

    def argmax_rows(self, z: Array, *, out: Array) -> Array:
        return self._torch.argmax(z, dim=1, out=out)

    def stack(self, scalars: Sequence[Array | float]) -> Array:
        return self._torch.stack(scalars)

    def threads_for(self, largest_product: int) -> contextlib.AbstractContextManager[None]:
        # PyTorch's own thread pool, as the user set it
        return contextlib.nullcontext()


class TorchBackend(Backend):
    """PyTorch, on the GPU when CUDA is available, else on the CPU.

    Parameters
    ----------
    fast : bool, default True
        On the CPU, offer PyTorch's in-place operations (`inplace_ops`), so that
        `mlp` trains through its in-place executor, whose weights and losses are
        identical, bit for bit, to the pure path's; False runs the pure path as
        written. On a GPU the pure path runs either way (the in-place executor is
        proven bit-identical only on the CPU).
    """

    name = "torch"

    def __init__(self, torch: types.ModuleType, xp: types.ModuleType, fast: bool = True
                 ) -> None:
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False, got {fast!r}")
        self._torch = torch
        self._unsigned = (torch.uint16, torch.uint32, torch.uint64)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(xp, device)
        self.fast = fast

    def inplace_ops(self) -> InplaceOps | None:
        """`TorchInplace` on the CPU; None on a GPU or with ``fast=False``."""
        if not self.fast or self.device.type != "cpu":
            return None
        return TorchInplace(self._torch, self.device)

    def is_native(self, data: Any) -> bool:
        """A tensor on this device, not requiring grad, of a dtype torch computes with.

        Other tensors go through `to_host` and `asarray` (detached, cast)."""
        return bool(isinstance(data, self._torch.Tensor) and data.device == self.device
                    and not data.requires_grad and data.dtype not in self._unsigned)

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> Array:
        host = fit_integers(host_layout(np.asarray(host)), HELD_INTEGERS)
        if not host.flags.writeable:  # e.g. a JAX array's host view; torch wants to own it
            host = host.copy()
        return self._torch.as_tensor(host, dtype=dtype, device=self.device)

    def asarray(self, data: Any, dtype: DType | None = None) -> Array:
        if isinstance(data, self._torch.Tensor):
            data = data.detach()  # never a graph into the model
            if data.dtype in self._unsigned:
                data = data.cpu()  # cast on the host by `_from_host`
            elif data.device != self.device:
                data = data.to(self.device)
        return super().asarray(data, dtype)

    def to_numpy(self, array: Array) -> np.ndarray:
        host: np.ndarray = array.detach().cpu().numpy().copy()
        return host

    def check_plain(self, value: Any, what: str) -> None:
        """A tensor that requires grad is refused: it would pull the weights into an
        autograd graph (memory growing every step)."""
        if isinstance(value, self._torch.Tensor) and value.requires_grad:
            raise TypeError(
                f"{what} returned a torch tensor that requires grad; mlp computes its own "
                "gradients, and an autograd graph must not reach the weights: return "
                "float(value) or value.detach()")

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize()


#: The same advice as the README's backend table (and the reason the noxfile pins a CPU wheel).
INSTALL_ADVICE = ("pip install torch --index-url https://download.pytorch.org/whl/cpu on a "
                  "CPU-only machine (a plain `pip install torch` there downloads a ~5 GB CUDA "
                  "build), pip install torch where CUDA is available")


def create(fast: bool = True) -> Backend:
    """The torch backend (``fast``: see `TorchBackend`)."""
    try:
        import torch
        from array_api_compat import torch as xp_torch
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the 'torch' backend needs PyTorch: {INSTALL_ADVICE}"
        ) from exc
    return TorchBackend(torch, xp_torch, fast)
