"""Saving and loading models as one portable ``.npz`` file (no pickle).

The file holds ``mlp_format`` (a version number), ``config`` (JSON: the model's
`MLP.get_config`) and the weights ``W0, b0, W1, b1, ...`` as NumPy arrays;
optionally (``include_optimizer=True``, format 2) what a `fit` needs to continue
exactly: the optimizer (JSON) and its state as flat arrays ``opt_state_0, ...``
(the structure comes back from ``optimizer.init`` on load), and ``training``
(JSON: the epoch count, the shuffle generator's state, the history's metric
names) with the history as arrays ``history_epoch`` ``(n,)`` and
``history_values`` ``(n, n_metrics)``. Any backend reads it.

Writes go to a temporary file in the same folder, then an atomic rename; the
file gets the permissions a plain write would give (or the old file's). The
temporary files of writers killed in the middle are removed by the next write
into the folder.

Reads trust nothing: only regular files are opened, the zip directory and
each array's ``.npy`` header are checked against the config (shapes, dtypes,
sizes) before anything is allocated, entries declaring more than `MAX_EXPANSION`
times the file's size and unknown entries are never decompressed, JSON is
bounded in size and depth, and what loads is consistent (an epoch count a fit can
go on from, a history within it, a finite optimizer state, a shuffle state in
range). Every failure is a `ModelFileError` naming the file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import socket
import stat
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Container, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from . import batch_norm
from ._typing import Array, Optimizer
from .backends import Backend, resolve_backend
from .tree import tree_leaves, tree_unflatten
from .validation import check_layer_sizes

if TYPE_CHECKING:
    from .callbacks import History
    from .training import TrainingData

#: The newest format written: 2 with the training state (``include_optimizer``), else 1.
FORMAT_VERSION = 2
#: The largest JSON entry (config, optimizer) a model file may hold, in characters.
MAX_JSON_CHARS = 1 << 16
#: The deepest nesting of lists and objects a JSON entry may have.
MAX_JSON_DEPTH = 16
#: How many times the file's size its entries may hold once decompressed. mlp writes
#: them uncompressed, and real weights and histories compress far less than this: a
#: file declaring more is a decompression bomb, refused before anything is read.
MAX_EXPANSION = 100
#: What a file's entries may hold in all whatever its size (so tiny files are never refused).
EXPANSION_SLACK = 1 << 20
#: The largest epoch count a model file may declare (far beyond any training; counted
#: exactly by float64 and by the int64 history).
MAX_EPOCHS = 2**53
_MEMBER = re.compile(r"(mlp_format|config|optimizer|optimizer_state|W\d+|b\d+|opt_state_\d+"
                     r"|training|history_epoch|history_values)\.npy")
_ZIP_MAGIC = b"PK\x03\x04"
_NPY_MAGIC = b"\x93NUMPY"


class ModelFileError(ValueError):
    """A file that is not a readable mlp model (truncated, corrupted, foreign or crafted)."""


class _Damaged(ValueError):
    """A problem found inside a model file (becomes a `ModelFileError` naming the file)."""


class Model(Protocol):
    """What this module reads and sets of a model (`mlp.MLP`; it never imports the model,
    so that the model can import it)."""

    params: list[tuple[Array, Array]]
    history_: History | None
    epochs_trained_: int
    optimizer_: Optimizer | None
    optimizer_state_: Any

    @property
    def backend(self) -> Backend: ...

    @property
    def dtype(self) -> Any: ...

    @property
    def dtype_name(self) -> str: ...

    @property
    def layer_sizes(self) -> tuple[int, ...]: ...

    @property
    def shuffle_rng(self) -> np.random.Generator: ...

    def get_weights(self) -> list[tuple[np.ndarray, np.ndarray]]: ...

    def get_config(self) -> dict[str, Any]: ...


M = TypeVar("M", bound=Model)
M_co = TypeVar("M_co", bound=Model, covariant=True)


class ModelClass(Protocol[M_co]):
    """What `load_model` uses of a model's class (`mlp.MLP`)."""

    def check_config(self, config: dict[str, Any]) -> dict[str, Any]: ...

    def from_config(self, config: dict[str, Any], backend: str | Backend | None = None, *,
                    weights: Callable[[], Sequence[tuple[Array, Array]]] | None = None
                    ) -> M_co: ...


#: Each entry's ``(shape, dtype)``, from its ``.npy`` header.
Shapes = dict[str, tuple[tuple[int, ...], np.dtype[Any]]]
#: The archive's entries by array name.
Members = dict[str, zipfile.ZipInfo]


# ----------------------------------------------------------------- optimizer
def _optimizer_config(opt: Optimizer) -> dict[str, Any]:
    """JSON-ready description of ``opt`` (`mlp.optimizers.optimizer_config`)."""
    from .optimizers import optimizer_config

    return optimizer_config(opt)


def _optimizer_from_config(opt_cfg: object) -> Optimizer:
    """The optimizer described by ``opt_cfg`` (`mlp.optimizers.from_config`)."""
    from .optimizers import from_config

    if not isinstance(opt_cfg, dict):
        raise ValueError("the optimizer entry is not an optimizer description")
    opt: Optimizer = from_config(opt_cfg)
    return opt


