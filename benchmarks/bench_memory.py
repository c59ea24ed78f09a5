"""Peak memory of a ``probe layers`` run vs the size of the cache entries it reads.

The analysis reads memory-mapped float16 layers one at a time (a probe copies one layer of
the training entry to float32 and standardises it), so its memory should be bounded by
the layer in use, not by the cache. Three subprocesses, each measured by its own peak
resident set (``VmHWM`` of /proc/self/status read by the child at its end: file-backed
pages of the memory maps included) and a VmRSS trace polled from /proc/<pid>/status.
(``ru_maxrss`` of ``wait4``/``RUSAGE_CHILDREN`` is not used: on Linux a child's ru_maxrss
starts from the launching process's peak, which ``exec`` carries over, so a big parent
masks a small child.)

1. a first run of ``probe layers`` (extracts any missing entry: model loaded);
2. the measured run: the same command with every entry cached and the memoised per-layer
   results removed, so every probe, bootstrap, CKA and retrieval is recomputed;
3. a baseline process that only imports the modules run 2 had imported (the interpreter,
   torch, scikit-learn, matplotlib, ...), to separate the data working set from code.

``--quick`` (smoke): the tiny random encoder on PUD en/de, extracted in this process, and the
baseline taken inside the measured child (its peak after importing the main packages).

    python benchmarks/bench_memory.py                 # probe layers --lang de --model e5-small-q4
    python benchmarks/bench_memory.py --quick         # smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


# ----------------------------------------------------------------------------- child side
MAIN_PACKAGES = ["torch", "numpy", "scipy.stats", "sklearn", "pandas", "tqdm.auto", "probe.cli",
                 "probe.layerwise", "probe.probes", "probe.similarity", "probe.stats", "probe.cache",
                 "probe.data", "probe.encoders", "probe.extraction"]


def _own_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def child(spec: dict) -> int:
    """One measured process: ``layers`` (the CLI, or the API for a tiny spec) or ``imports``.
    Writes ``{"hwm": peak RSS, "hwm_imports": peak after importing MAIN_PACKAGES}`` to spec["result"]."""
    import importlib

    rc = 0
    names = json.loads(Path(spec["modules"]).read_text()) if spec["mode"] == "imports" else MAIN_PACKAGES
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - private/lazy modules that cannot import alone
            pass
    hwm_imports = _own_status()["VmHWM"]
    if spec["mode"] == "layers":
        if spec.get("tiny"):
            sys.path.insert(0, str(C.TESTS))
            from tiny import tiny_spec

            from probe.layerwise import layers

            res = layers(spec["langs"], model=tiny_spec(max_positions=spec["tiny"]), tasks=spec["tasks"],
                         n_boot=spec["n_boot"], tatoeba=False, train=tuple(spec["train"]), progress=False,
                         max_iter=spec["max_iter"])
            res.format_table()
            Path(spec["out"]).mkdir(parents=True, exist_ok=True)
            (Path(spec["out"]) / "report.json").write_text(json.dumps(res.report))
        else:
            from probe.cli import main

            rc = main(spec["argv"])
        Path(spec["modules"]).write_text(json.dumps(sorted(m for m in sys.modules if not m.startswith("__"))))
    Path(spec["result"]).write_text(json.dumps({"hwm": _own_status()["VmHWM"], "hwm_imports": hwm_imports}))
    return rc


# ----------------------------------------------------------------------------- parent side
def _rss_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Measured:
    """A running child with a VmRSS poller; :meth:`finish` returns its peak RSS (its own
    VmHWM), its peak after the imports, wall time and the RSS trace."""

    def __init__(self, spec: dict, env: dict, log_path: Path, interval: float = 0.1):
        self.result = log_path.with_suffix(".result.json")
        spec = spec | {"result": str(self.result)}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
        self.spec, self.log_path = spec, log_path
        self.t0 = time.perf_counter()
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.trace: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)
        self.thread.start()

    def _poll(self, interval):
        while not self.stop.is_set():
            rss = _rss_of(self.proc.pid)
            if rss is not None:
                self.trace.append((time.perf_counter() - self.t0, rss))
            self.stop.wait(interval)

    def finish(self) -> dict:
        self.proc.wait()
        wall = time.perf_counter() - self.t0
        self.stop.set()
        self.thread.join()
        self.log.close()
        if self.proc.returncode != 0:
            raise RuntimeError(f"child {self.spec['mode']} failed ({self.proc.returncode}):\n"
                               f"{self.log_path.read_text()[-3000:]}")
        res = json.loads(self.result.read_text())
        return {"peak": res["hwm"], "peak_imports": res["hwm_imports"], "wall": wall, "trace": self.trace}


def run_measured(spec: dict, env: dict, log_path: Path) -> dict:
    return Measured(spec, env, log_path).finish()


def _profile(trace, n=10) -> str:
    if not trace:
        return "(no samples)"
    end = trace[-1][0]
    pts = []
    for k in range(1, n + 1):
        lo, hi = end * (k - 1) / n, end * k / n
        window = [r for t, r in trace if lo <= t <= hi] or [trace[-1][1]]
        pts.append(max(window))
    return " ".join(f"{p / 2**20:.0f}" for p in pts) + " MiB"


def _entries_read(report: dict):
    """Cache entries named in a report (by key digest), with their disk sizes."""
    from probe.cache import iter_entries

    keys = [report["data"]["train"]["cache_key"]] + [v["cache_key"] for v in report["data"]["pud"].values()]
    for t in report["data"].get("tatoeba", {}).values():
        keys += [t["xx"]["cache_key"], t["eng"]["cache_key"]]
    by_key = {e.meta["key"]: e for e in iter_entries()}
    return [by_key[k] for k in dict.fromkeys(keys) if k in by_key]  # each entry once


def _layer_bytes(e) -> int:
    return int(e.meta["files"]["layer_00.npy"]["size"])


def main(argv=None) -> int:
    p = C.parser(__doc__, home="PROBE_HOME with (or for) the cache entries",
                 quick="smoke run: tiny random encoder, PUD en/de only")
    p.add_argument("--model", default="e5-small-q4", help="encoder (tiny: tests' random encoder, smoke only)")
    p.add_argument("--lang", default="de", help="target language(s) of probe layers (default de)")
    p.add_argument("--tasks", default="pos,deprel,langid", help="probe layers --tasks (default: all)")
    p.add_argument("--n-boot", type=int, default=1000, help="probe layers --n-boot (default 1000)")
    p.add_argument("--no-tatoeba", action="store_true", help="probe layers --no-tatoeba")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    C.setup_env(args.home)
    if args.quick and not args.model.startswith("tiny"):
        args.model = "tiny"
    C.print_machine("bench_memory")
    tiny = args.model.startswith("tiny")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = dict(os.environ)
    try:
        out = work / "out"
        modules = work / "modules.json"
        if tiny:
            _, _, mp = args.model.partition("@")
            spec = {"mode": "layers", "tiny": int(mp or 128), "langs": args.lang.split(","),
                    "tasks": args.tasks.split(",") if not args.quick else ["pos"],
                    "n_boot": args.n_boot if not args.quick else 20, "train": ["pud", "test"],
                    "max_iter": 30, "out": str(out), "modules": str(modules)}
            desc = f"layers(API) tiny random encoder, langs {args.lang}, train PUD en (smoke only)"
        else:
            argv = ["layers", "--lang", args.lang, "--model", args.model, "--tasks", args.tasks,
                    "--n-boot", str(args.n_boot), "--out", str(out), "--quiet"]
            if args.no_tatoeba:
                argv.append("--no-tatoeba")
            spec = {"mode": "layers", "argv": argv, "modules": str(modules)}
            desc = "probe " + " ".join(argv)
        print(f"command: {desc}; PROBE_HOME={os.environ['PROBE_HOME']}")

        from probe.cache import iter_entries

        if args.quick:
            # smoke run: the tiny entries are extracted here, in this process; torch on one thread
            from probe.layerwise import ensure_entries

            env["OMP_NUM_THREADS"] = "1"
            t0 = time.perf_counter()
            ensure_entries(C.resolve_model(args.model), [("pud", lang, "test", "first")
                                                         for lang in ["en"] + args.lang.split(",")],
                           progress=False)
            print(f"1. first run: replaced by an in-process extraction (--quick), "
                  f"{time.perf_counter() - t0:.1f} s")
        else:
            n_before = len(list(iter_entries()))
            first = run_measured(spec, env, work / "first.log")
            n_after = len(list(iter_entries()))
            print(f"1. first run: peak RSS {C.fmt_bytes(first['peak'])}, {first['wall']:.1f} s "
                  f"({n_after - n_before} cache entries extracted{', model loaded' if n_after > n_before else ''})")
        shutil.rmtree(Path(os.environ["PROBE_HOME"]) / "cache" / "results", ignore_errors=True)
        warm = run_measured(spec, env, work / "warm.log")
        report = json.loads((out / "report.json").read_text())
        print(f"2. measured run (entries cached, results recomputed): peak RSS {C.fmt_bytes(warm['peak'])}, "
              f"{warm['wall']:.1f} s; RSS over time (max per tenth): {_profile(warm['trace'])}")
        print(f"   its peak after importing the main packages, before any data: {C.fmt_bytes(warm['peak_imports'])}")
        if args.quick:
            baseline = warm["peak_imports"]
            print("3. baseline: the measured run's peak after its imports (--quick)")
        else:
            base = run_measured({"mode": "imports", "modules": str(modules)}, env, work / "base.log")
            baseline = base["peak"]
            print(f"3. baseline (the same {len(json.loads(modules.read_text()))} modules imported, no data): "
                  f"peak RSS {C.fmt_bytes(baseline)}")

        entries = _entries_read(report)
        total = sum(e.disk_bytes for e in entries)
        layer_total = sum(_layer_bytes(e) * e.n_layers for e in entries)
        largest = max(entries, key=_layer_bytes)
        one = _layer_bytes(largest)
        work_set = warm["peak"] - baseline
        print(f"cache entries read: {len(entries)}, {C.fmt_bytes(total)} on disk "
              f"({C.fmt_bytes(layer_total)} of it word-vector layers)")
        for e in entries:
            c = e.meta["corpus"]
            print(f"  {c['name']}/{c['lang']}/{c['split']} ({e.meta['pooling']}): {e.n_layers} layers x "
                  f"[{e.n_words}, {e.hidden}] float16, {C.fmt_bytes(e.disk_bytes)}")
        print(f"largest single layer: {largest.meta['corpus']['name']}/{largest.lang} "
              f"{C.fmt_bytes(one)} float16 = {C.fmt_bytes(2 * one)} as float32")
        print(f"data working set = peak - baseline = {C.fmt_bytes(work_set)} "
              f"= {work_set / one:.1f} x that layer (float16), {work_set / (2 * one):.1f} x as float32")
        C.ratio_line("cache read / data working set (peak RSS - baseline)", total / max(work_set, 1),
                     "> 1x: bounded by the layers in use, not the cache", total > work_set)
        C.ratio_line("data working set / largest float32 layer", work_set / (2 * one),
                     "informative: a few copies of one layer", None)
        C.print_load_after()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
