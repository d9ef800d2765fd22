"""NumPy on the CPU.

Accepted input: anything NumPy turns into an array of numbers, including CPU
arrays of other libraries (their backend modules convert them, see `to_host`).
"""

from __future__ import annotations

import types

import numpy as np
from array_api_compat import numpy as xp_numpy

from ._base import Backend


def _fast_namespace():
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
    add_reduce, std_sum, std_astype = np.add.reduce, xp_numpy.sum, xp_numpy.astype
    std_argmax = xp_numpy.argmax

    def sum(x, /, *, axis=None, dtype=None, keepdims=False):  # noqa: A001 - the API's name
        if dtype is None and isinstance(x, np.ndarray) and x.dtype.kind == "f":
            return add_reduce(x, axis=axis, keepdims=keepdims)
        return std_sum(x, axis=axis, dtype=dtype, keepdims=keepdims)

    def astype(x, dtype, /, *, copy=True, device=None):
        if device is None and isinstance(x, np.ndarray):
            return x.astype(dtype, copy=copy)
        return std_astype(x, dtype, copy=copy, device=device)

    def argmax(x, /, *, axis=None, keepdims=False):
        if isinstance(x, np.ndarray):
            return x.argmax(axis=axis, keepdims=keepdims)
        return std_argmax(x, axis=axis, keepdims=keepdims)

    ns.sum, ns.astype, ns.argmax = sum, astype, argmax
    return ns


class NumpyBackend(Backend):
    """NumPy on the CPU.

    Parameters
    ----------
    fast : bool, default True
        Train through the in-place fast path (`backends._numpy_fast`), whose
        weights and losses are identical, bit for bit, to the pure path's;
        False runs the pure path (`mlp.steps`) as written.
    """

    name = "numpy"

    def __init__(self, fast=True):
        if not isinstance(fast, bool):
            raise TypeError(f"fast must be True or False, got {fast!r}")
        super().__init__(_fast_namespace(), "cpu")
        self.fast = fast

    def fast_run(self, pure_run, spec, optimizer, alpha=0.0, clip_norm=None):
        if not self.fast:
            return None
        from ._numpy_fast import fast_run

        return fast_run(pure_run, spec, optimizer, alpha, clip_norm)

    def is_native(self, data):
        return isinstance(data, np.ndarray)

    def _from_host(self, host, dtype):
        return np.asarray(host, dtype=dtype)

    def to_numpy(self, array):
        return np.array(array, copy=True)


def create() -> Backend:
    return NumpyBackend()
