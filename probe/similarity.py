"""Representation similarity: linear CKA and cross-lingual sentence retrieval.

Everything here streams over row chunks, so inputs may be (float16) memory-mapped
arrays of shape ``[n, d]`` with ``n`` in the hundreds of thousands: no ``n x n``
matrix is ever built (the brute-force :func:`linear_cka_gram` excepted, which
exists only as a reference for tests and benchmarks).

Linear CKA (Kornblith et al. 2019) in feature space
----------------------------------------------------
For ``X: [n, d1]`` and ``Y: [n, d2]`` with row ``i`` of both describing the same
item, let ``K = X X^T`` and ``L = Y Y^T`` (never formed) and

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L)).

*Biased* HSIC is ``tr(K H L H) / (n-1)^2`` with the centering matrix ``H``; in
feature space that is ``||Xc^T Yc||_F^2 / (n-1)^2`` with column-centred ``Xc, Yc``.

*Debiased* HSIC is the unbiased U-statistic of Song et al. (2012) on the
uncentred Grams with zeroed diagonals ``K~ = K - diag(K)``, ``L~ = L - diag(L)``:

    HSIC_u = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).

With ``r_i = ||x_i||^2``, ``s_i = ||y_i||^2`` (the Gram diagonals) and the column
sums ``a = X^T 1``, ``b = Y^T 1`` every term is a feature-space quantity:

    tr(K~ L~)  = ||X^T Y||_F^2 - r.s
    1'K~1      = ||a||^2 - sum(r)          1'L~1 = ||b||^2 - sum(s)
    1'K~L~1    = (X a - r).(Y b - s)
               = a' (X^T Y) b - b.(Y^T r) - a.(X^T s) + r.s

so one pass over the rows accumulating ``X^T Y``, ``X^T X``, ``Y^T Y``, the column
sums and the ``r``/``s`` moments costs ``O(n d1 d2)`` time and ``O(d1 d2)`` memory.

HSIC_u is exactly invariant to translating ``X`` or ``Y`` (for the linear kernel
it only depends on differences of rows), and the biased form centres explicitly,
so the accumulators subtract a per-array *shift* (the mean of the first chunk
seen) before accumulating in float64.  This keeps the sums small when hidden
states carry a large common offset, without a second pass over the data.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((500, 8)); Q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
>>> round(linear_cka(X, 3 * X @ Q), 6)   # invariant to rotation and isotropic scaling
1.0
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from .errors import ProbeError

__all__ = [
    "linear_cka",
    "linear_cka_gram",
    "FeatureCKA",
    "cka_matrix",
    "retrieval_accuracy",
    "retrieval_hits",
    "cka_jackknife",
]


# --------------------------------------------------------------------------- helpers


def as_2d(X, name: str = "X") -> np.ndarray:
    """``X`` as a 2-D numeric array without copying memmaps (no dtype conversion)."""
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ProbeError(f"{name} must be a 2-D array [n, d], got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ProbeError(f"{name} must be numeric, got dtype {X.dtype}")
    return X


def _row_chunks(n: int, chunk_size: int) -> Iterator[tuple[int, int]]:
    if chunk_size < 1:
        raise ProbeError(f"chunk_size must be >= 1, got {chunk_size}")
    for start in range(0, n, chunk_size):
        yield start, min(start + chunk_size, n)


def _to_f64(chunk: np.ndarray, name: str) -> np.ndarray:
    out = np.array(chunk, dtype=np.float64)  # always a copy: callers modify it in place
    if not np.isfinite(out).all():
        raise ProbeError(f"{name} contains NaN or infinite values")
    return out


class _SelfStats:
    """Per-array running sums (after subtracting a fixed shift) for CKA.

    Holds, for shifted rows ``x_i``: ``n``, column sums ``a: [d]``, ``G = X^T X: [d, d]``,
    ``sum r``, ``sum r^2`` and ``X^T r: [d]`` where ``r_i = ||x_i||^2``.
    """

    def __init__(self, d: int):
        self.d = d
        self.shift: np.ndarray | None = None
        self.n = 0
        self.colsum = np.zeros(d)
        self.gram = np.zeros((d, d))
        self.sum_r = 0.0
        self.sum_r2 = 0.0
        self.xt_r = np.zeros(d)

    def prepare(self, chunk: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Shifted float64 copy of ``chunk`` and its squared row norms."""
        x = _to_f64(chunk, name)
        if x.shape[1] != self.d:
            raise ProbeError(f"{name} has {x.shape[1]} columns, expected {self.d}")
        if self.shift is None and len(x):
            self.shift = x.mean(axis=0)
        if self.shift is not None:
            x -= self.shift
        return x, np.einsum("ij,ij->i", x, x)

    def update(self, x: np.ndarray, r: np.ndarray) -> None:
        self.n += len(x)
        self.colsum += x.sum(axis=0)
        self.gram += x.T @ x
        self.sum_r += float(r.sum())
        self.sum_r2 += float(r @ r)
        self.xt_r += x.T @ r


