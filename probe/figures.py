"""``probe figures``: regenerate the committed figures and their results.

The analyses are the modules of :mod:`probe.analyses`, registered in
:data:`probe.analyses.ANALYSES` in run order (each also runs alone as
``python3 -m probe.analyses.<name>``). Each writes ``results/<name>.json`` and
``figures/<name>.png``/``.pdf`` under ``--out-root`` (default: the source checkout, when the
package is one, else the current folder); extraction and per-layer results are reused from
the cache (``$PROBE_HOME``), so a second run only redraws.

    probe figures                      # every analysis, full size
    probe figures --only cka_heatmaps,language_families --quick
    python3 -m probe.figures --list    # the same without the ``probe`` entry point
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import ProbeError


def repo_root() -> Path | None:
    """The source checkout this package is part of (it has ``pyproject.toml`` next to the
    package, as an editable install does), if any: where the committed results live."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def load_analyses():
    """The analyses registry, :data:`probe.analyses.ANALYSES` (name -> module)."""
    from .analyses import ANALYSES

    return ANALYSES


def _describe(registry) -> str:
    from .analyses import by_default

    return "\n".join(f"  {name:18s} {getattr(registry[name], 'CLAIM', '')}"
                     + ("" if by_default(name) else " (only with --only)") for name in registry)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``figures`` command to an ``argparse`` subparsers object; returns its parser."""
    listing = "\n\nAnalyses (run in this order):\n" + _describe(load_analyses())
    p = subparsers.add_parser(
        "figures", help="regenerate every figure and its results JSON (probe.analyses)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Run the analyses of probe.analyses, each answering one question with the public\n"
            "probe API, and write results/<name>.json (every number with model, data, seeds and\n"
            "code version) and figures/<name>.png + .pdf under --out-root.\n"
            "Extraction and per-layer results are cached in $PROBE_HOME, so a re-run is fast.\n"
            "One analysis alone: python3 -m probe.analyses.<name> [--quick].\n"
            "Layer 0 is the embedding output; layer L is the last transformer layer." + listing),
        epilog="See figures/README.md for what each figure claims and its budget.")
    p.add_argument("--model", default="e5-small-q4",
                   help="encoder for every analysis (default: e5-small-q4, works offline)")
    p.add_argument("--only", default=None, metavar="NAME[,NAME...]",
                   help="comma-separated analyses to run (default: all but those marked 'only with "
                        "--only', in registry order)")
    p.add_argument("--quick", action="store_true",
                   help="small subsets (a few languages, a tiny fusion sweep): a smoke run in minutes; "
                        "do not commit its outputs")
    p.add_argument("--out-root", default=None, metavar="DIR",
                   help="where results/ and figures/ are written (default: the source checkout's "
                        "root, else the current folder)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads for extraction and probes (default: torch's own choice; "
                        "1 is often faster on a machine busy with other work)")
    p.add_argument("--list", action="store_true", help="list the analyses and exit")
    p.add_argument("--keep-going", action="store_true",
                   help="run the remaining analyses after one fails (exit status 1 at the end)")
    return p


def run(args) -> int:
    """Run the selected analyses; prints every file written. Returns the exit status."""
    from .analyses import by_default

    registry = load_analyses()
    if getattr(args, "list", False):
        print(_describe(registry))
        return 0
    names = [n for n in registry if by_default(n)]
    if args.only:
        names = [registry.canonical(n) for n in args.only.split(",") if n.strip()]  # one error if unknown
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
    from .options import command_environment

    try:
        with command_environment():  # a command writes files: no GUI backend
            return run(args)
    except ProbeError as exc:
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
