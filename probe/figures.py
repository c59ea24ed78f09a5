"""``probe figures``: regenerate the committed figures and their results.

The analyses are small scripts in the top-level ``analyses/`` folder of the source
checkout (not part of the installed package): ``analyses/__init__.py`` lists them in
``ANALYSES``. This command therefore runs from a source checkout (the editable install
``pip install -e .`` finds it next to the ``probe`` package; ``--analyses-dir`` or
``$PROBE_ANALYSES_DIR`` points elsewhere). Each analysis writes ``results/<name>.json`` and
``figures/<name>.png``/``.pdf`` under ``--out-root``; extraction and per-layer results are
reused from the cache (``$PROBE_HOME``), so a second run only redraws.

    probe figures                      # every analysis, full size
    probe figures --only cka_heatmaps,language_families --quick
    python3 -m probe.figures --list    # the same without the ``probe`` entry point
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from .errors import ProbeError

ENV_DIR = "PROBE_ANALYSES_DIR"


def repo_root() -> Path | None:
    """The source checkout holding ``analyses/`` next to this package, if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "analyses" / "__init__.py").is_file() else None


def load_analyses(analyses_dir: str | Path | None = None) -> dict:
    """Import ``analyses`` from ``analyses_dir`` (the folder itself), ``$PROBE_ANALYSES_DIR``
    or the source checkout, and return its ``ANALYSES`` registry (name -> module)."""
    folder = analyses_dir or os.environ.get(ENV_DIR)
    if folder:
        folder = Path(folder).resolve()
        if not (folder / "__init__.py").is_file():
            raise ProbeError(f"{folder} is not an analyses folder (no __init__.py)")
        parent = folder.parent
    else:
        parent = repo_root()
        if parent is None:
            raise ProbeError("the analyses/ folder was not found: `probe figures` runs from a source "
                             "checkout (pip install -e . in a clone of the repository), or set "
                             f"{ENV_DIR} to the analyses folder")
        folder = parent / "analyses"
    loaded = sys.modules.get("analyses")
    if loaded is not None and Path(loaded.__file__).resolve().parent != folder:
        raise ProbeError(f"another module named 'analyses' is already imported ({loaded.__file__})")
    if str(parent) not in sys.path:
        sys.path.insert(0, str(parent))
    try:
        module = importlib.import_module("analyses")
    except ImportError as exc:
        raise ProbeError(f"cannot import the analyses in {folder}: {exc}") from None
    registry = getattr(module, "ANALYSES", None)
    if not isinstance(registry, dict):
        raise ProbeError(f"{folder}/__init__.py defines no ANALYSES registry")
    return registry


def _describe(registry: dict) -> str:
    return "\n".join(f"  {name:18s} {getattr(mod, 'CLAIM', '')}" for name, mod in registry.items())


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``figures`` command to an ``argparse`` subparsers object; returns its parser."""
    try:
        listing = "\n\nAnalyses (run in this order):\n" + _describe(load_analyses())
    except ProbeError:
        listing = ""
    p = subparsers.add_parser(
        "figures", help="regenerate every figure and its results JSON (analyses/)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run the analysis scripts of the source checkout's analyses/ folder, each answering one\n"
            "question with the public probe API, and write results/<name>.json (every number with\n"
            "model, data, seeds and code version) and figures/<name>.png + .pdf under --out-root.\n"
            "Extraction and per-layer results are cached in $PROBE_HOME, so a re-run is fast.\n"
            "Runs from a source checkout (the analyses are not part of the installed package).\n"
            "Layer 0 is the embedding output; layer L is the last transformer layer." + listing),
        epilog="See figures/README.md for what each figure claims and its budget.")
    p.add_argument("--model", default="e5-small-q4",
                   help="encoder for every analysis (default: e5-small-q4, works offline)")
    p.add_argument("--only", default=None, metavar="NAME[,NAME...]",
                   help="comma-separated analyses to run (default: all, in registry order)")
    p.add_argument("--quick", action="store_true",
                   help="small subsets (a few languages, a tiny fusion sweep): a smoke run in minutes; "
                        "do not commit its outputs")
    p.add_argument("--out-root", default=None, metavar="DIR",
                   help="where results/ and figures/ are written (default: the repository root)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads for extraction and probes (default: torch's own choice; "
                        "1 is often faster on a machine busy with other work)")
    p.add_argument("--list", action="store_true", help="list the analyses and exit")
    p.add_argument("--keep-going", action="store_true",
                   help="run the remaining analyses after one fails (exit status 1 at the end)")
    p.add_argument("--analyses-dir", default=None, metavar="DIR",
                   help=f"the analyses folder (default: ${ENV_DIR} or <checkout>/analyses)")
    return p


def run(args) -> int:
    """Run the selected analyses; prints every file written. Returns the exit status."""
    registry = load_analyses(getattr(args, "analyses_dir", None))
    if getattr(args, "list", False):
        print(_describe(registry))
        return 0
    names = list(registry)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        bad = [n for n in names if n not in registry]
        if bad:
            raise ProbeError(f"unknown analysis {', '.join(bad)}; choose from {', '.join(registry)}")
    root = Path(args.out_root) if args.out_root else (repo_root() or Path("."))
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(max(1, int(args.threads)))
    failed = []
    t_all = time.time()
    for name in names:
        t0 = time.time()
        print(f"== {name} ({args.model}{', quick' if args.quick else ''})", flush=True)
        try:
            paths = registry[name].main(model=args.model, out_root=root, quick=args.quick)
        except Exception as exc:  # noqa: BLE001 - reported, then the next analysis runs
            if not getattr(args, "keep_going", False):
                raise
            print(f"probe: error: {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        for p in paths:
            print(f"wrote {_rel(p)}")
        print(f"   {name}: {time.time() - t0:.0f} s", flush=True)
    print(f"figures: {len(names) - len(failed)}/{len(names)} analyses in {time.time() - t_all:.0f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m probe.figures ...``: the command without the ``probe`` entry point."""
    parser = argparse.ArgumentParser(prog="probe")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["figures", *(sys.argv[1:] if argv is None else argv)])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")  # a command writes files: no GUI backend
    try:
        return run(args)
    except ProbeError as exc:
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
