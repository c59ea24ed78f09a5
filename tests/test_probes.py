"""LinearProbe (torch L-BFGS) against known answers and sklearn; control task; evaluate."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from probe.errors import ProbeError
from probe.probes import ControlTask, LinearProbe, control_labels, evaluate


def _teacher_problem(n: int, d: int, k: int, seed: int):
    """Labels = argmax of a known linear map of Gaussian features (separable)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.exponential(1.0, d) + rng.standard_normal(d) * 5
    W = rng.standard_normal((k, d))
    y = np.argmax((X - X.mean(0)) @ W.T, axis=1)
    return X, y


def test_known_linear_answer_is_learned():
    X, y = _teacher_problem(3000, 20, 5, seed=0)
    probe = LinearProbe(n_threads=1).fit(X[:2000], y[:2000])
    assert probe.score(X[2000:], y[2000:]) > 0.95
    assert probe.coef_.shape == (5, 20) and probe.intercept_.shape == (5,)
    assert probe.mean_.shape == (20,) and probe.scale_.shape == (20,)
    assert 1 <= probe.n_iter_ <= 100
    # coef_/intercept_ act on raw features
    np.testing.assert_allclose(
        probe.decision_function(X[:50]), X[:50] @ probe.coef_.T + probe.intercept_, rtol=1e-3, atol=1e-3
    )


def test_noise_labels_are_at_chance():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 20))
    y = rng.integers(0, 5, 3000)
    probe = LinearProbe(n_threads=1).fit(X[:2000], y[:2000])
    assert probe.score(X[2000:], y[2000:]) < 0.27  # chance = 0.2


def _ten_class_problem(scaled: bool):
    rng = np.random.default_rng(2)
    k, d, n = 10, 30, 4000
    centers = rng.standard_normal((k, d)) * 0.6
    y = rng.integers(0, k, n)
    X = centers[y] + rng.standard_normal((n, d))
    if scaled:  # unequal feature scales and offsets, like hidden states
        X = X * rng.uniform(0.5, 3.0, d) + rng.standard_normal(d) * 2
    return X[:3000], X[3000:], y[:3000], y[3000:]


@pytest.mark.parametrize("penalty_space", ["raw", "standardized"])
def test_agrees_with_sklearn_logistic_regression_defaults(penalty_space):
    Xtr, Xte, ytr, yte = _ten_class_problem(scaled=False)
    sk = LogisticRegression().fit(Xtr, ytr)  # converges well within its 100 iterations here
    assert sk.n_iter_[0] < 100
    probe = LinearProbe(n_threads=1, penalty_space=penalty_space).fit(Xtr, ytr)
    sk_acc, acc = sk.score(Xte, yte), probe.score(Xte, yte)
    assert 0.5 < sk_acc < 0.95  # a non-trivial problem
    assert abs(acc - sk_acc) <= 0.01
    assert np.mean(probe.predict(Xte) == sk.predict(Xte)) > 0.97
    np.testing.assert_array_equal(probe.classes_, sk.classes_)


def test_raw_penalty_is_sklearns_objective():
    """On badly scaled, offset features the default probe reaches sklearn's optimum."""
    Xtr, Xte, ytr, yte = _ten_class_problem(scaled=True)
    # centring is an exact reparametrisation of sklearn's objective (the unpenalised
    # intercept absorbs it) that lets sklearn converge in reasonable time
    m = Xtr.mean(0)
    sk = LogisticRegression(max_iter=1000, tol=1e-7).fit(Xtr - m, ytr)
    assert sk.n_iter_[0] < 1000
    probe = LinearProbe(n_threads=1, tol=1e-6, max_iter=500).fit(Xtr, ytr)
    np.testing.assert_allclose(probe.predict_proba(Xte), sk.predict_proba(Xte - m), atol=2e-3)
    assert abs(probe.score(Xte, yte) - sk.score(Xte - m, yte)) <= 0.003
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_default = LogisticRegression().fit(Xtr, ytr)
    assert abs(LinearProbe(n_threads=1).fit(Xtr, ytr).score(Xte, yte) - sk_default.score(Xte, yte)) <= 0.02


def test_float16_memmap_input_and_string_labels(tmp_path):
    X, y = _teacher_problem(1200, 16, 3, seed=3)
    names = np.array(["ADJ", "NOUN", "VERB"])[y]
    X16 = X.astype(np.float16)
    mm = np.memmap(tmp_path / "x.f16", dtype=np.float16, mode="w+", shape=X16.shape)
    mm[:] = X16
    mm.flush()
    mm = np.memmap(tmp_path / "x.f16", dtype=np.float16, mode="r", shape=X16.shape)
    a = LinearProbe(n_threads=1).fit(mm[:1000], names[:1000])
    b = LinearProbe(n_threads=1).fit(X16[:1000], names[:1000])
    np.testing.assert_array_equal(a.predict(mm[1000:]), b.predict(X16[1000:]))
    assert a.classes_.tolist() == ["ADJ", "NOUN", "VERB"]
    proba = a.predict_proba(mm[1000:])
    assert proba.shape == (200, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a.classes_[proba.argmax(1)], a.predict(mm[1000:]))
    assert a.score(mm[1000:], names[1000:]) > 0.9


