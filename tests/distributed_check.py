"""Data-parallel fits on 4 devices against the same fits on one (tests/test_distributed.py).

Run in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``;
prints one JSON line ``{case: {...}}``: for each case the largest difference of the
final weights (``weights``) and of every logged number (``logs``) between the
one-device and the 4-device run, and what else the test checks. Not a test itself.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import jax
import numpy as np

import mlp
from mlp import backends

ONE = backends.get_backend("jax")
FOUR = backends.get_backend("jax", devices=4)
N = 45  # divides by neither 4 nor the batch size 7


def data(loss, n=N, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = {"mse": rng.normal(size=(n, 2)),
         "cross_entropy": rng.integers(0, 3, size=n),
         "binary_cross_entropy": rng.integers(0, 2, size=(n, 2)).astype(float),
         "poisson": rng.poisson(2.0, size=(n, 2)).astype(float)}[loss]
    return x, y


def outputs(loss):
    return 3 if loss == "cross_entropy" else 2


def fit_both(loss, dtype="float64", **fit):
    """The largest differences between the one-device and the 4-device fit."""
    x, y = data(loss)
    runs = []
    for backend in (ONE, FOUR):
        model = mlp.MLP([3, 5, outputs(loss)], loss=loss, backend=backend, dtype=dtype, seed=1)
        history = model.fit(x, y, **fit)
        runs.append((model, history.history))
    (one, h1), (four, h4) = runs
    weights = max(float(np.max(np.abs(a - b))) for pa, pb in zip(one.get_weights(),
                                                                 four.get_weights())
                  for a, b in zip(pa, pb))
    logs = max(float(np.max(np.abs(np.subtract(h1[k], h4[k])))) for k in h1)
    return dict(weights=weights, logs=logs, epochs=[len(h1["loss"]), len(h4["loss"])],
                keys=sorted(h4), replicated=all(W.sharding.is_fully_replicated
                                                and len(W.sharding.device_set) == 4
                                                for W, _ in four.params))


def losses_and_optimizers(results):
    pairs = [("mse", "sgd"), ("cross_entropy", "adam"), ("binary_cross_entropy", "adamw"),
             ("poisson", "rmsprop")]
    for loss, optimizer in pairs:
        results[f"{loss}-{optimizer}-batch7"] = fit_both(
            loss, epochs=3, batch_size=7, optimizer=optimizer, learning_rate=0.05)
    results["cross_entropy-sgd-full-batch"] = fit_both("cross_entropy", epochs=3,
                                                       learning_rate=0.5)
    results["mse-adam-unshuffled-batch8"] = fit_both("mse", epochs=2, batch_size=8,
                                                     shuffle=False, optimizer="adam")
    x_val, y_val = data("cross_entropy", n=13, seed=5)
    results["cross_entropy-adam-validation-early-stopping"] = fit_both(
        "cross_entropy", epochs=30, batch_size=9, optimizer="adam", learning_rate=0.2,
        validation_data=(x_val, y_val), early_stopping=True, patience=1)
    results["mse-sgd-validation-split-early-stopping"] = fit_both(
        "mse", epochs=30, batch_size=10, learning_rate=0.3, validation_split=0.2,
        early_stopping=True, patience=1)
    results["float32-cross_entropy-adam-batch7-validation"] = fit_both(
        "cross_entropy", dtype="float32", epochs=3, batch_size=7, optimizer="adam",
        learning_rate=0.05, validation_split=0.2)
    weight = np.random.default_rng(9).uniform(0, 2, size=N)
    results["cross_entropy-sample-and-class-weight"] = fit_both(
        "cross_entropy", epochs=2, batch_size=7, sample_weight=weight, class_weight="balanced")


def placement(results):
    """The rows' padding and sharding, and a row-sharded array given to fit."""
    x, y = data("mse")
    xs, ys, ws = FOUR.place_rows(FOUR.asarray(x), FOUR.asarray(y), None)
    batch = FOUR.batch_rows(np.arange(7).reshape(1, 1, 7), xs.shape[0])
    sharded_x = jax.device_put(x[:44], FOUR.rows)  # the example: a row-sharded array
    model = mlp.MLP([3, 5, 2], backend=FOUR, dtype="float64", seed=1)
    model.fit(sharded_x, y[:44], epochs=2, batch_size=11)
    ref = mlp.MLP([3, 5, 2], backend="numpy", dtype="float64", seed=1)
    ref.fit(np.asarray(sharded_x), y[:44], epochs=2, batch_size=11)  # JAX made it float32
    plain = mlp.MLP([3, 5, 2], backend=ONE, dtype="float64", seed=1)
    plain.fit(sharded_x, y[:44], epochs=2, batch_size=11)  # the one-device backend copies it
    results["placement"] = dict(
        plain_sharded_input=max(float(np.max(np.abs(a - b))) for (a, _), (b, _) in
                                zip(plain.get_weights(), ref.get_weights())),
        rows=[int(xs.shape[0]), int(ys.shape[0]), int(ws.shape[0])],
        shard_rows=sorted({s.data.shape[0] for s in xs.addressable_shards}),
        row_spec=str(xs.sharding.spec), weights=FOUR.to_numpy(ws).tolist(),
        padding=float(np.abs(FOUR.to_numpy(xs)[N:]).sum()),
        batch=FOUR.to_numpy(batch).tolist(),
        sharded_input=max(float(np.max(np.abs(a - b))) for (a, _), (b, _) in
                          zip(model.get_weights(), ref.get_weights())))


