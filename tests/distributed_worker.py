"""One process of the two-process test (tests/test_distributed.py); not a test itself.

``python tests/distributed_worker.py <process_id> <n_processes> <port> <out.npz> [local]``:
joins a CPU cluster on 127.0.0.1:<port> (gloo collectives), trains a small model
data-parallel over every process's devices (``devices="all"``) from the same full
arrays in every process, and writes the final weights and losses to ``out.npz``.
With ``local``: each process passes only its own rows (``process_local=True``,
`local_main`).
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

import mlp
from mlp import backends


def data():
    """The same arrays in every process (the common research-script case)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(45, 3))
    return x, rng.integers(0, 3, size=45)


FIT = dict(epochs=3, batch_size=7, optimizer="adam", learning_rate=0.05,
           validation_split=0.2)


def join(process_id, n_processes, port):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=n_processes, process_id=process_id,
                               initialization_timeout=60)


def main(process_id, n_processes, port, out):
    join(process_id, n_processes, port)
    backend = backends.get_backend("jax", devices="all")
    model = mlp.MLP([3, 5, 3], loss="cross_entropy", backend=backend, dtype="float64", seed=3)
    x, y = data()
    history = model.fit(x, y, **FIT)
    arrays = {f"W{i}": W for i, (W, _) in enumerate(model.get_weights())}
    arrays.update({f"b{i}": b for i, (_, b) in enumerate(model.get_weights())})
    np.savez(out, loss=np.array(history.history["loss"]), n_devices=backend.n_devices,
             n_local=len(jax.local_devices()), accuracy=model.evaluate(x, y)["accuracy"],
             **arrays)
    jax.distributed.shutdown()


# ------------------------------------------------------------- process-local rows
#: Process p's own rows of `data()`: uneven (19 and 26), not contiguous; the global rows
#: are process 0's then process 1's (`global_rows`).
SHARDS = np.split(np.random.default_rng(1).permutation(45), [19])


def global_rows():
    """The rows of `data()` in the global order of process-local fits."""
    return np.concatenate(SHARDS)


def local_data():
    """Weights for every row, and validation data (the same in every process)."""
    rng = np.random.default_rng(2)
    weight = rng.uniform(0, 2, size=45)
    x_val = rng.normal(size=(11, 3))
    return weight, (x_val, rng.integers(0, 3, size=11))


#: Fits of the process-local test, each against one process holding every row.
LOCAL_FITS = {"adam-batch7-weighted-validation": dict(
    epochs=3, batch_size=7, optimizer="adam", learning_rate=0.05, weighted=True,
    validation=True),
    "sgd-full-batch-balanced": dict(epochs=2, batch_size=None, optimizer="sgd",
                                    learning_rate=0.5, class_weight="balanced"),
    "rmsprop-batch8-unshuffled": dict(epochs=2, batch_size=8, optimizer="rmsprop",
                                      shuffle=False),
    # process 1 times its calls 1000x slower (`_slow_process`): the chunks the processes
    # run must still agree
    "sgd-batch5-planned-chunks": dict(epochs=6, batch_size=5, optimizer="sgd",
                                      learning_rate=0.1)}


#: Fits of a model with dropout (`DROPOUT`), each against one process holding every row:
#: a row's masks follow its global number, not its place in its process's block.
DROPOUT_FITS = {"dropout-adam-batch7-weighted-validation": dict(
    epochs=3, batch_size=7, optimizer="adam", learning_rate=0.05, weighted=True,
    validation=True),
    "dropout-sgd-full-batch": dict(epochs=2, batch_size=None, optimizer="sgd",
                                   learning_rate=0.5)}
DROPOUT = dict(dropout=0.3, input_dropout=0.2)


def _slow_process(training):
    """Every run looks long (no run in one call), and process 1 measures its calls 1000x
    slower than process 0: left to themselves, process 0 would run the last 4 epochs in
    one call and process 1 one by one, mismatching the collectives."""
    measured = training.ChunkPlanner.measured
    factor = 1000.0 if jax.process_index() == 1 else 1.0

    def slow(self, n_epochs, seconds, remaining):
        measured(self, n_epochs, seconds * factor, remaining)

    training.run_time_bound = lambda *args: 1e9
    training.ChunkPlanner.measured = slow


def fit_arguments(settings, weight, validation, rows):
    """``fit``'s keyword arguments for a `LOCAL_FITS` entry on the rows ``rows``."""
    fit = {k: v for k, v in settings.items() if k not in ("weighted", "validation")}
    if settings.get("weighted"):
        fit["sample_weight"] = weight[rows]
    if settings.get("validation"):
        fit["validation_data"] = validation
    return fit