class _CrossStats:
    """Pair running sums: ``X^T Y``, ``X^T s``, ``Y^T r`` and ``r.s``."""

    def __init__(self, d1: int, d2: int):
        self.xty = np.zeros((d1, d2))
        self.xt_s = np.zeros(d1)
        self.yt_r = np.zeros(d2)
        self.rs = 0.0

    def update(self, x: np.ndarray, r: np.ndarray, y: np.ndarray, s: np.ndarray) -> None:
        self.xty += x.T @ y
        self.xt_s += x.T @ s
        self.yt_r += y.T @ r
        self.rs += float(r @ s)


def _self_as_cross(st: _SelfStats) -> _CrossStats:
    c = _CrossStats(st.d, st.d)
    c.xty, c.xt_s, c.yt_r, c.rs = st.gram, st.xt_r, st.xt_r, st.sum_r2
    return c


def _hsic(sx: _SelfStats, sy: _SelfStats, c: _CrossStats, debiased: bool) -> float:
    """HSIC from the sums (unnormalised: the common ``1/(n-1)^2`` or ``1/(n(n-3))``
    factor is dropped because it cancels in CKA)."""
    n = sx.n
    a, b = sx.colsum, sy.colsum
    if not debiased:
        cov = c.xty - np.outer(a, b) / n
        return float(np.sum(cov * cov))
    tr_kl = float(np.sum(c.xty * c.xty)) - c.rs
    k1 = float(a @ a) - sx.sum_r
    l1 = float(b @ b) - sy.sum_r
    kl1 = float(a @ c.xty @ b) - float(b @ c.yt_r) - float(a @ c.xt_s) + c.rs
    return tr_kl + k1 * l1 / ((n - 1) * (n - 2)) - 2.0 * kl1 / (n - 2)


def _cka_from_stats(
    sx: _SelfStats, sy: _SelfStats, cross: _CrossStats, hxx: float, hyy: float, debiased: bool
) -> float:
    hxy = _hsic(sx, sy, cross, debiased)
    denom = hxx * hyy
    if not denom > 0:  # a constant representation, or a negative debiased self-HSIC
        return float("nan")
    return float(hxy / np.sqrt(denom))


def _check_n(n: int, debiased: bool) -> None:
    need = 4 if debiased else 2
    if n < need:
        raise ProbeError(f"{'debiased' if debiased else 'biased'} CKA needs at least {need} rows, got {n}")


# --------------------------------------------------------------------------- CKA


class FeatureCKA:
    """Streaming linear CKA: feed aligned row chunks, read the CKA at any time.

    ``update(X_chunk: [m, d1], Y_chunk: [m, d2])`` accumulates float64 sums
    (``X^T Y``, ``X^T X``, ``Y^T Y``, column sums, row-norm moments: ``O(d1 d2 +
    d1^2 + d2^2)`` memory); ``result()`` returns the CKA of all rows seen so far.
    Chunks may be float16 or memory-mapped; they are converted to float64 one at a
    time.  Row order does not matter, only that row ``i`` of both chunks is aligned.

    Parameters
    ----------
    debiased : bool
        Unbiased HSIC estimator of Song et al. (2012) (default) instead of the
        biased ``tr(KHLH)`` of Kornblith et al. (2019).

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((1000, 16)); Y = X @ rng.standard_normal((16, 4))
    >>> acc = FeatureCKA(debiased=False)
    >>> for i in range(0, 1000, 300):
    ...     _ = acc.update(X[i:i + 300], Y[i:i + 300])
    >>> bool(abs(acc.result() - linear_cka(X, Y, debiased=False)) < 1e-12)
    True
    """

    def __init__(self, debiased: bool = True):
        self.debiased = debiased
        self._sx: _SelfStats | None = None
        self._sy: _SelfStats | None = None
        self._cross: _CrossStats | None = None

    @property
    def n_seen(self) -> int:
        """Number of rows accumulated so far."""
        return 0 if self._sx is None else self._sx.n

    def update(self, X_chunk, Y_chunk) -> "FeatureCKA":
        """Accumulate aligned chunks ``X_chunk: [m, d1]`` and ``Y_chunk: [m, d2]``."""
        X_chunk = as_2d(X_chunk, "X")
        Y_chunk = as_2d(Y_chunk, "Y")
        if len(X_chunk) != len(Y_chunk):
            raise ProbeError(f"X and Y chunks must have the same number of rows, got {len(X_chunk)} and {len(Y_chunk)}")
        if self._sx is None:
            self._sx = _SelfStats(X_chunk.shape[1])
            self._sy = _SelfStats(Y_chunk.shape[1])
            self._cross = _CrossStats(X_chunk.shape[1], Y_chunk.shape[1])
        x, r = self._sx.prepare(X_chunk, "X")
        y, s = self._sy.prepare(Y_chunk, "Y")
        self._sx.update(x, r)
        self._sy.update(y, s)
        self._cross.update(x, r, y, s)
        return self

    def result(self) -> float:
        """CKA of all rows seen so far (``nan`` if a side is constant)."""
        if self._sx is None:
            raise ProbeError("FeatureCKA.result() called before any update()")
        _check_n(self._sx.n, self.debiased)
        hxx = _hsic(self._sx, self._sx, _self_as_cross(self._sx), self.debiased)
        hyy = _hsic(self._sy, self._sy, _self_as_cross(self._sy), self.debiased)
        return _cka_from_stats(self._sx, self._sy, self._cross, hxx, hyy, self.debiased)


