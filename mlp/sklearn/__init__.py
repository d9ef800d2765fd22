"""The scikit-learn estimators `MLPClassifier` and `MLPRegressor`, on every mlp backend.

>>> from mlp.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(64,), backend="jax")   # doctest: +SKIP
>>> clf.fit(X_train, y_train).score(X_test, y_test)                # doctest: +SKIP

Needs the ``sklearn`` extra (scikit-learn, scipy).
"""

try:
    import scipy  # noqa: F401
    import sklearn  # noqa: F401
except ImportError as exc:
    raise ImportError(
        f"mlp.sklearn needs scikit-learn and SciPy ({exc.name} is not installed): "
        "pip install 'mlp-array-api[sklearn]' (or pip install 'scikit-learn>=1.9,<1.10' "
        "scipy)") from exc

from ._estimators import MLPClassifier, MLPRegressor  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor"]
