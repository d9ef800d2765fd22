"""scikit-learn estimators on every mlp backend: drop-in `MLPClassifier` and `MLPRegressor`.

>>> from mlp.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(64,), backend="jax")   # doctest: +SKIP
>>> clf.fit(X_train, y_train).score(X_test, y_test)                # doctest: +SKIP

Needs the ``sklearn`` extra (scikit-learn, scipy).
"""

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