def linear_cka(X, Y, *, debiased: bool = True, chunk_size: int = 8192) -> float:
    """Linear CKA between ``X: [n, d1]`` and ``Y: [n, d2]`` (rows aligned).

    Computed in feature space from ``d1 x d2`` cross-covariances, streaming over
    ``chunk_size`` rows at a time (float16 memmaps welcome; sums in float64).
    ``debiased=True`` uses the unbiased HSIC of Song et al. (2012) (needs
    ``n >= 4``), ``False`` the biased HSIC of Kornblith et al. (2019).  Returns
    ``nan`` when a side is constant (or, debiased, its self-HSIC estimate is <= 0).

    >>> import numpy as np
    >>> np.random.seed(1337)
    >>> X = np.random.randn(100, 10); Y = np.random.randn(100, 10) + X
    >>> round(linear_cka(X, Y, debiased=False), 5), round(linear_cka(X, Y), 5)
    (0.55761, 0.51346)
    """
    X = as_2d(X, "X")
    Y = as_2d(Y, "Y")
    if len(X) != len(Y):
        raise ProbeError(f"X and Y must have the same number of rows, got {len(X)} and {len(Y)}")
    _check_n(len(X), debiased)
    acc = FeatureCKA(debiased=debiased)
    for start, stop in _row_chunks(len(X), chunk_size):
        acc.update(X[start:stop], Y[start:stop])
    return acc.result()


def cka_matrix(
    layers_a: Sequence,
    layers_b: Sequence | None = None,
    *,
    debiased: bool = True,
    chunk_size: int = 2048,
) -> np.ndarray:
    """Layer x layer linear CKA: ``out[i, j] = CKA(layers_a[i], layers_b[j])``.

    ``layers_a``: list of ``La`` arrays ``[n, d_i]``; ``layers_b``: list of ``Lb``
    arrays ``[n, d_j]`` with the same ``n`` aligned rows (e.g. two languages'
    representations of aligned words).  Returns ``[La, Lb]`` float64.

    One pass over the rows: each layer's self-terms (``X^T X`` etc.) are
    accumulated once and reused for every pair.  When ``layers_b`` is ``None`` or
    holds the very same array objects as ``layers_a``, only the upper triangle is
    computed and the result is exactly symmetric.  Peak extra memory is about
    ``(La + Lb) * chunk_size * d * 8`` bytes (the float64 chunks of every layer)
    plus ``O(La * Lb * d^2)`` for the accumulators.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> layers = [rng.standard_normal((200, 6)) for _ in range(3)]
    >>> M = cka_matrix(layers)
    >>> M.shape, bool(np.allclose(np.diag(M), 1.0)), bool((M == M.T).all())
    ((3, 3), True, True)
    """
    layers_a = [as_2d(X, f"layers_a[{i}]") for i, X in enumerate(layers_a)]
    symmetric = layers_b is None or (
        len(layers_b) == len(layers_a) and all(p is q for p, q in zip(layers_a, layers_b))
    )
    layers_b = layers_a if symmetric else [as_2d(Y, f"layers_b[{j}]") for j, Y in enumerate(layers_b)]
    if not layers_a or not layers_b:
        raise ProbeError("cka_matrix needs at least one layer on each side")
    n = len(layers_a[0])
    for name, layers in (("layers_a", layers_a), ("layers_b", layers_b)):
        for i, X in enumerate(layers):
            if len(X) != n:
                raise ProbeError(f"{name}[{i}] has {len(X)} rows, expected {n} (rows must be aligned)")
    _check_n(n, debiased)

    La, Lb = len(layers_a), len(layers_b)
    self_a = [_SelfStats(X.shape[1]) for X in layers_a]
    self_b = self_a if symmetric else [_SelfStats(Y.shape[1]) for Y in layers_b]
    pairs = [(i, j) for i in range(La) for j in range(Lb) if not symmetric or j > i]
    cross = {(i, j): _CrossStats(layers_a[i].shape[1], layers_b[j].shape[1]) for i, j in pairs}

    for start, stop in _row_chunks(n, chunk_size):
        xs = []
        for i, X in enumerate(layers_a):
            x, r = self_a[i].prepare(X[start:stop], f"layers_a[{i}]")
            self_a[i].update(x, r)
            xs.append((x, r))
        if symmetric:
            ys = xs
        else:
            ys = []
            for j, Y in enumerate(layers_b):
                y, s = self_b[j].prepare(Y[start:stop], f"layers_b[{j}]")
                self_b[j].update(y, s)
                ys.append((y, s))
        for i, j in pairs:
            cross[i, j].update(*xs[i], *ys[j])

    h_a = [_hsic(s, s, _self_as_cross(s), debiased) for s in self_a]
    h_b = h_a if symmetric else [_hsic(s, s, _self_as_cross(s), debiased) for s in self_b]
    out = np.empty((La, Lb))
    if symmetric:
        for i in range(La):
            out[i, i] = 1.0 if h_a[i] > 0 else np.nan
    for i, j in pairs:
        out[i, j] = _cka_from_stats(self_a[i], self_b[j], cross[i, j], h_a[i], h_b[j], debiased)
        if symmetric:
            out[j, i] = out[i, j]
    return out


