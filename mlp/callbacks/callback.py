"""`Callback`: the base class of everything `fit` calls between epochs."""

from __future__ import annotations


class Callback:
    """Base class of everything `fit` calls between epochs: override the hooks you need.

    Attributes
    ----------
    model : MLP
        The model being trained (set by `set_model` before training). Its
        ``params`` are the weights after the latest epoch; ``model.train_state_``
        holds the training state (optimizer state, epochs completed).
    params : dict
        The fit's settings: ``epochs``, ``batch_size``, ``optimizer``, ...,
        and ``metrics``, the names the epoch logs hold.
    """

    model = None
    params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None):
        """Before the first epoch."""

    def on_epoch_begin(self, epoch: int, logs=None):
        """Before epoch ``epoch`` (counted from 0)."""

    def on_epoch_end(self, epoch: int, logs: dict):
        """After epoch ``epoch``; a truthy return stops training (``model.stop_training``)."""

    def on_train_end(self, logs=None):
        """After the last epoch; ``logs["completed"]`` is False when `fit` raised
        (divergence, Ctrl-C)."""

    def on_epochs_taken_back(self, epoch: int, logs=None):
        """The fit diverged and took back the epochs from ``epoch`` on, which this
        callback saw end: the model is back at the start of ``epoch`` (its weights,
        epoch count, history and optimizer state). A callback that recorded those
        epochs forgets them here (`CSVLogger` removes their rows, `BackupAndRestore`
        backs up the model as it is now). Called before ``on_train_end``."""

    def get_state(self):
        """What this callback has counted so far, JSON-ready (a dict), for a
        `BackupAndRestore` to back up; None (default): nothing."""
        return None

    def set_state(self, state: dict) -> None:
        """Take back what `get_state` gave (after ``on_train_begin``, when a
        `BackupAndRestore` resumes)."""
