"""The `Backend` interface: the only place that knows a concrete array library.

Everything in `mlp` talks to an array library through one of these objects:

- ``xp``: the array-API namespace (from ``array_api_compat``) that all math goes through;
- ``asarray`` / ``to_numpy``: moving data onto and off the backend's device;
- ``jit``: compile a pure function (JAX), or return it unchanged;
- ``scan``: the loop primitive (``lax.scan`` on JAX, a Python loop elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

FLOAT_DTYPES = ("float32", "float64")


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run on this machine (not installed, or no usable GPU)."""


class Backend:
    """An array library wrapped behind the small interface `mlp` needs.

    Attributes
    ----------
    name : str
        The backend's name, as accepted by `backends.get_backend`.
    xp : module
        The array-API namespace of the library.
    device : object
        The device new arrays are created on.
    compiles : bool
        True where `jit` really compiles (JAX): then it pays to put many
        steps into one compiled call.
    """

    name: str = "abstract"
    compiles: bool = False

    def __init__(self, xp: Any, device: Any = None):
        self.xp = xp
        self.device = device

    # ----------------------------------------------------------------- dtypes
    def dtype(self, dtype: Any):
        """The backend's dtype object for ``"float32"``/``"float64"`` (or a dtype of its own)."""
        if isinstance(dtype, str):
            if dtype not in FLOAT_DTYPES:
                raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
            return getattr(self.xp, dtype)
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type)
                                           and issubclass(dtype, np.generic)):
            return self.dtype(np.dtype(dtype).name)
        return dtype

    def dtype_name(self, dtype: Any) -> str:
        """The NumPy name (``"float32"``...) of one of this backend's dtypes."""
        for name in ("float32", "float64", "float16", "int8", "int16", "int32", "int64",
                     "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128"):
            if getattr(self.xp, name, None) == dtype:
                return name
        return str(dtype)

    # ------------------------------------------------------------------ data
    def is_native(self, data: Any) -> bool:
        """Whether ``data`` is already an array of this backend."""
        raise NotImplementedError

    def _from_host(self, host: np.ndarray, dtype: Any):
        raise NotImplementedError

    def asarray(self, data: Any, dtype: Any = None):
        """``data`` (NumPy array, nested list, scalar, or this backend's array) on this backend.

        A ``dtype`` of ``None`` keeps the data's own dtype.
        """
        if self.is_native(data):
            if dtype is None:
                return data
            dt = self.dtype(dtype)
            return data if data.dtype == dt else self.xp.astype(data, dt)
        host = foreign_to_numpy(data, self)
        return self._from_host(host, None if dtype is None else self.dtype(dtype))

    def to_numpy(self, array: Any) -> np.ndarray:
        """A NumPy copy of one of this backend's arrays."""
        raise NotImplementedError

    # --------------------------------------------------------------- compile
    def jit(self, fn: Callable, static_argnums: tuple[int, ...] = ()) -> Callable:
        """Compile a pure function where the backend can; elsewhere return it unchanged."""
        return fn

    def scan(self, body: Callable, carry: Any, xs: Any = None, length: int | None = None):
        """Loop ``body(carry, x) -> (carry, y)`` over the leading axis of ``xs``.

        Returns ``(carry, ys)`` with the ``y``s stacked along a new first axis.
        ``xs`` is an array, a tuple of arrays (or Nones) with the same leading
        length, or None with ``length`` given. This is `jax.lax.scan`'s
        contract; here it is a plain Python loop.
        """
        parts = xs if isinstance(xs, tuple) else (xs,)
        if length is None:
            length = next(a.shape[0] for a in parts if a is not None)
        ys = []
        for i in range(length):
            x_i = tuple(None if a is None else a[i, ...] for a in parts)
            carry, y = body(carry, x_i if isinstance(xs, tuple) else x_i[0])
            ys.append(y)
        return carry, self.xp.stack(ys)

    def take_rows(self, array: Any, rows: Any):
        """``array``'s rows at the (in-bounds) indices ``rows``: a batch cut on the device."""
        return self.xp.take(array, rows, axis=0)

    def fast_run(self, pure_run: Callable, spec: Any, optimizer: Any, alpha: float = 0.0,
                 clip_norm: float | None = None) -> Callable | None:
        """A faster run with the contract and results of ``pure_run`` (`mlp.steps.make_run`).

        None (the default) where the backend has none for this network and
        optimizer: the pure run is used. A backend may return a run that works
        in place behind this interface, provided its weights, optimizer state
        and losses are identical to the pure run's, bit for bit.
        """
        return None

    def synchronize(self) -> None:
        """Wait until queued device work is done (for timing)."""

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r})"


def foreign_to_numpy(data: Any, target: Backend, name: str = "x") -> np.ndarray:
    """Host NumPy view of ``data`` that is not ``target``'s own array.

    Lists, scalars, NumPy arrays and CPU arrays of other libraries (through
    DLPack or ``__array__``) are converted; arrays on a GPU are refused with a
    message that says how to move them, since that copy should be the user's choice.
    ``name`` is the argument's name in those messages.
    """
    if isinstance(data, np.ndarray):
        return data
    module = type(data).__module__.split(".")[0]
    where = f"this model is on the {target.name!r} backend ({target.device})"
    if module == "cupy":
        raise TypeError(
            f"{name} is a CuPy array (on the GPU), but {where}. Move it to the host first "
            f"with `{name}.get()` or `cupy.asnumpy({name})`, or build the model with "
            "backend='cupy'."
        )
    if module == "torch":
        dev = getattr(data, "device", None)
        if dev is not None and getattr(dev, "type", "cpu") != "cpu":
            raise TypeError(
                f"{name} is a torch tensor on {dev}, but {where}. Move it with "
                f"`{name}.cpu()`, or build the model with backend='torch'."
            )
        tensor = data.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16; float32 is exact
            tensor = tensor.float()
        return tensor.numpy()
    if module in ("jax", "jaxlib"):
        platform = getattr(next(iter(data.devices()), None), "platform", "cpu")
        if platform != "cpu":
            raise TypeError(
                f"{name} is a JAX array on {platform}, but {where}. Move it with "
                f"`numpy.asarray({name})`, or build the model with backend='jax'."
            )
        return np.asarray(data)
    try:
        if module == "array_api_strict":
            return np.from_dlpack(data)
        return np.asarray(data)
    except Exception as exc:  # noqa: BLE001 - re-raised with the user's terms
        raise TypeError(
            f"{name} must be an array of numbers; cannot turn a {type(data).__name__} into one "
            f"({exc})"
        ) from exc
