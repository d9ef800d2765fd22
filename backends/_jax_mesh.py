"""Data-parallel JAX: one mesh axis ``"data"`` over several devices, and several hosts.

>>> be = backends.get_backend("jax", devices="all")     # or $MLP_DEVICES=all  # doctest: +SKIP
>>> mlp.MLP([8, 64, 1], backend=be).fit(x, y, epochs=10, batch_size=256)  # doctest: +SKIP

Everything `asarray` makes (weights, optimizer state, data to predict or evaluate)
is replicated on every device (``NamedSharding(mesh, P())``). The training rows,
placed once per `fit` by `place_rows`, are padded to a multiple of the device
count with rows of weight 0 and sharded by rows (``P("data")``). A batch is cut
from them on the devices (`take_rows`, with batch indices padded on the host to a
multiple of the device count by pointing at a padding row) and constrained to the
row sharding, so XLA runs each step data-parallel and sums the devices' gradients
with an all-reduce. The math in `mlp` is unchanged: the 1/N of the mean is folded
into the output delta, and the padding rows weigh 0, so the sum is the exact mean.

Several hosts: call ``jax.distributed.initialize()`` first in every process; then
``devices="all"`` is every process's devices, each process passes the same full
arrays and places only its own part (`jax.make_array_from_callback`).

Process-local rows (``process_local=True``, a mesh over every process): each
process passes only its own training rows. They are padded with rows of weight
0 to one size for all processes and become the process's block of the global
row-sharded arrays (`place_local_rows`, `jax.make_array_from_process_local_data`):
the global rows are the processes' blocks in process order, so no process and no
device holds the whole set. The few numbers the processes must agree on (row
counts, whether a process refused its data) go through `gather_numbers`.
"""

from __future__ import annotations

import contextlib
import numbers
import types
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ._base import Array
from ._jax import JaxBackend, _gathered

#: Environment variable with the default ``devices`` of the JAX backend.
ENV_VAR = "MLP_DEVICES"

_WHAT = "None, 'all', a number of devices >= 1 or a list of JAX devices"


def resolve_devices(jax: types.ModuleType, devices: str | int | Sequence[Any],
                    source: str = "devices") -> list[Any]:
    """The JAX devices ``devices`` names: ``"all"``, the first ``n``, or a list of them.

    ``source`` names the setting in messages (``"devices"`` or ``"$MLP_DEVICES"``).
    Raises `ValueError` / `TypeError` saying what is accepted.
    """
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "all":
            return list(jax.devices())
        if not (text.isascii() and text.isdigit()):  # isdigit alone takes '²', '١'
            raise ValueError(f"{source} must be {_WHAT}, got {devices!r}")
        devices = int(text)
    if isinstance(devices, numbers.Integral) and not isinstance(devices, (bool, np.bool_)):
        return _first(jax, int(devices), source)
    if isinstance(devices, (list, tuple)):
        return _listed(jax, devices, source)
    raise TypeError(f"{source} must be {_WHAT}, got {type(devices).__name__} {devices!r}")


def _first(jax: types.ModuleType, n: int, source: str) -> list[Any]:
    available = jax.devices()
    if n < 1:
        raise ValueError(f"{source} must be {_WHAT}, got {n}")
    if n > len(available):
        platform = available[0].platform
        hint = (" To try several devices on a CPU, set XLA_FLAGS="
                f"--xla_force_host_platform_device_count={n} before JAX is imported."
                if platform == "cpu" else "")
        raise ValueError(f"{source}={n} asks for {n} devices, but JAX sees "
                         f"{len(available)} ({platform}); use devices='all' or a number up to "
                         f"{len(available)}.{hint}")
    return list(available[:n])


def _listed(jax: types.ModuleType, given: Sequence[Any], source: str) -> list[Any]:
    devices = list(given)
    if not devices:
        raise ValueError(f"{source} must be {_WHAT}, got an empty list")
    for i, device in enumerate(devices):
        if not isinstance(device, jax.Device):
            raise TypeError(f"{source}[{i}] must be a JAX device (from jax.devices()), got "
                            f"{type(device).__name__} {device!r}")
    if len(set(devices)) != len(devices):
        raise ValueError(f"{source} lists a device more than once: {devices}")
    return devices


