"""Shared fixtures: every test that takes ``backend`` runs on every backend installed.

``MLP_TEST_BACKENDS=numpy,jax`` restricts the set; so does ``MLP_BACKEND=jax``
(the nox sessions set it). A backend that cannot run here is reported as
skipped, with the reason.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mlp import backends

ALL = list(backends.KNOWN_BACKENDS)


def pytest_configure(config):
    """JAX's compiled programs stay out of the user's cache folder while the tests run (the
    tests of the cache give each script a folder of its own)."""
    os.environ.setdefault(backends._jax.CACHE_ENV_VAR, "")


def _selected():
    wanted = (os.environ.get("MLP_TEST_BACKENDS", "").strip()
              or os.environ.get("MLP_BACKEND", "").strip())
    return [b.strip() for b in wanted.split(",") if b.strip()] if wanted else ALL


def _params():
    out = []
    for name in _selected():
        try:
            backends.get_backend(name)
            marks = ()
        except backends.BackendUnavailableError as exc:
            marks = (pytest.mark.skip(reason=f"{name} unavailable: {exc}"),)
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(params=_params())
def backend(request):
    """A `backends.Backend`, once for each installed backend."""
    return backends.get_backend(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _no_env_backend(monkeypatch):
    """Tests choose backends explicitly; an outer $MLP_BACKEND must not leak in."""
    monkeypatch.delenv("MLP_BACKEND", raising=False)


class JaxCompiles:
    """Counts of JAX's own monitoring events while a `count_jax_compiles` test runs.

    ``compiles``: XLA compilations requested (JAX's backend-compile event, which a
    persistent-cache hit also fires); ``cache_hits``: those loaded from the
    persistent compilation cache instead; ``fresh``: compilations really done.
    """

    def __init__(self):
        self.compiles = self.cache_hits = 0

    @property
    def fresh(self):
        return self.compiles - self.cache_hits

    def on_duration(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.compiles += 1

    def on_event(self, event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1


@pytest.fixture
def count_jax_compiles():
    """A `JaxCompiles` that counts JAX compilations during the test (JAX's monitoring)."""
    monitoring = pytest.importorskip("jax.monitoring")
    counts = JaxCompiles()
    monitoring.register_event_duration_secs_listener(counts.on_duration)
    monitoring.register_event_listener(counts.on_event)
    yield counts
    monitoring.unregister_event_duration_listener(counts.on_duration)
    monitoring.unregister_event_listener(counts.on_event)


def _mae_value(xp, z, a, y):
    return xp.sum(xp.abs(a - y)) / (y.shape[0] * y.shape[1])


def _mae_value_and_delta(xp, z, a, y, output):
    n = y.shape[0] * y.shape[1]
    return _mae_value(xp, z, a, y), output.backward(xp, xp.sign(a - y) / n, z, a)


@pytest.fixture
def registries():
    """The activations, losses and metrics a test registers are forgotten after it."""
    from mlp import activations, losses, metrics

    kept = (activations.ACTIVATIONS, losses.LOSSES, metrics.METRICS)
    saved = [dict(registry) for registry in kept]
    yield
    for registry, old in zip(kept, saved, strict=True):
        registry.clear()
        registry.update(old)


@pytest.fixture
def value_only_mae(monkeypatch):
    """A user's loss written only for the unweighted mean (``value``/``value_and_delta``,
    no terms), registered as ``"mae"`` for the test."""
    import mlp

    loss = mlp.Loss("mae", value=_mae_value, value_and_delta=_mae_value_and_delta,
                    default_output="identity")
    monkeypatch.setitem(mlp.losses.LOSSES, "mae", loss)
    return loss
