"""`MonitorCallback`: the base of the callbacks that watch a metric."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from ..metrics import metric_mode
from ..params import Rule, validate
from .callback import Callback


class MonitorCallback(Callback):
    """The base of the callbacks that watch a metric.

    `EarlyStopping`, `ModelCheckpoint` and `ReduceLROnPlateau` build on it: which
    metric, its direction, and whether a value improves on the best so far.

    A subclass sets the attributes below in its ``__init__`` (and calls
    `_check_mode` there, so that an unknown metric name fails at once), checks
    in ``on_train_begin`` that the fit logs the metric (`_check_logged` with
    ``self.params["metrics"]``), and asks `_improves` in ``on_epoch_end``. A
    subclass whose counters a `BackupAndRestore` backs up declares their rules
    (`state_rules`) and the settings they depend on (`setting_names`), and reads
    a saved state back through `_saved`.

    Attributes
    ----------
    monitor : str or None
        The metric watched, a name in the epoch's logs (``"val_loss"``...); None
        watches ``val_loss`` where the fit validates and ``loss`` where it does not.
    mode : {"auto", "min", "max"}
        Whether a lower (``"min"``) or a higher (``"max"``) value is better;
        ``"auto"`` asks `metric_mode`.
    min_delta : float
        The smallest change in the better direction that counts as an improvement.
    state_rules : dict
        The rules (`mlp.params`) of each entry of the dict `get_state` gives.
    setting_names : tuple of str
        The arguments the saved state depends on (see `settings`).
    """

    monitor: str | None = None
    mode: str = "auto"
    min_delta: float = 0.0

    def _check_mode(self) -> None:
        """Refuse, when the callback is built, a metric whose direction is unknown
        (a typo) under ``mode="auto"``."""
        if self.mode == "auto" and self.monitor is not None:
            metric_mode(self.monitor)  # an unknown name (a typo) fails here, at once

    def _key(self, names: Collection[str]) -> str:
        """The metric watched among the logged ``names``."""
        if self.monitor is not None:
            return self.monitor
        return "val_loss" if "val_loss" in names else "loss"

    def _check_logged(self, names: Collection[str]) -> str:
        """The metric watched (`_key`), refused (ValueError naming the callback and what
        the fit logs) where ``names`` does not hold it."""
        key = self._key(names)
        if key not in names:
            no_validation = not any(name.startswith("val_") for name in names)
            hint = (" (validation metrics need validation_data or validation_split)"
                    if key.startswith("val_") and no_validation else "")
            raise ValueError(f"{type(self).__name__} monitors {key!r}, which this fit does not "
                             f"log; it logs: {', '.join(names)}{hint}")
        return key

    def _direction(self, key: str) -> str:
        """``"min"`` or ``"max"``: the better direction of the metric ``key``."""
        return metric_mode(key) if self.mode == "auto" else self.mode

    #: The rules (`mlp.params`) of each entry of the dict `get_state` gives.
    state_rules: dict[str, list[Rule]] = {}

    #: The arguments the saved state depends on: `get_state` holds them under
    #: ``"settings"``, and a backup made with others is refused (`settings_difference`).
    setting_names: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """Give the arguments (`setting_names`) this callback was built with.

        Returns
        -------
        dict
            Each setting's name and value.
        """
        return {name: getattr(self, name) for name in self.setting_names}

    def settings_difference(self, state: object) -> str | None:
        """Say how the settings a saved ``state`` was made with differ from this callback's.

        Parameters
        ----------
        state : object
            A state from `get_state` (of a backup).

        Returns
        -------
        str or None
            E.g. ``"monitor 'val_accuracy' there, 'val_loss' here"``; None where
            they are the same (or the state does not say: then `set_state` refuses
            it as damaged).
        """
        saved = state.get("settings") if isinstance(state, dict) else None
        ours = self.settings()
        if not isinstance(saved, dict) or saved == ours:
            return None
        return "; ".join(f"{k} {saved.get(k)!r} there, {v!r} here" for k, v in ours.items()
                         if saved.get(k) != v) or f"settings {saved!r} there, {ours!r} here"

    def _saved(self, state: object) -> dict[str, Any]:
        """``state`` as a backup gave it back, checked entry by entry against
        `state_rules` before `set_state` uses any of it: a ValueError naming this
        callback for a missing, extra or ill-typed entry (a bool for a count, NaN...)."""
        name = type(self).__name__
        if not isinstance(state, dict) or state.keys() != self.state_rules.keys():
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{name}'s saved state holds {got}, not {sorted(self.state_rules)}")
        try:
            checked: dict[str, Any] = validate(self.state_rules, state)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}'s saved state is damaged: {exc}") from None
        difference = self.settings_difference(checked)
        if difference:
            raise ValueError(f"{name}'s saved state was made with other settings "
                             f"({difference})")
        return checked

    def _improves(self, value: float, best: float | None, key: str) -> bool:
        """Whether ``value`` beats ``best`` (None: nothing yet) by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if best is None:
            return True
        if self._direction(key) == "max":
            return bool(value > best + self.min_delta)
        return bool(value < best - self.min_delta)
