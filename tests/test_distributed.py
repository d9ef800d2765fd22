"""Data-parallel JAX (`backends.get_backend("jax", devices=...)`): the same fit as on one device.

The 4-device comparisons run in one fresh process with 4 CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4``, tests/distributed_check.py);
the multi-host test starts two processes joined by ``jax.distributed`` on 127.0.0.1
(tests/distributed_worker.py). float64 agrees to 1e-10, float32 to 1e-5.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import mlp
from mlp import backends

jax = pytest.importorskip("jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
FLOAT64, FLOAT32 = 1e-10, 1e-5


def _env(devices_per_process):
    env = {**os.environ, "PYTHONPATH": ROOT,
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
    for name in ("JAX_ENABLE_X64", "MLP_BACKEND", "MLP_DEVICES", "JAX_PLATFORMS"):
        env.pop(name, None)
    return {**env, "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def four_devices():
    """The results of tests/distributed_check.py, run once on 4 CPU devices."""
    done = subprocess.run([sys.executable, os.path.join(TESTS, "distributed_check.py")],
                          env=_env(4), capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


COMPARED = ["mse-sgd-batch7", "cross_entropy-adam-batch7", "binary_cross_entropy-adamw-batch7",
            "poisson-rmsprop-batch7", "cross_entropy-sgd-full-batch",
            "mse-adam-unshuffled-batch8", "cross_entropy-adam-validation-early-stopping",
            "mse-sgd-validation-split-early-stopping", "cross_entropy-sample-and-class-weight",
            "float32-cross_entropy-adam-batch7-validation"]


@pytest.mark.parametrize("case", COMPARED)
def test_four_devices_train_as_one(four_devices, case):
    got = four_devices[case]
    tolerance = FLOAT32 if case.startswith("float32") else FLOAT64
    assert got["weights"] < tolerance  # final weights
    assert got["logs"] < tolerance  # every epoch's loss (and validation metrics)
    assert got["epochs"][0] == got["epochs"][1]  # early stopping stops at the same epoch
    assert got["replicated"]  # the weights stay replicated on all 4 devices


def test_early_stopping_and_validation_happened(four_devices):
    stopped = four_devices["cross_entropy-adam-validation-early-stopping"]
    assert stopped["epochs"][1] < 30 and "val_loss" in stopped["keys"]
    split = four_devices["mse-sgd-validation-split-early-stopping"]
    assert split["epochs"][1] < 30 and "val_r2" in split["keys"]


def test_rows_are_padded_with_zero_weight_and_sharded(four_devices):
    got = four_devices["placement"]
    assert got["rows"] == [48, 48, 48]  # 45 rows and 3 padding rows: 12 per device
    assert got["shard_rows"] == [12] and got["row_spec"] == "P('data',)"
    assert got["weights"] == [1.0] * 45 + [0.0] * 3 and got["padding"] == 0.0
    # a batch of 7 gets one more slot, pointing at the last (padding) row
    assert got["batch"] == [[[0, 1, 2, 3, 4, 5, 6, 47]]]
    assert got["sharded_input"] < FLOAT64  # a row-sharded JAX array is taken as x
    assert got["plain_sharded_input"] < FLOAT64  # also by the one-device backend


def test_four_devices_pad_inference_rows_to_the_ladder(four_devices):
    """predict on every batch size from 1 to 1000 compiles one program per size of the
    ladder (16, 32, ..., 1024 rows) on the mesh too, and evaluate likewise; the padding
    changes no row (bit for bit), and the results are one device's."""
    got = four_devices["buckets"]
    assert got["predict_compiles"] <= 7 and got["evaluate_compiles"] <= 7
    assert got["shapes"] == [[n, 3] for n in (1, 2, 3, 17, 100, 999, 1000)]
    assert got["padding_free"] and got["replicated"]
    assert got["predict"] < 1e-12 and got["evaluate"] < 1e-12


