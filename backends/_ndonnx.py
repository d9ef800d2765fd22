"""ndonnx: an array-API namespace whose arrays are nodes of an ONNX graph.

Running `mlp`'s forward pass on these arrays does not compute anything: it
records the computation, which `trace` turns into an ONNX model. This backend
is for export only (`mlp.export`); it is deliberately not in
`backends.KNOWN_BACKENDS`, so no model trains on it and the test fixture and
`available_backends()` never offer it.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import Array, Backend, BackendUnavailableError, DType

if TYPE_CHECKING:  # (optional: the onnx extra)
    import onnx

INSTALL_HINT = "pip install 'mlp-array-api[onnx]' (or pip install ndonnx onnxruntime)"


class NdonnxBackend(Backend):
    """The ndonnx namespace behind the `Backend` interface, plus graph tracing."""

    name = "ndonnx"

    def __init__(self, ndx: types.ModuleType) -> None:
        super().__init__(ndx, None)

    def is_native(self, data: Any) -> bool:
        return isinstance(data, self.xp.Array)

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> Array:
        if dtype is not None:
            host = np.asarray(host, dtype=self.dtype_name(dtype))
        return self.xp.asarray(np.asarray(host))

    def to_numpy(self, array: Array) -> np.ndarray:
        """A NumPy copy of an array whose value is known while tracing (a constant)."""
        value = array.unwrap_numpy()  # raises for a graph input: it has no value yet
        return np.array(value, copy=True)

    def trace(self, fn: Callable[..., Mapping[str, Array]],
              inputs: Mapping[str, tuple[tuple[int | str, ...], str]]) -> onnx.ModelProto:
        """The ONNX model computing ``fn(**inputs)``.

        Parameters
        ----------
        fn : callable
            Called with one ndonnx array per entry of ``inputs`` (by name); returns
            ``{output_name: array}``.
        inputs : mapping name -> (shape, dtype name)
            The graph's inputs. A shape entry may be a string, a free dimension
            (``("N", 4)``: any number of rows).

        Returns
        -------
        onnx.ModelProto
        """
        xp = self.xp
        args = {name: xp.argument(shape=tuple(shape), dtype=self.dtype(dtype))
                for name, (shape, dtype) in inputs.items()}
        return xp.build(args, dict(fn(**args)))


def create() -> NdonnxBackend:
    try:
        import ndonnx
    except ImportError as exc:
        raise BackendUnavailableError(
            f"exporting to ONNX needs ndonnx: {INSTALL_HINT}"
        ) from exc
    return NdonnxBackend(ndonnx)
