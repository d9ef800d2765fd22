"""Self-describing models: `get_config`/`from_config`, `repr`, pickling, `summary`."""

from __future__ import annotations

import copy
import io
import json
import pickle

import joblib
import numpy as np
import pytest

import mlp
from mlp import backends, optimizers

CONFIG_KEYS = ["layer_sizes", "activation", "output_activation", "loss", "init", "dtype", "seed",
               "dropout", "input_dropout", "batch_norm", "momentum", "epsilon"]


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
                      "dtype": "float32", "seed": model.seed, "dropout": 0.0,
                      "input_dropout": 0.0, "batch_norm": False, "momentum": 0.99,
                      "epsilon": 1e-3}
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


def test_from_config_takes_weights_given_or_read_once_the_config_is_checked(backend):
    """``weights=``: the model has them (checked as `set_weights` checks them, never
    drawn); a function giving them is called only for a config that builds a model."""
    model, _, _ = _trained(backend)
    config, weights = model.get_config(), model.get_weights()
    twin = mlp.MLP.from_config(config, backend=backend, weights=weights)
    calls = []
    lazy = mlp.MLP.from_config(config, backend=backend,
                               weights=lambda: calls.append(1) or weights)
    assert calls == [1]
    for built in (twin, lazy):
        assert built.epochs_trained_ == 0 and built.optimizer_ is None
        for (W, b), (W0, b0) in zip(built.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(W, W0)
            np.testing.assert_array_equal(b, b0)
    with pytest.raises(ValueError, match=r"activation must be one of"):
        mlp.MLP.from_config({**config, "activation": "nope"}, weights=lambda: calls.append(2))
    assert calls == [1]
    with pytest.raises(ValueError, match=r"layer 0 expects W of shape \(4, 6\)"):
        mlp.MLP.from_config(config, backend=backend, weights=weights[::-1])


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


def _library_references(blob: bytes) -> set[str]:
    """The top-level packages whose objects unpickling ``blob`` imports."""

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(module.split(".")[0])
            return super().find_class(module, name)

    found: set[str] = set()
    Recorder(io.BytesIO(blob)).load()
    return found


def test_a_pickle_holds_numpy_arrays_only_whatever_the_backend(backend):
    """Weights, optimizer state, training state (``train_state_``), history: all NumPy in
    the pickle, which names no module of the backend's library (so a process without it
    reads it); unpickled, every array is back on the backend and training continues."""
    model, x, y = _trained(backend)
    assert model.train_state_ is not None
    blob = pickle.dumps(model)
    assert _library_references(blob) <= {"mlp", "numpy", "copyreg", "builtins", "_codecs"}
    for library in ("torch", "jax", "array_api_strict", "array_api_compat", "backends"):
        # the backend's name once, as the name the model is rebuilt on
        assert blob.count(library.encode()) == (library == backend.name)
    restored = pickle.loads(blob)
    state = restored.train_state_
    assert state.params is restored.params and state.opt_state is restored.optimizer_state_
    assert state.epoch == restored.epochs_trained_ == 2 and state.rng is restored._shuffle_rng
    for W, b in restored.params:
        assert backend.is_native(W) and backend.is_native(b)
    restored.fit(x, y, epochs=1, batch_size=8)
    model.fit(x, y, epochs=1, batch_size=8)
    for (W, b), (W0, b0) in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


def test_unpickling_where_the_trained_models_backend_cannot_run(backend, monkeypatch):
    model, _, _ = _trained(backend)
    blob = pickle.dumps(model)
    real = backends.get_backend

    def missing(name=None, devices=None):
        if name == backend.name:
            raise backends.BackendUnavailableError(f"{name} is not installed here")
        return real(name)

    monkeypatch.setattr(backends, "get_backend", missing)
    with pytest.raises(backends.BackendUnavailableError, match=f"{backend.name} is not "
                                                                "installed here"):
        pickle.loads(blob)


_FIXED = {"layer_sizes": (4, 9, 3), "activation": "tanh", "output_activation": "identity",
          "loss_name": "mse", "init": "normal", "dtype_name": "float32", "seed": 3}


@pytest.mark.parametrize("name", [*_FIXED, "dtype", "backend", "xp"])
def test_what_a_model_is_built_with_is_read_only(name, tmp_path):
    """Every attribute `save` writes into the config (and `load` checks the weights
    against), and the backend: assigning one is refused, the model unchanged and still
    saved and loaded whole."""
    model, x, _ = _trained("numpy")
    config = model.get_config()
    value = _FIXED.get(name, 1)
    with pytest.raises(AttributeError, match=rf"MLP\.{name} is read-only: it is fixed when "
                                             r"the model is built"):
        setattr(model, name, value)
    with pytest.raises(AttributeError, match=rf"MLP\.{name} is read-only"):
        delattr(model, name)
    assert model.get_config() == config
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz")
    assert loaded.get_config() == config
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_read_only_messages_say_what_to_do_instead():
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    with pytest.raises(AttributeError, match=r"build a new model instead, e\.g\. "
                                             r"mlp\.MLP\.from_config\(\{\*\*model\.get_config"
                                             r"\(\), 'loss': \.\.\.\}\)"):
        model.loss_name = "cross_entropy"
    with pytest.raises(AttributeError, match=r"save it and load it there: model\.save\(path\); "
                                             r"mlp\.load\(path, backend=\.\.\.\)"):
        model.backend = "torch"


def test_a_model_too_large_for_the_machine_is_refused_before_allocating():
    config = mlp.MLP([3, 2], backend="numpy", seed=0).get_config()
    with pytest.raises(MemoryError, match=r"layer_sizes \[3, 1000000000000, 2\] makes a model "
                                          r"of 6,000,000,000,002 parameters, whose initial "
                                          r"weights need about 72 TB \(drawn in float64\): "
                                          r"(more than this machine's memory \(.*\)|cannot "
                                          r"be allocated here); use smaller layers"):
        mlp.MLP.from_config({**config, "layer_sizes": [3, 10**12, 2]})
    with pytest.raises(MemoryError, match=r"makes a model of 10,000,000,000,020,000,000,001 "):
        mlp.MLP([10**12, 10**10, 1])


def test_a_failed_allocation_names_the_layers(monkeypatch):
    import mlp.model

    def no_memory(*args):
        raise MemoryError("Unable to allocate 3 GiB")

    monkeypatch.setattr(mlp.model, "initial_weights", no_memory)
    with pytest.raises(MemoryError, match=r"layer_sizes \[3, 4, 2\] makes a model of 26 "
                                          r"parameters, .*: cannot be allocated here"):
        mlp.MLP([3, 4, 2])


def test_summary_prints_once_and_returns_none(capsys):
    model = mlp.MLP([3, 4, 2], backend="numpy", seed=0)
    assert model.summary() is None
    out = capsys.readouterr().out
    assert out.count("dense_0") == 1 and "total parameters: 26" in out


@pytest.mark.parametrize("attribute, value, match", [
    ("epochs_trained_", "2", r"model\.epochs_trained_ is '2', not a count of epochs; fit keeps "
                             r"the epoch count and the history itself"),
    ("epochs_trained_", -1, r"model\.epochs_trained_ is -1, not a count of epochs"),
    ("history_", [], r"model\.history_ is a list of 0 items, not a History \(or None\)"),
    ("params", None, r"model\.params is None where the model has 2 \(W, b\) pairs; set the "
                     r"weights with model\.set_weights"),
    ("optimizer_", "adam", r"model\.optimizer_ is 'adam', not an optimizer; fit keeps the "
                           r"optimizer itself - pass optimizer=\.\.\. to fit to change it"),
    ("optimizer_state_", (1, 2), r"model\.optimizer_state_ has another structure than the "
                                 r"state the last fit left \(.*\); fit keeps the optimizer's "
                                 r"state itself - fit with reset_optimizer=True"),
])
def test_a_training_state_damaged_by_hand_is_refused_by_fit_and_save(backend, tmp_path,
                                                                    attribute, value, match):
    """What save writes and fit continues from, assigned outside fit: refused with what to
    do, before anything is written or trained (the weights-only save needs only params)."""
    model, x, y = _trained(backend)
    setattr(model, attribute, value)
    for call in (lambda: model.fit(x, y, epochs=1),
                 lambda: model.save(tmp_path / "m.npz", include_optimizer=True)):
        with pytest.raises(ValueError, match=r"^(fit|save): " + match):
            call()
    assert not (tmp_path / "m.npz").exists()
    if attribute == "optimizer_state_":  # a fresh state is what reset_optimizer asks for
        model.fit(x, y, epochs=1, reset_optimizer=True)
        assert model.epochs_trained_ == 3
    if attribute != "params":
        model.save(tmp_path / "w.npz")


def test_uneven_history_lists_set_by_hand_are_refused():
    model, x, y = _trained("numpy")
    model.history_.history["loss"].append(0.1)
    with pytest.raises(ValueError, match=r"^fit: model\.history_ has 2 epochs but 3 values of "
                                         r"'loss'"):
        model.fit(x, y, epochs=1)


@pytest.mark.parametrize("edit, match", [
    (lambda h: (h.epoch.append(h.epoch[-1]), [v.append(0.5) for v in h.history.values()]),
     r"3 epochs, more than the 2 the model has trained"),
    (lambda h: h.epoch.__setitem__(slice(None), [e + 1000 for e in h.epoch]),
     r"epochs \[1000, 1001\] that are not whole numbers increasing strictly from 0 up to 1"),
    (lambda h: h.epoch.__setitem__(0, -1), r"epochs \[-1, 1\] that are not whole numbers"),
    (lambda h: h.history["loss"].__setitem__(1, "low"), r"a value of 'loss' that is not a "
                                                         r"number"),
    (lambda h: h.history["loss"].__setitem__(1, 10 ** 400), r"a value of 'loss' that is not "
                                                             r"a number"),
], ids=["duplicate-row", "renumbered", "negative", "string", "overflowing"])
def test_a_history_edited_by_hand_that_load_would_refuse_is_refused_by_fit_and_save(
        tmp_path, edit, match):
    """save applies load's rules to the history before writing (no file it writes fails to
    load): lengths kept equal is not enough."""
    model, x, y = _trained("numpy")
    edit(model.history_)
    for call in (lambda: model.fit(x, y, epochs=1),
                 lambda: model.save(tmp_path / "m.npz", include_optimizer=True)):
        with pytest.raises(ValueError, match=r"^(fit|save): model\.history_ has " + match):
            call()
    assert not (tmp_path / "m.npz").exists() and model.epochs_trained_ == 2


# ------------------------------------------ rows padded to the ladder (mlp.buckets)
_SIZES = [1, 2, 3, 15, 16, 17, 100, 999]


def _ladder_model(backend, loss="cross_entropy", dtype="float64", layers=(4, 16, 8, 3)):
    return mlp.MLP(list(layers), loss=loss, activation="tanh", backend=backend, dtype=dtype,
                   seed=2)


def test_predict_pads_rows_that_change_no_output(backend):
    """Where the model pads rows (a backend that compiles), each row's output is bit for
    bit the one the same program gives it with the data's own rows after it rather than
    the padding, and the forward pass of the rows alone to 1e-12 (XLA may order a matrix
    product's sums by its shape); elsewhere nothing is padded: the forward pass itself."""
    x = np.random.default_rng(3).normal(size=(1024, 4))
    model = _ladder_model(backend)
    forward = backend.jit(lambda p, x: mlp.core.forward(model.spec, p, x))
    for n in _SIZES:
        got = backend.to_numpy(model.predict(x[:n]))
        assert got.shape == (n, 3)
        with backend.precision(model.dtype):
            alone = backend.to_numpy(forward(model.params, backend.asarray(x[:n])))
        np.testing.assert_allclose(got, alone, rtol=1e-12, atol=1e-15)
        if model.bucketed():
            whole = model.predict(x[:mlp.buckets.bucket(n)])
            assert np.array_equal(got, backend.to_numpy(whole)[:n])
        else:
            assert np.array_equal(got, alone)
        assert np.array_equal(backend.to_numpy(model.predict_proba(x[:n])), got)
        assert np.array_equal(backend.to_numpy(model.predict_classes(x[:n])),
                              np.argmax(got, axis=1))


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "binary_cross_entropy", "poisson"])
def test_evaluate_loss_and_gradients_are_those_of_the_rows_alone(backend, loss):
    """The padding rows weigh 0: every metric, the loss and the gradients are those of
    the data's rows alone (unweighted, or with their weights) to 1e-12 in float64."""
    rng = np.random.default_rng(4)
    model = _ladder_model(backend, loss, layers=(3, 5, 2))
    spec, xp = model.spec, model.xp

    def alone(p, x, t, labels, w):
        z, a = mlp.core.forward_logits(spec, p, mlp.core.zero_weight_rows(xp, x, w))
        _, grads = mlp.core.loss_and_gradients(spec, p, x, t, weights=w)
        return (spec.loss.value(xp, z, a, t, w), *spec.loss.score(xp, z, a, t, labels, w),
                grads)

    reference = backend.jit(alone)
    for n, weighted in [(1, False), (2, True), (3, False), (17, True), (100, False)]:
        x = rng.normal(size=(n, 3))
        y = spec.loss.sample_targets(rng, n, 2)
        sw = rng.uniform(0.5, 2.0, size=n) if weighted else None
        *values, grads = reference(model.params, *model.prepare_data(x, y, sw))
        expected = dict(zip(["loss", *spec.loss.score_names], map(float, values)))
        got = model.evaluate(x, y, sw)
        assert got.keys() == expected.keys()
        for name, value in got.items():
            assert value == pytest.approx(expected[name], rel=1e-12, abs=1e-12), (n, name)
        assert model.loss(x, y, sw) == pytest.approx(expected["loss"], rel=1e-12, abs=1e-12)
        for got_pair, pair in zip(model.gradients(x, y, sw), grads):
            for g, e in zip(got_pair, pair):
                np.testing.assert_allclose(backend.to_numpy(g), backend.to_numpy(e),
                                           rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow in the user's row
def test_padding_rows_whose_output_overflows_are_not_the_users(backend):
    """A row of zeros overflows this network (its biases alone reach 1e40) while x = 1
    does not: the padding rows' outputs are never counted, and a row of the user's that
    overflows is reported among the user's rows."""
    model = mlp.MLP([1, 1, 1], backend=backend, seed=0)
    model.set_weights([(np.array([[-1e20]]), np.array([1e20])),
                       (np.array([[1e20]]), np.array([0.0]))])
    ones = np.ones((3, 1))
    assert np.array_equal(backend.to_numpy(model.predict(ones)), np.zeros((3, 1)))
    assert model.evaluate(ones, np.zeros(3)) == {"loss": 0.0, "r2": 1.0, "mse": 0.0}
    assert model.loss(ones, np.zeros(3)) == 0.0
    for dW, db in model.gradients(ones, np.zeros(3)):
        assert not np.any(backend.to_numpy(dW)) and not np.any(backend.to_numpy(db))
    with pytest.raises(ValueError, match=r"^the network's output for 1 of 3 row\(s\) of x "
                                         r"overflows float32"):
        model.predict(np.array([[1.0], [0.0], [1.0]]))


def test_a_loss_without_row_weights_evaluates_its_rows_unpadded(backend, value_only_mae):
    """A loss written only for the unweighted mean cannot weigh padding rows 0: its
    evaluate, loss and gradients run on the data's rows as they are (predict, which needs
    no weights, is padded as for any loss)."""
    rng = np.random.default_rng(8)
    model = mlp.MLP([3, 2], loss="mae", activation="identity", backend=backend,
                    dtype="float64", seed=0)
    assert model.bucketed() == backend.compiles and not model.bucketed(weighted=True)
    (W, b), = model.get_weights()
    for n in (1, 5, 17):
        x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 2))
        mae = float(np.mean(np.abs(x @ W + b - y)))
        assert model.evaluate(x, y)["loss"] == pytest.approx(mae, rel=1e-12)
        assert model.loss(x, y) == pytest.approx(mae, rel=1e-12)
        dW, db = model.gradients(x, y)[0]
        sign = np.sign(x @ W + b - y) / (2 * n)
        np.testing.assert_allclose(backend.to_numpy(dW), x.T @ sign, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(backend.to_numpy(db), sign.sum(axis=0), rtol=1e-12,
                                   atol=1e-15)
        np.testing.assert_allclose(backend.to_numpy(model.predict(x)), x @ W + b, rtol=1e-12)
