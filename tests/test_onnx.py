"""ONNX export: the graph built by running `core.forward` on ndonnx arrays computes, in ONNX
Runtime, what `MLP.predict` / `predict_classes` compute, for every activation, loss, dtype and
backend; the file is checked and written atomically."""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import mlp
from mlp.activations import HIDDEN_ACTIVATIONS
from mlp.losses import LOSSES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("ndonnx")

#: (loss, output activation): every loss with every output activation it allows.
LOSS_OUTPUTS = [(name, out) for name, loss in LOSSES.items() for out in loss.allowed_outputs]
#: (dtype, hidden activation, loss, output activation): every hidden activation and every
#: (loss, output) pair in each dtype (a covering set, not the full product: the exporter
#: composes the hidden and output pieces independently, and each new network costs about a
#: second of tracing; the full product was run once by hand, see the README).
MATRIX = [(dtype, HIDDEN_ACTIVATIONS[(i + shift) % len(HIDDEN_ACTIVATIONS)],
           *LOSS_OUTPUTS[i % len(LOSS_OUTPUTS)])
          for dtype, shift in (("float32", 0), ("float64", 2))
          for i in range(max(len(LOSS_OUTPUTS), len(HIDDEN_ACTIVATIONS)))]
#: The bounds of the issue: float32 relative to the outputs' scale, float64 absolute.
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}
N_FEATURES, N_HIDDEN, N_OUTPUTS = 5, 6, 3


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(1):
        yield


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    y = np.argmax(x[:, :N_OUTPUTS], axis=1)
    return x, y


def _targets(loss, y):
    """Targets the loss accepts (from the loss registry's own sampler; labels as given)."""
    if loss == "cross_entropy":
        return y
    return mlp.losses.LOSSES[loss].sample_targets(np.random.default_rng(1), len(y), N_OUTPUTS)


def _trained(backend, dtype, activation="tanh", loss="cross_entropy", output=None,
             hidden=(N_HIDDEN,)):
    x, y = _data()
    model = mlp.MLP([N_FEATURES, *hidden, N_OUTPUTS], activation=activation,
                    output_activation=output, loss=loss, backend=backend, dtype=dtype, seed=1)
    model.fit(x, _targets(loss, y), epochs=3, batch_size=20, optimizer="sgd",
              learning_rate=0.1)
    return model


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _largest_difference(got, expected, dtype):
    """float32: relative to the largest output; float64: absolute."""
    diff = float(np.max(np.abs(got.astype(np.float64) - expected)))
    if dtype == "float32":
        diff /= max(float(np.max(np.abs(expected))), np.finfo(np.float32).tiny)
    return diff


def test_the_matrix_covers_every_activation_loss_and_output():
    for dtype in ("float32", "float64"):
        rows = [row[1:] for row in MATRIX if row[0] == dtype]
        assert {activation for activation, _, _ in rows} == set(HIDDEN_ACTIVATIONS)
        assert {(loss, output) for _, loss, output in rows} == set(LOSS_OUTPUTS)


@pytest.mark.parametrize("dtype,activation,loss,output", MATRIX)
def test_onnx_runtime_outputs_equal_predict(backend, activation, loss, output, dtype,
                                            tmp_path):
    model = _trained(backend, dtype, activation, loss, output)
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = _session(path)
    x = np.random.default_rng(7).normal(scale=2.0, size=(50, N_FEATURES))
    results = session.run(None, {"x": x.astype(dtype)})
    expected = backend.to_numpy(model.predict(x))
    assert results[0].dtype == np.dtype(dtype) and results[0].shape == expected.shape
    assert _largest_difference(results[0], expected, dtype) <= TOLERANCE[dtype]
    if model.is_classifier:
        assert [o.name for o in session.get_outputs()] == ["predict", "label"]
        np.testing.assert_array_equal(results[1], backend.to_numpy(model.predict_classes(x)))
        assert results[1].dtype == np.int64
    else:
        assert [o.name for o in session.get_outputs()] == ["predict"]


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy", "mse"])
def test_batch_dimension_is_free(backend, loss, tmp_path):
    model = _trained(backend, "float32", "relu", loss)
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    session = _session(path)
    x_all = np.random.default_rng(3).normal(size=(1000, N_FEATURES)).astype(np.float32)
    for n in (1, 7, 1000, 0):
        x = x_all[:n]
        results = session.run(None, {"x": x})
        assert results[0].shape == (n, N_OUTPUTS)
        if n:
            expected = backend.to_numpy(model.predict(x))
            assert _largest_difference(results[0], expected, "float32") <= 1e-6
            if model.is_classifier:
                np.testing.assert_array_equal(results[1],
                                              backend.to_numpy(model.predict_classes(x)))


