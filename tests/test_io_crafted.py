"""Loading crafted model files: the cost is bounded by the file's size, and whatever loads
is consistent (an epoch count, history, optimizer state and shuffle stream a fit can go on
from and save again)."""

from __future__ import annotations

import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import mlp
from mlp import optimizers
from mlp.io import MAX_EXPANSION, ModelFileError
from tests._helpers import RawEntry, deflated_zeros, rewrite_npz, write_zip


def _trained_file(tmp_path, epochs=3, optimizer="adam", name="m.npz"):
    path = tmp_path / name
    model = mlp.MLP([3, 4, 2], backend="numpy", seed=0)
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=epochs, optimizer=optimizer,
              batch_size=2)
    model.save(path, include_optimizer=True)
    return path


def _entries(path):
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _npy(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _training(path):
    with np.load(path) as data:
        return json.loads(str(data["training"]))


def _json(value):
    return np.asarray(json.dumps(value))


def _refused_peak(path, match, load=mlp.load):
    """The most memory (bytes) allocated while ``load(path)`` refuses the file."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=match):
            load(path) if load is not mlp.load else load(path, backend="numpy")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------- bounded by the file's size
def test_a_huge_network_in_a_small_file_is_refused_unread(tmp_path):
    """400 MB of float32 zeros deflate to about 400 kB: a valid zip entry (its CRC holds)
    that a load would once decompress in full."""
    config = mlp.MLP([3, 2], seed=0).get_config() | {"layer_sizes": [100000, 1000, 2]}
    path = tmp_path / "bomb.npz"
    write_zip(path, {"mlp_format.npy": _npy(np.asarray(1)),
                     "config.npy": _npy(_json(config)),
                     "W0.npy": deflated_zeros("float32", (100000, 1000)),
                     "b0.npy": _npy(np.zeros(1000, "float32")),
                     "W1.npy": _npy(np.ones((1000, 2), "float32")),
                     "b1.npy": _npy(np.zeros(2, "float32"))})
    assert path.stat().st_size < 420_000  # a thousandth of the size it declares
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("W0.npy").file_size == 100000 * 1000 * 4 + 128  # declared honestly
    peak = _refused_peak(path, r"bomb\.npz' holds a damaged mlp model: its entries declare "
                               r"400,\d{3},\d{3} bytes, over 100 times the file's \d+,\d{3} "
                               r"bytes \(refused unread")
    assert peak < 2_000_000  # not the 400 MB declared


def test_an_eight_million_epoch_history_in_a_small_file_is_refused_unread(tmp_path):
    path = _trained_file(tmp_path)
    training = _training(path) | {"epochs_trained": 8_000_000}
    entries = _entries(path) | {
        "training.npy": _npy(_json(training)),
        "history_epoch.npy": deflated_zeros("int64", (8_000_000,)),
        "history_values.npy": deflated_zeros("float64", (8_000_000, 3))}
    write_zip(path, entries)
    assert path.stat().st_size < 300_000
    match = r"m\.npz' holds a damaged (mlp model|callback states): its entries declare"
    assert _refused_peak(path, match) < 2_000_000
    assert _refused_peak(path, match, load=mlp.io.callback_states) < 2_000_000


def test_an_entry_whose_directory_overstates_its_size_is_refused_unread(tmp_path):
    path = _trained_file(tmp_path)
    entries = _entries(path)
    blob = entries["W0.npy"]
    entries["W0.npy"] = RawEntry(blob, 0, 0, 1 << 31)  # stored, but "2 GB once read"
    write_zip(path, entries)
    assert _refused_peak(path, r"m\.npz' .* its entries declare 2,147,\d{3},\d{3} bytes"
                         ) < 1_000_000


def test_an_optimizer_state_is_checked_before_it_is_built(tmp_path):
    """A chain of 100 momentum traces on an 8 MB network would build 800 MB of state
    before finding that the file holds 400 scalars."""
    config = mlp.MLP([3, 2], seed=0).get_config() | {"layer_sizes": [2000, 1000, 1]}
    chain = {"name": "chain", "transformations": [{"name": "trace"}] * 100}
    entries = {"mlp_format.npy": _npy(np.asarray(2)), "config.npy": _npy(_json(config)),
               "W0.npy": deflated_zeros("float32", (2000, 1000)),
               "b0.npy": _npy(np.zeros(1000, "float32")),
               "W1.npy": _npy(np.zeros((1000, 1), "float32")),
               "b1.npy": _npy(np.zeros(1, "float32")),
               "optimizer.npy": _npy(_json(chain))}
    entries |= {f"opt_state_{i}.npy": _npy(np.zeros((), "float32")) for i in range(400)}
    path = tmp_path / "chain.npz"
    write_zip(path, entries)
    peak = _refused_peak(path, r"chain\.npz' holds a damaged mlp model: optimizer state array 0 "
                               r"has shape \(\) and dtype float32; expected shape \(2000, 1000\) "
                               r"and dtype float32")
    assert peak < 100_000_000  # the weights (8 MB) and their copies, not 100 times them
    del entries["opt_state_399.npy"]
    write_zip(path, entries)
    _refused_peak(path, r"its optimizer state has 399 arrays; .* needs 400")


@pytest.mark.parametrize("opt", [
    optimizers.chain(optimizers.clip_by_global_norm(1.0), optimizers.add_decayed_weights(0.1),
                     optimizers.scale_by_rms(), optimizers.trace(0.5),
                     optimizers.scale_by_learning_rate(0.01)),
    optimizers.chain(optimizers.scale_by_adam(), optimizers.trace(0.9, nesterov=True),
                     optimizers.scale_by_learning_rate(0.01)),
    optimizers.AdamW(0.01),
], ids=["clip-decay-rms-trace", "adam-trace", "adamw"])
def test_every_state_layout_round_trips(backend, tmp_path, opt):
    """The state's layout, foreseen before it is built, is the one ``init`` builds."""
    model = mlp.MLP([3, 5, 4, 2], backend=backend, seed=0)
    model.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=2, optimizer=opt, batch_size=2)
    model.save(tmp_path / "m.npz", include_optimizer=True)
    loaded = mlp.load(tmp_path / "m.npz", backend=backend)
    got, want = _leaves(loaded), _leaves(model)
    assert [a.shape for a in got] == [b.shape for b in want] and len(got) > 4
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def _leaves(model):
    return [np.asarray(model.backend.to_numpy(leaf))
            for leaf in mlp.tree.tree_leaves(model.optimizer_state_)]


