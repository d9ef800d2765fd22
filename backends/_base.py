"""The `Backend` interface: the only place that knows a concrete array library.

Everything in `mlp` talks to an array library through one of these objects:

- ``xp``: the array-API namespace (from ``array_api_compat``) that all math goes through;
- ``asarray`` / ``to_numpy``: moving data onto and off the backend's device;
- `to_host`: another library's array as host NumPy, through the converter its
  backend module registered (`register_converter`);
- ``jit``: compile a pure function (JAX), or return it unchanged;
- ``scan``: the loop primitive (``lax.scan`` on JAX, a Python loop elsewhere);
- `inplace_ops`: the library's operations with ``out=`` (`InplaceOps`), where it
  has them (NumPy, PyTorch on the CPU), or None.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeAlias

import numpy as np

FLOAT_DTYPES = ("float32", "float64")

#: An array of a backend's library (the array API has no static array type).
Array: TypeAlias = Any
#: A dtype of a backend's library (or a NumPy dtype, or a name such as ``"float32"``).
DType: TypeAlias = Any


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run on this machine (not installed, or no usable GPU)."""


class InplaceOps(Protocol):
    """The in-place operations of one array library, as its pure path computes them.

    ``add``, ``subtract``, ``multiply``, ``divide`` ``(a, b, *, out)``, ``sqrt``,
    ``exp``, ``log`` ``(a, *, out)`` and ``matmul(a, b, *, out)`` write into ``out``
    (and return it); ``a`` and ``b`` are arrays or Python floats. Each is the very
    function the library's array-API namespace calls in the pure path, so an
    operation in place gives the same bits as the pure one.
    """

    float_dtypes: tuple[Any, ...]  #: the library's float32 and float64
    # (annotations below name the builtin `builtins.bool`: `bool` here is this attribute)
    bool: Any  #: its boolean dtype

    def add(self, a: Any, b: Any, /, *, out: Any) -> Any:
        """Write ``a + b`` into ``out``.

        Parameters
        ----------
        a : array or float
            The first operand.
        b : array or float
            The second operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def subtract(self, a: Any, b: Any, /, *, out: Any) -> Any:
        """Write ``a - b`` into ``out``.

        Parameters
        ----------
        a : array or float
            The first operand.
        b : array or float
            The second operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def multiply(self, a: Any, b: Any, /, *, out: Any) -> Any:
        """Write ``a * b`` into ``out``.

        Parameters
        ----------
        a : array or float
            The first operand.
        b : array or float
            The second operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def divide(self, a: Any, b: Any, /, *, out: Any) -> Any:
        """Write ``a / b`` into ``out``.

        Parameters
        ----------
        a : array or float
            The first operand.
        b : array or float
            The second operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def sqrt(self, a: Any, /, *, out: Any) -> Any:
        """Write ``xp.sqrt(a)`` into ``out``.

        Parameters
        ----------
        a : array
            The operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def exp(self, a: Any, /, *, out: Any) -> Any:
        """Write ``xp.exp(a)`` into ``out``.

        Parameters
        ----------
        a : array
            The operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def log(self, a: Any, /, *, out: Any) -> Any:
        """Write ``xp.log(a)`` into ``out``.

        Parameters
        ----------
        a : array
            The operand.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def matmul(self, a: Any, b: Any, /, *, out: Any) -> Any:
        """Write the matrix product ``a @ b`` into ``out``.

        Parameters
        ----------
        a : array of shape (n, k)
            The left operand.
        b : array of shape (k, m)
            The right operand.
        out : array of shape (n, m)
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def is_floats(self, arrays: Any, dtype: Any) -> builtins.bool:
        """Tell whether every one of ``arrays`` is this library's array of ``dtype``.

        The arrays must be on the backend's device.

        Parameters
        ----------
        arrays : sequence of arrays
            The arrays.
        dtype : dtype
            The float dtype they must have.

        Returns
        -------
        bool
            Whether they all are.
        """

    def is_indices(self, rows: Any) -> builtins.bool:
        """Tell whether ``rows`` is an integer array of this library (row indices).

        Parameters
        ----------
        rows : object
            The candidate.

        Returns
        -------
        bool
            Whether it is.
        """

    def is_contiguous(self, a: Any) -> builtins.bool:
        """Tell whether ``a`` is laid out in row-major order (not a transposed view).

        Parameters
        ----------
        a : array
            The array.

        Returns
        -------
        bool
            Whether it is.
        """

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Make a new uninitialised array.

        Parameters
        ----------
        shape : tuple of int
            Its shape.
        dtype : dtype
            Its dtype.

        Returns
        -------
        array
            The new array.
        """

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Make a new array of zeros.

        Parameters
        ----------
        shape : tuple of int
            Its shape.
        dtype : dtype
            Its dtype.

        Returns
        -------
        array
            The new array.
        """

    def copy(self, dst: Any, src: Any) -> None:
        """Copy ``src`` into ``dst`` (``dst[...] = src``).

        Parameters
        ----------
        dst : array
            The destination.
        src : array
            The source, of ``dst``'s shape.
        """

    def take_rows(self, x: Any, rows: Any, *, out: Any) -> Any:
        """Write ``xp.take(x, rows, axis=0)`` into ``out``.

        Parameters
        ----------
        x : array of shape (n, ...)
            The rows to take from.
        rows : array of int, shape (k,)
            The row indices.
        out : array of shape (k, ...)
            Where the rows are written.

        Returns
        -------
        array
            ``out``.
        """

    def sum(self, x: Any, *, axis: int | None, keepdims: builtins.bool = False,
            out: Any = None) -> Any:
        """Compute ``xp.sum(x, axis=axis, keepdims=keepdims)``, into ``out`` if given.

        Parameters
        ----------
        x : array
            The array.
        axis : int or None
            The axis summed over (None: all).
        keepdims : bool, default False
            Keep the summed axis with length 1.
        out : array or None, default None
            Where the result is written.

        Returns
        -------
        array
            The sums (``out`` if given).
        """

    def total(self, x: Any) -> Any:
        """Compute ``xp.sum(x)``: the sum of all elements.

        Parameters
        ----------
        x : array
            The array.

        Returns
        -------
        0-d array
            The sum.
        """

    def max(self, x: Any, *, axis: int | None, keepdims: builtins.bool = False, out: Any) -> Any:
        """Write ``xp.max(x, axis=axis, keepdims=keepdims)`` into ``out``.

        Parameters
        ----------
        x : array
            The array.
        axis : int or None
            The axis reduced (None: all).
        keepdims : bool, default False
            Keep the reduced axis with length 1.
        out : array
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def relu(self, z: Any) -> Any:
        """Apply ``xp.maximum(z, 0.0)`` to ``z`` in place.

        Parameters
        ----------
        z : array
            The array, overwritten.

        Returns
        -------
        array
            ``z``.
        """

    def positive(self, z: Any, *, out: Any) -> Any:
        """Write ``z > 0`` into the boolean ``out``.

        Parameters
        ----------
        z : array
            The array.
        out : array of bool
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def argmax_rows(self, z: Any, *, out: Any) -> Any:
        """Write ``xp.argmax(z, axis=1)`` into ``out``.

        Parameters
        ----------
        z : array of shape (n, k)
            The array.
        out : array of int, shape (n,)
            Where the result is written.

        Returns
        -------
        array
            ``out``.
        """

    def stack(self, scalars: Any) -> Any:
        """Stack the 0-d arrays (or scalars) ``scalars`` as one array.

        Parameters
        ----------
        scalars : sequence of 0-d arrays or scalars
            The values.

        Returns
        -------
        array of shape (n,)
            The values, in order.
        """

    def threads_for(self, largest_product: int) -> contextlib.AbstractContextManager[None]:
        """Give the thread setting a training call runs under.

        NumPy's BLAS runs on one thread for small products
        (`mlp.backends._threads`), the library's own setting elsewhere. It
        changes no result.

        Parameters
        ----------
        largest_product : int
            The multiply-adds of the call's largest matrix product
            (``batch * fan_in * fan_out``).

        Returns
        -------
        contextlib.AbstractContextManager
            Holds the setting while the call runs.
        """


