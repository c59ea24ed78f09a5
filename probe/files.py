"""Files that appear whole or not at all, and their sha256.

Every file the toolkit writes for later runs to trust (cache entries, recorded
checksums, downloaded corpora, reports, figures) goes through :func:`atomic_open`: the
bytes go to a hidden temporary beside the target, are fsynced, and the temporary is
renamed over the target, so a crash or an error never leaves a partial file behind.

>>> with atomic_open(Path("out.bin")) as f:      # doctest: +SKIP
...     f.write(payload)                          # out.bin appears only here, complete
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import BinaryIO, Iterator


@contextlib.contextmanager
def durable_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """``open(path, "wb")`` whose bytes are fsynced when the block ends. Not atomic by
    itself: for files inside a directory published by one rename (or see :func:`atomic_open`)."""
    with open(path, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only once it is complete and fsynced
    (written as a hidden temporary beside it, then renamed); removed on any error,
    including one raised by the caller inside the block (e.g. a checksum mismatch)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with durable_open(tmp) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj, default=None, *, indent: int = 1,
                      sort_keys: bool = False) -> None:
    """``obj`` as indented UTF-8 JSON, written atomically (``default``: as for ``json.dumps``)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=default, sort_keys=sort_keys)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_file_memo(path: Path) -> str:
    """sha256 of a file, memoised on (path, size, mtime) so large weights hash once."""
    path = Path(path).resolve()
    st = path.stat()
    from .paths import probe_home

    memo_path = probe_home() / "file-hashes.json"
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo = json.loads(memo_path.read_bytes())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    memo[key] = sha256_file(path)
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(memo_path, memo, indent=0)
    except OSError:
        pass  # only a memo (e.g. a read-only PROBE_HOME): the hash is recomputed next time
    return memo[key]