def test_compressed_model_files_still_load(backend, tmp_path):
    """mlp writes its files uncompressed; real weights, states and histories compressed
    by hand (np.savez_compressed) stay far within the expansion bound."""
    x = np.linspace(-1, 1, 40).reshape(20, 2)
    model = mlp.MLP([2, 6, 1], backend="numpy", seed=0)
    model.fit(x, x[:, :1] ** 2, epochs=300, batch_size=None, optimizer="adam")
    model.save(tmp_path / "plain.npz", include_optimizer=True)
    with np.load(tmp_path / "plain.npz") as data:
        np.savez_compressed(tmp_path / "packed.npz", **{k: data[k] for k in data.files})
    with zipfile.ZipFile(tmp_path / "packed.npz") as zf:
        declared = sum(info.file_size for info in zf.infolist())
    assert declared > (tmp_path / "packed.npz").stat().st_size  # it is compressed
    loaded = mlp.load(tmp_path / "packed.npz", backend=backend)
    assert loaded.epochs_trained_ == 300 and loaded.history_.epoch == list(range(300))
    np.testing.assert_array_equal(loaded.history_.history["loss"], model.history_.history["loss"])
    for (W, b), (W0, b0) in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert MAX_EXPANSION == 100


# --------------------------------------------------------- consistent when loaded
def _with_training(**changes):
    return lambda path: {"training": _json(_training(path) | changes)}


