"""`CallbackList`, which drives a fit's callbacks, and the helpers that take them in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ..params import InstanceOf, validate
from .callback import Callback, Logs, Run
from .function_callback import FunctionCallback

if TYPE_CHECKING:
    from ..model import MLP

#: What `fit` takes as ``callbacks``: None, or a list of Callbacks and functions.
CallbacksArgument = Sequence[Callback | Callable[[int, Logs], Any]] | None

_WHAT = "a list of Callback objects or functions fn(epoch, logs)"


def as_callbacks(callbacks: CallbacksArgument) -> list[Callback]:
    """``callbacks`` (None or a list of `Callback` objects and functions) as Callbacks.

    Raises TypeError for anything else, e.g. one callback not in a list.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        raise TypeError(f"callbacks must be {_WHAT}, got one {type(callbacks).__name__}; "
                        f"put it in a list: callbacks=[...]")
    validate({"callbacks": [InstanceOf((list, tuple), _WHAT)]}, {"callbacks": callbacks})
    out: list[Callback] = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(FunctionCallback(cb))
        else:
            raise TypeError("callbacks must be Callback objects or functions fn(epoch, logs), "
                            f"got {type(cb).__name__} {cb!r}"[:200])
    return out


def callback_name(callback: Callback) -> str:
    """How messages name ``callback``: its class, or the function a `FunctionCallback`
    wraps."""
    if isinstance(callback, FunctionCallback):
        return f"function {getattr(callback.fn, '__name__', repr(callback.fn))}"
    return type(callback).__name__


def stop_requested(callback: Callback, result: object) -> bool:
    """Whether ``on_epoch_end``'s ``result`` asks to stop (a truthy value); a value with
    no truth (an array of several elements) is refused, naming the callback."""
    try:
        return bool(result)
    except Exception as exc:  # noqa: BLE001 - e.g. NumPy's "truth value ... is ambiguous"
        shape = getattr(result, "shape", None)
        what = (f"an array of shape {tuple(shape)}" if shape is not None
                else f"a {type(result).__name__}")
        raise TypeError(f"callback {callback_name(callback)}: on_epoch_end returned {what}, "
                        f"which is neither true nor false ({exc}); return True to stop "
                        "training, None or False to go on") from None


