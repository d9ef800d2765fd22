"""Record the float64 weights after 20 epochs on NumPy for each optimizer setting.

Run once on the code *before* the optimizer redesign (issue 8, commit 3d03ecb), when
full batches were `fit`'s default (the full-batch cases now say ``batch_size=None``);
`tests/test_baseline.py` checks that every backend reproduces them to 1e-12.

    python tests/data/make_optimizer_baseline.py
"""

from __future__ import annotations

import json
import os

import numpy as np

import mlp
from mlp import optimizers, schedules

HERE = os.path.dirname(os.path.abspath(__file__))

#: name -> (fit keyword arguments as JSON-ready data). Optimizers are built by `build`.
CASES = {
    "sgd_full": {"optimizer": ["sgd", {"learning_rate": 0.1}], "batch_size": None},
    "sgd_batch": {"optimizer": ["sgd", {"learning_rate": 0.05}], "batch_size": 16},
    "sgd_momentum": {"optimizer": ["sgd", {"learning_rate": 0.05, "momentum": 0.9}],
                     "batch_size": 16},
    "sgd_nesterov": {"optimizer": ["sgd", {"learning_rate": 0.05, "momentum": 0.9,
                                           "nesterov": True}], "batch_size": 13},
    "sgd_step_decay": {"optimizer": ["sgd", {"learning_rate": ["step_decay", [0.1, 0.5, 10]],
                                             "momentum": 0.5}], "batch_size": 16},
    "adam_full": {"optimizer": ["adam", {"learning_rate": 0.01}], "batch_size": None},
    "adam_batch": {"optimizer": ["adam", {"learning_rate": 0.01}], "batch_size": 16},
    "adam_cosine": {"optimizer": ["adam", {"learning_rate": ["cosine_decay",
                                                             [0.01, 50, 5, 0.1]]}],
                    "batch_size": 16},
    "adam_l2_clip": {"optimizer": ["adam", {"learning_rate": 0.01}], "batch_size": 16,
                     "alpha": 0.01, "clip_norm": 0.5},
    "adamw": {"optimizer": ["adamw", {"learning_rate": 0.01, "weight_decay": 0.05}],
              "batch_size": 16},
    "adamw_exp": {"optimizer": ["adamw", {"learning_rate": ["exponential_decay",
                                                            [0.01, 20, 0.5]],
                                          "weight_decay": 0.05}], "batch_size": 16},
    "rmsprop": {"optimizer": ["rmsprop", {"learning_rate": 0.005}], "batch_size": 16},
    "rmsprop_invscaling": {"optimizer": ["rmsprop", {"learning_rate": ["invscaling",
                                                                       [0.005, 0.5]]}],
                           "batch_size": 16, "clip_norm": 1.0},
    "sgd_l2_clip_noshuffle": {"optimizer": ["sgd", {"learning_rate": 0.05}],
                              "batch_size": 16, "alpha": 0.001, "clip_norm": 0.3,
                              "shuffle": False},
}

CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}


def build(case):
    """``fit`` keyword arguments (with an optimizer object) from a case's data."""
    kwargs = dict(case)
    name, fields = kwargs.pop("optimizer")
    fields = dict(fields)
    lr = fields.get("learning_rate")
    if isinstance(lr, list):
        fields["learning_rate"] = getattr(schedules, lr[0])(*lr[1])
    kwargs["optimizer"] = getattr(optimizers, CLASSES[name])(**fields)
    return kwargs


def data():
    """A small 3-class problem, 50 samples of 5 features (float64)."""
    rng = np.random.default_rng(2024)
    x = rng.normal(size=(50, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8).astype(int)
    return x, y


def train(case, backend="numpy"):
    x, y = data()
    model = mlp.MLP([5, 8, 6, 3], activation="tanh", loss="cross_entropy", dtype="float64",
                    seed=3, backend=backend)
    model.fit(x, y, epochs=20, **build(case))
    return model.get_weights()


def main():
    arrays = {}
    for name, case in CASES.items():
        for i, (W, b) in enumerate(train(case)):
            arrays[f"{name}/W{i}"], arrays[f"{name}/b{i}"] = W, b
    np.savez(os.path.join(HERE, "optimizer_baseline.npz"), **arrays)
    with open(os.path.join(HERE, "optimizer_baseline.json"), "w") as fh:
        json.dump(CASES, fh, indent=1)
    print(f"recorded {len(CASES)} cases")


if __name__ == "__main__":
    main()