def _shape(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_graph_signature_and_weights_as_initializers(dtype, tmp_path):
    model = _trained("numpy", dtype, hidden=(N_HIDDEN, N_HIDDEN))
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    proto = onnx.load(path)
    elem = {"float32": onnx.TensorProto.FLOAT, "float64": onnx.TensorProto.DOUBLE}[dtype]
    (x,) = proto.graph.input
    assert x.name == "x" and _shape(x) == ["N", N_FEATURES]
    assert x.type.tensor_type.elem_type == elem
    predict, label = proto.graph.output
    assert (predict.name, _shape(predict), predict.type.tensor_type.elem_type) == (
        "predict", ["N", N_OUTPUTS], elem)
    assert (label.name, _shape(label), label.type.tensor_type.elem_type) == (
        "label", ["N"], onnx.TensorProto.INT64)
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert sorted(stored) == ["W0", "W1", "W2", "b0", "b1", "b2"]
    for i, (W, b) in enumerate(model.get_weights()):
        np.testing.assert_array_equal(stored[f"W{i}"], W)  # bit for bit
        np.testing.assert_array_equal(stored[f"b{i}"], b)
        assert stored[f"W{i}"].dtype == np.dtype(dtype)
    assert proto.producer_name == "mlp"
    assert {p.key for p in proto.metadata_props} == {"mlp_config"}


def test_binary_cross_entropy_label_is_zero_one_per_output(tmp_path):
    model = _trained("numpy", "float64", loss="binary_cross_entropy")
    model.export_onnx(tmp_path / "m.onnx")
    x = np.random.default_rng(5).normal(size=(30, N_FEATURES))
    probs, label = _session(tmp_path / "m.onnx").run(None, {"x": x})
    assert label.shape == (30, N_OUTPUTS)
    np.testing.assert_array_equal(label, (probs > 0.5).astype(np.int64))
    assert set(np.unique(label)) <= {0, 1}


@pytest.mark.parametrize("outputs,names", [
    ("predict", ["predict"]), ("label", ["label"]), (["label", "predict"], ["predict", "label"]),
    (("predict",), ["predict"]), (None, ["predict", "label"]),
])
def test_outputs_chooses_the_graph_outputs(outputs, names, tmp_path):
    model = _trained("numpy", "float32")
    model.export_onnx(tmp_path / "m.onnx", outputs=outputs)
    assert [o.name for o in _session(tmp_path / "m.onnx").get_outputs()] == names


@pytest.mark.parametrize("outputs,error,message", [
    ("proba", ValueError, "outputs must be one of 'predict', 'label', got 'proba'"),
    (["predict", 3], TypeError, "outputs must be one of 'predict', 'label', got 3"),
    ([], TypeError, "outputs must be 'predict', 'label', a non-empty list of them or None"),
    (7, TypeError, "outputs must be 'predict', 'label', a non-empty list of them or None"),
])
def test_bad_outputs_are_refused_and_write_nothing(outputs, error, message, tmp_path):
    model = _trained("numpy", "float32")
    with pytest.raises(error, match=message.replace("(", r"\(")):
        model.export_onnx(tmp_path / "m.onnx", outputs=outputs)
    assert os.listdir(tmp_path) == []


def test_label_output_needs_a_classifier(tmp_path):
    model = _trained("numpy", "float32", loss="mse")
    with pytest.raises(ValueError, match="outputs 'label' needs a classification loss .*'mse'"):
        model.export_onnx(tmp_path / "m.onnx", outputs=["predict", "label"])
    assert os.listdir(tmp_path) == []


def test_without_ndonnx_the_error_names_the_extra(tmp_path, monkeypatch):
    model = _trained("numpy", "float32")
    monkeypatch.setitem(sys.modules, "ndonnx", None)  # `import ndonnx` raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'mlp-array-api\[onnx\]'"):
        model.export_onnx(tmp_path / "m.onnx")
    assert os.listdir(tmp_path) == []


def test_file_mode_is_that_of_a_normal_write(tmp_path):
    model = _trained("numpy", "float32")
    model.export_onnx(tmp_path / "m.onnx")
    with open(tmp_path / "plain", "wb"):
        pass
    assert os.stat(tmp_path / "m.onnx").st_mode == os.stat(tmp_path / "plain").st_mode
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "plain"]  # no temporary file left


def test_export_replaces_a_file_and_a_failed_write_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    model = _trained("numpy", "float32")
    model.export_onnx(str(path))
    assert onnx.load(path).graph.input[0].name == "x"
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PermissionError,
                       match=re.escape(f"cannot write the ONNX file to {str(path)!r}")):
        model.export_onnx(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_errors_name_the_users_path(tmp_path):
    model = _trained("numpy", "float32")
    missing = tmp_path / "no" / "m.onnx"
    with pytest.raises(FileNotFoundError,
                       match=re.escape(f"cannot write the ONNX file to {str(missing)!r}: folder")):
        model.export_onnx(missing)
    with pytest.raises(IsADirectoryError,
                       match=re.escape(f"cannot write the ONNX file to {str(tmp_path)!r}: "
                                       "it is a folder")):
        model.export_onnx(tmp_path)
    with pytest.raises(TypeError, match="path must be a file path"):
        model.export_onnx(3)


def test_the_path_is_checked_before_the_graph_is_built(tmp_path, monkeypatch):
    from mlp import export

    model = _trained("numpy", "float32")

    def never(*args, **kwargs):
        raise AssertionError("built the graph for a path that cannot be written")

    monkeypatch.setattr(export, "onnx_model", never)
    with pytest.raises(FileNotFoundError, match=r"cannot write the ONNX file to .*: folder"):
        model.export_onnx(tmp_path / "no" / "m.onnx")
    with pytest.raises(IsADirectoryError, match=r"cannot write the ONNX file to 'm/': it names "
                                                r"a folder"):
        model.export_onnx("m/")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_model_trained_with_dropout_exports_its_inference_graph(backend, dtype, tmp_path):
    """Dropout acts only while training: the graph is the plain forward pass, which
    ONNX Runtime runs as `MLP.predict` does."""
    x, y = _data()
    model = mlp.MLP([N_FEATURES, 8, 6, N_OUTPUTS], loss="cross_entropy", backend=backend,
                    dtype=dtype, seed=2, dropout=[0.5, 0.2], input_dropout=0.1)
    model.fit(x, y, epochs=3, batch_size=20)
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    probs, labels = _session(path).run(None, {"x": x.astype(dtype)})
    expected = backend.to_numpy(model.predict(x))
    assert _largest_difference(probs, expected, dtype) <= TOLERANCE[dtype]
    np.testing.assert_array_equal(labels, backend.to_numpy(model.predict_classes(x)))
