"""Choose and wrap an array library for `mlp`.

>>> import backends
>>> be = backends.get_backend("numpy")   # or $MLP_BACKEND, else numpy
>>> be.xp.sum(be.asarray([1.0, 2.0]))

Known backends: numpy, jax, cupy, torch, array_api_strict.

Every backend takes NumPy arrays of any dtype, memory layout and writability,
nested lists and scalars, and the CPU arrays of the other libraries
(`to_host`); arrays on a GPU are refused with a message that says how to move
them. JAX: ``$MLP_JAX_CACHE_DIR`` or `enable_compilation_cache` keeps compiled
programs on disk between runs.
"""

from __future__ import annotations

import importlib
import os

from . import _cupy, _jax, _numpy, _strict, _torch
from ._base import Backend, BackendUnavailableError, foreign_to_numpy, register_converter, to_host

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "KNOWN_BACKENDS",
    "available_backends",
    "enable_compilation_cache",
    "foreign_to_numpy",
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

# Each backend module recognises and converts its own library's arrays (without
# importing the library); `to_host` asks them in this order.
for _module in (_numpy, _jax, _torch, _strict, _cupy):
    if hasattr(_module, "to_host"):
        register_converter(_module.to_host)


def enable_compilation_cache(path) -> str:
    """Keep JAX's compiled programs in the directory ``path``, so a second run of the same
    script loads them instead of compiling (the same as ``$MLP_JAX_CACHE_DIR``).

    Needs JAX (`BackendUnavailableError` otherwise); returns the absolute path.
    """
    try:
        import jax  # noqa: F401 - only to say what is missing
    except ImportError as exc:
        raise BackendUnavailableError(
            "enable_compilation_cache needs JAX: pip install 'mlp[jax]'") from exc
    return _jax.enable_compilation_cache(path)

_cache: dict[str, Backend] = {}


def get_backend(name: str | None = None) -> Backend:
    """The backend called ``name``, else ``$MLP_BACKEND``, else ``"numpy"``.

    Raises
    ------
    ValueError
        ``name`` is not a known backend (the message lists the known ones).
    BackendUnavailableError
        The backend is known but cannot run here; the message says why and
        what to install.
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
        _cache[key] = module.create()
    return _cache[key]


def resolve_backend(backend: str | Backend | None) -> Backend:
    """A `Backend` from a name, a `Backend`, or None (``$MLP_BACKEND``)."""
    if isinstance(backend, Backend):
        return backend
    return get_backend(backend)


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine, numpy first."""
    names = []
    for name in KNOWN_BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return names


def unavailable_backends() -> dict[str, str]:
    """Backends that cannot run here, each with the reason."""
    reasons = {}
    for name in KNOWN_BACKENDS:
        try:
            get_backend(name)
        except BackendUnavailableError as exc:
            reasons[name] = str(exc)
    return reasons
