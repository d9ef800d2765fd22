"""`Callback`: the base class of everything `fit` calls between epochs, and `Run`: what a
fit tells its callbacks it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..model import MLP

#: An epoch's logs: each logged metric's value (``{"loss": 0.3, "val_loss": 0.4}``).
Logs = dict[str, float]


@dataclass(frozen=True)
class Run:
    """What a fit runs, as its callbacks are told it (`Callback.set_run`).

    Parameters
    ----------
    callbacks : list of Callback
        Every callback of the fit, the one told included, in the order they run.
    data : object or None, default None
        The fit's data as training takes it (``x``, ``y``, the rows' weights and
        the validation data, on the model's device), for a callback that tells
        one run from another by its data (`BackupAndRestore`); None for callbacks
        driven outside `fit`.
    """

    callbacks: list[Callback]
    data: Any = None


class Callback:
    """Base class of everything `fit` calls between epochs: override the hooks you need.

    `fit` drives every callback through one `CallbackList`, which treats them all
    alike: what a callback needs beyond the hooks below, it declares.

    - ``runs_last`` (a class attribute, default False): True runs the callback
      after every other one, whatever its place in ``callbacks=[...]``, and
      gives it each epoch's logs as final (the histories hold what the others
      added). For a callback that records the whole run (`BackupAndRestore`:
      its backup holds what every other callback did to the epoch).
    - ``epochs_at_once`` (a class attribute, default False): True declares that
      the callback takes a run of several epochs at once, after the run
      (`on_epochs_end`), and needs neither the weights of each epoch nor a
      call as an epoch begins. When every callback of a fit declares it and
      there is no validation data, the fit runs many epochs per compiled call
      (one call on JAX) and gives each callback every run's logs through
      `on_epochs_end` (`History` declares it); otherwise every callback sees
      each epoch begin and end, one at a time.
    - `set_run`: called before training begins with the fit's `Run` - every
      callback of the fit and the fit's data - for a callback that needs its
      siblings (to back up their `get_state`) or the run's identity.
    - `resumable_seed`: the seed of a run the callback resumes, which the fit
      draws its validation split with (before any hook is called).
    - `on_train_abandoned`: the fit ends before it began (a later callback's
      ``on_train_begin`` raised): let go of what ``on_train_begin`` took.
    - `on_epoch_logged`: the epoch's logs once every callback that does not
      run last has seen them (a callback that recorded them earlier takes
      what the others added, as `History` does).
    - `on_epochs_taken_back`: a divergence took back epochs the callback saw.
    - `get_state` / `set_state`: what the callback counted, for a backup.

    Attributes
    ----------
    model : MLP
        The model being trained (set by `set_model` before training). Its
        ``params`` are the weights after the latest epoch; ``model.train_state_``
        holds the training state (optimizer state, epochs completed).
    params : dict
        The fit's settings: ``epochs``, ``batch_size``, ``optimizer``, ...,
        and ``metrics``, the names the epoch logs hold.
    runs_last : bool
        Whether the callback runs after every other callback of the fit (see above).
    epochs_at_once : bool
        Whether the callback takes runs of several epochs at once (see above).
    """

    _model: MLP | None = None
    params: dict[str, Any] = {}
    runs_last: bool = False
    epochs_at_once: bool = False

    @property
    def model(self) -> MLP:
        """The model being trained (`set_model`).

        Reading it before a fit (or `set_model`) has given the callback one raises an
        AttributeError saying so.
        """
        model = self._model
        if model is None:
            raise AttributeError(f"{type(self).__name__} has no model yet: fit gives it the "
                                 f"model it trains (set_model) before training begins")
        return model

    @model.setter
    def model(self, model: MLP) -> None:
        self._model = model

    def set_model(self, model: MLP) -> None:
        """Take ``model``, the model being trained, as ``self.model``.

        Parameters
        ----------
        model : MLP
            The model being trained.
        """
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        """Take the fit's settings as ``self.params``.

        Parameters
        ----------
        params : dict
            The fit's settings (``epochs``, ``batch_size``, ``optimizer``, ...,
            and ``metrics``, the names the epoch logs hold).
        """
        self.params = params

    def set_run(self, run: Run) -> None:
        """Take what the fit runs, before ``on_train_begin``.

        The `Run` holds every callback of the fit in the order they run, and the
        fit's data. Default: nothing.

        Parameters
        ----------
        run : Run
            Every callback of the fit in the order they run, and the fit's data.
        """

    def resumable_seed(self, model: MLP) -> int | None:
        """Give the seed of the run this callback resumes.

        Asked where ``model``'s seed was drawn (``seed=None``) and it has not been
        trained: the fit draws its validation split with it.

        Parameters
        ----------
        model : MLP
            The model being trained.

        Returns
        -------
        int or None
            The seed, or None: the model's own.
        """
        return None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Act before the first epoch.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.
        """

    def on_train_abandoned(self, logs: dict[str, Any] | None = None) -> None:
        """Let go of what ``on_train_begin`` took: the fit ends before its first epoch.

        This callback's ``on_train_begin`` ran, but a later callback's raised, and
        ``on_train_end`` is not called: release a lock, close a file.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.
        """

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Act before epoch ``epoch``.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict or None, default None
            Empty or None (nothing is logged before an epoch).
        """

    def on_epoch_end(self, epoch: int, logs: Logs) -> bool | None:
        """Act after epoch ``epoch``; a truthy return stops training.

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

    def on_epochs_end(self, epochs: range, logs: dict[str, list[float]]) -> bool | None:
        """Act after a run of several epochs at once.

        Called in a fit whose callbacks all declare ``epochs_at_once``. The model
        holds the weights the run ended with. This is the only hook a run calls
        (no ``on_epoch_begin``, ``on_epoch_end`` or ``on_epoch_logged``).

        Default: ``on_epoch_end(epoch, epoch_logs)`` for each epoch in order (each
        epoch's logs a dict), returning whether any asked to stop.

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
        from .callback_list import stop_requested

        stop = False
        for epoch, values in zip(epochs, zip(*logs.values(), strict=True), strict=True):
            stop = stop_requested(self, self.on_epoch_end(epoch, dict(zip(logs, values)))) \
                or stop
        return stop

    def on_epoch_logged(self, epoch: int, logs: Logs) -> None:
        """Read epoch ``epoch``'s final logs.

        Every callback that does not run last has seen the epoch end, and ``logs``
        holds what they added or changed (read them; change nothing). Called on
        every callback, before those that run last see the epoch end.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Act after the last epoch.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """

    def on_epochs_taken_back(self, epoch: int, logs: Logs | None = None) -> None:
        """Forget the epochs from ``epoch`` on: the fit diverged and took them back.

        The model is back at the start of ``epoch`` (its weights, epoch count,
        history and optimizer state). A callback that recorded those epochs
        forgets them here (`History` drops them, `CSVLogger` removes their rows,
        `BackupAndRestore` backs up the model as it is now). Called before
        ``on_train_end``.

        Parameters
        ----------
        epoch : int
            The first epoch taken back (the model is back at its start).
        logs : dict or None, default None
            Not used.
        """

    def get_state(self) -> dict[str, Any] | None:
        """Give what this callback has counted so far, for a `BackupAndRestore` to back up.

        Returns
        -------
        dict or None
            JSON-ready; None: nothing to back up.
        """
        return None

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back what `get_state` gave.

        Called after ``on_train_begin``, when a `BackupAndRestore` resumes a run.

        Parameters
        ----------
        state : dict
            What `get_state` gave.
        """
