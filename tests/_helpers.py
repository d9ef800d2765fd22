"""Small helpers that several test modules share."""

from __future__ import annotations

import numpy as np

import mlp


class WeightLog(mlp.Callback):
    """Records the model's weights at the end of every epoch (``self.weights``)."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs):
        self.weights.append(self.model.get_weights())


def rewrite_npz(path, **changes):
    """The ``.npz`` file at ``path`` with some of its arrays replaced (None: removed)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
