"""Input checks at the public boundary, with messages in the user's terms.

Everything a user passes to `MLP` is checked here once, before any work or any
change to the model, so a rejected call leaves the model as it was.
"""

from __future__ import annotations

import collections.abc
import math
import numbers
import types
from typing import TYPE_CHECKING, Any

import numpy as np
from array_api_compat import numpy as np_xp

from ._typing import Array, Namespace
from .backends import to_host

if TYPE_CHECKING:
    from .backends import Backend

_NUMERIC_KINDS = "biuf"


def check_layer_sizes(layer_sizes: Any) -> tuple[int, ...]:
    """``layer_sizes`` as a tuple of positive ints: an ordered sequence (list, tuple,
    range or 1-D integer array) of at least two entries."""
    if isinstance(layer_sizes, (set, frozenset, dict)) or isinstance(
            layer_sizes, (collections.abc.Set, collections.abc.Mapping)):
        raise TypeError(f"layer_sizes must be an ordered sequence such as [n_features, 64, "
                        f"n_outputs]; a {type(layer_sizes).__name__} has no order (got "
                        f"{layer_sizes!r})")
    ordered = isinstance(layer_sizes, (collections.abc.Sequence, np.ndarray))
    if not ordered or isinstance(layer_sizes, (str, bytes)):
        raise TypeError(
            "layer_sizes must be a sequence of integers such as [n_features, 64, n_outputs], "
            f"got {type(layer_sizes).__name__}"
        )
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(
            "layer_sizes needs at least two entries (inputs and outputs), e.g. "
            f"[n_features, 64, n_outputs]; got {sizes!r}"
        )
    for i, s in enumerate(sizes):
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"layer_sizes[{i}] must be a positive integer, got {s!r}")
    return tuple(int(s) for s in sizes)


def check_dtype(dtype: Any) -> str:
    """The name ``"float32"`` or ``"float64"`` of ``dtype``, given as that name, a NumPy
    dtype or a NumPy scalar type (``np.float32``)."""
    try:
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    except TypeError:
        name = None
    if dtype is None or name not in ("float32", "float64"):
        raise (ValueError if isinstance(dtype, str) or name else TypeError)(
            f"dtype must be 'float32' or 'float64' (or np.float32, np.float64), got {dtype!r}")
    return name


def _kind_name(dtype):
    if dtype.names:
        return (f"records with fields {', '.join(dtype.names)} (turn them into columns "
                "with numpy.lib.recfunctions.structured_to_unstructured)")
    return {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes",
            "M": "dates", "m": "time deltas", "V": "raw records"}.get(dtype.kind, str(dtype))


def _refuse_unsupported(data, name):
    """Clear errors for inputs that are not arrays, where the cause is specific."""
    module = type(data).__module__
    if module.startswith("scipy.sparse"):
        raise TypeError(f"{name} is a SciPy sparse {type(data).__name__}; mlp needs a dense "
                        f"array: pass {name}.toarray()")
    if isinstance(data, (types.GeneratorType, collections.abc.Iterator)):
        raise TypeError(f"{name} is a {type(data).__name__}, which can be read only once; "
                        f"pass an array or a list (e.g. list({name}) or np.array(list({name})))")
    if isinstance(data, (collections.abc.Set, collections.abc.Mapping)):
        raise TypeError(f"{name} must be an array of numbers, got a {type(data).__name__}, "
                        "which has no order")
    if isinstance(data, np.ma.MaskedArray) and np.ma.count_masked(data):
        raise ValueError(f"{name} is a masked array with {int(np.ma.count_masked(data))} "
                         f"masked value(s), which mlp would read as the values under the "
                         f"mask; fill them first (e.g. {name}.filled(0)) or drop those rows")


def _refuse_pandas_missing(data, name):
    """pandas nullable (extension) columns holding ``pd.NA``, named as such."""
    if not (type(data).__module__.startswith("pandas") and hasattr(data, "isna")):
        return
    dtypes = list(data.dtypes) if hasattr(data, "columns") else [getattr(data, "dtype", None)]
    if not any(type(dt).__module__.startswith("pandas") for dt in dtypes):
        return  # NumPy columns: NaN is reported as NaN later
    n_na = int(np.asarray(data.isna()).sum())
    if n_na:
        raise _pd_na_error(name, n_na)


