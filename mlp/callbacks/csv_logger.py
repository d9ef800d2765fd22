"""`CSVLogger`: one row per epoch with every logged value, in a CSV file."""

from __future__ import annotations

import csv
import hashlib
import io as io_module
import os
import secrets
import warnings
from collections.abc import Iterable
from typing import Any

from ..params import Boolean, InstanceOf, check
from ._files import mlp_io, path_argument
from ._locks import LogLock
from .callback import Callback, Logs


def _check_separator(value: object) -> str:
    separator: str = check("separator", value, [InstanceOf(str, "a string")])
    if len(separator) != 1 or separator.isalnum() or separator in '.+-"\r\n':
        raise ValueError(f"separator must be one character that no number holds (such as "
                         f"',', ';' or a tab), got {separator!r}")
    return separator


class _LogFile:
    """An existing log as read: its ``header``, ``rows`` (``[(epoch, row)]``) with the
    byte offset each starts at (``starts``), ``data`` (its bytes, less a last row cut
    short, ``cut`` the offset that row started at, else None) and ``open_end`` (its
    last row is whole but has no line end)."""

    def __init__(self, header: list[str] | None = None,
                 rows: Iterable[tuple[int, list[str]]] = (), starts: Iterable[int] = (),
                 data: bytes = b"", cut: int | None = None, open_end: bool = False) -> None:
        self.header, self.rows, self.starts = header, list(rows), list(starts)
        self.data, self.cut, self.open_end = data, cut, open_end


