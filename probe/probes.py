"""Linear probes, control tasks and their evaluation.

:class:`LinearProbe` is an L2-regularised multinomial logistic regression
(softmax linear classifier) fitted by full-batch L-BFGS in torch on the CPU.
:class:`ControlTask` builds Hewitt & Liang's (2019) control labels.
:func:`evaluate` reports accuracy and macro-F1 with sentence-bootstrap CIs.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.standard_normal((600, 5)); y = np.where(X[:, 0] > 0, "NOUN", "VERB")
>>> probe = LinearProbe().fit(X[:500], y[:500])
>>> probe.classes_.tolist(), bool(probe.score(X[500:], y[500:]) > 0.9)
(['NOUN', 'VERB'], True)
"""
from __future__ import annotations

import hashlib
from typing import Hashable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import stats
from sklearn.base import BaseEstimator, ClassifierMixin

from .errors import ParameterError, ProbeError
from .similarity import as_2d
from .threads import torch_threads

__all__ = ["LinearProbe", "ControlTask", "control_labels", "evaluate"]

_CHUNK = 8192


def _as_labels(y, n: int | None = None, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ProbeError(f"{name} must be 1-D, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ProbeError(f"{name} has {len(y)} entries, expected {n}")
    return y


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic-regression probe, fitted with torch L-BFGS (CPU, float32).

    Objective (``penalty_space="raw"``, the default) is sklearn's
    ``LogisticRegression`` objective on the *raw* features, divided by ``n``::

        mean_i log_loss(x_i @ coef_.T + intercept_, y_i) + ||coef_||_F^2 / (2 C n)

    (same minimiser as sklearn's ``sum log-loss + ||W||^2 / (2C)``; dividing by
    ``n`` makes ``tol`` independent of the data size, as in sklearn's lbfgs
    solver; the intercept is unpenalised).  It is *optimised* in standardised
    coordinates ``z = (x - mean_) / scale_`` (training mean and standard
    deviation; constant features get scale 1) with weights ``V = coef_ * scale_``
    and the penalty written as ``sum V^2 / scale^2``: an exact
    reparametrisation that leaves the optimum unchanged but makes L-BFGS converge
    in far fewer iterations on hidden states, whose dimensions differ in scale by
    orders of magnitude.  On UPOS probes of multilingual-e5-small layers 1, 4, 8
    and 12 (40k English training words, 384-d, 17 tags) test accuracy was within
    0.2 points of ``sklearn.linear_model.LogisticRegression()`` with default
    settings (which stops unconverged at 100 iterations there), using 3-10x less
    CPU time at 2 threads (float32, cheaper iterations and line searches).

    ``penalty_space="standardized"`` instead penalises the standardised weights,
    ``||V||^2 / (2 C n)`` (the usual "StandardScaler + LogisticRegression"
    pipeline).  That is a weaker penalty on low-variance (noisy) dimensions and
    scored 0.4-2.4 points below sklearn's defaults on the same probes.

    The optimiser is ``torch.optim.LBFGS`` (history 10, strong Wolfe line search,
    zero initialisation, full batch), stopping after ``max_iter`` iterations or
    when the largest gradient entry falls below ``tol``.

    Parameters
    ----------
    C : float
        Inverse L2 strength, sklearn's meaning (default 1.0).
    max_iter : int
        L-BFGS iterations (default 100).
    tol : float
        Gradient tolerance (max-abs gradient of the mean objective; default 1e-4).
    seed : int
        Seeds torch's generator during ``fit``; the fit itself (zero start, full
        batch) is deterministic, so this only matters for reproducibility of any
        torch randomness and is kept for a uniform probe signature.
    n_threads : int or None
        torch intra-op threads during ``fit``/``predict`` (``None``: torch's setting).
    penalty_space : {"raw", "standardized"}
        Which weights the L2 penalty applies to (see above; default ``"raw"`` = sklearn).

    Learned attributes
    ------------------
    classes_ : [n_classes]  sorted training labels (any hashable type numpy sorts)
    coef_ : [n_classes, d] float64, weights on *raw* features (``X @ coef_.T + intercept_``)
    intercept_ : [n_classes] float64
    mean_, scale_ : [d] float64, the standardisation
    n_iter_ : int, L-BFGS iterations run
    n_features_in_ : int

    Labels unseen in training can never be predicted (prediction is among
    ``classes_``), so they simply count as errors in :meth:`score`.

    >>> import numpy as np
    >>> X = np.random.default_rng(1).standard_normal((300, 4)).astype(np.float16)
    >>> y = (X[:, 1] > 0).astype(int)
    >>> p = LinearProbe(C=10).fit(X, y)
    >>> p.coef_.shape, p.predict(X[:3]).tolist() == y[:3].tolist()
    ((2, 4), True)
    """

    def __init__(
        self,
        C: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-4,
        seed: int = 0,
        n_threads: int | None = None,
        penalty_space: str = "raw",
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed
        self.n_threads = n_threads
        self.penalty_space = penalty_space

    # ------------------------------------------------------------------ helpers

    def _threads(self):
        return torch_threads(self.n_threads)

    def _check_params(self) -> None:
        """Bad parameters raise :class:`ParameterError` (a ``ValueError``) before any work."""
        def number(name, value, integer=False):
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            if not ok or (integer and float(value) != int(value)):
                raise ParameterError(f"{name} must be {'an integer' if integer else 'a number'}, "
                                     f"got {value!r}")

        number("C", self.C)
        if not self.C > 0:
            raise ParameterError(f"C must be > 0, got {self.C}")
        number("max_iter", self.max_iter, integer=True)
        if int(self.max_iter) < 1:
            raise ParameterError(f"max_iter must be >= 1, got {self.max_iter}")
        number("tol", self.tol)
        if not self.tol >= 0:
            raise ParameterError(f"tol must be >= 0, got {self.tol}")
        if self.penalty_space not in ("raw", "standardized"):
            raise ParameterError(f"penalty_space must be 'raw' or 'standardized', got {self.penalty_space!r}")
        if self.n_threads is not None:
            number("n_threads", self.n_threads, integer=True)
            if int(self.n_threads) < 1:
                raise ParameterError(f"n_threads must be >= 1 or None, got {self.n_threads}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ProbeError("LinearProbe is not fitted yet: call fit(X, y) first")

    def _standardised(self, X: np.ndarray, start: int, stop: int, mean32, scale32) -> torch.Tensor:
        chunk = np.array(X[start:stop], dtype=np.float32)  # a copy: modified in place below
        if not np.isfinite(chunk).all():
            raise ProbeError("X contains NaN or infinite values")
        z = torch.from_numpy(chunk)
        return z.sub_(mean32).div_(scale32)

    # ------------------------------------------------------------------ API

    def fit(self, X, y) -> "LinearProbe":
        """Fit on ``X: [n, d]`` (float16 memmaps fine) and labels ``y: [n]``; returns self.

        ``X`` is read in row chunks (twice: statistics, then standardisation) into
        one standardised float32 copy ``[n, d]`` (``4 n d`` bytes, e.g. 307 MB for
        100k x 768) that the full-batch L-BFGS works on; ``X`` itself is not modified.
        """
        X = as_2d(X)
        y = _as_labels(y, len(X))
        self._check_params()
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ProbeError(f"a probe needs at least 2 classes in the training labels, got {len(classes)}")
        n, d = X.shape

        # mean / std in float64, chunked, shifted by the first chunk's mean for accuracy
        shift = None
        s1 = np.zeros(d)
        s2 = np.zeros(d)
        for start in range(0, n, _CHUNK):
            c = np.array(X[start:start + _CHUNK], dtype=np.float64)  # a copy: shifted in place
            if shift is None:
                shift = c.mean(axis=0)
            c -= shift
            s1 += c.sum(axis=0)
            s2 += np.einsum("ij,ij->j", c, c)
        mean_shifted = s1 / n
        var = np.maximum(s2 / n - mean_shifted**2, 0.0)
        mean = shift + mean_shifted
        scale = np.sqrt(var)
        scale[scale < 1e-12 * max(1.0, float(np.abs(mean).max(initial=0.0)))] = 1.0

        K = len(classes)
        with self._threads():
            mean32 = torch.from_numpy(mean.astype(np.float32))
            scale32 = torch.from_numpy(scale.astype(np.float32))
            Z = torch.empty((n, d), dtype=torch.float32)
            for start in range(0, n, _CHUNK):
                stop = min(start + _CHUNK, n)
                Z[start:stop] = self._standardised(X, start, stop, mean32, scale32)
            target = torch.from_numpy(codes.astype(np.int64).ravel())

            W = torch.zeros((K, d), dtype=torch.float32, requires_grad=True)
            b = torch.zeros(K, dtype=torch.float32, requires_grad=True)
            reg = 1.0 / (2.0 * float(self.C) * n)
            if self.penalty_space == "standardized":
                pen = None
            else:
                pen = torch.from_numpy((1.0 / scale**2).astype(np.float32))
            opt = torch.optim.LBFGS(
                [W, b],
                lr=1.0,
                max_iter=int(self.max_iter),
                max_eval=int(self.max_iter) * 5 // 4 + 1,
                tolerance_grad=float(self.tol),
                tolerance_change=1e-9,
                history_size=10,
                line_search_fn="strong_wolfe",
            )

            def closure():
                opt.zero_grad()
                penalty = (W * W).sum() if pen is None else (W * W * pen).sum()
                loss = F.cross_entropy(torch.addmm(b, Z, W.t()), target) + reg * penalty
                loss.backward()
                return loss

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seed))
                opt.step(closure)
            n_iter = int(opt.state[opt.param_groups[0]["params"][0]].get("n_iter", 0))

        W_std = W.detach().double().numpy()
        b_std = b.detach().double().numpy()
        self.classes_ = classes
        self.mean_ = mean
        self.scale_ = scale
        self.coef_ = W_std / scale
        self.intercept_ = b_std - self.coef_ @ mean
        self.n_iter_ = n_iter
        self.n_features_in_ = d
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logits ``[n, n_classes]`` (float32), computed in chunks."""
        self._check_fitted()
        X = as_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise ProbeError(f"X has {X.shape[1]} features, the probe was fitted on {self.n_features_in_}")
        mean32 = torch.from_numpy(self.mean_.astype(np.float32))
        scale32 = torch.from_numpy(self.scale_.astype(np.float32))
        W_std = torch.from_numpy((self.coef_ * self.scale_).astype(np.float32))
        b_std = torch.from_numpy((self.intercept_ + self.coef_ @ self.mean_).astype(np.float32))
        out = np.empty((len(X), len(self.classes_)), dtype=np.float32)
        with self._threads(), torch.no_grad():
            for start in range(0, len(X), _CHUNK):
                stop = min(start + _CHUNK, len(X))
                z = self._standardised(X, start, stop, mean32, scale32)
                out[start:stop] = torch.addmm(b_std, z, W_std.t()).numpy()
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``[n, n_classes]`` (float32, columns in ``classes_`` order)."""
        logits = torch.from_numpy(self.decision_function(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted labels ``[n]`` (from ``classes_``; ties -> first class)."""
        logits = self.decision_function(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def score(self, X, y) -> float:
        """Accuracy on ``X: [n, d]``, ``y: [n]``; labels unseen in training count as wrong."""
        y = _as_labels(y, len(X))
        return float(np.mean(self.predict(X) == y)) if len(y) else float("nan")

    def set_params(self, **params) -> "LinearProbe":
        """scikit-learn's ``set_params``; an unknown name raises :class:`ParameterError`."""
        try:
            return super().set_params(**params)
        except ValueError as exc:
            raise ParameterError(str(exc)) from None


# --------------------------------------------------------------------------- control task


def _type_uniform(word_type, seed: int) -> float:
    """A uniform number in [0, 1) that depends only on ``(seed, word_type)``."""
    key = f"{int(seed)}\x00{word_type}".encode("utf-8", "surrogatepass")
    h = hashlib.blake2b(key, digest_size=8, person=b"probe-ctl").digest()
    return (int.from_bytes(h, "little") >> 11) / float(1 << 53)


class ControlTask:
    """Hewitt & Liang (2019) control task: a fixed random label per word *type*.

    ``fit(types, labels)`` records the empirical label distribution (over tokens)
    of the real task.  Every word type ``v`` then gets the label
    ``F^-1(u(v))``, where ``F`` is that distribution's CDF (labels in sorted order)
    and ``u(v)`` a uniform number hashed from ``(seed, v)`` (BLAKE2b).  So a type
    always gets the same label, in train and test alike, independent of the order
    or split in which it is seen; types unseen at ``fit`` get a draw from the same
    distribution by the same rule.  ``type_to_label_`` stores the map for the
    fitted types.  Types are compared by their ``str()``.

    >>> ct = ControlTask(seed=0).fit(["the", "cat", "the", "sat"], ["DET", "NOUN", "DET", "VERB"])
    >>> a = ct.transform(["cat", "the", "dog"]); b = ct.transform(["dog", "cat"])
    >>> bool(a[0] == b[1] and a[2] == b[0]), set(a) <= {"DET", "NOUN", "VERB"}
    (True, True)
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, types: Sequence[str], labels: Sequence[Hashable]) -> "ControlTask":
        """Learn the label distribution from token-aligned ``types: [n]``, ``labels: [n]``."""
        labels = _as_labels(labels)
        types = list(types)
        if len(types) != len(labels):
            raise ProbeError(f"types and labels must have the same length, got {len(types)} and {len(labels)}")
        if not len(labels):
            raise ProbeError("ControlTask.fit needs at least one labelled token")
        classes, counts = np.unique(labels, return_counts=True)
        self.classes_ = classes
        self.probs_ = counts / counts.sum()
        self._cdf = np.cumsum(self.probs_)
        self._cdf[-1] = 1.0
        self.type_to_label_ = {}
        for t in types:
            t = str(t)
            if t not in self.type_to_label_:
                self.type_to_label_[t] = self._draw(t)
        return self

    def _draw(self, word_type: str):
        i = int(np.searchsorted(self._cdf, _type_uniform(word_type, self.seed), side="right"))
        return self.classes_[min(i, len(self.classes_) - 1)]

    def label_of(self, word_type: str):
        """The control label of one word type."""
        if not hasattr(self, "type_to_label_"):
            raise ProbeError("ControlTask is not fitted yet: call fit(types, labels) first")
        t = str(word_type)
        label = self.type_to_label_.get(t)
        return self._draw(t) if label is None else label

    def transform(self, types: Sequence[str]) -> np.ndarray:
        """Control labels ``[n]`` for ``types: [n]`` (array of the label dtype)."""
        if not hasattr(self, "type_to_label_"):
            raise ProbeError("ControlTask is not fitted yet: call fit(types, labels) first")
        cache: dict = {}
        out = []
        for t in types:
            t = str(t)
            lab = cache.get(t)
            if lab is None:
                lab = cache[t] = self.label_of(t)
            out.append(lab)
        return np.array(out, dtype=self.classes_.dtype)

    def fit_transform(self, types: Sequence[str], labels: Sequence[Hashable]) -> np.ndarray:
        return self.fit(types, labels).transform(types)


def control_labels(word_types: Sequence[str], labels: Sequence[Hashable], seed: int = 0) -> np.ndarray:
    """Control labels for one split: ``ControlTask(seed).fit(types, labels).transform(types)``.

    For train/test splits fit one :class:`ControlTask` on the training split and
    ``transform`` both, so label distribution and type map are shared.

    >>> y = control_labels(["a", "b", "a", "c"], [0, 1, 1, 2], seed=3)
    >>> bool(y[0] == y[2]), y.dtype.kind
    (True, 'i')
    """
    return ControlTask(seed).fit(word_types, labels).transform(word_types)


# --------------------------------------------------------------------------- evaluation


def evaluate(
    y_true,
    y_pred,
    offsets=None,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    sentence_ids=None,
    alpha: float = 0.05,
) -> dict:
    """Accuracy and macro-F1 with sentence-bootstrap CIs.

    ``y_true, y_pred: [n_words]`` labels of any type; sentences by ``offsets:
    [n_sentences + 1]`` or ``sentence_ids: [n_words]`` (neither: words are the
    resampling units).  Macro-F1 averages over the labels present in ``y_true``
    or ``y_pred``, as ``sklearn.metrics.f1_score(average="macro")``.  Both CIs use
    the same ``n_boot`` resamples (``seed``), ``1 - alpha`` percentile intervals.

    Returns ``{"accuracy": float, "accuracy_ci": (lo, hi), "macro_f1": float,
    "macro_f1_ci": (lo, hi), "n_words": int, "n_sentences": int}``.

    >>> r = evaluate(["A", "B", "B", "A"], ["A", "B", "A", "A"], [0, 2, 4], n_boot=100)
    >>> r["accuracy"], round(r["macro_f1"], 4)
    (0.75, 0.7333)
    """
    y_true = _as_labels(y_true, name="y_true")
    y_pred = _as_labels(y_pred, len(y_true), name="y_pred")
    if not len(y_true):
        raise ProbeError("evaluate needs at least one word")
    if y_true.dtype == y_pred.dtype:
        both = np.concatenate([y_true, y_pred])
    else:  # e.g. "<U4" vs "<U5", or int vs str: compare as Python objects
        both = np.concatenate([y_true.astype(object), y_pred.astype(object)])
    try:
        labels, codes = np.unique(both, return_inverse=True)
    except TypeError as e:  # mixed, unorderable label types
        raise ProbeError(f"y_true and y_pred labels cannot be compared: {e}") from None
    codes = codes.ravel()
    t_codes, p_codes = codes[: len(y_true)], codes[len(y_true):]
    correct = t_codes == p_codes
    _, n_sentences = stats.sentence_groups(len(y_true), offsets, sentence_ids)
    counts = stats.confusion_counts(t_codes, p_codes, offsets, sentence_ids, len(labels))
    macro = float(stats.macro_f1_from_counts(counts.sum(axis=0)[None])[0])
    acc_ci = stats.bootstrap_accuracy(
        correct, offsets, sentence_ids=sentence_ids, n_boot=n_boot, seed=seed, alpha=alpha
    )
    f1_ci = stats.bootstrap_ci(stats.macro_f1_from_counts, counts, n_boot=n_boot, seed=seed, alpha=alpha)
    return {
        "accuracy": float(correct.mean()),
        "accuracy_ci": (acc_ci.lo, acc_ci.hi),
        "macro_f1": macro,
        "macro_f1_ci": (f1_ci.lo, f1_ci.hi),
        "n_words": int(len(y_true)),
        "n_sentences": int(n_sentences),
    }
