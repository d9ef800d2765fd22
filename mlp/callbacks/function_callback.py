"""`FunctionCallback`: a plain function ``fn(epoch, logs)`` as a callback."""

from __future__ import annotations

from .callback import Callback


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs)`` called as ``on_epoch_end``."""

    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, epoch, logs):
        return self.fn(epoch, logs)

    def __repr__(self) -> str:
        return f"FunctionCallback({getattr(self.fn, '__name__', self.fn)!r})"