class CSVLogger(Callback):
    """One row per epoch with every logged value, in a CSV file.

    Columns: ``epoch`` (counted from 0 over every fit) and the names of the
    epoch's logs (``loss``, ``val_loss``, ...). Each row is written as its
    epoch ends (values in full precision), so a crash loses nothing logged.

    The file is checked when `fit` starts, before the first epoch: its folder
    must exist and be writable, its name one the file system takes, and it
    must not be a folder, a named pipe or a device; with ``append=True`` an
    existing file must be a log of this kind (an ``epoch`` column and the
    metrics this fit logs, with or without the validation ones), else it is
    refused rather than rewritten. One fit at a time writes a log: a lock file
    beside it (``.NAME.lock``, naming the process) makes another fit, or another
    logger of the same fit, on the same file fail at once; it is removed when
    the fit ends. The file is written the way `MLP.save` writes
    (`mlp.io.write_atomically`: a new file gets the permissions the umask
    gives, an existing one keeps its own, a symbolic link stays a link and its
    target is written); rows are appended.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    append : bool, default False
        Keep the rows already in the file and add this fit's after them; a
        validation column this fit adds is added to the header (empty in the
        rows before). A last row cut short (by a kill in the middle of a write)
        is dropped, with a warning. When a `BackupAndRestore` resumes a run, the
        row that the killed run wrote after its last backup (an epoch trained
        again) is replaced - only when the file is still as that run left it
        (its path, size and a hash of its contents are in the backup) and no
        other fit has written it since; nothing else is ever removed. False
        starts the file afresh (a resumed run keeps its own rows).
    separator : str, default ","
        One character between values (default ``","``), none that a number holds.
    """

    def __init__(self, path: str | os.PathLike[str], append: bool = True,
                 separator: str = ",") -> None:
        self.path = path_argument(f"{type(self).__name__} path", path)
        self.append: bool = check("append", append, [Boolean()])
        self.separator = _check_separator(separator)
        self.columns: list[str] | None = None
        self._file = _LogFile()
        self._lock: LogLock | None = None
        self._target: str | None = None
        self._token: str | None = None
        self._previous = ""
        self._size: int | None = None
        self._hash: Any = None  # (hashlib's hash object: its type is private)
        self._resumed: int | None = None  # the size of the file a resumed run finds as it left it
        self._own_tail = False  # whether what follows it is the killed run's
        self._own_rows: list[tuple[int, int]] = []  # (epoch, byte offset) of each row appended

    # ------------------------------------------------------------ begin
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Check and lock the file, and read it when appending.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.

        Raises
        ------
        ValueError
            With ``append``, an existing file that is not a log of this kind.
        OSError
            No file can be written there, or another fit writes it.
        """
        mlp_io().check_writable(self.path, "write the CSV log")
        self._target = os.path.realpath(self.path)
        lock = LogLock(self.path, self._target)
        self._previous = lock.record()  # the last writer's mark: a resumed run reads it
        self._token = secrets.token_hex(8)
        self._lock = lock.acquire(self._token)
        try:
            self.columns, self._resumed, self._size, self._hash = None, None, None, None
            self._own_rows = []
            self._own_tail = False
            self._file = self._read(strict=True) if self.append else _LogFile()
            metrics = self.params.get("metrics")
            if self._file.header is not None and metrics:
                self._check_columns(self._file.header, ["epoch", *metrics])
        except BaseException:
            self._let_go()
            raise

    def _let_go(self, completed: bool = False) -> None:
        """Let the log go; the lock file stays (with this run's mark) after a fit that
        wrote rows and did not complete, for the run resuming it; one that wrote nothing
        leaves the mark it found."""
        if self._lock is None:
            return
        if self._size is None and self._previous:
            self._lock.mark, completed = self._previous, False
        self._lock.release(keep=not completed and (self._size is not None or
                                                   bool(self._previous)))
        self._lock = None

    def on_train_abandoned(self, logs: dict[str, Any] | None = None) -> None:
        """Let the log go, leaving the mark it found: the fit ends before it began.

        Parameters
        ----------
        logs : dict or None, default None
            Empty or None.
        """
        self._let_go()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Let the log go.

        Parameters
        ----------
        logs : dict or None, default None
            ``logs["completed"]`` is False when `fit` raised (divergence, Ctrl-C).
        """
        self._let_go(completed=(logs or {}).get("completed", True))

    # ------------------------------------------------------------ reading
    def _read(self, strict: bool) -> _LogFile:
        """The existing file (`_LogFile`; empty if none). ``strict``: a file that is not a
        CSV log is an error (else it is treated as none)."""
        try:
            with open(self.path, "rb") as fh:
                data = fh.readline(1 << 16)  # a log's header: refused before reading on
                if data.startswith(f"epoch{self.separator}".encode()):
                    data += fh.read()
            text = data.decode("utf-8")
        except FileNotFoundError:
            return _LogFile()
        except (OSError, UnicodeDecodeError) as exc:
            if strict:
                raise self._not_a_log(f"it cannot be read as text ({exc})") from None
            return _LogFile()
        try:
            return self._parse(text, data) if text else _LogFile()
        except ValueError as exc:
            if strict:
                raise self._not_a_log(str(exc)) from None
            return _LogFile()

    def _parse(self, text: str, data: bytes) -> _LogFile:
        lines = list(io_module.StringIO(text, newline=""))
        header = self._row(lines[0])
        if not header or header[0] != "epoch" or len(set(header)) != len(header) or \
                not all(header[1:]):
            raise ValueError(f"its first line {self.separator.join(header)!r} is not a log's "
                             f"header (epoch{self.separator}loss{self.separator}...)")
        if not lines[0].endswith(("\n", "\r")):  # only a header, cut short
            return _LogFile()
        log = _LogFile(header)
        offset = len(lines[0].encode("utf-8"))
        for number, line in enumerate(lines[1:], start=2):
            row = self._row(line)
            if len(row) != len(header) or not _is_log_row(row):
                if number < len(lines) or line.endswith(("\n", "\r")):
                    raise ValueError(f"its line {number} is not a row of epoch and values")
                log.cut = offset  # the last row, cut short by a kill
                break
            log.rows.append((int(row[0]), row))
            log.starts.append(offset)
            offset += len(line.encode("utf-8"))
        log.open_end = log.cut is None and not lines[-1].endswith(("\n", "\r"))
        log.data = data[:offset]
        return log

    def _row(self, line: str) -> list[str]:
        return next(csv.reader([line.rstrip("\r\n")], delimiter=self.separator), [])

    def _not_a_log(self, why: str) -> ValueError:
        return ValueError(f"CSVLogger: {self.path!r} is not a log this fit can append to: "
                          f"{why}. Give another path, or append=False to start it afresh")

    def _check_columns(self, header: list[str], columns: list[str]) -> None:
        """The file's metrics must be this fit's (validation ones may be missing on
        either side)."""
        def split(columns: list[str]) -> tuple[set[str], set[str]]:
            names = set(columns[1:])
            return ({n for n in names if not n.startswith("val_")},
                    {n for n in names if n.startswith("val_")})

        (file_train, file_val), (fit_train, fit_val) = split(header), split(columns)
        if file_train != fit_train or (file_val and fit_val and file_val != fit_val):
            raise self._not_a_log(f"its columns are {', '.join(header)}, and this fit logs "
                                  f"{', '.join(columns)}")

    # ------------------------------------------------------------ resuming
    def get_state(self) -> dict[str, Any]:
        """Give where this run's log stands, for a backup.

        Its file, its size and a hash of its contents after the last row written,
        and the mark this run leaves in the lock file.

        Returns
        -------
        dict or None
            JSON-ready; None: nothing to back up.
        """
        return {"path": self._target, "size": self._size, "token": self._token,
                "digest": None if self._hash is None else self._hash.hexdigest()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Take back a resumed run's log, if the file is still as that run left it.

        The file is the run's own only if it is the one the killed run wrote, as it
        left it (the same size and hash up to its last backup); then a row it wrote
        after that backup (an epoch trained again) is dropped when the first epoch
        ends, if no other fit has written the file since. Anything else is left
        alone.

        Parameters
        ----------
        state : dict
            What `get_state` gave.
        """
        size, digest = state["size"], state["digest"]
        if size is None:
            return
        if type(size) is not int or size < 0 or not isinstance(digest, str):
            raise ValueError(f"CSVLogger's state {state!r} is not a log's size and hash")
        if state["path"] != self._target:
            return  # another file than the killed run's: appended to as it is
        log = self._file if self.append else self._read(strict=False)
        data = log.data
        if log.header is None or len(data) < size or \
                hashlib.sha256(data[:size]).hexdigest() != digest:
            warnings.warn(f"CSVLogger: {self.path!r} has changed since the run this fit "
                          f"resumes last wrote it; its rows are kept, and this fit's are "
                          f"appended", RuntimeWarning, stacklevel=2)
            return
        self._file, self._resumed = log, size
        # what follows is the killed run's only if no other fit has held the log since
        self._own_tail = self._previous == state["token"]

    def _drops_own_row(self, epoch: int, size: int) -> bool:
        """Whether the rows after the resumed run's ``size`` are one row of ``epoch`` (the
        killed run's, of the epoch trained again)."""
        log = self._file
        if not self._own_tail:
            return False
        after = [e for e, start in zip((e for e, _ in log.rows), log.starts, strict=True)
                 if start >= size]
        return after == [epoch] and log.starts[-1] == size

    # ------------------------------------------------------------ writing
    def _start(self, epoch: int, logs: Logs) -> tuple[list[str], int]:
        """Decide the columns and the rows kept; change the file otherwise than by
        appending only where it must: a header gaining columns (rewritten atomically),
        the killed run's row of an epoch trained again or a last row cut short (cut off),
        a last row without its line end (ended). Returns the columns and the file's size."""
        log = self._file
        if not self.append and self._resumed is None:
            log = _LogFile()
        kept = log.rows
        if self._resumed is not None and self._drops_own_row(epoch, self._resumed):
            kept = log.rows[:-1]
            log.cut, log.open_end = log.starts[-1], False
        columns = ["epoch", *logs]
        if log.header is not None:
            columns = log.header + [c for c in columns if c not in log.header]
        self.columns = columns
        if log.header is None or columns != log.header or not self.append and \
                self._resumed is None:
            self._rewrite(columns, kept)
        else:
            self._patch(log)
        return columns, self._mark_file()

    def _mark_file(self) -> int:
        """Take the file as it is now for where this run's log stands (its size and hash,
        which the backup keeps); called after any change but `on_epoch_end`'s rows."""
        with open(self.path, "rb") as fh:
            data = fh.read()
        self._size, self._hash = len(data), hashlib.sha256(data)
        return self._size

    def _rewrite(self, columns: list[str], kept: list[tuple[int, list[str]]]) -> None:
        out = io_module.StringIO()
        writer = csv.writer(out, delimiter=self.separator, lineterminator="\r\n")
        writer.writerow(columns)
        for _, row in kept:
            writer.writerow(row + [""] * (len(columns) - len(row)))
        text = out.getvalue().encode("utf-8")
        mlp_io().write_atomically(self.path, lambda fh: fh.write(text), what="write the CSV log")

    def _patch(self, log: _LogFile) -> None:
        """Cut off a last row cut short (or the killed run's own), or end a last row."""
        if log.cut is not None:
            if not self._own_tail or log.cut != self._resumed:
                warnings.warn(f"CSVLogger: the last row of {self.path!r} was cut short (a "
                              f"write killed in the middle) and is dropped",
                              RuntimeWarning, stacklevel=3)
            with open(self.path, "r+b") as fh:
                fh.truncate(log.cut)
        elif log.open_end:
            with open(self.path, "ab") as fh:
                fh.write(b"\r\n")

    def on_epoch_end(self, epoch: int, logs: Logs) -> None:
        """Append the epoch's row.

        Parameters
        ----------
        epoch : int
            The epoch's number, counted from 0 over every fit of the model.
        logs : dict of str to float
            The epoch's logs: each metric's value (``loss``, ``val_loss``, ...).
        """
        columns, size = self.columns, self._size
        if columns is None or size is None:  # (both are set together, by `_start`)
            columns, size = self._start(epoch, logs)
            self._written = 0
        row = {"epoch": epoch, **{k: repr(float(v)) for k, v in logs.items()}}
        out = io_module.StringIO()
        csv.DictWriter(out, columns, restval="", extrasaction="ignore",
                       delimiter=self.separator, lineterminator="\r\n").writerow(row)
        line = out.getvalue().encode("utf-8")
        self._own_rows.append((epoch, size))
        with open(self.path, "ab") as fh:
            fh.write(line)
        self._size = size + len(line)
        self._hash.update(line)

    def on_epochs_taken_back(self, epoch: int, logs: Logs | None = None) -> None:
        """Cut off the rows this fit appended for epochs ``epoch`` and later.

        A divergence took them back (they are the file's last): the log holds the
        epochs the model has.

        Parameters
        ----------
        epoch : int
            The first epoch taken back (the model is back at its start).
        logs : dict or None, default None
            Not used.
        """
        starts = [start for e, start in self._own_rows if e >= epoch]
        if not starts:
            return
        with open(self.path, "r+b") as fh:
            fh.truncate(starts[0])
        self._own_rows = [(e, start) for e, start in self._own_rows if e < epoch]
        self._mark_file()

    def __repr__(self) -> str:
        return f"CSVLogger({self.path!r}, append={self.append})"


def _is_log_row(row: list[str]) -> bool:
    """Whether ``row`` is an epoch (an integer >= 0) and numbers (or empty cells)."""
    try:
        if int(row[0]) < 0:
            return False
        for value in row[1:]:
            if value:
                float(value)
    except ValueError:
        return False
    return True
