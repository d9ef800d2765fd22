"""Export a model to ONNX through the same forward pass that `MLP.predict` runs.

`mlp.core.forward` is written against the array API standard, and ndonnx is an
array-API namespace whose arrays are ONNX graph nodes: running the forward
pass on ndonnx arrays *builds* the graph. There is no second implementation of
the network to keep in sync; a new activation is exported as soon as it exists.

The graph (opset 21) has

- one input ``x``: ``(N, n_features)`` in the model's dtype, ``N`` free;
- output ``predict``: ``(N, n_outputs)`` in the model's dtype, what
  `MLP.predict` returns (probabilities for classifiers);
- output ``label`` (classifiers only): what `MLP.predict_classes` returns, as
  int64: ``(N,)`` class indices (argmax) for cross-entropy, ``(N, n_outputs)``
  0/1 (probability > 0.5) for binary cross-entropy;
- the weights as initializers ``W0, b0, W1, b1, ...`` (a batch-normalized layer's
  ``b`` with its four rows, `mlp.batch_norm.ROWS`: the graph normalizes with the
  running averages, as `MLP.predict` does).

Serve it with ONNX Runtime::

    import onnxruntime as ort
    session = ort.InferenceSession("model.onnx")
    probs, labels = session.run(["predict", "label"], {"x": x.astype("float32")})

Needs the ``onnx`` extra (``pip install 'mlp-array-api[onnx]'``: ndonnx, and
onnxruntime to run the result).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from . import batch_norm, core
from . import io as _io
from ._typing import Array, Namespace
from .activations import Activation
from .backends import BackendUnavailableError
from .losses import Loss
from .params import InstanceOf, Options, check

if TYPE_CHECKING:
    import onnx

    from .backends._ndonnx import NdonnxBackend
    from .model import MLP

__all__ = ["export_onnx", "onnx_model"]

#: The outputs a graph can have, in the order they appear.
OUTPUTS = ("predict", "label")
#: Name of the free batch dimension of ``x`` and of every output.
BATCH_DIM = "N"


def _ndonnx_backend() -> NdonnxBackend:
    from .backends._ndonnx import create

    try:
        return create()
    except BackendUnavailableError as exc:
        raise ImportError(str(exc)) from exc


def _output_names(model: MLP, outputs: str | Sequence[str] | None
                  ) -> tuple[str, ...]:
    """The checked ``outputs`` as a tuple of names, in the graph's order."""
    if outputs is None:
        return OUTPUTS if model.is_classifier else ("predict",)
    if isinstance(outputs, str):
        outputs = [outputs]
    if not isinstance(outputs, (list, tuple)) or not outputs:
        raise TypeError("outputs must be 'predict', 'label', a non-empty list of them or None, "
                        f"got {outputs!r}")
    names = {check("outputs", name, [Options(*OUTPUTS)]) for name in outputs}
    if "label" in names and not model.is_classifier:
        raise ValueError("outputs 'label' needs a classification loss (cross_entropy or "
                         f"binary_cross_entropy); this model uses {model.loss_name!r}")
    return tuple(name for name in OUTPUTS if name in names)


def _class_labels(xp: Namespace, loss: Loss, probs: Array) -> Array:
    """`MLP.predict_classes`' rule (the loss's own) on the output ``probs``, as int64."""
    return xp.astype(loss.predict_classes(xp, probs), xp.int64)


def _forward_and_labels(spec: core.NetworkSpec, n_layers: int, names: tuple[str, ...]
                        ) -> Callable[..., dict[str, Array]]:
    """``fn(x, W0=..., b0=..., ...) -> {name: array}``: the exported computation."""

    def fn(x: Array, **weights: Array) -> dict[str, Array]:
        params = [(weights[f"W{i}"], weights[f"b{i}"]) for i in range(n_layers)]
        probs = core.forward(spec, params, x)
        found = {"predict": probs}
        if "label" in names:
            found["label"] = _class_labels(spec.xp, spec.loss, probs)
        return {name: found[name] for name in names}

    return fn


@functools.lru_cache(maxsize=32)
def _graph(hidden: Activation, output: Activation, loss: Loss, layer_sizes: tuple[int, ...],
           dtype: str, names: tuple[str, ...], normalization: tuple[float, ...] = ()) -> bytes:
    """The serialized graph of a network, with the weights still graph inputs.

    Tracing costs about 0.3 s per layer (ndonnx propagates values through the
    graph it builds), so networks of one architecture share one trace.
    """
    backend = _ndonnx_backend()
    spec = core.NetworkSpec(backend.xp, hidden, output, loss, batch_norm=normalization)
    inputs: dict[str, tuple[tuple[str | int, ...], str]] = {
        "x": ((BATCH_DIM, layer_sizes[0]), dtype)}
    shapes = batch_norm.weight_shapes(layer_sizes, bool(normalization))
    for i, (w_shape, b_shape) in enumerate(shapes):
        inputs[f"W{i}"], inputs[f"b{i}"] = (w_shape, dtype), (b_shape, dtype)
    proto = backend.trace(_forward_and_labels(spec, len(layer_sizes) - 1, names), inputs)
    for value in proto.graph.output:  # ndonnx leaves the outputs' batch dimension unnamed
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    data: bytes = proto.SerializeToString()
    return data


