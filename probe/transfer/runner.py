"""Running a sweep's jobs: in this process, or in a pool of spawned worker processes with one
torch thread each; finished runs are read from the memo instead (:class:`Runner`).

Small per-step ops gain nothing from intra-op threads, and two threads per process on a
busy 2-core machine slow a run down several times, hence one thread per worker.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .runs import memo_lookup, memo_run, run_code

__all__ = ["Runner"]


def _worker_init() -> None:
    # one intra-op thread per worker process: see the module docstring above
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # torch's first optimizer step and first ops import and initialise a lot lazily (seconds
    # on a busy machine); do it here so it is not booked to the first run's fit time
    from ..fusion import ArrayView, FusionClassifier

    rng = np.random.default_rng(0)
    view = ArrayView(rng.standard_normal((2, 12, 8)).astype(np.float32), [0, 4, 8, 12],
                     labels=np.arange(12) % 2)
    FusionClassifier(method="dlfa", k=0, epochs=1, max_train=None, max_dev=None).fit(view, view)


class _main_hidden:
    """Hide the ``__main__`` script from spawned workers while they start.

    A spawned child re-runs the parent's main script (as ``__mp_main__``) before it unpickles
    anything, so a user script that calls :func:`fuse` without an ``if __name__ ==
    "__main__":`` guard would start the sweep again in every worker. The workers only need
    :mod:`probe.transfer`, so the script's path and spec are hidden while the pool starts
    processes (pool processes start inside ``submit``).
    """

    def __enter__(self):
        self.main = sys.modules.get("__main__")
        self.saved = {k: self.main.__dict__[k] for k in ("__file__", "__spec__")
                      if self.main is not None and k in self.main.__dict__}
        for k in self.saved:
            setattr(self.main, k, None)
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.main, k, v)
        return False


class Runner:
    """Runs sweep jobs, reusing memoised ones.

    ``n_jobs == 1``: in this process (one torch thread per run). Otherwise a pool of spawned
    worker processes (spawn, not fork: a forked child of a process that already ran torch
    ops can hang in the OpenMP runtime), started on first need and kept for the whole
    sweep, because each worker pays torch's warm-up once. Use as a context manager.
    """

    def __init__(self, n_jobs: int, progress: bool):
        self.n_jobs = max(1, int(n_jobs))
        self.progress = progress
        self.pool = None

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.pool is not None:
            # on an error or Ctrl-C, drop queued runs; finished ones are memoised already
            self.pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)
            self.pool = None
        return False

    def _pool(self):
        if self.pool is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            self.pool = ProcessPoolExecutor(max_workers=self.n_jobs,
                                            mp_context=mp.get_context("spawn"),
                                            initializer=_worker_init)
        return self.pool

    def run(self, jobs: list[dict], desc: str) -> tuple[list[dict], int]:
        """(results in job order, number of runs trained now rather than reused)."""
        from tqdm.auto import tqdm

        code = {task: run_code(task) for task in {j["task"] for j in jobs}}  # hashed once per sweep
        results: list[dict | None] = [memo_lookup(j, code[j["task"]]) for j in jobs]
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results, 0  # type: ignore[return-value]
        # longest runs first so that the pool's tail is short
        weight = {"scalarmix": 4, "concat": 3, "dlfa": 3, "dlfa-fixed": 3, "layer": 1, "last": 1}
        todo.sort(key=lambda i: -weight.get(jobs[i]["method"], 1))
        bar = tqdm(total=len(todo), desc=desc, unit="run", disable=not self.progress,
                   file=sys.stderr)
        if self.n_jobs == 1:
            for i in todo:
                results[i] = memo_run(jobs[i], code[jobs[i]["task"]])
                bar.update(1)
        else:
            from concurrent.futures import as_completed

            pool = self._pool()
            with _main_hidden():
                futures = {pool.submit(memo_run, jobs[i], code[jobs[i]["task"]]): i for i in todo}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update(1)
        bar.close()
        return results, len(todo)  # type: ignore[return-value]