def _watch_placement(record):
    """Record every fit's training arrays (global shape, each addressable shard's rows)
    and the largest array any process gathers from the others."""
    from jax.experimental import multihost_utils

    from mlp import training

    init, gather = training.Trainer.__init__, multihost_utils.process_allgather

    def watched_init(self, model, data, *args, **kwargs):
        record["global_rows"].append(int(data.x.shape[0]))
        # what identifies the fit's data (BackupAndRestore): this process's own rows
        record["fingerprint_rows"].append(mlp.io.data_fingerprint(model, data)["shapes"])
        record["shard_rows"].extend(int(s.data.shape[0]) for a in (data.x, data.y, data.w)
                                    for s in a.addressable_shards)
        init(self, model, data, *args, **kwargs)

    def watched_gather(value, *args, **kwargs):
        record["gathered"] = max(record["gathered"], int(np.size(value)))
        return gather(value, *args, **kwargs)

    training.Trainer.__init__ = watched_init
    multihost_utils.process_allgather = watched_gather


def _refusals(backend, rows):
    """The messages of four refused fits (three of an MLP, one of an estimator); the MLP is
    unchanged."""
    x, y = data()
    model = mlp.MLP([3, 5, 3], loss="cross_entropy", backend=backend, dtype="float64", seed=3)
    before = model.get_weights()
    messages = []
    bad_x = x[rows] if jax.process_index() == 0 else x[rows][:, :2]  # process 1: 2 features
    own_val = (x[rows][:5], y[rows][:5])  # each process its own validation rows: refused
    for fit in (dict(x=bad_x), dict(x=x[rows], validation_split=0.2),
                dict(x=x[rows], validation_data=own_val)):
        try:
            model.fit(fit.pop("x"), y[rows], epochs=1, **fit)
        except ValueError as exc:
            messages.append(str(exc))
    from mlp.sklearn import MLPClassifier

    try:
        MLPClassifier(hidden_layer_sizes=(4,), backend=backend).fit(x[rows], y[rows])
    except ValueError as exc:
        messages.append(str(exc))
    unchanged = all(np.array_equal(a, b) for pa, pb in zip(before, model.get_weights())
                    for a, b in zip(pa, pb))
    return messages, unchanged and model.history_ is None


def _local_fit(backend, name, settings, arrays, **model):
    """Fit the `LOCAL_FITS` or `DROPOUT_FITS` entry ``name`` on this process's own rows;
    its logs and weights go to ``arrays``."""
    x, y = data()
    rows = SHARDS[jax.process_index()]
    weight, validation = local_data()
    fitted = mlp.MLP([3, 5, 3], loss="cross_entropy", backend=backend, dtype="float64", seed=3,
                     **model)
    history = fitted.fit(x[rows], y[rows], **fit_arguments(settings, weight, validation, rows))
    for key, values in history.history.items():
        arrays[f"{name}/{key}"] = np.array(values)
    for i, (W, b) in enumerate(fitted.get_weights()):
        arrays[f"{name}/W{i}"], arrays[f"{name}/b{i}"] = W, b


def local_main(process_id, n_processes, port, out):
    """Each process fits on its own rows (`SHARDS`); writes weights, losses and checks."""
    join(process_id, n_processes, port)
    backend = backends.get_backend("jax", devices="all", process_local=True)
    arrays = {}
    for name, settings in DROPOUT_FITS.items():  # (before the placement is watched)
        _local_fit(backend, name, settings, arrays, **DROPOUT)
    record = {"global_rows": [], "shard_rows": [], "gathered": 0, "fingerprint_rows": []}
    _watch_placement(record)
    messages, unchanged = _refusals(backend, SHARDS[jax.process_index()])
    for name, settings in LOCAL_FITS.items():
        if name == "sgd-batch5-planned-chunks":
            from mlp import training

            _slow_process(training)
        _local_fit(backend, name, settings, arrays)
    np.savez(out, refusals=np.array(messages), unchanged=unchanged,
             global_rows=np.array(record["global_rows"]),
             shard_rows=np.array(record["shard_rows"]), gathered=record["gathered"],
             fingerprints=np.array([json.dumps(f) for f in record["fingerprint_rows"]]),
             backend=repr(backend), **arrays)
    jax.distributed.shutdown()


if __name__ == "__main__":
    run = local_main if sys.argv[5:] == ["local"] else main
    run(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
