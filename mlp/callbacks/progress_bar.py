"""`ProgressBar`: a tqdm bar over the epochs (``fit(verbose=1)``)."""

from __future__ import annotations

from typing import Any

from .callback import Callback, Logs


class ProgressBar(Callback):
    """A tqdm bar over the epochs with the latest metrics (``fit(verbose=1)``)."""

    bar: Any = None  #: the tqdm bar (tqdm is untyped), from ``on_train_begin`` on

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Open the progress bar over the fit's epochs.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.
        """
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.params.get("epochs"), unit="epoch", desc="fit", leave=True)
        self.seen = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Count the epoch (moving the bar on over epochs a backup skipped).

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict or None, default None
            Empty or None (nothing is logged before an epoch).
        """
        if self.seen == 0:  # a backup may have moved the first epoch on
            self.bar.update(epoch - self.params.get("initial_epoch", epoch))
        self.seen += 1

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Advance the bar and show the epoch's logs.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
        self.bar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Close the bar.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """
        if self.bar is not None:
            self.bar.close()
