"""Extraction over several processes (CPU cores, or GPUs) with ``torch.distributed``.

Every process ("rank") computes its share of the extraction chunks (chunk ``i`` goes to
rank ``i % world``), then rank 0 assembles the chunks and publishes the cache entry
with one atomic rename. The result is the very entry a single process would build
(same content address, same arrays), so everything downstream reads it as usual.

Launch under ``torchrun`` (backend gloo on CPU, nccl when every local rank has a GPU)::

    torchrun --standalone --nproc_per_node=2 -m probe.distributed \\
        --model e5-small-q4 --corpus ud --lang en --split dev+test

(``torchrun ... probe/distributed.py ...`` works too), or without torchrun::

    python -m probe.distributed --nproc 2 --model e5-small-q4 --corpus pud --lang de

which starts the processes with ``torch.multiprocessing.spawn`` on a free localhost port.
Each rank limits torch to ``cores // local_world`` threads, so the ranks share the
machine's cores instead of oversubscribing them.

Steps (all ranks unless said otherwise):

1. rank 0 resolves the model and loads the corpus first (a model conversion or a data
   download happens once, not concurrently), barrier, then the others do;
2. every rank loads the encoder; rank 0 prepares the ``.partial`` chunk directory (a
   stale one with another chunk plan is discarded there, before anyone writes), barrier;
3. every rank runs ``extract_corpus(..., shard=(rank, world), publish=False)``; chunks
   finished by an earlier, interrupted run are kept, not recomputed; barrier;
4. rank 0 runs ``extract_corpus(...)`` once more: all chunks are present, so it only
   assembles them and publishes the entry atomically (it computes nothing and fails
   loudly if a chunk is missing); barrier; every rank returns the entry.

>>> entry = extract_distributed("e5-small-q4", "pud", "de", "test")   # doctest: +SKIP
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:  # run as a script path (torchrun probe/distributed.py)
    import os as _os

    _here = _os.path.dirname(_os.path.abspath(__file__))
    # The package directory itself must not shadow top-level modules (e.g. our cache.py, stats.py).
    sys.path[:] = [p for p in sys.path if _os.path.abspath(p or ".") != _here]

import argparse
import importlib
import json
import os
import socket
from dataclasses import dataclass
from typing import Callable

from probe.errors import ProbeError
from probe.extraction import DEFAULT_BATCH_TOKENS, POOLINGS
from probe.threads import torch_threads

__all__ = ["extract_distributed", "DistInfo", "dist_info", "main"]

# How long a rank waits at a barrier (and for any collective) before the job fails. The
# torch default, 10 minutes, is shorter than what rank 0 may legitimately take alone:
# downloading xlm-roberta-large (2.2 GB) or assembling and checksumming a ~10 GB entry
# (PAN-X en train, 25 layers x 1024) while the other ranks wait. $PROBE_DIST_TIMEOUT
# (seconds), ``timeout_s=`` or ``--timeout`` override it.
DEFAULT_TIMEOUT_S = 3 * 3600


def dist_timeout(timeout_s: float | None = None) -> float:
    """The barrier timeout in seconds: ``timeout_s``, else $PROBE_DIST_TIMEOUT, else
    :data:`DEFAULT_TIMEOUT_S`."""
    raw = timeout_s if timeout_s is not None else os.environ.get("PROBE_DIST_TIMEOUT", "").strip() or None
    if raw is None:
        return float(DEFAULT_TIMEOUT_S)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = -1.0
    if not value > 0:
        src = "timeout_s" if timeout_s is not None else "PROBE_DIST_TIMEOUT"
        raise ProbeError(f"{src}={raw!r}: expected a number of seconds > 0")
    return value


# ``shard=(1, 1)`` names a rank that owns no chunk (``i % 1 == 0 != 1``): extract_corpus then
# only sets up the chunk directory, or (with publish=True) only assembles and publishes.
_NO_CHUNKS = (1, 1)


@dataclass
class DistInfo:
    rank: int
    world: int
    local_rank: int
    local_world: int


def dist_info() -> DistInfo:
    """This process's place in the job: from an initialised process group, else torchrun's
    environment variables, else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return DistInfo(rank, world, local_rank, local_world)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load_object(ref: str) -> Callable:
    """``"package.module:function"`` -> the function."""
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise ProbeError(f"a factory must look like module:function, not {ref!r}")
    try:
        obj = importlib.import_module(mod)
    except ImportError as exc:
        raise ProbeError(f"cannot import {mod!r} for factory {ref!r}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ProbeError(f"{mod!r} has no {attr!r} (factory {ref!r})") from None
    if not callable(obj):
        raise ProbeError(f"factory {ref!r} is not callable")
    return obj


def _resolve_spec(model):
    from probe.encoders import EncoderSpec, resolve_encoder

    if isinstance(model, str):
        return resolve_encoder(model)
    if isinstance(model, EncoderSpec):
        return model
    if callable(model):  # a spec factory (e.g. tests' tiny random encoder)
        spec = model()
        if not isinstance(spec, EncoderSpec):
            raise ProbeError(f"spec factory {model!r} returned {type(spec).__name__}, not an EncoderSpec")
        return spec
    raise ProbeError(f"model must be a name, an EncoderSpec or a spec factory, not {type(model).__name__}")


def _resolve_corpus(corpus, lang, split, progress):
    from probe.data import get_corpus

    if isinstance(corpus, str):
        if not lang:
            raise ProbeError("a registered corpus needs a language")
        cdef = get_corpus(corpus)
        return cdef.load(lang, split or cdef.splits[0], progress=progress)
    if callable(corpus) and not hasattr(corpus, "sentences"):  # a corpus factory
        corpus = corpus()
    if not hasattr(corpus, "sentences"):
        raise ProbeError(f"corpus must be a registered name, a loaded corpus or a factory, "
                         f"not {type(corpus).__name__}")
    return corpus


def _barrier(dist, backend: str, local_rank: int) -> None:
    if backend == "nccl":
        dist.barrier(device_ids=[local_rank])
    else:
        dist.barrier()


def extract_distributed(model, corpus, lang: str | None = None, split: str | None = None,
                        pooling: str = "first", *, batch_tokens: int = DEFAULT_BATCH_TOKENS,
                        device: str | None = None, progress: bool = True, threads: int | None = None,
                        backend: str | None = None, log: Callable[[str], None] | None = None,
                        dtype: str = "float32", timeout_s: float | None = None):
    """Extract one corpus split with every rank of a ``torch.distributed`` job.

    Call it on every rank (under ``torchrun``, or after ``init_process_group``); a process
    group is created from the environment when none exists and destroyed afterwards. Outside
    a distributed job (no ``WORLD_SIZE``) it is a plain single-process extraction.

    ``model``: a model name, an :class:`~probe.encoders.EncoderSpec`, or a zero-argument
    factory returning one (specs built in code, e.g. for tests). ``corpus``: a registered
    corpus name (with ``lang`` and ``split``), a loaded corpus, or a zero-argument factory.
    ``threads``: torch threads per rank (default: the process's cores // ranks on this node).
    ``backend``: default ``nccl`` when the device is CUDA and every local rank has a GPU,
    else ``gloo``. ``dtype``: the forward's precision, as for :func:`~probe.extraction.extract`.
    ``timeout_s``: how long a rank waits for the others (see :func:`dist_timeout`).

    Returns the published :class:`~probe.cache.CacheEntry` on every rank.
    """
    if pooling not in POOLINGS:
        raise ProbeError(f"unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    from probe.extraction import check_dtype

    check_dtype(dtype)
    timeout = dist_timeout(timeout_s)
    info = dist_info()
    log = log or _log_line
    with torch_threads(int(threads) if threads else max(1, _cores() // max(1, info.local_world))):
        return _extract(model, corpus, lang, split, pooling, batch_tokens, device, progress, backend,
                        log, info, dtype, timeout)


def _log_line(msg: str) -> None:
    """One line to stderr in a single write: lines of several ranks sharing a pipe never
    interleave (``print`` writes the text and the newline separately). A write to a pipe
    is atomic up to PIPE_BUF (4096 bytes on Linux); these lines are far shorter."""
    sys.stderr.flush()
    os.write(sys.stderr.fileno(), (msg + "\n").encode("utf-8", "replace"))


def _extract(model, corpus, lang, split, pooling, batch_tokens, device, progress, backend, log, info,
             dtype="float32", timeout=float(DEFAULT_TIMEOUT_S)):
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from probe.cache import open_entry
    from probe.encoders import pick_device
    from probe.extraction import cache_key, extract_corpus

    device = pick_device(device)
    use_cuda = device.startswith("cuda")
    if use_cuda and info.world > 1:
        if torch.cuda.device_count() < info.local_world:
            raise ProbeError(f"{info.local_world} ranks on this node but {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(info.local_rank)
        device = f"cuda:{info.local_rank}"

    if info.world == 1 and not (dist.is_available() and dist.is_initialized()):
        spec = _resolve_spec(model)
        data = _resolve_corpus(corpus, lang, split, progress)
        return extract_corpus(spec, data, pooling=pooling, batch_tokens=batch_tokens, device=device,
                              progress=progress, encoder=None, dtype=dtype)

    own_group = not dist.is_initialized()
    if own_group:
        backend = backend or ("nccl" if use_cuda and dist.is_nccl_available() else "gloo")
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
    backend = dist.get_backend()
    rank, world = dist.get_rank(), dist.get_world_size()

    def barrier():
        _barrier(dist, backend, info.local_rank)

    try:
        # 1. one-time side effects (model conversion, downloads) on rank 0 first
        if rank == 0:
            spec = _resolve_spec(model)
            data = _resolve_corpus(corpus, lang, split, progress)
        barrier()
        if rank != 0:
            spec = _resolve_spec(model)
            data = _resolve_corpus(corpus, lang, split, False)
        key = cache_key(spec, data, pooling, device=device, dtype=dtype)
        common = dict(pooling=pooling, batch_tokens=batch_tokens, device=device, dtype=dtype)

        hit = open_entry(key)
        encoder = None if hit is not None else spec.load()
        # 2. rank 0 alone sets up the chunk directory (discarding a stale plan) before anyone writes
        if rank == 0 and hit is None:
            extract_corpus(spec, data, progress=False, encoder=encoder, shard=_NO_CHUNKS, publish=False,
                           **common)
        barrier()
        # 3. every rank computes its chunks
        if hit is None:
            extract_corpus(spec, data, progress=progress and rank == 0, encoder=encoder,
                           shard=(rank, world), publish=False, **common)
        n_chunks = _n_chunks(key)
        mine = [i for i in range(n_chunks) if i % world == rank] if n_chunks is not None else []
        barrier()
        # 4. rank 0 assembles and publishes (computes nothing: shard that owns no chunk)
        published = False
        if rank == 0:
            before = open_entry(key)
            entry = before or extract_corpus(spec, data, progress=False, encoder=encoder,
                                             shard=_NO_CHUNKS, publish=True, **common)
            published = before is None
        barrier()
        if rank != 0:
            entry = open_entry(key)
            if entry is None:
                raise ProbeError(f"rank {rank}: entry {key.path.name} missing after rank 0 published it")
        log("probe.distributed: " + json.dumps({
            "rank": rank, "world": world, "backend": backend, "threads": torch.get_num_threads(),
            "cached": hit is not None, "chunks": len(mine) if hit is None else 0,
            "of": n_chunks, "published": published, "entry": str(entry.path)}))
        return entry
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def _n_chunks(key) -> int | None:
    """Number of chunks in the plan of ``key``'s partial directory (None once published)."""
    plan = key.path.with_name(key.path.name + ".partial") / "plan.json"
    try:
        return len(json.loads(plan.read_text())["chunks"])
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    from .options import add_dtype_option

    p = argparse.ArgumentParser(
        prog="python -m probe.distributed",
        description="Extract one corpus split with several processes (run under torchrun, or "
                    "with --nproc N), publishing the same cache entry as `probe extract`.")
    m = p.add_mutually_exclusive_group(required=True)
    m.add_argument("--model", help="encoder name, as for `probe extract` (e.g. e5-small-q4)")
    m.add_argument("--spec-factory", metavar="MODULE:FUNCTION",
                   help="a function returning an EncoderSpec (encoders built in code, e.g. tests)")
    c = p.add_mutually_exclusive_group(required=True)
    c.add_argument("--corpus", help="registered corpus: pud, ud, tatoeba, ...")
    c.add_argument("--corpus-factory", metavar="MODULE:FUNCTION",
                   help="a function returning a loaded corpus (e.g. tests)")
    p.add_argument("--lang", help="language (with --corpus)")
    p.add_argument("--split", default=None, help="split (default: the corpus's first split)")
    p.add_argument("--pooling", default="first", choices=list(POOLINGS))
    p.add_argument("--batch-tokens", type=int, default=DEFAULT_BATCH_TOKENS)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    add_dtype_option(p)
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help=f"how long a rank waits for the others at a barrier (default: $PROBE_DIST_TIMEOUT "
                        f"or {DEFAULT_TIMEOUT_S} s: rank 0 may download a large model or publish a "
                        f"~10 GB entry alone)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per rank (default: cores // ranks per node)")
    p.add_argument("--nproc", type=int, default=None,
                   help="start this many processes with torch.multiprocessing.spawn (gloo/nccl on a "
                        "free localhost port) instead of running under torchrun")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _run(args) -> None:
    model = _load_object(args.spec_factory) if args.spec_factory else args.model
    corpus = _load_object(args.corpus_factory) if args.corpus_factory else args.corpus
    entry = extract_distributed(model, corpus, args.lang, args.split, args.pooling,
                                batch_tokens=args.batch_tokens, device=args.device,
                                progress=not args.quiet, threads=args.threads, dtype=args.dtype,
                                timeout_s=args.timeout)
    if dist_info().rank == 0:
        print(f"{entry.path}  [{entry.n_layers} layers x {entry.n_words} words x {entry.hidden}] "
              f"{entry.n_sentences} sentences", flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, nproc: int, port: int, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      WORLD_SIZE=str(nproc), LOCAL_RANK=str(local_rank), LOCAL_WORLD_SIZE=str(nproc))
    _run(args)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        if args.nproc and args.nproc > 1:
            if "WORLD_SIZE" in os.environ:
                raise ProbeError("--nproc starts its own processes; do not combine it with torchrun")
            import torch.multiprocessing as mp

            try:
                mp.spawn(_spawned, args=(args.nproc, _free_port(), args), nprocs=args.nproc, join=True)
            except mp.ProcessRaisedException as exc:
                print(f"probe: error: a rank failed:\n{exc}", file=sys.stderr)
                return 1
        else:
            _run(args)
    except ProbeError as exc:
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
