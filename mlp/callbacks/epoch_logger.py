"""`EpochLogger`: one line per epoch on stdout (``fit(verbose=2)``)."""

from __future__ import annotations

import time

from .callback import Callback, Logs


class EpochLogger(Callback):
    """Print one line per epoch on stdout (``fit(verbose=2)``).

    Each line reads::

        epoch 3/10 - loss: 0.4123 - val_loss: 0.5011 - val_accuracy: 0.8 - 0.012s
    """

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        seconds = time.perf_counter() - self.start
        items = " - ".join(f"{k}: {v:.6g}" for k, v in logs.items())
        last = self.params.get("initial_epoch", 0) + self.params.get("epochs", 0)
        print(f"epoch {epoch + 1}/{last or '?'} - {items} - {seconds:.3f}s", flush=True)