def _with_rng(**changes):
    def damage(path):
        training = _training(path)
        training["shuffle_rng"] = training["shuffle_rng"] | changes
        return {"training": _json(training)}
    return damage


def _state_entry(i, fill):
    def damage(path):
        with np.load(path) as data:
            leaf = data[f"opt_state_{i}"]
        return {f"opt_state_{i}": np.full_like(leaf, fill)}
    return damage


_EPOCHS = r"its history's epochs are not distinct and increasing "
_RNG = r"its shuffle generator's "

# Adam on [3, 4, 2]: opt_state_0 step count, 1-4 first moments, 5-8 second moments
# (squares), 9 the learning rate's step count, 10 its scale.
CRAFTED = {
    "epochs-1e30": (_with_training(epochs_trained=10**30),
                    r"its epoch count 1000000000000000000000000000000 is not a count \(an "
                    r"integer from 0 to 2\*\*53\)"),
    "epochs-bool": (_with_training(epochs_trained=True), r"its epoch count True is not a count"),
    "epochs-float": (_with_training(epochs_trained=3.0), r"its epoch count 3\.0 is not a count"),
    "epochs-negative": (_with_training(epochs_trained=-1), r"its epoch count -1 is not a count"),
    "history-longer-than-epochs": (_with_training(epochs_trained=2),
                                   r"its history holds 3 epochs, more than its epoch count 2"),
    "epoch-uint64-max": (lambda p: {"history_epoch": np.array([0, 1, 2**64 - 1], np.uint64)},
                         _EPOCHS + r"from 0 to 2 \(its epoch count is 3\): "
                         r"\[0, 1, 18446744073709551615\]"),
    "epoch-negative": (lambda p: {"history_epoch": np.array([-1, 0, 1])},
                       _EPOCHS + r".*: \[-1, 0, 1\]"),
    "epoch-duplicate": (lambda p: {"history_epoch": np.array([0, 1, 1])},
                        _EPOCHS + r".*: \[0, 1, 1\]"),
    "epoch-decreasing": (lambda p: {"history_epoch": np.array([0, 2, 1])},
                         _EPOCHS + r".*: \[0, 2, 1\]"),
    "epoch-beyond-count": (lambda p: {"history_epoch": np.array([0, 1, 3])},
                           _EPOCHS + r"from 0 to 2 .*: \[0, 1, 3\]"),
    "epoch-bool": (lambda p: {"history_epoch": np.array([False, True, True])},
                   r"its history \(epochs \(3,\) of bool, values \(3, 3\) of float64\) does "
                   r"not match its 3 metric names"),
    "epoch-float": (lambda p: {"history_epoch": np.arange(3.0)},
                    r"its history \(epochs \(3,\) of float64"),
    "values-complex": (lambda p: {"history_values": np.ones((3, 3), complex)},
                       r"its history \(epochs \(3,\) of int64, values \(3, 3\) of complex128\) "
                       r"does not match"),
    "metric-twice": (lambda p: {"training": _json(_training(p) | {
        "history_metrics": ["loss", "loss", "mse"]})},
        r"its history names a metric twice \(\['loss', 'loss', 'mse'\]\)"),
    "metric-not-a-name": (_with_training(history_metrics=["loss", 3, "mse"]),
                          r"its history's metric names are not a list of names"),
    "adam-nan": (_state_entry(1, np.nan),
                 r"optimizer state array 1 \(first moments\) holds NaN or infinite values"),
    "adam-inf": (_state_entry(6, np.inf),
                 r"optimizer state array 6 \(mean of squared gradients\) holds NaN or infinite"),
    "adam-negative-squares": (_state_entry(5, -1.0),
                              r"optimizer state array 5 \(mean of squared gradients\) holds "
                              r"negative values"),
    "count-negative": (lambda p: {"opt_state_0": np.asarray(-3), "opt_state_9": np.asarray(-3)},
                       r"optimizer state array 0 \(step count\) holds counts outside \[0, \d+\] "
                       r"\(\[-3\]\)"),
    "count-uint64-max": (lambda p: {"opt_state_0": np.asarray(2**64 - 1, np.uint64)},
                         r"optimizer state array 0 \(step count\) holds counts outside"),
    "count-float": (lambda p: {"opt_state_0": np.asarray(6.0)},
                    r"optimizer state array 0 has shape \(\) and dtype float64; expected shape "
                    r"\(\) and dtype int"),
    "count-bool": (lambda p: {"opt_state_0": np.asarray(True)},
                   r"optimizer state array 0 has shape \(\) and dtype bool"),
    "counts-disagree": (lambda p: {"opt_state_9": np.asarray(5)},
                        r"its optimizer state's step counts disagree \(\[5, 6\]\)"),
    "scale-nan": (_state_entry(10, np.nan),
                  r"optimizer state array 10 \(learning-rate scale\) holds NaN or infinite"),
    "scale-negative": (_state_entry(10, -0.5),
                       r"optimizer state array 10 \(learning-rate scale\) holds negative values"),
    "weights-complex": (lambda p: {"W0": np.ones((3, 4), complex)},
                        r"the weights of layer 0 are complex128, not floating point"),
    "weights-bool": (lambda p: {"b1": np.ones(2, bool)},
                     r"the weights of layer 1 are bool, not floating point"),
    "weights-nan": (lambda p: {"b0": np.full(4, np.nan, "float32")},
                    r"weights of layer 0 contain NaN or infinite values"),
    "rng-bool": (_with_rng(has_uint32=True), _RNG + r"state is not a PCG64 state"),
    "rng-extra-key": (_with_rng(extra=1), _RNG + r"state is not a PCG64 state"),
    "rng-missing-key": (lambda p: {"training": _json(_training(p) | {"shuffle_rng": {
        k: v for k, v in _training(p)["shuffle_rng"].items() if k != "uinteger"}})},
        _RNG + r"state is not a PCG64 state"),
    "rng-negative": (_with_rng(state={"state": -5, "inc": 3}),
                     _RNG + r"state\.state -5 is out of range \[0, 2\*\*128\)"),
    "rng-even-increment": (_with_rng(state={"state": 5, "inc": 4}),
                           _RNG + r"increment is even"),
    "rng-uinteger": (_with_rng(uinteger=2**32),
                     _RNG + r"uinteger 4294967296 is out of range \[0, 2\*\*32\)"),
    "rng-has-uint32": (_with_rng(has_uint32=2),
                       _RNG + r"has_uint32 2 is out of range \[0, 2\*\*1\)"),
    "callbacks-list": (_with_training(callbacks=[{"wait": 1}]),
                       r"its callback states are list, not a JSON object"),
    "callback-not-a-state": (_with_training(callbacks={"0:EarlyStopping": 3}),
                             r"its callback state '0:EarlyStopping' is not a callback's state "
                             r"\(int\)"),
    "callback-bad-key": (_with_training(callbacks={"../x": {}}),
                         r"its callback state '\.\./x' is not a callback's state"),
    "format-0": (lambda p: {"mlp_format": np.asarray(0)},
                 r"its format number 0 is not one mlp writes \(1 to 2\)"),
    "format-1-with-training": (lambda p: {"mlp_format": np.asarray(1)},
                               r"it holds a training state, which format 1 files do not have"),
    "state-without-optimizer": (lambda p: {"optimizer": None, "training": None,
                                           "history_epoch": None, "history_values": None},
                                r"it holds an optimizer state without its optimizer"),
    "history-without-training": (lambda p: {"training": None},
                                 r"it holds a history without its training state"),
    "json-key-twice": (lambda p: {"training": np.asarray(str(_json(_training(p)))[:-1]
                                                        + ', "epochs_trained": 99}')},
                       r"a JSON object in it names 'epochs_trained' twice"),
}


