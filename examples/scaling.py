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
the mesh costs, not a speedup. On a machine with several GPUs the same code
shows the speedup::

    python examples/scaling.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlp

DEVICE_COUNTS = (1, 2, 4)

# %%
# What the fresh process runs
# ---------------------------
# The same model on each device count, from the same weights and data: compiled
# and warmed up by a first fit, then timed over two epochs (the best of 3).

MEASURE = """
import json, sys, time

import numpy as np

import mlp
from mlp import backends

rng = np.random.default_rng(0)
centers = rng.normal(size=(10, 64)).astype(np.float32)
y = rng.integers(0, 10, size=8192)
x = centers[y] + rng.normal(scale=2.0, size=(8192, 64)).astype(np.float32)
rows = []
for n in map(int, sys.argv[1].split(",")):
    backend = backends.get_backend("jax", devices=n)
    model = mlp.MLP([64, 256, 256, 10], loss="cross_entropy", backend=backend, seed=0)
    model.fit(x, y, epochs=2, batch_size=512, optimizer="sgd", learning_rate=0.05)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.fit(x, y, epochs=2, batch_size=512)
        times.append((time.perf_counter() - start) / 2)
    rows.append({"devices": n, "seconds_per_epoch": min(times), "loss": model.loss(x, y)})
print(json.dumps(rows))
"""


def measure_in_a_fresh_process(device_counts=DEVICE_COUNTS):
    """Run `MEASURE` in a new interpreter whose XLA sees ``max(device_counts)`` host
    devices, with this process's mlp; returns its rows."""
    flag = f"--xla_force_host_platform_device_count={max(device_counts)}"
    here = os.path.dirname(os.path.dirname(os.path.abspath(mlp.__file__)))
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip(),
               PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    counts = ",".join(map(str, device_counts))
    proc = subprocess.run([sys.executable, "-c", MEASURE, counts], env=env,
                          capture_output=True, text=True, check=True, timeout=600)
    return json.loads(proc.stdout.splitlines()[-1])


# %%
# Time one fit per device count
# -----------------------------

if __name__ == "__main__":
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
