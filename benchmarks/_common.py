"""Shared helpers of the benchmark scripts: machine description, interleaved timing,
ratio lines, the model/corpus used (real or tests' tiny random encoder).

Every benchmark prints ``RATIO <what>: <value>x (target ...: HOLDS|MISSES)`` lines; the
compared variants are timed in the same process, alternating their order round by round,
and compared by their medians (the machines these run on are shared and noisy).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
DEFAULT_HOME = "/tmp/benchhome"
if str(REPO) not in sys.path:  # run from a checkout: this tree's probe/, installed or not
    sys.path.insert(0, str(REPO))


def setup_env(home: str | None = None) -> str:
    """PROBE_HOME (``--home``, else $PROBE_HOME, else /tmp/benchhome) and the offline mirror."""
    home = home or os.environ.get("PROBE_HOME") or DEFAULT_HOME
    os.environ["PROBE_HOME"] = str(home)
    mirror = REPO.parent / "shared" / "data"
    if not os.environ.get("PROBE_DATA_MIRROR") and mirror.is_dir():
        os.environ["PROBE_DATA_MIRROR"] = str(mirror)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return home


def tiny_module():
    """tests/tiny.py (the tiny random encoder): only for smoke runs, never for figures."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import tiny

    return tiny


def resolve_model(name: str):
    """EncoderSpec for ``name``; ``tiny`` (or ``tiny@<max_positions>``) = tests' random encoder."""
    if name.startswith("tiny"):
        _, _, mp = name.partition("@")
        return tiny_module().tiny_spec(max_positions=int(mp or 128))
    from probe.encoders import resolve_encoder

    return resolve_encoder(name)


def machine() -> dict:
    import torch

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = float("nan")
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "cpu": cpu, "ram_gib": round(mem_gib, 1), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "loadavg": tuple(round(x, 2) for x in load)}


def print_machine(title: str) -> dict:
    m = machine()
    print(f"== {title}")
    print(f"machine: {m['date']}; nproc={m['nproc']} (usable {m['affinity']}); CPU: {m['cpu']}; "
          f"RAM {m['ram_gib']} GiB; torch {m['torch']} with {m['torch_threads']} threads; "
          f"python {m['python']}; load average {m['loadavg'][0]:.2f} {m['loadavg'][1]:.2f} "
          f"{m['loadavg'][2]:.2f}")
    return m


def print_load_after() -> None:
    try:
        a, b, c = os.getloadavg()
        print(f"load average at the end: {a:.2f} {b:.2f} {c:.2f}")
    except OSError:
        pass


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, *,
                setup: dict[str, Callable[[], object]] | None = None,
                max_rounds: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Wall seconds of each variant, ``rounds`` times, in alternating order (ABC, CBA, ...).

    ``setup[name]()``, if given, runs untimed before each timed call of ``name``;
    ``max_rounds[name]`` caps the rounds of a slow variant (it takes part in the first ones).
    """
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in (names if r % 2 == 0 else names[::-1]):
            if max_rounds and r >= max_rounds.get(n, rounds):
                continue
            if setup and n in setup:
                setup[n]()
            t0 = time.perf_counter()
            variants[n]()
            times[n].append(time.perf_counter() - t0)
    return times


def med(xs) -> float:
    return float(statistics.median(xs))


def ratio_line(what: str, value: float, target: str, holds: bool | None) -> str:
    verdict = "n/a" if holds is None else ("HOLDS" if holds else "MISSES")
    line = f"RATIO {what}: {value:.2f}x (target {target}: {verdict})"
    print(line, flush=True)
    return line


@contextlib.contextmanager
def throwaway_home():
    """A temporary PROBE_HOME (cache writes go there), restored afterwards."""
    old = os.environ.get("PROBE_HOME")
    with tempfile.TemporaryDirectory(prefix="bench-home-") as tmp:
        os.environ["PROBE_HOME"] = tmp
        try:
            yield Path(tmp)
        finally:
            if old is None:
                os.environ.pop("PROBE_HOME", None)
            else:
                os.environ["PROBE_HOME"] = old


def fmt_bytes(n: float) -> str:
    from probe.cache import human_bytes

    return human_bytes(n)


def target_line(kind: str, what: str, value: float, unit: str, target: str, holds: bool | None) -> str:
    """Like :func:`ratio_line` for a non-ratio figure (e.g. an accuracy difference)."""
    verdict = "n/a" if holds is None else ("HOLDS" if holds else "MISSES")
    line = f"{kind} {what}: {value:.3f} {unit} (target {target}: {verdict})"
    print(line, flush=True)
    return line


def parser(doc: str, *, home: str, quick: str, threads: bool = False) -> argparse.ArgumentParser:
    """The options every benchmark shares: ``--home`` (PROBE_HOME), ``--quick`` (smoke run)
    and, with ``threads=True``, ``--threads`` (torch threads; ``--quick`` uses 1)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--home", default=None, help=home)
    p.add_argument("--quick", action="store_true", help=quick)
    if threads:
        p.add_argument("--threads", type=int, default=None,
                       help="torch threads (default: torch's default; --quick: 1)")
    return p


def threads_for(args) -> int | None:
    """The torch thread count a benchmark runs with (see :func:`parser`)."""
    return args.threads or (1 if args.quick else None)