def _with_weights(proto: onnx.ModelProto, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """``proto`` with the graph inputs named in ``weights`` turned into initializers."""
    from onnx import numpy_helper

    graph = proto.graph
    kept = [v for v in graph.input if v.name not in weights]
    del graph.input[:]
    graph.input.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(value, name)
                             for name, value in weights.items())
    return proto


def onnx_model(model: MLP, *, outputs: str | Sequence[str] | None = None
               ) -> onnx.ModelProto:
    """Build the ONNX model of ``model`` in memory, checked.

    Parameters
    ----------
    model : MLP
        On any backend; its weights are copied to the host.
    outputs : str, list of str or None, default None
        ``"predict"``, ``"label"`` (classifiers only) or a list of both. None:
        both for a classifier, ``"predict"`` otherwise.

    Returns
    -------
    onnx.ModelProto
        The graph (opset 21): input ``x`` of shape ``(N, n_features)``, the
        outputs asked for, the weights as initializers.

    Raises
    ------
    ImportError
        ndonnx is not installed (the message names the extra to install).
    TypeError, ValueError
        ``outputs`` is not one of the names or a list of them, or asks for
        ``label`` from a model that is not a classifier.
    """
    names = _output_names(model, outputs)
    _ndonnx_backend()  # the missing extra is reported before anything else
    import onnx

    from . import __version__

    spec = model.spec
    proto = onnx.load_from_string(_graph(spec.hidden, spec.output, spec.loss,
                                         tuple(model.layer_sizes), model.dtype_name, names,
                                         spec.batch_norm))
    weights: dict[str, np.ndarray] = {}
    for i, (W, b) in enumerate(model.get_weights()):
        weights[f"W{i}"], weights[f"b{i}"] = W, b
    _with_weights(proto, weights)
    proto.producer_name, proto.producer_version = "mlp", __version__
    proto.doc_string = repr(model)
    config: dict[str, object] = {
        "layer_sizes": list(model.layer_sizes), "activation": model.activation,
        "output_activation": model.output_activation, "loss": model.loss_name,
        "dtype": model.dtype_name}
    if model.batch_norm:
        config.update(batch_norm=True, epsilon=model.epsilon)
    onnx.helper.set_model_props(proto, {"mlp_config": json.dumps(config)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: MLP, path: str | os.PathLike[str], *,
                outputs: str | Sequence[str] | None = None) -> None:
    """Write ``model`` to ``path`` as an ONNX file, atomically.

    The file appears complete or not at all (a temporary file in the same
    folder, then a rename), with the permissions of a normal write. The path is
    checked first (a file name in an existing, writable folder). The graph is
    `onnx_model`'s.

    Parameters
    ----------
    model : MLP
        On any backend; its weights are copied to the host.
    path : str or os.PathLike
        The file to write (conventionally ``.onnx``).
    outputs : str, list of str or None, default None
        ``"predict"``, ``"label"`` (classifiers only) or a list of both. None:
        both for a classifier, ``"predict"`` otherwise.

    Raises
    ------
    ImportError
        ndonnx is not installed (the message names the extra to install).
    TypeError, ValueError
        ``path`` is not a file name, or ``outputs`` is refused (see
        `onnx_model`).
    OSError
        ``path`` names a folder, or no file can be written there (nothing is
        written).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, mlp
    >>> import onnxruntime as ort
    >>> from mlp.export import export_onnx
    >>> x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    >>> model = mlp.MLP([3, 8, 2], loss="cross_entropy", backend="numpy", seed=0)
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "model.onnx")
    >>> export_onnx(model, path)
    >>> session = ort.InferenceSession(path)
    >>> probs, labels = session.run(["predict", "label"], {"x": x})
    >>> probs.shape, labels.shape, bool(np.allclose(probs, model.predict(x), atol=1e-6))
    ((6, 2), (6,), True)
    >>> folder.cleanup()
    """
    check("path", path, [InstanceOf((str, os.PathLike), "a file path (str or os.PathLike)")])
    path = _io.check_writable(path, "write the ONNX file")  # before the work
    data = onnx_model(model, outputs=outputs).SerializeToString()
    write_atomically(path, data)


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """``data`` into the file ``path``, atomically (`mlp.io.write_atomically`)."""
    _io.write_atomically(path, lambda fh: fh.write(data), what="write the ONNX file")