# ---------------------------------------------------------------- training state
def _training_arrays(model: Model, callback_states: dict[str, Any] | None = None
                     ) -> dict[str, np.ndarray]:
    """The epoch count, the shuffle stream's state and the history, as file entries."""
    history = model.history_
    columns = {} if history is None else history.history
    keys = list(columns)
    epochs = [] if history is None else history.epoch
    values = np.array([columns[k] for k in keys], dtype=np.float64).T if keys else \
        np.zeros((len(epochs), 0))
    training: dict[str, Any] = {"epochs_trained": int(model.epochs_trained_),
                "shuffle_rng": model.shuffle_rng.bit_generator.state,
                "history_metrics": keys}
    if callback_states:
        training["callbacks"] = callback_states
    return {"training": np.asarray(json.dumps(training)),
            "history_epoch": np.asarray(epochs, dtype=np.int64),
            "history_values": values.reshape(len(epochs), len(keys))}


def _restore_training(zf: zipfile.ZipFile, members: Members, shapes: Shapes,
                      model: Model) -> None:
    """Put the stored epoch count, shuffle stream and history into ``model`` (a model
    being built), each checked against the others before the history is read."""
    training = _json_entry(zf, members, "training", shapes)
    epochs_trained = _epoch_count(training.get("epochs_trained"))
    keys = _metric_names(training.get("history_metrics"))
    _check_history_shapes(shapes, keys, epochs_trained)
    _check_callback_states(training.get("callbacks", {}))
    _restore_rng(model.shuffle_rng.bit_generator, training.get("shuffle_rng"))
    history = _read_history(zf, members, keys, epochs_trained)
    model.epochs_trained_ = epochs_trained
    model.history_ = history if history.epoch or keys else None


def _epoch_count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EPOCHS:
        raise _Damaged(f"its epoch count {value!r} is not a count (an integer from 0 to "
                       f"2**53)")
    return value


def _metric_names(keys: object) -> list[str]:
    if not (isinstance(keys, list) and all(isinstance(k, str) and k for k in keys)):
        raise _Damaged("its history's metric names are not a list of names")
    if len(set(keys)) != len(keys):
        raise _Damaged(f"its history names a metric twice ({keys})")
    return keys


def _check_history_shapes(shapes: Shapes, keys: list[str], epochs_trained: int) -> None:
    """The history's entries, from their headers: one integer epoch and one float per
    metric for each epoch, no more epochs than were trained."""
    (e_shape, e_dtype), (v_shape, v_dtype) = shapes["history_epoch"], shapes["history_values"]
    if len(e_shape) != 1 or e_dtype.kind not in "iu" or v_dtype.kind != "f" or \
            v_shape != (e_shape[0], len(keys)):
        raise _Damaged(f"its history (epochs {e_shape} of {e_dtype}, values {v_shape} of "
                       f"{v_dtype}) does not match its {len(keys)} metric names")
    if e_shape[0] > epochs_trained:
        raise _Damaged(f"its history holds {e_shape[0]} epochs, more than its epoch count "
                       f"{epochs_trained}")


def _read_history(zf: zipfile.ZipFile, members: Members, keys: list[str],
                  epochs_trained: int) -> History:
    """The stored `History`; its epochs increase strictly from 0 up to the epoch count."""
    from .callbacks import History

    epochs = _read_member(zf, members["history_epoch"])
    if not _epochs_in_order(epochs, epochs_trained):
        raise _Damaged(f"its history's epochs are not distinct and increasing from 0 to "
                       f"{epochs_trained - 1} (its epoch count is {epochs_trained}): "
                       f"{_preview(epochs)}")
    values = _read_member(zf, members["history_values"]).astype(np.float64)
    history = History()
    history.append_epochs(epochs.tolist(), dict(zip(keys, values.T.tolist(), strict=True)))
    return history


def _epochs_in_order(epochs: np.ndarray, epochs_trained: int) -> bool:
    """Whether the integer array ``epochs`` increases strictly, from 0 or more to less than
    ``epochs_trained``."""
    return not epochs.size or (int(epochs[0]) >= 0 and int(epochs[-1]) < epochs_trained
                               and bool(np.all(epochs[1:] > epochs[:-1])))


def _preview(array: np.ndarray) -> str:
    items = array[:6].tolist()
    return str(items)[:-1] + ", ...]" if array.size > 6 else str(items)


#: PCG64's state (the shuffle stream), as ``generator.state`` gives it: each number's bits.
_PCG64_BOUNDS = {("state", "state"): 128, ("state", "inc"): 128, ("has_uint32",): 1,
                 ("uinteger",): 32}


def _restore_rng(generator: np.random.BitGenerator, state: Any) -> None:
    """Set ``generator`` (a model's shuffle stream) to the stored ``state``: the same
    structure as its own state, integers (not booleans) in range."""
    kind = type(generator).__name__
    if not _same_structure(state, generator.state):
        raise _Damaged(f"its shuffle generator's state is not a {kind} state")
    if kind == "PCG64":
        for path, bound in _PCG64_BOUNDS.items():
            value = state
            for key in path:
                value = value[key]
            if not 0 <= value < 2**bound:
                raise _Damaged(f"its shuffle generator's {'.'.join(path)} {value} is out of "
                               f"range [0, 2**{bound})")
        if state["state"]["inc"] % 2 == 0:
            raise _Damaged("its shuffle generator's increment is even (PCG64's is odd)")
    try:
        generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise _Damaged(f"its shuffle generator's state cannot be restored ({exc})") from exc