def linear_cka_gram(X, Y, debiased: bool = True) -> float:
    """Brute-force linear CKA through ``n x n`` Gram matrices.

    **Reference implementation for tests and benchmarks only**: it builds
    ``K = X X^T`` and ``L = Y Y^T`` in float64 (``O(n^2)`` memory), so use
    :func:`linear_cka` for real data.  Biased: ``HSIC = <HKH, HLH>_F``.
    Debiased: Song et al.'s (2012) U-statistic on the zero-diagonal Grams,
    written out literally.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((50, 4))
    >>> round(linear_cka_gram(X, 2 * X, debiased=False), 12)
    1.0
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ProbeError("X and Y must be 2-D with the same number of rows")
    n = len(X)
    _check_n(n, debiased)
    K, L = X @ X.T, Y @ Y.T

    def hsic(K, L):
        if not debiased:
            H = np.eye(n) - 1.0 / n
            return float(np.sum((H @ K @ H) * (H @ L @ H))) / (n - 1) ** 2
        Kt = K - np.diag(np.diag(K))
        Lt = L - np.diag(np.diag(L))
        one = np.ones(n)
        term1 = np.trace(Kt @ Lt)
        term2 = (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
        term3 = 2.0 / (n - 2) * (one @ Kt @ Lt @ one)
        return float((term1 + term2 - term3) / (n * (n - 3)))

    hxx, hyy = hsic(K, K), hsic(L, L)
    if not hxx * hyy > 0:
        return float("nan")
    return hsic(K, L) / float(np.sqrt(hxx * hyy))


# --------------------------------------------------------------------------- retrieval


def _mean_rows(X: np.ndarray, chunk_size: int, name: str) -> np.ndarray:
    total = np.zeros(X.shape[1])
    for start, stop in _row_chunks(len(X), chunk_size):
        total += _to_f64(X[start:stop], name).sum(axis=0)
    return total / max(len(X), 1)


def _unit_rows(X: np.ndarray, mean: np.ndarray | None, chunk_size: int, name: str) -> np.ndarray:
    """Row-normalised float64 copy of ``X`` (optionally minus ``mean``); zero rows stay zero."""
    out = np.empty(X.shape, dtype=np.float64)
    for start, stop in _row_chunks(len(X), chunk_size):
        x = _to_f64(X[start:stop], name)
        if mean is not None:
            x -= mean
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        np.divide(x, norms, out=x, where=norms > 0)
        x[(norms == 0).ravel()] = 0.0
        out[start:stop] = x
    return out


def _top1_hits(Q: np.ndarray, D: np.ndarray, chunk_size: int) -> np.ndarray:
    """``[n]`` bool: whether query row ``i`` has its most similar ``D`` row at index ``i``."""
    hits = np.zeros(len(Q), dtype=bool)
    for start, stop in _row_chunks(len(Q), chunk_size):
        sims = Q[start:stop] @ D.T  # [chunk, n]
        best = np.argmax(sims, axis=1)  # first index on ties
        hits[start:stop] = best == np.arange(start, stop)
    return hits


def retrieval_hits(A, B, *, center: bool = False, chunk_size: int = 1024) -> dict:
    """Per-sentence outcome of :func:`retrieval_accuracy`: ``{"a2b": [n] bool, "b2a": [n] bool}``.

    Row ``i`` of ``a2b`` says whether ``A[i]`` retrieved ``B[i]``; these per-sentence hits
    are what paired bootstraps (two layers, two models, clean vs perturbed) resample.
    """
    A = as_2d(A, "A")
    B = as_2d(B, "B")
    if A.shape != B.shape:
        raise ProbeError(f"A and B must have the same shape, got {A.shape} and {B.shape}")
    if len(A) == 0:
        raise ProbeError("retrieval needs at least one row")
    mean_a = _mean_rows(A, chunk_size, "A") if center else None
    mean_b = _mean_rows(B, chunk_size, "B") if center else None
    Au = _unit_rows(A, mean_a, chunk_size, "A")
    Bu = _unit_rows(B, mean_b, chunk_size, "B")
    return {"a2b": _top1_hits(Au, Bu, chunk_size), "b2a": _top1_hits(Bu, Au, chunk_size)}


def retrieval_accuracy(A, B, *, center: bool = False, chunk_size: int = 1024) -> dict:
    """Cross-lingual sentence retrieval accuracy@1 by cosine similarity.

    ``A: [n, d]``, ``B: [n, d]``: row ``i`` of ``A`` translates row ``i`` of ``B``.
    For every row of ``A`` the most cosine-similar row of ``B`` is retrieved
    (``a2b``), and vice versa (``b2a``); accuracy is the fraction retrieving the
    aligned row.  ``center=True`` first subtracts each side's own mean vector
    (per-language mean-centering, Libovicky et al. 2020).

    Ties are broken deterministically: the candidate with the lowest index wins
    (``argmax`` semantics), so a tie counts as correct only if the aligned row is
    the first of the tied ones.  Zero vectors have similarity 0 to everything.

    Similarities are computed in float64 for ``chunk_size`` queries at a time
    (``chunk_size x n`` block), so ``n = 10k`` needs about 80 MB for the block
    plus the two normalised ``[n, d]`` float64 copies.

    Returns ``{"a2b": float, "b2a": float, "mean": float, "n": int}``.

    >>> import numpy as np
    >>> A = np.random.default_rng(0).standard_normal((100, 16))
    >>> retrieval_accuracy(A, A + 0.01)["a2b"]
    1.0
    """
    hits = retrieval_hits(A, B, center=center, chunk_size=chunk_size)
    n = len(hits["a2b"])
    a2b = int(hits["a2b"].sum()) / n
    b2a = int(hits["b2a"].sum()) / n
    return {"a2b": a2b, "b2a": b2a, "mean": (a2b + b2a) / 2, "n": n}


def cka_jackknife(A, B, *, n_groups: int = 20, seed: int = 0, debiased: bool = True) -> np.ndarray:
    """Delete-a-group jackknife replicates ``[n_groups]`` of :func:`linear_cka` ``(A, B)``.

    Rows (sentences) are split into ``n_groups`` seeded random groups; replicate ``g`` is the
    CKA of all rows outside group ``g``. Unlike a bootstrap, no row is ever duplicated, which
    the debiased estimator requires. With the same ``seed`` and row count the groups are the
    same, so replicates of two layers (or two models on the same sentences) pair up: the
    standard error of a difference ``d`` is ``sqrt((g - 1) / g * sum((d_g - mean(d))^2))``.

    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((200, 8))
    >>> r = cka_jackknife(X, X @ np.linalg.qr(np.random.default_rng(1).standard_normal((8, 8)))[0])
    >>> r.shape, bool(np.allclose(r, 1.0))
    ((20,), True)
    """
    A = as_2d(A, "A")
    B = as_2d(B, "B")
    n = len(A)
    if len(B) != n:
        raise ProbeError(f"A and B need the same number of rows, got {n} and {len(B)}")
    if not 2 <= n_groups <= n:
        raise ProbeError(f"n_groups must be between 2 and the number of rows ({n}), got {n_groups}")
    group = np.random.default_rng(seed).permutation(n) % n_groups
    return np.asarray([linear_cka(A[group != g], B[group != g], debiased=debiased) for g in range(n_groups)])