def test_unseen_test_labels_count_as_wrong():
    X, y = _teacher_problem(600, 8, 3, seed=4)
    probe = LinearProbe(n_threads=1).fit(X[:400], y[:400])
    pred = probe.predict(X[400:])
    assert set(pred.tolist()) <= {0, 1, 2}
    y_test = y[400:].copy()
    y_test[:50] = 7  # a class the probe never saw
    expect = np.mean(pred[50:] == y_test[50:]) * 150 / 200
    assert probe.score(X[400:], y_test) == pytest.approx(expect)


def test_probe_errors_and_params():
    X, y = _teacher_problem(100, 4, 2, seed=5)
    with pytest.raises(ProbeError):
        LinearProbe().predict(X)
    with pytest.raises(ProbeError):
        LinearProbe().fit(X, np.zeros(100))  # one class
    with pytest.raises(ProbeError):
        LinearProbe().fit(X, y[:50])
    with pytest.raises(ProbeError):
        LinearProbe(C=0).fit(X, y)
    probe = LinearProbe(C=2.0, max_iter=5).fit(X, y)
    assert probe.n_iter_ <= 5
    with pytest.raises(ProbeError):
        probe.predict(X[:, :3])
    assert probe.get_params()["C"] == 2.0 and probe.set_params(C=3.0).C == 3.0
    # deterministic
    np.testing.assert_array_equal(LinearProbe().fit(X, y).coef_, LinearProbe().fit(X, y).coef_)


# --------------------------------------------------------------------------- control task


def _tokens(seed: int, n: int = 4000, n_types: int = 500):
    rng = np.random.default_rng(seed)
    types = np.array([f"w{i}" for i in rng.zipf(1.3, n) % n_types])
    labels = rng.choice(["NOUN", "VERB", "DET", "ADJ"], n, p=[0.4, 0.3, 0.2, 0.1])
    return types, labels


def test_control_task_is_type_consistent_and_deterministic():
    types, labels = _tokens(0)
    ct = ControlTask(seed=7).fit(types, labels)
    ctl = ct.transform(types)
    assert ctl.shape == types.shape
    for t in set(types.tolist()):
        assert len(set(ctl[types == t].tolist())) == 1
        assert ct.type_to_label_[t] == ctl[types == t][0]
    # same seed, different token order / different split -> same map
    perm = np.random.default_rng(1).permutation(len(types))
    ct2 = ControlTask(seed=7).fit(types[perm], labels[perm])
    assert ct2.type_to_label_ == ct.type_to_label_
    np.testing.assert_array_equal(control_labels(types, labels, seed=7), ctl)
    # a test split: seen types keep their label; unseen types get a reproducible draw
    test_types = np.array(["w1", "w2", "never-seen", "w1", "also-new"])
    out = ct.transform(test_types)
    assert out[0] == ct.type_to_label_["w1"] == out[3]
    assert out[2] == ct.transform(["never-seen"])[0] == ct2.transform(["never-seen"])[0]
    assert set(out.tolist()) <= {"NOUN", "VERB", "DET", "ADJ"}
    # another seed gives another map
    other = ControlTask(seed=8).fit(types, labels).type_to_label_
    assert sum(other[t] != ct.type_to_label_[t] for t in other) > 0.3 * len(other)


def test_control_labels_follow_the_empirical_distribution():
    types = np.array([f"type{i}" for i in range(20000)])
    labels = np.random.default_rng(3).choice([0, 1, 2], len(types), p=[0.6, 0.3, 0.1])
    ctl = control_labels(types, labels, seed=0)
    freq = np.bincount(ctl, minlength=3) / len(ctl)
    emp = np.bincount(labels, minlength=3) / len(labels)
    np.testing.assert_allclose(freq, emp, atol=0.015)
    assert ctl.dtype == labels.dtype


# --------------------------------------------------------------------------- evaluate


def test_evaluate_matches_sklearn_and_brackets_estimates():
    rng = np.random.default_rng(4)
    lengths = rng.integers(3, 20, 150)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    n = int(offsets[-1])
    tags = np.array(["NOUN", "VERB", "DET", "ADJ", "X"])
    y_true = tags[rng.integers(0, 4, n)]  # "X" never in y_true ...
    y_pred = np.where(rng.random(n) < 0.8, y_true, tags[rng.integers(0, 5, n)])  # ... but predicted
    r = evaluate(y_true, y_pred, offsets, n_boot=300, seed=1)
    assert set(r) == {"accuracy", "accuracy_ci", "macro_f1", "macro_f1_ci", "n_words", "n_sentences"}
    assert r["accuracy"] == pytest.approx(np.mean(y_true == y_pred))
    assert r["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert r["accuracy_ci"][0] <= r["accuracy"] <= r["accuracy_ci"][1]
    assert r["macro_f1_ci"][0] <= r["macro_f1"] <= r["macro_f1_ci"][1]
    assert r["n_words"] == n and r["n_sentences"] == 150
    assert evaluate(y_true, y_pred, offsets, n_boot=300, seed=1) == r
    with pytest.raises(ProbeError):
        evaluate(y_true, y_pred[:-1], offsets)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inputs_are_not_modified(dtype):
    X, y = _teacher_problem(300, 6, 3, seed=6)
    X = X.astype(dtype)
    X0 = X.copy()
    probe = LinearProbe(n_threads=1).fit(X, y)
    probe.predict_proba(X)
    np.testing.assert_array_equal(X, X0)
    # and refitting on the same array gives the same model
    np.testing.assert_array_equal(LinearProbe(n_threads=1).fit(X, y).coef_, probe.coef_)