def inference_and_files(results):
    """predict and evaluate on 4 devices; a model saved there loads on NumPy and back."""
    x, y = data("cross_entropy")
    model = mlp.MLP([3, 5, 3], loss="cross_entropy", backend=FOUR, dtype="float64", seed=1)
    model.fit(x, y, epochs=2, batch_size=7, optimizer="adam")
    path = os.path.join(tempfile.mkdtemp(), "four.npz")
    model.save(path, include_optimizer=True)
    loaded = mlp.load(path, backend="numpy")
    one = mlp.MLP([3, 5, 3], loss="cross_entropy", backend=ONE, dtype="float64", seed=1)
    one.set_weights(model.get_weights())
    got = dict(
        loaded_backend=loaded.backend.name,
        predict=float(np.max(np.abs(np.asarray(loaded.predict(x))
                                    - FOUR.to_numpy(model.predict(x))))),
        evaluate=max(abs(model.evaluate(x, y)[k] - one.evaluate(x, y)[k])
                     for k in ("loss", "accuracy")),
        summary_device=FOUR.device)
    back = mlp.load(path, backend=FOUR)  # and back onto 4 devices: it trains as the saved one
    back.fit(x, y, epochs=1, batch_size=7, optimizer=back.optimizer_, shuffle=False)
    model.fit(x, y, epochs=1, batch_size=7, optimizer=model.optimizer_, shuffle=False)
    got.update(reloaded_devices=len(back.params[0][0].sharding.device_set),
               reloaded_fit=max(float(np.max(np.abs(a - b))) for (a, _), (b, _) in
                                zip(back.get_weights(), model.get_weights())))
    results["files"] = got


def bucketed_inference(results):
    """predict and evaluate on rows padded to the ladder (`mlp.buckets`) on 4 devices: the
    programs compiled for every batch size from 1 to 1000, and the results against one
    device."""
    import jax.monitoring as monitoring

    from tests.conftest import JaxCompiles

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(1000, 3)), rng.integers(0, 3, size=1000)
    models = [mlp.MLP([3, 5, 3], loss="cross_entropy", backend=backend, dtype="float64",
                      seed=1) for backend in (ONE, FOUR)]
    one, four = models
    counts = JaxCompiles()
    monitoring.register_event_duration_secs_listener(counts.on_duration)
    for n in range(1, 1001):
        four.predict(x[:n])
    predict_compiles = counts.compiles
    sizes = [1, 2, 3, 17, 100, 999, 1000]
    for n in sizes:
        four.evaluate(x[:n], y[:n])
    monitoring.unregister_event_duration_listener(counts.on_duration)
    out = {n: FOUR.to_numpy(four.predict(x[:n])) for n in sizes}
    results["buckets"] = dict(
        predict_compiles=predict_compiles, evaluate_compiles=counts.compiles - predict_compiles,
        shapes=[list(out[n].shape) for n in sizes],
        padding_free=all(np.array_equal(out[n], FOUR.to_numpy(
            four.predict(x[:mlp.buckets.bucket(n)]))[:n]) for n in sizes),
        predict=max(float(np.max(np.abs(out[n] - np.asarray(one.predict(x[:n])))))
                    for n in sizes),
        evaluate=max(abs(four.evaluate(x[:n], y[:n])[k] - one.evaluate(x[:n], y[:n])[k])
                     for n in sizes for k in ("loss", "accuracy")),
        replicated=len(four.predict(x[:5]).sharding.device_set) == 4)


def steps_without_transfers(results):
    """Every call of the compiled run under ``jax.transfer_guard("disallow")``: no step
    moves data between the host and the devices, or between devices outside XLA."""
    from mlp import training

    original, calls = training.run_function, []

    def guarded_run_function(*args):
        run = original(*args)

        def guarded(*arrays):
            with jax.transfer_guard("disallow"):
                calls.append(arrays[5] is not None)  # mini-batch (batch indices given)
                return run(*arrays)

        return guarded

    training.run_function = guarded_run_function
    try:
        x, y = data("cross_entropy")
        model = mlp.MLP([3, 5, 3], loss="cross_entropy", backend=FOUR, seed=1)
        model.fit(x, y, epochs=2, batch_size=7, optimizer="adam")
        model.fit(x, y, epochs=2, batch_size=7, validation_split=0.2, early_stopping=True)
        model.fit(x, y, epochs=2)
    finally:
        training.run_function = original
    results["transfers"] = dict(guarded_calls=len(calls), mini_batch_calls=sum(calls))


def process_local_on_one_process(results):
    """process_local=True over this process's 4 devices is refused (all rows are here)."""
    try:
        backends.get_backend("jax", devices=4, process_local=True)
        results["process_local"] = "accepted"
    except ValueError as exc:
        results["process_local"] = str(exc)


def main():
    results = {}
    losses_and_optimizers(results)
    placement(results)
    inference_and_files(results)
    bucketed_inference(results)
    steps_without_transfers(results)
    process_local_on_one_process(results)
    print(json.dumps(results))


if __name__ == "__main__":
    sys.exit(main())
