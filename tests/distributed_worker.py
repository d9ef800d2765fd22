"""One process of the two-process test (tests/test_distributed.py); not a test itself.

``python tests/distributed_worker.py <process_id> <n_processes> <port> <out.npz>``:
joins a CPU cluster on 127.0.0.1:<port> (gloo collectives), trains a small model
data-parallel over every process's devices (``devices="all"``) from the same full
arrays in every process, and writes the final weights and losses to ``out.npz``.
"""

from __future__ import annotations

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


def main(process_id, n_processes, port, out):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                               num_processes=n_processes, process_id=process_id,
                               initialization_timeout=60)
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


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