def test_model_trained_on_four_devices_saves_a_file_numpy_loads(four_devices):
    got = four_devices["files"]
    assert got["loaded_backend"] == "numpy"
    assert got["predict"] < FLOAT64 and got["evaluate"] < FLOAT64
    assert got["summary_device"] == "4 cpu devices"
    assert got["reloaded_devices"] == 4  # mlp.load(path, backend=<4 devices>)
    assert got["reloaded_fit"] < FLOAT64  # ...and training goes on as in the saved model


# ------------------------------------------------------------------- in this process
def test_one_device_mesh_trains_as_the_plain_backend():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.integers(0, 3, size=30)
    runs = []
    for backend in ("jax", backends.get_backend("jax", devices=1)):
        model = mlp.MLP([3, 4, 3], loss="cross_entropy", backend=backend, dtype="float64",
                        seed=0)
        model.fit(x, y, epochs=2, batch_size=7, optimizer="adam")
        runs.append(model.get_weights())
    assert max(np.max(np.abs(a - b)) for (a, _), (b, _) in zip(*runs)) < FLOAT64
    assert backends.get_backend("jax", devices=1) is backends.get_backend(
        "jax", devices=jax.devices()[:1])


def test_a_loss_without_terms_says_why_it_cannot_train_data_parallel(value_only_mae):
    model = mlp.MLP([2, 1], loss="mae", backend=backends.get_backend("jax", devices=1), seed=0)
    with pytest.raises(ValueError, match=r"loss 'mae' cannot take rows of weight 0 \(a "
                                         r"data-parallel backend pads the data with them\)"):
        model.fit(np.ones((4, 2)), np.zeros(4), epochs=1)
    assert model.history_ is None


def test_devices_none_is_the_one_device_backend():
    assert backends.get_backend("jax", devices=None) is backends.get_backend("jax")


@pytest.mark.parametrize("devices, error, words", [
    (len(jax.devices()) + 1, ValueError, "XLA_FLAGS=--xla_force_host_platform_device_count"),
    (0, ValueError, "a number of devices >= 1"),
    ("most", ValueError, "'all', a number of devices"),
    ("²", ValueError, "devices must be None, 'all', a number of devices >= 1 or a list of JAX "
                      "devices, got '²'"),
    ("١", ValueError, "got '١'"),
    (True, TypeError, "a list of JAX devices, got bool"),
    ([], ValueError, "empty list"),
    (["cpu:0"], TypeError, "devices[0] must be a JAX device"),
    ([jax.devices()[0]] * 2, ValueError, "more than once"),
])
def test_bad_devices_are_refused_with_what_is_accepted(devices, error, words):
    with pytest.raises(error, match=None) as info:
        backends.get_backend("jax", devices=devices)
    assert words in str(info.value)


@pytest.mark.parametrize("value", ["²", "1.5", "-1", "two", "1e3"])
def test_a_bad_mlp_devices_is_named(monkeypatch, value):
    monkeypatch.setenv("MLP_DEVICES", value)
    with pytest.raises(ValueError) as info:
        backends.get_backend("jax")
    assert str(info.value) == (f"$MLP_DEVICES must be None, 'all', a number of devices >= 1 or "
                               f"a list of JAX devices, got {value!r}")


def test_too_many_devices_says_how_many_exist():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=f"asks for {n + 1} devices, but JAX sees {n}"):
        backends.get_backend("jax", devices=n + 1)


def test_devices_need_the_jax_backend():
    with pytest.raises(ValueError, match="devices= needs the 'jax' backend"):
        backends.get_backend("numpy", devices=2)


def test_mlp_devices_sets_the_default(monkeypatch):
    monkeypatch.setenv("MLP_DEVICES", "1")
    assert backends.get_backend("jax") is backends.get_backend("jax", devices=1)
    assert backends.get_backend("numpy").name == "numpy"  # ignored by the other backends
    monkeypatch.setenv("MLP_DEVICES", "lots")
    with pytest.raises(ValueError, match=r"\$MLP_DEVICES must be None, 'all'"):
        backends.get_backend("jax")


# ------------------------------------------------------------------------ two hosts
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker():
    sys.path.insert(0, TESTS)
    try:
        import distributed_worker as worker
    finally:
        sys.path.remove(TESTS)
    return worker


