"""NumPy on the CPU."""

from __future__ import annotations

import numpy as np
from array_api_compat import numpy as xp_numpy

from ._base import Backend


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self):
        super().__init__(xp_numpy, "cpu")

    def is_native(self, data):
        return isinstance(data, np.ndarray)

    def _from_host(self, host, dtype):
        return np.asarray(host, dtype=dtype)

    def to_numpy(self, array):
        return np.array(array, copy=True)


def create() -> Backend:
    return NumpyBackend()
