"""Linear CKA: our feature-space implementation vs Gram-space (n x n) ones; layer x layer matrices.

Implementations (debiased HSIC, the toolkit's default; all agree to ~1e-12):

- ``feature``: ``probe.similarity.linear_cka``: d x d accumulators streamed over row chunks,
  O(n d^2) time, memory independent of n;
- ``gram-ref``: ``probe.similarity.linear_cka_gram``, the n x n reference: float64 Gram
  matrices, ``trace(K~ L~)`` through a matrix product (O(n^3) time, O(n^2) memory);
- ``gram-blocked``: the cheapest Gram-space evaluation we could write (here, in this file):
  the n x n Gram entries computed in row blocks and reduced on the fly (O(n^2 d) time,
  O(block * n) memory): a fairer opponent than the reference at large n.

Times are medians of alternating rounds in this process; peak memory is measured in a
fresh subprocess per case (peak RSS increase after the inputs exist, via
/proc/self/clear_refs + VmHWM, and tracemalloc's peak of traced allocations).

Then the 13 x 13 layer CKA matrices of e5-small-q4 on PUD: English vs German *sentence*
vectors (mean of word vectors, the 1000 parallel sentences: PUD words are not aligned across
languages), and English vs English over all PUD *words* (within-language, ~21k rows).

    python benchmarks/bench_cka.py            # n = 2k, 5k, 20k; d = 384, 768; PUD matrices
    python benchmarks/bench_cka.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


# ----------------------------------------------------------------------------- implementations
def gram_blocked(X, Y, block: int = 512) -> float:
    """Debiased linear CKA from the n x n Grams, computed ``block`` rows at a time."""
    import numpy as np

    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    n = len(X)
    k1 = np.empty(n)
    l1 = np.empty(n)
    kl = kk = ll = 0.0
    for a in range(0, n, block):
        b = min(a + block, n)
        K = X[a:b] @ X.T
        L = Y[a:b] @ Y.T
        idx = np.arange(b - a)
        K[idx, a + idx] = 0.0  # zero diagonal (K~, L~)
        L[idx, a + idx] = 0.0
        kl += float(np.einsum("ij,ij->", K, L))
        kk += float(np.einsum("ij,ij->", K, K))
        ll += float(np.einsum("ij,ij->", L, L))
        k1[a:b] = K.sum(axis=1)
        l1[a:b] = L.sum(axis=1)

    def hsic(tr, u1, v1):
        return tr + u1.sum() * v1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(u1 @ v1)

    hxy, hxx, hyy = hsic(kl, k1, l1), hsic(kk, k1, k1), hsic(ll, l1, l1)
    return float(hxy / np.sqrt(hxx * hyy)) if hxx * hyy > 0 else float("nan")


def _impl(name):
    from probe.similarity import linear_cka, linear_cka_gram

    return {"feature": linear_cka, "gram-ref": linear_cka_gram, "gram-blocked": gram_blocked}[name]


def make_data(n: int, d: int, seed: int = 0):
    """X [n, d] float32 and a partly linearly related Y [n, d] float32."""
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    R = rng.standard_normal((d, d), dtype=np.float32) / np.sqrt(d)
    Y = X @ R + rng.standard_normal((n, d), dtype=np.float32)
    return X, Y


# ----------------------------------------------------------------------------- memory child
def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def child(spec: dict) -> dict:
    """Run one case once in this (fresh) process; report its peak memory above the inputs."""
    import tracemalloc

    fn = _impl(spec["impl"])
    X, Y = make_data(spec["n"], spec["d"])
    res = {}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        rss0 = _status()["VmRSS"]
        t0 = time.perf_counter()
        value = fn(X, Y)
        res["seconds"] = time.perf_counter() - t0
        res["rss_peak_delta"] = _status()["VmHWM"] - rss0
    except OSError:
        value = fn(X, Y)
        res["rss_peak_delta"] = None
    tracemalloc.start()
    fn(X, Y)
    res["traced_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    res["cka"] = value
    res["input_bytes"] = X.nbytes + Y.nbytes
    return res


def measure_memory(impl: str, n: int, d: int, timeout: float) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps({"impl": impl, "n": n, "d": d})]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as exc:
        print(f"  memory child {impl} n={n} d={d} failed: {exc.stderr.strip()[-300:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- layer matrices
def _matrix_inputs(args):
    """Two PUD entries (en, de) of the model, extracted into PROBE_HOME if missing."""
    if args.model.startswith("tiny"):
        from probe.extraction import extract_corpus

        tiny = C.tiny_module()
        spec = C.resolve_model(args.model)
        a = extract_corpus(spec, tiny.random_corpus(n=60, seed=0), progress=False)
        b_corpus = tiny.random_corpus(n=60, seed=1)
        b_corpus.lang = "yy"
        b = extract_corpus(spec, b_corpus, progress=False)
        return a, b
    from probe.layerwise import ensure_entries

    spec = C.resolve_model(args.model)
    return ensure_entries(spec, [("pud", "en", "test", "first"), ("pud", args.lang, "test", "first")],
                          progress=False)


def _print_matrix(M, title):
    import numpy as np

    L = len(M)
    print(title)
    print("      " + " ".join(f"{j:5d}" for j in range(M.shape[1])))
    for i in range(L):
        print(f"{i:5d} " + " ".join(f"{v:5.2f}" if np.isfinite(v) else "  nan" for v in M[i]))


def layer_matrices(args, rounds: int) -> None:
    import numpy as np

    from probe.layerwise import aligned_rows
    from probe.similarity import cka_matrix, linear_cka, linear_cka_gram

    en, xx = _matrix_inputs(args)
    L = en.n_layers
    ia, ib = aligned_rows(en, xx)
    A = [np.asarray(en.sentence_vectors(l, "mean"), dtype=np.float32)[ia] for l in range(L)]
    B = [np.asarray(xx.sentence_vectors(l, "mean"), dtype=np.float32)[ib] for l in range(L)]
    n = len(ia)
    out = {}

    def pairwise_feature():
        out["pairs"] = np.array([[linear_cka(a, b) for b in B] for a in A])

    def pairwise_gram():
        out["gram"] = np.array([[linear_cka_gram(a, b) for b in B] for a in A])

    def matrix():
        out["matrix"] = cka_matrix(A, B)

    t = C.interleaved({"cka_matrix": matrix, "pairwise linear_cka": pairwise_feature,
                       "pairwise linear_cka_gram": pairwise_gram}, rounds)
    m = {k: C.med(v) for k, v in t.items()}
    lang_b = xx.lang
    print(f"\n-- {L} x {L} layer CKA matrix, {en.lang} vs {lang_b} PUD sentence vectors (mean of the "
          f"word vectors; {n} parallel sentences, aligned by sent_id), debiased")
    for k, v in m.items():
        print(f"  {k:26s} {v:8.3f} s")
    diff = float(np.nanmax(np.abs(out["matrix"] - out["gram"])))
    print(f"  max |cka_matrix - gram reference| = {diff:.2e}")
    C.ratio_line(f"time {L}x{L} sentence matrix (n={n}): {L * L} x linear_cka_gram / cka_matrix",
                 m["pairwise linear_cka_gram"] / m["cka_matrix"], "informative", None)
    C.ratio_line(f"time {L}x{L} sentence matrix (n={n}): {L * L} x linear_cka / cka_matrix",
                 m["pairwise linear_cka"] / m["cka_matrix"], "informative", None)
    _print_matrix(out["matrix"], f"  CKA[{en.lang} layer i, {lang_b} layer j]:")
    diag = np.diag(out["matrix"])
    print(f"  same-layer {en.lang}-{lang_b} CKA by layer: " + " ".join(f"{v:.2f}" for v in diag))

    # within-language over all words (no cross-language word alignment exists in PUD)
    W = [en.layer(l) for l in range(L)]  # float16 memmaps, streamed
    t0 = time.perf_counter()
    M = cka_matrix(W)
    tw = time.perf_counter() - t0
    print(f"\n-- {L} x {L} within-language layer CKA matrix over all {en.n_words} {en.lang} PUD words "
          f"(float16 memmaps streamed, symmetric: {L * (L - 1) // 2} pairs): {tw:.2f} s")
    _print_matrix(M, f"  CKA[{en.lang} layer i, {en.lang} layer j]:")
    gram_est = None
    if en.n_words > 1000:
        # one pair with the blocked Gram version, to compare per pair
        t0 = time.perf_counter()
        g = gram_blocked(np.asarray(W[0], np.float32), np.asarray(W[L - 1], np.float32))
        gram_est = time.perf_counter() - t0
        print(f"  one pair (0, {L - 1}) with gram-blocked: {gram_est:.2f} s (CKA {g:.4f} vs "
              f"{M[0, L - 1]:.4f}); all {L * (L - 1) // 2} pairs would take ~{gram_est * L * (L - 1) / 2:.0f} s")


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = C.parser(__doc__, home="PROBE_HOME with (or for) the PUD entries", quick="smoke run: tiny sizes")
    p.add_argument("--n", default="2000,5000,20000", help="row counts (default 2000,5000,20000)")
    p.add_argument("--d", default="384,768", help="widths (default 384,768)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds (default 3)")
    p.add_argument("--gram-ref-max-n", type=int, default=5000,
                   help="largest n for the O(n^3) reference (default 5000; 20000 needs ~16 GB and hours)")
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="a variant whose first call takes longer is not repeated (default 30)")
    p.add_argument("--model", default="e5-small-q4", help="encoder of the layer matrices (tiny: smoke)")
    p.add_argument("--lang", default="de", help="second PUD language of the matrix (default de)")
    p.add_argument("--no-matrix", action="store_true", help="skip the PUD layer matrices")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.quick:
        args.n, args.d, args.rounds = "300,800", "16", min(args.rounds, 2)
    C.setup_env(args.home)

    C.print_machine("bench_cka")
    ns = [int(x) for x in args.n.split(",")]
    ds = [int(x) for x in args.d.split(",")]
    rows = []
    for d in ds:
        for n in ns:
            X, Y = make_data(n, d)
            impls = ["feature", "gram-blocked"] + (["gram-ref"] if n <= args.gram_ref_max_n else [])
            times = {k: [] for k in impls}
            vals = {}
            for r in range(args.rounds):
                for k in (impls if r % 2 == 0 else impls[::-1]):
                    if times[k] and times[k][0] > args.max_seconds:
                        continue
                    t0 = time.perf_counter()
                    vals[k] = _impl(k)(X, Y)
                    times[k].append(time.perf_counter() - t0)
            for k in impls:
                mem = measure_memory(k, n, d, timeout=max(120.0, 6 * C.med(times[k]) + 60))
                rows.append({"n": n, "d": d, "impl": k, "t": C.med(times[k]), "runs": len(times[k]),
                             "cka": vals[k], "mem": mem})
            ref = vals["feature"]
            agree = max(abs(v - ref) for v in vals.values())
            print(f"n={n:6d} d={d:4d}: " + ", ".join(f"{k} {C.med(times[k]):.3f} s" for k in impls)
                  + f"; |CKA differences| <= {agree:.1e}", flush=True)

    print(f"\n{'n':>6s} {'d':>4s} {'implementation':14s} {'median s':>9s} {'runs':>4s} "
          f"{'peak RSS +':>11s} {'traced peak':>11s} {'inputs':>9s}")
    for r in rows:
        mem = r["mem"] or {}
        rss = C.fmt_bytes(mem["rss_peak_delta"]) if mem.get("rss_peak_delta") is not None else "?"
        tr = C.fmt_bytes(mem["traced_peak"]) if mem.get("traced_peak") is not None else "?"
        inp = C.fmt_bytes(mem["input_bytes"]) if mem.get("input_bytes") else "?"
        print(f"{r['n']:6d} {r['d']:4d} {r['impl']:14s} {r['t']:9.3f} {r['runs']:4d} {rss:>11s} {tr:>11s} {inp:>9s}")

    def row(n, d, impl):
        return next((r for r in rows if r["n"] == n and r["d"] == d and r["impl"] == impl), None)

    big = max(ns)
    for d in ds:
        f = row(big, d, "feature")
        blk = row(big, d, "gram-blocked")
        C.ratio_line(f"time gram-blocked / feature at n={big}, d={d}", blk["t"] / f["t"], ">= 10x",
                     blk["t"] / f["t"] >= 10)
        ref_ns = [n for n in ns if n <= args.gram_ref_max_n]
        if ref_ns:
            n0 = max(ref_ns)
            g = row(n0, d, "gram-ref")
            f0 = row(n0, d, "feature")
            C.ratio_line(f"time gram-ref (linear_cka_gram) / feature at n={n0}, d={d} (measured)",
                         g["t"] / f0["t"], ">= 10x", g["t"] / f0["t"] >= 10)
            if big > n0:
                est = g["t"] * (big / n0) ** 3
                mem = (g["mem"] or {}).get("traced_peak")
                mem_est = f", ~{C.fmt_bytes(mem * (big / n0) ** 2)} peak" if mem else ""
                C.ratio_line(f"time gram-ref / feature at n={big}, d={d} (gram-ref EXTRAPOLATED n^3 from "
                             f"n={n0}: ~{est:.0f} s{mem_est})", est / f["t"], ">= 10x", est / f["t"] >= 10)
        peaks = [((row(n, d, "feature") or {}).get("mem") or {}).get("traced_peak") for n in ns]
        if all(peaks):
            print(f"feature-space peak traced memory at d={d} for n={ns}: "
                  + ", ".join(C.fmt_bytes(x) for x in peaks)
                  + f": float64 copies of one row chunk of X and Y (<= 8192 rows, so flat beyond n = 8192) "
                    f"plus d x d accumulators ({C.fmt_bytes(5 * d * d * 8)}); one n x n float64 Gram at "
                    f"n={big} alone is {C.fmt_bytes(8.0 * big * big)}")
        if ref_ns:
            g = (row(n0, d, "gram-ref")["mem"] or {}).get("traced_peak")
            f0 = (row(n0, d, "feature")["mem"] or {}).get("traced_peak")
            if g and f0:
                C.ratio_line(f"peak memory gram-ref / feature at n={n0}, d={d}", g / f0, "informative", None)

    if not args.no_matrix:
        layer_matrices(args, rounds=1 if not args.quick else 2)
    C.print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
