"""
Data-parallel scaling: one fit on 1, 2 and 4 devices
====================================================

``backends.get_backend("jax", devices=n)`` trains one model data-parallel over
``n`` devices: the weights replicated, the rows split, the gradients summed by
XLA's all-reduce. The math is the one-device math, so every device count gives
the same weights and the same loss.

JAX reads ``XLA_FLAGS`` once, when it starts, so the timing runs in a fresh
process that asks XLA for 4 host devices
(``--xla_force_host_platform_device_count=4``). Those devices share this
machine's CPU cores: the table shows that the result does not change and what
the mesh costs, not a speedup. On a machine with several GPUs the same script
(without the flag's effect on GPUs) shows the speedup::

    python examples/scaling.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

DEVICE_COUNTS = (1, 2, 4)


def measure(device_counts=DEVICE_COUNTS, *, samples=8192, epochs=2, seed=0):
    """Seconds per epoch and the final loss, for each device count (in this process).

    Each model is compiled and warmed up by a first fit of ``epochs`` epochs, then
    timed over ``epochs`` more (the best of 3); every count starts from the same
    weights and data.
    """
    import mlp
    from mlp import backends

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, 64)).astype(np.float32)
    y = rng.integers(0, 10, size=samples)
    x = centers[y] + rng.normal(scale=2.0, size=(samples, 64)).astype(np.float32)
    rows = []
    for n in device_counts:
        backend = backends.get_backend("jax", devices=n)
        model = mlp.MLP([64, 256, 256, 10], loss="cross_entropy", backend=backend, seed=seed)
        model.fit(x, y, epochs=epochs, batch_size=512, optimizer="sgd", learning_rate=0.05)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            model.fit(x, y, epochs=epochs, batch_size=512)
            times.append((time.perf_counter() - start) / epochs)
        rows.append({"devices": n, "seconds_per_epoch": min(times), "loss": model.loss(x, y)})
    return rows


def measure_in_a_fresh_process(device_counts=DEVICE_COUNTS):
    """`measure` in a new interpreter whose XLA sees ``max(device_counts)`` host devices."""
    flag = f"--xla_force_host_platform_device_count={max(device_counts)}"
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip())
    counts = ",".join(map(str, device_counts))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", counts],
                          env=env, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(proc.stdout.splitlines()[-1])


def _parse(argv=None):
    parser = argparse.ArgumentParser(description="Data-parallel scaling on JAX devices.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# %%
# Time one fit per device count
# -----------------------------

if __name__ == "__main__":
    args = _parse()
    if args.child:  # the fresh process: measure, print the rows as JSON, and stop
        print(json.dumps(measure([int(n) for n in args.child.split(",")])))
        sys.exit(0)
    rows = measure_in_a_fresh_process()
    base = rows[0]["seconds_per_epoch"]
    print("| devices | s / epoch | relative to 1 device | final loss |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['devices']} | {row['seconds_per_epoch']:.3f} | "
              f"{base / row['seconds_per_epoch']:.2f}x | {row['loss']:.6f} |")

# %%
# The same loss on every device count; the time is the mesh's overhead on
# shared cores (the performance page has measurements and how they were taken).

if __name__ == "__main__":
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3), layout="constrained")
    axis.bar([str(row["devices"]) for row in rows], [row["seconds_per_epoch"] for row in rows])
    axis.set_xlabel("devices (forced host devices sharing the same CPU cores)")
    axis.set_ylabel("seconds per epoch")