def _pd_na_error(name, n_na):
    return ValueError(f"{name} has {n_na} missing value(s) (pd.NA, from pandas nullable "
                      f"columns); fill or drop them first, e.g. {name}.fillna(0) or "
                      f"{name}.dropna(), then pass {name}.to_numpy(dtype=float)")


def _is_pd_na(value) -> bool:
    return type(value).__name__ == "NAType" and type(value).__module__.startswith("pandas")


def _plain_numbers(host, name):
    """An object array that holds only numbers (pandas nullable columns without missing
    values: ``Int64``, ``Float64``, ``boolean``) as float64, or as bool when every value
    is a boolean; pandas' ``pd.NA`` gets its own message."""
    flat = host.ravel()
    n_na = sum(1 for v in flat if _is_pd_na(v))
    if n_na:
        raise _pd_na_error(name, n_na)
    if not flat.size:
        return host
    if all(isinstance(v, (bool, np.bool_)) for v in flat):
        return host.astype(bool)
    if all(isinstance(v, (numbers.Real, np.bool_)) for v in flat):
        try:
            return host.astype(np.float64)
        except OverflowError:
            raise ValueError(f"{name} holds a number too large for float64 (largest "
                             f"magnitude about 1.8e308)") from None
    return host


def _object_types(host) -> str:
    """The Python types in an object array, for a message (at most three named)."""
    names = []
    for value in host.ravel():
        kind = type(value).__name__
        if kind not in names:
            names.append(kind)
            if len(names) > 3:
                break
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _is_ml_dtype(dtype) -> bool:
    return getattr(dtype.type, "__module__", "").split(".")[0] == "ml_dtypes"


def _from_ml_dtypes(host, name):
    """An array of one of ml_dtypes' narrow types (JAX's bfloat16, float8, float4, int4...)
    in a standard type that holds every value exactly: float32 for the floats, int64 for
    the integers; complex ones are refused."""
    if not _is_ml_dtype(host.dtype):
        return host
    dtype = host.dtype.name
    if "complex" in dtype:
        raise TypeError(f"{name} must hold real numbers, got an array of complex numbers "
                        f"(dtype {dtype})")
    return host.astype(np.int64 if dtype.startswith(("int", "uint")) else np.float32)


def _refuse_stream(data, name):
    """Refuse, as what it is, a source of batches (a DataLoader, a list of (x, y)
    batches...) given where an array is needed: only `fit` takes one, as its ``x``."""
    from .data import is_stream

    if is_stream(data):
        raise TypeError(f"{name} is a source of batches ({type(data).__name__}), which only "
                        f"fit takes (fit(source, epochs=...), without y); predict, evaluate "
                        f"and the validation data take arrays, in memory or on disk: call "
                        f"them on each batch's arrays, or on the arrays themselves")


def _host(backend, data, name):
    """``data`` (not the backend's own array) as a NumPy array of real numbers.

    Plainly numeric data is accepted as it is: ``np.matrix``, the narrow types of
    ml_dtypes (JAX's bfloat16, float8, float4...: cast to float32, which holds
    them exactly; int4 and the like to int64) and pandas nullable columns
    (``Int64``, ``Float64``, ``boolean``) without missing values.
    """
    if data is None:
        raise TypeError(f"{name} is None; expected an array of numbers")
    _refuse_unsupported(data, name)
    _refuse_pandas_missing(data, name)
    try:
        host = to_host(data, backend, name)
    except TypeError:
        _refuse_stream(data, name)
        raise
    except ValueError as exc:  # e.g. ragged nested lists
        _refuse_stream(data, name)
        raise TypeError(f"{name} must be an array of numbers; cannot turn a "
                        f"{type(data).__name__} into one ({exc})") from exc
    if type(host) is not np.ndarray:  # np.matrix: plain 2-D array
        host = np.asarray(host)
    host = _from_ml_dtypes(host, name)
    if host.dtype.kind == "O":
        _refuse_stream(data, name)
        host = _plain_numbers(host, name)
    if host.dtype.kind not in _NUMERIC_KINDS:
        what = _kind_name(host.dtype)
        if host.dtype.kind == "O" and host.size:
            what += f": {_object_types(host)}"
        raise TypeError(f"{name} must hold real numbers, got an array of {what} (dtype "
                        f"{host.dtype})")
    return host


