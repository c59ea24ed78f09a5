"""Linear CKA (feature space vs brute-force Gram) and cross-lingual retrieval."""
from __future__ import annotations

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.similarity import FeatureCKA, cka_matrix, linear_cka, linear_cka_gram, retrieval_accuracy


def _orthogonal(d: int, rng) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.sign(np.diag(R))


@pytest.fixture
def kornblith_xy():
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


# --------------------------------------------------------------------------- CKA


def test_kornblith_reference_values(kornblith_xy):
    X, Y = kornblith_xy
    assert linear_cka(X, Y, debiased=False) == pytest.approx(0.55761, abs=5e-6)
    assert linear_cka(X, Y, debiased=True) == pytest.approx(0.51346, abs=5e-6)
    assert linear_cka_gram(X, Y, debiased=False) == pytest.approx(0.55761, abs=5e-6)
    assert linear_cka_gram(X, Y, debiased=True) == pytest.approx(0.51346, abs=5e-6)


@pytest.mark.parametrize("debiased", [False, True])
def test_self_similarity_is_one(kornblith_xy, debiased):
    X, _ = kornblith_xy
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_invariances(kornblith_xy, debiased):
    X, Y = kornblith_xy
    rng = np.random.default_rng(0)
    base = linear_cka(X, Y, debiased=debiased)
    Q = _orthogonal(X.shape[1], rng)
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(X, Y @ _orthogonal(Y.shape[1], rng), debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(7.5 * X, 0.01 * Y, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert linear_cka(X + 50.0, Y - 3.0, debiased=debiased) == pytest.approx(base, abs=1e-9)
    # a general invertible (far from orthogonal) map does change CKA
    A = Q @ np.diag(np.geomspace(0.05, 20, X.shape[1])) @ _orthogonal(X.shape[1], rng)
    assert abs(np.linalg.det(A)) > 1e-6
    assert abs(linear_cka(X @ A, Y, debiased=debiased) - base) > 1e-2


@pytest.mark.parametrize("n,d1,d2,chunk", [(20, 3, 7, 1), (101, 10, 10, 7), (64, 50, 5, 1000), (257, 16, 40, 64)])
@pytest.mark.parametrize("debiased", [False, True])
def test_matches_brute_force_gram(n, d1, d2, chunk, debiased):
    rng = np.random.default_rng(n * 1000 + d1 + d2)
    X = rng.standard_normal((n, d1)) * rng.exponential(1.0, d1) + rng.standard_normal(d1) * 2
    Y = X[:, :1] * rng.standard_normal((1, d2)) + rng.standard_normal((n, d2))
    expect = linear_cka_gram(X, Y, debiased=debiased)
    assert linear_cka(X, Y, debiased=debiased, chunk_size=chunk) == pytest.approx(expect, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_float16_memmap_input(tmp_path, debiased):
    rng = np.random.default_rng(3)
    n, d1, d2 = 300, 24, 12
    X = (rng.standard_normal((n, d1)) + 4).astype(np.float16)
    Y = (X[:, :d2].astype(np.float64) + rng.standard_normal((n, d2))).astype(np.float16)
    mx = np.memmap(tmp_path / "x.f16", dtype=np.float16, mode="w+", shape=X.shape)
    my = np.memmap(tmp_path / "y.f16", dtype=np.float16, mode="w+", shape=Y.shape)
    mx[:], my[:] = X, Y
    mx.flush(), my.flush()
    mx = np.memmap(tmp_path / "x.f16", dtype=np.float16, mode="r", shape=X.shape)
    my = np.memmap(tmp_path / "y.f16", dtype=np.float16, mode="r", shape=Y.shape)
    got = linear_cka(mx, my, debiased=debiased, chunk_size=37)
    expect = linear_cka_gram(X.astype(np.float64), Y.astype(np.float64), debiased=debiased)
    assert got == pytest.approx(expect, abs=1e-10)
    assert 0.3 < got < 1.0


def test_streaming_accumulator_matches_one_shot(kornblith_xy):
    X, Y = kornblith_xy
    acc = FeatureCKA(debiased=True)
    with pytest.raises(ProbeError):
        acc.result()
    for start in (0, 13, 50, 99):
        stop = {0: 13, 13: 50, 50: 99, 99: 100}[start]
        assert acc.update(X[start:stop], Y[start:stop]) is acc
    assert acc.n_seen == 100
    assert acc.result() == pytest.approx(linear_cka(X, Y), abs=1e-12)


def test_cka_matrix_shape_values_and_symmetry():
    rng = np.random.default_rng(5)
    n = 150
    base = rng.standard_normal((n, 8))
    layers_a = [base @ rng.standard_normal((8, d)) + rng.standard_normal((n, d)) * s for d, s in [(6, 0.1), (10, 1.0), (4, 3.0)]]
    layers_b = [base @ rng.standard_normal((8, 5)) + 0.5 * rng.standard_normal((n, 5)), rng.standard_normal((n, 9))]
    for debiased in (False, True):
        M = cka_matrix(layers_a, layers_b, debiased=debiased, chunk_size=40)
        assert M.shape == (3, 2)
        for i, X in enumerate(layers_a):
            for j, Y in enumerate(layers_b):
                assert M[i, j] == pytest.approx(linear_cka(X, Y, debiased=debiased), abs=1e-10)
        S = cka_matrix(layers_a, layers_a, debiased=debiased, chunk_size=40)
        assert S.shape == (3, 3)
        np.testing.assert_array_equal(S, S.T)
        np.testing.assert_allclose(np.diag(S), 1.0)
        np.testing.assert_allclose(cka_matrix(layers_a, debiased=debiased, chunk_size=40), S, rtol=0, atol=1e-14)
        # equal but distinct array objects take the general path: symmetric up to rounding
        np.testing.assert_allclose(cka_matrix(layers_a, [a.copy() for a in layers_a], debiased=debiased), S, atol=1e-10)


def test_cka_input_errors():
    X = np.zeros((10, 3))
    with pytest.raises(ProbeError):
        linear_cka(X, np.zeros((9, 3)))
    with pytest.raises(ProbeError):
        linear_cka(np.zeros(10), X)
    with pytest.raises(ProbeError):
        linear_cka(X[:3], X[:3], debiased=True)
    with pytest.raises(ProbeError):
        cka_matrix([X], [np.zeros((9, 3))])
    bad = np.ones((10, 3))
    bad[4, 1] = np.nan
    with pytest.raises(ProbeError):
        linear_cka(bad, X)
    assert np.isnan(linear_cka(np.ones((10, 3)), np.random.default_rng(0).standard_normal((10, 2)), debiased=False))


# --------------------------------------------------------------------------- retrieval


def test_retrieval_identical_sides():
    A = np.random.default_rng(0).standard_normal((300, 32))
    r = retrieval_accuracy(A, A.copy())
    assert r["a2b"] == 1.0 and r["b2a"] == 1.0 and r["mean"] == 1.0 and r["n"] == 300


def test_retrieval_unrelated_sides_is_at_chance():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((1000, 64))
    B = rng.standard_normal((1000, 64))[rng.permutation(1000)]
    r = retrieval_accuracy(A, B, chunk_size=128)
    assert r["a2b"] < 0.02 and r["b2a"] < 0.02


def test_retrieval_centering_removes_language_offsets():
    rng = np.random.default_rng(2)
    n, d = 500, 32
    meaning = rng.standard_normal((n, d))
    # each language adds its own large constant vector: uncentred, every cosine is
    # dominated by the two offsets (hubness; accuracy near 0), centred it is the meaning
    A = meaning + 0.3 * rng.standard_normal((n, d)) + 15.0 * rng.standard_normal(d)
    B = meaning + 0.3 * rng.standard_normal((n, d)) + 15.0 * rng.standard_normal(d)
    raw = retrieval_accuracy(A, B)
    centred = retrieval_accuracy(A, B, center=True)
    assert centred["a2b"] > 0.95 and centred["b2a"] > 0.95
    assert raw["a2b"] < 0.5 and raw["b2a"] < 0.5
    # centring an already-centred pair changes nothing
    Ac, Bc = A - A.mean(0), B - B.mean(0)
    assert retrieval_accuracy(Ac, Bc) == pytest.approx(centred)


def test_retrieval_ties_go_to_first_index_and_chunking_is_invisible():
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    # rows 0 and 1 are identical: both queries retrieve index 0 -> row 1 counts as wrong
    r = retrieval_accuracy(v, v.copy())
    assert r["a2b"] == pytest.approx(2 / 3) and r["b2a"] == pytest.approx(2 / 3)
    rng = np.random.default_rng(4)
    A = rng.standard_normal((77, 8))
    B = A + rng.standard_normal((77, 8))
    assert retrieval_accuracy(A, B, chunk_size=5) == retrieval_accuracy(A, B)


def test_retrieval_float16_memmap(tmp_path):
    rng = np.random.default_rng(6)
    A = rng.standard_normal((200, 16)).astype(np.float16)
    mm = np.memmap(tmp_path / "a.f16", dtype=np.float16, mode="w+", shape=A.shape)
    mm[:] = A
    mm.flush()
    r = retrieval_accuracy(np.memmap(tmp_path / "a.f16", dtype=np.float16, mode="r", shape=A.shape), A, chunk_size=64)
    assert r["a2b"] == 1.0 and r["b2a"] == 1.0
    with pytest.raises(ProbeError):
        retrieval_accuracy(A, A[:10])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inputs_are_not_modified(dtype):
    rng = np.random.default_rng(7)
    X = (rng.standard_normal((40, 5)) + 3).astype(dtype)
    Y = (rng.standard_normal((40, 4)) - 2).astype(dtype)
    X0, Y0 = X.copy(), Y.copy()
    linear_cka(X, Y, chunk_size=9)
    linear_cka(X, Y, debiased=False)
    cka_matrix([X], [Y])
    retrieval_accuracy(X, X, center=True)
    retrieval_accuracy(Y, Y)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