class Backend:
    """An array library wrapped behind the small interface `mlp` needs.

    Parameters
    ----------
    xp : module
        The array-API namespace of the library.
    device : object, default None
        The device new arrays are created on.

    Attributes
    ----------
    name : str
        The backend's name, as accepted by `backends.get_backend`.
    compiles : bool
        True where `jit` really compiles (JAX): then it pays to put many
        steps into one compiled call.
    pads_rows : bool
        True where `place_rows` pads the training rows with rows of weight 0
        (data parallelism): the loss must then take row weights.
    """

    name: str = "abstract"
    compiles: bool = False
    pads_rows: bool = False

    def __init__(self, xp: Any, device: Any = None) -> None:
        self.xp = xp
        self.device = device

    # ----------------------------------------------------------------- dtypes
    def dtype(self, dtype: DType) -> DType:
        """Give the backend's dtype object for a dtype's name or NumPy dtype.

        Parameters
        ----------
        dtype : str, numpy.dtype or dtype
            ``"float32"`` or ``"float64"``, a NumPy float dtype, or one of the
            backend's own dtypes (returned as it is).

        Returns
        -------
        dtype
            The backend's dtype.

        Raises
        ------
        ValueError
            A name other than ``"float32"`` and ``"float64"``.
        """
        if isinstance(dtype, str):
            if dtype not in FLOAT_DTYPES:
                raise ValueError(f"dtype must be one of {FLOAT_DTYPES}, got {dtype!r}")
            return getattr(self.xp, dtype)
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type)
                                           and issubclass(dtype, np.generic)):
            return self.dtype(np.dtype(dtype).name)
        return dtype

    def dtype_name(self, dtype: DType) -> str:
        """Give the NumPy name (``"float32"``...) of one of this backend's dtypes.

        Parameters
        ----------
        dtype : dtype
            One of the backend's dtypes.

        Returns
        -------
        str
            Its NumPy name (``str(dtype)`` for one NumPy has no name for).
        """
        for name in ("float32", "float64", "float16", "int8", "int16", "int32", "int64",
                     "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128"):
            if getattr(self.xp, name, None) == dtype:
                return name
        return str(dtype)

    # ------------------------------------------------------------------ data
    def is_native(self, data: Any) -> bool:
        """Tell whether ``data`` is already an array of this backend.

        Parameters
        ----------
        data : object
            Anything.

        Returns
        -------
        bool
            Whether it is one of the backend's arrays.
        """
        raise NotImplementedError

    def is_traced(self, data: Any) -> bool:
        """Tell whether ``data`` is a placeholder of a function being traced.

        Under ``jax.jit``, ``jax.grad`` or ``jax.vmap``, an array has no values yet.

        Parameters
        ----------
        data : object
            Anything.

        Returns
        -------
        bool
            Whether it is a traced placeholder (always False here).
        """
        return False

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> Array:
        raise NotImplementedError

    def asarray(self, data: Any, dtype: DType | None = None) -> Array:
        """Put ``data`` on this backend.

        A ``dtype`` of ``None`` keeps the data's own dtype where the library holds it;
        integer dtypes it does not hold are cast to one that holds every value. Any
        memory layout and read-only arrays are accepted; nothing is narrowed silently.

        Parameters
        ----------
        data : array-like
            A NumPy array, nested list, scalar, another library's CPU array, or this
            backend's array.
        dtype : str, dtype or None, default None
            The dtype wanted (None: the data's own).

        Returns
        -------
        array
            The backend's array, of ``data``'s shape.

        Raises
        ------
        ValueError
            Integers no dtype of the library holds, or a dtype name it does not
            know.
        TypeError
            Data no library converts (e.g. an array on a GPU: the message says how
            to move it).
        """
        if self.is_native(data):
            if dtype is None:
                return data
            dt = self.dtype(dtype)
            return data if data.dtype == dt else self.xp.astype(data, dt)
        host = to_host(data, self)
        return self._from_host(host, None if dtype is None else self.dtype(dtype))

    def to_numpy(self, array: Array) -> np.ndarray:
        """Copy one of this backend's arrays to the host.

        Parameters
        ----------
        array : array
            The backend's array.

        Returns
        -------
        numpy.ndarray
            A NumPy copy, of ``array``'s shape and dtype.
        """
        raise NotImplementedError

    def check_plain(self, value: Any, what: str) -> None:
        """Refuse a value a user's function returned into training, if training must not take it.

        For example a learning rate; here nothing is refused.

        Parameters
        ----------
        value : object
            The value returned.
        what : str
            The function, as the message names it.
        """

    def precision(self, *values: Any) -> contextlib.AbstractContextManager[object]:
        """Give a context for work on ``values`` in their precision.

        JAX holds 64-bit types inside it without changing the process-wide flag;
        elsewhere it does nothing. `mlp` runs a float64 model's work inside
        ``with backend.precision(model.dtype):``.

        Parameters
        ----------
        *values : object
            Arrays, dtypes, or pytrees of them.

        Returns
        -------
        contextlib.AbstractContextManager
            The context.
        """
        return contextlib.nullcontext()

    # --------------------------------------------------------------- compile
    def jit(self, fn: Callable[..., Any], static_argnums: tuple[int, ...] = ()
            ) -> Callable[..., Any]:
        """Compile a pure function where the backend can; elsewhere return it unchanged.

        Parameters
        ----------
        fn : callable
            A pure function of arrays.
        static_argnums : tuple of int, default ()
            The positions of arguments that are not arrays (compiled per value).

        Returns
        -------
        callable
            The compiled function, or ``fn``.
        """
        return fn

    def scan(self, body: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any = None,
             length: int | None = None) -> tuple[Any, Any]:
        """Loop ``body(carry, x) -> (carry, y)`` over the leading axis of ``xs``.

        This is `jax.lax.scan`'s contract; here it is a plain Python loop.

        Parameters
        ----------
        body : callable
            ``body(carry, x) -> (carry, y)``.
        carry : object
            The initial carry (a pytree of arrays).
        xs : array, tuple of arrays (or Nones), or None, default None
            The arrays looped over, of one leading length.
        length : int or None, default None
            The number of iterations, where ``xs`` is None.

        Returns
        -------
        carry : object
            The last carry.
        ys : array or tuple of arrays
            The ``y`` values (or each entry of tuple ``y``) stacked along a new first
            axis.
        """
        parts = xs if isinstance(xs, tuple) else (xs,)
        if length is None:
            length = next(a.shape[0] for a in parts if a is not None)
        ys: list[Any] = []
        for i in range(length):
            x_i = tuple(None if a is None else a[i, ...] for a in parts)
            carry, y = body(carry, x_i if isinstance(xs, tuple) else x_i[0])
            ys.append(y)
        if ys and isinstance(ys[0], tuple):  # a tuple of outputs: each stacked (None stays)
            return carry, tuple(None if y[0] is None else self.xp.stack(list(y))
                                for y in zip(*ys))
        return carry, self.xp.stack(ys)

    def fori_loop(self, lower: Any, upper: Any, body: Callable[[Any, Any], Any],
                  carry: Any) -> Any:
        """Compute ``carry = body(i, carry)`` for ``i`` from ``lower`` to ``upper - 1``.

        The bounds may be computed (0-d integer arrays): where the backend compiles,
        the number of iterations is then known only when the program runs
        (`jax.lax.fori_loop`'s contract); here it is a plain Python loop.

        Parameters
        ----------
        lower : int or 0-d array of int
            The first ``i``.
        upper : int or 0-d array of int
            One past the last ``i``.
        body : callable
            ``body(i, carry) -> carry``.
        carry : object
            The initial carry.

        Returns
        -------
        object
            The last carry.
        """
        for i in range(int(lower), int(upper)):
            carry = body(i, carry)
        return carry

    def take_rows(self, array: Array, rows: Array) -> Array:
        """Take ``array``'s rows at the (in-bounds) indices ``rows``: a batch cut on the device.

        Parameters
        ----------
        array : array of shape (n, ...)
            The rows.
        rows : array of int, shape (k,)
            The indices.

        Returns
        -------
        array of shape (k, ...)
            The rows taken.
        """
        return self.xp.take(array, rows, axis=0)

    def inplace_ops(self) -> InplaceOps | None:
        """The library's in-place operations (`InplaceOps`), or None where it has none.

        With them, `mlp` trains through its in-place executor, whose weights,
        optimizer state and losses are identical to the pure path's, bit for bit.
        None (the default): the pure path runs.
        """
        return None

    def place_rows(self, x: Array, y: Array, w: Array | None, padded: bool = False
                   ) -> tuple[Array, Array, Array | None]:
        """Place the training rows for training, once per `fit`.

        Here they stay as they are. A data-parallel backend pads them with rows of
        weight 0 (then ``w`` is never None) and shards them over its devices; the
        padding rows come last.

        Parameters
        ----------
        x : array of shape (n, ...)
            The inputs.
        y : array of shape (n, ...)
            The targets.
        w : array of shape (n,) or None
            The rows' weights.
        padded : bool, default False
            The arrays are host (NumPy) arrays that already end with at least one
            row of weight 0 and whose row count is a multiple of the device count:
            they are moved to the backend as they are (sharded by rows where it
            shards), nothing added.

        Returns
        -------
        x : array
            The inputs placed.
        y : array
            The targets placed.
        w : array or None
            The weights placed (None only where it was and nothing was padded).
        """
        if padded:
            return tuple(self.asarray(a) for a in (x, y, w))
        return x, y, w

    def batch_rows(self, indices: np.ndarray, n_rows: int) -> Array:
        """Put host batch row indices on the device, for `take_rows` on the placed rows.

        Here they are as they are; a data-parallel backend pads each batch with the
        index of a padding row.

        Parameters
        ----------
        indices : numpy.ndarray of shape (..., batch_size)
            The row indices of each batch.
        n_rows : int
            The number of placed rows (see `place_rows`).

        Returns
        -------
        array
            The indices on the device.
        """
        return self.asarray(indices)

    def synchronize(self) -> None:
        """Wait until queued device work is done (for timing)."""

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={self.device!r})"

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """A backend is shared, not copied: ``copy.deepcopy`` (e.g. scikit-learn's `clone`
        of an estimator built with ``backend=<Backend>``) gives the same object."""
        return self