def _same_structure(value: object, like: object) -> bool:
    """Whether ``value`` (from JSON) has the keys and the types of ``like`` (names equal)."""
    if isinstance(like, dict):
        return isinstance(value, dict) and value.keys() == like.keys() and all(
            _same_structure(value[k], like[k]) for k in like)
    if isinstance(like, str):
        return value == like
    return type(value) is int if isinstance(like, int) else False


_CALLBACK_KEY = re.compile(r"\d{1,6}:[A-Za-z_]\w*")


def _check_callback_states(states: object) -> dict[str, Any]:
    """The fit's callbacks' states (`BackupAndRestore`): ``{"position:Class": {...}}``, and
    the backed-up run's record under ``"run"`` (which `BackupAndRestore` checks); returned
    once checked."""
    if not isinstance(states, dict):
        raise _Damaged(f"its callback states are {type(states).__name__}, not a JSON object")
    for key, state in states.items():
        if key == "run":
            continue
        if not _CALLBACK_KEY.fullmatch(key) or not isinstance(state, dict):
            raise _Damaged(f"its callback state {key!r} is not a callback's state "
                           f"({type(state).__name__})")
    return states


def _host_array(model: Model, array: Array) -> np.ndarray:
    """``array`` (backend or NumPy) as a NumPy array in a form every backend gives alike:
    float64 for floating point, int64 for integers."""
    host = np.asarray(model.backend.to_numpy(array) if model.backend.is_native(array)
                      else array)
    kind = "float64" if host.dtype.kind == "f" else "int64" if host.dtype.kind in "iub" \
        else host.dtype
    return np.ascontiguousarray(host, dtype=kind)


def data_fingerprint(model: Model, data: TrainingData | None) -> dict[str, Any] | None:
    """What identifies a fit's data: each array's shape (training ``x``, targets, rows'
    weights, and the validation data, as given: without the rows and weights that
    padding adds, `TrainingData.given`) and one hash of them all (BLAKE2b over their
    values as float64/int64, so that any backend gives the same one)."""
    if data is None:
        return None
    if data.feed is not None:  # data not in memory: read block by block
        return data.feed.fingerprint()
    digest, shapes = hashlib.blake2b(digest_size=16), {}
    for name, (array, rows) in data.given().items():
        host = _host_array(model, array)[:rows]
        shapes[name] = list(host.shape)
        digest.update(f"{name}:{host.dtype}:{host.shape};".encode())
        digest.update(host.data)
    return {"shapes": shapes, "hash": digest.hexdigest()}