def _dtype_name(backend, dtype):
    return dtype if isinstance(dtype, str) else backend.dtype_name(dtype)


def _nonfinite_error(name, n_bad):
    return ValueError(f"{name} contains {n_bad} NaN or infinite value(s); "
                      "remove or impute them first")


def _overflow_error(name, dtype_name, largest):
    wider = "" if dtype_name == "float64" else ", or build the model with dtype='float64'"
    return ValueError(f"{name} has values too large for {dtype_name} (largest magnitude "
                      f"{largest:.3g}); rescale them{wider}")


def host_cast(host: np.ndarray, dtype_name: str, name: str) -> np.ndarray:
    """NumPy ``host`` cast to ``dtype_name``; NaN/inf and values the cast would
    overflow are refused (checked on the host, before any transfer)."""
    if host.dtype.kind == "f":
        if not all_finite(np, host):
            raise _nonfinite_error(name, int(np.count_nonzero(~np.isfinite(host))))
    if host.dtype == np.dtype(dtype_name):
        return host
    with np.errstate(over="ignore", invalid="ignore"):
        cast = host.astype(dtype_name)
    if host.dtype.kind == "f" and not all_finite(np, cast):
        raise _overflow_error(name, dtype_name, float(np.max(np.abs(host))))
    return cast


def to_backend_array(backend: Backend, data: Any, name: str, dtype: Any = None, *,
                     floats_only: bool = False, on_host: bool = False) -> Array:
    """``data`` on ``backend``, with clear errors for anything that is not real numbers.

    With ``dtype`` (a float dtype of the backend), data from the host or another
    library is checked for NaN/inf and cast to it on the host, so it crosses to
    the device once, in its final dtype (``floats_only``: only float data is
    cast; integer labels keep theirs). The backend's own arrays are returned as
    they are; `cast_checked` casts them on the device. With ``on_host``, data that
    is not the backend's own stays a (checked, cast) NumPy array: the caller checks
    it further on the host (no device work, nothing to compile) and moves it once.
    """
    if backend.is_traced(data):
        raise TypeError(
            f"{name} is traced by a JAX transformation (jax.jit, jax.grad, jax.vmap): the "
            "model's methods check and convert concrete arrays. Inside a transformation use "
            "the pure functions: mlp.core.forward(model.spec, model.params, x), "
            "mlp.core.loss_value(model.spec, model.params, x, y) or "
            "mlp.core.loss_and_gradients(model.spec, model.params, x, y)")
    if isinstance(data, np.ndarray) and (type(data) is not np.ndarray
                                         or data.dtype.kind in "OV"
                                         or _is_ml_dtype(data.dtype)):
        data = _host(backend, data, name)  # np.matrix, masked, objects, float8: plain arrays
    if backend.is_native(data):
        data = _widened(backend, data)
        kind_ok = backend.xp.isdtype(data.dtype, ("bool", "integral", "real floating"))
        if not kind_ok:
            dtype_name = backend.dtype_name(data.dtype)
            try:
                what = _kind_name(np.dtype(dtype_name))
            except TypeError:
                what = dtype_name
            raise TypeError(f"{name} must hold real numbers, got an array of {what} "
                            f"(dtype {dtype_name})")
        return data
    host = _host(backend, data, name)
    if dtype is not None and not (floats_only and host.dtype.kind != "f"):
        host = host_cast(host, _dtype_name(backend, dtype), name)
        if not on_host:
            return backend.asarray(host, dtype)
    return host if on_host else backend.asarray(host)