#: ``to_host`` functions of the backend modules, each ``(data, target, name) -> ndarray``
#: for the arrays of its own library and None for anything else (see `register_converter`).
_CONVERTERS: list[Callable[[Any, Backend, str], np.ndarray | None]] = []


def register_converter(convert: Callable[[Any, Backend, str], np.ndarray | None]) -> None:
    """Let `to_host` ask ``convert(data, target, name)`` first.

    ``convert`` returns a host NumPy array for the arrays of one library (or
    raises a `TypeError` saying how to move them), and None for anything else.
    It must not import its library (recognise its arrays with `library_of`), so
    that asking costs nothing where the library is not installed.
    """
    if convert not in _CONVERTERS:
        _CONVERTERS.append(convert)


def where(target: Backend) -> str:
    """``"this model is on the 'jax' backend (cpu)"``: the end of a refusal message."""
    return f"this model is on the {target.name!r} backend ({target.device})"


def to_host(data: Any, target: Backend, name: str = "x") -> np.ndarray:
    """Give a host NumPy view of ``data`` that is not ``target``'s own array.

    Lists, scalars, NumPy arrays and CPU arrays of other libraries are converted
    (each backend module converts its own library's arrays, see
    `register_converter`; a torch tensor that requires grad is detached). Arrays
    on a GPU are refused with a message that says how to move them, since that
    copy should be the user's choice.

    Parameters
    ----------
    data : array-like
        A NumPy array, nested list, scalar, or another library's CPU array.
    target : Backend
        The backend the data is for (named in messages).
    name : str, default "x"
        The argument's name in messages.

    Returns
    -------
    numpy.ndarray
        The data on the host (a view where no copy is needed).

    Raises
    ------
    TypeError
        Data that is not an array of numbers, or an array on a GPU.
    """
    if isinstance(data, np.ndarray):
        return data
    for convert in _CONVERTERS:
        host = convert(data, target, name)
        if host is not None:
            return host
    try:
        return np.asarray(data)
    except Exception as exc:  # noqa: BLE001 - re-raised with the user's terms
        raise TypeError(
            f"{name} must be an array of numbers; cannot turn a {type(data).__name__} into one "
            f"({exc})"
        ) from exc


