"""`FunctionCallback`: a plain function ``fn(epoch, logs)`` as a callback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .callback import Callback, Logs


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs)`` called as ``on_epoch_end``."""

    def __init__(self, fn: Callable[[int, Logs], Any]) -> None:
        self.fn = fn

    def on_epoch_end(self, epoch: int, logs: Logs) -> Any:
        return self.fn(epoch, logs)

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.fn, '__name__', self.fn)!r})"
