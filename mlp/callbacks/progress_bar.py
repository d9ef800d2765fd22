"""`ProgressBar`: a tqdm bar over the epochs (``fit(verbose=1)``)."""

from __future__ import annotations

from .callback import Callback


class ProgressBar(Callback):
    """A tqdm bar over the epochs with the latest metrics (``fit(verbose=1)``)."""

    bar = None

    def on_train_begin(self, logs=None):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params.get("epochs"), unit="epoch", desc="fit", leave=True)
        self.seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.seen == 0:  # a backup may have moved the first epoch on
            self.bar.update(epoch - self.params.get("initial_epoch", epoch))
        self.seen += 1

    def on_epoch_end(self, epoch, logs):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
