"""`BackupAndRestore`: back the training up after every epoch; a run started again
resumes from it."""

from __future__ import annotations

import errno
import json
import os
from typing import TYPE_CHECKING, Any

from ._files import mlp_io, path_argument, remove_quietly, saved_optimizer_check
from ._locks import FolderLock
from .callback import Callback, Logs, Run

if TYPE_CHECKING:
    from ..model import MLP


def _data_difference(theirs: object, ours: dict[str, Any]) -> str:
    """How the data fingerprinted ``theirs`` differs from ``ours`` (`data_fingerprint`)."""
    shapes = theirs.get("shapes") if isinstance(theirs, dict) else None
    if not isinstance(shapes, dict):
        return "other data"
    names = [name for name in dict.fromkeys([*shapes, *ours["shapes"]])
             if shapes.get(name) != ours["shapes"].get(name)]
    if not names:
        return "other data (the same shapes, other values)"

    def shape(value: Any) -> str:
        return "none" if value is None else f"shape {tuple(value)}"

    return "other data (" + ", ".join(
        f"{name}: {shape(shapes.get(name))} there, {shape(ours['shapes'].get(name))} here"
        for name in names if name not in ("val_labels", "y", "y_val") or len(names) == 1) + ")"

#: The settings of a fit that a backup must share to be resumed (besides the model's
#: config, the optimizer and the data).
_RUN_SETTINGS = ("batch_size", "alpha", "clip_norm", "shuffle")