def check_process_local(jax: types.ModuleType, devices: Sequence[Any]) -> None:
    """Refuse ``process_local=True`` where it cannot hold.

    That is a mesh over one process (the rows are all there: pass them whole), over
    some processes only, or whose devices are not grouped by process in process order
    with as many devices in each (the global rows are the processes' blocks of one
    size, in process order).

    Parameters
    ----------
    jax : module
        The ``jax`` module.
    devices : sequence of jax.Device
        The mesh's devices, in order.

    Raises
    ------
    ValueError
        Saying what is missing.
    """
    owners = [d.process_index for d in devices]
    processes = sorted(set(owners))
    if len(processes) < 2:
        raise ValueError(
            "process_local=True needs a mesh over several processes (call "
            "jax.distributed.initialize() in each, then devices='all'); this mesh's "
            f"{len(devices)} device(s) are all in process {processes[0]}, which holds all the "
            "rows: pass them whole, without process_local")
    if len(processes) != jax.process_count():
        raise ValueError(f"process_local=True needs a mesh over every process "
                         f"({jax.process_count()}), got devices of processes {processes}; use "
                         f"devices='all'")
    per = [owners.count(p) for p in processes]
    if owners != sorted(owners) or len(set(per)) > 1:
        raise ValueError(f"process_local=True needs the mesh's devices grouped by process, in "
                         f"process order, as many for each (devices='all' is so); got devices "
                         f"of processes {owners}")


def _pad_rows(array: Array, extra: int) -> Array:
    """``array`` with ``extra`` rows of zeros after its rows."""
    import jax.numpy as jnp

    return jnp.concatenate([array, jnp.zeros((extra, *array.shape[1:]), array.dtype)])