def _two_processes(tmp_path, *mode):
    """Run tests/distributed_worker.py in two processes (2 CPU devices each); their
    output files."""
    port, outs = _free_port(), [tmp_path / f"process{i}.npz" for i in range(2)]
    procs = [subprocess.Popen([sys.executable, os.path.join(TESTS, "distributed_worker.py"),
                               str(i), "2", str(port), str(outs[i]), *mode], env=_env(2),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
             for i in range(2)]
    try:
        logs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:  # on a timeout or any failure: no process is left behind
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], "\n".join(logs)[-3000:]
    return outs


def test_two_processes_train_as_one(tmp_path):
    """Two processes with 2 CPU devices each, joined by jax.distributed (gloo): the same
    script in both, the same full arrays, devices="all" (4 devices on 2 hosts)."""
    worker = _worker()
    outs = _two_processes(tmp_path)
    x, y = worker.data()
    ref = mlp.MLP([3, 5, 3], loss="cross_entropy", backend="numpy", dtype="float64", seed=3)
    history = ref.fit(x, y, **worker.FIT)
    for out in outs:
        got = np.load(out)
        assert int(got["n_devices"]) == 4 and int(got["n_local"]) == 2
        np.testing.assert_allclose(got["loss"], history.history["loss"], rtol=0, atol=FLOAT64)
        for i, (W, b) in enumerate(ref.get_weights()):
            np.testing.assert_allclose(got[f"W{i}"], W, rtol=0, atol=FLOAT64)
            np.testing.assert_allclose(got[f"b{i}"], b, rtol=0, atol=FLOAT64)


def test_a_backend_is_shared_not_copied():
    """scikit-learn's clone deep-copies parameters: a backend given as an object stays itself."""
    import copy

    one = backends.get_backend("jax", devices=1)
    assert copy.deepcopy(one) is one and copy.copy(one) is one
    assert copy.deepcopy({"backend": backends.get_backend("jax")})["backend"] is (
        backends.get_backend("jax"))


def test_a_step_makes_no_transfer(four_devices):
    """The compiled run, called under jax.transfer_guard("disallow"), ran: its data was
    on the devices already, batches were cut there, nothing was resharded outside XLA."""
    got = four_devices["transfers"]
    assert got["guarded_calls"] >= 3 and got["mini_batch_calls"] >= 2


# ------------------------------------------------------- two hosts, each its own rows
@pytest.fixture(scope="module")
def process_local_runs(tmp_path_factory):
    """Both processes' results of tests/distributed_worker.py's process-local fits."""
    outs = _two_processes(tmp_path_factory.mktemp("local"), "local")
    return [dict(np.load(out)) for out in outs]


@pytest.mark.parametrize("case", sorted(_worker().LOCAL_FITS) + sorted(_worker().DROPOUT_FITS))
def test_each_process_its_own_rows_trains_as_one_process_with_all(process_local_runs, case):
    """Process 0 passes 19 rows, process 1 the other 26 (uneven, not contiguous): the fit
    equals one process holding the 45 rows in process order (float64, 1e-10), with
    sample weights and validation data, class_weight="balanced" counted over both
    processes, full batch, unshuffled, and a run in chunks that the processes, timing
    their calls differently, agree on; with dropout too (a row's masks follow its global
    number, not its place in its process's padded block)."""
    worker = _worker()
    x, y = worker.data()
    rows = worker.global_rows()
    weight, validation = worker.local_data()
    dropped = case in worker.DROPOUT_FITS
    settings = (worker.DROPOUT_FITS if dropped else worker.LOCAL_FITS)[case]
    ref = mlp.MLP([3, 5, 3], loss="cross_entropy", backend="numpy", dtype="float64", seed=3,
                  **(worker.DROPOUT if dropped else {}))
    history = ref.fit(x[rows], y[rows], **worker.fit_arguments(settings, weight, validation,
                                                               rows)).history
    assert ("val_loss" in history) == bool(settings.get("validation"))
    for got in process_local_runs:
        for key, values in history.items():
            np.testing.assert_allclose(got[f"{case}/{key}"], values, rtol=0, atol=FLOAT64)
        for i, (W, b) in enumerate(ref.get_weights()):
            np.testing.assert_allclose(got[f"{case}/W{i}"], W, rtol=0, atol=FLOAT64)
            np.testing.assert_allclose(got[f"{case}/b{i}"], b, rtol=0, atol=FLOAT64)


