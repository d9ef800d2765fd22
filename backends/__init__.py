"""Choose and wrap an array library for `mlp`.

>>> import backends
>>> be = backends.get_backend("numpy")   # or $MLP_BACKEND, else numpy
>>> be.xp.sum(be.asarray([1.0, 2.0]))

Known backends: numpy, jax, cupy, torch, array_api_strict.
"""

from __future__ import annotations

import importlib
import os

from ._base import Backend, BackendUnavailableError

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "KNOWN_BACKENDS",
    "available_backends",
    "get_backend",
    "resolve_backend",
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
