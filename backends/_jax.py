"""JAX (CPU or GPU): `jit` compiles, `scan` is `jax.lax.scan`.

64-bit types without touching the process: JAX computes in 32 bits unless its
``jax_enable_x64`` flag is on. This backend never changes that flag; it runs
its own work on 64-bit data - making arrays, the array-API functions of ``xp``
and the functions it compiles - inside ``jax.enable_x64(True)``, a thread-local
scope. So a ``dtype="float64"`` model computes in float64 while the user's own
``jnp.arange(3)`` stays int32. The arrays it returns are ordinary JAX arrays:
to compute on a float64 result with ``jax.numpy`` yourself, do it inside
``with jax.enable_x64(True):`` (or turn the flag on), as JAX requires.

Accepted input: NumPy arrays of any dtype, strides and writability, and CPU
arrays of other libraries. 64-bit integer labels are held as int32 when every
value fits (no value changes), else as int64 in the 64-bit scope, so a label
beyond int32 is reported, never wrapped around.

Compilation: one per model shape and training configuration. Compiled programs
are kept on disk, in the user's cache folder (`default_cache_dir`), so a second
run of the same script loads them instead of compiling; ``$MLP_JAX_CACHE_DIR``
names another folder, ``MLP_JAX_CACHE_DIR=""`` turns the cache off, and so do
`backends.enable_compilation_cache` and `backends.disable_compilation_cache`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ._base import (
    Array,
    Backend,
    BackendUnavailableError,
    DType,
    host_layout,
    library_of,
    where,
)

#: Environment variable naming a directory for JAX's persistent compilation cache
#: (unset: `default_cache_dir`; empty: no cache).
CACHE_ENV_VAR = "MLP_JAX_CACHE_DIR"

#: The most the cache folder holds (bytes): beyond it JAX removes the programs used
#: least recently.
DEFAULT_CACHE_MAX_SIZE = 1 << 30

# The folder chosen by `enable_compilation_cache` (None before any choice, "" when turned
# off), so that a backend created later keeps the user's choice.
_cache_choice: list[str | None] = [None]

_INT32 = np.iinfo(np.int32)


def to_host(data: Any, target: Backend, name: str) -> np.ndarray | None:
    """A JAX array on the CPU as host NumPy; on an accelerator it is refused with how to
    move it; None for anything else."""
    if library_of(data) not in ("jax", "jaxlib") or not hasattr(data, "devices"):
        return None
    if target.name == "jax" and hasattr(data, "sharding"):  # on other devices: via the host
        return _gathered(data, target, name)
    platform = getattr(next(iter(data.devices()), None), "platform", "cpu")
    if platform != "cpu":
        raise TypeError(
            f"{name} is a JAX array on {platform}, but {where(target)}. Move it with "
            f"`numpy.asarray({name})`, or build the model with backend='jax'."
        )
    return np.asarray(data)


def _gathered(data: Any, target: Backend, name: str) -> np.ndarray:
    """A JAX array on any devices as host NumPy (all of it, from every process)."""
    if data.is_fully_addressable or data.is_fully_replicated:
        return np.asarray(data)
    if len(getattr(target, "devices", ())) < 2:
        raise TypeError(f"{name} is a JAX array split over the devices of several processes, "
                        f"but {where(target)}; train on all of them with "
                        "mlp.backends.get_backend('jax', devices='all')")
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(data, tiled=True))


def _is_wide(dtype: Any) -> bool:
    """Whether ``dtype`` (a dtype, scalar type or None) is one that needs JAX's x64."""
    if dtype is None:
        return False
    try:
        dt = np.dtype(dtype)
    except TypeError:
        return False
    return dt.kind in "fiuc" and dt.itemsize >= 8


def _wants_x64(values: Iterable[Any]) -> bool:
    """Whether any array or dtype among ``values`` (leaves or flat sequences) is 64-bit.

    Python's ``int`` and ``float`` do not count: to JAX they mean its default types."""
    for value in values:
        if isinstance(value, (list, tuple)):
            wide = _wants_x64(value)
        elif isinstance(value, type):
            wide = _is_wide(value) if issubclass(value, np.generic) or hasattr(
                value, "dtype") and isinstance(value.dtype, np.dtype) else False
        else:
            wide = _is_wide(value) if isinstance(value, np.dtype) else _is_wide(
                getattr(value, "dtype", None))
        if wide:
            return True
    return False