def test_no_device_and_no_process_holds_the_whole_set(process_local_runs):
    """Each process's 19 or 26 rows padded to 32 (weight 0), the global arrays 64 rows:
    every device buffer holds 16 rows of x, y and the weights, and no process gathers
    more than a few numbers from the others."""
    for got in process_local_runs:
        assert got["global_rows"].tolist() == [64] * 4  # one per fit
        assert set(got["shard_rows"].tolist()) == {16}  # 2 devices of each process
        assert len(got["shard_rows"]) == 4 * 3 * 2  # 4 fits, x, y, w, 2 local devices
        # a refusal flag, the rows, the validation data's hash, 3 classes' counts
        assert int(got["gathered"]) == 6
        assert "process_local=True" in str(got["backend"])
    # what identifies a fit's data (BackupAndRestore's check): each process's own rows
    for got, n in zip(process_local_runs, (19, 26)):
        shapes = [json.loads(f) for f in got["fingerprints"]]
        assert shapes[0] == {"x": [n, 3], "y": [n, 3], "sample_weight": [n], "x_val": [11, 3],
                             "y_val": [11, 3], "val_labels": [11]}
        assert shapes[1] == {"x": [n, 3], "y": [n, 3], "sample_weight": [n]}  # balanced
        assert shapes[2] == {"x": [n, 3], "y": [n, 3]}


def test_a_process_whose_rows_are_refused_stops_every_process(process_local_runs):
    """Process 1 passes 2 features instead of 3: it raises its own error, process 0 one
    naming process 1 (no process waits forever); validation_split is refused in both, so
    is validation data that differs between them, and so are mlp.sklearn's estimators;
    the model is unchanged."""
    first, second = process_local_runs
    assert "process 1 of 2 refused its training rows" in first["refusals"][0]
    assert second["refusals"][0] == ("x has 2 features (columns), but the model's first layer "
                                     "expects 3")
    for got in process_local_runs:
        assert "validation_split cannot split process-local rows" in got["refusals"][1]
        assert got["refusals"][2].startswith(
            "validation_data differs between the processes (process 0's and process 1's)")
        assert "MLPClassifier takes the same full arrays in every process" in got["refusals"][3]
        assert len(got["refusals"]) == 4  # (a model with dropout trains: see above)
        assert bool(got["unchanged"])


def test_process_local_needs_a_mesh_over_several_processes(four_devices):
    assert four_devices["process_local"] == (
        "process_local=True needs a mesh over several processes (call "
        "jax.distributed.initialize() in each, then devices='all'); this mesh's 4 device(s) "
        "are all in process 0, which holds all the rows: pass them whole, without "
        "process_local")
    with pytest.raises(ValueError, match="process_local=True needs a mesh over several "
                                         "processes.*pass them whole"):
        backends.get_backend("jax", devices=1, process_local=True)
    with pytest.raises(ValueError, match="pass devices='all'"):
        backends.get_backend("jax", process_local=True)
    with pytest.raises(ValueError, match="needs the 'jax' backend"):
        backends.get_backend("numpy", process_local=True)
    with pytest.raises(TypeError, match="process_local must be True or False, got str"):
        backends.get_backend("jax", devices=1, process_local="yes")


def test_the_chunks_of_a_run_are_the_processes_agreed_ones():
    """On a mesh over several processes, the chunk length chosen from this process's
    timings goes through ``agree`` (the shortest of the processes'); the worker's
    "sgd-batch5-planned-chunks" fit has the processes time their calls 1000x apart."""
    from mlp import training

    seen = []
    planner = training.ChunkPlanner(100, seconds=1.0, agree=lambda c: seen.append(c) or 3)
    for remaining in (99, 98):
        assert planner.next(remaining + 1) == 1
        planner.measured(1, 0.001, remaining)
    assert seen == [98] and planner.next(98) == 3
    assert mlp.shards.agreement(backends.get_backend("jax", devices=1)) is None
