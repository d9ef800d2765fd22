"""Choose and wrap an array library for `mlp`.

>>> from mlp import backends
>>> be = backends.get_backend("numpy")   # or $MLP_BACKEND, else numpy
>>> float(be.xp.sum(be.asarray([1.0, 2.0])))
3.0

Known backends: numpy, jax, cupy, torch, array_api_strict.

Every backend takes NumPy arrays of any dtype, memory layout and writability,
nested lists and scalars, and the CPU arrays of the other libraries
(`to_host`); arrays on a GPU are refused with a message that says how to move
them. JAX keeps compiled programs on disk between runs, in the user's cache
folder (`default_cache_dir`) unless ``$MLP_JAX_CACHE_DIR`` names another, or is
empty to keep none (`enable_compilation_cache`, `disable_compilation_cache`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _cupy, _jax, _jax_mesh, _numpy, _strict, _torch
from ._base import (
    Backend,
    BackendUnavailableError,
    InplaceOps,
    register_converter,
    to_host,
)
from ._base import (
    foreign_to_numpy as foreign_to_numpy,
)

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "InplaceOps",
    "KNOWN_BACKENDS",
    "available_backends",
    "default_cache_dir",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "get_backend",
    "resolve_backend",
    "to_host",
]

#: Every backend name `get_backend` knows, with the module that builds it.
KNOWN_BACKENDS = {
    "numpy": "_numpy",
    "jax": "_jax",
    "cupy": "_cupy",
    "torch": "_torch",
    "array_api_strict": "_strict",
}

ENV_VAR = "MLP_BACKEND"
DEVICES_ENV_VAR = _jax_mesh.ENV_VAR

# Each backend module recognises and converts its own library's arrays (without
# importing the library); `to_host` asks them in this order.
for _module in (_numpy, _jax, _torch, _strict, _cupy):
    if hasattr(_module, "to_host"):
        register_converter(_module.to_host)


def _needs_jax(what: str) -> None:
    try:
        import jax  # noqa: F401 - only to say what is missing
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{what} needs JAX: pip install 'mlp-array-api[jax]'") from exc


def enable_compilation_cache(path: str | os.PathLike[str],
                             max_size: int = _jax.DEFAULT_CACHE_MAX_SIZE) -> str:
    """Keep JAX's compiled programs in the directory ``path``.

    A second run of the same script then loads them instead of compiling (the
    same as ``$MLP_JAX_CACHE_DIR``). The programs used least recently go first.

    Parameters
    ----------
    path : str or os.PathLike
        The directory.
    max_size : int, default 1 GiB
        The most bytes the directory holds (-1: no limit).

    Returns
    -------
    str
        The directory's absolute path.

    Raises
    ------
    BackendUnavailableError
        JAX is not installed.
    """
    _needs_jax("enable_compilation_cache")
    return _jax.enable_compilation_cache(path, max_size)


def disable_compilation_cache() -> None:
    """Compile JAX programs without keeping them on disk from now on.

    The same as ``MLP_JAX_CACHE_DIR=""``.

    Raises
    ------
    BackendUnavailableError
        JAX is not installed.
    """
    _needs_jax("disable_compilation_cache")
    _jax.disable_compilation_cache()


def default_cache_dir() -> str:
    """Give the folder JAX's compiled programs are kept in when ``$MLP_JAX_CACHE_DIR`` is unset.

    Returns
    -------
    str
        ``~/.cache/mlp/jax`` on Linux (the user's cache folder elsewhere).
    """
    return _jax.default_cache_dir()


#: The backends made so far: by name, and by ``("jax", device ids)`` for several devices.
_cache: dict[str | tuple[Any, ...], Backend] = {}


def get_backend(name: str | None = None, devices: str | int | Sequence[Any] | None = None,
                process_local: bool = False) -> Backend:
    """Give the backend called ``name``, else ``$MLP_BACKEND``, else ``"numpy"``.

    Parameters
    ----------
    name : str or None, default None
        ``numpy``, ``jax``, ``cupy``, ``torch`` or ``array_api_strict``.
    devices : str, int, sequence of devices or None, default None
        JAX only (default ``$MLP_DEVICES``, else None): train data-parallel over
        several devices (`backends._jax_mesh`). None is one device, as without
        it; ``"all"`` every device JAX sees (every process's after
        ``jax.distributed.initialize()``); an integer ``n`` the first ``n``; or a
        list of JAX devices. ``$MLP_DEVICES`` takes ``all`` or a number, and is
        ignored by the other backends.
    process_local : bool, default False
        JAX over every process of ``jax.distributed`` only: `fit` takes each
        process's own training rows rather than the same full arrays in every
        process (`mlp.shards`).

    Returns
    -------
    Backend
        The backend (one object per name and devices, made once).

    Raises
    ------
    ValueError
        ``name`` is not a known backend (the message lists the known ones), or
        ``devices`` names devices that are not there (the message says how many are),
        or is given for a backend other than JAX; ``process_local=True`` without a mesh
        over every process (the message says what is missing).
    BackendUnavailableError
        The backend is known but cannot run here; the message says why and
        what to install.
    TypeError
        ``name`` is not a str.

    Examples
    --------
    >>> from mlp import backends
    >>> be = backends.get_backend("numpy")
    >>> be.name, float(be.xp.sum(be.asarray([1.0, 2.0])))
    ('numpy', 3.0)
    """
    source = "backend"
    if name is None:
        name = os.environ.get(ENV_VAR, "").strip() or "numpy"
        source = f"${ENV_VAR}" if os.environ.get(ENV_VAR, "").strip() else "backend"
    if not isinstance(name, str):
        raise TypeError(f"backend must be a name (str) or a Backend, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key == "strict":
        key = "array_api_strict"
    if key not in KNOWN_BACKENDS:
        raise ValueError(
            f"unknown {source} {name!r}; known backends: {', '.join(KNOWN_BACKENDS)}"
        )
    if key not in _cache:
        module = importlib.import_module(f"{__name__}.{KNOWN_BACKENDS[key]}")
        created: Backend = module.create()
        _cache[key] = created
    if process_local is not False:
        return _process_local(key, devices, process_local)
    return _cache[key] if devices is None and key != "jax" else _on_devices(key, devices)


def _on_devices(key: str, devices: str | int | Sequence[Any] | None,
                process_local: bool = False) -> Backend:
    """The JAX backend over ``devices`` (else ``$MLP_DEVICES``); the one-device one for None."""
    source = "devices"
    if devices is None:
        devices = os.environ.get(_jax_mesh.ENV_VAR, "").strip() or None
        source = f"${_jax_mesh.ENV_VAR}"
        if devices is None:
            return _cache[key]
    if key != "jax":
        raise ValueError(f"devices= needs the 'jax' backend (data-parallel training runs on "
                         f"JAX), got backend {key!r}")
    import jax

    chosen = _jax_mesh.resolve_devices(jax, devices, source)
    ids = ("jax", tuple(d.id for d in chosen)) + (("process_local",) if process_local else ())
    if ids not in _cache:
        _cache[ids] = _jax_mesh.ShardedJaxBackend(jax, chosen, process_local=process_local)
    return _cache[ids]


def _process_local(key: str, devices: str | int | Sequence[Any] | None,
                   process_local: object) -> Backend:
    """The JAX backend over ``devices`` whose `fit` takes each process's own rows."""
    if not isinstance(process_local, (bool, np.bool_)):
        raise TypeError(f"process_local must be True or False, got "
                        f"{type(process_local).__name__} {process_local!r}")
    if key != "jax":
        raise ValueError(f"process_local=True needs the 'jax' backend over several processes "
                         f"(devices='all' after jax.distributed.initialize()), got backend "
                         f"{key!r}")
    if devices is None and not os.environ.get(_jax_mesh.ENV_VAR, "").strip():
        raise ValueError("process_local=True needs a mesh over several processes: pass "
                         "devices='all' (after jax.distributed.initialize() in each process)")
    return _on_devices(key, devices, process_local=bool(process_local))


def resolve_backend(backend: str | Backend | None) -> Backend:
    """Give the `Backend` of a name, a `Backend`, or None (``$MLP_BACKEND``).

    Parameters
    ----------
    backend : str, Backend or None
        A backend's name (see `get_backend`), a `Backend` (returned as it is),
        or None.

    Returns
    -------
    Backend
        The backend.

    Raises
    ------
    ValueError, TypeError, BackendUnavailableError
        As `get_backend` raises them.
    """
    if isinstance(backend, Backend):
        return backend
    return get_backend(backend)


def available_backends() -> list[str]:
    """List the backends that can run on this machine, numpy first.

    Returns
    -------
    list of str
        Their names.
    """
    names: list[str] = []
    for name in KNOWN_BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def unavailable_backends() -> dict[str, str]:
    """Backends that cannot run here, each with the reason."""
    reasons: dict[str, str] = {}
    for name in KNOWN_BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailableError as exc:
            reasons[name] = str(exc)
    return reasons