# ---------------------------------------------------------------------- save
def _new_file_mode(path: str) -> int:
    """The permission bits a plain ``open(path, "w")`` would leave: the old file's, or
    0666 less the umask."""
    try:
        st = os.stat(path)
        if stat.S_ISREG(st.st_mode):
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return 0o666 & ~current_umask()


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it (the ``Umask:`` line of
    ``/proc/self/status``), so that files other threads create meanwhile get the mode
    they should. Where that file is missing, the umask is set and put back (under a lock,
    which only this module's writes respect)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        umask = os.umask(0o077)  # the most private mode for the moment it is set
        os.umask(umask)
    return umask


def _save_error(exc: OSError, path: object, what: str, why: str) -> OSError:
    return OSError(exc.errno, f"cannot {what} to {path!r}: {why} ({exc.strerror or exc})")


#: An example of the file name each writer takes, for the messages.
_EXAMPLES = {"save the figure": "history.png", "write the CSV log": "log.csv",
             "write the ONNX file": "model.onnx"}


def _check_target(path: str | os.PathLike[str], what: str, shown: object = None
                  ) -> tuple[str, str, str]:
    """``(user's path, real path to replace, its folder)``: refused at once when the path
    is not a file name, is empty or holds a NUL, names a folder (an existing one, or any
    path ending in a separator), a symbolic link that loops, an existing non-regular file
    (a device or a named pipe must not be replaced), or a name longer than the folder's
    file system allows; a symbolic link is written through. Messages name ``shown``
    (default: ``path``), what the user wrote."""
    path = _path_text(path, what)
    shown = path if shown is None else shown
    example = _EXAMPLES.get(what, "model.npz")
    if path.endswith(_SEPARATORS) or os.path.basename(path) in (".", ".."):
        raise IsADirectoryError(errno.EISDIR, f"cannot {what} to {shown!r}: it names a folder "
                                              "(it ends with a separator or a dot); give a "
                                              f"file name such as {example!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, f"cannot {what} to {shown!r}: it is a folder; "
                                              f"give a file name such as {example!r}")
    _check_loop(path, what, shown)
    target = os.path.realpath(path)  # through symbolic links, as open(path, "wb") writes
    if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
        raise ValueError(f"cannot {what} to {shown!r}: it is not a regular file (a device, "
                         "a named pipe or a socket), and it is not replaced")
    folder = os.path.dirname(target)
    _check_folder(folder, what, shown)
    _check_name_length(target, folder, what, shown)
    return path, target, folder


def _path_text(path: object, what: str) -> str:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"cannot {what}: the path must be a file name (str or "
                        f"os.PathLike), got {type(path).__name__} {path!r}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        raise TypeError(f"cannot {what}: give the path {path!r} as str, not bytes")
    if path == "":
        raise FileNotFoundError(errno.ENOENT, f"cannot {what} to '': the path is empty")
    if "\0" in path:
        raise ValueError(f"cannot {what} to {path!r}: it holds a NUL character ('\\0'), "
                         f"which no file name may hold")
    return path


def _check_loop(path: str, what: str, shown: object) -> None:
    """Refuse a symbolic link that leads back to itself (written through, it would be
    replaced by a file)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"cannot {what} to {shown!r}: it is a symbolic link "
                                       f"that leads in a loop (or through too many links); "
                                       f"it is not replaced") from None


def _check_folder(folder: str, what: str, shown: object) -> None:
    """The folder must exist; a file where a folder of the path should be is named."""
    if os.path.isdir(folder):
        return
    above = folder
    while above and not os.path.lexists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    if above and os.path.lexists(above) and not os.path.isdir(above):
        raise NotADirectoryError(errno.ENOTDIR, f"cannot {what} to {shown!r}: {above!r} is "
                                                f"a file, not a folder")
    hint = ("; '~' is not expanded to your home folder: give os.path.expanduser(path)"
            if str(shown).startswith("~") else "")
    raise FileNotFoundError(errno.ENOENT, f"cannot {what} to {shown!r}: folder {folder!r} "
                                          f"does not exist{hint}")


def _check_name_length(target: str, folder: str, what: str, shown: object) -> None:
    """Refuse a file name longer than the folder's file system takes (ENAMETOOLONG)."""
    name = os.fsencode(os.path.basename(target))
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    if limit is not None and 0 < limit < len(name):
        raise OSError(errno.ENAMETOOLONG, f"cannot {what} to {shown!r}: its file name is "
                                          f"{len(name)} bytes long, more than the {limit} "
                                          f"the file system of {folder!r} takes; give a "
                                          f"shorter name")


_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def check_writable(path: str | os.PathLike[str], what: str = "save", shown: object = None
                   ) -> str:
    """The user's ``path`` (a str) once a file can be written there the way
    `write_atomically` writes: a file name (not a folder, not a device or named pipe)
    in an existing folder where a file can be created (tried: a read-only folder or
    file system is refused). Every error names the user's ``path`` (or ``shown``, e.g.
    the pattern ``path`` was made from); what is checked is what a later write needs, so
    a long run can check before its first step."""
    path, _, folder = _check_target(path, what, shown)
    fd, tmp = _create_temporary(path if shown is None else shown, folder, what)
    os.close(fd)
    _remove(tmp)
    return path


# ----------------------------------------------------------- temporary files
#: A temporary file of `write_atomically`: ``.mlp-HOST-PID-RANDOM.tmp``, HOST a short hash
#: of the machine's name and PID the writing process, so that the files a killed writer
#: left behind can be told from those of a writer still at work.
_TEMPORARY = re.compile(r"\.mlp-([0-9a-f]{8})-([0-9]{1,10})-[A-Za-z0-9_]+\.tmp")


def _host_tag() -> str:
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (one of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    except (OverflowError, ValueError, OSError):
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Remove the temporary files that writes into ``folder`` left behind when their
    process was killed (SIGKILL, SIGTERM, a crash) before it could remove them: those
    of a process of this machine that no longer runs. Files of running processes, of
    other machines, and anything else are left alone. Returns the names removed."""
    host, removed = _host_tag(), list[str]()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".mlp-")]
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None or match[1] != host or process_alive(int(match[2])):
            continue
        full = os.path.join(folder, name)
        try:
            if stat.S_ISREG(os.lstat(full).st_mode):
                os.unlink(full)
                removed.append(name)
        except OSError:  # removed by another writer meanwhile, or not ours to remove
            pass
    return removed


def _create_temporary(path: object, folder: str, what: str) -> tuple[int, str]:
    """``(fd, name)`` of a new temporary file in ``folder`` (errors name ``path``)."""
    try:
        return tempfile.mkstemp(prefix=f".mlp-{_host_tag()}-{os.getpid()}-", suffix=".tmp",
                                dir=folder)
    except OSError as exc:
        raise _save_error(exc, path, what, f"cannot create a file in {folder!r}") from exc


def write_atomically(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object], *,
                     what: str = "save") -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over
    ``path`` (through a symbolic link): a crash leaves the old file or the new one, never
    half of one. The file gets the mode a plain ``open(path, "wb")`` would give (the old
    file's, or 0666 less the umask); every error names the user's ``path``. Temporary
    files that killed writers left in the folder are removed first
    (`remove_stale_temporaries`)."""
    path, target, folder = _check_target(path, what)
    mode = _new_file_mode(target)
    remove_stale_temporaries(folder)
    fd, tmp = _create_temporary(path, folder, what)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:  # named by the user's path, not the temporary file's
        _remove(tmp)
        raise _save_error(exc, path, what, "the write failed") from exc
    except BaseException:
        _remove(tmp)
        raise


def save(model: Model, path: str | os.PathLike[str], *, include_optimizer: bool = False,
         callback_states: dict[str, Any] | None = None) -> None:
    """Write ``model`` to ``path`` (see `MLP.save`) with `write_atomically`;
    ``callback_states`` (JSON-ready, with ``include_optimizer``) are the states a
    `BackupAndRestore` keeps of the fit's callbacks (read back with `callback_states`)."""
    _check_target(path, "save")  # before any work
    weights = model.get_weights()
    _refuse_unloadable(model, path, include_optimizer, weights)
    # (Any: np.savez's keyword arguments, all arrays here, share its signature with flags)
    arrays: dict[str, Any] = {"mlp_format": np.asarray(FORMAT_VERSION if include_optimizer else 1),
              "config": np.asarray(json.dumps(model.get_config()))}
    for i, (W, b) in enumerate(weights):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    if include_optimizer:
        if model.optimizer_ is None:
            raise ValueError("include_optimizer=True, but the model has not been trained yet")
        arrays["optimizer"] = np.asarray(json.dumps(_optimizer_config(model.optimizer_)))
        for i, leaf in enumerate(tree_leaves(model.optimizer_state_)):
            arrays[f"opt_state_{i}"] = model.backend.to_numpy(leaf)
        arrays.update(_training_arrays(model, callback_states))
    write_atomically(path, lambda fh: np.savez(fh, **arrays))


def _refuse_unloadable(model: Model, path: str | os.PathLike[str], include_optimizer: bool,
                       weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Refuse, before anything is written, a model whose file `load` would refuse (a file
    `save` writes is always one `load` reads): weights that are not finite, and with
    ``include_optimizer`` an epoch count or history epochs beyond what a file holds or out
    of order, an optimizer state no fit leaves (NaN moments, negative counts)."""
    problem = next((f"the weights of layer {i} hold NaN or infinite values"
                    for i, pair in enumerate(weights)
                    if not all(np.all(np.isfinite(a)) for a in pair)), None)
    if problem is None and include_optimizer:
        problem = _training_problem(model) or _opt_state_problem(model)
    if problem:
        raise ValueError(f"cannot save to {os.fspath(path)!r}: {problem}, and mlp.load would "
                         f"refuse the file; nothing was written")


def _training_problem(model: Model) -> str | None:
    """What in the epoch count or the history a model file cannot hold."""
    epochs = model.epochs_trained_
    if not 0 <= int(epochs) <= MAX_EPOCHS:
        return (f"model.epochs_trained_ is {epochs}, beyond the 2**53 epochs a model file "
                f"holds")
    history = model.history_
    if history is None:
        return None
    from .training import history_problem

    problem = history_problem(history, int(epochs))
    return None if problem is None else f"model.history_ has {problem}"


def _opt_state_problem(model: Model) -> str | None:
    state = model.optimizer_state_
    for i, (leaf, role) in enumerate(zip(tree_leaves(state), _leaf_roles(state),
                                         strict=True)):
        host = model.backend.to_numpy(leaf)
        if host.dtype.kind in "iu":
            problem = "holds negative counts" if host.size and host.min() < 0 else None
        else:
            problem = _state_values_problem(host, role)
        if problem:
            return f"model.optimizer_state_'s array {i} ({role}) {problem}"
    return None


def _remove(tmp: str) -> None:
    if os.path.exists(tmp):
        os.unlink(tmp)


# ---------------------------------------------------------------------- load
def _open_regular(path: str | bytes | os.PathLike[str], name: str) -> IO[bytes]:
    """A binary file object for ``path``, refused at once unless it is a regular file
    (a named pipe would block, a device would never end)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no model file at {name}") from None
    except ValueError:  # a NUL in the name
        raise ValueError(f"cannot load {name}: it holds a NUL character ('\\0'), which no "
                         f"file name may hold") from None
    except OSError as exc:
        raise ModelFileError(f"{name} cannot be read: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{name} is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{name} is not a regular file (it is a named pipe, socket or "
                             "device); mlp loads models only from regular files")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ModelFileError(f"{name} cannot be read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the check
        os.close(fd)
        raise ModelFileError(f"{name} is not a regular file; mlp loads models only from "
                             "regular files")
    return os.fdopen(fd, "rb")


def _check_head(fh: IO[bytes], name: str) -> None:
    try:
        head = fh.read(len(_NPY_MAGIC))
        fh.seek(0)
    except OSError as exc:
        raise ModelFileError(f"{name} cannot be read: {exc.strerror or exc}") from exc
    if not head:
        raise ModelFileError(f"{name} is empty (0 bytes): not an mlp model file; was its "
                             "writing interrupted?")
    if head.startswith(_NPY_MAGIC):
        raise ModelFileError(f"{name} is a single NumPy array (.npy), not an mlp model "
                             "(.npz written by MLP.save)")
    if not head.startswith(_ZIP_MAGIC):
        raise ModelFileError(f"{name} is not an mlp model file (not an .npz archive; "
                             f"it starts with {head[:4]!r})")


def _members(zf: zipfile.ZipFile, name: str, size: int) -> Members:
    """``{array name: ZipInfo}`` of the archive (a file of ``size`` bytes); foreign,
    duplicate or unknown entries, and entries declaring far more data than the file can
    hold (`MAX_EXPANSION`), are refused from the directory alone, without decompressing
    anything."""
    infos = zf.infolist()
    names = [info.filename for info in infos]
    keys = {n[:-4] for n in names if n.endswith(".npy")}
    if "mlp_format" not in keys or "config" not in keys:
        raise ModelFileError(f"{name} is an .npz file but not an mlp model "
                             f"(it holds {sorted(keys or names)[:6]})")
    if len(set(names)) != len(names):
        raise ModelFileError(f"{name} holds a damaged mlp model: some entries appear twice")
    unknown = [n for n in names if not _MEMBER.fullmatch(n)]
    if unknown:
        raise ModelFileError(f"{name} holds a damaged mlp model: unexpected entries "
                             f"{unknown[:5]} (refused unread)")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_EXPANSION * size + EXPANSION_SLACK:
        raise ModelFileError(f"{name} holds a damaged mlp model: its entries declare "
                             f"{declared:,} bytes, over {MAX_EXPANSION} times the file's "
                             f"{size:,} bytes (refused unread: mlp writes its files "
                             "uncompressed, and no model compresses this much)")
    return {info.filename[:-4]: info for info in infos}


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo
            ) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """``(shape, dtype)`` from the member's ``.npy`` header, read without its data."""
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise _Damaged(f"{info.filename} has an unknown .npy format {version}")
        shape, _, dtype = read(fh, max_header_size=10000)
        header_len = fh.tell()
    if dtype.hasobject:
        raise _Damaged("pickle")
    need = header_len + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if need != info.file_size:  # the data must be exactly what the header declares
        raise _Damaged(f"entry {info.filename} declares shape {shape} of {dtype} "
                       f"({need} bytes) but holds {info.file_size} bytes")
    return shape, dtype


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as fh:
        array = np.lib.format.read_array(fh, allow_pickle=False)
        fh.read(1)  # reach the end, so that the zip's CRC check runs
    return array


def _json_depth_ok(text: str) -> bool:
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            escaped = ch == "\\" and not escaped
            in_string = escaped or ch != '"'
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _object(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all distinct (which of two values counts is not a
    question a model file leaves open)."""
    value = {}
    for key, item in pairs:
        if key in value:
            raise _Damaged(f"a JSON object in it names {key!r} twice")
        value[key] = item
    return value


def _json_entry(zf: zipfile.ZipFile, members: Members, key: str, shapes: Shapes
                ) -> dict[str, Any]:
    """The JSON object stored (as a 0-d string array) under ``key``."""
    shape, dtype = shapes[key]
    if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > MAX_JSON_CHARS:
        raise _Damaged(f"its {key} entry is not a short JSON text (dtype {dtype}, shape {shape})")
    text = str(_read_member(zf, members[key]))
    if not _json_depth_ok(text):
        raise _Damaged(f"its {key} entry nests deeper than {MAX_JSON_DEPTH} levels")
    value = json.loads(text, object_pairs_hook=_object)
    if not isinstance(value, dict):
        raise _Damaged(f"its {key} is {type(value).__name__}, not a JSON object")
    return value


def _format_version(zf: zipfile.ZipFile, members: Members, shapes: Shapes, name: str) -> int:
    shape, dtype = shapes["mlp_format"]
    if shape != () or dtype.kind not in "iu":
        raise _Damaged(f"its format number (dtype {dtype}, shape {shape}) is not an integer")
    version = int(_read_member(zf, members["mlp_format"]))
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{name} was written by a newer mlp "
                             f"(format {version}; this one reads up to {FORMAT_VERSION})")
    if version < 1:
        raise _Damaged(f"its format number {version} is not one mlp writes (1 to "
                       f"{FORMAT_VERSION})")
    return version


def _check_parts(members: Members) -> None:
    """The optional parts come together: an optimizer state with its optimizer, a
    history with its training state, a training state with an optimizer."""
    has = {"optimizer": "optimizer" in members, "training": "training" in members,
           "opt_state": any(k.startswith(("opt_state_", "optimizer_state")) for k in members),
           "history": any(k.startswith("history_") for k in members)}
    needs = [("opt_state", "optimizer", "an optimizer state without its optimizer"),
             ("history", "training", "a history without its training state"),
             ("training", "optimizer", "a training state without an optimizer")]
    for part, needed, what in needs:
        if has[part] and not has[needed]:
            raise _Damaged(f"it holds {what}")


def _names(names: list[str]) -> str:
    """``names`` joined, the first six of them (a crafted config may declare thousands)."""
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def _check_weight_shapes(layer_sizes: tuple[int, ...], shapes: Shapes,
                         normalized: bool = False) -> None:
    """Every stored W/b has the shape the config declares (before anything is built;
    ``normalized``: the config's ``batch_norm``)."""
    n_layers = len(layer_sizes) - 1
    absent = [k for i in range(n_layers) for k in (f"W{i}", f"b{i}") if k not in shapes]
    if absent:
        raise _Damaged(f"the weights {_names(absent)} are missing")
    extra = sorted(k for k in shapes if k[0] in "Wb" and k[1:].isdigit() and int(k[1:]) >= n_layers)
    if extra:
        raise _Damaged(f"it holds weights {_names(extra)} beyond its {n_layers} layers")
    for i, (want_w, want_b) in enumerate(batch_norm.weight_shapes(layer_sizes, normalized)):
        (w_shape, w_dtype), (b_shape, b_dtype) = shapes[f"W{i}"], shapes[f"b{i}"]
        if w_shape != want_w or b_shape != want_b:
            raise _Damaged(f"layer {i} expects W of shape {want_w} and b of shape {want_b}, "
                           f"got {w_shape} and {b_shape}")
        for dt in (w_dtype, b_dtype):  # cast to the model's float dtype, as set_weights does
            if dt.kind != "f":
                raise _Damaged(f"the weights of layer {i} are {dt}, not floating point")


def _optimizer_state(zf: zipfile.ZipFile, members: Members, shapes: Shapes, model: Model,
                     opt: Optimizer) -> Any:
    """The stored state, checked leaf by leaf against ``opt.init(model.params)``."""
    with model.backend.precision(model.dtype):
        return _checked_state(zf, members, shapes, model, opt)


def _checked_state(zf: zipfile.ZipFile, members: Members, shapes: Shapes, model: Model,
                   opt: Optimizer) -> Any:
    wants, roles = _expected_state(model, opt)
    n_stored = sum(1 for k in shapes if k.startswith("opt_state_"))
    if n_stored != len(wants) or any(f"opt_state_{i}" not in shapes
                                     for i in range(n_stored)):
        raise _Damaged(f"its optimizer state has {n_stored} arrays; {opt!r} on this "
                       f"architecture needs {len(wants)}")
    for i, want in enumerate(wants):  # every header, before the state is built or read
        _check_state_header(shapes, i, want)
    template = opt.init(model.params)  # as large as the file's own state arrays now
    leaves, counts = [], set()
    for i, (want, role) in enumerate(zip(wants, roles, strict=True)):
        leaf = _state_leaf(zf, members, i, want, role)
        if want[1].kind in "iu":
            counts.update(leaf.ravel().tolist())
        leaves.append(model.backend.asarray(leaf))
    if len(counts) > 1:  # every building block counts the same updates
        raise _Damaged(f"its optimizer state's step counts disagree ({sorted(counts)})")
    return tree_unflatten(template, leaves)


def _expected_state(model: Model, opt: Optimizer) -> tuple[list[_Want], list[str]]:
    """``[(shape, dtype)]`` and the roles (`_leaf_roles`) of the leaves of
    ``opt.init(model.params)``, found without building that state: ``opt.init`` on one
    1-element stand-in per weight array. A state's leaves are scalars (step counts,
    scales) and whole copies of the weights' structure (moments), in the weights' order."""
    n = 2 * (len(model.layer_sizes) - 1)
    one = model.backend.asarray(np.zeros(1, model.dtype_name))
    stand_in = opt.init([(one, one)] * (n // 2))
    weight_shapes = [s for pair in batch_norm.weight_shapes(
        model.layer_sizes, getattr(model, "batch_norm", False)) for s in pair]
    wants: list[_Want] = []
    run = 0
    for leaf in tree_leaves(stand_in):
        run = run + 1 if leaf.ndim else 0  # the position in a run of copies of the weights
        shape = weight_shapes[(run - 1) % n] if leaf.ndim else ()
        wants.append((shape, np.dtype(model.backend.dtype_name(leaf.dtype))))
    return wants, _leaf_roles(stand_in)


def _check_state_header(shapes: Shapes, i: int, want: _Want) -> None:
    """Optimizer state array ``i``'s header against ``want`` (shape, dtype); a step count
    written by another backend may be int64 where this one counts in int32."""
    shape, dtype = shapes[f"opt_state_{i}"]
    counts = dtype.kind in "iu" and want[1].kind in "iu"
    if shape != want[0] or (dtype != want[1] and not counts):
        raise _Damaged(f"optimizer state array {i} has shape {shape} and dtype {dtype}; "
                       f"expected shape {want[0]} and dtype {want[1]}")


#: An optimizer state array's expected ``(shape, dtype)``.
_Want = tuple[tuple[int, ...], np.dtype[Any]]
#: What an optimizer state's field holds, by the field's name; the last three are >= 0.
_ROLES = {"mu": "first moments", "trace": "velocity", "count": "step count",
          "learning_rate_scale": "learning-rate scale", "nu": "mean of squared gradients"}
_NON_NEGATIVE = ("step count", "learning-rate scale", "mean of squared gradients")


def _leaf_roles(node: object, role: str = "values") -> list[str]:
    """What each leaf of an optimizer state (as `tree_leaves` orders them) holds."""
    if node is None:
        return []
    if isinstance(node, (list, tuple)):
        fields = getattr(type(node), "_fields", None) or [None] * len(node)
        return [r for field, child in zip(fields, node, strict=True)
                for r in _leaf_roles(child, _ROLES.get(field, role))]
    return [role]


def _state_leaf(zf: zipfile.ZipFile, members: Members, i: int, want: _Want, role: str
                ) -> np.ndarray:
    """Optimizer state array ``i`` (its header checked) as NumPy in ``want``'s dtype:
    finite; a count, a scale or a mean of squares >= 0."""
    leaf = _read_member(zf, members[f"opt_state_{i}"])
    if want[1].kind in "iu":
        bounds = np.iinfo(want[1])
        if leaf.size and (int(leaf.min()) < 0 or int(leaf.max()) > bounds.max):
            raise _Damaged(f"optimizer state array {i} ({role}) holds counts outside "
                           f"[0, {bounds.max}] ({_preview(leaf.ravel())})")
        return leaf.astype(want[1])
    problem = _state_values_problem(leaf, role)
    if problem:
        raise _Damaged(f"optimizer state array {i} ({role}) {problem}")
    return leaf


def _state_values_problem(leaf: np.ndarray, role: str) -> str | None:
    """What a float optimizer state array holds that no fit leaves (None: nothing)."""
    if not np.all(np.isfinite(leaf)):
        return "holds NaN or infinite values"
    if role in _NON_NEGATIVE and np.any(leaf < 0):
        return "holds negative values"
    return None


def _check_registered(config: dict[str, Any], name: str) -> None:
    """A model of a user's own activation or loss loads only once it is registered in
    this process: say so, rather than calling the (sound) file damaged."""
    from .activations import ACTIVATIONS
    from .losses import LOSSES

    wanted: list[tuple[str, Container[str], str]] = [
        ("activation", ACTIVATIONS, "register_activation"),
        ("output_activation", ACTIVATIONS, "register_activation"),
        ("loss", LOSSES, "register_loss")]
    for key, registry, register in wanted:
        value = config.get(key)
        if isinstance(value, str) and value and value not in registry:
            raise ModelFileError(f"{name} holds a model with {key} {value!r}, which is not "
                                 f"registered in this process: call mlp.{register}(...) for "
                                 f"{value!r} before loading it")


def _load_model(zf: zipfile.ZipFile, members: Members, name: str, backend: Backend,
                model_class: ModelClass[M]) -> M:
    shapes = {key: _header(zf, info) for key, info in members.items()}
    version = _format_version(zf, members, shapes, name)
    _check_parts(members)
    config = _json_entry(zf, members, "config", shapes)
    model_class.check_config(config)  # the keys
    _check_registered(config, name)
    layer_sizes = check_layer_sizes(config["layer_sizes"])
    _check_weight_shapes(layer_sizes, shapes, config.get("batch_norm", False) is True)
    n_layers = len(layer_sizes) - 1
    model = model_class.from_config(config, backend=backend, weights=lambda: [
        (_read_member(zf, members[f"W{i}"]), _read_member(zf, members[f"b{i}"]))
        for i in range(n_layers)])
    if "optimizer" in members:
        opt = _optimizer_from_config(_json_entry(zf, members, "optimizer", shapes))
        state = _optimizer_state(zf, members, shapes, model, opt)
        _check_trainable(opt, state, model.dtype_name)
        model.optimizer_state_, model.optimizer_ = state, opt
    if "training" in members:
        if version < 2:
            raise _Damaged(f"it holds a training state, which format {version} files do not "
                           "have")
        _restore_training(zf, members, shapes, model)
    return model


def _check_trainable(opt: Optimizer, state: Any, dtype_name: str) -> None:
    """Refuse an optimizer (and learning-rate scale) that fit would refuse in the model's
    dtype: the file would load, and its first fit fail or silently train nothing."""
    from .optimizers import check_numbers_in_dtype, check_rate_scale

    try:
        check_numbers_in_dtype(opt, dtype_name)
        check_rate_scale(opt, state, dtype_name)
    except ValueError as exc:
        raise _Damaged(f"its optimizer is one fit would refuse: {exc}") from None


def callback_states(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The callbacks' states stored in ``path`` by `save` (``{}`` if none)."""
    name = repr(os.fspath(path))
    with _open_regular(path, name) as fh:
        _check_head(fh, name)
        try:
            with zipfile.ZipFile(fh) as zf:
                members = _members(zf, name, os.fstat(fh.fileno()).st_size)
                if "training" not in members:
                    return {}
                shapes = {"training": _header(zf, members["training"])}
                states = _check_callback_states(
                    _json_entry(zf, members, "training", shapes).get("callbacks", {}))
        except ModelFileError:
            raise
        except (_Damaged, zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError,
                KeyError, RuntimeError, RecursionError) as exc:
            raise ModelFileError(f"{name} holds damaged callback states: {exc}") from exc
    return states


def load_model(path: str | bytes | os.PathLike[str], model_class: ModelClass[M],
               backend: str | Backend | None = None) -> M:
    """A ``model_class`` (`MLP`) from a file written by `MLP.save`, on ``backend``
    (None: ``$MLP_BACKEND``). `mlp.load` is this with `MLP` and documents what it
    raises; this module never imports the model, so the model can import it. Arrays
    are read with ``allow_pickle=False``, the rest is JSON."""
    name = repr(os.fspath(path))
    backend = resolve_backend(backend)  # its errors are the backend's, not the file's
    with _open_regular(path, name) as fh:
        _check_head(fh, name)
        try:
            with zipfile.ZipFile(fh) as zf:
                members = _members(zf, name, os.fstat(fh.fileno()).st_size)
                return _load_model(zf, members, name, backend, model_class)
        except ModelFileError:
            raise
        except _Damaged as exc:
            if str(exc) == "pickle":
                raise ModelFileError(f"{name} cannot be read safely: it holds Python objects, "
                                     "which only pickle could load") from None
            raise ModelFileError(f"{name} holds a damaged mlp model: {exc}") from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error,
                NotImplementedError, RuntimeError, UnicodeDecodeError, RecursionError) as exc:
            raise ModelFileError(f"{name} is not a complete mlp model file: it is truncated or "
                                 f"corrupted ({exc})") from exc
        except (KeyError, TypeError, ValueError, IndexError, AttributeError,
                OverflowError) as exc:
            # json.JSONDecodeError and bad .npy headers are ValueErrors
            what = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ModelFileError(f"{name} holds a damaged mlp model: {what}") from exc
