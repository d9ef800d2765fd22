"""A training script that backs itself up, for the kill-and-rerun test (`tests/test_resume.py`).

    python tests/resume_script.py BACKEND FOLDER [KILL_AT] [SEED]

Trains a small classifier for `EPOCHS` epochs (Adam with a cosine schedule, batches
of 16, shuffled) with `mlp.BackupAndRestore` and `mlp.CSVLogger` in FOLDER, then
writes the final weights to ``FOLDER/final.npz``. With KILL_AT the process sends
itself SIGKILL at the end of that epoch - after its CSV row, before its backup (the
backup goes last): no cleanup, no ``finally``, as when a machine is lost. Run again
without KILL_AT, it resumes from the backup of the epoch before and trains that
epoch again (replacing its CSV row). SEED (default 3) may be ``none``: the model's
seed is drawn, and a run started again resumes the seed of the run it continues
(written, with the weights, to ``final.npz``).
"""

from __future__ import annotations

import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import numpy as np  # noqa: E402

import mlp  # noqa: E402
from mlp import optimizers, schedules  # noqa: E402

EPOCHS = 8


def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 0.8).astype(int)
    return x, y


class KillAt(mlp.Callback):
    """SIGKILL this process at the end of epoch ``epoch`` (before its backup)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def main(backend, folder, kill_at=None, seed=3):
    x, y = data()
    model = mlp.MLP([5, 8, 3], loss="cross_entropy", dtype="float64", seed=seed,
                    backend=backend)
    opt = optimizers.Adam(schedules.cosine_decay(0.02, decay_steps=30, warmup_steps=4))
    # the plateau's patience counts across the kill (the backup holds its counters):
    # nothing counts as an improvement, so it halves the rate after epochs 2, 4 and 6
    plateau = mlp.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=1e9)
    callbacks = [mlp.CSVLogger(os.path.join(folder, "log.csv")), plateau,
                 mlp.EarlyStopping(monitor="val_loss", patience=100),
                 mlp.BackupAndRestore(os.path.join(folder, "backup"))]
    if kill_at is not None:
        callbacks.append(KillAt(kill_at))  # before the backup, which always goes last
    model.fit(x, y, epochs=EPOCHS, optimizer=opt, batch_size=16, validation_split=0.2,
              callbacks=callbacks)
    np.savez(os.path.join(folder, "final.npz"), seed=model.seed,
             reductions=np.array([epoch for epoch, _ in plateau.reductions]),
             **{f"{k}{i}": a for i, pair in enumerate(model.get_weights())
                for k, a in zip("Wb", pair, strict=True)})


if __name__ == "__main__":
    kill = sys.argv[3] if len(sys.argv) > 3 else "-"
    seed = sys.argv[4] if len(sys.argv) > 4 else "3"
    main(sys.argv[1], sys.argv[2], None if kill == "-" else int(kill),
         None if seed == "none" else int(seed))
