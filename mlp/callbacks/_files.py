"""What the callbacks that write files share: their path argument, the check that an
optimizer can be saved, `mlp.io` (imported when first used) and a quiet removal."""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any


def path_argument(name: str, value: object) -> str:
    """``value`` (a str or path-like) as a non-empty path string; a TypeError or
    ValueError naming ``name`` (``"CSVLogger path"``) for anything else."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or path-like), got "
                        f"{type(value).__name__}")
    path = os.fspath(value)
    if not isinstance(path, str) or path == "":
        raise ValueError(f"{name} must be a non-empty file path, got {value!r}")
    if "\0" in path:
        raise ValueError(f"{name} {path!r} holds a NUL character ('\\0'), which no file "
                         f"name may hold")
    return path


def saved_optimizer_check(callback: object, optimizer: Any) -> None:
    """Refuse, before the first epoch, an optimizer that cannot be saved."""
    from ..optimizers import optimizer_config

    try:
        optimizer_config(optimizer)
    except ValueError as exc:
        raise ValueError(f"{type(callback).__name__} saves the optimizer, but {exc}") from None


def mlp_io() -> ModuleType:
    """`mlp.io`, imported when first used (it reads `History` back from files)."""
    from .. import io

    return io


def remove_quietly(path: str) -> None:
    """Remove the file ``path`` if it can be removed; nothing otherwise."""
    try:
        os.remove(path)
    except OSError:
        pass