class ShardedJaxBackend(JaxBackend):
    """The JAX backend over a one-axis mesh of ``devices`` (data parallelism).

    Attributes
    ----------
    devices : tuple of jax.Device
        The mesh's devices, in order.
    mesh : jax.sharding.Mesh
        The one-axis mesh ``("data",)``.
    replicated, rows : jax.sharding.NamedSharding
        A copy on every device (``P()``); rows split over the devices (``P("data")``).
    """

    pads_rows = True

    def __init__(self, jax: types.ModuleType, devices: Sequence[Any],
                 process_local: bool = False) -> None:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        super().__init__(jax)
        self.devices = tuple(devices)
        #: Whether each process passes only its own training rows (`place_local_rows`).
        self.process_local = bool(process_local)
        if self.process_local:
            check_process_local(jax, self.devices)
        self.mesh = Mesh(np.array(self.devices, dtype=object), ("data",))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.rows = NamedSharding(self.mesh, PartitionSpec("data"))
        self._pad = jax.jit(_pad_rows, static_argnums=1, out_shardings=self.rows)
        platforms = sorted({d.platform for d in self.devices})
        hosts = len({d.process_index for d in self.devices})
        self.device = (f"{len(self.devices)} {'/'.join(platforms)} devices"
                       + (f" on {hosts} hosts" if hosts > 1 else ""))

    @property
    def n_devices(self) -> int:
        return len(self.devices)

    def __repr__(self) -> str:
        local = ", process_local=True" if self.process_local else ""
        return f"Backend(name='jax', devices={self.n_devices}, device={self.device!r}{local})"

    # ------------------------------------------------------ process-local rows
    @property
    def n_processes(self) -> int:
        """The processes whose devices the mesh holds."""
        return len({d.process_index for d in self.devices})

    @property
    def process_rank(self) -> int:
        """This process's place among the mesh's processes (0 first): its rows' block."""
        indices = sorted({d.process_index for d in self.devices})
        return indices.index(self._jax.process_index())

    @contextlib.contextmanager
    def on_process_device(self) -> Iterator[None]:
        """Place the arrays made in this block on this process's first device only.

        Within the block (in this thread), data goes to that one device rather than to
        every device: a process's own rows, checked there before `place_local_rows`
        makes them its block (as replicated arrays they would claim a different global
        shape in each process).

        Yields
        ------
        None
            Inside the block.
        """
        before = getattr(self._local, "own_device", None)
        self._local.own_device = next(d for d in self.devices
                                      if d.process_index == self._jax.process_index())
        try:
            yield
        finally:
            self._local.own_device = before

    def gather_numbers(self, values: np.ndarray) -> np.ndarray:
        """Gather a few numbers from every process.

        A collective over every process of ``jax.distributed`` (those of the mesh, where
        it holds them all, as ``process_local=True`` and a fit of several processes
        ask): every process must call it alike.

        Parameters
        ----------
        values : numpy.ndarray, (k,)
            This process's numbers (int64, a few).

        Returns
        -------
        numpy.ndarray of int64, (n_processes, k)
            Every process's ``values``, in process order.
        """
        from jax.experimental import multihost_utils

        local = np.ascontiguousarray(values, dtype=np.int64)
        with self._x64(True):
            gathered = multihost_utils.process_allgather(local, tiled=False)
        return np.asarray(gathered, dtype=np.int64).reshape(-1, local.shape[0])

    def place_local_rows(self, x: np.ndarray, y: np.ndarray, w: np.ndarray,
                         *more: np.ndarray) -> tuple[Array, ...]:
        """Place this process's block of rows as its part of the global arrays.

        The global arrays hold ``n_processes * L`` rows, sharded by rows
        (`jax.make_array_from_process_local_data`): each device receives only its own.

        Parameters
        ----------
        x, y, w : numpy.ndarray, (L, ...)
            This process's rows, targets and row weights, padded to the same row count
            ``L`` in every process (a multiple of its device count).
        *more : numpy.ndarray, (L, ...)
            Other arrays of one entry a row, laid out alike (e.g. the rows' numbers).

        Returns
        -------
        tuple of jax.Array, (n_processes * L, ...)
            ``(x, y, w, *more)`` as global arrays.
        """
        with self.precision(x, y, w):
            return tuple(self._jax.make_array_from_process_local_data(
                self.rows, np.ascontiguousarray(a), (self.n_processes * a.shape[0],
                                                     *a.shape[1:]))
                for a in (x, y, w, *more))

    # --------------------------------------------------------------------- data
    def _place(self, host: np.ndarray, sharding: Any = None) -> Array:
        """``host`` as a global array with ``sharding`` (default: replicated); each process
        places only the parts on its own devices."""
        own = getattr(self._local, "own_device", None)
        if sharding is None and own is not None:  # (`on_process_device`)
            return self._jax.device_put(host, own)
        sharding = self.replicated if sharding is None else sharding
        return self._jax.make_array_from_callback(host.shape, sharding, lambda at: host[at])

    @property
    def devices_set(self) -> set[Any]:
        return set(self.devices)

    def to_numpy(self, array: Array) -> np.ndarray:
        return np.array(_gathered(array, self, "array"), copy=True)

    def place_rows(self, x: Array, y: Array, w: Array | None, padded: bool = False
                   ) -> tuple[Array, Array, Array | None]:
        """``x``, ``y`` and ``w`` (ones where None) with at least one padding row of weight 0,
        padded to a multiple of the device count and sharded by rows (``padded``: host
        arrays padded so already, sharded as they are: see `Backend.place_rows`)."""
        if padded:
            with self.precision(x, y, w):
                return tuple(self._place(np.ascontiguousarray(a), self.rows) for a in (x, y, w))
        n, d = x.shape[0], self.n_devices
        extra = d - n % d  # at least one padding row: batches point at the last
        if w is None:
            w = np.ones(n, dtype=np.dtype(self.dtype_name(x.dtype)))
        with self.precision(x, y, w):
            # on the devices: each keeps its own rows of the replicated arrays, no host trip
            return tuple(self._pad(self.asarray(a), extra) for a in (x, y, w))

    def batch_rows(self, indices: np.ndarray, n_rows: int) -> Array:
        """Each batch's indices padded to a multiple of the device count with ``n_rows - 1``
        (a padding row, of weight 0), as int32 on every device (each device gathers the
        rows it holds; XLA sums the pieces, a batch's worth of data, never the whole set)."""
        indices = np.asarray(indices)
        extra = -indices.shape[-1] % self.n_devices
        if extra:
            fill = np.full((*indices.shape[:-1], extra), n_rows - 1, dtype=indices.dtype)
            indices = np.concatenate([indices, fill], axis=-1)
        return self._place(np.ascontiguousarray(indices, dtype=np.int32))

    # ------------------------------------------------------------------ compile
    def take_rows(self, array: Array, rows: Array) -> Array:
        """The batch, cut on the devices and kept split by rows over them."""
        return self._jax.lax.with_sharding_constraint(super().take_rows(array, rows), self.rows)

