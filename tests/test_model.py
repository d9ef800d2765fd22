"""Self-describing models: `get_config`/`from_config`, `repr`, pickling, `summary`."""

from __future__ import annotations

import copy
import io
import json
import pickle

import joblib
import numpy as np
import pytest

import backends
import mlp
from mlp import optimizers

CONFIG_KEYS = ["layer_sizes", "activation", "output_activation", "loss", "init", "dtype", "seed"]


def _data(n=24, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, np.argmax(x[:, :k], axis=1)


def _trained(backend, dtype="float64"):
    x, y = _data()
    model = mlp.MLP([4, 6, 3], loss="cross_entropy", activation="tanh", backend=backend,
                    dtype=dtype, seed=5)
    model.fit(x, y, epochs=2, batch_size=8, optimizer=optimizers.Adam(0.05))
    return model, x, y


def test_get_config_is_json_ready_and_resolves_defaults():
    model = mlp.MLP((3, 5, 2), backend="numpy")
    config = model.get_config()
    assert list(config) == CONFIG_KEYS
    assert json.loads(json.dumps(config)) == config
    assert config == {"layer_sizes": [3, 5, 2], "activation": "relu",
                      "output_activation": "identity", "loss": "mse", "init": "he",
                      "dtype": "float32", "seed": model.seed}
    assert isinstance(config["seed"], int)


def test_from_config_rebuilds_the_same_model(backend):
    model = mlp.MLP([4, 6, 3], loss="cross_entropy", activation="leaky_relu", dtype="float64",
                    seed=11, backend="numpy")
    twin = mlp.MLP.from_config(model.get_config(), backend=backend)
    assert twin.get_config() == model.get_config()
    assert twin.backend.name == backend.name
    for (W, b), (W0, b0) in zip(twin.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


@pytest.mark.parametrize("config, exc, match", [
    ([3, 2], TypeError, r"config must be a dict from MLP\.get_config\(\), got list"),
    ({"layer_sizes": [3, 2]}, ValueError, r"config lacks activation, output_activation, loss"),
    ({**dict.fromkeys(CONFIG_KEYS), "layer_sizes": [3, 2], "colour": 1}, ValueError,
     r"config has unknown keys colour"),
])
def test_from_config_refuses_what_get_config_never_returns(config, exc, match):
    with pytest.raises(exc, match=match):
        mlp.MLP.from_config(config)


def test_repr_comes_from_the_config():
    model = mlp.MLP([3, 2], loss="binary_cross_entropy", backend="numpy", seed=4)
    assert repr(model) == ("MLP(layer_sizes=[3, 2], activation='relu', "
                           "output_activation='sigmoid', loss='binary_cross_entropy', "
                           "init='he', dtype='float32', seed=4, backend='numpy')")


@pytest.mark.parametrize("dtype", [np.float32, np.dtype("float64"), np.dtype(np.float32),
                                   "float64"])
def test_dtype_is_stored_by_name_and_the_model_saves(dtype, tmp_path):
    model = mlp.MLP([3, 2], dtype=dtype, backend="numpy", seed=0)
    name = np.dtype(dtype).name
    assert model.dtype_name == model.get_config()["dtype"] == name
    model.save(tmp_path / "m.npz")
    assert mlp.load(tmp_path / "m.npz").get_weights()[0][0].dtype == np.dtype(name)


def _roundtrips():
    def by_pickle(model):
        return pickle.loads(pickle.dumps(model))

    def by_joblib(model):
        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        buffer.seek(0)
        return joblib.load(buffer)

    return [by_pickle, copy.deepcopy, by_joblib]


@pytest.mark.parametrize("roundtrip", _roundtrips(), ids=["pickle", "deepcopy", "joblib"])
def test_pickled_model_predicts_identically_with_its_state(backend, roundtrip):
    model, x, y = _trained(backend)
    restored = roundtrip(model)
    assert restored.backend.name == backend.name and restored is not model
    assert restored.get_config() == model.get_config()
    np.testing.assert_array_equal(backend.to_numpy(restored.predict(x)),
                                  backend.to_numpy(model.predict(x)))
    assert restored.history_.history == model.history_.history
    assert restored.optimizer_ == model.optimizer_
    got = [backend.to_numpy(a) for a in _leaves(restored.optimizer_state_)]
    want = [backend.to_numpy(a) for a in _leaves(model.optimizer_state_)]
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    # back on the backend, as the same kind of object (a device array where it was one)
    assert [type(a) for a in _leaves(restored.optimizer_state_)] == [
        type(a) for a in _leaves(model.optimizer_state_)]
    # the batch order continues too: one more epoch gives the same weights on both
    for m in (model, restored):
        m.fit(x, y, epochs=1, batch_size=8, optimizer="sgd", learning_rate=0.1)
    for (W, b), (W0, b0) in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def _leaves(tree):
    if tree is None:
        return []
    if isinstance(tree, (tuple, list)):
        return [leaf for t in tree for leaf in _leaves(t)]
    return [tree]


def test_pickle_holds_no_backend_objects():
    model, _, _ = _trained("numpy")
    blob = pickle.dumps(model)
    assert b"array_api_compat" not in blob and b"backends._numpy" not in blob


def test_unpickling_where_the_backend_cannot_run(monkeypatch):
    model, _, _ = _trained("numpy")
    blob = pickle.dumps(model)
    real = backends.get_backend

    def missing(name=None):
        if name == "numpy":
            raise backends.BackendUnavailableError("numpy is not installed here")
        return real(name)

    monkeypatch.setattr(backends, "get_backend", missing)
    with pytest.raises(backends.BackendUnavailableError, match="numpy is not installed here"):
        pickle.loads(blob)


def test_summary_prints_once_and_returns_none(capsys):
    model = mlp.MLP([3, 4, 2], backend="numpy", seed=0)
    assert model.summary() is None
    out = capsys.readouterr().out
    assert out.count("dense_0") == 1 and "total parameters: 26" in out