class CallbackList(Callback):
    """Drive a list of callbacks; `fit` calls only this.

    Every callback is treated alike, through the `Callback` protocol: those
    that declare ``runs_last`` run after the others (each group in the order
    given), every callback is told the fit's `Run` (`set_run`: the callbacks in
    that order, and ``data``), and each hook is called on each callback.

    ``on_epoch_end`` calls every callback (all see every epoch, even when an
    earlier one asked to stop) and sets ``model.stop_training`` if any returned
    a truthy value; so does ``on_epochs_end`` for a run of epochs, in a fit
    whose callbacks all declare ``epochs_at_once`` (`epochs_at_once`).

    ``check`` (set by `fit`), when not None, is called as ``check(callback, hook,
    logs)`` after each callback's hook: it refuses, naming the callback, a model
    state the callback left damaged.

    Parameters
    ----------
    callbacks : sequence of Callback
        The callbacks, in the order given.
    model : MLP or None, default None
        Set on every callback (`set_model`).
    params : dict or None, default None
        The fit's settings, set on every callback (`set_params`).
    data : object, default None
        The fit's data, told to every callback in the `Run` (`set_run`).
    """

    check: Callable[[Callback, str, Any], None] | None = None

    def __init__(self, callbacks: Iterable[Callback] = (), model: MLP | None = None,
                 params: dict[str, Any] | None = None, data: Any = None) -> None:
        self.callbacks = _in_running_order(callbacks)
        self.set_params(dict(params or {}))
        if model is not None:
            self.set_model(model)
        self.set_run(Run(self.callbacks, data))

    def append(self, callback: Callback) -> None:
        """Add ``callback`` after the others (or last among those that run last).

        It is told the model, the settings and the run, as the others were.

        Parameters
        ----------
        callback : Callback
            The callback to add.
        """
        if self._model is not None:
            callback.set_model(self._model)
        callback.set_params(self.params)
        self.callbacks[:] = _in_running_order([*self.callbacks, callback])
        self.set_run(self.run)

    def set_run(self, run: Run) -> None:
        """Tell every callback what the fit runs.

        Parameters
        ----------
        run : Run
            Every callback of the fit in the order they run, and the fit's data.
        """
        self.run = run
        for cb in self.callbacks:
            cb.set_run(run)

    def set_model(self, model: MLP) -> None:
        """Give every callback the model.

        Parameters
        ----------
        model : MLP
            The model being trained.
        """
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict[str, Any]) -> None:
        """Give every callback the fit's settings.

        Parameters
        ----------
        params : dict
            The fit's settings (``epochs``, ``batch_size``, ``optimizer``, ...,
            and ``metrics``, the names the epoch logs hold).
        """
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def _checked(self, callback: Callback, hook: str, logs: Any) -> None:
        if self.check is not None:
            self.check(callback, hook, logs)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Call every callback's ``on_train_begin``, in order.

        If one raises, those begun before it are told ``on_train_abandoned``, and
        the error is raised.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.
        """
        begun: list[Callback] = []
        try:
            for cb in self.callbacks:
                cb.on_train_begin(logs)
                begun.append(cb)
                self._checked(cb, "on_train_begin", logs)
        except BaseException:  # what those begun took (a lock) is let go: no fit runs
            for cb in begun:
                try:
                    cb.on_train_abandoned(logs)
                except Exception:  # noqa: BLE001 - the error that ended the fit is raised
                    continue
            raise

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Call every callback's ``on_epoch_begin``.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict or None, default None
            Empty or None (nothing is logged before an epoch).
        """
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, logs)
            self._checked(cb, "on_epoch_begin", logs)

    @property  # (a Callback declares it as a class attribute; the list derives it)
    def epochs_at_once(self) -> bool:  # type: ignore[override]
        """Whether every callback declares ``epochs_at_once`` (takes runs of epochs)."""
        return all(cb.epochs_at_once for cb in self.callbacks)

    def on_epochs_end(self, epochs: range, logs: dict[str, list[float]]) -> bool:
        """Call every callback's ``on_epochs_end`` for the run of ``epochs``.

        Every callback is called even after one raised an error (the epochs are the
        model's); then the first error is raised. Ctrl-C stops at once, and so does
        a model state a callback damaged. Sets ``model.stop_training`` if any
        callback asked to stop.

        Parameters
        ----------
        epochs : range
            The run's epochs, in order.
        logs : dict of str to list of float
            Each logged metric's values, one per epoch of ``epochs`` (read them;
            change nothing).

        Returns
        -------
        bool or None
            A truthy value stops training after the run.
        """
        stop = False
        error: Exception | None = None
        for cb in self.callbacks:
            asked, error = self._end(cb, "on_epochs_end", (epochs, logs), error)
            stop = asked or stop
        return self._ended(stop, error)

    def _end(self, callback: Callback, hook: str, args: tuple[Any, ...],
             error: Exception | None) -> tuple[bool, Exception | None]:
        """``callback``'s ``hook`` (``on_epoch_end`` or ``on_epochs_end``) called with
        ``args`` (the logs last), then checked: ``(whether it asked to stop, the first
        error so far)``; an error it raises is kept to be raised once every callback has
        seen the epochs (they are the model's)."""
        try:
            result = getattr(callback, hook)(*args)
        except Exception as exc:  # noqa: BLE001 - raised once every callback saw the epochs
            error, result = (error if error is not None else exc), None
        asked = stop_requested(callback, result)
        self._checked(callback, hook, args[-1])
        return asked, error

    def _ended(self, stop: bool, error: Exception | None) -> bool:
        """Raise ``error`` (the first a callback raised) if any; else stop training if
        ``stop``, and return it."""
        if error is not None:
            raise error
        if stop:
            self.model.stop_training = True
        return stop

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool:
        """Call every callback's ``on_epoch_end``, then its ``on_epoch_logged``.

        Every callback is called even after one raised an error (the epoch is the
        model's: logs, backups and histories all take it); then the first error is
        raised. Ctrl-C stops at once, and so does a model state or logs a callback
        damaged (refused before the next callback sees them). Every callback's
        ``on_epoch_logged`` comes before the first that runs last sees the epoch
        end: what the callbacks add to the logs reaches the histories (and a
        backup's). Sets ``model.stop_training`` if any callback asked to stop.

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
        stop, logged = False, False
        error: Exception | None = None
        for cb in self.callbacks:
            if not logged and cb.runs_last:
                logged = self._logged(epoch, logs)
            asked, error = self._end(cb, "on_epoch_end", (epoch, logs), error)
            stop = asked or stop
        if not logged:
            self._logged(epoch, logs)
        return self._ended(stop, error)

    def _logged(self, epoch: int, logs: Logs) -> bool:
        """Every callback's ``on_epoch_logged`` (each checked), then that of the model's
        history (``model.history_``, which took the logs before the callbacks)."""
        for cb in self.callbacks:
            cb.on_epoch_logged(epoch, logs)
            self._checked(cb, "on_epoch_logged", logs)
        kept = getattr(self._model, "history_", None)
        if isinstance(kept, Callback) and all(kept is not cb for cb in self.callbacks):
            kept.on_epoch_logged(epoch, logs)
        seen = getattr(self.check, "seen", None)
        if seen is not None:  # (the model's history's changes are fit's own)
            seen()
        return True

    def on_epochs_taken_back(self, epoch: int, logs: Logs | None = None) -> None:
        """Call every callback's ``on_epochs_taken_back``; then raise the first error.

        Parameters
        ----------
        epoch : int
            The first epoch taken back (the model is back at its start).
        logs : dict or None, default None
            Not used.
        """
        error: Exception | None = None
        for cb in self.callbacks:
            try:
                cb.on_epochs_taken_back(epoch, logs)
            except Exception as exc:  # noqa: BLE001 - raised once every callback forgot
                error = error if error is not None else exc
        if error is not None:
            raise error

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Call every callback's ``on_train_end``, then raise the first error.

        Every callback is called even after one raised: a backup lets its folder
        go, a log is complete.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """
        error: BaseException | None = None
        for cb in self.callbacks:
            try:
                cb.on_train_end(logs)
                self._checked(cb, "on_train_end", logs)
            except BaseException as exc:  # noqa: BLE001 - raised once every callback ended
                error = error if error is not None else exc
        if error is not None:
            raise error


def resumed_seed(model: MLP, callbacks: Iterable[Callback]) -> int:
    """The seed a fit of ``model`` draws its validation split with: the model's, or the
    seed of the run a callback among ``callbacks`` resumes (`Callback.resumable_seed`:
    a `BackupAndRestore`, where the model's seed was drawn, ``seed=None``, and it has
    not been trained: a script run again)."""
    for cb in callbacks:
        seed = cb.resumable_seed(model)
        if seed is not None:
            return seed
    return model.seed


def _in_running_order(callbacks: Iterable[Callback]) -> list[Callback]:
    """``callbacks`` as they run: those that declare ``runs_last`` after the others, each
    group in the order given."""
    callbacks = list(callbacks)
    return ([cb for cb in callbacks if not cb.runs_last]
            + [cb for cb in callbacks if cb.runs_last])