#: The floating-point types a backend array may have and be computed with as it is.
_STANDARD_FLOATS = ("float16", "bfloat16", "float32", "float64")


def _widened(backend, array):
    """A backend array of a narrower float type (PyTorch's or JAX's float8...) as float32,
    which holds every value exactly (such types cannot be reduced or checked as they are)."""
    xp = backend.xp
    if not xp.isdtype(array.dtype, "real floating"):
        return array
    if backend.dtype_name(array.dtype) in _STANDARD_FLOATS:
        return array
    return xp.astype(array, backend.dtype("float32"))


def all_finite(xp: Namespace, array: Array) -> bool:
    """Whether ``array`` holds no NaN or inf.

    ``min`` and ``max`` propagate NaN (the array API standard requires it), so two
    reductions decide it without a full-size boolean temporary (47 MB for a
    60000x784 float32 ``x``)."""
    if math.prod(array.shape) == 0:
        return True
    return bool(xp.isfinite(xp.min(array))) and bool(xp.isfinite(xp.max(array)))


def _namespace(backend, array):
    """The namespace of ``array``: NumPy's for a host array, else the backend's."""
    return np_xp if isinstance(array, np.ndarray) else backend.xp


def _dtype_like(backend, array, dtype):
    """``dtype`` (a backend dtype) as ``array``'s library spells it."""
    return np.dtype(_dtype_name(backend, dtype)) if isinstance(array, np.ndarray) else dtype


def check_finite(backend: Backend, array: Array, name: str) -> None:
    """Refuse NaN and inf in a backend or host array (integer and bool arrays always pass)."""
    xp = _namespace(backend, array)
    if xp.isdtype(array.dtype, "real floating") and not all_finite(xp, array):
        n_bad = int(xp.sum(xp.astype(~xp.isfinite(array), xp.int32)))
        raise _nonfinite_error(name, n_bad)


def cast_checked(backend: Backend, array: Array, dtype: Any, name: str) -> Array:
    """Backend (or host) ``array`` in ``dtype``: NaN/inf and values the cast would overflow
    are refused."""
    xp = _namespace(backend, array)
    dtype = _dtype_like(backend, array, dtype)
    check_finite(backend, array, name)
    if array.dtype == dtype:
        return array
    cast = xp.astype(array, dtype)
    if xp.isdtype(array.dtype, "real floating") and not all_finite(xp, cast):
        raise _overflow_error(name, _dtype_name(backend, dtype), float(xp.max(xp.abs(array))))
    return cast


def prepare_x(backend: Backend, x: Any, n_features: int, dtype: Any,
              name: str = "x", *, on_host: bool = False) -> Array:
    """Validated ``x: (n, n_features)`` on the backend, in the model's dtype (with
    ``on_host``, data that is not the backend's own stays a checked NumPy array in
    that dtype, for the caller to move once)."""
    native = backend.is_native(x)
    arr = to_backend_array(backend, x, name, dtype, on_host=on_host)
    if arr.ndim == 1:
        hint = (" For one sample use x.reshape(1, -1); for one feature use x.reshape(-1, 1).")
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got a 1-D array of shape "
                         f"{tuple(arr.shape)}.{hint}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape "
                         f"{tuple(arr.shape)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    if arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features (columns), but the model's first "
                         f"layer expects {n_features}")
    # Host data was checked and cast on the host already (no device work to compile).
    return cast_checked(backend, arr, dtype, name) if native else arr


def host_float_array(name: str, value: Any, dtype_name: str,
                     backend: Backend) -> np.ndarray:
    """A NumPy copy of user-given weights, of real numbers, cast to ``dtype_name``.

    NaN and inf are left for the caller to report; finite values that the cast
    would overflow are refused. The copy never shares memory with ``value``.
    """
    arr = _host(backend, value, name)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = np.array(arr, dtype=dtype_name, copy=True)
    if arr.dtype.kind == "f" and all_finite(np, arr) and not all_finite(np, cast):
        raise _overflow_error(name, dtype_name, float(np.max(np.abs(arr))))
    return cast
