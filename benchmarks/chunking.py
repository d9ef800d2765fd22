"""A long JAX run in bounded calls against the same run in one call (issue 12).

    python -m benchmarks.chunking                  # W1 x 20000 epochs, W2 x 2000 epochs
    python -m benchmarks.chunking --quick          # smoke run, ~20 s on 2 cores

On a compiling backend `fit` runs its epochs in calls of at most about
``mlp.training.CHUNK_SECONDS`` (1 s) each, so that Ctrl-C keeps every completed
call. This times `fit` as it is ("chunked") against `fit` allowed one call for
the whole run ("one call": ``CHUNK_SECONDS`` and ``MAX_CHUNK`` unbounded) on
long runs of the benchmark workloads. Each way
keeps its own memory of the chunks chosen (as a process running the same fit
again does), so the warm-up compiles both and the timed fits compile nothing.
Timed repeats alternate the two. Results go to ``--out`` (default
``benchmarks/results``, with ``--quick`` ``benchmarks/results/quick``):
``chunking.json`` and ``chunking.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import time
from pathlib import Path

from .threads import describe, thread_counts

ROOT = Path(__file__).resolve().parent.parent
LONG_RUNS = {"W1": 20000, "W2": 2000}
QUICK_RUNS = {"W1": 5000, "W2": 300}


_PLANS = {False: {}, True: {}}  # each way's own memory of the chunks chosen


def _fit(workload, one_call):
    """One fit of ``workload`` on JAX: ``(seconds, call lengths, final loss)``."""
    import numpy as np

    import mlp
    from mlp import training

    training.ChunkPlanner._chosen = _PLANS[one_call]
    saved = training.CHUNK_SECONDS, training.MAX_CHUNK
    if one_call:
        training.CHUNK_SECONDS, training.MAX_CHUNK = math.inf, 2**62
    calls = []
    real_next = training.ChunkPlanner.next

    def next_call(planner, remaining):
        calls.append(real_next(planner, remaining))
        return calls[-1]

    training.ChunkPlanner.next = next_call
    wl = workload
    model = mlp.MLP(wl.layer_sizes, activation="relu", output_activation=wl.output_activation,
                    loss=wl.loss, init=wl.init, backend="jax", seed=wl.seed)
    model.set_weights(wl.initial_weights(np.float32))
    try:
        start = time.perf_counter()
        model.fit(wl.x_train, wl.y_train, epochs=wl.epochs, learning_rate=wl.learning_rate,
                  batch_size=wl.batch_size, optimizer=wl.optimizer)
        model.params[0][0].block_until_ready()
        seconds = time.perf_counter() - start
    finally:
        training.ChunkPlanner.next = real_next
        training.CHUNK_SECONDS, training.MAX_CHUNK = saved
    return seconds, calls, model.history_.history["loss"][-1]


def _calls_summary(calls):
    """``[1, 1, 99, 99, 99, 1]`` -> ``"1 x2, 99 x3, 1 x1"`` (runs of equal lengths)."""
    runs = []
    for n in calls:
        if runs and runs[-1][0] == n:
            runs[-1][1] += 1
        else:
            runs.append([n, 1])
    return ", ".join(f"{n} x{k}" for n, k in runs)


def measure(runs, repeats):
    """Rows ``{workload, epochs, chunked_s, one_call_s, ratio, calls, ...}`` (medians)."""
    from . import workloads

    rows = []
    for name, epochs in runs.items():
        wl = dataclasses.replace(workloads.get(name), epochs=epochs)
        for one_call in (False, True):  # compile and warm up
            _fit(wl, one_call)
        times, calls, losses = {False: [], True: []}, {}, {}
        for r in range(repeats):
            for one_call in ((False, True) if r % 2 == 0 else (True, False)):
                seconds, calls[one_call], losses[one_call] = _fit(wl, one_call)
                times[one_call].append(seconds)
        chunked, whole = statistics.median(times[False]), statistics.median(times[True])
        rows.append(dict(workload=name, epochs=epochs, description=wl.description,
                         chunked_s=chunked, one_call_s=whole, ratio=chunked / whole,
                         chunked_calls=_calls_summary(calls[False]),
                         one_call_calls=_calls_summary(calls[True]),
                         same_loss=losses[False] == losses[True]))
        print(f"{name} x {epochs} epochs: chunked {chunked:.3f} s ({rows[-1]['chunked_calls']}),"
              f" one call {whole:.3f} s ({rows[-1]['one_call_calls']}): "
              f"ratio {chunked / whole:.3f}")
    return rows


def markdown(rows, repeats):
    import jax

    from .scaling import _cpu_name

    lines = ["# A long JAX run in bounded calls vs in one call", "",
             f"JAX {jax.__version__} on {jax.devices()[0].device_kind}, host {_cpu_name()}, "
             f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; median of {repeats}.", "",
             "| workload | epochs | chunked (s) | one call (s) | ratio | chunked calls "
             "| same final loss |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['workload']} | {r['epochs']} | {r['chunked_s']:.3f} | {r['one_call_s']:.3f} "
              f"| {r['ratio']:.3f} | {r['chunked_calls']} | {r['same_loss']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed fits of each (5)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default benchmarks/results, with --quick "
                             "benchmarks/results/quick)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    rows = measure(QUICK_RUNS if args.quick else LONG_RUNS, repeats)
    threads = thread_counts()
    for row in rows:
        row["threads"] = threads
    out = args.out or ROOT / "benchmarks" / "results" / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "chunking.json").write_text(json.dumps(rows, indent=2) + "\n")
    text = markdown(rows, repeats) + f"\n{describe(threads)}\n"
    (out / "chunking.md").write_text(text)
    print(text)
    print(f"wrote {out / 'chunking.json'} and {out / 'chunking.md'}")


if __name__ == "__main__":
    main()