@pytest.mark.parametrize("damage, match", CRAFTED.values(), ids=CRAFTED.keys())
def test_an_inconsistent_file_is_refused_naming_it(backend, tmp_path, damage, match):
    path = _trained_file(tmp_path)
    assert _training(path)["epochs_trained"] == 3
    rewrite_npz(path, **damage(path))
    with pytest.raises(ModelFileError, match=rf"'{path}' holds a damaged mlp model: {match}"):
        mlp.load(path, backend=backend)


def test_the_history_is_checked_before_it_is_read(tmp_path, monkeypatch):
    path = _trained_file(tmp_path)
    rewrite_npz(path, training=_json(_training(path) | {"epochs_trained": 2}))
    read = []
    real = np.lib.format.read_array

    def spy(fh, *args, **kwargs):
        read.append(fh.name)
        return real(fh, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    with pytest.raises(ModelFileError, match=r"history holds 3 epochs, more than its epoch "
                                             r"count 2"):
        mlp.load(path, backend="numpy")
    assert "training.npy" in read
    assert not {"history_epoch.npy", "history_values.npy"} & set(read)


def test_callback_states_refuses_damaged_states_naming_the_file(tmp_path):
    path = _trained_file(tmp_path)
    rewrite_npz(path, training=_json(_training(path) | {"callbacks": {"0:EarlyStopping": []}}))
    with pytest.raises(ModelFileError, match=rf"'{path}' holds damaged callback states: its "
                                             r"callback state '0:EarlyStopping' is not a "
                                             r"callback's state \(list\)"):
        mlp.io.callback_states(path)


@pytest.mark.parametrize("change", ["no-history", "gaps", "scale-half", "big-endian", "float64-w",
                                    "callbacks"])
def test_consistent_files_still_load(backend, tmp_path, change):
    """What the checks allow: a history with gaps or none (epochs trained before it was
    kept), a learning-rate scale of 0.5, weights in another byte order or float width
    (cast, as set_weights does), callback states."""
    path = _trained_file(tmp_path, epochs=5)
    changes = {
        "no-history": {"history_epoch": np.zeros(0, np.int64),
                       "history_values": np.zeros((0, 0)),
                       "training": _json(_training(path) | {"history_metrics": []})},
        "gaps": {"history_epoch": np.array([0, 2, 3, 4]),
                 "history_values": np.ones((4, 3))},
        "scale-half": {"opt_state_10": np.asarray(0.5, "float32")},
        "big-endian": {"W0": np.ones((3, 4), ">f4")},
        "float64-w": {"W1": np.full((4, 2), 0.5)},
        "callbacks": {"training": _json(_training(path) | {"callbacks": {
            "0:EarlyStopping": {"best": 0.5, "best_epoch": 3, "wait": 1}}})},
    }[change]
    rewrite_npz(path, **changes)
    model = mlp.load(path, backend=backend)
    assert model.epochs_trained_ == 5
    assert optimizers.step_count(model.optimizer_state_) == 10
    if change == "no-history":
        assert model.history_ is None
    if change == "gaps":
        assert model.history_.epoch == [0, 2, 3, 4]
    if change == "callbacks":
        assert mlp.io.callback_states(path) == {"0:EarlyStopping": {"best": 0.5,
                                                                    "best_epoch": 3, "wait": 1}}
    x = np.ones((4, 3))
    model.fit(x, np.ones((4, 2)), epochs=1, batch_size=2)  # goes on, and saves again
    model.save(tmp_path / "again.npz", include_optimizer=True)
    again = mlp.load(tmp_path / "again.npz", backend="numpy")
    assert again.epochs_trained_ == 6 and again.history_.epoch[-1] == 5


def _optimizer_json(path, **changes):
    with np.load(path) as data:
        return _json(json.loads(str(data["optimizer"])) | changes)


@pytest.mark.parametrize("change, match", [
    (lambda p: {"optimizer": _optimizer_json(p, eps=1e-60)},
     r"Adam\.eps=1e-60 is too small for the model's dtype float32"),
    (lambda p: {"optimizer": _optimizer_json(p, learning_rate=1e-50)},
     r"Adam\.learning_rate=1e-50 is too small for the model's dtype float32"),
    (lambda p: {"optimizer": _optimizer_json(p, beta2=1 - 1e-9)},
     r"Adam\.beta2=0\.999999999 rounds to 1 in the model's dtype float32"),
    (lambda p: {"opt_state_10": np.asarray(0.0, "float32")},
     r"the optimizer state's learning-rate scale is 0\.0: the learning rate times it is 0, "
     r"so nothing would train"),
    (lambda p: {"opt_state_10": np.asarray(1e-45, "float32")},
     r"the optimizer state's learning-rate scale=1\.401298464324817e-45 is too small for the "
     r"model's dtype float32"),
    (lambda p: {"opt_state_10": np.asarray(1e-37, "float32")},
     r"the learning rate 0\.05 times the optimizer state's learning-rate scale .* is too small"),
], ids=["eps", "learning-rate", "beta2", "scale-0", "scale-subnormal", "rate-subnormal"])
def test_an_optimizer_fit_would_refuse_is_refused_by_load_naming_the_file(tmp_path, change,
                                                                         match):
    """load applies fit's checks in the model's dtype to the optimizer it reads and to its
    state's learning-rate scale: the file is refused, named, rather than loading and then
    failing (or training nothing) at the first fit."""
    path = _trained_file(tmp_path, optimizer=optimizers.Adam(0.05))
    rewrite_npz(path, **change(path))
    with pytest.raises(ModelFileError, match=r"'.*m\.npz' holds a damaged mlp model: its "
                                             r"optimizer is one fit would refuse: " + match):
        mlp.load(path, backend="numpy")


def test_fit_refuses_a_learning_rate_scale_of_0_set_by_hand():
    model = mlp.MLP([3, 4, 2], backend="numpy", seed=0)
    x, y = np.ones((4, 3)), np.ones((4, 2))
    model.fit(x, y, epochs=1)
    model.optimizer_state_ = optimizers.with_learning_rate_scale(model.optimizer_state_, 0.0)
    with pytest.raises(ValueError, match=r"learning-rate scale is 0\.0: the learning rate times "
                                         r"it is 0, so nothing would train"):
        model.fit(x, y, epochs=1)
    assert model.epochs_trained_ == 1
    model.fit(x, y, epochs=1, reset_optimizer=True)
    assert model.epochs_trained_ == 2


def test_a_config_declaring_thousands_of_layers_is_refused_briefly(tmp_path):
    path = tmp_path / "m.npz"
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    model.save(path)
    rewrite_npz(path, config=_json(model.get_config() | {"layer_sizes": [3] + [1] * 5000}))
    with pytest.raises(ModelFileError, match=r"m\.npz' holds a damaged mlp model: the weights "
                                             r"W1, b1, W2, b2, W3, b3 and 9992 more are "
                                             r"missing$") as info:
        mlp.load(path, backend="numpy")
    assert len(str(info.value)) < 200


# ------------------------------------------------------ callback states in a backup
_DEFAULTS = {"EarlyStopping": {"monitor": None, "mode": "auto", "patience": 10,
                               "min_delta": 0.0},
             "ReduceLROnPlateau": {"monitor": "val_loss", "mode": "auto", "factor": 0.1,
                                   "patience": 10, "min_lr": 0.0, "min_delta": 0.0,
                                   "cooldown": 0}}
GOOD_STATES = {"EarlyStopping": {"best": 0.5, "best_epoch": 2, "wait": 1,
                                 "settings": _DEFAULTS["EarlyStopping"]},
               "ReduceLROnPlateau": {"best": 0.5, "wait": 1, "cooling": 0,
                                     "reductions": [[1, 0.005]],
                                     "settings": _DEFAULTS["ReduceLROnPlateau"]}}
_STOP, _PLATEAU = GOOD_STATES["EarlyStopping"], GOOD_STATES["ReduceLROnPlateau"]
DAMAGED_STATES = [
    ("EarlyStopping", {"best": 0.5, "best_epoch": 2},
     r"holds \['best', 'best_epoch'\], not \['best', 'best_epoch', 'settings', 'wait'\]"),
    ("EarlyStopping", _STOP | {"extra": 1}, r"holds \['best', 'best_epoch', "
                                             r"'extra', 'settings', 'wait'\]"),
    ("EarlyStopping", _STOP | {"settings": None}, r"settings must be a JSON object"),
    ("EarlyStopping", _STOP | {"settings": _DEFAULTS["EarlyStopping"] | {"monitor": "loss"}},
     r"was made with other settings \(monitor 'loss' there, None here\)"),
    ("ReduceLROnPlateau", _PLATEAU | {"settings": _DEFAULTS["ReduceLROnPlateau"]
                                      | {"factor": 0.5, "cooldown": 2}},
     r"was made with other settings \(factor 0\.5 there, 0\.1 here; cooldown 2 there, 0 "
     r"here\)"),
    ("EarlyStopping", [0.5, 2, 1], r"holds list, not"),
    ("EarlyStopping", _STOP | {"wait": True},
     r"wait must be an integer >= 0, got True"),
    ("EarlyStopping", _STOP | {"wait": -1}, r"wait must be an integer >= 0, got -1"),
    ("EarlyStopping", _STOP | {"best": "x"}, r"best must be None or a finite number, got 'x'"),
    ("EarlyStopping", _STOP | {"best": float("nan")}, r"best must be None or a finite number, "
                                                      r"got nan"),
    ("EarlyStopping", _STOP | {"best": float("inf")}, r"best must be None or a finite number, "
                                                      r"got inf"),
    ("EarlyStopping", _STOP | {"best_epoch": 1.5}, r"best_epoch must be None or an integer "
                                                   r">= 0"),
    ("ReduceLROnPlateau", _PLATEAU | {"cooling": False}, r"cooling must be an integer >= 0, "
                                                         r"got False"),
    ("ReduceLROnPlateau", _PLATEAU | {"reductions": {"1": 0.1}},
     r"reductions must be a list of \[epoch, learning rate\] pairs"),
    ("ReduceLROnPlateau", _PLATEAU | {"reductions": [[1]]},
     r"a reduction \[1\] is not an \[epoch, learning rate\] pair"),
    ("ReduceLROnPlateau", _PLATEAU | {"reductions": [[True, 0.1]]},
     r"epoch must be an integer >= 0"),
    ("ReduceLROnPlateau", _PLATEAU | {"reductions": [[1, -0.1]]},
     r"learning rate must be a finite number >= 0"),
]


@pytest.mark.parametrize("name, state, match", DAMAGED_STATES,
                         ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(DAMAGED_STATES)])
def test_a_damaged_callback_state_is_refused_naming_the_callback(name, state, match):
    """What a backup gives back to `set_state` is checked before any of it is taken."""
    callback = getattr(mlp, name)()
    before = dict(vars(callback))
    with pytest.raises(ValueError, match=rf"^{name}'s saved state (is damaged: )?{match}"):
        callback.set_state(state)
    assert vars(callback) == before


def test_good_callback_states_are_taken(tmp_path):
    model = mlp.MLP([3, 2], backend="numpy", seed=0)
    stopping, plateau = mlp.EarlyStopping(), mlp.ReduceLROnPlateau()
    for callback in (stopping, plateau):
        callback.model = model
        callback.set_state(GOOD_STATES[type(callback).__name__])
        assert callback.get_state() == GOOD_STATES[type(callback).__name__]
    assert plateau.reductions == [(1, 0.005)] and stopping.best_epoch == 2