class BackupAndRestore(Callback):
    """Back the training up after every epoch; a run started again resumes from it.

    A script killed in the middle of a `fit` (Ctrl-C, SIGKILL, a lost machine)
    and run again from the start resumes from the last backup: the weights,
    the optimizer's state, the shuffle stream, the epoch count and the history
    are put back before the first epoch, and the fit runs only the epochs that
    were missing - ending at the weights of a run never interrupted. A fit that
    completes removes its backup (and the folders it made: the folder and any
    missing above it, where nothing else is in them); one that raises keeps it.

    Parameters
    ----------
    directory : str or path-like
        Where the backup lives (created if missing), one ``.npz`` file per fit,
        named after the epoch the fit started from (so a script with several
        fits resumes the right one). Writes are atomic.

    Notes
    -----
    A backup is resumed only by the run that made it: the same model config
    (a model built with ``seed=None`` and not yet trained takes the seed the
    backup was made with: the script run again is the same run), the same
    optimizer, ``batch_size``, ``alpha``, ``clip_norm`` and ``shuffle``, and
    the same data (shapes and a hash of the values, validation data included).
    Anything else is refused before the first epoch, with a message saying
    what differs; so is a backup holding more epochs than the fit asks for
    (ask for as many, or delete the backup). Restoring is all or nothing: the
    whole backup (its file, the run, every callback's state) is checked first,
    and a refused backup leaves the model as it was.

    One fit at a time may use a folder: a lock file in it (``.mlp-backup.lock``,
    naming the process) makes another fit, in this process or another, fail at
    once; the lock of a process that died is taken over.

    The backup also holds what the fit's other callbacks counted (their
    `Callback.get_state`: the patience of `ReduceLROnPlateau` and
    `EarlyStopping`, the rows of a `CSVLogger`, ...); `ModelCheckpoint` reads
    back the epochs already trained. `EarlyStopping` keeps its best weights
    only when the best epoch is the last one backed up.
    """

    MARKER = ".mlp-backup-folder"

    #: Its backup holds what every other callback did to the epoch: it runs after them.
    runs_last = True

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = path_argument("BackupAndRestore directory", directory)
        self.restored_epoch: int | None = None
        self.others: list[Callback] = []  # the fit's other callbacks (`set_run`)
        self.fit_data: Any = None  # the fit's data (`set_run`), for the run's fingerprint
        self._lock: FolderLock | None = None
        self._run: dict[str, Any] = {}

    def set_run(self, run: Run) -> None:
        """Take the fit's other callbacks and its data.

        The backup holds the other callbacks' states, and the data identifies the
        run.

        Parameters
        ----------
        run : Run
            Every callback of the fit in the order they run, and the fit's data.
        """
        self.others = [cb for cb in run.callbacks if cb is not self]
        self.fit_data = run.data

    @property
    def path(self) -> str:
        """The backup file of the current fit."""
        return self._path_for(self.params.get("initial_epoch", 0))

    def _path_for(self, initial_epoch: int) -> str:
        return os.path.join(self.directory, f"backup-from-epoch-{initial_epoch}.npz")

    def resumable_seed(self, model: MLP) -> int | None:
        """Give the seed of the run this folder's backup would resume.

        Only for a model whose seed was drawn (``seed=None``) and that has not been
        trained; None otherwise.

        Parameters
        ----------
        model : MLP
            The model being trained.

        Returns
        -------
        int or None
            The seed, or None: the model's own.
        """
        if not model.seed_drawn or model.epochs_trained_ or \
                model.history_ is not None:
            return None
        path = self._path_for(0)
        try:
            run = mlp_io().callback_states(path).get("run") if os.path.isfile(path) else None
        except (OSError, ValueError):  # on_train_begin says what is wrong with it
            return None
        seed = run.get("seed") if isinstance(run, dict) else None
        return seed if type(seed) is int and seed >= 0 else None

    # ------------------------------------------------------------ begin
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Lock the folder, and resume from its backup when it holds one of this run.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.

        Raises
        ------
        ValueError
            The backup is of another run, or damaged (the message says what).
        OSError
            The folder cannot be made or is locked by another fit.
        """
        saved_optimizer_check(self, self.params.get("optimizer"))
        self.restored_epoch = None
        self._lock = self._hold_folder()
        try:
            self._run = {**{k: self.params.get(k) for k in _RUN_SETTINGS},
                         "data": mlp_io().data_fingerprint(self.model, self.fit_data)}
            self._run = json.loads(json.dumps(self._run))  # as the file gives it back
            if os.path.exists(self.path):
                self._restore(self.path)
        except BaseException:
            self._let_go()
            raise

    def on_train_abandoned(self, logs: dict[str, Any] | None = None) -> None:
        """Let the folder go (and remove it if made here): the fit ends before it began.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.
        """
        self._let_go()

    def _hold_folder(self) -> FolderLock:
        """Create the folder if missing (marking it as ours) and lock it."""
        for _ in range(5):  # a run ending now may remove the folder it made
            self._make_folder()
            try:
                return FolderLock(self.directory).acquire()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise OSError(exc.errno, f"BackupAndRestore cannot lock its folder "
                                         f"{self.directory!r}: {exc.strerror or exc}") from None
        raise OSError(errno.ENOENT, f"BackupAndRestore: its folder {self.directory!r} "
                                    f"keeps being removed")

    def _make_folder(self) -> None:
        """Create the folder and the folders above it that are missing; the mark in it
        counts the levels made here (the folder, its parent, ...), removed when done."""
        folder = self.directory
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, f"BackupAndRestore directory {folder!r} "
                                                    f"is a file, not a folder")
        missing: list[str] = []
        above = os.path.abspath(folder)
        while not os.path.isdir(above) and os.path.dirname(above) != above:
            missing.append(above)
            above = os.path.dirname(above)
        made = 0  # the folders made here, from the folder up, without a gap
        for path in reversed(missing):
            try:
                os.mkdir(path)
                made += 1
            except FileExistsError:  # made by another run meanwhile
                made = 0
            except OSError as exc:
                raise OSError(exc.errno, f"BackupAndRestore cannot create its folder "
                                         f"{folder!r}: {exc.strerror or exc}") from None
        if made:  # made here: removed when done, with those made above it
            with open(os.path.join(folder, self.MARKER), "w") as fh:
                fh.write(f"{made}\n")

    # ------------------------------------------------------------ restore
    def _restore(self, path: str) -> None:
        """Check the whole backup, then put it in: the model and the callbacks, all or
        nothing."""
        io = mlp_io()
        model = self.model
        saved = io.load_model(path, type(model), model.backend)
        states = io.callback_states(path)
        run = states.get("run")
        if run is not None and not isinstance(run, dict):
            raise io.ModelFileError(f"{path!r} holds a damaged backup: its run record is not "
                                    f"a JSON object")
        adopt = self._check_model(path, saved)
        self._check_run(path, run)
        self._check_epochs(path, saved)
        restores = self._check_states(path, states)
        model = self.model
        before, restored = model.snapshot_state(), self.restored_epoch
        try:
            model.restore_state(before.resumed_from(saved.snapshot_state(), adopt_seed=adopt))
            self.restored_epoch = saved.epochs_trained_
            for cb, state in restores:
                cb.set_state(state)
        except Exception as exc:
            model.restore_state(before)
            self.restored_epoch = restored
            raise ValueError(f"the backup {path!r} could not be restored ({exc}); the model "
                             f"is as it was. Delete the backup, or use another directory, to "
                             f"train from the start") from exc

    def _check_model(self, path: str, saved: MLP) -> bool:
        """Refuse another model or optimizer; True where the model takes the backup's
        seed (drawn, untrained, otherwise the same config)."""
        model = self.model
        ours, theirs = model.get_config(), saved.get_config()
        adopt = bool(ours["seed"] != theirs["seed"]
                     and self.resumable_seed(model) == theirs["seed"])
        if adopt:
            ours["seed"] = theirs["seed"]
        if ours != theirs:
            differences = "; ".join(f"{k} {theirs.get(k)!r} there, {ours.get(k)!r} here"
                                    for k in ours if ours.get(k) != theirs.get(k))
            if ours["seed"] != theirs["seed"] and model.seed_drawn:
                differences += (f" (this model's seed was drawn; build it with "
                                f"seed={theirs['seed']} to resume the backup)")
            raise ValueError(f"the backup {path!r} was made with another model than this "
                             f"fit's: {differences}; delete it, or use another directory, to "
                             f"train from the start")
        optimizer = self.params.get("optimizer")
        if saved.optimizer_ != optimizer:
            raise ValueError(f"the backup {path!r} was made with another optimizer "
                             f"({saved.optimizer_!r}) than this fit's ({optimizer!r}); delete "
                             f"it, or use another directory, to train from the start")
        return adopt

    def _check_run(self, path: str, run: dict[str, Any] | None) -> None:
        """Refuse a backup made with other settings or other data."""
        if run is None:  # a backup that does not record its run: nothing to compare
            return
        ours = self._run
        differences = [f"{k} {run.get(k)!r} there, {ours.get(k)!r} here"
                       for k in _RUN_SETTINGS if run.get(k) != ours.get(k)]
        data, theirs = ours.get("data"), run.get("data")
        if data is not None and data != theirs:
            differences.append(_data_difference(theirs, data))
        if differences:
            raise ValueError(f"the backup {path!r} was made by another run than this fit: "
                             f"{'; '.join(differences)}; delete it, or use another "
                             f"directory, to train from the start")

    def _check_epochs(self, path: str, saved: MLP) -> None:
        start, epochs = self.params.get("initial_epoch", 0), self.params.get("epochs")
        done = saved.epochs_trained_
        if done < start:
            raise mlp_io().ModelFileError(
                f"{path!r} holds a damaged backup: {done} epochs trained, fewer than the "
                f"{start} its name says the fit started from")
        if epochs is not None and done > start + epochs:
            raise ValueError(f"the backup {path!r} holds {done - start} epochs of this fit, "
                             f"more than the epochs={epochs} it asks for: ask for "
                             f"epochs={done - start} or more to resume it, or delete it to "
                             f"train from the start")

    def _check_states(self, path: str, states: dict[str, Any]
                      ) -> list[tuple[Callback, Any]]:
        """``[(callback, state)]`` to restore: every stored state must belong to one of
        this fit's callbacks and have the keys that callback keeps."""
        ours = dict(self._keyed())
        restores = []
        for key, state in states.items():
            if key == "run":
                continue
            cb = ours.get(key)
            if cb is None:
                raise ValueError(f"the backup {path!r} was made by another run than this fit: "
                                 f"it holds the state of a callback {key}, which this fit "
                                 f"does not have (it has {', '.join(ours) or 'none'}); "
                                 f"delete it, or use another directory, to train from the "
                                 f"start")
            keys = _state_keys(cb)
            if keys is not None and (not isinstance(state, dict) or set(state) != keys):
                stored = sorted(state) if isinstance(state, dict) else type(state).__name__
                raise mlp_io().ModelFileError(
                    f"{path!r} holds a damaged backup: the state of callback {key} holds "
                    f"{stored}, where {type(cb).__name__} keeps {sorted(keys)}")
            _check_settings(path, key, cb, state)
            restores.append((cb, state))
        return restores

    def _keyed(self) -> list[tuple[str, Callback]]:
        """``(key, callback)`` for the other callbacks: position and class name."""
        return [(f"{i}:{type(cb).__name__}", cb) for i, cb in enumerate(self.others)]

    # ------------------------------------------------------------ epochs and end
    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Back up the model, its training state and every other callback's state.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        states = {key: cb.get_state() for key, cb in self._keyed()}
        states = {k: v for k, v in states.items() if v is not None}
        states["run"] = {"seed": self.model.seed, **self._run}
        mlp_io().save(self.model, self.path, include_optimizer=True, callback_states=states)

    def on_epochs_taken_back(self, epoch: int, logs: Logs | None = None) -> None:
        """Back up the model as it is now: a divergence took back epochs the backup holds.

        A run started again resumes from there, not from weights that diverged.

        Parameters
        ----------
        epoch : int
            The first epoch taken back (the model is back at its start).
        logs : dict or None, default None
            Not used.
        """
        if self._lock is not None and os.path.exists(self.path):
            self.on_epoch_end(epoch - 1, logs or {})

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Remove the backup when the fit completed, and let the folder go.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """
        if (logs or {}).get("completed", True) and os.path.exists(self.path):
            os.remove(self.path)
        self._let_go()

    def _let_go(self) -> None:
        """Remove the lock, and the folder if this callback made it and it holds nothing
        else (no backup), with the folders above it made with it, where empty."""
        if self._lock is None:
            return
        marker = os.path.join(self.directory, self.MARKER)
        try:
            ours = set(os.listdir(self.directory)) == {self.MARKER, FolderLock.NAME}
        except OSError:
            ours = False
        levels = _levels_made(marker) if ours else 0
        if ours:
            remove_quietly(marker)
        self._lock.release()
        self._lock = None
        folder = os.path.abspath(self.directory)
        for _ in range(levels):
            try:
                os.rmdir(folder)
            except OSError:  # another run has started in it meanwhile, or a file is there
                return
            folder = os.path.dirname(folder)

    def __repr__(self) -> str:
        return f"BackupAndRestore({self.directory!r})"


def _check_settings(path: str, key: str, callback: Callback, state: Any) -> None:
    """Refuse the saved ``state`` of a callback built with other settings (a monitored
    metric, a mode, a patience... its best value and counts mean something else here)."""
    compare = getattr(callback, "settings_difference", None)
    difference = compare(state) if callable(compare) else None
    if difference:
        raise ValueError(f"the backup {path!r} was made by another run than this fit: its "
                         f"callback {key} was built with other settings ({difference}); "
                         f"build it as that run did to resume, or delete the backup (or use "
                         f"another directory) to train from the start")


def _state_keys(callback: Callback) -> set[str] | None:
    """The keys of ``callback``'s state (a dict from `Callback.get_state`), or None where
    it keeps no dict."""
    try:
        state = callback.get_state()
    except Exception:  # noqa: BLE001 - a callback of the user's own, not ready yet
        return None
    return set(state) if isinstance(state, dict) else None


def _levels_made(marker: str) -> int:
    """How many folders a backup folder's mark says were made with it (1: itself)."""
    try:
        with open(marker) as fh:
            levels = int(fh.read(20).strip() or 1)
    except (OSError, ValueError):
        return 1
    return max(1, levels)
