"""LinearProbe and FusionClassifier are scikit-learn estimators (BaseEstimator + ClassifierMixin)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.model_selection import GridSearchCV, cross_val_score

from probe.errors import ProbeError
from probe.fusion import FusionClassifier
from probe.probes import LinearProbe


def _blobs(n=240, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.standard_normal((3, d)) * 2
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


def test_both_estimators_are_classifiers_with_sklearn_params():
    assert is_classifier(LinearProbe()) and is_classifier(FusionClassifier())
    assert LinearProbe(C=2.0).get_params()["C"] == 2.0
    assert repr(LinearProbe(C=2.0)) == "LinearProbe(C=2.0)"
    assert repr(FusionClassifier(method="concat", k=3)) == "FusionClassifier(k=3, method='concat')"
    assert clone(FusionClassifier(k=5)).k == 5


def test_grid_search_and_cross_val_score_on_linear_probe():
    X, y = _blobs()
    search = GridSearchCV(LinearProbe(max_iter=30), {"C": [0.1, 1]}, cv=3).fit(X, y)
    assert search.best_params_["C"] in (0.1, 1)
    assert set(search.cv_results_["param_C"]) == {0.1, 1}
    assert search.best_estimator_.coef_.shape == (3, X.shape[1])
    scores = cross_val_score(LinearProbe(max_iter=30), X, y, cv=3)
    assert scores.shape == (3,)
    # three well separated blobs: far above the 1/3 chance level, and each fold agrees with score()
    assert scores.min() > 0.8
    probe = LinearProbe(max_iter=30).fit(X[:160], y[:160])
    assert probe.score(X[160:], y[160:]) == pytest.approx(np.mean(probe.predict(X[160:]) == y[160:]))


@pytest.mark.parametrize("params", [{"C": 0}, {"C": -1.0}, {"C": "1"}, {"max_iter": 0},
                                    {"max_iter": 2.5}, {"tol": -1}, {"penalty_space": "l1"},
                                    {"n_threads": 0}])
def test_bad_linear_probe_parameters_raise_value_error(params):
    X, y = _blobs(60)
    with pytest.raises(ValueError):
        LinearProbe(**params).fit(X, y)
    with pytest.raises(ProbeError):  # still a one-line CLI error
        LinearProbe(**params).fit(X, y)


def test_bad_parameters_and_names_raise_value_error():
    with pytest.raises(ValueError, match="bogus"):
        LinearProbe().set_params(bogus=1)
    with pytest.raises(ValueError, match="bogus"):
        FusionClassifier().set_params(bogus=1)
    for params in ({"method": "sum"}, {"task": "parsing"}, {"metric": "auc"}, {"epochs": 0}):
        with pytest.raises(ValueError):
            FusionClassifier(k=1, **params)._check_params()
