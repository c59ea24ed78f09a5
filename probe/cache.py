"""The hidden-state cache: one content-addressed entry per
(model, corpus, language, split, subword pooling).

An entry is a directory under ``$PROBE_HOME/cache/<model>/``::

    meta.json                 everything needed to reproduce the entry (+ file checksums)
    layer_00.npy .. layer_L.npy   float16 [n_words, hidden], one per layer (0 = embeddings)
    sent_mean.npy             float16 [L+1, n_sentences, hidden]  mean of the word vectors
    sent_first.npy            float16 [L+1, n_sentences, hidden]  first token (<s>/[CLS])
    offsets.npy               int64   [n_sentences + 1]  word boundaries of each sentence
    words.json, sent_ids.json the words and sentence ids, in corpus order
    <label>.npy               int16/int32 [n_words] label arrays (upos, deprel, head, segment)

The directory name ends in a digest of the model fingerprint, the corpus files' sha256,
the pooling and :data:`FORMAT_VERSION`, so an entry can never be stale or mixed: any
change gives a different entry. Entries are built in ``<name>.partial/`` (chunk by chunk,
so an interrupted extraction resumes) and published with one atomic ``rename``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import CacheError
from .files import atomic_open, atomic_write_json, durable_open, sha256_file
from .paths import cache_dir

FORMAT_VERSION = 1


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "x"


@dataclass(frozen=True)
class CacheKey:
    """What determines an entry's content. ``digest`` is its content address."""

    model: str
    model_fingerprint: str
    corpus: str
    lang: str
    split: str
    corpus_sha256: str
    pooling: str
    extractor: str = ""  # extractor settings that change numbers (window size, stride)
    # What the model reads (probe.alignment.INPUTS): "words" (pre-split) or "text". The
    # default is left out of the digest, so entries made before the field existed keep
    # their address; any other value gives new entries.
    input: str = "words"

    @property
    def digest(self) -> str:
        fields = dict(self.__dict__)
        if fields["input"] == "words":
            del fields["input"]
        payload = json.dumps({**fields, "format": FORMAT_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    @property
    def path(self) -> Path:
        mode = "" if self.input == "words" else f".{slug(self.input)}"
        name = (f"{slug(self.corpus)}.{slug(self.lang)}.{slug(self.split)}.{self.pooling}{mode}."
                f"{self.digest[:16]}")
        return cache_dir() / slug(self.model) / name


def human_bytes(n: float) -> str:
    """``123456789`` -> ``"117.7 MiB"`` (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path) as f:
        np.save(f, array)  # any dtype (probe classes may be strings or objects)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez(path, **arrays)``, atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def _write_npy_to(f, array: np.ndarray) -> str:
    """Write ``array`` to the open binary file ``f`` in ``np.save``'s exact format and
    return the sha256 of the bytes written, taken from memory (never read back)."""
    import io

    array = np.ascontiguousarray(array)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, np.lib.format.header_data_from_array_1_0(array))
    h = hashlib.sha256(head.getvalue())
    body = memoryview(array.reshape(-1)).cast("B") if array.size else b""
    h.update(body)  # hashlib releases the GIL on large buffers, so writers can overlap
    f.write(head.getvalue())
    f.write(body)
    return h.hexdigest()


def write_npy(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as a ``.npy`` file, fsynced, and return the file's sha256.

    Not atomic by itself: for files inside a directory that is published by one rename.
    """
    with durable_open(path) as f:
        return _write_npy_to(f, array)


class CacheEntry:
    """A finished entry, opened read-only and memory-mapped.

    >>> e = CacheEntry(path)                         # doctest: +SKIP
    >>> X = e.layer(12)                              # [n_words, hidden] float16 memmap
    >>> S = e.sentence_vectors(12, "mean")           # [n_sentences, hidden]
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        try:
            self.meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise CacheError(f"{self.path}: not a cache entry (no meta.json)") from None
        except ValueError as exc:
            raise CacheError(f"{meta_path}: unreadable meta.json ({exc})") from None
        self._words = None

    # -- shape facts
    @property
    def n_layers(self) -> int:
        """Number of hidden-state layers stored, L + 1 (0 = embeddings .. L = last)."""
        return int(self.meta["n_layers"]) + 1

    @property
    def last_layer(self) -> int:
        return int(self.meta["n_layers"])

    @property
    def hidden(self) -> int:
        return int(self.meta["hidden"])

    @property
    def n_words(self) -> int:
        return int(self.meta["n_words"])

    @property
    def n_sentences(self) -> int:
        return int(self.meta["n_sentences"])

    @property
    def model(self) -> str:
        return self.meta["model"]["name"]

    @property
    def lang(self) -> str:
        return self.meta["corpus"]["lang"]

    def _npy(self, name: str) -> np.ndarray:
        path = self.path / name
        _check_on_first_use(self, name)
        try:
            return np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise CacheError(f"{path}: missing from cache entry") from None
        except ValueError as exc:
            raise CacheError(f"{path}: corrupt array ({exc}); run `probe cache verify`") from None

    def layer(self, i: int) -> np.ndarray:
        """Word vectors of layer ``i``: float16 memmap ``[n_words, hidden]``."""
        if not -self.n_layers <= i < self.n_layers:
            raise CacheError(f"layer {i} out of range 0..{self.last_layer}")
        return self._npy(f"layer_{i % self.n_layers:02d}.npy")

    def sentence_vectors(self, i: int, kind: str = "mean") -> np.ndarray:
        """Sentence vectors of layer ``i``: ``[n_sentences, hidden]`` (``mean`` or ``first``)."""
        if kind not in ("mean", "first"):
            raise CacheError(f"sentence vector kind must be 'mean' or 'first', not {kind!r}")
        return self._npy(f"sent_{kind}.npy")[i]

    @property
    def offsets(self) -> np.ndarray:
        """``[n_sentences + 1]`` int64: words of sentence s are ``offsets[s]:offsets[s+1]``."""
        return self._npy("offsets.npy")

    @property
    def input(self) -> str:
        """What the model read: ``"words"`` (pre-split) or ``"text"`` (see :mod:`probe.alignment`)."""
        return self.meta.get("input", {}).get("mode", "words")

    @property
    def flagged(self) -> np.ndarray:
        """``[n_words]`` bool: words without a piece of their own (``input="text"`` only;
        all False for pre-split words, where every word has its own pieces)."""
        if (self.path / "flagged.npy").exists():
            return self._npy("flagged.npy")
        return np.zeros(self.n_words, dtype=bool)

    @property
    def segment(self) -> np.ndarray | None:
        """``[n_words]`` int8: 0 = first sentence of a pair, 1 = second (None if not pairs)."""
        return self._npy("segment.npy") if (self.path / "segment.npy").exists() else None

    def _label_column(self, name: str) -> str:
        """The stored column for ``name``: a column as stored (UD's ``upos``, XTREME's ``tags``)
        or a probing task's name (``pos`` reads ``upos``), so the task vocabulary works here too."""
        from .tasks import PROBE_TASKS

        have = self.meta.get("labels", {})
        if name not in have and name in PROBE_TASKS and PROBE_TASKS[name].column in have:
            return PROBE_TASKS[name].column
        return name

    def has_labels(self, name: str) -> bool:
        return self._label_column(name) in self.meta.get("labels", {})

    def labels(self, name: str) -> np.ndarray:
        """Label ids: ``[n_words]`` for ``upos`` (or the task name ``pos``), ``deprel``, ``head``,
        ``tags``; ``[n_sentences]`` for a sentence-level ``label``; -1 = missing."""
        if not self.has_labels(name):
            raise CacheError(f"{self.path}: no '{name}' labels (have: {sorted(self.meta.get('labels', {}))})")
        return self._npy(f"{self._label_column(name)}.npy")

    def vocab(self, name: str) -> list[str]:
        """Names of the label ids of ``labels(name)``."""
        return list(self.meta["labels"][self._label_column(name)]["vocab"])

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = json.loads((self.path / "words.json").read_text())
        return self._words

    @property
    def flat_words(self) -> list[str]:
        """``[n_words]`` word strings, aligned with the rows of :meth:`layer`."""
        return [w for sent in self.words for w in sent]

    @property
    def sent_ids(self) -> list[str]:
        return json.loads((self.path / "sent_ids.json").read_text())

    @property
    def disk_bytes(self) -> int:
        return sum(int(f["size"]) for f in self.meta.get("files", {}).values())

    def __repr__(self) -> str:
        c = self.meta["corpus"]
        return (f"CacheEntry({self.model} {c['name']}/{c['lang']}/{c['split']} pooling={self.meta['pooling']}: "
                f"{self.n_layers} layers x [{self.n_words}, {self.hidden}], {self.n_sentences} sentences)")

    # -- integrity
    def verify(self, checksums: bool = True) -> list[str]:
        """Problems found (empty list = healthy): missing files, wrong sizes, bad sha256."""
        problems = []
        for name, info in self.meta.get("files", {}).items():
            p = self.path / name
            if not p.exists():
                problems.append(f"{name}: missing")
                continue
            size = p.stat().st_size
            if size != info["size"]:
                problems.append(f"{name}: size {size} != recorded {info['size']} (truncated or modified)")
                continue
            if checksums and sha256_file(p) != info["sha256"]:
                problems.append(f"{name}: sha256 differs from the recorded one")
        if not self.meta.get("files"):
            problems.append("meta.json records no files")
        return problems


def open_entry(key: CacheKey, *, checksums: bool = False) -> CacheEntry | None:
    """The finished entry for ``key``, or None if it has not been built.

    A damaged or incomplete entry (no or unreadable ``meta.json``, a file missing or of the
    wrong size; with ``checksums=True`` also a file whose sha256 differs) counts as not
    built: it is removed, with a one-line notice, so the caller rebuilds it in place.
    Temporaries of dead processes beside it are removed too.
    """
    path = key.path
    clean_orphans(path.parent)
    if not path.exists():
        return None
    try:
        entry = CacheEntry(path)
        problems = entry.verify(checksums=checksums)
    except (CacheError, OSError, KeyError, TypeError) as exc:
        entry, problems = None, [str(exc).replace(f"{path}: ", "")]
    if not problems:
        if checksums and entry is not None:
            _mark_verified(entry)
        return entry
    _notice(f"cache entry {path} is damaged ({problems[0]}"
            + (f"; {len(problems) - 1} more problems" if len(problems) > 1 else "") + "); rebuilding it")
    discard_dir(path)
    return None


def lock_entry(key: CacheKey):
    """Take ``key``'s build lock, waiting while another process holds it; returns the
    :class:`~probe.locks.EntryLock` (``release()`` it). Taken before a model is loaded, so a
    second process waits without loading one; this process's :class:`EntryBuilder` then
    takes the lock over."""
    from .locks import EntryLock

    key.path.parent.mkdir(parents=True, exist_ok=True)
    lock = EntryLock(key.path)
    lock.acquire()
    return lock


def _notice(message: str) -> None:
    import sys

    print(f"probe: {message}", file=sys.stderr)


def iter_entries(root: Path | None = None) -> Iterator[CacheEntry]:
    root = Path(root) if root else cache_dir()
    if not root.exists():
        return
    for meta in sorted(root.glob("*/*/meta.json")):
        if meta.parent.name.endswith((".partial", ".tmp")) or ".tmp-" in meta.parent.name:
            continue
        try:
            yield CacheEntry(meta.parent)
        except CacheError:
            continue


def remove_entry(entry: CacheEntry) -> None:
    """Delete an entry: renamed away first so a half-deleted entry is never seen as valid."""
    discard_dir(entry.path)


def discard_dir(path: Path) -> None:
    """Delete a directory of the cache: first renamed to ``<name>.tmp-rm-<pid>`` (one atomic
    step, so it is never seen half-deleted; if this process dies during the delete, the
    next run removes the rest)."""
    path = Path(path)
    trash = path.with_name(path.name + f".tmp-rm-{os.getpid()}")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


class EntryBuilder:
    """Builds one entry: resumable chunks in ``<entry>.partial/``, then an atomic publish.

    The chunk plan (which sentences each chunk holds) is recorded in ``plan.json``; a
    partial directory whose plan differs is discarded rather than mixed.
    """

    def __init__(self, key: CacheKey, plan: dict, *, lock: bool = True):
        self.key = key
        self.final = key.path
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.plan = plan
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self._lock = None
        #: the entry, when another process published it while this one waited for the lock
        self.finished: CacheEntry | None = None
        if lock:  # one builder per entry; a second process waits, then reads the result
            from .locks import EntryLock

            self._lock = EntryLock(self.final)
            self._lock.acquire()
            self.finished = open_entry(key)
            if self.finished is not None:
                self.release()
                return
        self.partial.mkdir(parents=True, exist_ok=True)
        clean_orphans(self.partial)  # chunk files half-written by a killed process
        self._sha256: dict[str, str] = {}
        plan_path = self.partial / "plan.json"
        plan_json = json.loads(json.dumps(plan))
        if plan_path.exists():
            try:
                old = json.loads(plan_path.read_text())
            except ValueError:
                old = None
            if old != plan_json:
                shutil.rmtree(self.partial)
                self.partial.mkdir(parents=True)
        if not plan_path.exists():
            atomic_write_json(plan_path, plan_json)

    def release(self) -> None:
        """Let the next builder of this entry go (also done when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def chunk_path(self, i: int) -> Path:
        return self.partial / f"chunk_{i:05d}.npz"

    def has_chunk(self, i: int) -> bool:
        p = self.chunk_path(i)
        if not p.exists():
            return False
        try:
            with np.load(p) as z:
                z["words"].shape  # noqa: B018 - forces the zip directory to be read
            return True
        except Exception:
            p.unlink(missing_ok=True)  # a torn chunk is redone, never trusted
            return False

    def write_chunk(self, i: int, **arrays: np.ndarray) -> None:
        atomic_save_npz(self.chunk_path(i), **arrays)

    def read_chunk(self, i: int):
        return np.load(self.chunk_path(i))

    def save_array(self, tmp: Path, name: str, array: np.ndarray) -> None:
        """Write ``tmp/name`` during ``publish`` and remember its checksum (thread-safe)."""
        self._sha256[name] = write_npy(tmp / name, array)

    def publish(self, build_dir_fn) -> CacheEntry:
        """Call ``build_dir_fn(tmp_dir) -> meta`` to write the final files, then rename.

        ``meta`` gets the file list with sizes and sha256 added before it is written.
        """
        tmp = self.final.with_name(self.final.name + f".tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self._sha256.clear()
        try:
            meta = build_dir_fn(tmp)
            files = {}
            for p in sorted(tmp.iterdir()):
                sha = self._sha256.get(p.name) or sha256_file(p)
                files[p.name] = {"size": p.stat().st_size, "sha256": sha}
            meta["files"] = files
            meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            atomic_write_json(tmp / "meta.json", meta)
            if self.final.exists() and _healthy(self.final):
                # Another process finished the same entry first: same key, same content.
                shutil.rmtree(tmp)
            else:
                if self.final.exists():  # a damaged or incomplete entry: replaced in place
                    discard_dir(self.final)
                os.replace(tmp, self.final)
        except BaseException:
            # The lock stays held while the caller saves its unsaved chunks; it is let go
            # when this builder is dropped, or taken over by this process's next builder.
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(self.partial, ignore_errors=True)
        self.release()
        _PUBLISHED_HERE.add(str(self.final))
        entry = CacheEntry(self.final)
        _mark_verified(entry)  # its checksums were just taken from the bytes written
        return entry


_PUBLISHED_HERE: set[str] = set()


def published_here(path: Path) -> bool:
    """Whether this process built (published) the entry at ``path`` (else it found it)."""
    return str(path) in _PUBLISHED_HERE


def _healthy(path: Path) -> bool:
    try:
        return not CacheEntry(path).verify(checksums=False)
    except (CacheError, OSError, KeyError, TypeError):
        return False


# --------------------------------------------------------------------------- checks on use
# A file's recorded sha256 is checked the first time a process opens it (files are
# immutable once published, so once per process is enough); PROBE_NO_VERIFY=1 (the
# command line's --no-verify) skips it.
_VERIFIED: set[tuple[str, int, int]] = set()


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path), st.st_size, st.st_mtime_ns


def verify_on_use() -> bool:
    return os.environ.get("PROBE_NO_VERIFY", "") in ("", "0")


def _mark_verified(entry: CacheEntry) -> None:
    for name in entry.meta.get("files", {}):
        stamp = _stamp(entry.path / name)
        if stamp is not None:
            _VERIFIED.add(stamp)


def _check_on_first_use(entry: CacheEntry, name: str) -> None:
    if not verify_on_use():
        return
    path = entry.path / name
    stamp = _stamp(path)
    if stamp is None or stamp in _VERIFIED:
        return  # a missing file is reported by the caller
    info = entry.meta.get("files", {}).get(name)
    if info is None:
        return
    problem = None
    if stamp[1] != info.get("size"):
        problem = f"size {stamp[1]} != recorded {info.get('size')}"
    elif sha256_file(path) != info.get("sha256"):
        problem = "sha256 differs from the one recorded in meta.json"
    if problem is None:
        _VERIFIED.add(stamp)
        return
    try:
        discard_dir(entry.path)
        done = "the entry was removed; run the same command again to rebuild it"
    except OSError as exc:
        done = f"it could not be removed ({exc.strerror}); run `probe cache rm --broken`"
    raise CacheError(f"{path}: damaged ({problem}); {done} (or skip this check with --no-verify)")


# --------------------------------------------------------------------------- temporaries
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tmp_owner(name: str) -> int | None:
    """The pid in ``<entry>.tmp-<pid>`` / ``<entry>.tmp-rm-<pid>`` / ``.<file>.<pid>.<tid>.tmp``."""
    import re

    m = re.search(r"\.tmp-(?:rm-)?(\d+)$", name) or re.fullmatch(r"\..+\.(\d+)\.\d+\.tmp", name)
    return int(m.group(1)) if m else None


def orphans(folder: Path) -> list[Path]:
    """Temporaries in ``folder`` (one model's directory, or an entry's ``.partial``) whose
    process is gone: an interrupted publish, delete or atomic write."""
    out = []
    try:
        names = os.listdir(folder)
    except OSError:
        return out
    for name in names:
        pid = tmp_owner(name)
        if pid is not None and not _pid_alive(pid):
            out.append(Path(folder) / name)
    return out


_CLEANED: set[str] = set()


def clean_orphans(folder: Path, *, force: bool = False) -> list[Path]:
    """Remove :func:`orphans` of ``folder`` (once per process and folder unless ``force``)."""
    key = str(folder)
    if key in _CLEANED and not force:
        return []
    _CLEANED.add(key)
    removed = []
    for p in orphans(folder):
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
        except OSError:
            continue  # e.g. a read-only cache: reported by `probe cache verify`
    return removed


def code_version(*code) -> str:
    """A digest of the code that computes a memoised result: the package version plus the
    source text of each function, class or module in ``code`` (a string counts as itself).
    With no ``code``, every module of the package: any edit then invalidates."""
    import inspect
    import types

    from . import __version__

    if not code:
        root = Path(__file__).resolve().parent
        code = tuple(sorted(root.rglob("*.py")))
    h = hashlib.sha256(f"probe {__version__}".encode())
    for obj in code:
        if isinstance(obj, Path):
            text = obj.read_text()
        elif isinstance(obj, str):
            text = obj
        elif isinstance(obj, types.ModuleType):
            text = Path(obj.__file__).read_text()
        else:
            text = _package_relative(inspect.getsource(obj), getattr(obj, "__module__", None))
        h.update(b"\0" + text.encode())
    return h.hexdigest()[:20]


_RELATIVE_IMPORT = re.compile(r"^(\s*from )(\.+)([\w.]*)( import )", re.MULTILINE)


def _package_relative(source: str, module: str | None) -> str:
    """``source`` with each relative import written as seen from a top-level module of the
    package (``from ..cache import`` in ``probe.transfer.runs`` reads ``from .cache import``),
    so moving a function unchanged into a subpackage keeps its :func:`code_version`: the
    dots depend on where the file lies, not on what the code computes. Outside the
    package, or where an import climbs above it, the source is left as it is."""
    if not module or not module.startswith(__package__ + "."):
        return source
    import sys

    parts = module.split(".")
    package = parts if hasattr(sys.modules.get(module), "__path__") else parts[:-1]

    def canonical(m: re.Match) -> str:
        up = len(m.group(2)) - 1
        if up >= len(package):
            return m.group(0)
        target = package[: len(package) - up] + ([m.group(3)] if m.group(3) else [])
        return m.group(1) + "." + ".".join(target[1:]) + m.group(4)

    return _RELATIVE_IMPORT.sub(canonical, source)


def source_file(module: str) -> Path:
    """The source file of this package's module ``module`` (``"fusion"``, ``"data.xtreme"``),
    for :func:`code_version`: hashed without importing it (a warm run need not import torch
    to check its memoised results)."""
    return Path(__file__).resolve().parent.joinpath(*module.split(".")).with_suffix(".py")


_PACKAGE_CODE: list[str] = []  # the whole-package digest, computed once per process


def memoized(kind: str, fields: dict, compute, *, code: tuple | str | None = None):
    """Return ``compute()``'s JSON-able result, stored under a digest of ``fields`` and of the
    code that computes it.

    Used for per-layer analysis results (a probe evaluation, similarity), keyed by the cache
    entries' own digests, so a repeated or interrupted analysis reuses finished layers and a
    change of any input gives a new key. ``code``: the functions/modules whose source
    determines the result (or a :func:`code_version` string); the key also holds the package
    version, so an edited function never reuses its old numbers. ``None``: the source of
    the whole package (safe, but any edit recomputes).
    """
    if code is None:
        if not _PACKAGE_CODE:
            _PACKAGE_CODE.append(code_version())
        version = _PACKAGE_CODE[0]
    else:
        version = code if isinstance(code, str) else code_version(*code)
    payload = json.dumps({"kind": kind, "code": version, **fields}, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    path = cache_dir() / "results" / kind / f"{digest[:32]}.json"
    if path.exists():
        try:
            stored = json.loads(path.read_text())
            if stored.get("key") == payload:
                return stored["result"]
        except (OSError, ValueError):
            pass  # unreadable memo: recompute and overwrite
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent)
    atomic_write_json(path, {"key": payload, "result": result})
    return result
