"""Parity with scikit-learn's MLP on real data, on every backend (issue 10).

A cheap version of `benchmarks/sklearn_parity.py` (whose 5-seed table is in the
README): 2 seeds on iris, breast_cancer and diabetes, the same split and
parameters for scikit-learn's estimator and ours.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from benchmarks.sklearn_parity import DATASETS, score  # noqa: E402
from tests._sklearn_ci import full_suite  # noqa: E402

SEEDS = (0, 1)


@pytest.mark.parametrize("dataset", ["iris", "breast_cancer", "diabetes"])
def test_mean_test_score_matches_scikit_learns(backend, dataset):
    if dataset != "iris" and not full_suite(backend):
        pytest.skip("iris only off numpy (CI's time budget; MLP_SKLEARN_FULL=1 runs all)")
    theirs = np.mean([score(dataset, seed, None) for seed in SEEDS])
    ours = np.mean([score(dataset, seed, backend.name) for seed in SEEDS])
    classify = DATASETS[dataset][1]
    assert abs(ours - theirs) <= (0.01 if classify else 0.02), (ours, theirs)
    assert ours > (0.9 if classify else 0.3)
