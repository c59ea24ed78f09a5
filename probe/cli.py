"""The ``probe`` command: thin wrappers over the Python API.

Every user error is one line on stderr (``probe: error: ...``) and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from .errors import ProbeError
from .encoders import DEFAULT_MODEL
from .options import INPUT_HELP, LAYER_NOTE, MODEL_HELP


_COMMANDS: dict[str, Callable] = {}


def command(name: str):
    def deco(fn):
        _COMMANDS[name] = fn
        return fn
    return deco


# ----------------------------------------------------------------------------- extract
@command("extract")
def cmd_extract(args) -> int:
    from .data import get_corpus
    from .encoders import resolve_encoder
    from .extraction import extract_corpus
    from .languages import parse_langs

    cdef = get_corpus(args.corpus)
    langs = parse_langs(args.lang)
    split = args.split or cdef.splits[0]
    for lang in langs:  # validate every language before any download or model load
        cdef.check(lang, split)
    spec = resolve_encoder(args.model)
    loaded = [cdef.load(lang, split, progress=not args.quiet) for lang in langs]
    encoder = None
    for data in loaded:
        from .cache import lock_entry, open_entry, published_here, verify_on_use
        from .extraction import cache_key
        device = None if args.device == "auto" else args.device
        key = cache_key(spec, data, args.pooling, device=device, dtype=args.dtype,
                        input=args.input)
        hit = open_entry(key, checksums=verify_on_use())
        lock = None
        if hit is None:  # wait while another process builds it, then look again
            lock = lock_entry(key)
            hit = open_entry(key)
        try:
            if hit is None and encoder is None:
                encoder = spec.load()
            batch_tokens = args.batch_tokens
            if batch_tokens == "auto" and hit is None:
                from .encoders import pick_device
                from .plan import auto_batch_tokens

                batch_tokens = auto_batch_tokens(encoder.model, pick_device(device), encoder.max_length)
            entry = hit or extract_corpus(spec, data, pooling=args.pooling, batch_tokens=batch_tokens,
                                          device=args.device, progress=not args.quiet, encoder=encoder,
                                          workers=args.workers, dtype=args.dtype,
                                          input=args.input)
        finally:
            if lock is not None:
                lock.release()
        state = "built" if published_here(entry.path) else "cached"
        print(f"{state:6s} {entry.path}  [{entry.n_layers} layers x {entry.n_words} words x "
              f"{entry.hidden}] {entry.n_sentences} sentences")
    return 0


# ----------------------------------------------------------------------------- cache
@command("cache")
def cmd_cache(args) -> int:
    from .cache_admin import run_cache

    return run_cache(args)


# ----------------------------------------------------------------------------- data
@command("data")
def cmd_data(args) -> int:
    from .data import get_corpus, list_corpora
    from .languages import parse_langs

    if args.data_cmd == "ls":
        for name in list_corpora():
            cdef = get_corpus(name)
            langs = [l.code for l in cdef.languages()]
            print(f"{cdef.name:8s} splits={','.join(cdef.splits)}  languages ({len(langs)}): "
                  f"{', '.join(langs)}")
            print(f"         {cdef.description}")
        return 0
    if args.data_cmd == "fetch":
        cdef = get_corpus(args.corpus)
        langs = parse_langs(args.lang) if args.lang else cdef.languages()
        split = args.split or cdef.splits[0]
        for lang in langs:
            data = cdef.load(lang, split)
            print(f"{data.name}/{data.lang}/{data.split}: {len(data.sentences)} sentences, "
                  f"{data.n_words} words ({', '.join(f['relpath'] for f in data.files)})")
        return 0
    raise ProbeError(f"unknown data command {args.data_cmd!r}")


# ----------------------------------------------------------------------------- parser
def _batch_tokens(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or auto, not {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from .extraction import DEFAULT_BATCH_TOKENS
    from .options import add_dtype_option
    p = argparse.ArgumentParser(
        prog="probe",
        description="Layer-probing toolkit for multilingual encoders. " + LAYER_NOTE,
        epilog="Environment: PROBE_HOME (cache and downloads, default ~/.cache/probe); "
               "PROBE_DATA_MIRROR (a local folder or http(s) URL laid out like upstream, "
               "used instead of the upstream downloads).",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error (also: PROBE_DEBUG=1)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the sha256 check of cache files on first use (also: PROBE_NO_VERIFY=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ex = sub.add_parser("extract", help="cache every layer's word vectors for a corpus",
                        description="Run an encoder over a corpus once and cache the hidden states of "
                                    "every layer (float16, word level, plus sentence vectors). "
                                    + LAYER_NOTE)
    ex.add_argument("--model", default=DEFAULT_MODEL, help=MODEL_HELP + " (default: auto)")
    ex.add_argument("--corpus", default="pud", help="registered corpus: pud, ud, tatoeba (default: pud)")
    ex.add_argument("--lang", required=True, help="comma-separated languages, ISO 639-1 or 639-3 (e.g. en,de,zh)")
    ex.add_argument("--split", default=None, help="corpus split (default: the corpus's first split, "
                                                  "see `probe data ls`)")
    ex.add_argument("--pooling", default="first", choices=["first", "mean", "last"],
                    help="subword-to-word pooling (default: first content piece)")
    ex.add_argument("--input", default="words", choices=["words", "text"], help=INPUT_HELP)
    ex.add_argument("--batch-tokens", type=_batch_tokens, default=DEFAULT_BATCH_TOKENS,
                    help=f"token budget per forward batch, padding included, or auto (on CUDA: half the "
                         f"free device memory; elsewhere the default) (default: {DEFAULT_BATCH_TOKENS})")
    ex.add_argument("--workers", type=int, default=None,
                    help="batches run at once on CPU, each with an equal share of torch's threads "
                         "(default: 2 when torch has >= 2 threads; accelerators: 1)")
    ex.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default: auto)")
    add_dtype_option(ex)
    ex.add_argument("--quiet", action="store_true", help="no progress bar")

    ca = sub.add_parser("cache", help="list, verify or remove cache entries",
                        description="Inspect the hidden-state cache under $PROBE_HOME/cache.")
    ca_sub = ca.add_subparsers(dest="cache_cmd", metavar="ACTION", required=True)
    for name, helptext in (("ls", "list entries"), ("verify", "check sizes and sha256 of every file; "
                                                      "exit 1 if any entry is corrupt"),
                           ("rm", "remove matching entries")):
        sp = ca_sub.add_parser(name, help=helptext, description=helptext)
        sp.add_argument("--model", help="only entries of this model name")
        sp.add_argument("--corpus", help="only entries of this corpus")
        sp.add_argument("--lang", help="only entries of these languages (comma-separated)")
        if name == "verify":
            sp.add_argument("--quick", action="store_true", help="sizes only, skip sha256")
        if name == "rm":
            sp.add_argument("keys", nargs="*", metavar="KEY",
                            help="entries to remove: a path, a directory name or a key digest prefix")
            sp.add_argument("--all", action="store_true", help="remove every entry")
            sp.add_argument("--broken", action="store_true",
                            help="remove damaged entries (no meta.json, missing files, bad sha256), "
                                 "orphaned temporaries and stale locks")
            sp.add_argument("--quick", action="store_true", help="with --broken: sizes only, skip sha256")

    da = sub.add_parser("data", help="list or download corpora",
                        description="Corpora are downloaded from upstream (pinned commits, sha256 "
                                    "verified) or from $PROBE_DATA_MIRROR into $PROBE_HOME/data.")
    da_sub = da.add_subparsers(dest="data_cmd", metavar="ACTION", required=True)
    da_sub.add_parser("ls", help="list registered corpora and their languages",
                      description="List registered corpora, splits and languages.")
    fe = da_sub.add_parser("fetch", help="download and verify a corpus",
                           description="Download (or copy from the mirror) and verify corpus files.")
    fe.add_argument("--corpus", required=True, help="registered corpus name (see `probe data ls`)")
    fe.add_argument("--lang", help="comma-separated languages (default: all of the corpus)")
    fe.add_argument("--split", help="split (default: the corpus's first split)")

    # Sub-commands defined next to the API they wrap.
    from . import figures, finetuning, plan
    from .compare import cli as compare_cli
    from .layerwise import cli as layers_cli
    from .transfer import cli as fuse_cli

    for module in (layers_cli, fuse_cli, finetuning, compare_cli, figures, plan):
        before = set(sub.choices)
        module.add_parser(sub)
        for name in set(sub.choices) - before:
            _COMMANDS[name] = module.run
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every failure ends in one line ``probe: error: ...`` (exit 2; 1 for a
    ``cache verify`` that finds damage); ``--debug`` (anywhere on the line) or
    ``PROBE_DEBUG=1`` adds the traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PROBE_DEBUG", "") not in ("", "0")
    no_verify = "--no-verify" in argv
    argv = [a for a in argv if a not in ("--debug", "--no-verify")]
    # the command line alone picks matplotlib's non-interactive backend, for the command only
    from .options import command_environment

    with command_environment(no_verify=no_verify):
        return _run(argv, debug)


def _run(argv: list[str], debug: bool) -> int:
    parser = build_parser()
    _one_line_error(parser)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    from .options import check_args, describe_os_error

    try:
        check_args(args)  # before any data or model is loaded
        return int(_COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        print("probe: interrupted (finished chunks are kept; run the same command to resume)",
              file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one error path of the command line
        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, ProbeError):
            message = str(exc)
        elif isinstance(exc, OSError):
            message = describe_os_error(exc)
        elif isinstance(exc, MemoryError):
            message = "out of memory; use a smaller --batch-tokens or fewer --workers"
        else:
            message = (f"unexpected {type(exc).__name__}: {exc}".rstrip(": ")
                       + ("" if debug else " (rerun with --debug for the traceback)"))
        print(f"probe: error: {' '.join(message.split())}", file=sys.stderr)
        return 2


def _one_line_error(parser) -> None:
    """argparse errors of ``parser`` and every sub-command as one line (usage is in ``--help``)."""
    def error(message: str):
        print(f"probe: error: {message} (see `probe --help`)", file=sys.stderr)
        sys.exit(2)

    def walk(p):
        p.error = error
        for action in p._actions:
            for sub in (getattr(action, "choices", None) or {}).values() if isinstance(
                    action, argparse._SubParsersAction) else ():
                walk(sub)
    walk(parser)


if __name__ == "__main__":
    sys.exit(main())