#: The name `mlp` used before `to_host`; kept so existing imports work.
foreign_to_numpy = to_host


def fit_integers(host: np.ndarray, held: tuple[str, ...]) -> np.ndarray:
    """Integer ``host`` in a dtype from ``held`` (the integer dtypes a library holds).

    A dtype the library holds is kept; any other is cast to the narrowest held
    signed dtype that holds every value (the values never change). Raises
    `ValueError` when no held dtype does.
    """
    if host.dtype.kind not in "iu" or host.dtype.name in held:
        return host
    lo, hi = (int(host.min()), int(host.max())) if host.size else (0, 0)
    for candidate in ("int8", "int16", "int32", "int64"):
        info = np.iinfo(candidate)
        if candidate in held and info.min <= lo and hi <= info.max:
            return host.astype(candidate)
    widest = max((d for d in held if d.startswith("int")), key=lambda d: np.iinfo(d).bits)
    raise ValueError(
        f"integer values from {lo} to {hi} (dtype {host.dtype}) do not fit in {widest}, the "
        "widest integer type this backend computes with; class labels must be small "
        "non-negative integers"
    )


def host_layout(host: np.ndarray) -> np.ndarray:
    """``host`` as a C-contiguous array (a copy only for strided or reversed views)."""
    return np.asarray(host, order="C")


def library_of(data: Any) -> str:
    """The top-level package that defines ``data``'s type (``"torch"``, ``"jaxlib"``...):
    how a backend module recognises its library's arrays without importing it."""
    return type(data).__module__.split(".")[0]