class JaxBackend(Backend):
    name = "jax"
    compiles = True

    def __init__(self, jax: types.ModuleType) -> None:
        self._jax = jax
        self._x64 = jax.enable_x64  # a config State: ``with self._x64(True):`` scopes it
        self._local = threading.local()  # how deep in `precision` blocks this thread is
        super().__init__(self._scoped_namespace(jax.numpy), jax.local_devices()[0])

    # ------------------------------------------------------------ the x64 scope
    @contextlib.contextmanager
    def precision(self, *values: Any) -> Iterator[None]:
        """Run `mlp`'s work on ``values`` (arrays, dtypes, pytrees) in their precision.

        If any of them is 64-bit, JAX holds 64-bit types inside this block (a
        thread-local ``jax.enable_x64(True)``); else nothing changes. The
        process-wide flag is never changed. Blocks nest.
        """
        wide = _wants_x64(self._jax.tree_util.tree_leaves(values))
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            with (self._x64(True) if wide and not self._x64.value
                  else contextlib.nullcontext()):
                yield
        finally:
            self._local.depth -= 1

    def _global_x64_fallback(self) -> None:
        """float64 asked for outside `precision`: code that calls ``jax.numpy`` directly
        (not through this backend) would truncate it, so turn x64 on for the process,
        as JAX requires, and say so once."""
        if getattr(self._local, "depth", 0) or self._x64.value:
            return
        warnings.warn(
            "float64 on the JAX backend was requested outside `backend.precision(...)`, so "
            "jax_enable_x64 is now on for the whole process (JAX's own default integer and "
            "float types become 64-bit)", RuntimeWarning, stacklevel=4)
        self._jax.config.update("jax_enable_x64", True)

    def _scoped(self, fn: Callable[..., Any], pytrees: bool = False) -> Callable[..., Any]:
        """``fn`` run inside the 64-bit scope when its arguments hold 64-bit data
        (arrays, dtypes, lists of them; with ``pytrees``, any pytree's leaves)."""
        tree_leaves = self._jax.tree_util.tree_leaves

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            values = tree_leaves((args, kwargs)) if pytrees else (*args, *kwargs.values())
            if self._x64.value or not _wants_x64(values):
                return fn(*args, **kwargs)
            with self._x64(True):
                return fn(*args, **kwargs)

        return call

    def _scoped_namespace(self, jnp: types.ModuleType) -> types.ModuleType:
        """``jax.numpy`` whose functions run in the 64-bit scope when given 64-bit data."""
        ns = types.ModuleType("backends._jax.xp", jnp.__doc__)
        for key, value in vars(jnp).items():
            if key.startswith("__") and key != "__array_namespace_info__":
                continue
            is_function = callable(value) and not isinstance(value, (type, types.ModuleType))
            setattr(ns, key, self._scoped(value) if is_function else value)
        return ns

    # --------------------------------------------------------------------- data
    def is_native(self, data: Any) -> bool:
        """A JAX array on this backend's device(s); one elsewhere (e.g. split over several
        devices) is copied through the host (`to_host`)."""
        return bool(isinstance(data, self._jax.Array) and not self.is_traced(data)
                    and data.sharding.device_set == self.devices_set)

    def is_traced(self, data: Any) -> bool:
        return isinstance(data, self._jax.core.Tracer)

    @property
    def devices_set(self) -> set[Any]:
        """The devices this backend's arrays live on."""
        return {self.device}

    def asarray(self, data: Any, dtype: DType | None = None) -> Array:
        if dtype is not None and np.dtype(self.dtype(dtype)) == np.float64:
            self._global_x64_fallback()
        return super().asarray(data, dtype)

    def _from_host(self, host: np.ndarray, dtype: DType | None) -> Array:
        host = np.asarray(host)
        if dtype is not None and host.dtype != np.dtype(dtype):
            host = host.astype(np.dtype(dtype))
        elif host.dtype.kind in "iu" and host.dtype.itemsize == 8 and host.size \
                and not self._x64.value:  # (with 64-bit types on, JAX's own is int64)
            if _INT32.min <= int(host.min()) and int(host.max()) <= _INT32.max:
                host = host.astype(np.int32)  # every value kept; JAX's own integer type
        with (self._x64(True) if _is_wide(host.dtype) and not self._x64.value
              else contextlib.nullcontext()):
            return self._place(host_layout(host))

    def _place(self, host: np.ndarray) -> Array:
        """A C-contiguous host array on the device (a subclass may shard it)."""
        # device_put straight from NumPy: ~40% faster than jnp.asarray then device_put
        # for a 188 MB training set (no intermediate copy).
        return self._jax.device_put(host, self.device)

    def to_numpy(self, array: Array) -> np.ndarray:
        return np.array(array, copy=True)

    # ------------------------------------------------------------------ compile
    def take_rows(self, array: Array, rows: Array) -> Array:
        # jnp.take's default mode fills out-of-bounds rows, a masked gather that cost
        # ~10% of a wide training epoch (W3); batch rows are always in bounds.
        return self.xp.take(array, rows, axis=0, mode="clip")

    def jit(self, fn: Callable[..., Any], static_argnums: tuple[int, ...] = ()
            ) -> Callable[..., Any]:
        """``jax.jit(fn)``, called inside the 64-bit scope when given 64-bit arrays."""
        return self._scoped(self._jax.jit(fn, static_argnums=static_argnums), pytrees=True)

    def scan(self, body: Callable[[Any, Any], tuple[Any, Any]], carry: Any, xs: Any = None,
             length: int | None = None) -> tuple[Any, Any]:
        wide = _wants_x64(self._jax.tree_util.tree_leaves((carry, xs)))
        with self._x64(True) if wide and not self._x64.value else contextlib.nullcontext():
            carry_and_ys: tuple[Any, Any] = self._jax.lax.scan(body, carry, xs, length=length)
            return carry_and_ys

    def fori_loop(self, lower: Any, upper: Any, body: Callable[[Any, Any], Any],
                  carry: Any) -> Any:
        wide = _wants_x64(self._jax.tree_util.tree_leaves(carry))
        with self._x64(True) if wide and not self._x64.value else contextlib.nullcontext():
            return self._jax.lax.fori_loop(lower, upper, body, carry)

    def synchronize(self) -> None:
        self._jax.effects_barrier()


