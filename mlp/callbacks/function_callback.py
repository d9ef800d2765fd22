"""`FunctionCallback`: a plain function ``fn(epoch, logs)`` as a callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .callback import Callback, Logs


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs)`` called as ``on_epoch_end``.

    Parameters
    ----------
    fn : callable
        ``fn(epoch, logs)``; a truthy return stops training.
    """

    def __init__(self, fn: Callable[[int, Logs], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: Logs) -> Any:
        """Call ``fn(epoch, logs)``.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).

        Returns
        -------
        bool or None
            A truthy value stops training (``model.stop_training``).
        """
        return self.fn(epoch, logs)

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.fn, '__name__', self.fn)!r})"
