"""Small helpers that several test modules share."""

from __future__ import annotations

import io
import math
import struct
import zlib
from typing import NamedTuple

import numpy as np

import mlp


def count_run_calls(monkeypatch) -> list:
    """The number of epochs of every call of the fit's compiled run, in order, as the
    fits after this call make them (``mlp.training.run_function`` wrapped)."""
    from mlp import training

    real, calls = training.run_function, []

    def counting(*args):
        run = real(*args)

        def counted(*run_args):
            calls.append(run_args[-1])
            return run(*run_args)

        return counted

    monkeypatch.setattr(training, "run_function", counting)
    return calls


class WeightLog(mlp.Callback):
    """Records the model's weights at the end of every epoch (``self.weights``)."""

    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs):
        self.weights.append(self.model.get_weights())


class InterruptAtLine:
    """A tracer that raises KeyboardInterrupt at the ``k``-th line run in ``codes``: where a
    real Ctrl-C surfaces, between two statements."""

    def __init__(self, k, codes):
        self.k, self.codes, self.lines = k, codes, 0

    def __call__(self, frame, event, arg):
        return self.local if frame.f_code in self.codes else None

    def local(self, frame, event, arg):
        if event == "line":
            self.lines += 1
            if self.lines == self.k:
                raise KeyboardInterrupt
        return self.local


def rewrite_npz(path, **changes):
    """The ``.npz`` file at ``path`` with some of its arrays replaced (None: removed)."""
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def read_only_folder(tmp_path):
    """A folder in which no file can be created, even by root (a read-only file system
    such as /sys), or where permissions bind (not root) one made read-only; None where
    there is neither."""
    import os
    import tempfile

    for folder in ("/sys", "/proc"):
        if not os.path.isdir(folder):
            continue
        try:
            fd, name = tempfile.mkstemp(dir=folder)
        except OSError:
            return folder
        os.close(fd)
        os.unlink(name)
    if os.name == "posix" and os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o500)
        return str(folder)
    return None


class RawEntry(NamedTuple):
    """A zip entry written as given: ``data`` compressed by ``method`` (0 stored, 8
    deflated), with the CRC and uncompressed ``size`` its directory declares."""

    data: bytes
    method: int
    crc: int
    size: int


def write_zip(path, members):
    """A zip file of ``members`` (name -> bytes, stored, or a `RawEntry`), written byte by
    byte: entries whose directory says what `zipfile` could not be made to write."""
    local, central = bytearray(), bytearray()
    for name, entry in members.items():
        if isinstance(entry, bytes):
            entry = RawEntry(entry, 0, zlib.crc32(entry), len(entry))
        fname = name.encode()
        fields = (20, 0, entry.method, 0, 0x21, entry.crc, len(entry.data), entry.size,
                  len(fname))
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0,
                               len(local)) + fname
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + fname + entry.data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    with open(path, "wb") as fh:
        fh.write(bytes(local + central + end))


def deflated_zeros(dtype, shape) -> RawEntry:
    """A ``.npy`` entry of zeros, deflated (about 1000 times smaller), made without ever
    holding the array: after a full flush, deflate writes every block of zeros alike."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": np.lib.format.dtype_to_descr(
        np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)})
    head = head.getvalue()
    n_blocks, rest = divmod(math.prod(shape) * np.dtype(dtype).itemsize, 1 << 20)
    block = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)
    data += (deflate.compress(block) + deflate.flush(zlib.Z_FULL_FLUSH)) * n_blocks
    data += deflate.compress(bytes(rest)) + deflate.flush()
    crc = zlib.crc32(head)
    for _ in range(n_blocks):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return RawEntry(data, 8, crc, len(head) + n_blocks * len(block) + rest)
