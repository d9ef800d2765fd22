"""`ProgressBar`: a tqdm bar over the epochs (``fit(verbose=1)``)."""

from __future__ import annotations

from typing import Any

from .callback import Callback, Logs


class ProgressBar(Callback):
    """A tqdm bar over the epochs with the latest metrics (``fit(verbose=1)``)."""

    bar: Any = None  #: the tqdm bar (tqdm is untyped), from ``on_train_begin`` on

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params.get("epochs"), unit="epoch", desc="fit", leave=True)
        self.seen = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        if self.seen == 0:  # a backup may have moved the first epoch on
            self.bar.update(epoch - self.params.get("initial_epoch", epoch))
        self.seen += 1

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
