"""`to_onnx` on the scikit-learn estimators: the same exporter and forward pass as
`mlp.MLP.export_onnx`, checked with ONNX Runtime against the estimators' own outputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.preprocessing import StandardScaler

from mlp.sklearn import MLPClassifier, MLPRegressor

ort = pytest.importorskip("onnxruntime")


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"x": x}), strict=True))


@pytest.mark.parametrize("load", [load_iris, load_breast_cancer], ids=["multiclass", "binary"])
def test_a_classifiers_onnx_file_gives_its_probabilities_and_labels(tmp_path, load):
    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                        backend="numpy").fit(X, y)
    est.to_onnx(tmp_path / "c.onnx")
    out = _run(tmp_path / "c.onnx", X.astype(est.coefs_[0].dtype))
    proba = est.predict_proba(X)
    expected = proba if proba.shape[1] > 2 else proba[:, 1:]
    np.testing.assert_allclose(out["predict"], expected, rtol=1e-6, atol=1e-12)
    labels = out["label"]  # (N,) argmax, or (N, 1) 0/1 for a binary classifier
    index = labels if labels.ndim == 1 else labels[:, 0]
    np.testing.assert_array_equal(est.classes_[index], est.predict(X))


def test_a_regressors_onnx_file_gives_its_predictions(tmp_path):
    X, y = load_diabetes(return_X_y=True)
    est = MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                       backend="numpy").fit(X, y)
    est.to_onnx(tmp_path / "r.onnx")
    out = _run(tmp_path / "r.onnx", X.astype(est.coefs_[0].dtype))
    assert set(out) == {"predict"}
    np.testing.assert_allclose(out["predict"][:, 0], est.predict(X), rtol=1e-9, atol=1e-9)
