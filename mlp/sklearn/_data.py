"""Moving estimator inputs to the host and results back to the caller's namespace.

scikit-learn validates on NumPy; the work then runs on the estimator's
backend; results go back in the namespace scikit-learn's array API dispatch
sees for the input (NumPy unless ``sklearn.set_config(array_api_dispatch=True)``
and a torch / JAX / ... array came in), on the input's device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.utils._array_api import _is_numpy_namespace, get_namespace_and_device, move_to

from .._typing import Array, Namespace

#: Where results go: ``(namespace, device)`` of the caller's arrays, or None for NumPy.
Where = tuple[Namespace, Any] | None


def _is_foreign_array(data: object) -> bool:
    if data is None or isinstance(data, (np.ndarray, list, tuple)) or sp.issparse(data):
        return False
    module = type(data).__module__.split(".")[0]
    return (module in ("torch", "jax", "jaxlib", "cupy", "array_api_strict")
            or hasattr(data, "__array_namespace__"))


def to_host(data: Array) -> Array:
    """``data`` as NumPy when it is an array of another library; anything else unchanged."""
    if not _is_foreign_array(data):
        return data
    try:
        return move_to(data, xp=np, device="cpu")
    except Exception:  # noqa: BLE001 - libraries without DLPack to the CPU
        return np.asarray(data)


def caller_namespace(X: Array) -> Where:
    """``(xp, device)`` to return results in, or None for NumPy."""
    try:
        xp, _, dev = get_namespace_and_device(X)
    except Exception:  # noqa: BLE001 - inputs scikit-learn cannot place (lists, frames...)
        return None
    return None if _is_numpy_namespace(xp) else (xp, dev)


def to_caller(result: np.ndarray, where: Where) -> Array:
    """A NumPy ``result`` moved to ``where`` (from `caller_namespace`)."""
    if where is None:
        return result
    xp, dev = where
    return move_to(result, xp=xp, device=dev)


def dense(X: Array) -> Array:
    """A dense NumPy ``X`` (sparse CSR/CSC matrices are expanded: the backends are dense)."""
    return X.toarray() if sp.issparse(X) else X
