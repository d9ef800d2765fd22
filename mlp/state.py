"""`ModelState`: everything training changes in a model, as one value.

`MLP.snapshot_state` takes it and `MLP.restore_state` puts it back, all or
nothing: a `fit` that fails before completing an epoch puts the model back as
it found it, and `BackupAndRestore` moves a model to its backup's epoch
(`ModelState.resumed_from`) and back if a callback's state cannot follow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ._typing import Array, Optimizer

if TYPE_CHECKING:
    from .callbacks import History
    from .training import TrainState


class HistoryRecord(NamedTuple):
    """A `History`'s contents when recorded: the objects that hold them (its epoch list,
    its metrics dict and each metric's list) with copies of what they held, its
    ``params`` and ``stopped_epoch``; putting it back refills the same objects."""

    epoch: list[int]
    epochs: list[int]
    metrics: dict[str, list[float]]
    lists: dict[str, tuple[list[float], list[float]]]  # name -> (the list, a copy)
    params: dict[str, Any]
    stopped_epoch: int | None

    @classmethod
    def of(cls, history: History) -> HistoryRecord:
        """The record of ``history`` (a `mlp.callbacks.History`)."""
        lists = {k: (v, list(v)) for k, v in history.history.items()}
        return cls(history.epoch, list(history.epoch), history.history, lists,
                   history.params, history.stopped_epoch)

    def recorded(self) -> _Recorded:
        """A stand-in for the history as recorded (``.epoch`` and ``.history``), for
        checks that read it before it is put back."""
        values = {k: saved for k, (_, saved) in self.lists.items()}
        return _Recorded(self.epochs, values)

    def put_back(self, history: History) -> None:
        """Make ``history`` hold what it held when recorded (the same lists and dict)."""
        self.epoch[:] = self.epochs
        for values, saved in self.lists.values():
            values[:] = saved
        self.metrics.clear()
        self.metrics.update({k: values for k, (values, _) in self.lists.items()})
        history.epoch, history.history = self.epoch, self.metrics
        history.params, history.stopped_epoch = self.params, self.stopped_epoch


class _Recorded(NamedTuple):
    epoch: list[int]
    history: dict[str, list[float]]


@dataclass(frozen=True, eq=False)
class ModelState:
    """A model's training state at one moment (`MLP.snapshot_state`).

    Attributes
    ----------
    params : list of (W, b)
        The weights (backend arrays, ``W: (fan_in, fan_out)``, ``b: (fan_out,)``).
    optimizer : optimizer or None
        ``model.optimizer_``.
    optimizer_state : pytree or None
        ``model.optimizer_state_``.
    epochs_trained : int
        ``model.epochs_trained_``.
    history : History or None
        ``model.history_`` (the object).
    history_record : HistoryRecord or None
        Its contents, put back into the same object.
    shuffle_state : dict
        The state of the shuffle stream's bit generator (``model.shuffle_rng``).
    seed : int
        ``model.seed``.
    seed_drawn : bool
        Whether the seed was drawn (``seed=None``).
    stop_training : object
        ``model.stop_training``.
    train_state : TrainState or None
        ``model.train_state_`` (the object).
    train_state_values : (params, opt_state, epoch) or None
        Its contents, put back into the same object.
    """

    params: list[tuple[Array, Array]]
    optimizer: Optimizer | None
    optimizer_state: Any
    epochs_trained: int
    history: History | None
    history_record: HistoryRecord | None
    shuffle_state: Mapping[str, Any]
    seed: int
    seed_drawn: bool
    stop_training: bool
    train_state: TrainState | None
    train_state_values: tuple[list[tuple[Array, Array]], Any, int] | None

    def resumed_from(self, saved: ModelState, *, adopt_seed: bool = False) -> ModelState:
        """This state moved to ``saved``'s progress (a backup's): its weights, optimizer
        state, epoch count, history and shuffle stream, in this state's training state
        too; with ``adopt_seed``, ``saved``'s seed (no longer counted as drawn). The
        optimizer, the training state object and ``stop_training`` stay this state's.

        Parameters
        ----------
        saved : ModelState
            The state of the model read from the backup.
        adopt_seed : bool
            Take ``saved``'s seed (a run started again with a drawn seed).

        Returns
        -------
        ModelState
        """
        values = None
        if self.train_state is not None:
            values = (saved.params, saved.optimizer_state, saved.epochs_trained)
        seed = (saved.seed, False) if adopt_seed else (self.seed, self.seed_drawn)
        return dataclasses.replace(
            self, params=saved.params, optimizer_state=saved.optimizer_state,
            epochs_trained=saved.epochs_trained, history=saved.history,
            history_record=saved.history_record, shuffle_state=saved.shuffle_state,
            seed=seed[0], seed_drawn=seed[1], train_state_values=values)
