"""One training call at a time per model (or estimator), refused rather than waited for.

A `fit` changes the model's weights, optimizer state, history and epoch count
epoch by epoch; a second `fit` on the same model at the same time (another
thread, or a callback of the running fit) would interleave its bookkeeping with
the first's. `TrainingGuard` refuses such a call at once with `ModelBusyError`,
before it changes anything: the lock is taken without blocking, so a refused
call never waits and never deadlocks.

The guard belongs to one object and is never pickled or copied: a copy
(`copy.deepcopy`, `pickle`, `sklearn.base.clone`) is another model, free to
train (`guard_of` creates a fresh guard where an object has none).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Where an object keeps its guard (left out of its pickled state).
ATTRIBUTE = "_training_guard"

_CREATING = threading.Lock()  # makes creating an object's guard atomic


class ModelBusyError(RuntimeError):
    """A call that trains or changes a model while a `fit` of that model is running.

    The `fit` runs in another thread, or the call comes from one of the fit's own
    callbacks.
    """


class TrainingGuard:
    """A non-blocking lock, and which thread holds it for which call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.owner: int | None = None  # the thread running the call
        self.call: str | None = None   # e.g. "fit"

    @contextmanager
    def training(self, call: str, what: str = "model") -> Iterator[None]:
        """Hold the guard for ``call`` (e.g. ``"fit"``), or raise `ModelBusyError`."""
        if not self._lock.acquire(blocking=False):
            raise self._busy(call, what)
        self.owner, self.call = threading.get_ident(), call
        try:
            yield
        finally:
            self.owner = self.call = None
            self._lock.release()

    def check_free(self, call: str, what: str = "model", *, owner_may: bool = True) -> None:
        """Refuse ``call`` while a training call runs, except (``owner_may``) from the
        thread running it: a callback may call ``set_weights`` during its fit."""
        owner = self.owner
        if owner is None or (owner_may and owner == threading.get_ident()):
            return
        raise self._busy(call, what)

    def _busy(self, call: str, what: str) -> ModelBusyError:
        running = self.call or "a training call"
        if self.owner == threading.get_ident():
            where = f"from inside its own running {running} (in a callback)"
        else:
            where = f"while another thread runs {running} on it"
        a = "an" if what[0] in "aeiou" else "a"
        copies = ("sklearn.base.clone(estimator), or copy.deepcopy(estimator)"
                  if what == "estimator" else
                  "copy.deepcopy(model), or a new model built from model.get_config()")
        return ModelBusyError(
            f"{call} was called on {a} {what} {where}; {a} {what} runs one training call at "
            f"a time. Wait for the running {running} to return, or train a copy ({copies})")


def guard_of(obj: object) -> TrainingGuard:
    """``obj``'s guard, created on first use (atomically: two threads get the same one)."""
    guard: TrainingGuard | None = obj.__dict__.get(ATTRIBUTE)
    if guard is None:
        with _CREATING:
            guard = obj.__dict__.get(ATTRIBUTE)
            if guard is None:
                guard = obj.__dict__[ATTRIBUTE] = TrainingGuard()
    return guard
