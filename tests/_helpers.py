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


def read_only_folder(tmp_path):
    """A folder in which no file can be created, even by root (a read-only file system
    such as /sys), or where permissions bind (not root) one made read-only; None where
    there is neither."""
    import os
    import tempfile

    for folder in ("/sys", "/proc"):
        if not os.path.isdir(folder):
            continue
        try:
            fd, name = tempfile.mkstemp(dir=folder)
        except OSError:
            return folder
        os.close(fd)
        os.unlink(name)
    if os.name == "posix" and os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return str(folder)
    return None
