"""
The seed notebook, through ``mlp.Network``
==========================================

The teaching notebook's run, on the backend ``$MLP_BACKEND`` names::

    MLP_BACKEND=jax python examples/seed_notebook.py

3 -> 4 -> 1 ReLU network on random data (100 samples), full-batch gradient
descent, 1000 epochs at learning rate 0.01, printing the loss every 100 epochs.
Everything is seeded, so it prints the same losses on every run and, to float32
precision, on every backend.

Why seed 1: with ReLU on the output, as in the notebook, some seeds start with
the output unit dead (negative for every sample): its gradient is zero and the
loss never moves. Seed 0 does that on this data; seed 1 learns.
"""

from __future__ import annotations

import argparse

import numpy as np

import mlp


def main(backend=None, seed=1, epochs=1000, learning_rate=0.01):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 3))  # 100 examples, 3 features each
    y = rng.standard_normal((100, 1))  # 100 target outputs
    net = mlp.Network(input_dim=3, hidden_dim=4, output_dim=1, backend=backend, seed=seed)
    print(f"backend: {net.backend.name}")
    losses = net.train(x, y, epochs=epochs, learning_rate=learning_rate)
    print(f"final loss: {losses[-1]:.6f} (from {losses[0]:.6f})")
    return losses


# %%
# Train
# -----
# ``Network.train`` prints the loss every 100 epochs, as the notebook did.

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The seed notebook's run, through mlp.Network.")
    parser.add_argument("--backend", default=None, help="numpy, jax, torch, cupy, "
                        "array_api_strict (default: $MLP_BACKEND, else numpy)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    main(args.backend, args.seed)