def default_cache_dir() -> str:
    """The folder compiled programs are kept in when ``$MLP_JAX_CACHE_DIR`` is unset:
    ``jax`` in mlp's folder of the user's cache (``~/.cache/mlp/jax`` on Linux, or under
    ``$XDG_CACHE_HOME``; ``~/Library/Caches/mlp/jax`` on macOS;
    ``%LOCALAPPDATA%\\mlp\\Cache\\jax`` on Windows), as `platformdirs` names it."""
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("mlp", appauthor=False), "jax")


def enable_compilation_cache(path: str | os.PathLike[str],
                             max_size: int = DEFAULT_CACHE_MAX_SIZE) -> str:
    """Keep JAX's compiled programs in the directory ``path`` (created if missing).

    A second run of the same script (same shapes, dtypes, training settings and
    JAX version) then loads them instead of compiling. Every program is kept,
    however small or quick to compile, until the folder holds ``max_size`` bytes
    (default 1 GiB; -1: no limit), beyond which JAX removes the programs used
    least recently. The same as setting ``$MLP_JAX_CACHE_DIR`` before the JAX
    backend is first used; it works after compilations too (later ones are
    cached). Only use a directory that no one you do not trust can write to: JAX
    runs what it loads from there. Returns the absolute path.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"the JAX compilation cache needs a folder name (str or os.PathLike), "
                        f"got {type(path).__name__} {path!r}"[:300])
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < -1:
        raise ValueError(f"max_size is the most bytes the cache folder may hold (a whole "
                         f"number, or -1 for no limit), got {max_size!r}"[:300])
    path = os.path.abspath(os.fspath(path))
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"the JAX compilation cache needs a folder it can create or use, "
                         f"but {path!r} is not one ({exc.strerror or exc})") from exc
    if jax.config.jax_compilation_cache_dir != path or not _cache_on(jax):
        compilation_cache.reset_cache()  # JAX decides at its first compilation otherwise
    jax.config.update("jax_enable_compilation_cache", True)
    compilation_cache.set_cache_dir(path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", max_size)
    _cache_choice[0] = path
    return path


def disable_compilation_cache() -> None:
    """Compile without keeping programs on disk from now on (the same as
    ``MLP_JAX_CACHE_DIR=""`` before the JAX backend is first used)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    _cache_choice[0] = ""


def _cache_on(jax: types.ModuleType) -> bool:
    return bool(jax.config.jax_enable_compilation_cache)


def _start_cache() -> None:
    """The cache the environment asks for, once, unless the user already chose one:
    ``$MLP_JAX_CACHE_DIR``'s folder, none if it is empty, else `default_cache_dir`
    (where that folder cannot be made, a warning says so and nothing is cached)."""
    if _cache_choice[0] is not None:
        return
    cache = os.environ.get(CACHE_ENV_VAR)
    if cache is not None and not cache.strip():
        disable_compilation_cache()
    elif cache is not None:
        try:
            enable_compilation_cache(cache.strip())
        except ValueError as exc:
            raise ValueError(f"${CACHE_ENV_VAR}={cache!r}: {exc}; set it to a folder, or "
                             f"to an empty string to compile without a cache") from exc
    else:
        try:
            enable_compilation_cache(default_cache_dir())
        except (ValueError, OSError) as exc:
            warnings.warn(f"JAX compiles without a cache on disk: {exc}; set "
                          f"${CACHE_ENV_VAR} to a folder you can write to, or to an empty "
                          f"string to silence this", RuntimeWarning, stacklevel=3)
            disable_compilation_cache()


def create() -> Backend:
    try:
        import jax
    except ImportError as exc:
        raise BackendUnavailableError(
            "the 'jax' backend needs JAX: pip install 'mlp-array-api[jax]' "
            "(or pip install 'jax[cpu]')"
        ) from exc
    _start_cache()
    return JaxBackend(jax)
